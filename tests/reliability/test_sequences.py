"""Random sequences (hypothesis stateful testing): rotations, faults, crashes, retries, people.

Each sequence gets a fresh secret and project (on one moto and one fake Cekura per test) and runs
rules in any order: RotateSecret, the next step, Secrets Manager's retry of a failed rotation,
faults for the next AWS or Cekura call, a kill of the Lambda at a boundary, a person's manual
PutSecretValue with a new key mid-rotation, a second RotateSecret while one is in progress,
policy and permission-mode switches.

The model is AWS's behaviour, not moto's. Where they differ it is corrected here:
- RotateSecret while AWSPENDING is on a version that is not AWSCURRENT: AWS refuses ("a previous
  rotation isn't complete; that rotation will be reattempted") and retries the old token; moto
  would start a new rotation, so moto is not called then.
- RotateSecret while AWSPENDING is on the AWSCURRENT version: AWS starts a new rotation and moves
  the label; moto refuses, so the label is removed first.
- PutSecretValue by a person: moto gives AWSPREVIOUS to the version it last made current itself,
  not to the one UpdateSecretVersionStage made current (it can leave two AWSCURRENT labels and
  drop AWSPENDING), so the person's edit is made as a put plus a label move, which moto does
  as AWS does.

Cheap invariants (1: AWSCURRENT works; 4: no key material in anything new) run after every rule;
the rest when a rotation completes and at teardown, after the faults clear and the rotation in
progress is retried to completion (2, 3, 5).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

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

from cekura_rotator.steps import Step
from infra.local.stack import secret_json
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
# Log lines after which a key the rotator meant to delete may still be live: a failure, a
# refusal, or a 404 for a key that exists (an injected lie the rotator has to believe).
NOT_DELETED = ('"level": "WARNING"', "does not let API keys", "Key was already gone")


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
        self.scanned_logs = 0
        self.scanned_outputs = 0

    @property
    def harness(self) -> Harness:
        assert self.h is not None
        return self.h

    # -- setup -----------------------------------------------------------------------------

    # Weighted towards grace with deletion permitted, the world in which invariant 5 applies.
    @initialize(
        mode=st.sampled_from(("permissive", "permissive", "spec")),
        policy=st.sampled_from(("grace", "grace", "immediate", "off")),
    )
    def a_secret(self, mode: Mode, policy: str) -> None:
        self.rig.reset()
        self.rig.forget_logs()
        self.h = self.rig.harness(policy=policy, mode=mode)
        self.clean = mode == "permissive" and policy == "grace"
        self.scanned_logs = len(self.rig.logs.text)

    # -- Secrets Manager ---------------------------------------------------------------------

    @rule()
    def rotate_secret(self) -> None:
        """RotateSecret: a new rotation, or (one in progress) AWS's reattempt of that one."""
        self.ran["rotate_secret"] += 1
        h = self.harness
        stages = h.world.stages()
        in_progress = next(
            (v for v, s in stages.items() if "AWSPENDING" in s and "AWSCURRENT" not in s), None
        )
        if in_progress is not None:
            self.token, self.next_step, self.failed = in_progress, 0, False
            self._run(until_failure=True)
            return
        for version, labels in stages.items():
            if "AWSPENDING" in labels:  # on AWSCURRENT: AWS moves it, moto would refuse
                h.sm.update_secret_version_stage(
                    SecretId=h.arn, VersionStage="AWSPENDING", RemoveFromVersionId=version
                )
        if self.token is not None:
            self._abandon(self.token)
        self.token, self.next_step, self.failed = h.start_rotation(), 0, False

    @precondition(lambda self: self.token is not None and not self.failed)
    @rule()
    def next_step_runs(self) -> None:
        self.ran["next_step_runs"] += 1
        self._run(until_failure=False)

    @precondition(lambda self: self.token is not None and self.failed)
    @rule()
    def secrets_manager_retries(self) -> None:
        """The failed step again with the same token, then the steps after it."""
        self.ran["secrets_manager_retries"] += 1
        self._run(until_failure=True)

    # -- faults and kills ------------------------------------------------------------------------

    @rule(
        operation=st.sampled_from(AWS_OPERATIONS),
        error=st.sampled_from(sorted(AWS_ERRORS)),
        skip=st.integers(0, 2),
    )
    def aws_fails_soon(self, operation: str, error: str, skip: int) -> None:
        self.ran["aws_fails_soon"] += 1
        self.rig.aws.arm(AwsFault(operation, error, skip=skip))

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
        """A person stores a fresh dashboard key as AWSCURRENT, rotation or not."""
        self.ran["person_puts_a_new_key"] += 1
        h = self.harness
        before = h.world.stages()
        if self.token is not None and before[self.token] == ["AWSCURRENT"]:
            # Its finishSecret failed after the move: for AWS that rotation is over (no
            # AWSPENDING), and the person's edit supersedes it before any retry.
            self._abandon(self.token)
            self.token = None
        issued = h.fake.issue_key(h.project_id, "person key")
        h.trusted_key_ids.add(issued.id)  # a person's choice, not one the rotator must test
        extra = {"key_id": issued.id} if with_key_id else {}
        # AWS's PutSecretValue, in two moto calls (see the module docstring): the new version
        # gets AWSCURRENT, the old one AWSPREVIOUS and keeps any other label.
        new = h.sm.put_secret_value(
            SecretId=h.arn,
            SecretString=secret_json(issued.key, h.project_id, **extra),
            VersionStages=["PERSON"],
        )["VersionId"]
        h.sm.update_secret_version_stage(
            SecretId=h.arn,
            VersionStage="AWSCURRENT",
            MoveToVersionId=new,
            RemoveFromVersionId=next(v for v, s in before.items() if "AWSCURRENT" in s),
        )
        h.sm.update_secret_version_stage(
            SecretId=h.arn, VersionStage="PERSON", RemoveFromVersionId=new
        )
        # The version that was AWSPREVIOUS loses its last label: the person's doing, not the
        # rotator's, so its key does not count against the grace bound.
        for version in invariants.versions(h.sm, h.arn):
            if before.get(version.id) == ["AWSPREVIOUS"] and version.api_key:
                key_id = h.fake.key_id(version.api_key)
                if key_id is not None:
                    h.evidence.excused_key_ids.add(key_id)

    @rule(policy=st.sampled_from(POLICIES))
    def policy_changes(self, policy: str) -> None:
        self.ran["policy_changes"] += 1
        self.harness.set_policy(policy)
        self.clean = self.clean and policy == "grace"

    @rule(mode=st.sampled_from(MODES))
    def cekura_permissions_change(self, mode: Mode) -> None:
        self.ran["cekura_permissions_change"] += 1
        self.harness.set_mode(mode)
        self.clean = self.clean and mode == "permissive"

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
        # Faults clear, and Secrets Manager retries the rotation in progress with its token.
        self.rig.reset()
        retried = self.token
        if retried is not None:
            self.failed = True
            self._run(until_failure=True, retries=5)
        all_versions = invariants.versions(h.sm, h.arn)
        current = next(v.id for v in all_versions if "AWSCURRENT" in v.stages)
        found = invariants.strays(h.fake, h.project_id, all_versions)
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
        ]
        if retried is None:  # then only: no AWSPENDING off AWSCURRENT
            checks[2] = lambda: invariants.rotation_completed(all_versions, current)
        if self._clean():
            checks.append(lambda: invariants.grace_bound(h.fake, h.project_id, h.evidence))
        invariants.verify(self.ledger, *checks)
        if self.clean:
            # Grace with deletion allowed throughout: two more rotations pay every debt (8).
            h.settle(self.ledger, deletion_allowed=True)
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
            if h.step(step, token) is not None:
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

    def _completed(self, token: str, finish_log: str) -> None:
        """finishSecret passed: the rotation is complete."""
        h = self.harness
        self.token = None
        checks = []
        # Swept: Cekura let this finishSecret list and delete everything it meant to.
        swept = (
            h.fake.mode == "permissive"
            and h.policy != "off"
            and not any(line in finish_log for line in NOT_DELETED)
        )
        self.ran["check: rotation completed"] += 1
        if swept:
            found = invariants.strays(h.fake, h.project_id, invariants.versions(h.sm, h.arn))
            checks.append(lambda: invariants.no_strays_of(found, token))
            self.ran["check: stray sweep"] += 1
        if self._clean():
            checks.append(lambda: invariants.grace_bound(h.fake, h.project_id, h.evidence))
            self.ran["check: grace bound"] += 1
        invariants.verify(self.ledger, *checks)

    def _clean(self) -> bool:
        """Grace and permissive throughout, and the rotator never warned."""
        text = self.harness.log_text
        return self.clean and not any(line in text for line in NOT_DELETED)

    def _abandon(self, token: str) -> None:
        """A new rotation starts before `token`'s finishSecret got past the AWSCURRENT move.
        What that finishSecret had left is recorded (owed labels) or found again (strays, by
        name) by later ones; until then its strays may exceed the grace bound."""
        h = self.harness
        found = invariants.strays(h.fake, h.project_id, invariants.versions(h.sm, h.arn))
        h.evidence.excused_key_ids |= {k.id for k in found if k.name.endswith(f"-{token[:8]}")}
        if self.h is not None and self.h.policy == "immediate":
            self.clean = False


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


def test_random_sequences(rig: Rig, ledger: Ledger, reliability_full: bool) -> None:
    # Given one moto and one fake Cekura, a fresh secret for every sequence, and the rotator
    # making independent calls side by side as it does in Lambda
    rig.parallel_calls = 4
    # When hypothesis runs random sequences of rotations, faults, kills, retries and edits
    examples = 1_000 if reliability_full else 50
    ran = _run_machine(rig, ledger, examples=examples, steps=25 if reliability_full else 15)
    # Then every invariant held in every sequence, they all ran, every kind of event happened,
    # and rotations completed (so the checks made at completion were reached)
    assert ledger.sequences >= examples
    assert ledger.invariant_violations == 0
    assert ran["check: rotation completed"] > 0
    if reliability_full:  # (a short run may, by chance, miss one)
        rules = {
            n for n, v in vars(RotationMachine).items() if hasattr(v, "hypothesis_stateful_rule")
        }
        assert len(rules) == 9
        assert rules <= set(ran), f"rules that never ran: {rules - set(ran)}"
        assert ran["check: rotation completed"] > examples
        assert ran["check: stray sweep"] > 0
        assert ran["check: grace bound"] > 0
