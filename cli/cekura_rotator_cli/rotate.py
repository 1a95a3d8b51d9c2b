"""`rotate`: start a rotation now (RotateSecret) and, with `--wait`, follow it to its end.

Progress comes from two places: the secret's labels (always readable: the new version appears
as AWSPENDING, its key is stored, AWSCURRENT moves) and the function's log when the operator may
read it (each step's completion, and the reason a step failed). When the new key never appears,
the CLI asks Cekura whether the current key still works: a dead key with no admin credential
cannot be rotated, and the operator is told how to recover instead of waiting for the timeout.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cekura_rotator.errors import CekuraAuthError, CekuraError
from cekura_rotator.ledger import entries as owed_revocations
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import CURRENT, PENDING, SecretDescription, SecretsStore, aws_call
from cekura_rotator_cli import admin
from cekura_rotator_cli.aws import LOG_POLL_SECONDS, FunctionLog
from cekura_rotator_cli.console import PROG
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import EXIT_FAILED, EXIT_OK, CliError
from cekura_rotator_cli.reading import (
    cekura_url,
    current_value,
    explicit_cekura_url,
    key_label,
    read_version,
    require_rotation,
)

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
# Cekura answers a create in about a second: by then a rotation whose new key has not appeared
# is worth a look at the current key.
_DIAGNOSE_AFTER_SECONDS = 5.0


def start(run: Run, secret: SecretDescription, function_arn: str, **kwargs: Any) -> str:
    """RotateSecret with a token chosen here; returns the token (the new version's id).

    The token is chosen here because moto answers a RotateSecret that does not rotate
    immediately with the AWSCURRENT version id instead of the new one. The function is named
    because moto forgets it when RotateSecret omits it; AWS keeps it either way, so naming the
    one already attached changes nothing there.
    """
    token = str(uuid.uuid4())
    aws_call(
        "RotateSecret",
        run.aws.secretsmanager().rotate_secret,
        SecretId=secret.arn,
        ClientRequestToken=token,
        RotationLambdaARN=function_arn,
        **kwargs,
    )
    return token


def command(args: argparse.Namespace, run: Run) -> int:
    explicit_url = explicit_cekura_url(args, run.env)  # a bad URL fails before anything
    store = run.aws.store()
    secret = store.describe(args.secret_id)
    function_arn = require_rotation(secret)
    before = secret.version_with(CURRENT)
    started = run.now()
    token = start(run, secret, function_arn)
    run.console.info(
        f"Rotation of {secret.name} started: new version {token} (AWSCURRENT is {before})."
    )
    document: dict[str, Any] = {
        "secret_arn": secret.arn,
        "version_id": token,
        "previous_version": before,
        "status": "started",
    }
    if not args.wait:
        run.console.info(f"Follow it with: {PROG} status --secret-id {secret.arn}")
        run.console.result(document, [])
        return EXIT_OK
    follower = _Follower(
        run=run,
        store=store,
        secret=secret,
        function_arn=function_arn,
        token=token,
        before=before,
        log=FunctionLog(run.aws, function_arn, started),
        args=args,
        explicit_url=explicit_url,
    )
    document.update(follower.follow())
    owed = owed_revocations(store.describe(secret.arn).versions)
    document["revocations_awaiting_deletion"] = len(owed)
    if owed:
        run.console.info(
            f"{len(owed)} revocation(s) of old keys await deletion: "
            f"{PROG} revocations list --secret-id {secret.arn}"
        )
    run.console.result(document, [])
    return EXIT_OK


@dataclass
class _Follower:
    """Polls one rotation until AWSCURRENT moves, it is seen to fail, or time runs out."""

    run: Run
    store: SecretsStore
    secret: SecretDescription
    function_arn: str
    token: str
    before: str | None
    log: FunctionLog
    args: argparse.Namespace
    explicit_url: str | None
    stored: SecretValue | None = None
    reached: str = "RotateSecret"
    seen_pending: bool = False
    diagnosed: bool = False
    completed: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _started: float = 0.0

    def follow(self) -> dict[str, Any]:
        self._started = self.run.clock()
        deadline = self._started + self.args.timeout
        next_log = self._started
        while True:
            described = self.store.describe(self.secret.arn)
            done = self._observe(described)
            if done is not None:
                return done
            now = self.run.clock()
            if now >= next_log:
                next_log = now + LOG_POLL_SECONDS
                self._read_log()
            if (
                not self.diagnosed
                and self.stored is None
                and now - self._started >= min(_DIAGNOSE_AFTER_SECONDS, self.args.timeout / 2)
            ):
                self.diagnosed = True
                advice = self._dead_key_advice()
                if advice is not None and advice.hopeless:
                    raise CliError(f"rotation cannot complete: {advice.text}", EXIT_FAILED)
            if now >= deadline:
                raise CliError(self._timeout_reason(), EXIT_FAILED)
            self.run.sleep(min(self.args.poll_interval, max(0.0, deadline - now)))

    def _progress(self, reached: str, text: str) -> None:
        """One progress line: the time since the rotation started and what happened."""
        elapsed = self.run.clock() - self._started
        self.reached = reached
        self.events.append({"reached": reached, "elapsed_seconds": round(elapsed, 1), "text": text})
        self.run.console.info(f"  [{elapsed:6.1f}s] {text}")

    def _complete(self, step: str, text: str) -> None:
        """A step seen complete (by its effect or in the log), announced once."""
        if step in self.completed:
            return
        self.completed.append(step)
        following = STEPS[STEPS.index(step) + 1] if step != STEPS[-1] else step
        self._progress(following, f"{step} complete: {text}")

    def _observe(self, secret: SecretDescription) -> dict[str, Any] | None:
        current = secret.version_with(CURRENT)
        if current is not None and current != self.before:
            # The steps the log saw, before the end is announced. A failure logged on the way
            # was retried with success, so it is not reported.
            self._read_log(report_failure=False)
            if current == self.token:
                self._complete("finishSecret", f"AWSCURRENT moved to {self.token}.")
                self.run.console.info("Rotation complete.")
                status = "complete"
            else:
                self._progress(
                    "finishSecret",
                    f"AWSCURRENT moved to {current} (another rotation finished first).",
                )
                status = "superseded"
            return {
                "status": status,
                "current_version": current,
                "elapsed_seconds": round(self.run.clock() - self._started, 1),
                "progress": self.events,
            }
        labels = secret.stages_of(self.token)
        if PENDING in labels and not self.seen_pending:
            self.seen_pending = True
            self._progress(
                "createSecret", f"createSecret: version {self.token} is AWSPENDING; minting a key"
            )
        if self.stored is None and PENDING in labels:
            self.stored, _ = read_version(self.store, self.secret.arn, self.token, self.run.console)
            if self.stored is not None:
                self._complete(
                    "createSecret",
                    f"new key stored in version {self.token} ({key_label(self.stored)})",
                )
        if self.seen_pending and PENDING not in labels:
            raise CliError(
                f"rotation failed: version {self.token} lost its AWSPENDING label without "
                "becoming AWSCURRENT (cancelled or cleaned up)",
                EXIT_FAILED,
            )
        return None

    def _read_log(self, *, report_failure: bool = True) -> None:
        failure = self.log.failure(self.token) if report_failure else None
        if failure is not None:
            step, reason = failure
            advice = self._dead_key_advice() if step in (None, "createSecret") else None
            raise CliError(
                f"rotation failed: {reason}" + (f"; {advice.text}" if advice else ""), EXIT_FAILED
            )
        for step in self.log.completed_steps(self.token):
            if step in STEPS:
                self._complete(step, "the function logged it")

    def _timeout_reason(self) -> str:
        failure = self.log.failure(self.token)
        if not self.seen_pending:
            state = (
                f"version {self.token} never appeared as AWSPENDING: the function was not invoked"
            )
        elif self.stored is None:
            state = (
                f"version {self.token} is still AWSPENDING and holds no key: "
                "createSecret did not complete"
            )
        else:
            state = (
                f"the new key ({key_label(self.stored)}) is stored as AWSPENDING in version "
                f"{self.token} but setSecret, testSecret or finishSecret did not complete"
            )
        where = failure[1] if failure else f"see the log group {self.log.group}"
        text = (
            f"rotation failed: AWSCURRENT did not move within {self.args.timeout:g}s "
            f"(last step reached: {self.reached}); {state}; {where}"
        )
        if self.stored is None and not self.diagnosed:
            advice = self._dead_key_advice()
            if advice is not None:
                text += f"; {advice.text}"
        return text

    def _dead_key_advice(self) -> Advice | None:
        """What to do when the current key is dead, or None when it is not (or cannot be told)."""
        value, _ = current_value(self.store, self.secret, self.run.console)
        if value is None or value.project_id is None:
            return None
        function_env = self.run.aws.function_environment(self.function_arn)
        url = self.explicit_url or cekura_url(self.args, self.run.env, function_env)
        cekura = self.run.cekura(url)
        try:
            cekura.validate(value.api_key, project_id=value.project_id)
        except CekuraAuthError:
            pass  # dead: explained below
        except CekuraError:
            return None
        else:
            return None
        finally:
            cekura.close()
        return dead_key_advice(self.secret, value, function_env, self.function_arn)


@dataclass(frozen=True)
class Advice:
    """What to tell an operator whose current key is dead; `hopeless`: no rotation can work."""

    text: str
    hopeless: bool


def dead_key_advice(
    secret: SecretDescription,
    value: SecretValue,
    function_env: Mapping[str, str] | None,
    function_arn: str,
) -> Advice:
    """Why a secret whose current key Cekura rejects rotates or not, and how to recover."""
    dead = f"Cekura no longer accepts the current key ({key_label(value)}, HTTP 401)"
    arn, source = admin.admin_arn(value, function_env)
    if arn is not None:
        return Advice(
            f"{dead}; admin secret {arn} is configured, so the rotator mints with it and does not "
            f"need that key: check the admin credential with `{PROG} status --secret-id "
            f"{secret.arn}`",
            hopeless=False,
        )
    recovery = (
        "To recover, either deploy the stack with AdminSecretArns=<ARN of a secret holding "
        '{"api_key": ...} or {"bearer_token": ...}> and rotate again, or mint and store a new '
        f"key now with `{PROG} bootstrap --update --secret-name {secret.name} --project-id "
        f"{value.project_id} --function-arn {function_arn} --admin-secret-arn ARN`, or store a "
        f"key made in the Cekura dashboard with the same command without --admin-secret-arn "
        "(key on stdin)"
    )
    if source == "unknown":
        return Advice(
            f"{dead}, and the function's configuration cannot be read to tell whether an admin "
            f"credential is configured; if none is, no rotation can mint a replacement. {recovery}",
            hopeless=False,
        )
    return Advice(
        f"{dead}, and no admin credential is configured, so the rotator has nothing to mint a "
        f"replacement with. {recovery}",
        hopeless=True,
    )
