"""The `cekura-rotator` command: the registered command modules, and one line plus an exit code
per failure (the table is in `errors`).

Each command module declares its `NAME`, `HELP`, `add_arguments(parser)` and `run(args, run)`;
this module registers them, parses, and turns every outcome into an exit code. With
`--output json` stdout holds one JSON document whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, TextIO

from cekura_rotator import __version__
from cekura_rotator.errors import (
    AdminSecretError,
    CekuraError,
    ConfigError,
    RotatorError,
    SecretFormatError,
    SecretsStoreError,
)
from cekura_rotator_cli import bootstrap, check, doctor, health, revocations, rotate, status
from cekura_rotator_cli.aws import Aws
from cekura_rotator_cli.console import PROG, Console, OutputFormat
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    AwsError,
    CliError,
    aws_exit_code,
)
from cekura_rotator_cli.options import Parser, aws_options


class Command(Protocol):
    """What a command module declares."""

    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, run: Run) -> int: ...


COMMANDS: tuple[Command, ...] = (status, rotate, check, bootstrap, revocations, doctor, health)
_NOT_FOUND = frozenset({"ResourceNotFoundException", "NotFoundException"})


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (built on demand: importing the module has no side effects)."""
    parser = Parser(
        prog=PROG,
        allow_abbrev=False,
        parents=[aws_options(suppress=False)],
        description="Inspect and operate Cekura API key rotation in AWS Secrets Manager.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        sub = commands.add_parser(
            module.NAME,
            allow_abbrev=False,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            parents=[aws_options(suppress=True)],
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=module.run)
        module.add_arguments(sub)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; return its exit code. Never raises, never prints a traceback."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        with redirect_stdout(out), redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    aws = Aws(profile=args.profile, region=args.region, endpoint_url=args.endpoint_url)
    console = Console(out, err, output=_output_format(args.output, aws))
    run = Run(
        console=console,
        stdin=stdin if stdin is not None else sys.stdin,
        env=os.environ,
        aws=aws,
        aws_options=_aws_options(args),
    )
    name = args.command + (f" {args.action}" if getattr(args, "action", None) else "")
    with _signals(console), _reported(run, name, _subject(args)) as outcome:
        outcome.code = args.run(args, run)
    return outcome.code


def _output_format(given: str | None, aws: Aws) -> OutputFormat:
    """--output, else AWS_DEFAULT_OUTPUT, else the profile's `output`; `text` (and anything but
    json, as yaml) is shown as the table."""
    chosen = given or os.environ.get("AWS_DEFAULT_OUTPUT", "").strip()
    if not chosen:
        with contextlib.suppress(Exception):  # a missing profile is reported by the command
            chosen = aws.configured_output() or ""
    return "json" if chosen.strip().lower() == "json" else "table"


def _aws_options(args: argparse.Namespace) -> tuple[str, ...]:
    given: list[str] = []
    for option in ("profile", "region", "endpoint_url"):
        value = getattr(args, option, None)
        if value:
            given += [f"--{option.replace('_', '-')}", value]
    return tuple(given)


def _subject(args: argparse.Namespace) -> str | None:
    named = getattr(args, "secret_id", None) or getattr(args, "secret_name", None)
    if isinstance(named, list):
        return ", ".join(named)
    return named if isinstance(named, str) else None


@contextmanager
def _signals(console: Console) -> Iterator[None]:
    """Output never stops a command: a closed pipe is an error on write (SIGPIPE ignored, which
    the console turns into lost output), and a terminal gone (SIGHUP) drops the output while the
    command finishes its work."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hangup(signum: int, frame: FrameType | None) -> None:
        console.hang_up()

    saved: list[tuple[int, Any]] = []
    for name, handler in (("SIGPIPE", signal.SIG_IGN), ("SIGHUP", hangup)):
        number = getattr(signal, name, None)
        if number is not None:
            saved.append((number, signal.signal(number, handler)))
    try:
        yield
    finally:
        for number, previous in saved:
            signal.signal(number, previous)


@dataclass
class _Outcome:
    code: int = EXIT_OK


@contextmanager
def _reported(run: Run, command: str, subject: str | None) -> Iterator[_Outcome]:
    """Turn every failure into one line on stderr (and, with --output json, a document on
    stdout) and an exit code from the one table."""
    outcome = _Outcome()
    try:
        yield outcome
    except KeyboardInterrupt:
        outcome.code = EXIT_INTERRUPTED
        _interrupted(run, command, subject)
        return
    except CliError as e:
        outcome.code, message = e.exit_code, e.message
    except (SecretsStoreError, AwsError) as e:
        outcome.code = aws_exit_code(e.code, command.split(maxsplit=1)[0])
        message = e.message
        if e.code in _NOT_FOUND:
            message += f" (looked in {run.aws.where()}: a different --region or --profile?)"
    except (ConfigError, SecretFormatError, AdminSecretError) as e:
        outcome.code, message = EXIT_USAGE, e.message
    except CekuraError as e:
        outcome.code, message = EXIT_UNAVAILABLE, e.message
    except RotatorError as e:
        outcome.code, message = EXIT_FAILED, e.message
    except Exception as e:  # an operator gets one line, not a traceback
        outcome.code, message = EXIT_FAILED, f"unexpected error: {type(e).__name__}: {e}"
    else:
        return
    run.console.error(command, subject, message)
    run.console.closing_document(
        {
            **run.partial,
            "error": {
                "command": command,
                "secret": subject,
                "message": message,
                "exit_code": outcome.code,
            },
        }
    )


def _interrupted(run: Run, command: str, subject: str | None) -> None:
    if run.aftermath:
        message = f"interrupted: {run.aftermath}"
    elif run.changed:
        message = f"interrupted after these changes: {'; '.join(run.changed)}"
    else:
        message = "interrupted; nothing was changed"
    run.console.error(command, subject, message)
    run.console.closing_document(
        {
            **run.partial,
            "interrupted": True,
            "command": command,
            "secret": subject,
            "message": message,
            "exit_code": EXIT_INTERRUPTED,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
