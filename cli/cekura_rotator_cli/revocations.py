"""`revocations list` and `revocations clear`: the record of old keys still to be deleted.

The record is the rotator's own (`cekura_rotator.revocation`): a staging label on each version
whose key is owed a revocation. `CEKURA_OWED_<version>` is retried by every later finishSecret;
`CEKURA_MANUAL_<version>` means Cekura refused the deletion to the rotator's credential, so a
person deletes the key in the Cekura dashboard and then clears the entry here. The version's
value names the key (id, name, creation time); the key itself is shown as a fingerprint only.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cekura_rotator.ledger import Entry as OwedRevocation
from cekura_rotator.ledger import State
from cekura_rotator.ledger import entries as owed_revocations
from cekura_rotator.secrets_store import SecretDescription, SecretsStore, aws_call
from cekura_rotator_cli.console import PROG
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import EXIT_OK, EXIT_USAGE, CliError
from cekura_rotator_cli.reading import (
    Version,
    age_seconds,
    age_text,
    iso,
    list_versions,
    read_version,
)

OWED = "owed"
MANUAL = "manual"
_STATE_TEXT = {
    OWED: "owed: retried by every later rotation",
    MANUAL: "awaiting manual deletion in the Cekura dashboard",
}


@dataclass(frozen=True)
class Entry:
    """One revocation awaiting deletion, as an operator needs it."""

    secret: SecretDescription
    owed: OwedRevocation
    version: Version

    @property
    def state(self) -> str:
        return MANUAL if self.owed.state is State.MANUAL else OWED

    @property
    def key_id(self) -> int | None:
        return self.version.value.key_id if self.version.value else None

    @property
    def key_name(self) -> str | None:
        return self.version.value.key_name if self.version.value else None

    def document(self, now: datetime) -> dict[str, Any]:
        return {
            "secret_name": self.secret.name,
            "secret_arn": self.secret.arn,
            "version_id": self.owed.version_id,
            "state": self.state,
            "labels": list(self.owed.labels),
            "key_id": self.key_id,
            "key_name": self.key_name,
            "fingerprint": self.version.fingerprint,
            "created": iso(self.version.born),  # the key's, else its version's
            "age_seconds": age_seconds(self.version.born, now),
            "problem": self.version.problem,
        }

    def line(self, now: datetime) -> str:
        ident = f"key {self.key_id}" if self.key_id is not None else "key (id unknown)"
        name = f" {self.key_name!r}" if self.key_name else ""
        fp = f" {self.version.fingerprint}" if self.version.fingerprint else ""
        problem = f" [{self.version.problem}]" if self.version.problem else ""
        return (
            f"{ident}{name}{fp} in version {self.owed.version_id}, "
            f"age {age_text(self.version.born, now)}: {_STATE_TEXT[self.state]}{problem}"
        )


def entries(store: SecretsStore, secret: SecretDescription, run: Run) -> list[Entry]:
    """The secret's revocations awaiting deletion, owed ones first."""
    owed = owed_revocations(secret.versions)
    if not owed:
        return []
    created = {v: c for v, _, c in list_versions(run.aws.secretsmanager(), secret.arn)}
    found = []
    for item in owed:
        value, problem = read_version(store, secret.arn, item.version_id, run.console)
        version = Version(
            item.version_id, secret.stages_of(item.version_id), created.get(item.version_id),
            value, problem,
        )  # fmt: skip
        found.append(Entry(secret, item, version))
    return found


def list_command(args: argparse.Namespace, run: Run) -> int:
    store = run.aws.store()
    secrets = (
        [store.describe(s) for s in args.secret_id] if args.secret_id else list(_all_secrets(run))
    )
    if args.function_arn:
        secrets = [s for s in secrets if s.rotation_lambda_arn == args.function_arn]
    found = [entry for secret in secrets for entry in entries(store, secret, run)]
    now = run.now()
    manual = sum(1 for e in found if e.state == MANUAL)
    document = {
        "revocations": [e.document(now) for e in found],
        "owed": len(found) - manual,
        "manual": manual,
        "secrets_checked": len(secrets),
    }
    run.console.result(document, _list_lines(found, len(secrets), now))
    return EXIT_OK


def _list_lines(found: Sequence[Entry], checked: int, now: datetime) -> Iterator[str]:
    if not found:
        yield f"No revocations awaiting deletion ({checked} secret(s) checked)."
        return
    rows = [
        (
            e.secret.name,
            str(e.key_id) if e.key_id is not None else "?",
            e.key_name or "?",
            age_text(e.version.born, now).split(" (", 1)[0],
            e.state,
            e.owed.version_id,
        )
        for e in found
    ]
    header = ("SECRET", "KEY ID", "KEY NAME", "AGE", "STATE", "VERSION")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
    manual = [e for e in found if e.state == MANUAL]
    yield ""
    yield f"owed:   {len(found) - len(manual)} (later rotations retry these by themselves)"
    yield f"manual: {len(manual)} (Cekura refused the rotator's credential)"
    if manual:
        example = manual[0]
        yield (
            "Delete each manual key in the Cekura dashboard, then clear its entry, e.g. "
            f"{PROG} revocations clear --secret-id {example.secret.arn} "
            f"--version-id {example.owed.version_id}"
        )


def _all_secrets(run: Run) -> Iterator[SecretDescription]:
    """Every secret whose labels record an owed revocation, from ListSecrets alone."""
    client = run.aws.secretsmanager()
    kwargs: dict[str, Any] = {"MaxResults": 100}
    while True:
        page = aws_call("ListSecrets", client.list_secrets, **kwargs)
        for item in page.get("SecretList", []):
            versions = {v: tuple(s) for v, s in item.get("SecretVersionsToStages", {}).items()}
            if owed_revocations(versions):
                yield SecretDescription(
                    arn=str(item["ARN"]),
                    name=str(item["Name"]),
                    rotation_enabled=bool(item.get("RotationEnabled")),
                    rotation_lambda_arn=item.get("RotationLambdaARN") or None,
                    versions=versions,
                )
        if not page.get("NextToken"):
            return
        kwargs["NextToken"] = page["NextToken"]


def clear_command(args: argparse.Namespace, run: Run) -> int:
    store = run.aws.store()
    secret = store.describe(args.secret_id)
    found = entries(store, secret, run)
    if args.version_id:
        chosen = [e for e in found if e.owed.version_id == args.version_id]
        what = f"version {args.version_id}"
    else:
        chosen = [e for e in found if e.key_id == args.key_id]
        what = f"key {args.key_id}"
    if not chosen:
        listed = ", ".join(e.owed.version_id for e in found) or "none"
        raise CliError(
            f"no revocation awaiting deletion for {what} (entries of this secret: {listed}); "
            "nothing was changed",
            EXIT_USAGE,
        )
    now = run.now()
    for entry in chosen:
        for label in entry.owed.labels:
            store.move_stage(
                secret.arn, stage=label, to_version=None, from_version=entry.owed.version_id
            )
    document = {
        "secret_arn": secret.arn,
        "cleared": [e.document(now) for e in chosen],
    }
    lines = [f"Cleared from {secret.name}: {e.line(now)}" for e in chosen]
    if any(e.state == OWED for e in chosen):
        lines.append(
            "An owed entry was still being retried by the rotator; once cleared, nothing will "
            "revoke that key: make sure it is deleted in the Cekura dashboard."
        )
    run.console.result(document, lines)
    return EXIT_OK
