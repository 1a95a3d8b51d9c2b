"""Every step x every failure point, each followed by the retries Secrets Manager would make.

Each scenario: a secret already rotated twice (so AWSPREVIOUS holds a rotator-made key for `grace`
to revoke), then a rotation during which one call fails at one step. Secrets Manager's retries
follow (the failed step again, with the same token, then the steps after it) and every invariant
is checked at the end. The scenario also pins down how the step fails: which typed error, or that
the client's own retries absorbed the fault and the rotation went through without one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from cekura_rotator.errors import (
    CekuraAuthError,
    CekuraForbiddenError,
    CekuraNotFoundError,
    CekuraProtocolError,
    CekuraRateLimitedError,
    CekuraUnavailableError,
    KeyValidationError,
    OrphanKeyError,
    RotationStateError,
    SecretsStoreError,
)
from cekura_rotator.steps import Step
from infra.local.fake_cekura import RouteName
from tests.reliability.conftest import Ledger
from tests.reliability.harness import (
    AWS_ERRORS,
    CEKURA_FAULTS,
    AwsFault,
    Harness,
    LambdaDied,
    Mode,
    Rig,
)
from tests.reliability.summary import is_full

Arm = Callable[[Harness], None]


@dataclass(frozen=True)
class Case:
    """One failure point. `expect`: the exact error the armed step raises first (None: the
    rotation goes through without a failed step). `repeat`: how many attempts of the step get
    the fault. `deletion_blocked`: Cekura refused or lied about a deletion, so invariant 5
    (which assumes deletion works) and the stray sweep are not expected to hold."""

    id: str
    step: Step
    arm: Arm = field(compare=False)
    expect: type[BaseException] | None
    policy: str = "grace"
    mode: Mode = "spec"
    repeat: int = 1
    deletion_blocked: bool = False
    crash_first_create: bool = False


# -- Secrets Manager: each call of each step x each error ----------------------------------

# (step, operation, what the call does (harness.CALLS; None: the operation's first call in the
# step), the point's name, the policies in which the call is made there). Debts are recorded as a
# rotation begins (createSecret), so finishSecret's first label write is the move.
_REVOKING = ("grace", "immediate")
_ALL = ("grace", "immediate", "off")
AWS_POINTS: tuple[tuple[Step, str, str | None, str, tuple[str, ...]], ...] = (
    (Step.CREATE, "DescribeSecret", None, "guard", _ALL),
    (Step.CREATE, "GetSecretValue", "read-pending", "is-pending-stored", _ALL),
    (Step.CREATE, "GetSecretValue", "read-current", "read-current", _ALL),
    (Step.CREATE, "GetSecretValue", "read-by-id", "read-version-to-owe", _REVOKING),
    (Step.CREATE, "UpdateSecretVersionStage", "record", "record-owed", _REVOKING),
    (Step.CREATE, "PutSecretValue", None, "store-pending", _ALL),
    (Step.SET, "DescribeSecret", None, "guard", _ALL),
    (Step.TEST, "DescribeSecret", None, "guard", _ALL),
    (Step.TEST, "GetSecretValue", "read-pending", "read-pending", _ALL),
    (Step.FINISH, "DescribeSecret", None, "guard", _ALL),
    (Step.FINISH, "GetSecretValue", "read-pending", "read-pending", _ALL),
    (Step.FINISH, "GetSecretValue", "read-by-id", "read-version-to-revoke", _REVOKING),
    (Step.FINISH, "UpdateSecretVersionStage", "move-current", "move-current", _ALL),
    (Step.FINISH, "UpdateSecretVersionStage", "remove-pending", "remove-pending", _ALL),
    (Step.FINISH, "UpdateSecretVersionStage", "remove-previous", "remove-previous", ("immediate",)),
    (Step.FINISH, "UpdateSecretVersionStage", "clear-record", "clear-record", _REVOKING),
)
# Revocation's own calls never fail the step: what they could not do stays owed.
_NEVER_FAILS = {"read-version-to-owe", "read-version-to-revoke", "clear-record"}


def _aws_expect(step: Step, what: str, error: str) -> type[BaseException] | None:
    if what in _NEVER_FAILS:
        return None
    if error != "not-found":
        return SecretsStoreError
    # Secrets Manager's "no such value" is an answer, not a failure, for reads.
    if what == "is-pending-stored":
        return None  # true here: nothing is stored yet, so minting is right
    if what == "read-pending" and step is Step.TEST:
        # testSecret reads "no pending value" as RotateSecret's configuration check, tests the
        # current key, and marks the version: finishSecret then tests the new key itself.
        return None
    if what.startswith("read-"):
        return RotationStateError
    return SecretsStoreError


def _aws_arm(operation: str, what: str | None, error: str) -> Arm:
    return lambda h: h.rig.aws.arm(AwsFault(operation, error, what=what))


def aws_cases(policies: Iterable[str], modes: Iterable[Mode]) -> list[Case]:
    return [
        Case(
            id=f"aws-{mode}-{policy}-{step}-{what}-{error}",
            step=step,
            arm=_aws_arm(operation, what_call, error),
            expect=_aws_expect(step, what, error),
            policy=policy,
            mode=mode,
            repeat=2,  # the first retry fails too
            deletion_blocked=what == "read-version-to-revoke",
        )
        for policy in policies
        for mode in modes
        for step, operation, what_call, what, where in AWS_POINTS
        for error in AWS_ERRORS
        # Where Cekura refuses deletion no record is cleared: the debt becomes manual at once.
        if policy in where and not (what == "clear-record" and mode == "spec")
    ]


# -- Cekura: each call x each fault ----------------------------------------------------------

_UNAVAILABLE = CekuraUnavailableError
CREATE_EXPECT: dict[str, type[BaseException] | None] = {
    "429": None,  # retried: a 429 means nothing was created
    "429-retry-after": None,
    "429-persistent": CekuraRateLimitedError,
    "500": _UNAVAILABLE,  # a POST is never repeated: it may have minted a key
    "502": _UNAVAILABLE,
    "503": _UNAVAILABLE,
    "timeout": _UNAVAILABLE,  # the key was minted; its answer never came
    "timeout-unsent": _UNAVAILABLE,  # nothing was minted, but the client cannot know
    "dropped-connection": _UNAVAILABLE,
    "lost-response": _UNAVAILABLE,
    "malformed-json": CekuraProtocolError,
    "201-without-key": OrphanKeyError,
    "200-created": None,  # a valid body is a created key, whatever the 2xx
    "401": CekuraAuthError,
    "403": CekuraForbiddenError,
    "404": CekuraNotFoundError,
}
VALIDATE_EXPECT: dict[str, type[BaseException] | None] = {
    "429": None,
    "429-retry-after": None,
    "429-persistent": CekuraRateLimitedError,
    "500": _UNAVAILABLE,
    "502": None,
    "503": None,
    "503-persistent": _UNAVAILABLE,
    "timeout": None,  # a GET is retried after a timeout
    "timeout-unsent": None,
    "dropped-connection": None,
    "malformed-json": None,  # validation reads only the status
    "401": None,  # a new key may take a moment to be live everywhere
    "401-persistent": KeyValidationError,
    "403": KeyValidationError,
    "404": CekuraNotFoundError,
}
# Revocation and the stray sweep run in finishSecret and never fail it: a deletion that cannot be
# done now stays owed (recorded on its version) and a later finishSecret does it.
DELETE_EXPECT: dict[str, type[BaseException] | None] = dict.fromkeys(
    (
        "429",
        "429-retry-after",
        "429-persistent",
        "500",
        "502",
        "503",
        "503-persistent",
        "timeout",  # deleted, answer lost; the retry finds it gone
        "timeout-unsent",
        "dropped-connection",
        "lost-response",  # deleted, answer lost; the retry finds it gone
        "malformed-json",  # a 204 has no body to be malformed
        "401",
        "403",
        "404",  # "already gone" (here a lie: the stray sweep deletes the key later)
    )
)
LIST_EXPECT = {**DELETE_EXPECT}
del LIST_EXPECT["lost-response"]
# Faults after which the key at stake is not deleted in this rotation.
_BLOCKING = {"401", "403", "404", "500", "503-persistent", "429-persistent", "malformed-json"}
# Faults that read as "Cekura refuses deletion": the key is recorded for the dashboard instead.
_REFUSING = {"401", "403"}


def _cekura_arm(route: RouteName, kind: str) -> Arm:
    return lambda h: h.inject(route, CEKURA_FAULTS[kind])


def cekura_cases(
    route: RouteName,
    step: Step,
    expectations: dict[str, type[BaseException] | None],
    *,
    policies: Iterable[str],
    modes: Iterable[Mode],
    blocking: set[str] | frozenset[str] = frozenset(),
    crash_first_create: bool = False,
) -> list[Case]:
    return [
        Case(
            id=f"cekura-{mode}-{policy}-{route}-{kind}",
            step=step,
            arm=_cekura_arm(route, kind),
            expect=expect,
            policy=policy,
            mode=mode,
            deletion_blocked=kind in blocking,
            crash_first_create=crash_first_create,
        )
        for policy in policies
        for mode in modes
        for kind, expect in expectations.items()
    ]


def matrix(full: bool) -> list[Case]:
    """The default subset, or with `full` every combination of policy and permission mode."""
    both: tuple[Mode, ...] = ("spec", "permissive")
    modes: tuple[Mode, ...] = both if full else ("spec",)
    grace_and_immediate = ("grace", "immediate")
    return [
        *aws_cases(("grace", "immediate", "off") if full else ("grace",), ("permissive",)),
        *(aws_cases(("grace",), ("spec",)) if full else []),
        *cekura_cases("create", Step.CREATE, CREATE_EXPECT, policies=("grace",), modes=modes),
        *cekura_cases("validate", Step.TEST, VALIDATE_EXPECT, policies=("grace",), modes=modes),
        *cekura_cases(
            "delete",
            Step.FINISH,
            DELETE_EXPECT,
            policies=grace_and_immediate if full else ("grace",),
            modes=("permissive",),
            blocking=_BLOCKING,
        ),
        # A stray from a crashed createSecret gives the sweep something to list and delete.
        *cekura_cases(
            "list",
            Step.FINISH,
            LIST_EXPECT,
            policies=grace_and_immediate if full else ("grace",),
            modes=("permissive",),
            blocking=_BLOCKING,
            crash_first_create=True,
        ),
    ]


DEFAULT, FULL = matrix(full=False), matrix(full=True)
assert len({c.id for c in FULL}) == len(FULL), "scenario ids must be distinct"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.name == "test_fault_then_retries":
        cases = FULL if is_full(metafunc.config) else DEFAULT
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def test_fault_then_retries(case: Case, rig: Rig, ledger: Ledger) -> None:
    # Given a secret rotated twice, so that AWSPREVIOUS holds a rotator-made key to revoke
    h = rig.harness(policy=case.policy, mode=case.mode)
    h.rotate()
    h.rotate()
    before = len(h.attempts)
    token = h.start_rotation()

    # When the fault hits its step (and, for `repeat`, the retries of that step), and Secrets
    # Manager retries the failed step with the same token, then the steps after it
    def arm(step: Step, attempt: int) -> None:
        if case.crash_first_create and step is Step.CREATE and attempt == 0:
            rig.aws.arm(AwsFault("PutSecretValue"))  # dies after minting, before storing
        if step is case.step and attempt < case.repeat:
            case.arm(h)

    completed = h.drive(token, arm=arm)
    ledger.scenarios += 1

    # Then every invariant holds ...
    permissive = case.mode == "permissive" and not case.deletion_blocked
    h.check(
        ledger,
        completed=token,
        swept=permissive and case.policy != "off",
        grace_bound=permissive and case.policy == "grace",
    )
    # ... and the step failed the way it should (or not at all)
    h.assert_outcome(completed, before, case.step, case.expect)
    if case.expect is None and "persistent" not in case.id:
        assert rig.pending_faults() == 0, "the fault was never consumed"
    if case.id.startswith("aws-"):
        assert rig.aws.fired, "the AWS fault never fired"
    if "429-retry-after" in case.id:
        assert 1.0 in rig.sleeps, "Retry-After was not honoured"
    # ... and once the faults clear, two more rotations pay what the policy owes
    refused = any(case.id.endswith(f"-{kind}") for kind in _REFUSING)
    h.settle(ledger, deletion_allowed=case.mode == "permissive" and not refused)


# Writes whose answer is lost after they were carried out (AWS reports a failure it did not have).
LOST_WRITES = [
    pytest.param(step, operation, what, error, policy, id=f"{what}-{error}-{policy}")
    for step, operation, what, policies in (
        (Step.CREATE, "PutSecretValue", None, ("grace",)),
        (Step.CREATE, "UpdateSecretVersionStage", "record", ("grace", "immediate")),
        (Step.FINISH, "UpdateSecretVersionStage", "move-current", ("grace", "immediate")),
        (Step.FINISH, "UpdateSecretVersionStage", "remove-pending", ("grace",)),
    )
    for policy in policies
    for error in ("internal-error", "throttling")
]


@pytest.mark.parametrize(("step", "operation", "what", "error", "policy"), LOST_WRITES)
def test_a_write_reported_failed_after_it_happened(
    step: Step, operation: str, what: str | None, error: str, policy: str, rig: Rig, ledger: Ledger
) -> None:
    # Given a secret rotated twice, and Cekura letting API keys delete
    h = rig.harness(policy=policy, mode="permissive")
    h.rotate()
    h.rotate()
    token = h.start_rotation()

    # When the write is carried out but reported failed, and Secrets Manager retries
    def arm(at: Step, attempt: int) -> None:
        if at is step and attempt == 0:
            rig.aws.arm(AwsFault(operation, error, what=what, after=True))

    completed = h.drive(token, arm=arm)
    ledger.scenarios += 1
    # Then the rotation completes onto a live key that Cekura accepted, no labelled key was
    # revoked, and nothing is owed for ever
    assert rig.aws.fired
    assert completed, h.failures()
    # (createSecret reads its version back and finds its value stored: no step fails at all)
    failed = [a.step for a in h.attempts if a.error is not None]
    assert failed[:1] == ([] if operation == "PutSecretValue" else [step]), h.failures()
    h.check(ledger, completed=token, swept=True, grace_bound=policy == "grace")
    h.settle(ledger, deletion_allowed=True)


def test_matrix_is_large_enough() -> None:
    # Given the default and the full matrix
    # Then each holds at least the 40 distinct scenarios the issue asks for
    assert len(DEFAULT) >= 40
    assert len(FULL) > len(DEFAULT)


# -- the same, through the Lambda entry point: logs, tracebacks and metrics as Lambda emits them

HANDLER_CASES = (
    Case("clean", Step.CREATE, lambda h: None, None, mode="permissive"),
    Case("create-500", Step.CREATE, _cekura_arm("create", "500"), _UNAVAILABLE),
    Case("create-lost-response", Step.CREATE, _cekura_arm("create", "lost-response"), _UNAVAILABLE),
    Case(
        "create-201-without-key",
        Step.CREATE,
        _cekura_arm("create", "201-without-key"),
        OrphanKeyError,
    ),
    Case(
        "store-throttled-after-minting",
        Step.CREATE,
        _aws_arm("PutSecretValue", None, "throttling"),
        SecretsStoreError,
        mode="permissive",
    ),
    Case(
        "validate-401-persistent",
        Step.TEST,
        _cekura_arm("validate", "401-persistent"),
        KeyValidationError,
    ),
    Case(
        "move-current-denied",
        Step.FINISH,
        _aws_arm("UpdateSecretVersionStage", "move-current", "kms-access-denied"),
        SecretsStoreError,
    ),
    Case(
        "delete-503-owed",
        Step.FINISH,
        _cekura_arm("delete", "503-persistent"),
        None,
        policy="immediate",
        mode="permissive",
    ),
    Case(
        "killed-after-minting",
        Step.CREATE,
        lambda h: h.rig.aws.arm(AwsFault("PutSecretValue")),
        LambdaDied,
    ),
)


@pytest.mark.parametrize("case", HANDLER_CASES, ids=[c.id for c in HANDLER_CASES])
def test_through_the_handler(
    case: Case, rig: Rig, ledger: Ledger, capfd: pytest.CaptureFixture[str]
) -> None:
    # Given a secret rotated twice, each step run by lambda_handler as Lambda would run it
    h = rig.harness(policy=case.policy, mode=case.mode)
    h.via_handler = True
    h.rotate()
    h.rotate()
    token = h.start_rotation()

    # When the fault hits its step, and Secrets Manager retries
    def arm(step: Step, attempt: int) -> None:
        if step is case.step and attempt == 0:
            case.arm(h)

    completed = h.drive(token, arm=arm)
    out, err = capfd.readouterr()
    ledger.scenarios += 1

    # Then every invariant holds, scanning Lambda's stdout (logs and EMF metrics) too ...
    permissive = case.mode == "permissive"
    h.check(
        ledger,
        completed=token,
        swept=permissive,
        grace_bound=permissive and case.policy == "grace",
        extra_outputs=(out, err),
    )
    assert completed, h.failures()
    # ... the metrics were flushed, and count what happened
    documents = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    names = {
        metric["Name"]
        for document in documents
        for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert {"StepSucceeded", "KeysMinted", "RevocationsOwed"} <= names
    failures = [a for a in h.attempts if a.error is not None]
    if case.expect is None:
        assert not failures
    else:
        assert type(failures[0].error) is case.expect
        # A failure the handler saw names the secret and the step; a kill leaves no trace there
        if case.expect is not LambdaDied:
            assert "StepFailed" in names
            assert f"step={case.step}" in str(failures[0].error)
            assert f"secret={h.arn}" in str(failures[0].error)
