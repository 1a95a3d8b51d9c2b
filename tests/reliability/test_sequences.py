"""Random sequences (hypothesis stateful testing): rotations, faults, crashes, retries, people.

Each sequence gets a fresh secret and project (on one moto and one fake Cekura per test) and runs
rules in any order: RotateSecret, the next step, Secrets Manager's retry of a failed rotation,
faults for the next AWS or Cekura call, a kill of the Lambda at a boundary, policy and
permission-mode switches, and the actors of the strict AWS model's world:
- a person's PutSecretValue with a new key (with and without `key_id`), mid-rotation or between
  rotations, and a person moving the secret to another project;
- a second RotateSecret the moment AWS accepts it, including inside a finishSecret, right after
  it moved AWSCURRENT (the new rotation's first steps run before that finishSecret goes on);
- a KMS key change; application labels attached to and removed from any version, and sometimes
  enough of them to bring the secret close to its 20 labels;
- deletion scheduled, then restored; a long history of versions, which Secrets Manager prunes.

Every Secrets Manager call goes through the strict AWS model (tests/strict_aws.py), so AWS's
rules apply: RotateSecret is refused while a rotation is incomplete (AWS then reattempts that
rotation) and accepted once AWSCURRENT has moved; PutSecretValue moves AWSCURRENT and AWSPREVIOUS
at any moment; the label quota, KMS, deletion, lagging reads and throttling (drawn per sequence)
and Secrets Manager's own choice about AWSPENDING after finishSecret.

Cheap invariants (1: AWSCURRENT works; 4: no key material in anything new) run after every rule;
10 and 11 after every step the rotator runs; the rest when a rotation completes and at teardown,
after the faults clear and the rotation in progress is retried to completion (2, 3, 5, 7, 8, 9).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cekura_rotator import ledger as record
from cekura_rotator.steps import Step
from tests.reliability import invariants
from tests.reliability.conftest import Ledger
from tests.reliability.harness import (
    AWS_ERRORS,
    CEKURA_FAULTS,
    STEPS,
    AwsFault,
    Harness,
    Mode,
    Rig,
)
from tests.strict_aws import CURRENT, PENDING, PREVIOUS, ROTATION_IN_PROGRESS

POLICIES = ("grace", "immediate", "off")
MODES: tuple[Mode, ...] = ("spec", "permissive")
AWS_OPERATIONS = ("DescribeSecret", "GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage")
CEKURA_ROUTES = ("create", "validate", "delete", "list")
# Where the Lambda can be killed: (AWS operation or Cekura method, after the call returned?)
KILL_POINTS = (
    ("PutSecretValue", False),  # after minting, before storing
    ("PutSecretValue", True),
    ("UpdateSecretVersionStage", False),
    ("UpdateSecretVersionStage", True),  # after moving AWSCURRENT or removing AWSPENDING
    ("GetSecretValue", True),
    ("create_key", False),
    ("validate", False),
    ("delete_key", False),  # in revocation (after the move, for `immediate`)
    ("list_keys", False),  # in the stray sweep
)
# Which version an application pins with its label.
PIN_TARGETS = ("current", "previous", "pending", "recorded", "unlabelled")
APP_LABELS = ("APP_PINNED", "APP_OTHER")
FILL_PREFIX = "APP_FILL_"
# Log lines after which a key the rotator meant to delete may still be live: a failure, a
# refusal, or a 404 for a key that exists (an injected lie the rotator has to believe).
# What a finishSecret logs when it did not sweep or delete all it meant to.
NOT_DELETED = ('"level": "WARNING"', "strays are not swept", "Key was already gone")


class RotationMachine(RuleBasedStateMachine):
    """One secret over one sequence. `rig`, `ledger` and `ran` are set by the test."""

    rig: ClassVar[Rig]
    ledger: ClassVar[Ledger]
    ran: ClassVar[Counter[str]]  # how often each rule ran and each check was reached

    def __init__(self) -> None:
        super().__init__()
        self.h: Harness | None = None
        self.token: str | None = None  # the rotation in progress, as Secrets Manager sees it
        self.next_step = 0  # index into STEPS of the step Secrets Manager runs next
        self.failed = False  # the last attempt of that step failed
        self.clean = False  # grace + permissive throughout: the grace bound (5) applies
        self.deletable = False  # permissive throughout: debts are deleted, not recorded (8)
        self.revoking = False  # never `off`: every superseded key is owed (8)
        self.history = False
        self.scanned_logs = 0
        self.scanned_outputs = 0
        # A rotation started inside a finishSecret: (its token, steps passed, last one failed)
        self.switch: tuple[str, int, bool] | None = None

    @property
    def harness(self) -> Harness:
        assert self.h is not None
        return self.h

    # -- setup -----------------------------------------------------------------------------

    # Weighted towards grace with deletion permitted, the world in which invariant 5 applies.
    # The strict model's world is drawn too: throttling, lagging reads, AWSPENDING after finish.
    @initialize(
        mode=st.sampled_from(("permissive", "permissive", "spec")),
        policy=st.sampled_from(("grace", "grace", "immediate", "off")),
        throttle=st.sampled_from((0.0, 0.0, 0.05, 0.15)),
        lag=st.sampled_from((0, 0, 1, 3)),
        pending=st.sampled_from(("remove", "keep", "random")),
        seed=st.integers(0, 2**16),
    )
    def a_secret(
        self, mode: Mode, policy: str, throttle: float, lag: int, pending: Any, seed: int
    ) -> None:
        self.rig.reset()
        self.rig.forget_logs()
        model = self.rig.model
        model.throttle_rate, model.read_lag, model.pending_after_finish = throttle, lag, pending
        model.reseed(seed)
        self.h = self.rig.harness(policy=policy, mode=mode)
        self.clean = mode == "permissive" and policy == "grace"
        self.deletable = mode == "permissive"
        self.revoking = policy != "off"
        self.scanned_logs = len(self.rig.logs.text)

    # -- Secrets Manager ---------------------------------------------------------------------

    @rule()
    def rotate_secret(self) -> None:
        """RotateSecret: a new rotation, or (one incomplete) AWS's reattempt of that one."""
        self.ran["rotate_secret"] += 1
        self._sync_token()
        h = self.harness
        try:
            token = h.start_rotation()
        except ClientError as e:
            if ROTATION_IN_PROGRESS not in str(e):
                self.ran["rotate_secret: refused"] += 1  # the label quota, a deleted secret
                return
            labels = h.labels()
            in_progress = next(v for v, s in labels.items() if PENDING in s and CURRENT not in s)
            self.ran["rotate_secret: reattempted"] += 1
            self.token, self.next_step, self.failed = in_progress, 0, False
            self._run(until_failure=True)
            return
        if self.token is not None:
            self._abandon(self.token)
        self.token, self.next_step, self.failed = token, 0, False

    @precondition(lambda self: self.token is not None and not self.failed)
    @rule()
    def next_step_runs(self) -> None:
        self.ran["next_step_runs"] += 1
        self._run(until_failure=False)

    @precondition(lambda self: self.token is not None and not self.failed)
    @rule()
    def steps_run_through(self) -> None:
        """Secrets Manager's usual run: every step left, back to back, until one fails."""
        self.ran["steps_run_through"] += 1
        self._run(until_failure=True)

    @precondition(lambda self: self.token is not None and self.failed)
    @rule()
    def secrets_manager_retries(self) -> None:
        """The failed step again with the same token, then the steps after it."""
        self.ran["secrets_manager_retries"] += 1
        self._run(until_failure=True)

    @precondition(
        lambda self: self.token is not None and self.next_step <= STEPS.index(Step.FINISH)
    )
    @rule(steps=st.integers(1, 4))
    def next_rotation_inside_finish(self, steps: int) -> None:
        """Armed: once this rotation's finishSecret moves AWSCURRENT, AWS accepts a new
        RotateSecret, and its first `steps` steps run before that finishSecret goes on."""
        self.ran["next_rotation_inside_finish"] += 1
        assert self.token is not None
        self.harness.rotate_inside_finish(self.token, steps=steps, started=self._started_inside)

    @precondition(
        lambda self: self.token is not None and self.next_step <= STEPS.index(Step.FINISH)
    )
    @rule()
    def pending_cleaned_up_at_the_move(self) -> None:
        """Armed: Secrets Manager removes AWSPENDING itself as soon as this rotation's
        finishSecret has moved AWSCURRENT, while that finishSecret still runs."""
        self.ran["pending_cleaned_up_at_the_move"] += 1
        assert self.token is not None
        self.harness.pending_cleaned_at_the_move(self.token)

    # -- faults and kills ------------------------------------------------------------------------

    @rule(
        operation=st.sampled_from(AWS_OPERATIONS),
        error=st.sampled_from(sorted(AWS_ERRORS)),
        skip=st.integers(0, 2),
    )
    def aws_fails_soon(self, operation: str, error: str, skip: int) -> None:
        self.ran["aws_fails_soon"] += 1
        self.rig.aws.arm(AwsFault(operation, error, skip=skip))

    @rule(
        operation=st.sampled_from(("PutSecretValue", "UpdateSecretVersionStage")),
        error=st.sampled_from(("internal-error", "throttling")),
        skip=st.integers(0, 2),
    )
    def aws_answer_lost(self, operation: str, error: str, skip: int) -> None:
        """A write soon is carried out, and its answer lost (AWS reports a failure)."""
        self.ran["aws_answer_lost"] += 1
        self.rig.aws.arm(AwsFault(operation, error, skip=skip, after=True))

    @rule(route=st.sampled_from(CEKURA_ROUTES), kind=st.sampled_from(sorted(CEKURA_FAULTS)))
    def cekura_fails_next(self, route: Any, kind: str) -> None:
        self.ran["cekura_fails_next"] += 1
        self.harness.inject(route, CEKURA_FAULTS[kind])

    @rule(point=st.sampled_from(KILL_POINTS), skip=st.integers(0, 1))
    def lambda_will_be_killed(self, point: tuple[str, bool], skip: int) -> None:
        self.ran["lambda_will_be_killed"] += 1
        where, after = point
        if where[0].isupper():
            self.rig.aws.arm(AwsFault(where, skip=skip, after=after))
        else:
            self.rig.cekura.crash_on[where] = skip

    # -- people and settings -----------------------------------------------------------------

    @rule(with_key_id=st.booleans())
    def person_puts_a_new_key(self, with_key_id: bool) -> None:
        """A person stores a fresh dashboard key (PutSecretValue), rotation or not."""
        self.ran["person_puts_a_new_key"] += 1
        if self.harness.person_puts(with_key_id=with_key_id) is None:
            self.ran["person_puts_a_new_key: refused"] += 1
        self._sync_token()

    @rule(with_key_id=st.booleans())
    def person_moves_the_secret(self, with_key_id: bool) -> None:
        """A person stores a key of another project of the organization, with its project_id:
        the old project's keys are then out of the rotated key's scope."""
        self.ran["person_moves_the_secret"] += 1
        if self.harness.move_to_another_project(with_key_id=with_key_id) is not None:
            self.clean = False  # the old project's keys may stay live, recorded
        self._sync_token()

    @rule()
    def kms_key_changes(self) -> None:
        self.ran["kms_key_changes"] += 1
        self.harness.change_kms_key()

    @rule(which=st.sampled_from(PIN_TARGETS), label=st.sampled_from(APP_LABELS))
    def app_label_attached(self, which: str, label: str) -> None:
        """An application pins a version with its own label."""
        h = self.harness
        labels = h.labels()
        version = _pick(labels, which)
        if version is None:
            return
        self.ran["app_label_attached"] += 1
        if h.attach_label(label, version) and CURRENT not in labels[version]:
            self.clean = False  # a pinned key is held: not revoked, not counted as owed
        self._sync_token()

    @rule(label=st.sampled_from(APP_LABELS))
    def app_label_removed(self, label: str) -> None:
        self.ran["app_label_removed"] += 1
        self.harness.remove_label(label)

    @rule(spare=st.integers(0, 3))
    def labels_nearly_full(self, spare: int) -> None:
        """An application attaches labels until `spare` of the secret's 20 are left."""
        self.ran["labels_nearly_full"] += 1
        self.harness.fill_labels(spare, prefix=FILL_PREFIX)

    @rule()
    def labels_freed(self) -> None:
        self.ran["labels_freed"] += 1
        self.harness.remove_labels(FILL_PREFIX)

    @rule()
    def deletion_scheduled(self) -> None:
        self.ran["deletion_scheduled"] += 1
        self.harness.schedule_deletion()

    @rule()
    def deletion_cancelled(self) -> None:
        self.ran["deletion_cancelled"] += 1
        self.harness.restore()

    @precondition(lambda self: not self.history)
    @rule()
    def long_history(self) -> None:
        """The secret has close to 100 versions, a day old or more: the next writes prune."""
        self.ran["long_history"] += 1
        self.history = True
        h = self.harness
        h.model.add_history(h.arn, 100 - len(h.labels()))

    @rule(policy=st.sampled_from(POLICIES))
    def policy_changes(self, policy: str) -> None:
        self.ran["policy_changes"] += 1
        self.harness.set_policy(policy)
        self.clean = self.clean and policy == "grace"
        self.revoking = self.revoking and policy != "off"

    @rule(mode=st.sampled_from(MODES))
    def cekura_permissions_change(self, mode: Mode) -> None:
        self.ran["cekura_permissions_change"] += 1
        self.harness.set_mode(mode)
        self.clean = self.clean and mode == "permissive"
        self.deletable = self.deletable and mode == "permissive"

    # -- invariants after every rule --------------------------------------------------------------

    @invariant()
    def current_key_works(self) -> None:
        if self.h is not None:
            h = self.h
            invariants.verify(self.ledger, lambda: invariants.current_is_live(h.sm, h.arn, h.fake))

    @invariant()
    def nothing_new_holds_a_key(self) -> None:
        if self.h is None:
            return
        text = self.rig.logs.text[self.scanned_logs :]
        outputs = self.harness.evidence.outputs[self.scanned_outputs :]
        self.scanned_logs += len(text)
        self.scanned_outputs += len(outputs)
        secrets = self.harness.minted()
        invariants.verify(self.ledger, lambda: invariants.key_material([text, *outputs], secrets))

    # -- the rest, when a rotation completes and at the end ---------------------------------

    def teardown(self) -> None:
        if self.h is None:
            return
        h = self.h
        # Faults clear, people undo what keeps a rotation from running (a deletion, labels
        # filling the quota), and Secrets Manager retries the rotation in progress.
        self.rig.reset()
        h.restore()
        h.remove_labels(FILL_PREFIX)
        self._sync_token()
        retried = self.token
        with h.calm():
            if retried is not None:
                self.failed = True
                self._run(until_failure=True, retries=5)
        all_versions = h.versions()
        current = next(v.id for v in all_versions if CURRENT in v.stages)
        found = h.strays()
        secrets = h.minted()
        unfinished = [f"2: the retried rotation did not complete: {h.failures()[-2:]}"]
        checks = [
            lambda: invariants.current_is_live(h.sm, h.arn, h.fake),
            lambda: unfinished if self.token else [],
            lambda: invariants.rotation_completed(all_versions, retried or ""),
            lambda: invariants.strays_accounted(found, h.evidence, h.log_text),
            lambda: invariants.key_material([h.log_text, *h.evidence.outputs], secrets),
            lambda: invariants.current_was_accepted(h.sm, h.arn, h.fake, trusted=h.trusted_key_ids),
            lambda: invariants.labelled_keys_live(
                h.fake, all_versions, excused=h.evidence.excused_key_ids
            ),
            *h.step_checks(),
        ]
        if retried is None:  # then only: no AWSPENDING off AWSCURRENT
            checks[2] = lambda: invariants.rotation_completed(all_versions, current)
        if self._clean():
            checks.append(lambda: invariants.grace_bound_of_secret(h.fake, h.stem, h.evidence))
        invariants.verify(self.ledger, *checks)
        if self.revoking:
            # With the faults cleared, two more rotations pay every debt (8): deleted where
            # Cekura let deletion happen throughout, recorded otherwise. (A key superseded
            # while the policy was `off` is owed nothing.)
            h.settle(self.ledger, deletion_allowed=self.deletable)
            self.ran["check: debts settled"] += 1
        self.ledger.sequences += 1

    # -- helpers ------------------------------------------------------------------------------

    def _run(self, *, until_failure: bool, retries: int = 1) -> None:
        """Run the next step (or, `until_failure`, every step left until one fails)."""
        h = self.harness
        assert self.token is not None
        token = self.token
        while self.next_step < len(STEPS):
            step = STEPS[self.next_step]
            logged = len(h.log_text)
            error = h.step(step, token)
            if self.switch is not None:
                self._switch(token, error, h.log_text[logged:])
                return
            if error is not None:
                self.failed = True
                retries -= 1
                if retries <= 0:
                    return
                continue
            self.failed = False
            self.next_step += 1
            if step is Step.FINISH:
                self._completed(token, h.log_text[logged:])
            if not until_failure:
                return

    def _started_inside(self, token: str, outcomes: list[BaseException | None]) -> None:
        passed = sum(1 for outcome in outcomes if outcome is None)
        self.switch = (token, passed, bool(outcomes) and outcomes[-1] is not None)

    def _switch(self, outer: str, error: BaseException | None, finish_log: str) -> None:
        """A rotation started inside `outer`'s finishSecret: for AWS, `outer` is over (its
        AWSCURRENT moved), and the new one is the rotation in progress."""
        assert self.switch is not None
        token, passed, failed = self.switch
        self.switch = None
        self.ran["check: rotation started inside a finishSecret"] += 1
        if error is None:
            self._completed(outer, finish_log)
        else:
            self._abandon(outer)
        self.token, self.next_step, self.failed = token, passed, failed
        if passed == len(STEPS):
            self.token = None

    def _sync_token(self) -> None:
        """The rotation in progress as AWS sees it: none once its version lost AWSPENDING
        (a person's edit after its finishSecret moved AWSCURRENT, say)."""
        if self.token is None:
            return
        labels = self.harness.labels()
        if PENDING not in labels.get(self.token, ()):
            self._abandon(self.token)
            self.token = None

    def _completed(self, token: str, finish_log: str) -> None:
        """finishSecret passed: the rotation is complete."""
        h = self.harness
        if self.token == token:
            self.token = None
        checks = []
        # Swept: Cekura let this finishSecret list and delete everything it meant to, and it
        # could tell every labelled key by id (a key known only by value may be any stray).
        swept = (
            h.fake.mode == "permissive"
            and h.policy != "off"
            and not any(line in finish_log for line in NOT_DELETED)
            and h.sweep_can_be_safe()
        )
        self.ran["check: rotation completed"] += 1
        if swept:
            found = h.strays()
            checks.append(lambda: invariants.no_strays_of(found, token))
            self.ran["check: stray sweep"] += 1
        if self._clean():
            checks.append(lambda: invariants.grace_bound_of_secret(h.fake, h.stem, h.evidence))
            self.ran["check: grace bound"] += 1
        invariants.verify(self.ledger, *checks)

    def _clean(self) -> bool:
        """Grace and permissive throughout, and the rotator never warned."""
        text = self.harness.log_text
        return self.clean and not any(line in text for line in NOT_DELETED)

    def _abandon(self, token: str) -> None:
        """A rotation AWS no longer runs (a new one started, or its version lost AWSPENDING)
        before its finishSecret completed. What that finishSecret had left is recorded (owed
        labels) or found again (strays, by name) by later ones; until then its strays may
        exceed the grace bound."""
        h = self.harness
        h.evidence.excused_key_ids |= {k.id for k in h.strays() if k.name.endswith(token[:8])}
        if h.policy == "immediate":
            self.clean = False


def _pick(labels: dict[str, tuple[str, ...]], target: str) -> str | None:
    """A version of the secret, by what it is."""
    if target == "current":
        return next((v for v, s in labels.items() if CURRENT in s), None)
    if target == "previous":
        return next((v for v, s in labels.items() if PREVIOUS in s), None)
    if target == "pending":
        return next((v for v, s in labels.items() if PENDING in s), None)
    if target == "recorded":
        return next((e.version_id for e in record.entries(labels)), None)
    return next((v for v, s in labels.items() if not s), None)


def _run_machine(rig: Rig, ledger: Ledger, *, examples: int, steps: int) -> Counter[str]:
    ran: Counter[str] = Counter()
    machine = type("Sequences", (RotationMachine,), {"rig": rig, "ledger": ledger, "ran": ran})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )
    return ran


RULES = {n for n, v in vars(RotationMachine).items() if hasattr(v, "hypothesis_stateful_rule")}


def test_random_sequences(rig: Rig, ledger: Ledger, reliability_full: bool) -> None:
    # Given one moto behind the strict AWS model and one fake Cekura, a fresh secret for every
    # sequence, and the rotator making independent calls side by side as it does in Lambda
    rig.parallel_calls = 4
    # When hypothesis runs random sequences of rotations, faults, kills, retries and actors
    examples = 1_000 if reliability_full else 100
    ran = _run_machine(rig, ledger, examples=examples, steps=30 if reliability_full else 25)
    # Then every invariant held in every sequence, they all ran, every kind of event happened,
    # and rotations completed (so the checks made at completion were reached)
    assert ledger.sequences >= examples
    assert ledger.invariant_violations == 0
    assert ran["check: rotation completed"] > 0
    if reliability_full:  # (a short run may, by chance, miss one)
        assert set(ran) >= RULES, f"rules that never ran: {RULES - set(ran)}"
        # Most of a sequence's steps go to actors and faults (over twenty kinds of rule), so
        # about one sequence in two completes a rotation before its teardown (which completes
        # it, and whose settling rotations are checked on their own): a floor, not a target.
        assert ran["check: rotation completed"] > examples // 3
        assert ran["check: stray sweep"] > 0
        assert ran["check: grace bound"] > 0
        assert ran["check: rotation started inside a finishSecret"] > 0


# Sequences the full run once found failing, replayed as they were (rule by rule): a sequence is
# random from run to run, so what it found must stay found.
_SECRET = {
    "mode": "permissive",
    "throttle": 0.0,
    "lag": 0,
    "policy": "grace",
    "pending": "remove",
    "seed": 2962,
}
_PIN = "app_label_attached"
FOUND: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # A createSecret leaves a stray, and this finishSecret's listing is refused once (a passing
    # 403): the container remembers the refusal, so the strays wait for a later container; the
    # harness took the sweep for done (3).
    "a stray while one listing is refused": [
        ("a_secret", _SECRET),
        ("rotate_secret", {}),
        ("lambda_will_be_killed", {"point": ("PutSecretValue", False), "skip": 0}),
        ("cekura_fails_next", {"route": "list", "kind": "403"}),
        ("rotate_secret", {}),
        ("rotate_secret", {}),
    ],
    # A create's answer is lost (a stray), then a person stores a key without `key_id` before
    # the retried rotation's finishSecret: that key may be the stray, so the sweep rightly spares
    # it; the harness expected it gone (3).
    "a stray while a key is known only by value": [
        ("a_secret", {**_SECRET, "seed": 0}),
        ("cekura_fails_next", {"route": "delete", "kind": "404"}),
        ("kms_key_changes", {}),
        ("cekura_fails_next", {"route": "create", "kind": "timeout"}),
        ("rotate_secret", {}),
        ("kms_key_changes", {}),
        ("next_step_runs", {}),
        ("app_label_removed", {"label": "APP_PINNED"}),
        ("person_puts_a_new_key", {"with_key_id": False}),
        ("kms_key_changes", {}),
    ],
    # Cekura answers a DELETE of the secret's first key 404 (an injected lie): the rotator has to
    # believe it, and a key it did not mint cannot come back as a stray; the harness still
    # counted the key as owed (8).
    "a key Cekura called gone while it was live": [
        ("a_secret", {**_SECRET, "seed": 0}),
        ("cekura_fails_next", {"route": "delete", "kind": "404"}),
        ("cekura_fails_next", {"route": "create", "kind": "timeout"}),
        ("rotate_secret", {}),
        ("next_step_runs", {}),
        ("person_puts_a_new_key", {"with_key_id": False}),
        ("rotate_secret", {}),
    ],
    # Reads lag writes, and a person's version the rotator never read, pinned by an application,
    # lagged through every later rotation: the model counted lag in reads, never in time, so
    # "the faults cleared" never came for it (8).
    "a pinned version read only after its lag": [
        ("a_secret", {**_SECRET, "lag": 3, "seed": 980}),
        ("person_puts_a_new_key", {"with_key_id": True}),
        ("person_puts_a_new_key", {"with_key_id": True}),
        (_PIN, {"label": "APP_PINNED", "which": "previous"}),
        ("person_puts_a_new_key", {"with_key_id": False}),
    ],
    # With the labels full, a debt on a key stored in two versions (a long history repeats the
    # value) is given up loudly for one of them: the harness wanted the other one named (8).
    "a debt given up for a key two versions hold": [
        ("a_secret", {**_SECRET, "seed": 1205}),
        ("person_moves_the_secret", {"with_key_id": False}),
        ("rotate_secret", {}),
        ("long_history", {}),
        ("person_moves_the_secret", {"with_key_id": False}),
        ("labels_nearly_full", {"spare": 0}),
        ("rotate_secret", {}),
    ],
    # A record's change from manual back to owed is cut off after its new label is written (a
    # throttled answer lost); the change made again removed both labels, the new one too, and
    # the debt was lost (8).
    "a record change made again after it was cut off": [
        ("a_secret", {**_SECRET, "throttle": 0.15, "seed": 1}),
        ("lambda_will_be_killed", {"point": ("GetSecretValue", True), "skip": 0}),
        ("person_moves_the_secret", {"with_key_id": False}),
        ("rotate_secret", {}),
        ("rotate_secret", {}),
        ("secrets_manager_retries", {}),
        (
            "aws_answer_lost",
            {"error": "throttling", "operation": "UpdateSecretVersionStage", "skip": 2},
        ),
        ("secrets_manager_retries", {}),
        ("kms_key_changes", {}),
        ("secrets_manager_retries", {}),
        ("person_moves_the_secret", {"with_key_id": False}),
    ],
    # A manual record on a version the rotator cannot read (KMS) that an application then pins:
    # the record must go back to owed even though its key cannot be named (11).
    "manual record on a pinned unreadable version": [
        ("a_secret", _SECRET),
        ("kms_key_changes", {}),
        ("person_puts_a_new_key", {"with_key_id": True}),
        ("kms_key_changes", {}),
        ("kms_key_changes", {}),
        ("rotate_secret", {}),
        ("rotate_secret", {}),
        ("person_moves_the_secret", {"with_key_id": False}),
        ("kms_key_changes", {}),
        ("rotate_secret", {}),
        (_PIN, {"label": "APP_OTHER", "which": "pending"}),
        ("kms_key_changes", {}),
        ("person_puts_a_new_key", {"with_key_id": True}),
        ("rotate_secret", {}),
        ("kms_key_changes", {}),
        ("rotate_secret", {}),
        (_PIN, {"label": "APP_OTHER", "which": "recorded"}),
        (_PIN, {"label": "APP_PINNED", "which": "previous"}),
        ("rotate_secret", {}),
    ],
    # An application pins a version whose key was revoked while nothing held it: that is no
    # revocation of a held key (9).
    "an application pins a key revoked before": [
        ("a_secret", _SECRET),
        ("kms_key_changes", {}),
        ("person_puts_a_new_key", {"with_key_id": True}),
        (_PIN, {"label": "APP_PINNED", "which": "recorded"}),
        ("rotate_secret", {}),
        ("kms_key_changes", {}),
        (_PIN, {"label": "APP_PINNED", "which": "pending"}),
        (_PIN, {"label": "APP_PINNED", "which": "current"}),
        ("rotate_secret", {}),
        ("kms_key_changes", {}),
        ("rotate_secret", {}),
        (_PIN, {"label": "APP_PINNED", "which": "unlabelled"}),
        ("person_puts_a_new_key", {"with_key_id": False}),
        (_PIN, {"label": "APP_PINNED", "which": "recorded"}),
        ("next_step_runs", {}),
        ("rotate_secret", {}),
        ("person_moves_the_secret", {"with_key_id": False}),
        ("person_moves_the_secret", {"with_key_id": True}),
        ("person_puts_a_new_key", {"with_key_id": True}),
        (_PIN, {"label": "APP_PINNED", "which": "recorded"}),
        (_PIN, {"label": "APP_OTHER", "which": "pending"}),
        ("kms_key_changes", {}),
        (_PIN, {"label": "APP_OTHER", "which": "unlabelled"}),
    ],
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_a_sequence_found_failing_once(rig: Rig, ledger: Ledger, name: str) -> None:
    # Given the rotator's calls side by side as in Lambda
    rig.parallel_calls = 4
    machine = type("Found", (RotationMachine,), {"rig": rig, "ledger": ledger, "ran": Counter()})()
    # When its rules run in order (the first makes the secret), and the sequence ends as every
    # sequence does
    for rule_name, arguments in FOUND[name]:
        getattr(machine, rule_name)(**arguments)
    machine.teardown()
    # Then no invariant was violated on the way or at the end
    assert ledger.invariant_violations == 0
    assert ledger.sequences == 1
