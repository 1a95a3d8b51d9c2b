"""`status`: a secret's rotation state, versions, keys (as fingerprints), admin credential and
the revocations it still owes."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cekura_rotator.secrets_store import CURRENT, PENDING, PREVIOUS, SecretDescription, aws_call
from cekura_rotator_cli import admin
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import EXIT_OK
from cekura_rotator_cli.reading import (
    Version,
    age_seconds,
    age_text,
    cekura_url,
    explicit_cekura_url,
    iso,
    list_versions,
    read_version,
    schedule_text,
    time_text,
)
from cekura_rotator_cli.revocations import MANUAL, Entry, entries

_LABEL_ORDER = {CURRENT: 0, PENDING: 1, PREVIOUS: 2}


@dataclass(frozen=True)
class Status:
    secret: SecretDescription
    rules: Mapping[str, Any]
    versions: list[Version]
    owed: list[Entry]
    admin: admin.AdminView
    now: datetime

    @property
    def last_result(self) -> tuple[str, str | None]:
        pending = self.secret.version_with(PENDING)
        if pending is not None and pending != self.secret.version_with(CURRENT):
            return f"in progress or failed (pending version {pending})", pending
        return "ok", None


def command(args: argparse.Namespace, run: Run) -> int:
    explicit_cekura_url(args, run.env)  # a bad URL fails before anything is read
    store = run.aws.store()
    secret = store.describe(args.secret_id)
    raw = aws_call("DescribeSecret", run.aws.secretsmanager().describe_secret, SecretId=secret.arn)
    versions: list[Version] = []
    for version_id, labels, created in list_versions(run.aws.secretsmanager(), secret.arn):
        value, problem = read_version(store, secret.arn, version_id, run.console)
        versions.append(Version(version_id, labels, created, value, problem))
    epoch = datetime.min.replace(tzinfo=UTC)
    versions.sort(
        key=lambda v: (
            min((_LABEL_ORDER.get(label, 3) for label in v.labels), default=4),
            -(v.created or epoch).timestamp(),
        )
    )
    current = next((v.value for v in versions if CURRENT in v.labels), None)
    function_env = (
        run.aws.function_environment(secret.rotation_lambda_arn)
        if secret.rotation_lambda_arn
        else None
    )
    cekura = run.cekura(cekura_url(args, run.env, function_env))
    try:
        admin_view = admin.inspect(
            store=store,
            cekura=cekura,
            value=current,
            function_env=function_env,
            console=run.console,
        )
    finally:
        cekura.close()
    status = Status(
        secret,
        raw.get("RotationRules") or {},
        versions,
        entries(store, secret, run),
        admin_view,
        run.now(),
    )
    run.console.result(_document(status), _lines(status))
    return EXIT_OK


def _lines(status: Status) -> Iterator[str]:
    secret = status.secret
    result, _ = status.last_result
    yield f"Secret             {secret.name}"
    yield f"ARN                {secret.arn}"
    yield f"Rotation           {'enabled' if secret.rotation_enabled else 'not enabled'}"
    yield f"Rotation function  {secret.rotation_lambda_arn or 'none'}"
    yield f"Schedule           {schedule_text(status.rules)}"
    yield f"Last rotated       {time_text(secret.last_rotated)}"
    yield f"Next rotation      {time_text(secret.next_rotation)}"
    yield f"Last rotation      {result}"
    yield from status.admin.lines()
    yield ""
    yield "Versions"
    for version in status.versions:
        yield f"  {version.version_id}  {' '.join(version.labels) or '(no label)'}"
        if version.value is None:
            yield f"    {version.problem}"
            continue
        value = version.value
        yield f"    key id       {value.key_id if value.key_id is not None else 'unknown'}"
        yield f"    key name     {value.key_name or 'unknown'}"
        yield f"    fingerprint  {version.fingerprint}"
        yield f"    age          {age_text(version.born, status.now)}"
    yield ""
    yield from _owed_lines(status.owed, status.now)


def _owed_lines(owed: Sequence[Entry], now: datetime) -> Iterator[str]:
    if not owed:
        yield "Revocations awaiting deletion: none"
        return
    yield f"Revocations awaiting deletion ({len(owed)})"
    for entry in owed:
        yield f"  {entry.line(now)}"
    if any(e.state == MANUAL for e in owed):
        yield (
            "  Delete manual ones in the Cekura dashboard, then: "
            "cekura-rotator revocations clear --secret-id SECRET --version-id VERSION"
        )


def _document(status: Status) -> dict[str, Any]:
    secret = status.secret
    result, pending = status.last_result
    return {
        "secret": {"name": secret.name, "arn": secret.arn},
        "rotation": {
            "enabled": secret.rotation_enabled,
            "function_arn": secret.rotation_lambda_arn,
            "rules": dict(status.rules),
            "schedule": schedule_text(status.rules),
            "last_rotated": iso(secret.last_rotated),
            "next_rotation": iso(secret.next_rotation),
            "last_result": {
                "status": "ok" if pending is None else "pending",
                "pending_version": pending,
                "text": result,
            },
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
