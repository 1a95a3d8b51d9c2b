"""Reads shared by the commands: versions and their keys (as fingerprints), times, settings."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from cekura_rotator.config import DEFAULT_API_URL, Config, parse_api_url
from cekura_rotator.errors import ConfigError, SecretFormatError, SecretsStoreError
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import CURRENT, SecretDescription, SecretsStore
from cekura_rotator_cli.console import Console
from cekura_rotator_cli.errors import EXIT_USAGE, CliError

if TYPE_CHECKING:
    from cekura_rotator_cli.context import Run


@dataclass(frozen=True)
class Version:
    """One version as the CLI shows it: labels, key metadata and a fingerprint, never the key."""

    version_id: str
    labels: tuple[str, ...]
    created: datetime | None
    value: SecretValue | None = field(default=None, repr=False)
    problem: str | None = None

    @property
    def fingerprint(self) -> str | None:
        return self.value.fingerprint if self.value else None

    @property
    def born(self) -> datetime | None:
        """When the key was made, else when the version was."""
        key_created = parse_time(self.value.created_at) if self.value else None
        return key_created or self.created


@dataclass(frozen=True)
class Read:
    """A version's value, or why there is none: `problem` completes "the version ...".

    `kind`: ok; unreadable (Secrets Manager or KMS refused the read: `code`); empty (no value,
    as an AWSPENDING stub before createSecret stores a key); malformed (not the documented
    format: the key is bad).
    """

    value: SecretValue | None = field(default=None, repr=False)
    problem: str | None = None
    kind: Literal["ok", "unreadable", "empty", "malformed"] = "ok"
    code: str | None = None
    created: datetime | None = None  # when the version was created, if it could be read


def find_secret(run: Run, secret_id: str) -> SecretDescription:
    """DescribeSecret, after refusing an ARN of another region than the session's."""
    run.aws.check_region(secret_id, "the secret")
    return run.aws.store().describe(secret_id)


def read_version(store: SecretsStore, arn: str, version_id: str, console: Console) -> Read:
    """A version's parsed value, or why there is none. Never raises for one bad version."""
    try:
        raw, created = store.read_with_date(arn, version_id=version_id)
    except SecretsStoreError as e:
        return Read(problem=f"cannot be read: {e.message}", kind="unreadable", code=e.code)
    if raw is None:
        return Read(
            problem="holds no value (createSecret has not stored a key in it)", kind="empty"
        )
    try:
        value = SecretValue.parse(raw, default_project_id=None)
    except SecretFormatError as e:
        return Read(
            problem=f"is not in the documented format: {e.message}",
            kind="malformed",
            created=created,
        )
    console.watch(value.api_key)
    return Read(value, created=created)


def current_value(store: SecretsStore, secret: SecretDescription, console: Console) -> Read:
    """The AWSCURRENT version's value, or why there is none."""
    current = secret.version_with(CURRENT)
    if current is None:
        return Read(problem="does not exist: no version is AWSCURRENT", kind="empty")
    return read_version(store, secret.arn, current, console)


def require_rotation(secret: SecretDescription, run: Run) -> str:
    """The secret's rotation function, or a usage error saying how to attach one."""
    if not secret.rotation_lambda_arn:
        raise CliError(
            "rotation is not configured on this secret: attach it with `"
            + run.store_key_command(secret.name)
            + "` or RotateSecret --rotation-lambda-arn",
            EXIT_USAGE,
        )
    return secret.rotation_lambda_arn


def rotation_function_env(run: Run, secret: SecretDescription) -> Mapping[str, str] | None:
    """The environment of the secret's rotation function; None when it has none, or when it
    cannot be read from here."""
    if not secret.rotation_lambda_arn:
        return None
    return run.aws.function_environment(secret.rotation_lambda_arn)


def function_config(function_env: Mapping[str, str] | None) -> Config | None:
    """The rotation function's configuration as the function parses it; None when its
    environment is unknown or does not parse (`doctor` says why)."""
    if function_env is None:
        return None
    try:
        return Config.from_env(function_env)
    except ConfigError:
        return None


def key_project(value: SecretValue, function_env: Mapping[str, str] | None) -> int | None:
    """The project a key is checked against: the secret's, else the function's default."""
    if value.project_id is not None:
        return value.project_id
    config = function_config(function_env)
    return config.default_project_id if config else None


def explicit_cekura_url(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """`--cekura-url`, else $CEKURA_API_URL, checked; None when neither is given.

    Checked before anything else runs, so a bad URL fails fast even when it is never used.
    """
    raw = getattr(args, "cekura_url", None) or env.get("CEKURA_API_URL", "")
    return _checked_url(raw) if raw else None


def cekura_url(
    args: argparse.Namespace,
    env: Mapping[str, str],
    function_env: Mapping[str, str] | None = None,
) -> str:
    """The Cekura URL to ask: the operator's, else the rotation function's, else Cekura's own.

    The function's (when its configuration can be read) keeps the CLI asking the Cekura the
    function rotates against, so a key is never judged dead by the wrong host.
    """
    explicit = explicit_cekura_url(args, env)
    if explicit:
        return explicit
    from_function = (function_env or {}).get("CEKURA_API_URL", "")
    return _checked_url(from_function) if from_function else DEFAULT_API_URL


def _checked_url(raw: str) -> str:
    try:
        return parse_api_url(raw)
    except ConfigError as e:
        raise CliError(e.message, EXIT_USAGE) from None


def key_label(value: SecretValue | None) -> str:
    """`key 12 'name' fp` for a person: never the key itself."""
    if value is None:
        return "no key"
    parts = [f"key {value.key_id}" if value.key_id is not None else "key (id unknown)"]
    if value.key_name:
        parts.append(repr(value.key_name))
    parts.append(value.fingerprint)
    return " ".join(parts)


def schedule_text(rules: Mapping[str, Any]) -> str:
    if not rules:
        return "none"
    if rules.get("ScheduleExpression"):
        text = str(rules["ScheduleExpression"])
    elif rules.get("AutomaticallyAfterDays"):
        text = f"every {rules['AutomaticallyAfterDays']} days"
    else:
        return "none"
    return text + (f", window {rules['Duration']}" if rules.get("Duration") else "")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_text(moment: datetime | None) -> str:
    return iso(moment) or "never"


def age_seconds(born: datetime | None, now: datetime) -> int | None:
    return None if born is None else max(0, int((now - born).total_seconds()))


def age_text(born: datetime | None, now: datetime) -> str:
    """`3d 4h (since 2026-01-01T00:00:00Z)`, or `unknown`."""
    seconds = age_seconds(born, now)
    if seconds is None:
        return "unknown"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}d {hours}h"
    elif hours:
        text = f"{hours}h {minutes}m"
    elif minutes:
        text = f"{minutes}m {secs}s"
    else:
        text = f"{secs}s"
    return f"{text} (since {iso(born)})"
