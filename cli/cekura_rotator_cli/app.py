"""The `cekura-rotator` command: arguments, dispatch, and one line plus an exit code per failure.

Exit codes: 0 ok; 1 the rotation or check failed; 2 usage or input error (bad secret id, missing
or refused key, bad admin secret, invalid URL); 3 AWS or Cekura could not be reached or refused
the caller; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import NoReturn, TextIO

from cekura_rotator import __version__
from cekura_rotator.config import DEFAULT_API_URL
from cekura_rotator.errors import (
    AdminSecretError,
    CekuraError,
    ConfigError,
    RotatorError,
    SecretFormatError,
    SecretsStoreError,
)
from cekura_rotator_cli import bootstrap, check, revocations, rotate, status
from cekura_rotator_cli.aws import Aws
from cekura_rotator_cli.console import PROG, Console
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    aws_exit_code,
)

Command = Callable[[argparse.Namespace, Run], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse echoes unknown arguments, and a key typed as one would be echoed with them.
        if message.startswith("unrecognized arguments"):
            message = "unrecognized arguments (not shown, as they may hold a key)"
        super().error(message)


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        # The value is not echoed: a key pasted into the wrong option must not be printed.
        raise argparse.ArgumentTypeError("must be a positive integer")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def _common_options() -> tuple[_Parser, _Parser]:
    """The AWS CLI's global options, accepted before or after the command.

    The copy given to each command uses SUPPRESS as default, so that a command's parser does not
    overwrite a value given before the command.
    """
    parents = []
    for default in (None, argparse.SUPPRESS):
        options = _Parser(add_help=False, allow_abbrev=False)
        options.add_argument(
            "--profile", default=default, help="AWS profile; default: boto3's (AWS_PROFILE)"
        )
        options.add_argument(
            "--region", default=default, help="AWS region; default: boto3's configuration"
        )
        options.add_argument(
            "--endpoint-url",
            default=default,
            help="one endpoint for Secrets Manager, CloudWatch Logs and Lambda (e.g. moto "
            "server); default: AWS",
        )
        options.add_argument(
            "--output",
            choices=("table", "json"),
            default="table" if default is None else default,
            help="table (for people, the default) or json (one document on stdout; progress "
            "goes to stderr)",
        )
        parents.append(options)
    return parents[0], parents[1]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (built on demand: importing the module has no side effects)."""
    top_options, command_options = _common_options()
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        parents=[top_options],
        description="Inspect and operate Cekura API key rotation in AWS Secrets Manager.",
        epilog="Exit codes: 0 ok, 1 rotation or check failed, 2 usage or input error, "
        "3 AWS or Cekura unreachable or refused.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    cekura = _Parser(add_help=False, allow_abbrev=False)
    cekura.add_argument(
        "--cekura-url",
        help="Cekura API base URL; default: $CEKURA_API_URL, else the rotation function's, "
        f"else {DEFAULT_API_URL}",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Command, help_text: str, **kwargs: object) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name,
            allow_abbrev=False,
            help=help_text,
            **kwargs,  # type: ignore[arg-type]
        )
        sub.set_defaults(run=run)
        return sub

    status_parser = add(
        "status",
        status.command,
        "versions, labels, keys (fingerprints only), admin credential, owed revocations",
        parents=[command_options, cekura],
    )
    status_parser.add_argument("--secret-id", required=True, help="secret name or ARN")

    rotate_parser = add(
        "rotate",
        rotate.command,
        "start a rotation now (RotateSecret)",
        parents=[command_options, cekura],
    )
    rotate_parser.add_argument("--secret-id", required=True, help="secret name or ARN")
    rotate_parser.add_argument(
        "--wait",
        action="store_true",
        help="follow it, showing each step reached, until AWSCURRENT moves or it fails",
    )
    rotate_parser.add_argument(
        "--timeout", type=_seconds, default=120.0, help="seconds --wait waits (default 120)"
    )
    rotate_parser.add_argument(
        "--poll-interval", type=_seconds, default=1.0, help="seconds between polls (default 1)"
    )

    check_parser = add(
        "check",
        check.command,
        "test the rotation configuration (RotateSecret with RotateImmediately=false)",
        parents=[command_options, cekura],
    )
    check_parser.add_argument("--secret-id", required=True, help="secret name or ARN")
    check_parser.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        help="seconds to wait for testSecret's outcome in the function's log (default 60)",
    )

    boot = add(
        "bootstrap",
        bootstrap.command,
        "create the secret from a first key and attach rotation",
        parents=[command_options, cekura],
        description="The key is read from stdin when it is not a terminal, else from "
        "CEKURA_API_KEY (there is no option for it), or minted with --admin-secret-arn.",
    )
    boot.add_argument("--secret-name", required=True)
    boot.add_argument("--project-id", required=True, type=_positive_int)
    boot.add_argument("--function-arn", required=True, help="the rotation function's ARN")
    boot.add_argument(
        "--admin-secret-arn",
        help="mint the first key with this admin secret's credential instead of reading one; "
        "the secret then names it (admin_secret_arn)",
    )
    boot.add_argument(
        "--schedule",
        default="rate(30 days)",
        help="rate(N days), rate(N hours) or cron(...) (default rate(30 days))",
    )
    boot.add_argument("--window", help="rotation window duration, e.g. 4h")
    boot.add_argument("--kms-key-id", help="customer KMS key for a new secret")
    boot.add_argument("--description", help="description of a new secret")
    boot.add_argument(
        "--key-id", type=_positive_int, help="the given key's id on the Cekura dashboard, if known"
    )
    boot.add_argument(
        "--key-name", help="the given key's dashboard name, or the name of the key to mint"
    )
    boot.add_argument(
        "--no-validate", action="store_true", help="skip validating the key at Cekura first"
    )
    boot.add_argument(
        "--update",
        action="store_true",
        help="if the secret exists, store the key as its new AWSCURRENT version",
    )

    revocation_parser = commands.add_parser(
        "revocations",
        allow_abbrev=False,
        help="old keys awaiting deletion: list them, clear one once deleted",
    )
    actions = revocation_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        allow_abbrev=False,
        parents=[command_options],
        help="every revocation awaiting deletion: key id, name, age, secret, owed or manual",
    )
    listing.set_defaults(run=revocations.list_command)
    listing.add_argument(
        "--secret-id",
        action="append",
        help="only this secret (repeatable); default: every secret in the account and region",
    )
    listing.add_argument("--function-arn", help="only secrets rotated by this function")
    clearing = actions.add_parser(
        "clear",
        allow_abbrev=False,
        parents=[command_options],
        help="remove an entry after its key was deleted in the Cekura dashboard",
    )
    clearing.set_defaults(run=revocations.clear_command)
    clearing.add_argument("--secret-id", required=True, help="secret name or ARN")
    which = clearing.add_mutually_exclusive_group(required=True)
    which.add_argument("--version-id", help="the version whose key was deleted")
    which.add_argument("--key-id", type=_positive_int, help="the id of the key that was deleted")
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
    parser = build_parser()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    console = Console(out, err, output=args.output)
    run = Run(
        console=console,
        stdin=stdin if stdin is not None else sys.stdin,
        env=os.environ,
        aws=Aws(profile=args.profile, region=args.region, endpoint_url=args.endpoint_url),
    )
    name = args.command + (f" {args.action}" if getattr(args, "action", None) else "")
    subject = _subject(args)
    with _reported(console, name, subject) as outcome:
        outcome.code = args.run(args, run)
    return outcome.code


def _subject(args: argparse.Namespace) -> str | None:
    named = getattr(args, "secret_id", None) or getattr(args, "secret_name", None)
    if isinstance(named, list):
        return ", ".join(named)
    return named if isinstance(named, str) else None


@dataclass
class _Outcome:
    code: int = EXIT_OK


@contextmanager
def _reported(console: Console, command: str, subject: str | None) -> Iterator[_Outcome]:
    """Turn every failure into one line on stderr and an exit code."""
    outcome = _Outcome()
    try:
        yield outcome
    except CliError as e:
        outcome.code = e.exit_code
        console.error(command, subject, e.message)
    except SecretsStoreError as e:
        outcome.code = aws_exit_code(e.code, command.split(maxsplit=1)[0])
        console.error(command, subject, e.message)
    except (ConfigError, SecretFormatError, AdminSecretError) as e:
        outcome.code = EXIT_USAGE
        console.error(command, subject, e.message)
    except CekuraError as e:
        outcome.code = EXIT_UNAVAILABLE
        console.error(command, subject, e.message)
    except RotatorError as e:
        outcome.code = EXIT_FAILED
        console.error(command, subject, e.message)
    except KeyboardInterrupt:
        outcome.code = EXIT_INTERRUPTED
        console.error(command, subject, "interrupted")
    except Exception as e:  # an operator gets one line, not a traceback
        outcome.code = EXIT_FAILED
        console.error(command, subject, f"unexpected error: {type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
