"""The guard and the four rotation steps: orchestration only, over the two ports.

Written for Secrets Manager's behaviour on AWS, where any step may be retried with the same event:
every step checks the state it finds and does only the part that is not done yet.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar, cast

from cekura_rotator.cekura import CekuraClient, Credential
from cekura_rotator.config import Config, RevocationPolicy
from cekura_rotator.credentials import AdminCredential, admin_arn_for, load_admin_credential
from cekura_rotator.errors import (
    AdminSecretError,
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
    CekuraRefusedError,
    EventError,
    KeyValidationError,
    OrphanKeyError,
    RotationStateError,
    RotatorError,
    SecretsStoreError,
)
from cekura_rotator.observability import count, logger, redactor
from cekura_rotator.revocation import (
    KEY_TAG_CHARS,
    UNTESTED,
    Revocation,
    Revoker,
    VersionReader,
    held_versions,
    owed_revocations,
)
from cekura_rotator.secret_value import MintedKey, SecretValue
from cekura_rotator.secrets_store import (
    CURRENT,
    PENDING,
    PREVIOUS,
    SecretDescription,
    SecretsStore,
)

_TOKEN_TAG_CHARS = KEY_TAG_CHARS
_ARN_TAG_CHARS = 8
# testSecret's re-reads of a pending value not found, before it takes the version for
# RotateSecret's configuration check (whose pending version has no value at all).
_CONSISTENCY_PAUSES = (0.3, 1.0)
_MAX_KEY_NAME = 120


_T = TypeVar("_T")
_U = TypeVar("_U")


class Calls:
    """Runs independent calls side by side: on a real network a step mostly waits.

    With one worker the calls run in the order given, which keeps fault injection by call
    count deterministic in tests. A failure is raised once every call has ended.
    """

    def __init__(self, workers: int = 1):
        self._pool = ThreadPoolExecutor(workers, "rotator") if workers > 1 else None

    def run(self, *calls: Callable[[], object]) -> list[object]:
        """Every call's result, in the order given. A failure (the first in that order) is
        raised only once every call has ended: none may run on into a later invocation."""
        if self._pool is None:
            return [call() for call in calls]
        futures = [self._pool.submit(call) for call in calls]
        wait(futures)
        return [future.result() for future in futures]

    def pair(self, first: Callable[[], _T], second: Callable[[], _U]) -> tuple[_T, _U]:
        """Both results."""
        one, two = self.run(first, second)
        return cast(_T, one), cast(_U, two)

    def alongside(
        self, main: Callable[[], _T], *others: Callable[[], object], main_first: bool = True
    ) -> _T:
        """What `main` returned. One at a time, `main` runs first or last."""
        if main_first:
            return cast(_T, self.run(main, *others)[0])
        return cast(_T, self.run(*others, main)[-1])


class Step(StrEnum):
    """The four steps Secrets Manager invokes."""

    CREATE = "createSecret"
    SET = "setSecret"
    TEST = "testSecret"
    FINISH = "finishSecret"


@dataclass(frozen=True, slots=True)
class RotationRequest:
    """A validated rotation event. `rotation_token` is a credential: it is never shown."""

    step: Step
    secret_id: str
    token: str
    rotation_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_event(cls, event: Any) -> RotationRequest:
        """Validate the raw event; raise EventError naming what is wrong (never a value)."""
        if not isinstance(event, Mapping):
            raise EventError(f"the event must be a JSON object, not {type(event).__name__}")
        secret_id = event.get("SecretId")
        step = event.get("Step")
        if not isinstance(secret_id, str) or not 0 < len(secret_id) <= 2048:
            raise EventError("the event's SecretId must be a non-empty string", step=_str(step))
        if step not in set(Step):
            known = ", ".join(Step)
            raise EventError(
                f"the event's Step must be one of {known}, got {_str(step)!r}", secret_id=secret_id
            )
        token = event.get("ClientRequestToken")
        if not isinstance(token, str) or not 32 <= len(token) <= 64:
            raise EventError(
                "the event's ClientRequestToken must be a string of 32 to 64 characters",
                secret_id=secret_id,
                step=step,
            )
        rotation_token = event.get("RotationToken")
        if rotation_token is not None and not isinstance(rotation_token, str):
            raise EventError(
                "the event's RotationToken must be a string", secret_id=secret_id, step=step
            )
        return cls(Step(step), secret_id, token, rotation_token or None)


def _str(value: object) -> str:
    return value[:64] if isinstance(value, str) else type(value).__name__


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
        self._revoker = Revoker(store=store, cekura=cekura, clock=clock)
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
        stored, current = self._calls.pair(
            partial(self._store.read, ctx.arn, stage=PENDING, version_id=ctx.token),
            partial(_outcome, partial(self._read, ctx.arn, stage=CURRENT)),
        )
        if stored is not None:
            # Done already: the current value (read alongside) does not matter, even unread.
            return "pending value already stored"
        if isinstance(current, RotatorError):
            raise current
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
                "Plain-string secret: no key id is kept, so old keys cannot be revoked by id"
            )
        minted = self._mint(ctx, credential, admin, project)
        value = current.rotated(minted).render()
        try:
            self._store.put_pending(
                ctx.arn, token=ctx.token, value=value, rotation_token=ctx.request.rotation_token
            )
        except SecretsStoreError as e:
            if e.rejected:
                self._discard(ctx, credential, minted.id, reason="store refused")
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
        reader = VersionReader(self._store, ctx.arn)
        # Every value this step may need is known from DescribeSecret: read them side by side.
        to_read = self._versions_to_read(ctx) if policy is not RevocationPolicy.OFF else []
        new = self._calls.alongside(
            partial(self._token_value, ctx), *(partial(reader.get, v) for v in to_read)
        )
        reader.remember(ctx.token, new)
        versions = dict(ctx.secret.versions)
        job = self._revocation(ctx, new) if policy is not RevocationPolicy.OFF else None
        if not ctx.already_current:
            if UNTESTED in versions.get(ctx.token, ()):
                self._validate(ctx, new, what="pending key")
            superseded = ctx.secret.version_with(CURRENT)
            # Where Cekura just refused this credential, the debt is manual from the start.
            manual = job is not None and self._revoker.refuses_deletion(job.credential_id)
            versions = self._revoker.record(
                ctx.arn, versions, self._to_retire(ctx, new), manual=manual, reader=reader
            )
            self._store.move_stage(
                ctx.arn, stage=CURRENT, to_version=ctx.token, from_version=superseded
            )
            versions = _after_current_moved(versions, to=ctx.token, old=superseded)
            logger.info("AWSCURRENT moved", previous_version=superseded)
        tidy = self._labels_to_remove(ctx, versions)
        if policy is not RevocationPolicy.GRACE:
            # Under `immediate` AWSPREVIOUS must be off the superseded key before it is revoked.
            for call in tidy:
                call()
            tidy = []
        owed = len(owed_revocations(versions))
        if job is not None:
            job = replace(job, versions=versions)
            owed = self._calls.alongside(
                partial(self._revoker.settle, job, reader),
                *tidy,
                partial(self._revoker.sweep, job, reader),
                main_first=False,
            )
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
            self._discard(ctx, credential, e.key_id, reason="unusable create answer")
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

    def _discard(self, ctx: _Context, credential: Credential, key_id: int, *, reason: str) -> None:
        """Delete a key this step minted and cannot keep; on failure, its id is in the log."""
        fields: dict[str, Any] = {"key_id": key_id, "reason": reason}
        try:
            deleted = self._cekura.delete_key(credential, key_id, deadline=ctx.deadline)
        except CekuraRefusedError as e:
            count("RevocationsRefused")
            logger.warning(
                "Cekura does not let this credential delete keys; delete this key in the dashboard",
                status=e.status,
                **fields,
            )
            return
        except CekuraError as e:
            count("RevocationsFailed")
            logger.warning("Deleting a key failed; delete it by hand", error=str(e), **fields)
            return
        if deleted:
            count("KeysRevoked")
            logger.info("Deleted key", **fields)

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

    # -- finishSecret's parts -----------------------------------------------------------------

    def _to_retire(self, ctx: _Context, new: SecretValue) -> list[str]:
        """The versions whose keys this rotation's policy owes a revocation, before the move."""
        policy = self._config.revocation_policy
        if policy is RevocationPolicy.OFF:
            return []
        if new.plain:
            logger.warning(
                "Plain-string secret: old keys have no key id and are not revoked; delete them "
                "in the dashboard"
            )
            return []
        current = ctx.secret.version_with(CURRENT)
        if policy is RevocationPolicy.GRACE:
            # grace keeps the key being superseded for one period: its predecessor goes now.
            version, excluded = ctx.secret.version_with(PREVIOUS), {ctx.token, current}
        else:
            version, excluded = current, {ctx.token}
        return [version] if version is not None and version not in excluded else []

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
            and any(o.version_id == previous for o in owed_revocations(versions))
        ):
            # Under `immediate` the superseded key is revoked now: AWSPREVIOUS must not point a
            # fallback reader at it, and no labelled key is ever revoked.
            removals.append((PREVIOUS, previous))
        for label, version in removals:
            versions[version] = tuple(s for s in versions[version] if s != label)
        return [
            partial(
                self._store.move_stage, ctx.arn, stage=label, to_version=None, from_version=version
            )
            for label, version in removals
        ]

    def _versions_to_read(self, ctx: _Context) -> list[str]:
        """The versions whose keys revocation will weigh: labelled, owed, and about to be.
        (Manual entries are read only when Cekura is asked again, which is seldom.)"""
        wanted = [*held_versions(ctx.secret.versions)]
        wanted += [o.version_id for o in owed_revocations(ctx.secret.versions) if not o.manual]
        wanted += [v for v in (ctx.secret.version_with(PREVIOUS),) if v]
        return [v for v in dict.fromkeys(wanted) if v != ctx.token]

    def _revocation(self, ctx: _Context, new: SecretValue) -> Revocation:
        credential: Credential | None = Credential.api_key(new.api_key)
        # The rotated key's own refusals are remembered per secret: another secret's key may
        # be allowed what this one was not, and must be asked itself.
        credential_id = f"self {ctx.arn}"
        try:
            arn = admin_arn_for(new, self._config)
            if arn is not None:
                credential_id, credential = arn, None
                credential = load_admin_credential(self._store, arn).credential
                # Refusals are remembered per credential: a replaced one is asked afresh.
                credential_id = f"{arn} {credential.fingerprint}"
        except AdminSecretError as e:
            # Only revocation needs it here: the rotation itself goes on, the debts stay owed.
            logger.warning("Admin credential unavailable for revocation", error=e.message)
        return Revocation(
            arn=ctx.arn,
            versions=ctx.secret.versions,  # replaced by the labels after the move
            credential=credential,
            credential_id=credential_id,
            project=new.project_id,
            key_stem=None if new.plain else self._key_stem(ctx),
            deadline=ctx.deadline,
        )

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
        """`<prefix>-<secret name>-<8 hex of the secret's ARN>-`: every key minted for this
        secret, and no other, starts so. The name may be cut short; the ARN's hash tells apart
        secrets whose names share a beginning, or live in another account or region."""
        arn_tag = hashlib.sha256(ctx.arn.encode()).hexdigest()[:_ARN_TAG_CHARS]
        prefix = self._config.key_name_prefix
        room = _MAX_KEY_NAME - len(prefix) - _ARN_TAG_CHARS - _TOKEN_TAG_CHARS - 3
        secret_name = re.sub(r"[^A-Za-z0-9_.@/+=-]", "_", ctx.secret.name)[:room]
        return f"{prefix}-{secret_name}-{arn_tag}-"

    def _key_name(self, ctx: _Context) -> str:
        """`<stem><first 8 of token>`: a stray key leads back to its secret and rotation."""
        return self._key_stem(ctx) + ctx.token[:_TOKEN_TAG_CHARS]


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
