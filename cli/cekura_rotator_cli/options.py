"""Options several commands share, and the argument types. No value an operator typed is ever
echoed in an error: a key pasted into the wrong place must not be printed."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

from cekura_rotator.config import DEFAULT_API_URL
from cekura_rotator.health.settings import DEFAULT_STUCK_HOURS

OUTPUTS = ("table", "json", "text")
_UNRECOGNIZED = "unrecognized arguments: "
_OPTION_NAME = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*")
_CHOICE = re.compile(r"invalid choice: .*? \(choose from", re.DOTALL)


class Parser(argparse.ArgumentParser):
    """argparse, whose errors name an unknown option but never show a value."""

    def error(self, message: str) -> NoReturn:
        super().error(hide_values(message))


def hide_values(message: str) -> str:
    """argparse's error with every value typed on the command line taken out: an unknown option
    is named (`--api-key`), its value (or a stray word) is counted, not shown."""
    if message.startswith(_UNRECOGNIZED):
        names: list[str] = []
        hidden = 0
        for word in message[len(_UNRECOGNIZED) :].split(" "):
            name, has_value, _ = word.partition("=")
            if _OPTION_NAME.fullmatch(name):
                names.append(name)
                hidden += bool(has_value)
            elif word:
                hidden += 1
        text = "unrecognized arguments: " + (" ".join(names) or "(none named)")
        if hidden:
            text += f" (and {hidden} value(s), not shown as they may hold a key)"
        return text
    return _CHOICE.sub("invalid choice (not shown) (choose from", message)


def aws_options(*, suppress: bool) -> Parser:
    """The AWS CLI's global options, accepted before or after the command.

    The copy given to each command (`suppress`) has SUPPRESS as default, so that a command's
    parser does not overwrite a value given before the command.
    """
    default = argparse.SUPPRESS if suppress else None
    options = Parser(add_help=False, allow_abbrev=False)
    options.add_argument(
        "--profile", default=default, help="AWS profile; default: boto3's (AWS_PROFILE)"
    )
    options.add_argument("--region", default=default, help="AWS region; default: boto3's")
    options.add_argument(
        "--endpoint-url",
        default=default,
        help="one endpoint for every AWS service the CLI calls (e.g. moto server); default: AWS",
    )
    options.add_argument(
        "--output",
        choices=OUTPUTS,
        default=default,
        help="table (for people; `text` is the same) or json (one document on stdout, progress "
        "on stderr); default: AWS_DEFAULT_OUTPUT, else the profile's `output`, else table",
    )
    return options


def add_secret_id(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--secret-id", required=required, help="secret name or ARN")


def add_cekura_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cekura-url",
        help="Cekura API base URL; default: $CEKURA_API_URL, else the rotation function's, "
        f"else {DEFAULT_API_URL}",
    )


def add_fleet_options(parser: argparse.ArgumentParser, *, verb: str, scope: str = "") -> None:
    """The options of a run over the fleet (`health`, and `status` without --secret-id), which
    `health` reads: whose secrets, when a pending rotation is stuck, and where Cekura is."""
    parser.add_argument(
        "--function-arn",
        help=f"{scope}the rotation function whose secrets to {verb} (default: every "
        "Cekura rotator rotating a secret in the region)",
    )
    add_stuck_hours(parser)
    add_cekura_url(parser)


def add_stuck_hours(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stuck-hours",
        type=hours,
        default=DEFAULT_STUCK_HOURS,
        help=f"a rotation pending longer than this is stuck (default {DEFAULT_STUCK_HOURS:g}, "
        "as the health check's)",
    )


def positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer (the value is not shown)")
    return int(text)


def seconds(text: str) -> float:
    value = _number(text, "seconds")
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def hours(text: str) -> float:
    value = _number(text, "hours")
    if not 0 < value <= 24 * 365:
        raise argparse.ArgumentTypeError("must be more than 0 hours and at most a year")
    return value


def _number(text: str, unit: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of {unit} (the value is not shown)"
        ) from None
