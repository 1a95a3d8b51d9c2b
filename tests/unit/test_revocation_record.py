"""The owed-revocation record through real steps: when debts are decided, what the labels say,
and the label budget. moto in-process for Secrets Manager, the fake Cekura over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cekura_rotator.ledger import MAX_LABELS, State, entries, rotator_labels, spare_labels
from cekura_rotator.steps import Step
from infra.local.stack import secret_json
from tests.conftest import LogCapture, World


def _key_id(world: World, version_id: str) -> int:
    raw = world.sm.get_secret_value(SecretId=world.arn, VersionId=version_id)["SecretString"]
    return int(json.loads(raw)["key_id"])


def _version_with(world: World, stage: str) -> str:
    return next(v for v, s in world.stages().items() if stage in s)


def _person_stores_a_new_key(world: World) -> tuple[str, int]:
    """A person's PutSecretValue of a dashboard key: the new version becomes AWSCURRENT and the
    current one AWSPREVIOUS, mid-rotation or not (done as a put plus a move: moto's own
    PutSecretValue gives AWSPREVIOUS to the wrong version after a rotation)."""
    issued = world.fake.issue_key(world.project_id, "person key")
    current = _version_with(world, "AWSCURRENT")
    new = world.sm.put_secret_value(
        SecretId=world.arn,
        SecretString=secret_json(issued.key, world.project_id, key_id=issued.id),
        VersionStages=["PERSON"],
    )["VersionId"]
    world.sm.update_secret_version_stage(
        SecretId=world.arn,
        VersionStage="AWSCURRENT",
        MoveToVersionId=new,
        RemoveFromVersionId=current,
    )
    world.sm.update_secret_version_stage(
        SecretId=world.arn, VersionStage="PERSON", RemoveFromVersionId=new
    )
    return new, issued.id


def _pin(world: World, *labels: str, on: str) -> None:
    for label in labels:
        world.sm.update_secret_version_stage(
            SecretId=world.arn, VersionStage=label, MoveToVersionId=on
        )


def test_what_a_rotation_owes_is_recorded_as_it_begins(world: World) -> None:
    # Given a secret rotated once under grace (AWSPREVIOUS holds the bootstrap key)
    world.fake.mode = "permissive"
    rotator = world.rotator("grace")
    world.rotate(rotator)
    previous = _version_with(world, "AWSPREVIOUS")
    # When the next rotation's createSecret runs
    token = world.start_rotation()
    world.step(rotator, Step.CREATE, token)
    # Then the key it will owe is recorded already, by id and project, on its version ...
    (entry,) = entries(world.stages())
    assert (entry.version_id, entry.state) == (previous, State.OWED)
    assert (entry.key_id, entry.project) == (world.bootstrap_id, world.project_id)
    assert entry.key is not None
    assert not entry.key.minted_here  # a dashboard key
    # ... and, still AWSPREVIOUS, it is live
    assert world.fake.is_live(world.bootstrap_key)
    # When the rotation finishes, that key is deleted and the record cleared
    for step in (Step.SET, Step.TEST, Step.FINISH):
        world.step(rotator, step, token)
    assert not world.fake.is_live(world.bootstrap_key)
    assert entries(world.stages()) == []


def test_a_key_the_rotator_minted_is_recorded_as_minted_for_its_version(world: World) -> None:
    # Given two rotations under grace, so AWSPREVIOUS holds a key the rotator minted
    world.fake.mode = "permissive"
    rotator = world.rotator("grace")
    world.rotate(rotator)
    world.rotate(rotator)
    previous = _version_with(world, "AWSPREVIOUS")
    # When a third begins
    world.step(rotator, Step.CREATE, world.start_rotation())
    # Then the record says the key was minted for that very version (`_R`)
    (entry,) = entries(world.stages())
    assert entry.version_id == previous
    assert entry.key is not None
    assert entry.key.minted_here
    assert entry.key_id == _key_id(world, previous)


@pytest.mark.parametrize("policy", ["grace", "immediate"])
def test_a_person_storing_a_key_mid_rotation_does_not_shift_the_debt(
    world: World, policy: str
) -> None:
    # Given deletion is allowed and the secret was rotated under `policy`
    world.fake.mode = "permissive"
    rotator = world.rotator(policy)
    world.rotate(rotator)
    was_current = _version_with(world, "AWSCURRENT")
    was_current_key = _key_id(world, was_current)
    # When a rotation begins, a person stores a new key, and the rotation finishes
    token = world.start_rotation()
    world.step(rotator, Step.CREATE, token)
    _, person_key = _person_stores_a_new_key(world)
    for step in (Step.SET, Step.TEST, Step.FINISH):
        world.step(rotator, step, token)
    live = {k.id for k in world.fake.live_keys(world.project_id)}
    stages = world.stages()
    # Then the person's key, current a second ago, is AWSPREVIOUS and live under either policy
    assert person_key in live
    assert _key_id(world, _version_with(world, "AWSPREVIOUS")) == person_key
    # ... and the key that was current as the rotation began is revoked only as its policy says:
    # immediate owed it from the start; grace gives it a period, recorded as such
    if policy == "immediate":
        assert was_current_key not in live
    else:
        assert was_current_key in live
        (entry,) = [e for e in entries(stages) if e.version_id == was_current]
        assert entry.state is State.GRACE
        # When the next rotation runs, its grace is over and it is deleted
        world.rotate(rotator)
        assert was_current_key not in {k.id for k in world.fake.live_keys(world.project_id)}


def test_recording_gives_up_loudly_before_taking_the_room_a_rotation_needs(
    world: World, logs: LogCapture
) -> None:
    # Given a secret rotated once, whose applications use all the labels a rotation can spare
    world.fake.mode = "permissive"
    rotator = world.rotator("grace")
    world.rotate(rotator)
    spare = spare_labels(world.stages())
    _pin(world, *(f"APP_{n}" for n in range(spare)), on=_version_with(world, "AWSCURRENT"))
    assert spare_labels(world.stages()) == 0
    # When the next rotation runs
    token = world.rotate(rotator)
    # Then it completes, recording nothing: the log names the key that is now nobody's debt
    assert "AWSCURRENT" in world.stages()[token]
    assert rotator_labels(world.stages()) == set()
    unrecorded = [json.loads(line) for line in logs.lines if "is not recorded" in line]
    assert {u["key_id"] for u in unrecorded} == {world.bootstrap_id}
    # And the secret never holds more labels than leave room for the next rotation's
    assert spare_labels(world.stages()) >= 0
    assert len({s for st in world.stages().values() for s in st}) <= MAX_LABELS


def test_records_are_given_up_when_applications_take_the_room_later(
    world: World, logs: LogCapture
) -> None:
    # Given Cekura refuses deletion, so a superseded key stays recorded as manual
    rotator = world.rotator("grace")
    world.rotate(rotator)
    world.rotate(rotator)
    assert [e.state for e in entries(world.stages())] == [State.MANUAL]
    # When applications then add labels until a rotation would lack room, and rotation runs
    spare = spare_labels(world.stages())
    _pin(world, *(f"APP_{n}" for n in range(spare + 1)), on=_version_with(world, "AWSCURRENT"))
    world.rotate(rotator)
    # Then the rotator gave up its own records rather than make the next rotation impossible
    assert spare_labels(world.stages()) >= 0 or rotator_labels(world.stages()) == set()
    assert any("given up to free a label" in line for line in logs.lines)


def test_an_owed_version_that_cannot_be_decrypted_is_still_settled(world: World) -> None:
    # Given a debt recorded as a rotation began, and then the owed version became unreadable
    # (the secret's KMS key changed; only AWS-labelled versions were re-encrypted)
    world.fake.mode = "permissive"
    rotator = world.rotator("grace")
    world.rotate(rotator)
    owed = _version_with(world, "AWSPREVIOUS")
    token = world.start_rotation()
    world.step(rotator, Step.CREATE, token)

    def undecryptable(params: dict[str, Any], **_: Any) -> None:
        if params.get("VersionId") == owed:
            raise ClientError(
                {"Error": {"Code": "DecryptionFailure", "Message": "KMS key disabled"}},
                "GetSecretValue",
            )

    world.sm.meta.events.register(
        "before-parameter-build.secrets-manager.GetSecretValue", undecryptable
    )
    # When the rotation finishes
    for step in (Step.SET, Step.TEST, Step.FINISH):
        world.step(rotator, step, token)
    # Then the key named by the record is deleted all the same, and the record cleared
    assert not world.fake.is_live(world.bootstrap_key)
    assert entries(world.stages()) == []
