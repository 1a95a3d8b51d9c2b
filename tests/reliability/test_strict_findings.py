"""Regression tests for the defects issue 14 names, each found under the strict AWS model.

One test per finding of the review, and the random sequence that failed main's own full run,
made a fixed test. Each runs against the strict AWS model (tests/strict_aws.py), through the
harness's Secrets Manager and the fake Cekura over HTTP; invariants 10 and 11 are checked after
every step.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from cekura_rotator import handler
from cekura_rotator import ledger as record
from cekura_rotator.steps import Step
from infra.local.fake_cekura import Fault
from tests.reliability import invariants
from tests.reliability.conftest import Ledger
from tests.reliability.harness import AwsFault, LambdaDied, Rig
from tests.strict_aws import CURRENT, PENDING, PREVIOUS, ROTATION_IN_PROGRESS


def _holder(labels: dict[str, tuple[str, ...]], label: str) -> str:
    return next(v for v, stages in labels.items() if label in stages)


def _key_id_of(h_versions: list[invariants.Version], version_id: str) -> int:
    version = next(v for v in h_versions if v.id == version_id)
    assert version.key_id is not None
    return version.key_id


# -- 1. a KMS key change must not strand a debt ------------------------------------------------


def test_a_debt_outlives_a_kms_key_change(rig: Rig, ledger: Ledger) -> None:
    # Given a grace secret whose third rotation could not delete the key it owes (Cekura
    # answering 503 throughout), so that the key's version carries only the rotator's record
    h = rig.harness(policy="grace", mode="permissive")
    h.rotate()
    h.rotate()
    owed_version = _holder(h.labels(), PREVIOUS)
    owed_key = _key_id_of(h.versions(), owed_version)
    h.inject("delete", Fault(status=503, times=60))
    h.rotate()
    h.clear_faults()
    assert owed_key in {k.id for k in h.fake.live_keys()}
    labels = h.labels()
    assert all(record.is_rotator_label(s) for s in labels[owed_version]), labels[owed_version]

    # When a person points the secret at another KMS key and disables the old one: the version
    # that carries only the record is now undecryptable for the rotator
    assert h.change_kms_key()
    assert not h.model.readable(h.arn, owed_version)

    # Then the record still names the key (read without decrypting anything) ...
    named = {e.key_id for e in record.entries(h.labels()) if e.version_id == owed_version}
    assert named == {owed_key}, f"the record on {owed_version[:8]} names {named}, not the key"
    # ... and the next rotation settles the debt: the key is deleted, the record gone
    h.rotate()
    assert owed_key not in {k.id for k in h.fake.live_keys()}, "the owed key is still live"
    assert not [e for e in record.entries(h.labels()) if e.version_id == owed_version]
    ledger.scenarios += 1
    h.check(ledger, swept=True)


# -- 2. one undecryptable labelled old version must not stop all revocation -------------------


def test_an_undecryptable_pinned_old_version_does_not_stop_revocation(
    rig: Rig, ledger: Ledger
) -> None:
    # Given a grace secret whose first version an application pins with its own label, rotated
    # twice, then moved to another KMS key: the pinned version cannot be decrypted any more
    h = rig.harness(policy="grace", mode="permissive")
    pinned = _holder(h.labels(), CURRENT)
    assert h.attach_label("APP_PINNED", pinned)
    h.rotate()
    h.rotate()
    assert h.change_kms_key()
    assert not h.model.readable(h.arn, pinned)
    # ... and the key minted by the first rotation (after the pinned version was written) is the
    # one the next rotation owes
    owed_version = _holder(h.labels(), PREVIOUS)
    owed_key = _key_id_of(h.versions(), owed_version)

    # When the next rotation runs, and the one after it is killed after minting, before storing
    # (a stray), then retried
    h.rotate()
    token = h.start_rotation()
    rig.aws.arm(AwsFault("PutSecretValue"))
    assert isinstance(h.step(Step.CREATE, token), LambdaDied)
    stray = {k.id for k in h.strays()}
    assert stray
    assert h.drive(token), h.failures()

    # Then the key minted after the pinned version was written is revoked (that version cannot
    # hold it), the stray is swept, and the pinned key itself is kept
    live = {k.id for k in h.fake.live_keys()}
    assert owed_key not in live, "revocation stopped: a key the pinned version cannot hold"
    assert not stray & live, f"the stray sweep stopped: {stray & live} still live"
    pinned_key = _key_id_of(h.versions(), pinned)
    assert pinned_key in live
    ledger.scenarios += 1
    h.check(ledger, completed=token, swept=True)


# -- 3. a refusal for one secret must not make another secret's held key manual ---------------


def test_a_refusal_for_one_secret_does_not_mark_a_pinned_key_manual(
    rig: Rig, ledger: Ledger
) -> None:
    # Given one warm container (one rotator) rotating two secrets with the same admin key, in
    # the world where Cekura refuses API keys a deletion, and secret A's deletion refused
    a = rig.harness(policy="grace", mode="spec")
    admin = a.use_admin("api_key")
    a.rotate()
    a.rotate()
    assert any(r.route == "delete" and r.status == 403 for r in a.fake.requests)
    b = rig.harness(policy="grace", mode="spec")
    b.admin_secrets.append(admin)
    b.configure_admin(admin.arn)
    b.rotator = a.rotator
    # ... and secret B's version that AWSPREVIOUS is about to leave pinned by an application
    b.rotate()
    pinned = _holder(b.labels(), PREVIOUS)
    assert b.attach_label("APP_PINNED", pinned)

    # When B rotates (its debt, the pinned version's key, is decided)
    token = b.start_rotation()
    completed = b.drive(token)  # invariant 11 is checked after every step

    # Then no record tells a person to delete the pinned key: it stays owed until unpinned
    assert completed, b.failures()
    problems = invariants.manual_only_unheld(b.fake, b.versions())
    assert problems == [], problems
    ledger.scenarios += 1
    b.check(ledger, completed=token)


# -- 4. the sweep must not delete the key of a rotation started inside finishSecret -----------


def test_a_rotation_started_inside_finish_keeps_its_key_and_completes(
    rig: Rig, ledger: Ledger
) -> None:
    # Given a grace secret rotated twice, in the world where Cekura lets API keys list and
    # delete (so finishSecret sweeps strays), by a rotator making its calls side by side as in
    # Lambda
    rig.parallel_calls = handler.PARALLEL_CALLS
    h = rig.harness(policy="grace", mode="permissive")
    h.rotate()
    h.rotate()
    first = h.start_rotation()
    for step in (Step.CREATE, Step.SET, Step.TEST):
        assert h.step(step, first) is None, h.failures()
    # ... and a new RotateSecret accepted the moment finishSecret moves AWSCURRENT (AWSPENDING
    # then shares AWSCURRENT's version), its createSecret minting before that finishSecret goes on
    started: list[str] = []
    h.rotate_inside_finish(first, steps=1, started=lambda token, _: started.append(token))

    # When the first finishSecret runs (moving AWSCURRENT, then settling and sweeping)
    h.step(Step.FINISH, first)

    # Then the new rotation's pending key was not swept as a stray ...
    assert started, "the second RotateSecret was not accepted inside finishSecret"
    second = started[0]
    assert PENDING in h.labels()[second]
    pending = next(v for v in h.versions() if v.id == second)
    kept = pending.api_key is not None and h.fake.is_live(pending.api_key)
    assert kept, f"the sweep deleted the next rotation's pending key {pending.key_id}"
    # ... and the new rotation completes (Secrets Manager runs its remaining steps)
    assert h.drive(second, start=Step.SET), h.failures()
    assert CURRENT in h.labels()[second]
    ledger.scenarios += 1
    h.check(ledger, completed=second, swept=True)


# -- the sequence that failed main's full run ----------------------------------------------------


def test_a_stray_waits_only_while_the_sweep_cannot_be_safe(rig: Rig, ledger: Ledger) -> None:
    # Given a grace secret, Cekura letting API keys list and delete, and the Lambda to be killed
    # at a createSecret's PutSecretValue (the second one: a key minted and never stored)
    h = rig.harness(policy="grace", mode="permissive")
    rig.aws.arm(AwsFault("PutSecretValue", skip=1))
    # When a rotation runs; a new RotateSecret; a DescribeSecret is throttled; another
    # RotateSecret (AWS refuses it and reattempts the incomplete rotation, whose createSecret
    # fails); a person stores a new key without `key_id`; Secrets Manager retries (createSecret is
    # killed after minting, then retried to the end)
    assert h.drive(h.start_rotation()), h.failures()
    second = h.start_rotation()
    rig.aws.arm(AwsFault("DescribeSecret", "throttling"))
    with pytest.raises(ClientError, match=ROTATION_IN_PROGRESS.split(".")[0]):
        h.start_rotation()
    assert h.step(Step.CREATE, second) is not None
    assert h.person_puts(with_key_id=False) is not None
    assert isinstance(h.step(Step.CREATE, second), LambdaDied)
    assert h.strays(), "the kill left no stray"
    assert h.drive(second), h.failures()

    # Then a stray may outlive that finishSecret only because the sweep could not be safe (the
    # person's key, labelled AWSPREVIOUS, is known only by value) ...
    if h.strays():
        assert not h.sweep_can_be_safe()
    # ... and once two more clean rotations have run, no key minted for this secret and held by
    # no version is live
    h.rotate()
    h.rotate()
    assert h.sweep_can_be_safe()
    assert h.strays() == [], f"strays {[k.id for k in h.strays()]} were never swept"
    ledger.scenarios += 1
    h.check(ledger, swept=True)
