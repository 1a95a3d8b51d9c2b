"""The health check's debts: manual entries cleared on Cekura's proof, owed ones settled
(through `cekura_rotator.revocation`, as finishSecret settles them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cekura_rotator import ledger
from infra.local.fake_cekura import Fault
from tests.conftest import LogCapture, World
from tests.integration.health_fleet import Fleet, by_arn, fail_reads, records

if TYPE_CHECKING:
    pass


def manual_debts(fleet: Fleet) -> tuple[World, dict[int, ledger.Entry]]:
    """A secret rotated three times where Cekura refuses API keys deletion (the 'spec' world):
    the bootstrap key and the first minted key are recorded manual. Returns them by key id."""
    (world,) = fleet.add(1)
    rotator = world.rotator()
    first_minted: int | None = None
    for n in range(3):
        world.rotate(rotator)
        if n == 0:
            first_minted = int(fleet.current(world)["key_id"])
    found = ledger.entries(world.stages())
    assert [e.state for e in found] == [ledger.State.MANUAL] * 2
    by_key: dict[int, ledger.Entry] = {}
    for entry in found:
        value = world.value_of(entry.version_id)
        assert value is not None
        by_key[int(fleet.parsed(value)["key_id"])] = entry
    assert set(by_key) == {world.bootstrap_id, first_minted}
    return world, by_key


def labels(world: World) -> set[str]:
    return {label for stages in world.stages().values() for label in stages}


def test_manual_debt_whose_key_is_gone_is_cleared_and_one_whose_key_is_live_is_kept(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given two manual entries, and the bootstrap key deleted in the dashboard since
    world, by_key = manual_debts(fleet)
    gone, live = (
        by_key[world.bootstrap_id],
        next(e for k, e in by_key.items() if k != world.bootstrap_id),
    )
    fleet.delete_key(world, world.bootstrap_id)
    live_keys = {k.id for k in fleet.fake.live_keys(world.project_id)}
    # When the health check runs
    report = fleet.check().run()
    # Then the gone key's record is cleared, the live key's kept, and no key was deleted
    assert report.manual_cleared == 1
    assert report.summary()["manual_cleared"] == 1
    assert not set(gone.labels) & labels(world)
    assert set(live.labels) <= labels(world)
    assert by_arn(report)[world.arn].manual == 1
    assert {k.id for k in fleet.fake.live_keys(world.project_id)} == live_keys
    # ... and the log says so, with the key's id
    (cleared,) = records(logs, "Manual revocation record cleared")
    assert (cleared["secret_arn"], cleared["version_id"], cleared["key_id"]) == (
        world.arn,
        gone.version_id,
        world.bootstrap_id,
    )
    (kept,) = records(logs, "Manual revocation kept")
    assert kept["version_id"] == live.version_id
    # And a second run finds nothing more to clear
    assert fleet.check().run().manual_cleared == 0


def test_manual_debt_is_not_cleared_without_proof_that_cekura_answers(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given a manual entry whose key is gone, while Cekura answers 401 to every key
    world, _by_key = manual_debts(fleet)
    fleet.delete_key(world, world.bootstrap_id)
    fleet.fake.inject("validate", Fault(status=401, times=1000))
    before = world.stages()
    # When the health check runs
    report = fleet.check().run()
    # Then nothing is cleared: no key was accepted in this run, so a 401 proves nothing
    assert report.manual_cleared == 0
    assert world.stages() == before
    assert records(logs, "Nothing cleared or settled")


def test_report_only_run_clears_nothing(fleet: Fleet) -> None:
    world, _by_key = manual_debts(fleet)
    fleet.delete_key(world, world.bootstrap_id)
    before = world.stages()
    report = fleet.check().run(fix=False)
    assert report.manual_cleared == 0
    assert world.stages() == before
    assert any(a.startswith("would clear manual entry") for a in by_arn(report)[world.arn].actions)


def test_manual_debt_on_an_unreadable_version_is_kept_and_named(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given a manual entry whose key is gone, on a version KMS cannot decrypt
    world, by_key = manual_debts(fleet)
    gone = by_key[world.bootstrap_id]
    fleet.delete_key(world, world.bootstrap_id)
    fail_reads(fleet.sm, world.arn, VersionId=gone.version_id)
    # When the health check runs
    report = fleet.check().run()
    # Then that entry is kept and named; the rest of the check went on
    assert report.manual_cleared == 0
    assert set(gone.labels) <= labels(world)
    assert by_arn(report)[world.arn].current_key == "accepted"
    assert any(
        gone.version_id in n and "DecryptionFailure" in n for n in by_arn(report)[world.arn].notes
    )
    (record,) = records(logs, "A manual revocation's version cannot be read")
    assert record["version_id"] == gone.version_id


# -- owed debts: need the revocation API of issue 14 -------------------------------------------


def owed_debt(fleet: Fleet) -> tuple[World, int]:
    """A secret whose second rotation could not delete the old key (Cekura 503 on DELETE, in
    the world where API keys may delete): an owed entry. Returns the owed key's id."""
    fleet.fake.mode = "permissive"
    (world,) = fleet.add(1)
    rotator = world.rotator()
    world.rotate(rotator)
    fleet.fake.inject("delete", Fault(status=503, times=50))
    world.rotate(rotator)
    fleet.fake.clear_faults()
    owed = [e for e in ledger.entries(world.stages()) if e.state is ledger.State.OWED]
    assert len(owed) == 1
    assert fleet.fake.is_live(world.bootstrap_key)
    return world, world.bootstrap_id


def test_owed_debt_is_settled(fleet: Fleet, logs: LogCapture) -> None:
    # Given an owed revocation of the bootstrap key, and Cekura answering normally again
    world, _key_id = owed_debt(fleet)
    # When the health check runs
    report = fleet.check().run()
    # Then the key is deleted at Cekura and the record gone
    assert report.owed_settled == 1
    assert report.summary()["owed_settled"] == 1
    assert not fleet.fake.is_live(world.bootstrap_key)
    assert not [e for e in ledger.entries(world.stages()) if e.state is ledger.State.OWED]
    assert by_arn(report)[world.arn].owed == 0
    # ... and every key a label holds is still live
    for version, stages in world.stages().items():
        if any(not ledger.is_rotator_label(s) for s in stages):
            value = world.value_of(version)
            assert value is not None
            assert fleet.fake.is_live(fleet.parsed(value)["api_key"])


def test_owed_debt_is_not_settled_while_cekura_is_down(fleet: Fleet) -> None:
    world, _key_id = owed_debt(fleet)
    fleet.fake.inject("validate", Fault(status=503, times=1000))
    fleet.fake.inject("delete", Fault(status=503, times=1000))
    before = world.stages()
    report = fleet.check().run()
    assert report.owed_settled == 0
    assert world.stages() == before
    assert fleet.fake.is_live(world.bootstrap_key)
