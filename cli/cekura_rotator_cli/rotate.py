"""`rotate`: start a rotation now (RotateSecret) and, with `--wait`, follow it to its end;
`--cancel` unsticks a stuck one (see `cancel`).

Progress comes from two places: the secret's labels (always readable: the new version appears
as AWSPENDING, its key is stored, AWSCURRENT moves) and the function's log when the operator may
read it (each step's completion, and the reason a step failed). When the new key does not
appear, the CLI asks Cekura about the current key (and the admin credential): a rotation that
cannot mint is reported at once instead of waiting for the timeout, and so is one that cannot be
followed (the log unreadable while Cekura refuses the key, or cannot be reached from here).
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from cekura_rotator import ledger
from cekura_rotator.errors import SecretsStoreError
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import CURRENT, PENDING, SecretDescription, SecretsStore
from cekura_rotator_cli import admin, cancel
from cekura_rotator_cli.aws import LOG_POLL_SECONDS, FunctionLog
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, CliError
from cekura_rotator_cli.keys import KeyVerdict, judge_key
from cekura_rotator_cli.options import add_cekura_url, add_secret_id, seconds
from cekura_rotator_cli.reading import (
    cekura_url,
    current_value,
    explicit_cekura_url,
    find_secret,
    key_label,
    key_project,
    read_version,
    require_rotation,
)

NAME = "rotate"
HELP = "start a rotation now (RotateSecret) and follow it with --wait; --cancel unsticks one"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
# Cekura answers a create in about a second: by then a rotation whose new key has not appeared
# is worth a look at the current key.
_DIAGNOSE_AFTER_SECONDS = 5.0
# Errors the function logs when Cekura could not be reached or kept throttling: "Cekura
# unreachable", exit 3, as everywhere.
_UNREACHABLE_ERRORS = frozenset(
    {"CekuraUnavailableError", "CekuraRateLimitedError", "CekuraTransientError"}
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_secret_id(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--wait",
        action="store_true",
        help="follow it, showing each step reached, until AWSCURRENT moves or it fails",
    )
    mode.add_argument(
        "--cancel",
        action="store_true",
        help="unstick a stuck rotation: take AWSPENDING off its version once no step has run "
        "for longer than the function's timeout, and record the key minted there as owed",
    )
    parser.add_argument(
        "--timeout", type=seconds, default=120.0, help="seconds --wait waits (default 120)"
    )
    parser.add_argument(
        "--poll-interval", type=seconds, default=1.0, help="seconds between polls (default 1)"
    )
    add_cekura_url(parser)


def start(run: Run, secret: SecretDescription, function_arn: str, *, immediately: bool) -> str:
    """RotateSecret with a token chosen here; returns the token (the new version's id).

    The token is chosen here because moto answers a RotateSecret that does not rotate
    immediately with the AWSCURRENT version id instead of the new one. The function is named
    because moto forgets it when RotateSecret omits it; AWS keeps it either way, so naming the
    one already attached changes nothing there.
    """
    token = str(uuid.uuid4())
    follow = run.command("status", "--secret-id", secret.arn)
    with run.changes():
        try:
            run.aws.store().start_rotation(
                secret.arn, token=token, function_arn=function_arn, immediately=immediately
            )
        except SecretsStoreError as e:
            if e.code != "InvalidRequestException":
                raise
            # Secrets Manager refuses a rotation while another one's AWSPENDING is not current.
            raise CliError(
                f"{e.message}; nothing was started. A rotation may be in progress or stuck: "
                f"follow it with `{follow}`; if it is stuck, `"
                + run.cancel_command(secret.arn)
                + "`",
                EXIT_FAILED,
            ) from None
        run.changed.append(f"started a rotation (version {token})")
        run.aftermath = (
            f"the rotation goes on in Secrets Manager (new version {token}); follow it with "
            f"`{follow}`"
        )
    return token


def refuse_bad_current(run: Run, store: SecretsStore, secret: SecretDescription) -> None:
    """Refuse to start a rotation bound to fail: one whose AWSCURRENT is not a usable value."""
    read = current_value(store, secret, run.console)
    if read.kind in ("malformed", "empty"):
        raise CliError(
            f"the AWSCURRENT version {read.problem}, so createSecret would fail; nothing was "
            "started. Store a good key first with `" + run.store_key_command(secret.name) + "`",
            EXIT_FAILED,
        )
    if read.kind == "unreadable":
        run.console.warn(
            f"the AWSCURRENT version {read.problem}; starting the rotation all the same (the "
            "function reads it with its own role)"
        )


def run(args: argparse.Namespace, run: Run) -> int:
    if args.cancel:
        return cancel.cancel(args, run)
    explicit_url = explicit_cekura_url(args, run.env)  # a bad URL fails before anything
    store = run.aws.store()
    secret = find_secret(run, args.secret_id)
    function_arn = require_rotation(secret, run)
    refuse_bad_current(run, store, secret)
    before = secret.version_with(CURRENT)
    started = run.now()
    token = start(run, secret, function_arn, immediately=True)
    run.partial.update(
        {
            "secret_arn": secret.arn,
            "version_id": token,
            "previous_version": before,
            "status": "started",
        }
    )
    run.console.info(
        f"Rotation of {secret.name} started: new version {token} (AWSCURRENT is {before})."
    )
    document: dict[str, Any] = dict(run.partial)
    if not args.wait:
        run.console.info("Follow it with: " + run.command("status", "--secret-id", secret.arn))
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
    owed = ledger.entries(store.describe(secret.arn).versions)
    document["revocations_awaiting_deletion"] = len(owed)
    if owed:
        run.console.info(
            f"{len(owed)} revocation(s) of old keys await deletion: "
            + run.command("revocations", "list", "--secret-id", secret.arn)
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
                self._diagnose()
            if now >= deadline:
                self._timed_out()
            self.run.sleep(min(self.args.poll_interval, max(0.0, deadline - now)))

    def _progress(self, reached: str, text: str) -> None:
        """One progress line: the time since the rotation started and what happened."""
        elapsed = self.run.clock() - self._started
        self.reached = reached
        self.events.append({"reached": reached, "elapsed_seconds": round(elapsed, 1), "text": text})
        self.run.partial["progress"] = self.events
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
            self.run.aftermath = None
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
            read = read_version(self.store, self.secret.arn, self.token, self.run.console)
            self.stored = read.value
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
            step, reason, error_type = failure
            if error_type in _UNREACHABLE_ERRORS:
                raise CliError(
                    f"rotation failed: {reason}; Cekura could not be reached by the function: "
                    f"once it answers, `{self._retry()}` finishes this rotation",
                    EXIT_UNAVAILABLE,
                )
            advice = self._key_advice() if step in (None, "createSecret") else None
            raise CliError(
                f"rotation failed: {reason}" + (f"; {advice.text}" if advice else ""), EXIT_FAILED
            )
        for step in self.log.completed_steps(self.token):
            if step in STEPS:
                self._complete(step, "the function logged it")

    def _diagnose(self) -> None:
        """The new key has not appeared: stop now when the rotation cannot mint one, or when it
        cannot be followed (the log unreadable) and Cekura refuses the key or cannot be asked."""
        advice = self._key_advice()
        if advice is None or advice.outlook == "recovering":
            return
        if advice.outlook == "hopeless":
            raise CliError(f"rotation cannot complete: {advice.text}", advice.exit_code)
        if not self.log.enabled:
            raise CliError(
                f"rotation stopped being followed: no new key in version {self.token} after "
                f"{self.run.clock() - self._started:.0f}s, {advice.text}, and "
                f"{self.log.unreadable_text()}, so the function's own reason is unknown. The "
                f"rotation may still finish: `{self._status()}`",
                advice.exit_code,
            )

    def _timed_out(self) -> None:
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
        if failure:
            where = failure[1]
        elif not self.log.enabled:
            where = f"{self.log.unreadable_text()}, so the function's own reason is unknown"
        else:
            where = f"see the log group {self.log.group}"
        text = (
            f"rotation failed: AWSCURRENT did not move within {self.args.timeout:g}s "
            f"(last step reached: {self.reached}); {state}; {where}"
        )
        code = EXIT_FAILED
        if self.stored is None:
            advice = self._key_advice()
            if advice is not None:
                text += f"; {advice.text}"
                code = advice.exit_code
        raise CliError(text, code)

    def _key_advice(self) -> Advice | None:
        """What the current key (and admin credential) say about this rotation; None when the
        key works or cannot be told."""
        read = current_value(self.store, self.secret, self.run.console)
        value = read.value
        if value is None:
            return None
        function_env = self.run.aws.function_environment(self.function_arn)
        project = key_project(value, function_env)
        url = self.explicit_url or cekura_url(self.args, self.run.env, function_env)
        cekura = self.run.cekura(url)
        try:
            verdict = judge_key(cekura, value, project)
            if verdict.state == "unknown":
                return Advice(
                    f"Cekura cannot be reached from here either ({verdict.text}): no key can be "
                    f"minted while it is down; once it answers, `{self._retry()}` finishes this "
                    "rotation",
                    outlook="unknown",
                    exit_code=EXIT_UNAVAILABLE,
                )
            if verdict.state != "rejected":
                return None
            view = admin.inspect(
                store=self.store,
                cekura=cekura,
                value=value,
                function_env=function_env,
                console=self.run.console,
            )
        finally:
            cekura.close()
        return dead_key_advice(
            self.run,
            secret=self.secret,
            value=value,
            verdict=verdict,
            view=view,
            function_arn=self.function_arn,
        )

    def _status(self) -> str:
        return self.run.command("status", "--secret-id", self.secret.arn)

    def _retry(self) -> str:
        return self.run.command("rotate", "--secret-id", self.secret.arn, "--wait")


@dataclass(frozen=True)
class Advice:
    """What to tell an operator about a rotation that stalls. `outlook`: hopeless (it cannot
    complete), recovering (an admin credential Cekura accepts mints without the dead key), or
    unknown (it cannot be told from here)."""

    text: str
    outlook: Literal["hopeless", "recovering", "unknown"]
    exit_code: int = EXIT_FAILED


def dead_key_advice(
    run: Run,
    *,
    secret: SecretDescription,
    value: SecretValue,
    verdict: KeyVerdict,
    view: admin.AdminView,
    function_arn: str,
) -> Advice:
    """Why a secret whose current key Cekura rejects rotates or not, and how to recover."""
    dead = f"Cekura no longer accepts the current key ({key_label(value)}): {verdict.text}"
    recovery = (
        "To recover, either deploy the stack with AdminSecretArns=<ARN of a secret holding "
        '{"api_key": ...} or {"bearer_token": ...}> and rotate again, or mint and store a new '
        "key now with `"
        + run.command(
            "bootstrap", "--update", "--secret-name", secret.name,
            "--project-id", str(value.project_id), "--function-arn", function_arn,
            "--admin-secret-arn", "ARN",
        )
        + "`, or store a key made in the Cekura dashboard with the same command without "
        "--admin-secret-arn (key on stdin)"
    )  # fmt: skip
    if view.arn is not None:
        if view.allowed is False or view.accepted is False:
            why = (
                "the function does not allow it (AdminSecretArns)"
                if view.allowed is False
                else view.verdict
            )
            return Advice(
                f"{dead}; admin secret {view.arn} is configured, but {why}, so the rotator cannot "
                f"mint a replacement with it either. Fix the admin secret, or: {recovery}",
                outlook="hopeless",
            )
        return Advice(
            f"{dead}; admin secret {view.arn} is configured, so the rotator mints with it and "
            f"does not need that key ({view.verdict}): check the admin credential with `"
            + run.command("status", "--secret-id", secret.arn)
            + "`",
            outlook="recovering" if view.accepted else "unknown",
        )
    if view.source == "unknown":
        return Advice(
            f"{dead}, and the function's configuration cannot be read to tell whether an admin "
            f"credential is configured; if none is, no rotation can mint a replacement. {recovery}",
            outlook="unknown",
        )
    return Advice(
        f"{dead}, and no admin credential is configured, so the rotator has nothing to mint a "
        f"replacement with. {recovery}",
        outlook="hopeless",
    )
