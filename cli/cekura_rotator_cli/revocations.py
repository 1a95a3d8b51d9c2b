"""`revocations list` and `revocations clear`: the record of old keys still to be deleted.

The record is the rotator's own, in its own vocabulary (`cekura_rotator.ledger`): a staging label
on each version whose key is owed a revocation, owed (settled by later rotations and the health
check), grace (superseded mid-rotation, owed from the next rotation) or manual (Cekura refused the
deletion to the rotator's credential: a person deletes the key in the Cekura dashboard). The key's
id and project come from the label when it states them, else from the version's value; the key
itself is shown as a fingerprint only.

`clear` removes a record only on proof that its key is gone (`Revoker.prove_gone`: Cekura answers
401 to the key). A key Cekura still accepts keeps its record (exit 1). `--force` clears a record
whose key cannot be read, and so cannot be tested, with a warning.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cekura_rotator import ledger
from cekura_rotator.health.rules import rotated_by
from cekura_rotator.revocation import Proof, Revoker
from cekura_rotator.secrets_store import SecretDescription, SecretsStore
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
)
from cekura_rotator_cli.options import (
    add_cekura_url,
    add_secret_id,
    aws_options,
    positive_int,
)
from cekura_rotator_cli.reading import (
    Version,
    age_seconds,
    age_text,
    cekura_url,
    explicit_cekura_url,
    find_secret,
    function_config,
    iso,
    read_version,
    rotation_function_env,
)

NAME = "revocations"
HELP = "old keys awaiting deletion: list them, clear one once Cekura shows it is gone"
_STATE_TEXT = {
    ledger.State.OWED: "owed: later rotations and the health check delete it",
    ledger.State.GRACE: "grace: superseded mid-rotation, owed from the next rotation",
    ledger.State.MANUAL: "awaiting manual deletion in the Cekura dashboard",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        allow_abbrev=False,
        parents=[aws_options(suppress=True)],
        help="every revocation awaiting deletion, in the region's secrets or those named",
    )
    listing.add_argument(
        "--secret-id", action="append", help="secret name or ARN (repeatable); default: all"
    )
    listing.add_argument("--function-arn", help="only secrets rotated by this function")
    clearing = actions.add_parser(
        "clear",
        allow_abbrev=False,
        parents=[aws_options(suppress=True)],
        help="remove an entry once Cekura no longer knows its key (deleted in the dashboard)",
    )
    add_secret_id(clearing)
    which = clearing.add_mutually_exclusive_group(required=True)
    which.add_argument("--version-id", help="the version whose key was deleted")
    which.add_argument("--key-id", type=positive_int, help="the id of the key that was deleted")
    clearing.add_argument(
        "--force",
        action="store_true",
        help="clear an entry whose key cannot be read (so Cekura cannot be asked), with a "
        "warning; never one whose key Cekura still accepts",
    )
    add_cekura_url(clearing)


def run(args: argparse.Namespace, run: Run) -> int:
    return list_command(args, run) if args.action == "list" else clear_command(args, run)


@dataclass(frozen=True)
class Owed:
    """One revocation awaiting deletion, as an operator needs it."""

    secret: SecretDescription
    entry: ledger.Entry
    version: Version

    @property
    def state(self) -> ledger.State:
        return self.entry.state

    @property
    def key_id(self) -> int | None:
        if self.entry.key_id is not None:
            return self.entry.key_id
        return self.version.value.key_id if self.version.value else None

    @property
    def project(self) -> int | None:
        if self.entry.project is not None:
            return self.entry.project
        return self.version.value.project_id if self.version.value else None

    @property
    def key_name(self) -> str | None:
        return self.version.value.key_name if self.version.value else None

    @property
    def version_id(self) -> str:
        return self.entry.version_id

    def describe(self) -> str:
        """`key 12 'name' sha256:... (project 3)`, never the key."""
        ident = f"key {self.key_id}" if self.key_id is not None else "key (id unknown)"
        name = f" {self.key_name!r}" if self.key_name else ""
        fp = f" {self.version.fingerprint}" if self.version.fingerprint else ""
        project = f" (project {self.project})" if self.project is not None else ""
        return f"{ident}{name}{fp}{project}"

    def document(self, now: datetime) -> dict[str, Any]:
        return {
            "secret_name": self.secret.name,
            "secret_arn": self.secret.arn,
            "version_id": self.version_id,
            "state": str(self.state),
            "labels": list(self.entry.labels),
            "key_id": self.key_id,
            "key_name": self.key_name,
            "project_id": self.project,
            "fingerprint": self.version.fingerprint,
            "created": iso(self.version.born),  # the key's, else its version's
            "age_seconds": age_seconds(self.version.born, now),
            "problem": self.version.problem,
        }

    def line(self, now: datetime) -> str:
        problem = f" [the version {self.version.problem}]" if self.version.problem else ""
        return (
            f"{self.describe()} in version {self.version_id}, "
            f"age {age_text(self.version.born, now)}: {_STATE_TEXT[self.state]}{problem}"
        )


def entries(store: SecretsStore, secret: SecretDescription, run: Run) -> list[Owed]:
    """The secret's revocations awaiting deletion: owed, then grace, then manual."""
    recorded = ledger.entries(secret.versions)
    if not recorded:
        return []
    created = {v.version_id: v.created for v in store.list_versions(secret.arn)}
    found = []
    for entry in recorded:
        read = read_version(store, secret.arn, entry.version_id, run.console)
        version = Version(
            entry.version_id, secret.stages_of(entry.version_id),
            read.created or created.get(entry.version_id), read.value, read.problem,
        )  # fmt: skip
        found.append(Owed(secret, entry, version))
    return found


# -- list --------------------------------------------------------------------------------------


def list_command(args: argparse.Namespace, run: Run) -> int:
    store = run.aws.store()
    if args.secret_id:
        secrets = [find_secret(run, s) for s in args.secret_id]
        searched = f"{len(secrets)} secret(s) named"
    else:
        secrets, searched = _rotated_secrets(args, run, store)
    if args.function_arn:
        secrets = [s for s in secrets if rotated_by(s, args.function_arn)]
    found = [owed for secret in secrets for owed in entries(store, secret, run)]
    now = run.now()
    counts = {state: sum(1 for e in found if e.state == state) for state in ledger.State}
    document = {
        "revocations": [e.document(now) for e in found],
        **{str(state): n for state, n in counts.items()},
        "secrets_checked": len(secrets),
        "searched": searched,
    }
    run.console.result(document, _list_lines(found, counts, searched, now, run))
    return EXIT_OK


def _rotated_secrets(
    args: argparse.Namespace, run: Run, store: SecretsStore
) -> tuple[list[SecretDescription], str]:
    """The secrets of the region that rotate (or carry the rotator's record); refuse when there
    are none, which is nearly always the wrong region or account."""
    if args.function_arn:
        run.aws.check_region(args.function_arn, "the function")
    listed = [d.secret for d in store.list_secrets()]
    rotated = [s for s in listed if s.rotation_lambda_arn or ledger.rotator_labels(s.versions)]
    where = run.aws.where()
    by = f"rotated by {args.function_arn}" if args.function_arn else "with rotation"
    if args.function_arn:
        rotated = [s for s in rotated if rotated_by(s, args.function_arn)]
    if not rotated:
        raise CliError(
            f"no secret {by} in {where} ({len(listed)} secret(s) listed), so there is nothing "
            "to check: a different --region or --profile?",
            EXIT_USAGE,
        )
    return rotated, f"{len(rotated)} secret(s) {by} in {where}"


def _list_lines(
    found: Sequence[Owed],
    counts: dict[ledger.State, int],
    searched: str,
    now: datetime,
    run: Run,
) -> Iterator[str]:
    if not found:
        yield f"No revocations awaiting deletion (searched {searched})."
        return
    rows = [
        (
            e.secret.name,
            str(e.key_id) if e.key_id is not None else "?",
            e.key_name or "?",
            age_text(e.version.born, now).split(" (", 1)[0],
            str(e.state),
            e.version_id,
        )
        for e in found
    ]
    header = ("SECRET", "KEY ID", "KEY NAME", "AGE", "STATE", "VERSION")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
    yield ""
    yield f"owed:   {counts[ledger.State.OWED]} (later rotations and the health check delete these)"
    yield f"grace:  {counts[ledger.State.GRACE]} (owed from the next rotation)"
    yield f"manual: {counts[ledger.State.MANUAL]} (Cekura refused the rotator's credential)"
    yield f"Searched {searched}."
    manual = [e for e in found if e.state == ledger.State.MANUAL]
    if manual:
        example = manual[0]
        yield (
            "Delete each manual key in the Cekura dashboard, then clear its entry (it is cleared "
            "only once Cekura no longer knows the key), e.g. "
            + run.command(
                "revocations", "clear", "--secret-id", example.secret.arn,
                "--version-id", example.version_id,
            )
        )  # fmt: skip


# -- clear -------------------------------------------------------------------------------------


def clear_command(args: argparse.Namespace, run: Run) -> int:
    explicit_cekura_url(args, run.env)  # a bad URL fails before anything is read
    store = run.aws.store()
    secret = find_secret(run, args.secret_id)
    found = entries(store, secret, run)
    if args.version_id:
        chosen = [e for e in found if e.version_id == args.version_id]
        what = f"version {args.version_id}"
    else:
        chosen = [e for e in found if e.key_id == args.key_id]
        what = f"key {args.key_id}"
    if not chosen:
        listed = ", ".join(f"{e.describe()} in version {e.version_id}" for e in found) or "none"
        raise CliError(
            f"no revocation awaiting deletion for {what} (entries of this secret: {listed}); "
            "nothing was changed",
            EXIT_USAGE,
        )
    function_env = rotation_function_env(run, secret)
    config = function_config(function_env)
    default_project = config.default_project_id if config else None
    cekura = run.cekura(cekura_url(args, run.env, function_env))
    revoker = Revoker(store=store, cekura=cekura)
    try:
        verdicts = [_verdict(e, revoker, default_project, args.force) for e in chosen]
        refused = [(e, v) for e, v in zip(chosen, verdicts, strict=True) if v.code != EXIT_OK]
        cleared = []
        with run.changes(), run.rotator_logs():
            for entry, verdict in zip(chosen, verdicts, strict=True):
                if verdict.code != EXIT_OK:
                    continue
                if revoker.recorder.clear(secret.arn, entry.entry):
                    cleared.append((entry, verdict))
                    run.changed.append(f"cleared the record of {entry.describe()}")
                else:
                    refused.append((entry, _Verdict(EXIT_UNAVAILABLE, _NOT_REMOVED)))
    finally:
        cekura.close()
    now = run.now()
    for entry, verdict in cleared:
        if verdict.forced:
            run.console.warn(
                f"cleared the record of {entry.describe()} in version {entry.version_id} without "
                f"proof that the key is gone (--force: {verdict.text}); if it is still live, "
                "nothing tracks it any more: delete it in the Cekura dashboard"
            )
    run.console.result(
        {
            "secret_arn": secret.arn,
            "cleared": [{**e.document(now), "proof": v.text} for e, v in cleared],
            "kept": [{**e.document(now), "reason": v.text} for e, v in refused],
        },
        [f"Cleared from {secret.name}: {e.line(now)} ({v.text})" for e, v in cleared],
    )
    if refused:
        # A live key (1) says more than an unreachable Cekura (3).
        code = EXIT_FAILED if any(v.code == EXIT_FAILED for _, v in refused) else EXIT_UNAVAILABLE
        reasons = "; ".join(v.text for _, v in refused)
        raise CliError(f"the record was kept: {reasons}", code)
    return EXIT_OK


@dataclass(frozen=True)
class _Verdict:
    code: int
    text: str
    forced: bool = False


_NOT_REMOVED = (
    "Secrets Manager did not remove the record's label (see the warning above); run this again"
)


def _verdict(owed: Owed, revoker: Revoker, default_project: int | None, force: bool) -> _Verdict:
    """Whether this entry may be cleared: EXIT_OK on proof (or --force where no proof can be
    had), else the exit code and why not."""
    value = owed.version.value
    project = owed.project or default_project
    where = f"{owed.describe()} in version {owed.version_id}"
    untestable = None
    if value is None:
        untestable = f"the version {owed.version.problem}, so Cekura cannot be asked about its key"
    elif project is None:
        untestable = "no project is known for the key, so Cekura cannot be asked about it"
    if untestable is not None:
        if force:
            return _Verdict(EXIT_OK, untestable, forced=True)
        return _Verdict(
            EXIT_FAILED,
            f"{where}: {untestable}; if you deleted it in the Cekura dashboard, clear it with "
            "--force",
        )
    assert value is not None
    assert project is not None
    answer = revoker.prove_gone(value.api_key, project=project, deadline=None)
    if answer == Proof.GONE:
        return _Verdict(EXIT_OK, "Cekura no longer knows the key: HTTP 401")
    if answer == Proof.LIVE:
        return _Verdict(
            EXIT_FAILED,
            f"{where} is still live at Cekura: delete it in the Cekura dashboard (project "
            f"{project}, API keys, key id {owed.key_id if owed.key_id is not None else 'unknown'}"
            f"{f' named {owed.key_name!r}' if owed.key_name else ''}), then clear it again",
        )
    return _Verdict(
        EXIT_UNAVAILABLE,
        f"{where}: Cekura could not be asked whether the key is gone; try again later",
    )
