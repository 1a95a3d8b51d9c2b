"""Every step x every failure point, each followed by the retries Secrets Manager would make.

Each scenario: a secret already rotated twice (so AWSPREVIOUS holds a rotator-made key for `grace`
to revoke), then a rotation during which one call fails at one step. Secrets Manager's retries
follow (the failed step again, with the same token, then the steps after it) and every invariant
is checked at the end. The scenario also pins down how the step fails: which typed error, or that
the client's own retries absorbed the fault and the rotation went through without one.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from cekura_rotator import handler
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
from infra.local.fake_cekura import Fault, RouteName
from tests.reliability.conftest import Ledger
from tests.reliability.harness import (
    AWS_ERRORS,
    CEKURA_FAULTS,
    STEPS,
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
    full = is_full(metafunc.config)
    if metafunc.definition.name == "test_fault_then_retries":
        cases = FULL if full else DEFAULT
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])
    if metafunc.definition.name == "test_actor_then_retries":
        actors = ACTORS_FULL if full else ACTORS_DEFAULT
        metafunc.parametrize("actor", actors, ids=[c.id for c in actors])


def test_fault_then_retries(case: Case, rig: Rig, ledger: Ledger) -> None:
    # Given a secret rotated twice, so that AWSPREVIOUS holds a rotator-made key to revoke, and
    # Secrets Manager ending each rotation one of its two legal ways (AWSPENDING removed or
    # kept), chosen by the scenario
    rig.model.pending_after_finish = ("remove", "keep")[zlib.crc32(case.id.encode()) % 2]
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


# -- actors: people, applications and Secrets Manager, acting as AWS lets them -----------------

Act = Callable[[Harness, str, Step, int], None]
Nested = list[tuple[str, list[BaseException | None]]]


def _nothing(h: Harness) -> None:
    return None


@dataclass(frozen=True)
class ActorCase:
    """A rotation during which an actor acts. `before` runs before the secret's first two
    rotations, `setup` after them, `act(h, token, step, attempt)` before each attempt of the
    rotation's steps. `clean`: nothing the actor does may leave more keys live than the grace
    bound allows. `may_fail`: what the actor does may fail a step (which Secrets Manager then
    retries); otherwise AWS's legal behaviour must not fail any step."""

    id: str
    act: Act = field(compare=False, default=lambda h, token, step, attempt: None)
    setup: Callable[[Harness], None] = field(compare=False, default=_nothing)
    before: Callable[[Harness], None] = field(compare=False, default=_nothing)
    policy: str = "grace"
    mode: Mode = "permissive"
    clean: bool = False
    may_fail: bool = False
    inside_finish: int = 0  # steps of a RotateSecret accepted inside finishSecret
    met: str | None = None  # the strict model's rule the actor's doing must meet


def _at(step: Step, do: Callable[[Harness, str], object]) -> Act:
    """`do` as the first attempt of `step` begins."""

    def act(h: Harness, token: str, at: Step, attempt: int) -> None:
        if at is step and attempt == 0:
            do(h, token)

    return act


def _pin(target: str, label: str = "APP_PINNED") -> Callable[[Harness, str], object]:
    def pin(h: Harness, token: str) -> object:
        holder = next((v for v, s in h.labels().items() if target in s), None)
        assert holder is not None, f"no version carries {target}"
        return h.attach_label(label, holder)

    return pin


def _pin_first(h: Harness) -> None:
    assert _pin("AWSCURRENT")(h, "")


def _owed_then_kms(h: Harness) -> None:
    """A rotation whose deletions all fail (its debt stays owed on a version carrying only the
    record), then a KMS key change that makes that version undecryptable."""
    h.inject("delete", Fault(status=503, times=60))
    h.rotate()
    h.clear_faults()
    assert h.change_kms_key()


def _deletion_then_restore(h: Harness, token: str, step: Step, attempt: int) -> None:
    """Deletion scheduled as setSecret begins; cancelled before Secrets Manager's first retry."""
    if step is Step.SET and attempt == 0:
        assert h.schedule_deletion()
    elif attempt > 0 and h.deleted():
        assert h.restore()


Do = Callable[[Harness, str], object]


def _put(with_key_id: bool) -> Do:
    return lambda h, token: h.person_puts(with_key_id=with_key_id)


def _move(with_key_id: bool) -> Do:
    return lambda h, token: h.move_to_another_project(with_key_id=with_key_id)


def _before_the_move(do: Do) -> Do:
    """`do`, armed to run just before finishSecret moves AWSCURRENT."""
    return lambda h, token: h.before_current_moves(token, lambda: do(h, token))


def _now(do: Do) -> Callable[[Harness], None]:
    def setup(h: Harness) -> None:
        do(h, "")

    return setup


def _world(**settings: object) -> Callable[[Harness], None]:
    def setup(h: Harness) -> None:
        for name, value in settings.items():
            setattr(h.model, name, value)

    return setup


def _history(h: Harness) -> None:
    h.model.add_history(h.arn, 100 - len(h.labels()))


def _actor_cases(policy: str, mode: Mode) -> list[ActorCase]:
    def case(id: str, **kw: Any) -> ActorCase:
        return ActorCase(f"actor-{mode}-{policy}-{id}", policy=policy, mode=mode, **kw)

    cases = []
    for key_id in (True, False):
        tag = "" if key_id else "-without-key-id"
        cases += [
            case(f"person-put-between-rotations{tag}", setup=_now(_put(key_id))),
            case(
                f"person-put-after-create{tag}",
                act=_at(Step.SET, _put(key_id)),
                met="put-mid-rotation",
            ),
            case(
                f"person-put-just-before-the-move{tag}",
                act=_at(Step.FINISH, _before_the_move(_put(key_id))),
                may_fail=True,  # the move names the version that was current: AWS refuses it
                met="put-mid-rotation",
            ),
            case(f"moved-to-another-project{tag}", setup=_now(_move(key_id))),
        ]
    cases += [
        case(
            "moved-to-another-project-mid-rotation",
            act=_at(Step.TEST, _move(True)),
            met="put-mid-rotation",
        ),
        *(case(f"rotate-inside-finish-{steps}-steps", inside_finish=steps) for steps in (1, 3, 4)),
        case(
            "kms-change-with-a-pinned-old-version",
            before=_pin_first,
            setup=lambda h: h.change_kms_key(),
            met="kms-unreadable",
        ),
        case("kms-change-mid-rotation", act=_at(Step.TEST, lambda h, t: h.change_kms_key())),
        case("kms-change-strands-no-debt", setup=_owed_then_kms),
        *(
            [case("app-label-on-previous-before-finish", act=_at(Step.FINISH, _pin("AWSPREVIOUS")))]
            if policy == "grace"  # (`immediate` leaves no AWSPREVIOUS)
            else []
        ),
        case("app-label-on-current-before-finish", act=_at(Step.FINISH, _pin("AWSCURRENT"))),
        case("app-label-on-pending", act=_at(Step.TEST, _pin("AWSPENDING"))),
        case(
            "deletion-scheduled-then-restored",
            act=_deletion_then_restore,
            may_fail=True,
            met="deletion-refused",
        ),
        # An application leaves room for what a rotation needs: the record must make do.
        case(
            "labels-nearly-full-before-rotate",
            setup=lambda h: h.fill_labels(0, beyond_reserved=True),
        ),
        case(
            "labels-full-before-finish",
            act=_at(Step.FINISH, lambda h, t: h.fill_labels(0, beyond_reserved=True)),
        ),
        # An application takes every label left while the rotator holds records: the move of
        # AWSCURRENT (which under `immediate` needs a new AWSPREVIOUS) must find room in them.
        case("labels-all-taken-before-finish", act=_at(Step.FINISH, lambda h, t: h.fill_labels(0))),
        case("reads-lag-writes", setup=_world(read_lag=3), clean=True, met="lagging-read"),
        case(
            "writes-throttled",
            setup=_world(throttle_rate=0.3),
            clean=True,
            may_fail=True,
            met="throttled",
        ),
        case(
            "pending-cleaned-up-at-the-move",
            act=_at(Step.FINISH, lambda h, t: h.pending_cleaned_at_the_move(t)),
            clean=True,
            met="pending-removed",
        ),
        case("pending-kept-after-finish", setup=_world(pending_after_finish="keep"), clean=True),
        case("long-history-pruned", setup=_history, clean=True, met="versions-pruned"),
    ]
    return cases


ACTOR_MODES: tuple[Mode, ...] = ("permissive", "spec")


def actor_matrix(full: bool) -> list[ActorCase]:
    """Grace with deletion permitted by default; every policy that revokes, and the world where
    Cekura refuses API keys a deletion, in the full run."""
    if not full:
        return _actor_cases("grace", "permissive")
    return [
        c
        for policy in ("grace", "immediate")
        for mode in ACTOR_MODES
        for c in _actor_cases(policy, mode)
    ]


ACTORS_DEFAULT, ACTORS_FULL = actor_matrix(full=False), actor_matrix(full=True)


def test_actor_then_retries(actor: ActorCase, rig: Rig, ledger: Ledger) -> None:
    # Given a secret rotated twice (what the actor needs set up before and after that), by a
    # rotator making its calls side by side as in Lambda
    rig.parallel_calls = handler.PARALLEL_CALLS
    h = rig.harness(policy=actor.policy, mode=actor.mode)
    actor.before(h)
    h.rotate()
    h.rotate()
    actor.setup(h)
    token = h.start_rotation()
    nested: Nested = []
    if actor.inside_finish:
        h.rotate_inside_finish(
            token, steps=actor.inside_finish, started=lambda t, o: nested.append((t, o))
        )

    # When the actor acts during the rotation, and Secrets Manager retries what failed
    completed = h.drive(
        token, arm=lambda step, attempt: actor.act(h, token, step, attempt), max_failures=12
    )
    ledger.scenarios += 1

    # Then the rotation completes (and so does one AWS accepted inside its finishSecret), with
    # no step failed unless the actor's doing may fail one ...
    assert completed, h.failures()
    if not actor.may_fail:
        assert not h.failures(), f"AWS's legal behaviour failed a step: {h.failures()}"
    last = token
    for new, outcomes in nested:
        passed = sum(1 for outcome in outcomes if outcome is None)
        if passed < len(STEPS):
            assert h.drive(new, start=STEPS[passed], max_failures=12), h.failures()
        last = new
    if actor.inside_finish:
        assert nested, "AWS did not accept the RotateSecret inside finishSecret"
    # ... the actor's doing met the strict model's rule it is there for ...
    if actor.met is not None:
        assert h.model.counts[actor.met] > 0, f"the rule {actor.met} was never met"
    # ... every invariant holds ...
    permissive = actor.mode == "permissive"
    h.check(ledger, completed=last, swept=permissive, grace_bound=permissive and actor.clean)
    # ... and once people stop, two more rotations pay what the policy owes
    h.remove_labels("APP_FILL_")
    h.settle(ledger, deletion_allowed=permissive)


def test_matrix_is_large_enough() -> None:
    # Given the default and the full matrix
    # Then each holds at least the 40 distinct scenarios the issue asks for, and an actor of
    # every kind the strict AWS model's world has
    assert len(DEFAULT) >= 40
    assert len(FULL) > len(DEFAULT)
    assert len(ACTORS_FULL) > len(ACTORS_DEFAULT) >= 25
    assert len({c.id for c in ACTORS_FULL}) == len(ACTORS_FULL)


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
