"""The guard and the four rotation steps: orchestration only, over the two ports.

Written for Secrets Manager's behaviour on AWS, where any step may be retried with the same event:
every step checks the state it finds and does only the part that is not done yet.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cekura_rotator.cekura import CekuraClient
from cekura_rotator.config import Config, RevocationPolicy
from cekura_rotator.errors import (
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
    CekuraMethodNotAllowedError,
    CekuraRateLimitedError,
    CekuraUnavailableError,
    EventError,
    KeyValidationError,
    OrphanKeyError,
    RotationStateError,
    SecretFormatError,
    SecretsStoreError,
)
from cekura_rotator.observability import count, logger, redactor
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import (
    CURRENT,
    PENDING,
    PREVIOUS,
    SecretDescription,
    SecretsStore,
)

# Cekura's answers that mean "API keys may not do this here" (the current spec's world).
_REFUSALS = (CekuraAuthError, CekuraForbiddenError, CekuraMethodNotAllowedError)
# Cekura failing for now (5xx, 429, timeouts, after the client's retries). Revocation and the
# stray sweep fail the step on these, so that Secrets Manager's retry deletes the key: logging
# them instead left a live key that no label pointed at any more (found by tests/reliability).
_TRANSIENT = (CekuraUnavailableError, CekuraRateLimitedError)
_TOKEN_TAG_CHARS = 8
_MAX_KEY_NAME = 120


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
    ):
        self._config = config
        self._store = store
        self._cekura = cekura
        self._clock = clock
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
        if self._store.read(ctx.arn, stage=PENDING, version_id=ctx.token) is not None:
            return "pending value already stored"
        current = self._read(ctx.arn, stage=CURRENT)
        project = current.require_project()
        current.check_room_for_rotation()
        if current.plain:
            logger.warning(
                "Plain-string secret: no key id is kept, so old keys cannot be revoked by id"
            )
        try:
            minted = self._cekura.create_key(
                current.api_key,
                name=self._key_name(ctx),
                project=project,
                deadline=ctx.deadline,
            )
        except OrphanKeyError as e:
            # Logged before the delete: a Lambda killed during it (a slow Cekura, a timeout)
            # would otherwise leave a live key whose id no log line names.
            logger.warning("Cekura created a key it did not show; deleting it", key_id=e.key_id)
            self._delete(current.api_key, e.key_id, None, ctx, reason="unusable create answer")
            raise
        redactor.watch(minted.key)
        count("KeysMinted")
        logger.info("Minted key", key_id=minted.id, key_name=minted.name, project_id=project)
        try:
            self._store.put_pending(
                ctx.arn,
                token=ctx.token,
                value=current.rotated(minted).render(),
                rotation_token=ctx.request.rotation_token,
            )
        except SecretsStoreError:
            self._delete(current.api_key, minted.id, minted.name, ctx, reason="store failed")
            raise
        return f"stored key {minted.id} as AWSPENDING"

    def _set(self, ctx: _Context) -> str:
        if ctx.already_current:
            return "already current"
        # Cekura keys are live on creation: nothing to push, only prove the value is usable.
        pending = self._token_value(ctx)
        pending.require_project()
        return "pending value is well-formed"

    def _test(self, ctx: _Context) -> str:
        if ctx.already_current:
            return "already current"
        raw = self._store.read(ctx.arn, stage=PENDING, version_id=ctx.token)
        if raw is None:
            # RotateSecret with RotateImmediately=False tests the configuration: there is no new
            # key yet, so prove that the current key works.
            logger.info("No pending value: testing the current key (configuration check)")
            pending = self._read(ctx.arn, stage=CURRENT)
        else:
            pending = self._parse(raw)
        project = pending.require_project()
        wait = self._config.validate_max_wait
        try:
            self._cekura.validate(
                pending.api_key, project_id=project, deadline=ctx.deadline, activation_wait=wait
            )
        except CekuraAuthError as e:
            raise KeyValidationError(
                f"Cekura does not accept the pending key {pending.key_id or ''} "
                f"(HTTP 401 for {wait:g}s): {e.detail or 'no detail'}".replace("  ", " ")
            ) from e
        except CekuraForbiddenError as e:
            raise KeyValidationError(
                f"the pending key does not belong to project {project} (HTTP 403): "
                f"{e.detail or 'no detail'}"
            ) from e
        return f"pending key works for project {project}"

    def _finish(self, ctx: _Context) -> str:
        new = self._token_value(ctx)
        policy = self._config.revocation_policy
        superseded: str | None
        if ctx.already_current:
            # A retry after AWSCURRENT moved: only what follows the move may be left to do.
            superseded = ctx.secret.version_with(PREVIOUS)
        else:
            superseded = ctx.secret.version_with(CURRENT)
            if policy is RevocationPolicy.GRACE:
                # Before the move AWSPREVIOUS still names the key two rotations old; deleting it
                # first keeps this step re-runnable (afterwards no label would point at it).
                self._revoke(ctx, ctx.secret.version_with(PREVIOUS), new, keep_version=superseded)
            self._store.move_stage(
                ctx.arn, stage=CURRENT, to_version=ctx.token, from_version=superseded
            )
            logger.info("AWSCURRENT moved", previous_version=superseded)
        if PENDING in ctx.secret.stages_of(ctx.token):
            self._store.move_stage(ctx.arn, stage=PENDING, to_version=None, from_version=ctx.token)
        if policy is RevocationPolicy.IMMEDIATE:
            self._revoke(ctx, superseded, new, keep_version=None)
        if policy is not RevocationPolicy.OFF:
            self._sweep_strays(ctx, new)
        return "already current" if ctx.already_current else "AWSCURRENT moved to the new key"

    # -- helpers ----------------------------------------------------------------------------

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

    def _key_name(self, ctx: _Context) -> str:
        """`<prefix>-<secret name>-<first 8 of token>`: a stray key leads back to its rotation."""
        tag = ctx.token[:_TOKEN_TAG_CHARS]
        room = _MAX_KEY_NAME - len(self._config.key_name_prefix) - len(tag) - 2
        secret_name = re.sub(r"[^A-Za-z0-9_.@/+=-]", "_", ctx.secret.name)[:room]
        return f"{self._config.key_name_prefix}-{secret_name}-{tag}"

    def _revoke(
        self,
        ctx: _Context,
        version_id: str | None,
        new: SecretValue,
        *,
        keep_version: str | None,
    ) -> None:
        """Delete the key held by `version_id`, unless another kept version holds it too."""
        if version_id is None or version_id == ctx.token:
            return
        old = self._try_read(ctx.arn, version_id)
        if old is None or old.key_id is None:
            count("RevocationsImpossible")
            logger.warning(
                "Old key has no key id, so it cannot be revoked; delete it in the Cekura dashboard",
                version_id=version_id,
                key_name=old.key_name if old else None,
            )
            return
        keep = {new.key_id}
        if keep_version is not None:
            kept = self._try_read(ctx.arn, keep_version)
            keep.add(kept.key_id if kept else None)
        if old.key_id in keep:
            logger.info("Old key is still in use by a kept version; not revoked", key_id=old.key_id)
            return
        self._delete(
            new.api_key,
            old.key_id,
            old.key_name,
            ctx,
            reason=f"policy {self._policy}",
            raise_transient=True,
        )

    @property
    def _policy(self) -> str:
        return self._config.revocation_policy.value

    def _try_read(self, arn: str, version_id: str) -> SecretValue | None:
        """A version's value for revocation; None when it has none or it does not parse.

        A failed read (throttling, KMS, 5xx) raises: swallowing it skipped the revocation, and
        under `grace` the key was then left live with no label pointing at it. Failing the step
        lets Secrets Manager retry it, which is safe on either side of the AWSCURRENT move.
        """
        raw = self._store.read(arn, version_id=version_id)
        if raw is None:
            return None
        try:
            return SecretValue.parse(raw, default_project_id=self._config.default_project_id)
        except SecretFormatError as e:
            logger.warning("An old version is not readable", version_id=version_id, error=str(e))
            return None

    def _sweep_strays(self, ctx: _Context, new: SecretValue) -> None:
        """Delete keys an interrupted createSecret of this rotation minted but never stored."""
        try:
            keys = self._cekura.list_keys(new.api_key, deadline=ctx.deadline)
        except _REFUSALS:
            logger.info("Cekura does not let API keys list keys; strays were logged at mint time")
            return
        except CekuraError as e:
            logger.warning("Listing keys for strays failed", error=str(e))
            if isinstance(e, _TRANSIENT):
                raise  # retried by Secrets Manager: finishSecret re-runs the sweep
            return
        own_name = self._key_name(ctx)
        for key in keys:
            if key.name == own_name and key.id != new.key_id:
                self._delete(
                    new.api_key,
                    key.id,
                    key.name,
                    ctx,
                    reason="stray of this rotation",
                    raise_transient=True,
                )

    def _delete(
        self,
        api_key: str,
        key_id: int,
        key_name: str | None,
        ctx: _Context,
        *,
        reason: str,
        raise_transient: bool = False,
    ) -> None:
        """Delete a key at Cekura. A refusal or a wrong answer is logged, never raised; with
        `raise_transient`, a transient failure raises so that the step is retried."""
        fields: dict[str, Any] = {"key_id": key_id, "key_name": key_name, "reason": reason}
        try:
            deleted = self._cekura.delete_key(api_key, key_id, deadline=ctx.deadline)
        except _REFUSALS as e:
            count("RevocationsRefused")
            logger.warning(
                "Cekura does not let API keys delete keys; delete this key in the dashboard",
                status=e.status,
                **fields,
            )
            return
        except CekuraError as e:
            count("RevocationsFailed")
            if raise_transient and isinstance(e, _TRANSIENT):
                logger.warning(
                    "Deleting a key failed; the step will be retried", error=str(e), **fields
                )
                raise
            logger.warning(
                "Deleting a key failed; delete it in the dashboard", error=str(e), **fields
            )
            return
        if deleted:
            count("KeysRevoked")
            logger.info("Deleted key", **fields)
        else:
            logger.info("Key was already gone", **fields)


def _unqualified(function_arn: str) -> str:
    """A function ARN without its version or alias qualifier."""
    return ":".join(function_arn.split(":")[:7])
