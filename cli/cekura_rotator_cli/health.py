"""`health` and the fleet view of `status`: the scheduled health check's own checks, run from an
operator's machine (`cekura_rotator.health`, the same code the health function runs).

`health` reports; with `--fix` it also settles owed revocations, clears manual records whose key
Cekura no longer knows, and heals dead keys, as the function does. `status` without
`--secret-id` shows the same report as one row per secret, and never changes anything.

Exit code: 1 when a current key is rejected or a rotation is stuck or overdue; 3 when a key could
not be checked (Cekura unreachable, a version the operator may not read) or secrets were left
unchecked; else 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cekura_rotator.config import Config
from cekura_rotator.errors import ConfigError
from cekura_rotator.health import HealthCheck, HealthReport, HealthSettings, SecretHealth
from cekura_rotator.health.rules import rotated_by, unqualified
from cekura_rotator.secrets_store import SecretDescription
from cekura_rotator_cli.aws import FunctionInfo
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    AwsError,
    CliError,
)
from cekura_rotator_cli.options import add_fleet_options
from cekura_rotator_cli.reading import explicit_cekura_url, find_secret, iso, time_text

NAME = "health"
HELP = (
    "the health check from here: dead keys, stuck and overdue rotations, revocations owed; "
    "--fix also settles, clears and heals as the health function does"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-id", action="append", help="check only this secret (repeatable); default: all"
    )
    parser.add_argument(
        "--fix",
        action="store_true",
        help="settle owed revocations, clear manual records whose key is gone, heal dead keys "
        "(default: report only)",
    )
    add_fleet_options(parser, verb="check")


def run(args: argparse.Namespace, run: Run) -> int:
    reports = _check(args, run, fix=args.fix, secret_ids=args.secret_id)
    rows = [row for _, report in reports for row in _rows(report)]
    run.console.result(
        {
            "fix": args.fix,
            "functions": [
                {
                    "function_arn": function.arn,
                    "summary": dict(report.summary()),
                    "secrets": [_row_document(r) for r in _rows(report)],
                    "unfinished": list(report.unfinished),
                }
                for function, report in reports
            ],
        },
        _health_lines(reports, rows),
    )
    return _exit(rows, [u for _, report in reports for u in report.unfinished], run)


def fleet_status(args: argparse.Namespace, run: Run) -> int:
    """`status` without `--secret-id`: one row per secret, nothing changed."""
    reports = _check(args, run, fix=False, secret_ids=None)
    rows = [row for _, report in reports for row in _rows(report)]
    run.console.result(
        {
            "functions": [function.arn for function, _ in reports],
            "secrets": [_row_document(r) for r in rows],
            "unfinished": [u for _, report in reports for u in report.unfinished],
        },
        _table(rows),
    )
    return _exit(rows, [u for _, report in reports for u in report.unfinished], run)


# -- running the health check ------------------------------------------------------------------


def _check(
    args: argparse.Namespace, run: Run, *, fix: bool, secret_ids: Sequence[str] | None
) -> list[tuple[FunctionInfo, HealthReport]]:
    explicit = explicit_cekura_url(args, run.env)  # a bad URL fails before anything is read
    store = run.aws.store()
    reports = []
    for function, ids in _functions(args, run, secret_ids):
        config = _config(function, explicit)
        cekura = run.cekura(config.cekura_api_url)
        try:
            check = HealthCheck(
                config=config,
                settings=HealthSettings(
                    rotation_function_arn=function.arn,
                    stuck_hours=args.stuck_hours,
                    # An operator's run heals only with --fix; without it, it says it would.
                    heal=True,
                ),
                store=store,
                cekura=cekura,
            )
            with run.rotator_logs():
                report = check.run(ids, fix=fix, deadline=None)
            if report.rejected_input:
                reasons = "; ".join(f"{s}: {why}" for s, why in report.rejected_input.items())
                raise CliError(
                    f"the health check of {function.arn} refused these secrets, and checked "
                    f"nothing: {reasons}",
                    EXIT_USAGE,
                )
            reports.append((function, report))
        finally:
            cekura.close()
    return reports


def _functions(
    args: argparse.Namespace, run: Run, secret_ids: Sequence[str] | None
) -> list[tuple[FunctionInfo, list[str] | None]]:
    """The rotation functions to check, each with the secrets named for it (None: all)."""
    if args.function_arn:
        run.aws.check_region(args.function_arn, "the function")
        function = _rotator(run, args.function_arn)
        if not secret_ids:
            return [(function, None)]
        secrets = [find_secret(run, s) for s in secret_ids]
        _same_function(secrets, function.arn)
        return [(function, [s.arn for s in secrets])]
    if secret_ids:
        grouped: dict[str, list[SecretDescription]] = {}
        for secret_id in secret_ids:
            secret = find_secret(run, secret_id)
            if not secret.rotation_lambda_arn:
                raise CliError(
                    f"secret {secret.arn} has no rotation function, so the health check does not "
                    "look at it",
                    EXIT_USAGE,
                )
            grouped.setdefault(unqualified(secret.rotation_lambda_arn), []).append(secret)
        return [(_rotator(run, arn), [s.arn for s in ss]) for arn, ss in grouped.items()]
    listed = [d.secret for d in run.aws.store().list_secrets()]
    arns = sorted({unqualified(s.rotation_lambda_arn) for s in listed if s.rotation_lambda_arn})
    found: list[tuple[FunctionInfo, list[str] | None]] = []
    for arn in arns:
        try:
            function = run.aws.function(arn)
        except AwsError as e:
            run.console.warn(f"skipped the secrets of {arn}: {e.message}")
            continue
        if function.is_rotator:
            found.append((function, None))
    if not found:
        raise CliError(
            f"no secret in {run.aws.where()} is rotated by a Cekura rotator ({len(listed)} "
            "secret(s) listed, rotation functions: "
            f"{', '.join(arns) or 'none'}): a different --region or --profile, or --function-arn?",
            EXIT_USAGE,
        )
    return found


def _rotator(run: Run, function_arn: str) -> FunctionInfo:
    function = run.aws.function(function_arn)
    if not function.is_rotator:
        raise CliError(
            f"{function_arn} is not the Cekura rotator (its handler is {function.handler})",
            EXIT_USAGE,
        )
    return function


def _same_function(secrets: Sequence[SecretDescription], function_arn: str) -> None:
    for secret in secrets:
        if not rotated_by(secret, function_arn):
            raise CliError(
                f"secret {secret.arn} is rotated by {secret.rotation_lambda_arn or 'nothing'}, "
                f"not by {function_arn}",
                EXIT_USAGE,
            )


def _config(function: FunctionInfo, explicit_url: str | None) -> Config:
    try:
        config = Config.from_env(function.environment)
    except ConfigError as e:
        raise CliError(
            f"the configuration of {function.arn} does not parse: {e.message}; fix the stack "
            "parameter and deploy again",
            EXIT_FAILED,
        ) from None
    return replace(config, cekura_api_url=explicit_url) if explicit_url else config


# -- showing the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    secret: SecretHealth

    @property
    def last_result(self) -> str:
        if not self.secret.rotation_enabled:
            return "not enabled"
        if self.secret.stuck:
            return "stuck"
        return "overdue" if self.secret.overdue else "ok"


def _rows(report: HealthReport) -> list[_Row]:
    return [_Row(s) for s in report.secrets]


def _row_document(row: _Row) -> dict[str, Any]:
    s = row.secret
    return {
        "name": s.name,
        "arn": s.arn,
        "rotation_enabled": s.rotation_enabled,
        "last_rotated": iso(s.last_rotated),
        "next_rotation": iso(s.next_rotation),
        "last_result": row.last_result,
        "current_key": s.current_key,
        "current_key_id": s.current_key_id,
        "stuck": s.stuck,
        "overdue": s.overdue,
        "owed": s.owed,
        "grace": s.grace,
        "manual": s.manual,
        "notes": list(s.notes),
        "actions": list(s.actions),
    }


def _table(rows: Sequence[_Row]) -> Iterator[str]:
    if not rows:
        yield "No secrets are rotated by the function."
        return
    header = (
        "SECRET", "LAST ROTATED", "NEXT", "LAST RESULT", "CURRENT KEY", "STUCK", "OWED", "GRACE",
        "MANUAL",
    )  # fmt: skip
    cells = [
        (
            r.secret.name,
            time_text(r.secret.last_rotated),
            time_text(r.secret.next_rotation),
            r.last_result,
            r.secret.current_key,
            "yes" if r.secret.stuck else "no",
            str(r.secret.owed),
            str(r.secret.grace),
            str(r.secret.manual),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    for line in [header, *cells]:
        yield "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()


def _health_lines(
    reports: Sequence[tuple[FunctionInfo, HealthReport]], rows: Sequence[_Row]
) -> Iterator[str]:
    yield from _table(rows)
    for row in rows:
        for note in row.secret.notes:
            yield f"  {row.secret.name}: {note}"
        for action in row.secret.actions:
            yield f"  {row.secret.name}: done: {action}"
    for function, report in reports:
        if report.unfinished:
            yield f"Not checked in time ({function.arn}): {', '.join(report.unfinished)}"


def _exit(rows: Sequence[_Row], unfinished: Sequence[str], run: Run) -> int:
    bad = [
        r.secret.name
        for r in rows
        if r.secret.current_key == "rejected" or r.secret.stuck or r.secret.overdue
    ]
    unknown = [r.secret.name for r in rows if r.secret.current_key in ("unknown", "unreadable")]
    if bad:
        raise CliError(
            f"{len(bad)} secret(s) need attention (a rejected key, a stuck or overdue rotation): "
            f"{', '.join(bad)}; see the notes, or " + run.command("status", "--secret-id", bad[0]),
            EXIT_FAILED,
        )
    if unknown or unfinished:
        raise CliError(
            f"{len(unknown) + len(unfinished)} secret(s) could not be checked: "
            f"{', '.join([*unknown, *unfinished])} (Cekura unreachable, or a version you may not "
            "read)",
            EXIT_UNAVAILABLE,
        )
    return EXIT_OK
