"""`rotate --cancel`: unstick a stuck rotation.

A rotation is stuck when AWSPENDING sits on a version that is not AWSCURRENT: Secrets Manager
then refuses every new rotation. Taking the label off is safe only when no step of that rotation
can still run, and the only witness is the function's log: no step logged anything for the
version for longer than the function's timeout (a step lasts at most that long, and each step
logs when it ends), and the version itself is older than that. Without that proof (the log
unreadable, a step logged recently) the command refuses.

The key createSecret minted into the version is live at Cekura: before AWSPENDING goes, it is
recorded as owed (`Recorder.record`, in the ledger's vocabulary), so later rotations and the health
check revoke it.
Both changes run with Ctrl-C held (record first: a crash in between leaves the record and the
stuck label, and running the command again finishes the job).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timedelta

from cekura_rotator import key_names, ledger
from cekura_rotator.errors import SecretsStoreError
from cekura_rotator.health.rules import pending_version
from cekura_rotator.ledger import State
from cekura_rotator.revocation import HeldKey, Recorder, held_key, key_ref
from cekura_rotator.secrets_store import PENDING, SecretDescription
from cekura_rotator_cli.aws import FunctionInfo, FunctionLog
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, AwsError, CliError
from cekura_rotator_cli.reading import (
    find_secret,
    function_config,
    require_rotation,
    time_text,
)

# Lambda's clock and CloudWatch's may run a little ahead of or behind this machine's.
QUIET_MARGIN = timedelta(seconds=2)
# Log pages read for one version over one timeout: a step logs a handful of lines.
_LOG_PAGES = 20


def cancel(args: argparse.Namespace, run: Run) -> int:
    store = run.aws.store()
    secret = find_secret(run, args.secret_id)
    pending = pending_version(secret.versions)
    if pending is None:
        run.console.result(
            {"secret_arn": secret.arn, "cancelled": None, "recorded": None},
            [f"Nothing to cancel: no rotation of {secret.name} is pending; nothing was changed."],
        )
        return EXIT_OK
    function_arn = require_rotation(secret, run)
    function = _function(run, secret, function_arn, pending)
    now = run.now()
    held = _held(run, secret, pending, function)
    created = held.created or next(
        (v.created for v in store.list_versions(secret.arn) if v.version_id == pending), None
    )
    _prove_no_step_runs(
        run, secret=secret, function=function, pending=pending, created=created, now=now
    )
    if held.owes and not ledger.room_to_record(secret.versions):
        raise CliError(
            f"the record of owed revocations is full, so the key in version {pending} could not "
            "be recorded; nothing was changed. Settle records first (`"
            + run.command("revocations", "list", "--secret-id", secret.arn)
            + "`), then run this again",
            EXIT_FAILED,
        )
    label = None
    with run.changes(), run.rotator_logs():
        if held.owes:
            labels = Recorder(store).record(
                secret.arn,
                secret.versions,
                pending,
                held.key,
                state=State.OWED,
                named=held.known,
            )
            label = _recorded(labels, pending, held.key)
            if label is None:
                raise CliError(
                    f"the key in version {pending} could not be recorded as owed (see the "
                    "error above); AWSPENDING was left on it, so nothing lost track of it",
                    EXIT_UNAVAILABLE,
                )
            run.changed.append(f"recorded the key in version {pending} as owed ({label})")
        store.move_stage(secret.arn, stage=PENDING, to_version=None, from_version=pending)
        run.changed.append(f"took AWSPENDING off version {pending}")
    lines = [f"Cancelled the rotation of {secret.name}: AWSPENDING is off version {pending}."]
    if label is not None:
        lines.append(
            f"The key minted there ({held.text}) is recorded as owed ({label}): later rotations "
            "and the health check revoke it."
        )
    else:
        lines.append("The version held no key, so nothing is owed.")
    lines.append(
        "A new rotation can start: " + run.command("rotate", "--secret-id", secret.arn, "--wait")
    )
    run.console.result(
        {"secret_arn": secret.arn, "cancelled": pending, "recorded": label, "key": held.text},
        lines,
    )
    return EXIT_OK


def _recorded(
    labels: dict[str, tuple[str, ...]], pending: str, key: ledger.KeyRef | None
) -> str | None:
    """The label recording the pending version's key, if the record holds it (on that version,
    or on another one that holds the same key)."""
    mine = [e for e in ledger.entries(labels) if e.version_id == pending]
    if mine:
        return " ".join(mine[0].labels)
    label = ledger.entry_label(State.OWED, version_id=pending, key=key)
    return label if label in ledger.labels_in_use(labels) else None


def _function(run: Run, secret: SecretDescription, function_arn: str, pending: str) -> FunctionInfo:
    try:
        return run.aws.function(function_arn)
    except AwsError as e:
        raise _refusal(
            run,
            secret,
            pending,
            f"the function's timeout cannot be read ({e.message}), so it cannot be told how "
            "long a step may run",
            "grant yourself lambda:GetFunctionConfiguration on it",
        ) from None


def _prove_no_step_runs(
    run: Run,
    *,
    secret: SecretDescription,
    function: FunctionInfo,
    pending: str,
    created: datetime | None,
    now: datetime,
) -> None:
    """Raise unless the log proves that no step for `pending` runs, or can still run."""
    quiet = timedelta(seconds=function.timeout) + QUIET_MARGIN
    if created is None or now - created < quiet:
        raise _refusal(
            run,
            secret,
            pending,
            f"the rotation started at {time_text(created)}, less than the function's timeout "
            f"({function.timeout}s) ago, so a step may still run",
            "wait, then run this again",
        )
    log = FunctionLog(run.aws, function.arn, now - quiet)
    events, complete = log.timed_events(pending, since=now - quiet, pages=_LOG_PAGES)
    if not log.enabled:
        raise _refusal(
            run,
            secret,
            pending,
            f"{log.unreadable_text()}, so it cannot be shown that no step runs",
            f"grant yourself logs:FilterLogEvents on {log.group} (or run this where you may "
            "read it)",
        )
    if not complete:
        raise _refusal(
            run,
            secret,
            pending,
            f"the log holds more for this version than {_LOG_PAGES} pages in the last "
            f"{quiet.total_seconds():.0f}s, so a step is still busy",
            "wait, then run this again",
        )
    cutoff = (now - quiet).timestamp() * 1000
    recent = [stamp for stamp, _ in events if stamp >= cutoff]
    if recent:
        last = datetime.fromtimestamp(max(recent) / 1000, tz=now.tzinfo)
        raise _refusal(
            run,
            secret,
            pending,
            f"the function logged a step for it at {time_text(last)}, less than its timeout "
            f"({function.timeout}s) ago, so a step may still run",
            "wait, then run this again",
        )


def _refusal(
    run: Run, secret: SecretDescription, pending: str, why: str, what_to_do: str
) -> CliError:
    return CliError(
        f"refused to cancel the rotation of version {pending}: {why}; nothing was changed. "
        f"To cancel it, {what_to_do}: `" + run.cancel_command(secret.arn) + "`",
        EXIT_FAILED,
    )


@dataclass(frozen=True)
class _Held:
    """What the pending version holds, read loosely (as the settler reads it)."""

    known: HeldKey | None  # None: the version could not be read
    key: ledger.KeyRef | None  # how the record names it (None: not by id)
    created: datetime | None

    @property
    def owes(self) -> bool:
        """Whether there may be a key to revoke: one was read, or the version is unreadable."""
        return self.known is None or self.known.fingerprint is not None

    @property
    def text(self) -> str | None:
        if self.known is None:
            return "a key that cannot be read from here"
        if self.known.fingerprint is None:
            return None
        ident = f"key {self.known.key_id}" if self.known.key_id else "key (id unknown)"
        return f"{ident} {self.known.fingerprint}"


def _held(run: Run, secret: SecretDescription, pending: str, function: FunctionInfo) -> _Held:
    config = function_config(function.environment)
    try:
        raw, created = run.aws.store().read_with_date(secret.arn, version_id=pending)
    except SecretsStoreError:
        return _Held(None, None, None)
    known = held_key(raw, default_project=config.default_project_id if config else None)
    # `_R` (minted for this very version) only when the function's key names say so.
    minted_here = config is not None and key_names.minted_for(
        known.key_name,
        key_names.key_stem(config.key_name_prefix, secret.name, secret.arn),
        pending,
    )
    return _Held(known, key_ref(known, minted_here=minted_here), created)
