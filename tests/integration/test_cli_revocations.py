"""`cekura-rotator revocations`: the owed-revocation record, listed and cleared, against moto
server and the fake Cekura. The record is written by the real finishSecret (through RotateSecret
and the bridge), so these tests read what the function really leaves behind. Labels are read
with the rotator's own vocabulary (`cekura_rotator.ledger`), whatever their exact spelling.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

from cekura_rotator import handler, ledger
from cekura_rotator.secret_value import fingerprint
from infra.local.fake_cekura import Fault
from infra.local.stack import LocalStack
from tests.integration.cli_harness import (
    Seeded,
    assert_no_key_material,
    assert_one_line,
    cli,
    kill,
    rotate,
    seed,
    stages,
    version_with,
)


def entry_of(stack: LocalStack, arn: str, version_id: str) -> ledger.Entry | None:
    found = [e for e in ledger.entries(stages(stack.client(), arn)) if e.version_id == version_id]
    return found[0] if found else None


def refused(stack: LocalStack) -> tuple[Seeded, str]:
    """A secret rotated twice in the spec world: Cekura refused to delete the bootstrap key."""
    seeded = seed(stack)
    first = version_with(stack.client(), seeded.arn, "AWSCURRENT")
    assert first is not None
    rotate(stack, seeded.arn)
    rotate(stack, seeded.arn)
    entry = entry_of(stack, seeded.arn, first)
    assert entry is not None
    assert entry.state == ledger.State.MANUAL
    return seeded, first


def test_list_names_each_key_awaiting_deletion_across_secrets(stack: LocalStack) -> None:
    # Given one secret whose old key Cekura refused to delete, and one that owes nothing
    seeded, first = refused(stack)
    clean = seed(stack)

    # When every secret is listed, as a table and as JSON
    table = cli(stack, "revocations", "list")
    document = cli(stack, "revocations", "list", "--output", "json")

    # Then the refused key is listed once, with its secret, id, name, age and state
    assert table.code == 0, table.err
    rows = [line.split() for line in table.out.splitlines() if line.startswith(seeded.name)]
    assert rows == [[seeded.name, str(seeded.key.id), "bootstrap", rows[0][3], "manual", first]]
    assert re.fullmatch(r"\d+s", rows[0][3])
    assert clean.name not in table.out
    assert "manual: 1" in table.out
    assert "in region us-east-1, account 123456789012" in table.out
    assert f"revocations clear --secret-id {seeded.arn} --version-id {first}" in table.out
    assert document.code == 0, document.err
    entries = [e for e in json.loads(document.out)["revocations"] if e["secret_arn"] == seeded.arn]
    label = entry_of(stack, seeded.arn, first)
    assert label is not None
    assert entries == [
        {
            "secret_name": seeded.name,
            "secret_arn": seeded.arn,
            "version_id": first,
            "state": "manual",
            "labels": list(label.labels),
            "key_id": seeded.key.id,
            "key_name": "bootstrap",
            "project_id": seeded.project,
            "fingerprint": fingerprint(seeded.key.key),
            "created": entries[0]["created"],
            "age_seconds": entries[0]["age_seconds"],
            "problem": None,
        }
    ]
    assert_no_key_material(stack, table.text, document.text)


def test_list_of_a_secret_that_owes_nothing(stack: LocalStack) -> None:
    # Given a secret rotated once (under grace nothing is revoked yet)
    seeded = seed(stack)
    rotate(stack, seeded.arn)

    # When its revocations are listed
    result = cli(stack, "revocations", "list", "--secret-id", seeded.name)

    # Then there are none, and it says what it searched
    assert result.code == 0, result.err
    assert result.out == "No revocations awaiting deletion (searched 1 secret(s) named).\n"


def test_list_in_a_region_without_rotated_secrets_says_where_it_looked(stack: LocalStack) -> None:
    # Given secrets rotated in us-east-1 only
    seed(stack)

    # When every secret of another region is listed
    result = cli(stack, "revocations", "list", "--region", "eu-west-1")

    # Then it is not "0 checked, exit 0": an input error naming the region and account searched
    assert result.code == 2
    assert result.out == ""
    assert "no secret with rotation in region eu-west-1, account 123456789012" in result.err
    assert "a different --region or --profile?" in result.err


def test_an_owed_revocation_is_listed_then_settled_by_the_next_rotation(
    stack: LocalStack,
) -> None:
    # Given the permissive Cekura (API keys may delete), whose deletes fail for now
    stack.fake.mode = "permissive"
    seeded = seed(stack)
    first = version_with(stack.client(), seeded.arn, "AWSCURRENT")
    assert first is not None
    rotate(stack, seeded.arn)
    stack.fake.inject("delete", Fault(status=503, times=50))
    rotate(stack, seeded.arn)
    stack.fake.clear_faults()

    # When the revocations are listed
    owed = cli(stack, "revocations", "list", "--secret-id", seeded.arn, "--output", "json")

    # Then the bootstrap key is owed (retried by rotations), not awaiting a person
    assert owed.code == 0, owed.err
    (entry,) = json.loads(owed.out)["revocations"]
    assert (entry["version_id"], entry["state"], entry["key_id"]) == (first, "owed", seeded.key.id)
    assert stack.fake.is_live(seeded.key.key)

    # When the next rotation runs with Cekura healthy again
    rotate(stack, seeded.arn)
    after = cli(stack, "revocations", "list", "--secret-id", seeded.arn, "--output", "json")

    # Then it deleted the key and the entry is gone
    assert json.loads(after.out)["revocations"] == []
    assert not stack.fake.is_live(seeded.key.key)
    assert_no_key_material(stack, owed.text, after.text)


# -- clear: only on proof that the key is gone ------------------------------------------------


def test_clear_refuses_while_cekura_still_accepts_the_key(stack: LocalStack) -> None:
    # Given a key awaiting manual deletion that nobody has deleted yet
    seeded, first = refused(stack)
    before = stages(stack.client(), seeded.arn)

    # When its entry is cleared, even with --force
    plain = cli(stack, "revocations", "clear", "--secret-id", seeded.name, "--version-id", first)
    forced = cli(stack, "revocations", "clear", "--secret-id", seeded.arn, "--key-id",
                 str(seeded.key.id), "--force")  # fmt: skip

    # Then both refuse (exit 1), naming the key's id and name and where to delete it, and the
    # record is kept: a live key never loses track
    for result, subject in ((plain, seeded.name), (forced, seeded.arn)):
        assert result.code == 1
        assert_one_line(result.err, "revocations clear", subject)
        assert "the record was kept" in result.err
        assert f"key {seeded.key.id} 'bootstrap'" in result.err
        assert "is still live at Cekura: delete it in the Cekura dashboard" in result.err
        assert f"project {seeded.project}, API keys, key id {seeded.key.id}" in result.err
        assert "Cleared" not in result.out
    assert stages(stack.client(), seeded.arn) == before
    assert stack.fake.is_live(seeded.key.key)
    assert_no_key_material(stack, plain.text, forced.text)


@pytest.mark.parametrize("by", ["version", "key"])
def test_clear_removes_the_entry_once_the_key_is_deleted(stack: LocalStack, by: str) -> None:
    # Given a key awaiting manual deletion, which the operator then deleted in the dashboard
    seeded, first = refused(stack)
    session = kill(stack, seeded)
    selector = ["--version-id", first] if by == "version" else ["--key-id", str(seeded.key.id)]
    before = stages(stack.client(), seeded.arn)

    # When its entry is cleared
    result = cli(stack, "revocations", "clear", "--secret-id", seeded.name, *selector)

    # Then Cekura's 401 is the proof, and only the record's label left the version
    assert result.code == 0, result.err
    assert f"Cleared from {seeded.name}: key {seeded.key.id} 'bootstrap'" in result.out
    assert "(Cekura no longer knows the key: HTTP 401)" in result.out
    after = stages(stack.client(), seeded.arn)
    assert after.get(first, []) == [s for s in before[first] if not ledger.is_rotator_label(s)]
    assert {v: s for v, s in after.items() if v != first} == {
        v: s for v, s in before.items() if v != first
    }
    listed = cli(stack, "revocations", "list", "--secret-id", seeded.arn, "--output", "json")
    assert json.loads(listed.out)["revocations"] == []
    status = cli(stack, "status", "--secret-id", seeded.arn)
    assert "Revocations awaiting deletion: none" in status.out
    assert_no_key_material(stack, result.text, listed.text, status.text, extra=(session,))


def test_clear_of_an_unreadable_version_needs_force_and_warns(stack: LocalStack) -> None:
    # Given an entry on a version whose value is not a key the CLI can read (SecretBinary)
    seeded = seed(stack)
    client = stack.client()
    odd = client.put_secret_value(
        SecretId=seeded.arn, SecretBinary=b"\x00\x01", VersionStages=["odd"]
    )["VersionId"]
    label = ledger.entry_label(ledger.State.MANUAL, version_id=odd, key=None)
    client.update_secret_version_stage(SecretId=seeded.arn, VersionStage=label, MoveToVersionId=odd)
    client.update_secret_version_stage(
        SecretId=seeded.arn, VersionStage="odd", RemoveFromVersionId=odd
    )
    argv = ["revocations", "clear", "--secret-id", seeded.arn, "--version-id", odd]

    # When it is cleared without --force
    refused_clear = cli(stack, *argv)

    # Then it refuses (no proof can be had), says why and names --force; the record stays
    assert refused_clear.code == 1
    assert_one_line(refused_clear.err, "revocations clear", seeded.arn)
    assert "SecretBinary" in refused_clear.err
    assert "so Cekura cannot be asked about its key" in refused_clear.err
    assert "clear it with --force" in refused_clear.err
    assert label in stages(client, seeded.arn)[odd]

    # When it is cleared with --force
    forced = cli(stack, *argv, "--force")

    # Then the record is gone, with a warning that nothing tracks that key any more
    assert forced.code == 0, forced.err
    assert "warning: cleared the record of key (id unknown)" in forced.err
    assert "without proof that the key is gone" in forced.err
    assert stages(client, seeded.arn).get(odd, []) == []


def test_clear_while_cekura_is_down_keeps_the_record_and_exits_3(stack: LocalStack) -> None:
    # Given a key awaiting manual deletion, deleted in the dashboard, and Cekura then failing
    seeded, first = refused(stack)
    kill(stack, seeded)
    stack.fake.inject("validate", Fault(status=500, times=5))
    before = stages(stack.client(), seeded.arn)

    # When the entry is cleared
    result = cli(stack, "revocations", "clear", "--secret-id", seeded.arn, "--version-id", first)

    # Then Cekura unreachable is exit 3, and nothing was cleared on less than proof
    assert result.code == 3
    assert "Cekura could not be asked whether the key is gone" in result.err
    assert stages(stack.client(), seeded.arn) == before


def test_clearing_an_unknown_entry_changes_nothing(stack: LocalStack) -> None:
    # Given a secret with one entry
    seeded, first = refused(stack)
    before = stages(stack.client(), seeded.arn)

    # When a key id that is not on record is cleared
    result = cli(stack, "revocations", "clear", "--secret-id", seeded.arn, "--key-id", "999999")

    # Then it is a one-line usage error naming the entries there are, and nothing changed
    assert result.code == 2
    assert_one_line(result.err, "revocations clear", seeded.arn)
    assert f"in version {first}" in result.err
    assert "nothing was changed" in result.err
    assert stages(stack.client(), seeded.arn) == before


def test_clear_needs_a_version_or_a_key(stack: LocalStack) -> None:
    # When clear names neither the version nor the key
    result = cli(stack, "revocations", "clear", "--secret-id", f"cekura/{uuid.uuid4().hex[:6]}")
    # Then argparse refuses it before anything is read
    assert result.code == 2
    assert "one of the arguments --version-id --key-id is required" in result.err


def test_an_owed_entry_whose_key_is_gone_is_cleared_by_hand(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an owed (automatically retried) entry under `immediate`, whose key a person then
    # deleted in the dashboard
    stack.fake.mode = "permissive"
    monkeypatch.setenv("REVOCATION_POLICY", "immediate")
    handler.rotator.cache_clear()
    seeded = seed(stack)
    first = version_with(stack.client(), seeded.arn, "AWSCURRENT")
    assert first is not None
    stack.fake.inject("delete", Fault(status=503, times=50))
    rotate(stack, seeded.arn)
    stack.fake.clear_faults()
    entry = entry_of(stack, seeded.arn, first)
    assert entry is not None
    assert entry.state == ledger.State.OWED
    kill(stack, seeded)

    # When the operator clears it by hand
    result = cli(stack, "revocations", "clear", "--secret-id", seeded.arn, "--version-id", first)

    # Then it is cleared on Cekura's 401
    assert result.code == 0, result.err
    assert entry_of(stack, seeded.arn, first) is None
