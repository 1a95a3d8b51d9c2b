"""`cekura-rotator revocations`: the owed-revocation record, listed and cleared, against moto
server and the fake Cekura. The record is written by the real finishSecret (through RotateSecret
and the bridge), so these tests read what the function really leaves behind."""

from __future__ import annotations

import json
import re

import pytest

from cekura_rotator import handler
from cekura_rotator.secret_value import fingerprint
from infra.local.fake_cekura import Fault
from infra.local.stack import LocalStack
from tests.integration.cli_harness import (
    Seeded,
    assert_no_key_material,
    assert_one_line,
    cli,
    rotate,
    seed,
    shared_stack,
    stack,
    stages,
    version_with,
)

__all__ = ["shared_stack", "stack"]  # fixtures, used by name

MANUAL = "CEKURA_MANUAL_"
OWED = "CEKURA_OWED_"


def refused(stack: LocalStack) -> tuple[Seeded, str]:
    """A secret rotated twice in the spec world: Cekura refused to delete the bootstrap key."""
    seeded = seed(stack)
    first = version_with(stack.client(), seeded.arn, "AWSCURRENT")
    assert first is not None
    rotate(stack, seeded.arn)
    rotate(stack, seeded.arn)
    assert MANUAL + first in stages(stack.client(), seeded.arn)[first]
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
    assert f"revocations clear --secret-id {seeded.arn} --version-id {first}" in table.out
    assert document.code == 0, document.err
    entries = [e for e in json.loads(document.out)["revocations"] if e["secret_arn"] == seeded.arn]
    assert entries == [
        {
            "secret_name": seeded.name,
            "secret_arn": seeded.arn,
            "version_id": first,
            "state": "manual",
            "labels": [MANUAL + first],
            "key_id": seeded.key.id,
            "key_name": "bootstrap",
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

    # Then there are none
    assert result.code == 0, result.err
    assert result.out == "No revocations awaiting deletion (1 secret(s) checked).\n"


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
    assert entry["labels"] == [OWED + first]
    assert stack.fake.is_live(seeded.key.key)

    # When the next rotation runs with Cekura healthy again
    rotate(stack, seeded.arn)
    after = cli(stack, "revocations", "list", "--secret-id", seeded.arn, "--output", "json")

    # Then it deleted the key and the entry is gone
    assert json.loads(after.out)["revocations"] == []
    assert not stack.fake.is_live(seeded.key.key)
    assert_no_key_material(stack, owed.text, after.text)


@pytest.mark.parametrize("by", ["version", "key"])
def test_clear_removes_the_entry_once_the_key_is_deleted(stack: LocalStack, by: str) -> None:
    # Given a key awaiting manual deletion, which the operator then deleted in the dashboard
    seeded, first = refused(stack)
    selector = ["--version-id", first] if by == "version" else ["--key-id", str(seeded.key.id)]
    before = stages(stack.client(), seeded.arn)

    # When its entry is cleared
    result = cli(stack, "revocations", "clear", "--secret-id", seeded.name, *selector)

    # Then only the record's label left the version; nothing else moved
    assert result.code == 0, result.err
    assert f"Cleared from {seeded.name}: key {seeded.key.id} 'bootstrap'" in result.out
    after = stages(stack.client(), seeded.arn)
    assert after.get(first, []) == [s for s in before[first] if not s.startswith(MANUAL)]
    assert {v: s for v, s in after.items() if v != first} == {
        v: s for v, s in before.items() if v != first
    }
    listed = cli(stack, "revocations", "list", "--secret-id", seeded.arn, "--output", "json")
    assert json.loads(listed.out)["revocations"] == []
    status = cli(stack, "status", "--secret-id", seeded.arn)
    assert "Revocations awaiting deletion: none" in status.out
    assert_no_key_material(stack, result.text, listed.text, status.text)


def test_clearing_an_unknown_entry_changes_nothing(stack: LocalStack) -> None:
    # Given a secret with one entry
    seeded, first = refused(stack)
    before = stages(stack.client(), seeded.arn)

    # When a key id that is not on record is cleared
    result = cli(stack, "revocations", "clear", "--secret-id", seeded.arn, "--key-id", "999999")

    # Then it is a one-line usage error naming the entries there are, and nothing changed
    assert result.code == 2
    assert_one_line(result.err, "revocations clear", seeded.arn)
    assert f"entries of this secret: {first}" in result.err
    assert "nothing was changed" in result.err
    assert stages(stack.client(), seeded.arn) == before


def test_clear_needs_a_version_or_a_key(stack: LocalStack) -> None:
    # Given a secret with an entry
    seeded, _ = refused(stack)
    # When clear names neither the version nor the key
    result = cli(stack, "revocations", "clear", "--secret-id", seeded.arn)
    # Then argparse refuses it before anything is read
    assert result.code == 2
    assert "one of the arguments --version-id --key-id is required" in result.err


def test_status_and_list_agree_after_an_owed_entry_is_cleared_by_hand(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an owed (automatically retried) entry under `immediate`
    stack.fake.mode = "permissive"
    monkeypatch.setenv("REVOCATION_POLICY", "immediate")
    handler.rotator.cache_clear()
    seeded = seed(stack)
    first = version_with(stack.client(), seeded.arn, "AWSCURRENT")
    assert first is not None
    stack.fake.inject("delete", Fault(status=503, times=50))
    rotate(stack, seeded.arn)
    stack.fake.clear_faults()

    # When the operator clears it by hand
    result = cli(stack, "revocations", "clear", "--secret-id", seeded.arn, "--version-id", first)

    # Then it is cleared, with the reminder that nothing will revoke that key any more
    assert result.code == 0, result.err
    assert "nothing will revoke that key" in result.out
    assert OWED + first not in stages(stack.client(), seeded.arn).get(first, [])
