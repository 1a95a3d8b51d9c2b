"""The checks over the fleet: each secret's current key, pending and overdue rotations and owed
revocations, then what needs the whole run (proof that Cekura answers normally, the heals).

The verdicts are `rules`; this module makes the calls, through the two ports.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Lock
from typing import Any

from cekura_rotator import ledger
from cekura_rotator.cekura import CekuraClient
from cekura_rotator.config import Config
from cekura_rotator.credentials import AdminCredential, admin_arn_for, load_admin_credential
from cekura_rotator.errors import (
    AdminSecretError,
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
    CekuraTransientError,
    SecretFormatError,
    SecretsStoreError,
)
from cekura_rotator.health.report import CurrentKey, HealthReport, SecretHealth
from cekura_rotator.health.rules import (
    heals_suppressed,
    in_cursor_order,
    is_stuck,
    next_cursor,
    overdue,
    pending_version,
    rotated_by,
    unqualified,
)
from cekura_rotator.health.settings import HealthSettings
from cekura_rotator.observability import logger, redactor
from cekura_rotator.parallel import begun_in_order
from cekura_rotator.revocation import Proof, Revoker, VersionReader, revocation_credential
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import CURRENT, SecretDescription, SecretDetails, SecretsStore

PROG = "cekura-rotator"
# Secrets checked side by side: a check mostly waits on the network, and about this many calls
# in flight already use Cekura's whole rate limit at 20 requests/s (`make bench`).
WORKERS = 4
# Checks in a row without a verdict from Cekura after which a run stops (Cekura is down).
CEKURA_DOWN_AFTER = 8
# Kept back from the end of a run for the writes that follow the checks (heals, deferred clears).
_FINISH_RESERVE_MAX = 30.0
_FINISH_RESERVE_SHARE = 0.1
# A write is begun only with at least this long left before the deadline.
_WRITE_MARGIN = 2.0


@dataclass
class _Run:
    """What one run shares across its secrets (its threads hold `lock` to change it)."""

    fix: bool
    now: datetime
    deadline: float | None
    stop_at: float | None
    lock: Lock = field(default_factory=Lock)
    proof: str | None = None  # why Cekura is known to answer normally in this run
    admins: dict[tuple[str, int], AdminCredential | None] = field(default_factory=dict)
    admin_answers: dict[tuple[str, int], bool] = field(default_factory=dict)
    owed_settled: int = 0
    manual_cleared: int = 0
    heal_suppressed: bool = False

    # Checks in a row that Cekura gave no verdict on (5xx, timeouts, 429 until the deadline).
    unanswered_streak: int = 0

    def prove(self, why: str) -> None:
        with self.lock:
            self.proof = self.proof or why

    def answered(self) -> None:
        with self.lock:
            self.unanswered_streak = 0

    def unanswered(self) -> None:
        with self.lock:
            self.unanswered_streak += 1

    @property
    def cekura_down(self) -> bool:
        """Cekura answered none of the last checks: the rest waits for the next run, rather
        than each spending its retries on an outage."""
        return self.unanswered_streak >= CEKURA_DOWN_AFTER

    def add(self, *, settled: int = 0, cleared: int = 0) -> None:
        with self.lock:
            self.owed_settled += settled
            self.manual_cleared += cleared


@dataclass
class _Outcome:
    """One secret's check as it goes (becomes a SecretHealth)."""

    details: SecretDetails
    current_key: CurrentKey = "unknown"
    value: SecretValue | None = field(default=None, repr=False)
    status: int | None = None
    in_progress: bool = False
    stuck: bool = False
    overdue: bool = False
    owed: int = 0
    grace: int = 0
    manual: int = 0
    notes: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    # Manual entries whose key Cekura no longer knows, to clear once Cekura is proven.
    gone: list[tuple[ledger.Entry, int | None]] = field(default_factory=list)
    settle_waiting: bool = False  # owed entries to settle once Cekura is proven
    heal_with: str | None = None  # the admin secret a heal would mint with
    healed: bool = False
    done: bool = True

    @property
    def secret(self) -> SecretDescription:
        return self.details.secret

    @property
    def arn(self) -> str:
        return self.details.secret.arn

    @property
    def key_id(self) -> int | None:
        return self.value.key_id if self.value else None

    def health(self) -> SecretHealth:
        s = self.secret
        return SecretHealth(
            arn=s.arn,
            name=s.name,
            rotation_enabled=s.rotation_enabled,
            last_rotated=s.last_rotated,
            next_rotation=s.next_rotation,
            current_key=self.current_key,
            current_key_id=self.key_id,
            stuck=self.stuck,
            overdue=self.overdue,
            owed=self.owed,
            grace=self.grace,
            manual=self.manual,
            notes=tuple(self.notes),
            actions=tuple(self.actions),
        )


class HealthCheck:
    """The checks over the fleet (or named secrets). One per container; `run` once per event."""

    def __init__(
        self,
        *,
        config: Config,
        settings: HealthSettings,
        store: SecretsStore,
        cekura: CekuraClient,
        revoker: Revoker | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        workers: int = WORKERS,
    ):
        self._config = config
        self._settings = settings
        self._store = store
        self._cekura = cekura
        self._revoker = revoker or Revoker(store=store, cekura=cekura, clock=clock)
        self._clock = clock
        self._now = now
        self._workers = max(1, workers)

    @property
    def settings(self) -> HealthSettings:
        return self._settings

    def run(
        self,
        secret_ids: Sequence[str] | None = None,
        *,
        fix: bool = True,
        deadline: float | None = None,
        start_after: str | None = None,
    ) -> HealthReport:
        """Check every secret of this rotator (or those named); with `fix`, settle, clear and
        heal. Secrets not checked before `deadline` are reported `unfinished`, in order."""
        started = self._clock()
        if secret_ids is not None:
            targets, refused = self._named(secret_ids)
            if refused:
                return HealthReport([], [], [], rejected_input=refused)
            start_after = None
        else:
            mine = [
                d
                for d in self._store.list_secrets()
                if rotated_by(d.secret, self._settings.rotation_function_arn)
            ]
            targets = in_cursor_order(mine, start_after)
        run = _Run(fix=fix, now=self._now(), deadline=deadline, stop_at=_stop_at(started, deadline))
        checked = begun_in_order(
            targets,
            lambda s: self._check(run, s),
            lambda: self._stop(run),
            workers=self._workers,
            thread_name_prefix="health",
        )
        if run.cekura_down:
            logger.error(
                "Cekura gave no verdict on the last checks; the rest is left for the next run",
                checks=CEKURA_DOWN_AFTER,
            )
        outcomes = [o for o in checked if o is not None and o.done]
        self._after_checks(run, outcomes)
        finished = {o.arn for o in outcomes if o.done}
        order = [d.secret.arn for d in targets]
        unfinished = [arn for arn in order if arn not in finished]
        return HealthReport(
            secrets=[o.health() for o in outcomes if o.done],
            unfinished=unfinished,
            healed=[o.arn for o in outcomes if o.healed],
            owed_settled=run.owed_settled,
            manual_cleared=run.manual_cleared,
            heal_suppressed=run.heal_suppressed,
            next_start_after=(
                next_cursor(order, set(unfinished), start_after) if secret_ids is None else None
            ),
        )

    # -- which secrets ------------------------------------------------------------------------

    def _named(self, secret_ids: Sequence[str]) -> tuple[list[SecretDetails], dict[str, str]]:
        """The secrets named, each checked to be this rotator's; else why not, per id."""
        targets: dict[str, SecretDetails] = {}
        refused: dict[str, str] = {}
        function = unqualified(self._settings.rotation_function_arn)
        for secret_id in dict.fromkeys(secret_ids):
            try:
                details = self._store.describe_details(secret_id)
            except SecretsStoreError as e:
                if e.code == "ResourceNotFoundException":
                    refused[secret_id] = "no such secret"
                    continue
                if e.code == "AccessDeniedException":
                    refused[secret_id] = (
                        f"this function may not read it (its role reads only secrets rotated "
                        f"by {function})"
                    )
                    continue
                raise
            secret = details.secret
            if details.deleted_date is not None:
                refused[secret_id] = "the secret is scheduled for deletion"
            elif not rotated_by(secret, function):
                refused[secret_id] = (
                    f"rotated by {secret.rotation_lambda_arn or 'no function'}, not by {function}"
                )
            else:
                targets.setdefault(secret.arn, details)
        return list(targets.values()), refused

    # -- one secret ---------------------------------------------------------------------------

    def _check(self, run: _Run, details: SecretDetails) -> _Outcome:
        out = _Outcome(details)
        secret = details.secret
        self._check_pending(run, out)
        late = overdue(details, run.now)
        out.overdue = late.overdue
        if late.note:
            out.notes.append(late.note)
        if late.overdue:
            logger.warning(
                "Rotation overdue",
                secret_arn=secret.arn,
                next_rotation=_iso(secret.next_rotation),
                last_rotated=_iso(secret.last_rotated),
                note=late.note,
            )
        self._check_current(run, out)
        if not out.done:
            return out  # out of time: nothing more for this secret in this run
        if ledger.entries(secret.versions):
            self._check_debts(run, out)
        if out.current_key == "rejected":
            self._plan_heal(out)
        if out.current_key == "accepted" and not (out.stuck or out.overdue or out.notes):
            logger.debug("Secret healthy", secret_arn=secret.arn, key_id=out.key_id)
        return out

    def _check_pending(self, run: _Run, out: _Outcome) -> None:
        pending = pending_version(out.secret.versions)
        if pending is None:
            return
        out.in_progress = True
        try:
            created = next(
                (v.created for v in self._store.list_versions(out.arn) if v.version_id == pending),
                None,
            )
        except SecretsStoreError as e:
            out.notes.append(
                f"a rotation is in progress (version {pending}); its age cannot be read ({e.code})"
            )
            return
        if not is_stuck(created, run.now, self._settings.stuck_hours):
            out.notes.append(
                f"a rotation is in progress: version {pending} carries AWSPENDING since "
                f"{_iso(created)}"
            )
            return
        out.stuck = True
        command = f"{PROG} rotate --cancel --secret-id {out.arn}"
        out.notes.append(
            f"rotation stuck: version {pending} has carried AWSPENDING since {_iso(created)} "
            f"(more than {self._settings.stuck_hours:g} h); clear it with `{command}`"
        )
        logger.warning(
            "Rotation stuck: AWSPENDING on a version that is not AWSCURRENT",
            secret_arn=out.arn,
            version_id=pending,
            pending_since=_iso(created),
            stuck_hours=self._settings.stuck_hours,
            command=command,
        )

    def _check_current(self, run: _Run, out: _Outcome) -> None:
        version = out.secret.version_with(CURRENT)
        fields: dict[str, Any] = {"secret_arn": out.arn, "version_id": version}
        try:
            raw = self._store.read(out.arn, stage=CURRENT)
        except SecretsStoreError as e:
            self._unreadable(out, f"cannot be read ({e.code})", error_code=e.code, **fields)
            return
        if raw is None:
            self._unreadable(out, "has no value", **fields)
            return
        try:
            value = SecretValue.parse(raw, default_project_id=self._config.default_project_id)
        except SecretFormatError as e:
            self._unreadable(out, f"is not in the secret's format: {e.message}", **fields)
            return
        redactor.watch(value.api_key)
        out.value = value
        if value.project_id is None:
            out.notes.append(
                "the current key was not checked: the secret names no project_id and "
                "CEKURA_PROJECT_ID is not set"
            )
            return
        try:
            self._cekura.validate(value.api_key, project_id=value.project_id, deadline=run.stop_at)
        except (CekuraAuthError, CekuraForbiddenError) as e:
            out.current_key, out.status = "rejected", e.status
            run.answered()
            return
        except CekuraError as e:
            out.status = e.status
            out.notes.append(f"Cekura gave no verdict on the current key: {e.message}")
            if isinstance(e, CekuraTransientError):
                run.unanswered()
                if _past(self._clock() + _WRITE_MARGIN, run.stop_at):
                    out.done = False  # out of time, not a verdict: the next run checks it first
            return
        out.current_key = "accepted"
        run.prove("Cekura accepted a key")
        run.answered()

    @staticmethod
    def _unreadable(out: _Outcome, why: str, **fields: Any) -> None:
        out.current_key = "unreadable"
        out.notes.append(f"AWSCURRENT (version {fields.get('version_id')}) {why}; key not checked")
        logger.warning("The current version cannot be read; its key was not checked", **fields)

    # -- debts --------------------------------------------------------------------------------

    def _check_debts(self, run: _Run, out: _Outcome) -> None:
        found = ledger.entries(out.secret.versions)
        out.owed = sum(1 for e in found if e.state is ledger.State.OWED)
        out.grace = sum(1 for e in found if e.state is ledger.State.GRACE)
        out.manual = sum(1 for e in found if e.state is ledger.State.MANUAL)
        for entry in found:
            if entry.state is ledger.State.MANUAL:
                self._prove_manual(run, out, entry)
        if out.owed:
            if not run.fix:
                out.actions.append(f"would settle {out.owed} owed revocation(s)")
            elif run.proof:
                self._settle(run, out, run.stop_at)
            else:
                out.settle_waiting = True

    def _prove_manual(self, run: _Run, out: _Outcome, entry: ledger.Entry) -> None:
        """Ask Cekura whether a manual entry's key still exists; clear the record on 401."""
        fields: dict[str, Any] = {"secret_arn": out.arn, "version_id": entry.version_id}
        try:
            raw = self._store.read(out.arn, version_id=entry.version_id)
        except SecretsStoreError as e:
            out.notes.append(
                f"manual entry {entry.label} (version {entry.version_id}): the version cannot be "
                f"read ({e.code}); kept"
            )
            logger.warning(
                "A manual revocation's version cannot be read; the record is kept",
                key_id=entry.key_id,
                error_code=e.code,
                **fields,
            )
            return
        key = _key_in(raw, self._config)
        key_id = entry.key_id or (key.key_id if key else None)
        what = f"manual entry {entry.label} (key {key_id or '?'}, version {entry.version_id})"
        fields["key_id"] = key_id
        project = entry.project or (key.project_id if key else None)
        if key is None or project is None:
            out.notes.append(f"{what}: its key or project cannot be told from the version; kept")
            return
        redactor.watch(key.api_key)
        proof = self._revoker.prove_gone(key.api_key, project=project, deadline=run.stop_at)
        if proof is Proof.LIVE:
            out.notes.append(
                f"{what}: Cekura still accepts the key; delete it in the Cekura dashboard, and "
                "the next health check clears the record"
            )
            logger.info(
                "Manual revocation kept: Cekura still accepts the key; delete it in the dashboard",
                **fields,
            )
        elif proof is Proof.UNKNOWN:
            out.notes.append(f"{what}: Cekura gave no verdict on the key; kept")
        elif not run.fix:
            out.actions.append(f"would clear {what}: Cekura no longer knows the key")
        elif run.proof:
            self._clear(run, out, entry, key_id)
        else:
            out.gone.append((entry, key_id))

    def _clear(self, run: _Run, out: _Outcome, entry: ledger.Entry, key_id: int | None) -> None:
        if not self._revoker.recorder.clear(out.arn, entry):
            out.notes.append(f"clearing manual entry {entry.label} failed; the next run retries")
            return
        run.add(cleared=1)
        out.manual -= 1
        out.actions.append(
            f"cleared manual entry {entry.label}: key {key_id or '?'} was deleted in the "
            "Cekura dashboard"
        )
        logger.info(
            "Manual revocation record cleared: Cekura no longer knows the key (deleted in the "
            "dashboard)",
            secret_arn=out.arn,
            version_id=entry.version_id,
            key_id=key_id,
            labels=list(entry.labels),
        )

    def _settle(self, run: _Run, out: _Outcome, deadline: float | None) -> None:
        """Settle the owed entries as finishSecret does (the revoker re-describes the secret
        before any DELETE, and never deletes a key a label holds)."""
        if out.value is None:
            out.notes.append("owed revocations not settled: the current value was not read")
            return
        who = revocation_credential(out.value, arn=out.arn, config=self._config, store=self._store)
        reader = VersionReader(self._store, out.arn, self._config.default_project_id)
        current = out.secret.version_with(CURRENT)
        if current is not None:
            reader.remember(current, out.value)  # read already: not again
        report = self._revoker.settle(
            out.arn, out.secret.versions, who=who, deadline=deadline, reader=reader
        )
        run.add(settled=report.cleared)
        out.owed, out.grace, out.manual = report.owed, report.grace, report.manual
        if report.cleared:
            out.actions.append(f"settled {report.cleared} owed revocation(s)")
        out.notes.extend(f"revocation kept: {why}" for why in report.kept)

    # -- heal ---------------------------------------------------------------------------------

    def _plan_heal(self, out: _Outcome) -> None:
        """A rejected key: alarm, and say what happens next (a heal is decided after all checks)."""
        secret, value = out.secret, out.value
        assert value is not None  # a verdict needs a value
        fields: dict[str, Any] = {
            "secret_arn": out.arn,
            "secret_name": secret.name,
            "version_id": secret.version_with(CURRENT),
            "key_id": value.key_id,
            "status": out.status,
        }
        function = unqualified(self._settings.rotation_function_arn)
        dead = f"Cekura rejects the current key {value.key_id or ''} (HTTP {out.status})"
        recovery = (
            "deploy the stack with AdminSecretArns=<admin secret ARN>, then "
            f"`{PROG} rotate --secret-id {out.arn}`; or store a key made in the dashboard with "
            f"`{PROG} bootstrap --update --secret-name {secret.name} --project-id "
            f"{value.project_id} --function-arn {function}`"
        )
        try:
            admin = admin_arn_for(value, self._config)
        except AdminSecretError as e:
            admin, recovery = None, f"{e.message}; {recovery}"
        why = None
        if admin is None:
            why = "no admin credential is configured, so nothing can mint its successor"
        elif not self._settings.heal:
            why, recovery = "HEAL_DEAD_KEYS is false", f"`{PROG} rotate --secret-id {out.arn}`"
        elif not secret.rotation_enabled:
            why, recovery = "rotation is disabled", f"`{PROG} rotate --secret-id {out.arn}`"
        elif out.in_progress:
            why = "a rotation is already in progress"
            recovery = f"let it finish, or `{PROG} rotate --cancel --secret-id {out.arn}`"
        if why is not None:
            out.notes.append(f"{dead}; not healed: {why}. To recover: {recovery}")
            logger.warning(
                "Cekura rejects the current key; not healed",
                reason=why,
                recovery=recovery,
                **fields,
            )
            return
        out.heal_with = admin
        out.notes.append(f"{dead}; a rotation with admin secret {admin} can replace it")
        logger.warning(
            "Cekura rejects the current key; a rotation with the admin credential can replace it",
            admin_secret_arn=admin,
            **fields,
        )

    def _after_checks(self, run: _Run, outcomes: list[_Outcome]) -> None:
        """What needs the whole run: proof for deferred clears and settles, and the heals."""
        healing = self._heals_allowed(run, outcomes)
        if run.fix and not run.proof:
            # The admin credential a heal would use, asked once: its answer may prove Cekura.
            for o in healing:
                admin = self._admin(run, o)
                if admin is not None:
                    self._admin_accepted(run, admin, _project(o))
        self._deferred_debts(run, [o for o in outcomes if o.gone or o.settle_waiting])
        for o in healing:
            if not run.fix:
                o.actions.append(f"would start a rotation with admin secret {o.heal_with}")
            elif not self._time_left(run):
                o.done = False
            else:
                self._heal(run, o)

    @staticmethod
    def _heals_allowed(run: _Run, outcomes: list[_Outcome]) -> list[_Outcome]:
        """The secrets to heal, unless most keys Cekura answered for were rejected."""
        healing = [o for o in outcomes if o.heal_with is not None]
        accepted = sum(1 for o in outcomes if o.current_key == "accepted")
        rejected = sum(1 for o in outcomes if o.current_key == "rejected")
        if not healing or not heals_suppressed(accepted, rejected):
            return healing
        run.heal_suppressed = True
        logger.error(
            "Healing suppressed: Cekura rejected more than half of the keys it answered for; "
            "suspect Cekura before the keys",
            rejected=rejected,
            answered=accepted + rejected,
        )
        for o in healing:
            o.notes.append("not healed: most keys were rejected in this run (HealSuppressed)")
        return []

    def _deferred_debts(self, run: _Run, waiting: list[_Outcome]) -> None:
        """Clears and settles that waited for proof that Cekura answers normally."""
        if waiting and not run.proof:
            logger.warning(
                "Nothing cleared or settled: Cekura accepted no key in this run, so its 401 "
                "proves nothing",
                secrets=len(waiting),
            )
            for o in waiting:
                o.notes.append("not cleared or settled: no proof Cekura answers normally this run")
            return
        for o in waiting:
            if not self._time_left(run):
                o.done = False
                continue
            for entry, key_id in o.gone:
                self._clear(run, o, entry, key_id)
            if o.settle_waiting:
                self._settle(run, o, run.deadline)

    def _heal(self, run: _Run, out: _Outcome) -> None:
        fields: dict[str, Any] = {"secret_arn": out.arn, "admin_secret_arn": out.heal_with}
        admin = self._admin(run, out)
        if admin is None:
            out.notes.append(
                f"not healed: admin secret {out.heal_with} cannot be read or may not mint for "
                f"project {_project(out)}"
            )
            return
        if not run.proof and not self._admin_accepted(run, admin, _project(out)):
            out.notes.append(
                "not healed: no proof that Cekura answers normally (no key accepted in this "
                "run, and the admin credential was not accepted)"
            )
            logger.warning("Not healed: no proof that Cekura answers normally", **fields)
            return
        function_arn = out.secret.rotation_lambda_arn or self._settings.rotation_function_arn
        version = str(uuid.uuid4())  # the new version's id (RotateSecret's ClientRequestToken)
        try:
            # The function is named although AWS would keep the configured one: moto forgets it.
            self._store.start_rotation(out.arn, token=version, function_arn=function_arn)
        except SecretsStoreError as e:
            out.notes.append(f"starting the healing rotation failed: {e.message}")
            logger.error("Starting the healing rotation failed", error_code=e.code, **fields)
            return
        out.healed = True
        out.actions.append(
            f"started a rotation (version {version}) with admin secret {out.heal_with} to "
            "replace the rejected key"
        )
        logger.warning("Rotation started to replace the rejected key", version_id=version, **fields)

    def _admin(self, run: _Run, out: _Outcome) -> AdminCredential | None:
        """The admin credential a heal of `out` would mint with, if readable and allowed to mint
        for its project (read once per run)."""
        assert out.heal_with is not None
        project = _project(out)
        if (out.heal_with, project) not in run.admins:
            admin: AdminCredential | None = None
            try:
                admin = load_admin_credential(self._store, out.heal_with)
            except AdminSecretError as e:
                logger.warning("The admin credential cannot be read; not healed", error=e.message)
            if admin is not None and not admin.may_mint_for(project):
                logger.warning(
                    "The admin credential may not mint for this project; not healed",
                    admin_secret_arn=admin.arn,
                    project_id=project,
                )
                admin = None
            run.admins[(out.heal_with, project)] = admin
        return run.admins[(out.heal_with, project)]

    def _admin_accepted(self, run: _Run, admin: AdminCredential, project: int) -> bool:
        """Whether Cekura accepts the admin credential and shows it the project (asked once
        per run, with one bounded project listing: it takes a dashboard session as well as an
        API key, where validate takes API keys only)."""
        if (admin.arn, project) not in run.admin_answers:
            accepted = False
            try:
                accepted = self._cekura.sees_project(
                    admin.credential, project_id=project, deadline=run.deadline
                )
            except CekuraError as e:
                logger.warning(
                    "Cekura does not accept the admin credential",
                    admin_secret_arn=admin.arn,
                    status=e.status,
                )
            else:
                if accepted:
                    run.prove(f"Cekura accepted admin secret {admin.arn}")
                else:
                    logger.warning(
                        "Cekura does not show the admin credential the secret's project",
                        admin_secret_arn=admin.arn,
                        project_id=project,
                    )
            run.admin_answers[(admin.arn, project)] = accepted
        return run.admin_answers[(admin.arn, project)]

    # -- time and order -----------------------------------------------------------------------

    def _stop(self, run: _Run) -> bool:
        """Whether no further check may begin: out of time, or Cekura is not answering."""
        return run.cekura_down or _past(self._clock(), run.stop_at)

    def _time_left(self, run: _Run) -> bool:
        return run.deadline is None or self._clock() + _WRITE_MARGIN < run.deadline


def _stop_at(started: float, deadline: float | None) -> float | None:
    if deadline is None:
        return None
    reserve = min(_FINISH_RESERVE_MAX, _FINISH_RESERVE_SHARE * max(0.0, deadline - started))
    return deadline - reserve


def _past(now: float, limit: float | None) -> bool:
    return limit is not None and now >= limit


def _project(out: _Outcome) -> int:
    assert out.value is not None  # a verdict was had, so the value and project are known
    assert out.value.project_id is not None
    return out.value.project_id


def _key_in(raw: str | bytes | None, config: Config) -> SecretValue | None:
    try:
        return SecretValue.parse(raw, default_project_id=config.default_project_id)
    except SecretFormatError:
        return None


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None
