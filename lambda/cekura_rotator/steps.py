"""The guard and the four rotation steps: orchestration only, over the two ports.

Written for Secrets Manager's behaviour on AWS, where any step may be retried with the same event:
every step checks the state it finds and does only the part that is not done yet.

What a rotation owes is decided when it begins: createSecret records the key the policy will
revoke (grace: AWSPREVIOUS's; immediate: AWSCURRENT's and AWSPREVIOUS's) before it mints, so that
a person's PutSecretValue during the rotation cannot shift the debt onto the key that was current
a second ago. finishSecret records as `grace` a version that its move strips of AWSPREVIOUS without
a debt on record (superseded mid-rotation: readers may still hold it), moves AWSCURRENT, then
settles what may go now (`revocation`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

from cekura_rotator import key_names, ledger
from cekura_rotator.cekura import CekuraClient, Credential
from cekura_rotator.config import Config, RevocationPolicy
from cekura_rotator.credentials import AdminCredential, admin_arn_for, load_admin_credential
from cekura_rotator.errors import (
    AdminSecretError,
    CekuraAuthError,
    CekuraForbiddenError,
    CekuraRefusedError,
    KeyValidationError,
    OrphanKeyError,
    RotationStateError,
    RotatorError,
    SecretsStoreError,
)
from cekura_rotator.event import RotationRequest, Step
from cekura_rotator.ledger import UNTESTED, State
from cekura_rotator.observability import count, logger, redactor
from cekura_rotator.parallel import Calls
from cekura_rotator.revocation import (
    HeldKey,
    Revoker,
    Scope,
    SettleReport,
    SweepScope,
    VersionReader,
    key_ref,
    revocation_credential,
)
from cekura_rotator.secret_value import MintedKey, SecretValue
from cekura_rotator.secrets_store import (
    CURRENT,
    PENDING,
    PREVIOUS,
    SecretDescription,
    SecretsStore,
)

__all__ = ["RotationRequest", "Rotator", "Step"]

# testSecret's re-reads of a pending value not found, before it takes the version for
# RotateSecret's configuration check (whose pending version has no value at all).
_CONSISTENCY_PAUSES = (0.3, 1.0)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Context:
    """What one step knows after the guard passed."""

    request: RotationRequest
    secret: SecretDescription
    already_current: bool
    deadline: float | None

    @property
    def arn(self) -> str:
        return self.secret.arn

    @property
    def token(self) -> str:
        return self.request.token


class Rotator:
    """Runs one rotation step for one secret. One instance per container."""

    def __init__(
        self,
        *,
        config: Config,
        store: SecretsStore,
        cekura: CekuraClient,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        parallel_calls: int = 1,
    ):
        """`parallel_calls` > 1 lets a step make independent calls side by side."""
        self._config = config
        self._store = store
        self._cekura = cekura
        self._clock = clock
        self._sleep = sleep
        # Its own pool: settling overlaps the key listing with the record's deletions while
        # this step's pool runs settling itself.
        self._revoker = Revoker(
            store=store, cekura=cekura, clock=clock, calls=Calls(min(2, parallel_calls))
        )
        self._calls = Calls(parallel_calls)
        self._steps: dict[Step, Callable[[_Context], str]] = {
            Step.CREATE: self._create,
            Step.SET: self._set,
            Step.TEST: self._test,
            Step.FINISH: self._finish,
        }

    def run(
        self,
        request: RotationRequest,
        *,
        deadline: float | None = None,
        function_arn: str | None = None,
    ) -> str:
        """Guard, then run the step. Returns a short outcome for the log (never a value)."""
        secret = self._store.describe(request.secret_id)
        logger.append_keys(secret_arn=secret.arn)
        already_current = self._guard(request, secret, function_arn)
        context = _Context(request, secret, already_current, deadline)
        outcome = self._steps[request.step](context)
        logger.info("Step complete", outcome=outcome)
        return outcome

    @staticmethod
    def _guard(
        request: RotationRequest, secret: SecretDescription, function_arn: str | None
    ) -> bool:
        """Raise unless the step may run; True when the token is already AWSCURRENT."""
        if not secret.rotation_enabled:
            raise RotationStateError("rotation is not enabled on the secret")
        if (
            function_arn
            and secret.rotation_lambda_arn
            and _unqualified(secret.rotation_lambda_arn) != _unqualified(function_arn)
        ):
            raise RotationStateError(
                f"the secret is rotated by {secret.rotation_lambda_arn}, not by this function"
            )
        if request.token not in secret.versions:
            raise RotationStateError(f"version {request.token} is not a version of the secret")
        stages = secret.stages_of(request.token)
        if CURRENT in stages:
            return True
        if PENDING not in stages:
            raise RotationStateError(
                f"version {request.token} is not AWSPENDING (its labels: {list(stages) or 'none'})"
            )
        return False

    # -- the four steps ---------------------------------------------------------------------

    def _create(self, ctx: _Context) -> str:
        if ctx.already_current:
            return "already current"
        reader = self._reader(ctx)
        owed = self._owed_from_here(ctx)
        stored, current, *_ = self._calls.run(
            partial(self._store.read, ctx.arn, stage=PENDING, version_id=ctx.token),
            partial(_outcome, partial(self._read, ctx.arn, stage=CURRENT)),
            *(partial(reader.get, v) for v in owed if v != ctx.secret.version_with(CURRENT)),
        )
        if stored is not None:
            # Done already: the current value (read alongside) does not matter, even unread.
            return "pending value already stored"
        if isinstance(current, RotatorError):
            raise current
        assert isinstance(current, SecretValue)
        project = current.require_project()
        current.check_room_for_rotation()
        admin = self._admin(current)
        if admin is not None and not admin.may_mint_for(project):
            raise AdminSecretError(
                f"admin secret {admin.arn} may not mint keys for project {project} "
                f"(its 'projects': {sorted(admin.projects or ())})"
            )
        credential = admin.credential if admin else Credential.api_key(current.api_key)
        if current.plain:
            logger.warning(
                "Plain-string secret: no key id is kept, so old keys can only be deleted in the "
                "dashboard"
            )
        minted = self._mint(ctx, credential, admin, project)
        current_version = ctx.secret.version_with(CURRENT)
        if current_version is not None:
            reader.remember(current_version, current)
        try:
            # After the mint (a refused create changes nothing), before the store (a retry that
            # finds the value stored returns at once, so the record must exist by then).
            self._begin_debts(ctx, owed, reader)
        except SecretsStoreError:
            self._discard(
                ctx, credential, admin, key_id=minted.id, project=project, reason="not recorded"
            )
            raise
        value = current.rotated(minted).render()
        try:
            self._store.put_pending(
                ctx.arn, token=ctx.token, value=value, rotation_token=ctx.request.rotation_token
            )
        except SecretsStoreError as e:
            if e.rejected:
                self._discard(
                    ctx,
                    credential,
                    admin,
                    key_id=minted.id,
                    project=project,
                    reason="store refused",
                )
                raise
            # The write may have happened (an answer lost after it): deleting the key could
            # leave AWSPENDING holding a dead key that every retry then tests for ever.
            if self._store.read(ctx.arn, stage=PENDING, version_id=ctx.token) == value:
                logger.info("The new key was stored although the call reported a failure")
                return f"stored key {minted.id} as AWSPENDING"
            # Kept: a retry finds it stored, or mints again and a later sweep deletes this one.
            logger.warning(
                "Storing the new key may have failed; the key is kept (a stray if not stored)",
                key_id=minted.id,
                key_name=minted.name,
                error_code=e.code,
            )
            raise
        return f"stored key {minted.id} as AWSPENDING"

    def _set(self, ctx: _Context) -> str:
        # Cekura keys are live on creation: there is nothing to push. testSecret reads and
        # checks the pending value; reading it here too would only add a call.
        return "already current" if ctx.already_current else "nothing to set at Cekura"

    def _test(self, ctx: _Context) -> str:
        if ctx.already_current:
            return "already current"
        raw = self._store.read(ctx.arn, stage=PENDING, version_id=ctx.token)
        for pause in _CONSISTENCY_PAUSES:
            if raw is not None or self._out_of_time(ctx, pause):
                break
            # A read right after createSecret's write may not see it yet: ask again shortly.
            self._sleep(pause)
            raw = self._store.read(ctx.arn, stage=PENDING, version_id=ctx.token)
        if raw is None:
            # Either RotateSecret's configuration check (RotateImmediately=False: the pending
            # version has no value), or a read still not consistent with createSecret's write.
            # Prove the configuration with the current key, and mark the version so that a
            # finishSecret, if one ever comes, tests the pending key itself before promoting it.
            self._validate(ctx, self._read(ctx.arn, stage=CURRENT), what="current key")
            self._mark_untested(ctx)
            return "no pending value: the current key works (configuration check)"
        project = self._validate(ctx, self._parse(raw), what="pending key")
        return f"pending key works for project {project}"

    def _finish(self, ctx: _Context) -> str:
        policy = self._config.revocation_policy
        reader = self._reader(ctx)
        # Every value this step may need is known from DescribeSecret: read them side by side.
        to_read = self._versions_to_read(ctx) if policy is not RevocationPolicy.OFF else []
        new = self._calls.run(
            partial(self._token_value, ctx), *(partial(reader.get, v) for v in to_read)
        )[0]
        assert isinstance(new, SecretValue)
        reader.remember(ctx.token, new)
        versions = dict(ctx.secret.versions)
        if not ctx.already_current:
            if UNTESTED in versions.get(ctx.token, ()):
                self._validate(ctx, new, what="pending key")
            superseded = ctx.secret.version_with(CURRENT)
            if policy is not RevocationPolicy.OFF:
                versions = self._grace_for_the_superseded(ctx, versions, reader)
            # The move attaches AWSPREVIOUS; where applications took that room since the
            # record was written, the record gives way, never the rotation.
            self._revoker.recorder.shed(ctx.arn, versions, needing=(PREVIOUS,))
            self._store.move_stage(
                ctx.arn, stage=CURRENT, to_version=ctx.token, from_version=superseded
            )
            versions = _after_current_moved(versions, to=ctx.token, old=superseded)
            logger.info("AWSCURRENT moved", previous_version=superseded)
        tidy = self._labels_to_remove(ctx, versions)
        if policy is RevocationPolicy.OFF:
            self._calls.run(*tidy)
            owed = sum(1 for e in ledger.entries(versions) if e.state is not State.GRACE)
        else:
            if policy is RevocationPolicy.IMMEDIATE:
                # AWSPREVIOUS must be off the superseded key before it is revoked.
                self._calls.run(*tidy)
                tidy = []
            report = cast(
                SettleReport,
                self._calls.run(partial(self._settle, ctx, new, versions, reader), *tidy)[0],
            )
            owed = report.owed + report.manual
        count("RevocationsOwed", owed)
        if owed:
            logger.warning("Revocations are owed", owed=owed)
        return "already current" if ctx.already_current else "AWSCURRENT moved to the new key"

    # -- createSecret's parts -----------------------------------------------------------------

    def _mint(
        self, ctx: _Context, credential: Credential, admin: AdminCredential | None, project: int
    ) -> MintedKey:
        try:
            minted = self._cekura.create_key(
                credential, name=self._key_name(ctx), project=project, deadline=ctx.deadline
            )
        except OrphanKeyError as e:
            # Logged before the delete: a Lambda killed during it (a slow Cekura, a timeout)
            # would otherwise leave a live key whose id no log line names.
            logger.warning("Cekura created a key it did not show; deleting it", key_id=e.key_id)
            self._discard(
                ctx,
                credential,
                admin,
                key_id=e.key_id,
                project=project,
                reason="unusable create answer",
            )
            raise
        except CekuraAuthError as e:
            if admin is None:
                raise CekuraAuthError(
                    "Cekura rejects the current key (HTTP 401), so it cannot mint its successor: "
                    "set an admin secret (template parameter AdminSecretArns) to recover, then "
                    f"rotate again: {e.detail or 'no detail'}",
                    status=e.status,
                    detail=e.detail,
                ) from e
            raise self._admin_refused(admin, e) from e
        except CekuraRefusedError as e:
            if admin is None:
                raise
            raise self._admin_refused(admin, e) from e
        redactor.watch(minted.key)
        count("KeysMinted")
        logger.info("Minted key", key_id=minted.id, key_name=minted.name, project_id=project)
        return minted

    @staticmethod
    def _admin_refused(admin: AdminCredential, e: CekuraRefusedError) -> AdminSecretError:
        return AdminSecretError(
            f"Cekura refuses the credential of admin secret {admin.arn} "
            f"(HTTP {e.status}): {e.detail or 'no detail'}"
        )

    def _discard(
        self,
        ctx: _Context,
        credential: Credential,
        admin: AdminCredential | None,
        *,
        key_id: int,
        project: int,
        reason: str,
    ) -> None:
        """Delete a key this step minted and cannot keep; on failure, its id is in the log."""
        logger.warning("Deleting the key just minted", key_id=key_id, reason=reason)
        self._revoker.delete(
            credential,
            key_id,
            project=project,
            # The credential that minted it sees it: a 404 means it is gone.
            scope=Scope(frozenset({project})),
            credential_id=self._credential_id(ctx, credential, admin),
            deadline=ctx.deadline,
        )

    # -- testSecret's parts -------------------------------------------------------------------

    def _validate(self, ctx: _Context, value: SecretValue, *, what: str) -> int:
        """Prove with Cekura that the key works for the secret's project; return the project."""
        project = value.require_project()
        wait = self._config.validate_max_wait
        try:
            self._cekura.validate(
                value.api_key, project_id=project, deadline=ctx.deadline, activation_wait=wait
            )
        except CekuraAuthError as e:
            raise KeyValidationError(
                f"Cekura does not accept the {what} {value.key_id or ''} "
                f"(HTTP 401 for {wait:g}s): {e.detail or 'no detail'}".replace("  ", " ")
            ) from e
        except CekuraForbiddenError as e:
            raise KeyValidationError(
                f"the {what} does not belong to project {project} (HTTP 403): "
                f"{e.detail or 'no detail'}"
            ) from e
        return project

    def _out_of_time(self, ctx: _Context, pause: float) -> bool:
        return ctx.deadline is not None and self._clock() + pause + 5.0 > ctx.deadline

    def _mark_untested(self, ctx: _Context) -> None:
        holder = ctx.secret.version_with(UNTESTED)
        if holder == ctx.token:
            return
        self._store.move_stage(ctx.arn, stage=UNTESTED, to_version=ctx.token, from_version=holder)

    # -- revocation's parts ---------------------------------------------------------------------

    def _owed_from_here(self, ctx: _Context) -> list[str]:
        """The versions whose keys this rotation will owe, decided as it begins."""
        policy = self._config.revocation_policy
        stages = {
            CURRENT: ctx.secret.version_with(CURRENT),
            PREVIOUS: ctx.secret.version_with(PREVIOUS),
        }
        if policy is RevocationPolicy.GRACE:
            # grace keeps the key being superseded for one period: its predecessor goes now.
            wanted = [stages[PREVIOUS]]
        elif policy is RevocationPolicy.IMMEDIATE:
            wanted = [stages[CURRENT], stages[PREVIOUS]]
        else:
            wanted = []
        return [v for v in dict.fromkeys(wanted) if v is not None and v != ctx.token]

    def _begin_debts(self, ctx: _Context, owed: list[str], reader: VersionReader) -> None:
        """Before minting: record what this rotation owes, and end the grace of keys superseded
        during the last one."""
        versions = {v: tuple(s) for v, s in ctx.secret.versions.items()}
        for entry in ledger.entries(versions):
            if (
                entry.state is State.GRACE
                and self._config.revocation_policy is not RevocationPolicy.OFF
            ):
                self._revoker.recorder.change_state(ctx.arn, versions, entry, State.OWED)
        for version_id in owed:
            versions = self._record(ctx, versions, version_id, reader, State.OWED)

    def _grace_for_the_superseded(
        self, ctx: _Context, versions: dict[str, tuple[str, ...]], reader: VersionReader
    ) -> dict[str, tuple[str, ...]]:
        """The move will take AWSPREVIOUS off its version. Recorded as this rotation began, it
        is owed; otherwise it was current while this rotation ran: readers may hold it, so it
        gets a grace period (owed once the next rotation begins)."""
        previous = ctx.secret.version_with(PREVIOUS)
        if previous is None or previous in (ctx.token, ctx.secret.version_with(CURRENT)):
            return versions
        if any(e.version_id == previous for e in ledger.entries(versions)):
            return versions
        return self._record(ctx, versions, previous, reader, State.GRACE)

    def _record(
        self,
        ctx: _Context,
        versions: dict[str, tuple[str, ...]],
        version_id: str,
        reader: VersionReader,
        state: State,
    ) -> dict[str, tuple[str, ...]]:
        known = reader.get(version_id)
        if isinstance(known, HeldKey):
            if known.fingerprint is None:
                return versions  # it holds no key
            minted_here = key_names.minted_for(known.key_name, self._key_stem(ctx), version_id)
            key = key_ref(known, minted_here=minted_here)
            return self._revoker.recorder.record(
                ctx.arn, versions, version_id, key, state=state, named=known
            )
        # Named by its version; settling reads it later.
        return self._revoker.recorder.record(ctx.arn, versions, version_id, None, state=state)

    def _settle(
        self,
        ctx: _Context,
        new: SecretValue,
        versions: dict[str, tuple[str, ...]],
        reader: VersionReader,
    ) -> SettleReport:
        who = revocation_credential(new, arn=ctx.arn, config=self._config, store=self._store)
        sweep = None
        if not new.plain and new.project_id is not None:
            sweep = SweepScope(self._key_stem(ctx), new.project_id)
        return self._revoker.settle(
            ctx.arn, versions, who=who, deadline=ctx.deadline, reader=reader, sweep=sweep
        )

    def _labels_to_remove(
        self, ctx: _Context, versions: dict[str, tuple[str, ...]]
    ) -> list[Callable[[], Any]]:
        """After the move: the label writes left, each a call. `versions` is updated now."""
        removals: list[tuple[str, str]] = [
            (label, ctx.token) for label in (PENDING, UNTESTED) if label in versions[ctx.token]
        ]
        previous = next((v for v, s in versions.items() if PREVIOUS in s), None)
        if (
            self._config.revocation_policy is RevocationPolicy.IMMEDIATE
            and previous is not None
            and any(
                e.version_id == previous and e.state is State.OWED for e in ledger.entries(versions)
            )
        ):
            # Under `immediate` the superseded key is revoked now: AWSPREVIOUS must not point a
            # fallback reader at it, and no labelled key is ever revoked.
            removals.append((PREVIOUS, previous))
        for label, version in removals:
            versions[version] = tuple(s for s in versions[version] if s != label)
        return [
            partial(self._remove_label, ctx, label=label, version_id=version)
            for label, version in removals
        ]

    def _remove_label(self, ctx: _Context, *, label: str, version_id: str) -> None:
        try:
            self._store.move_stage(ctx.arn, stage=label, to_version=None, from_version=version_id)
        except SecretsStoreError as e:
            if e.code != "InvalidParameterException":
                raise
            # The label left that version already: a RotateSecret accepted the moment
            # AWSCURRENT moved takes AWSPENDING to its own version, and Secrets Manager may
            # remove it itself. What this removal was for is done.
            logger.info("A label had left its version already", label=label, version_id=version_id)

    def _versions_to_read(self, ctx: _Context) -> list[str]:
        """The versions revocation will weigh: every one labelled after the move (what it holds
        is kept), and any entry that only its version's value names."""
        versions = ctx.secret.versions
        if not ctx.already_current:
            versions = _after_current_moved(
                versions, to=ctx.token, old=ctx.secret.version_with(CURRENT)
            )
        wanted = [*ledger.held_versions(versions)]
        wanted += [e.version_id for e in ledger.entries(versions) if e.key is None]
        return [v for v in dict.fromkeys(wanted) if v != ctx.token]

    def _reader(self, ctx: _Context) -> VersionReader:
        return VersionReader(self._store, ctx.arn, default_project=self._config.default_project_id)

    def _credential_id(
        self, ctx: _Context, credential: Credential, admin: AdminCredential | None
    ) -> str:
        if admin is not None:
            return f"{admin.arn} {credential.fingerprint}"
        return f"self {ctx.arn}"

    # -- helpers ----------------------------------------------------------------------------

    def _admin(self, value: SecretValue) -> AdminCredential | None:
        arn = admin_arn_for(value, self._config)
        return load_admin_credential(self._store, arn) if arn is not None else None

    def _read(self, arn: str, *, stage: str, version_id: str | None = None) -> SecretValue:
        raw = self._store.read(arn, stage=stage, version_id=version_id)
        if raw is None:
            where = f"version {version_id}" if version_id else "the secret"
            raise RotationStateError(f"{where} has no {stage} value")
        return self._parse(raw)

    def _parse(self, raw: str | bytes) -> SecretValue:
        value = SecretValue.parse(raw, default_project_id=self._config.default_project_id)
        redactor.watch(value.api_key)
        return value

    def _token_value(self, ctx: _Context) -> SecretValue:
        return self._read(
            ctx.arn, stage=CURRENT if ctx.already_current else PENDING, version_id=ctx.token
        )

    def _key_stem(self, ctx: _Context) -> str:
        return key_names.key_stem(self._config.key_name_prefix, ctx.secret.name, ctx.arn)

    def _key_name(self, ctx: _Context) -> str:
        """A stray key leads back to its secret and rotation."""
        return key_names.key_name(self._key_stem(ctx), ctx.token)


def _outcome(call: Callable[[], _T]) -> _T | RotatorError:
    """The call's result, or the typed error it raised (for the caller to weigh)."""
    try:
        return call()
    except RotatorError as e:
        return e


def _after_current_moved(
    versions: Mapping[str, tuple[str, ...]], *, to: str, old: str | None
) -> dict[str, tuple[str, ...]]:
    """The labels after AWSCURRENT moved, as Secrets Manager moves AWSPREVIOUS along with it."""
    moved = {}
    for version, stages in versions.items():
        kept = [s for s in stages if s not in {CURRENT, PREVIOUS}]
        if version == to:
            kept.append(CURRENT)
        if version == old:
            kept.append(PREVIOUS)
        moved[version] = tuple(kept)
    return moved


def _unqualified(function_arn: str) -> str:
    """A function ARN without its version or alias qualifier."""
    return ":".join(function_arn.split(":")[:7])
