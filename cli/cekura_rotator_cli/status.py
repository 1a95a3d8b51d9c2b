"""`status`: one secret's rotation state, versions, keys (as fingerprints), whether Cekura accepts
the current key, the admin credential and the revocations it still owes. Without `--secret-id`,
the fleet: one row per secret the rotation function rotates (see `health`).

Exit code: 1 when the current key is rejected or not in the documented format, or a rotation is
stuck; 3 when Cekura cannot be asked, or the operator may not read the current version; else 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cekura_rotator import ledger
from cekura_rotator.cekura import CekuraClient
from cekura_rotator.health.rules import is_stuck, pending_version
from cekura_rotator.secrets_store import CURRENT, PENDING, PREVIOUS, SecretDetails
from cekura_rotator_cli import admin, health
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, CliError
from cekura_rotator_cli.keys import Judgement, KeyVerdict, judge_key
from cekura_rotator_cli.options import add_fleet_options, add_secret_id
from cekura_rotator_cli.reading import (
    Read,
    Version,
    age_seconds,
    age_text,
    cekura_url,
    current_value,
    explicit_cekura_url,
    iso,
    key_project,
    read_version,
    rotation_function_env,
    schedule_text,
    time_text,
)
from cekura_rotator_cli.revocations import Owed, entries

NAME = "status"
HELP = (
    "a secret's rotation, versions, keys (fingerprints only), whether Cekura accepts the current "
    "key, admin credential, revocations owed; without --secret-id, every secret of the function"
)
_LABEL_ORDER = {CURRENT: 0, PENDING: 1, PREVIOUS: 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_secret_id(parser, required=False)
    add_fleet_options(parser, verb="list", scope="without --secret-id: ")


def run(args: argparse.Namespace, run: Run) -> int:
    if args.secret_id is None:
        return health.fleet_status(args, run)
    if args.function_arn:
        raise CliError(
            "--function-arn lists a function's secrets; with --secret-id the secret names its "
            "own function",
            EXIT_USAGE,
        )
    return secret_status(args, run)


@dataclass(frozen=True)
class Status:
    details: SecretDetails
    versions: list[Version]
    current: Read
    verdict: KeyVerdict
    owed: list[Owed]
    admin: admin.AdminView
    now: datetime
    stuck_hours: float

    @property
    def pending(self) -> Version | None:
        """The version AWSPENDING is on, when it is not AWSCURRENT's (a rotation not finished)."""
        pending = pending_version(self.details.secret.versions)
        return next((v for v in self.versions if v.version_id == pending), None)

    @property
    def stuck(self) -> bool:
        pending = self.pending
        return pending is not None and is_stuck(pending.created, self.now, self.stuck_hours)

    def last_result(self) -> tuple[str, str]:
        """(status, text) of the last rotation."""
        pending = self.pending
        if pending is None:
            return "ok", "ok"
        since = f"pending version {pending.version_id}, since {time_text(pending.created)}"
        if self.stuck:
            return "stuck", f"stuck ({since})"
        return "pending", f"in progress or failed ({since})"


def secret_status(args: argparse.Namespace, run: Run) -> int:
    explicit_cekura_url(args, run.env)  # a bad URL fails before anything is read
    run.aws.check_region(args.secret_id, "the secret")
    store = run.aws.store()
    details = store.describe_details(args.secret_id)
    secret = details.secret
    versions = []
    for info in store.list_versions(secret.arn):
        read = read_version(store, secret.arn, info.version_id, run.console)
        created = read.created or info.created  # GetSecretValue's date, where there is a value
        versions.append(Version(info.version_id, info.stages, created, read.value, read.problem))
    epoch = datetime.min.replace(tzinfo=UTC)
    versions.sort(
        key=lambda v: (
            min((_LABEL_ORDER.get(label, 3) for label in v.labels), default=4),
            -(v.created or epoch).timestamp(),
        )
    )
    current = current_value(store, secret, run.console)
    function_env = rotation_function_env(run, secret)
    cekura = run.cekura(cekura_url(args, run.env, function_env))
    try:
        verdict = _verdict(cekura, current, function_env)
        admin_view = admin.inspect(
            store=store,
            cekura=cekura,
            value=current.value,
            function_env=function_env,
            console=run.console,
        )
    finally:
        cekura.close()
    status = Status(
        details,
        versions,
        current,
        verdict,
        entries(store, secret, run),
        admin_view,
        run.now(),
        args.stuck_hours,
    )
    run.console.result(_document(status), _lines(status, run))
    return _outcome(status, run)


def _verdict(
    cekura: CekuraClient, current: Read, function_env: Mapping[str, str] | None
) -> KeyVerdict:
    if current.value is None:
        state: Judgement = "not checked"
        if current.kind == "malformed":
            state = "malformed"
        elif current.kind == "unreadable":
            state = "unknown"
        return KeyVerdict(state, f"not checked: the AWSCURRENT version {current.problem}")
    return judge_key(cekura, current.value, key_project(current.value, function_env))


def _outcome(status: Status, run: Run) -> int:
    """The exit code, with one line on stderr saying why when it is not 0."""
    secret = status.details.secret
    problems: list[tuple[int, str]] = []
    if status.current.kind == "malformed":
        problems.append(
            (
                EXIT_FAILED,
                f"the AWSCURRENT version {status.current.problem}; store a good key with "
                + run.store_key_command(secret.name),
            )
        )
    elif status.verdict.state == "rejected":
        problems.append(
            (
                EXIT_FAILED,
                f"Cekura does not accept the current key: {status.verdict.text}; rotate with an "
                "admin credential, or store a key from the dashboard with "
                + run.store_key_command(secret.name),
            )
        )
    if status.stuck:
        pending = status.pending
        assert pending is not None
        problems.append(
            (
                EXIT_FAILED,
                f"a rotation is stuck (version {pending.version_id} pending since "
                f"{time_text(pending.created)}); see why in the function's log, then "
                + run.cancel_command(secret.arn),
            )
        )
    if status.current.kind == "unreadable":
        problems.append((EXIT_UNAVAILABLE, f"the AWSCURRENT version {status.current.problem}"))
    elif status.verdict.state == "unknown":
        problems.append(
            (
                EXIT_UNAVAILABLE,
                f"whether Cekura accepts the current key is {status.verdict.text}",
            )
        )
    if not problems:
        return EXIT_OK
    code = EXIT_FAILED if any(c == EXIT_FAILED for c, _ in problems) else EXIT_UNAVAILABLE
    raise CliError("; ".join(text for _, text in problems), code)


def _lines(status: Status, run: Run) -> Iterator[str]:
    details = status.details
    secret = details.secret
    _, result = status.last_result()
    yield f"Secret             {secret.name}"
    yield f"ARN                {secret.arn}"
    if details.deleted_date is not None:
        yield f"Deleted            scheduled for deletion on {time_text(details.deleted_date)}"
    yield f"Rotation           {'enabled' if secret.rotation_enabled else 'not enabled'}"
    yield f"Rotation function  {secret.rotation_lambda_arn or 'none'}"
    yield f"Schedule           {schedule_text(details.rotation_rules)}"
    yield f"Last rotated       {time_text(secret.last_rotated)}"
    yield f"Next rotation      {time_text(secret.next_rotation)}"
    yield f"Last rotation      {result}"
    yield f"Current key        {status.verdict.text}"
    yield from status.admin.lines()
    yield ""
    yield "Versions"
    for version in status.versions:
        yield f"  {version.version_id}  {' '.join(version.labels) or '(no label)'}"
        if version.value is None:
            yield f"    the version {version.problem}"
            continue
        value = version.value
        yield f"    key id       {value.key_id if value.key_id is not None else 'unknown'}"
        yield f"    key name     {value.key_name or 'unknown'}"
        yield f"    fingerprint  {version.fingerprint}"
        yield f"    age          {age_text(version.born, status.now)}"
    yield ""
    yield from _owed_lines(status.owed, status.now, run)


def _owed_lines(owed: Sequence[Owed], now: datetime, run: Run) -> Iterator[str]:
    if not owed:
        yield "Revocations awaiting deletion: none"
        return
    yield f"Revocations awaiting deletion ({len(owed)})"
    for entry in owed:
        yield f"  {entry.line(now)}"
    manual = [e for e in owed if e.state == ledger.State.MANUAL]
    if manual:
        yield (
            "  Delete manual ones in the Cekura dashboard, then: "
            + run.command(
                "revocations", "clear", "--secret-id", manual[0].secret.arn,
                "--version-id", manual[0].version_id,
            )
        )  # fmt: skip


def _document(status: Status) -> dict[str, Any]:
    details = status.details
    secret = details.secret
    result, text = status.last_result()
    pending = status.pending
    value = status.current.value
    return {
        "secret": {"name": secret.name, "arn": secret.arn},
        "deleted_date": iso(details.deleted_date),
        "rotation": {
            "enabled": secret.rotation_enabled,
            "function_arn": secret.rotation_lambda_arn,
            "rules": dict(details.rotation_rules),
            "schedule": schedule_text(details.rotation_rules),
            "last_rotated": iso(secret.last_rotated),
            "next_rotation": iso(secret.next_rotation),
            "last_result": {
                "status": result,
                "pending_version": pending.version_id if pending else None,
                "text": text,
            },
        },
        "current_key": {
            "state": status.verdict.state,
            "text": status.verdict.text,
            "key_id": value.key_id if value else None,
            "fingerprint": value.fingerprint if value else None,
        },
        "admin_secret": status.admin.document(),
        "versions": [
            {
                "version_id": v.version_id,
                "labels": list(v.labels),
                "created": iso(v.created),
                "key_id": v.value.key_id if v.value else None,
                "key_name": v.value.key_name if v.value else None,
                "key_created_at": v.value.created_at if v.value else None,
                "project_id": v.value.project_id if v.value else None,
                "fingerprint": v.fingerprint,
                "age_seconds": age_seconds(v.born, status.now),
                "problem": v.problem,
            }
            for v in status.versions
        ],
        "revocations_awaiting_deletion": [e.document(status.now) for e in status.owed],
    }
