"""The Lambda killed at each boundary inside a step, then Secrets Manager's retry.

A kill is `LambdaDied`, which no step catches: nothing after the boundary runs, compensation
included, as with a real timeout or out-of-memory kill. The retry uses the same token and runs
the killed step again, then the steps after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from cekura_rotator.steps import Step
from tests.reliability import invariants
from tests.reliability.conftest import Ledger
from tests.reliability.harness import AwsFault, Harness, LambdaDied, Mode, Rig

Kill = Callable[[Harness], None]


@dataclass(frozen=True)
class Boundary:
    """Where the Lambda dies; `policies` lists the policies in which that point exists."""

    id: str
    step: Step
    kill: Kill = field(compare=False)
    policies: tuple[str, ...] = ("grace", "immediate")
    modes: tuple[str, ...] = ("spec", "permissive")
    strays: int = 0  # keys minted and never stored, in a mode where they cannot be swept


def _aws(operation: str, *, what: str | None = None, after: bool = False) -> Kill:
    """Die as the step's call of `operation` that does `what` (harness.CALLS) begins or ends."""
    return lambda h: h.rig.aws.arm(AwsFault(operation, what=what, after=after))


def _cekura(method: str) -> Kill:
    def kill(h: Harness) -> None:
        h.rig.cekura.crash_on[method] = 0

    return kill


_LABELS = "UpdateSecretVersionStage"
# Where a step can die, by what its calls do: createSecret records what the rotation owes after
# minting and before storing; finishSecret moves AWSCURRENT, takes AWSPENDING (and under
# `immediate` AWSPREVIOUS) off, then settles and clears the record.
BOUNDARIES = (
    Boundary(
        "create-after-minting-before-recording",
        Step.CREATE,
        _aws(_LABELS, what="record"),
        strays=1,
    ),
    Boundary(
        "create-after-recording-before-storing",
        Step.CREATE,
        _aws(_LABELS, what="record", after=True),
        strays=1,
    ),
    Boundary("create-after-minting-before-storing", Step.CREATE, _aws("PutSecretValue"), strays=1),
    Boundary("create-after-storing", Step.CREATE, _aws("PutSecretValue", after=True)),
    Boundary("create-before-minting", Step.CREATE, _cekura("create_key")),
    Boundary("set-after-guard", Step.SET, _aws("DescribeSecret", after=True)),
    Boundary("test-before-validating", Step.TEST, _cekura("validate")),
    Boundary("finish-before-moving-current", Step.FINISH, _aws(_LABELS, what="move-current")),
    Boundary(
        "finish-after-moving-current-before-removing-pending",
        Step.FINISH,
        _aws(_LABELS, what="move-current", after=True),
    ),
    Boundary(
        "finish-after-removing-pending-before-revoking",
        Step.FINISH,
        _aws(_LABELS, what="remove-pending", after=True),
    ),
    Boundary(
        "finish-after-awsprevious-off-before-revoking",
        Step.FINISH,
        _aws(_LABELS, what="remove-previous", after=True),
        policies=("immediate",),
    ),
    # Cekura refuses deletion and listing in `spec`, and the rotator stops asking: no call there.
    Boundary("finish-in-revocation", Step.FINISH, _cekura("delete_key"), modes=("permissive",)),
    Boundary(
        "finish-after-revoking-before-clearing-record",
        Step.FINISH,
        _aws(_LABELS, what="clear-record"),
        modes=("permissive",),
    ),
    Boundary("finish-in-stray-sweep", Step.FINISH, _cekura("list_keys"), modes=("permissive",)),
)
MODES: tuple[Mode, ...] = ("spec", "permissive")
CASES = [
    pytest.param(boundary, policy, mode, id=f"{mode}-{policy}-{boundary.id}")
    for boundary in BOUNDARIES
    for policy in boundary.policies
    for mode in MODES
    if mode in boundary.modes
]


@pytest.mark.parametrize(("boundary", "policy", "mode"), CASES)
def test_crash_then_retry(
    boundary: Boundary, policy: str, mode: Mode, rig: Rig, ledger: Ledger
) -> None:
    # Given a secret rotated twice (AWSPREVIOUS holds a rotator-made key)
    h = rig.harness(policy=policy, mode=mode)
    h.rotate()
    h.rotate()
    before = len(h.attempts)
    token = h.start_rotation()
    deletes_at_crash: list[int] = []

    # When the Lambda dies at the boundary, and Secrets Manager retries the step and the rest
    def arm(step: Step, attempt: int) -> None:
        if step is boundary.step and attempt == 0:
            boundary.kill(h)
        elif step is boundary.step and attempt == 1:
            deletes_at_crash.append(sum(r.route == "delete" for r in rig.fake.requests))

    deletes_before = sum(r.route == "delete" for r in rig.fake.requests)
    completed = h.drive(token, arm=arm)
    ledger.scenarios += 1

    # Then every invariant holds once the retry has gone through ...
    h.check(
        ledger,
        completed=token,
        swept=mode == "permissive",
        grace_bound=mode == "permissive" and policy == "grace",
    )
    assert completed, h.failures()
    # ... the Lambda died exactly once, where it was told to ...
    errors = [a for a in h.attempts[before:] if a.error is not None]
    assert [(a.step, type(a.error)) for a in errors] == [(boundary.step, LambdaDied)]
    # ... and a kill ran no compensation: no key was deleted between the kill and the retry
    if boundary.step is Step.CREATE:
        assert deletes_at_crash == [deletes_before]
    # ... and a key minted but never stored stays live only where Cekura cannot sweep it
    strays = h.strays()
    assert len(strays) == (boundary.strays if mode == "spec" else 0)
    for stray in strays:
        assert f'"key_id": {stray.id}' in h.log_text, "a stray's id must be in the logs"
    # ... and two more rotations pay every revocation the policy owes
    h.settle(ledger, deletion_allowed=mode == "permissive")


@pytest.mark.parametrize("mode", MODES)
def test_retry_that_misses_the_stored_value_mints_no_second_pending(
    mode: Mode, rig: Rig, ledger: Ledger
) -> None:
    # Given a createSecret killed right after it stored the pending value
    h = rig.harness(mode=mode)
    h.rotate()
    token = h.start_rotation()
    rig.aws.arm(AwsFault("PutSecretValue", after=True))
    assert isinstance(h.step(Step.CREATE, token), LambdaDied)
    stored = invariants.versions(h.sm, h.arn)
    # When its retry is told (wrongly) that no pending value exists, and mints again
    rig.aws.arm(AwsFault("GetSecretValue", "not-found"))
    retry = h.step(Step.CREATE, token)
    ledger.scenarios += 1
    # Then storing the second key is refused as on AWS (the first one stays pending), the
    # second key is deleted or logged, and the rotation completes with the first one
    assert retry is not None
    assert "ResourceExistsException" in str(retry)
    assert invariants.versions(h.sm, h.arn) == stored
    assert h.drive(token, start=Step.CREATE), h.failures()
    h.check(ledger, completed=token, swept=mode == "permissive", grace_bound=mode == "permissive")
