"""Operator CLI: `status`, `rotate`, `check` and `bootstrap` for secrets this function rotates.

Run as `python -m cekura_rotator.cli COMMAND ...`. It reaches Secrets Manager through boto3's
normal credential chain (`--endpoint-url` and `--region` point it elsewhere, e.g. at moto server)
and Cekura through the same ports the Lambda uses; it never runs the handler.

No command prints a key or any part of one: keys are shown as `fingerprint()` only, and every
line written is also scrubbed of the key values the command has seen, as a last line of defence.

Exit codes: 0 ok; 1 the rotation or check failed; 2 usage or input error (bad secret id, missing
or refused key, invalid URL); 3 AWS or Cekura could not be reached or refused the caller.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TextIO, cast

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from cekura_rotator import __version__
from cekura_rotator.cekura import CekuraClient, KeyInfo
from cekura_rotator.config import DEFAULT_API_URL, parse_api_url
from cekura_rotator.errors import (
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
    CekuraMethodNotAllowedError,
    CekuraNotFoundError,
    CekuraRequestError,
    ConfigError,
    RotatorError,
    SecretFormatError,
    SecretsStoreError,
)
from cekura_rotator.secret_value import SecretValue, fingerprint
from cekura_rotator.secrets_store import (
    CURRENT,
    PENDING,
    PREVIOUS,
    SecretDescription,
    SecretsStore,
    aws_call,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

PROG = "python -m cekura_rotator.cli"
_NAME = "cekura_rotator.cli"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

# Cekura's answers that mean "API keys may not do this here" (the current spec's world).
_REFUSALS = (CekuraAuthError, CekuraForbiddenError, CekuraMethodNotAllowedError)
# Secrets Manager errors that mean the caller named something wrong, not that AWS failed.
_USAGE_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "ResourceExistsException",
        "ValidationException",
        "InvalidParameterException",
        "ParamValidationError",
        "NoRegionError",
        "ProfileNotFound",
    }
)
_LABEL_ORDER = {CURRENT: 0, PENDING: 1, PREVIOUS: 2}
_RATE = re.compile(r"rate\(\s*(\d+)\s+(day|days|hour|hours)\s*\)", re.IGNORECASE)
_CRON = re.compile(r"cron\(.+\)", re.IGNORECASE)
_WINDOW = re.compile(r"\d{1,2}h")
_FUNCTION_ARN = re.compile(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}")
_STEP_FAILED = "Rotation step failed"
_STEP_COMPLETE = "Step complete"
# CloudWatch Logs allows a handful of FilterLogEvents calls per second per account: polling it
# at DescribeSecret's pace would throttle other readers.
_LOG_POLL_SECONDS = 5.0
_LOG_PAGES = 5
_LINE_CHARS = 1000


class CliError(Exception):
    """An error the CLI reports as one line, with the exit code it maps to."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# -- output ------------------------------------------------------------------------------------


class _Console:
    """stdout and stderr, with every watched key value masked before it is written."""

    def __init__(self, stdout: TextIO, stderr: TextIO):
        self._stdout = stdout
        self._stderr = stderr
        self._secrets: set[str] = set()

    def watch(self, *values: str | None) -> None:
        self._secrets.update(v for v in values if v)

    def out(self, text: str = "") -> None:
        self._stdout.write(self._scrub(text) + "\n")
        self._stdout.flush()

    def error(self, command: str, subject: str | None, message: str) -> None:
        where = f"{_NAME} {command}" + (f": secret {subject!r}" if subject else "")
        line = " ".join(f"{where}: {message}".split())
        self._stderr.write(self._scrub(line)[:_LINE_CHARS] + "\n")
        self._stderr.flush()

    def _scrub(self, text: str) -> str:
        # Longest first, so a key that contains another watched value is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


# -- AWS access --------------------------------------------------------------------------------


class _LogsClient(Protocol):
    """The one CloudWatch Logs call the CLI makes (no type stubs are installed for Logs)."""

    def filter_log_events(self, **kwargs: Any) -> Mapping[str, Any]: ...


@dataclass
class _Aws:
    """boto3 clients, created on first use so that `--help` and input errors need no AWS."""

    region: str | None
    endpoint_url: str | None
    _session: boto3.session.Session | None = None
    _sm: SecretsManagerClient | None = None

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            self._session = aws_call(
                "session", lambda: boto3.session.Session(region_name=self.region)
            )
        return self._session

    def secretsmanager(self) -> SecretsManagerClient:
        if self._sm is None:
            # Retries are left to botocore's configuration (AWS_MAX_ATTEMPTS, the profile).
            config = BotoConfig(
                connect_timeout=10,
                read_timeout=30,
                user_agent_extra=f"cekura-rotator-cli/{__version__}",
            )
            self._sm = aws_call(
                "client",
                lambda: self.session.client(
                    "secretsmanager", endpoint_url=self.endpoint_url, config=config
                ),
            )
        return self._sm

    def store(self) -> SecretsStore:
        return SecretsStore(self.secretsmanager())

    def logs(self, region: str | None) -> _LogsClient:
        client = self.session.client(
            "logs",
            region_name=region or self.session.region_name,
            endpoint_url=self.endpoint_url,
            config=BotoConfig(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}),
        )
        return cast(_LogsClient, client)


def _aws_exit_code(code: str, command: str) -> int:
    if code in _USAGE_CODES:
        return EXIT_USAGE
    if code == "InvalidRequestException":
        # For rotate and check it is the secret's rotation state refusing the run (a rotation
        # still pending, say): the operation failed. Elsewhere the request itself was wrong.
        return EXIT_FAILED if command in {"rotate", "check"} else EXIT_USAGE
    return EXIT_UNAVAILABLE


@dataclass
class _FunctionLog:
    """The rotation function's CloudWatch log, read best-effort for one version token.

    Any failure (no permission, no such group, no Logs service as in moto) turns it off quietly:
    the log only adds a reason, and the labels remain the source of truth.
    """

    aws: _Aws
    function_arn: str
    since: datetime
    enabled: bool = True
    _client: _LogsClient | None = None

    @property
    def group(self) -> str:
        return f"/aws/lambda/{_function_name(self.function_arn)}"

    def events(self, token: str) -> list[dict[str, Any]]:
        """The function's JSON log records that mention `token`, oldest first."""
        if not self.enabled:
            return []
        try:
            if self._client is None:
                self._client = self.aws.logs(_arn_region(self.function_arn))
            records: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {
                "logGroupName": self.group,
                "filterPattern": f'"{token}"',
                # Lambda and this machine's clocks may disagree by a little.
                "startTime": int((self.since - timedelta(minutes=2)).timestamp() * 1000),
            }
            for _ in range(_LOG_PAGES):
                page = self._client.filter_log_events(**kwargs)
                records.extend(_log_record(e.get("message", "")) for e in page.get("events", []))
                kwargs["nextToken"] = page.get("nextToken")
                if not kwargs["nextToken"]:
                    break
        except (ClientError, BotoCoreError, ValueError, TypeError, AttributeError):
            self.enabled = False
            return []
        return [r for r in records if r]

    def failure(self, token: str) -> str | None:
        """Why the function says a step for `token` failed, if it logged so."""
        for record in self.events(token):
            if str(record.get("message", "")).startswith(_STEP_FAILED):
                return _failure_text(record)
        return None


def _log_record(message: str) -> dict[str, Any]:
    try:
        record = json.loads(message)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _failure_text(record: Mapping[str, Any]) -> str:
    step = record.get("step") or "a step"
    error_type = record.get("error_type") or record.get("exception_name") or "error"
    lines = [line.strip() for line in str(record.get("exception", "")).splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    detail = last.split(":", 1)[1].strip() if ":" in last else last
    return f"the function logged: {step} failed: {error_type}: {detail or 'no detail'}"[:300]


def _function_name(function_arn: str) -> str:
    parts = function_arn.split(":")
    return parts[6] if len(parts) > 6 else function_arn


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


# -- shared reads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Version:
    """One version as status shows it: labels, key metadata and a fingerprint, never the key."""

    version_id: str
    labels: tuple[str, ...]
    created: datetime | None
    value: SecretValue | None = field(default=None, repr=False)
    problem: str | None = None

    @property
    def fingerprint(self) -> str | None:
        return fingerprint(self.value.api_key) if self.value else None

    @property
    def key_created(self) -> datetime | None:
        return _parse_time(self.value.created_at) if self.value else None

    @property
    def born(self) -> datetime | None:
        """When the key was made, else when the version was."""
        return self.key_created or self.created


def _list_versions(
    client: SecretsManagerClient, arn: str
) -> list[tuple[str, tuple[str, ...], datetime | None]]:
    """Every version, deprecated ones included: DescribeSecret lists only labelled versions."""
    found: list[tuple[str, tuple[str, ...], datetime | None]] = []
    kwargs: dict[str, Any] = {"SecretId": arn, "IncludeDeprecated": True, "MaxResults": 100}
    while True:
        page = aws_call("ListSecretVersionIds", client.list_secret_version_ids, **kwargs)
        for item in page.get("Versions", []):
            found.append(
                (
                    str(item["VersionId"]),
                    tuple(item.get("VersionStages", ())),
                    item.get("CreatedDate"),
                )
            )
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def _read_version(
    store: SecretsStore, arn: str, version_id: str, console: _Console
) -> tuple[SecretValue | None, str | None]:
    """A version's parsed value, or why there is none. Never raises for one bad version."""
    try:
        raw = store.read(arn, version_id=version_id)
    except SecretsStoreError as e:
        return None, f"unreadable: {e.message}"
    if raw is None:
        return None, "no value (createSecret has not stored a key in it)"
    try:
        value = SecretValue.parse(raw, default_project_id=None)
    except SecretFormatError as e:
        return None, f"not in the documented format: {e.message}"
    console.watch(value.api_key)
    return value, None


def _require_rotation(secret: SecretDescription) -> str:
    if not secret.rotation_lambda_arn:
        raise CliError(
            "rotation is not configured on this secret: attach it with `bootstrap --update` "
            "or RotateSecret --rotation-lambda-arn",
            EXIT_USAGE,
        )
    return secret.rotation_lambda_arn


def _cekura_url(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """Checked before anything else runs, so a bad URL fails fast even when unused."""
    raw = args.cekura_url or env.get("CEKURA_API_URL", "") or DEFAULT_API_URL
    try:
        return parse_api_url(raw)
    except ConfigError as e:
        raise CliError(e.message, EXIT_USAGE) from None


def _key_label(value: SecretValue | None) -> str:
    if value is None:
        return "no key"
    parts = [f"key {value.key_id}" if value.key_id is not None else "key (id unknown)"]
    if value.key_name:
        parts.append(repr(value.key_name))
    parts.append(fingerprint(value.api_key))
    return " ".join(parts)


# -- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HeldKey:
    """A key only unlabelled versions still hold."""

    fingerprint: str
    key_id: int | None
    key_name: str | None
    version_ids: tuple[str, ...]
    live: bool | None = None


@dataclass(frozen=True)
class _Status:
    secret: SecretDescription
    rules: Mapping[str, Any]
    versions: list[_Version]
    held: list[_HeldKey]
    confirmation: str
    now: datetime

    @property
    def last_result(self) -> tuple[str, str | None]:
        pending = self.secret.version_with(PENDING)
        if pending is not None and pending != self.secret.version_with(CURRENT):
            return f"in progress or failed (pending version {pending})", pending
        return "ok", None


def _status(args: argparse.Namespace, run: _Run) -> int:
    cekura_url = _cekura_url(args, run.env)
    store = run.aws.store()
    secret = store.describe(args.secret_id)
    raw = aws_call("DescribeSecret", run.aws.secretsmanager().describe_secret, SecretId=secret.arn)
    versions: list[_Version] = []
    for version_id, labels, created in _list_versions(run.aws.secretsmanager(), secret.arn):
        value, problem = _read_version(store, secret.arn, version_id, run.console)
        versions.append(_Version(version_id, labels, created, value, problem))
    epoch = datetime.min.replace(tzinfo=UTC)
    versions.sort(
        key=lambda v: (
            min((_LABEL_ORDER.get(label, 3) for label in v.labels), default=4),
            -(v.created or epoch).timestamp(),
        )
    )
    held, confirmation = _held_keys(versions, cekura_url)
    status = _Status(
        secret, raw.get("RotationRules") or {}, versions, held, confirmation, run.now()
    )
    if args.json:
        run.console.out(json.dumps(_status_json(status), indent=2))
    else:
        for line in _status_text(status):
            run.console.out(line)
    return EXIT_OK


def _held_keys(versions: Sequence[_Version], cekura_url: str) -> tuple[list[_HeldKey], str]:
    """Keys held only by versions without labels, and what Cekura says of them."""
    labelled = {v.fingerprint for v in versions if v.labels and v.value}
    groups: dict[str, list[_Version]] = {}
    for version in versions:
        fp = version.fingerprint
        if not version.labels and fp is not None and fp not in labelled:
            groups.setdefault(fp, []).append(version)
    held = []
    for fp, group in groups.items():
        value = next(v.value for v in group if v.value)
        key_id = next((v.value.key_id for v in group if v.value and v.value.key_id), None)
        held.append(_HeldKey(fp, key_id, value.key_name, tuple(v.version_id for v in group)))
    if not held:
        return [], "none"
    current = next((v.value for v in versions if CURRENT in v.labels and v.value), None)
    if current is None:
        return held, "cannot confirm: the AWSCURRENT version is not readable"
    cekura = CekuraClient(base_url=cekura_url)
    try:
        listed = cekura.list_keys(current.api_key)
    except _REFUSALS:
        return held, "cannot confirm: Cekura does not let API keys list keys"
    except CekuraError as e:
        return held, f"cannot confirm: {e.message}"
    finally:
        cekura.close()
    return _confirm(held, listed), "confirmed against Cekura's key list"


def _confirm(held: Sequence[_HeldKey], listed: Sequence[KeyInfo]) -> list[_HeldKey]:
    live_ids = {k.id for k in listed}
    return [
        replace(key, live=None if key.key_id is None else key.key_id in live_ids) for key in held
    ]


def _status_text(status: _Status) -> Iterator[str]:
    secret = status.secret
    result, _ = status.last_result
    yield f"Secret             {secret.name}"
    yield f"ARN                {secret.arn}"
    yield f"Rotation           {'enabled' if secret.rotation_enabled else 'not enabled'}"
    yield f"Rotation function  {secret.rotation_lambda_arn or 'none'}"
    yield f"Schedule           {_schedule_text(status.rules)}"
    yield f"Last rotated       {_time_text(secret.last_rotated)}"
    yield f"Next rotation      {_time_text(secret.next_rotation)}"
    yield f"Last rotation      {result}"
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
        yield f"    age          {_age_text(version.born, status.now)}"
    yield ""
    awaiting = [k for k in status.held if k.live is not False]
    revoked = [k for k in status.held if k.live is False]
    if not status.held:
        yield "Keys awaiting manual revocation: none"
        return
    yield f"Keys awaiting manual revocation ({status.confirmation})"
    if not awaiting:
        yield "  none"
    for key in awaiting:
        state = {True: "still live at Cekura", None: "liveness not confirmed"}[key.live]
        yield f"  {_held_label(key)}: {state}"
    if revoked:
        yield "Keys of unlabelled versions already revoked"
        for key in revoked:
            yield f"  {_held_label(key)}: no longer listed by Cekura"


def _held_label(key: _HeldKey) -> str:
    ident = f"key {key.key_id}" if key.key_id is not None else "key (id unknown)"
    name = f" {key.key_name!r}" if key.key_name else ""
    return f"{ident}{name} {key.fingerprint} in version {', '.join(key.version_ids)}"


def _status_json(status: _Status) -> dict[str, Any]:
    secret = status.secret
    result, pending = status.last_result
    return {
        "secret": {"name": secret.name, "arn": secret.arn},
        "rotation": {
            "enabled": secret.rotation_enabled,
            "function_arn": secret.rotation_lambda_arn,
            "rules": dict(status.rules),
            "schedule": _schedule_text(status.rules),
            "last_rotated": _iso(secret.last_rotated),
            "next_rotation": _iso(secret.next_rotation),
            "last_result": {
                "status": "ok" if pending is None else "pending",
                "pending_version": pending,
                "text": result,
            },
        },
        "versions": [
            {
                "version_id": v.version_id,
                "labels": list(v.labels),
                "created": _iso(v.created),
                "key_id": v.value.key_id if v.value else None,
                "key_name": v.value.key_name if v.value else None,
                "key_created_at": v.value.created_at if v.value else None,
                "project_id": v.value.project_id if v.value else None,
                "fingerprint": v.fingerprint,
                "age_seconds": _age_seconds(v.born, status.now),
                "problem": v.problem,
            }
            for v in status.versions
        ],
        "keys_awaiting_revocation": {
            "confirmation": status.confirmation,
            "keys": [
                {
                    "key_id": k.key_id,
                    "key_name": k.key_name,
                    "fingerprint": k.fingerprint,
                    "version_ids": list(k.version_ids),
                    "live": k.live,
                }
                for k in status.held
                if k.live is not False
            ],
            "revoked": [
                {
                    "key_id": k.key_id,
                    "fingerprint": k.fingerprint,
                    "version_ids": list(k.version_ids),
                }
                for k in status.held
                if k.live is False
            ],
        },
    }


def _schedule_text(rules: Mapping[str, Any]) -> str:
    if not rules:
        return "none"
    if rules.get("ScheduleExpression"):
        text = str(rules["ScheduleExpression"])
    elif rules.get("AutomaticallyAfterDays"):
        text = f"every {rules['AutomaticallyAfterDays']} days"
    else:
        return "none"
    return text + (f", window {rules['Duration']}" if rules.get("Duration") else "")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_text(moment: datetime | None) -> str:
    return _iso(moment) or "never"


def _age_seconds(born: datetime | None, now: datetime) -> int | None:
    return None if born is None else max(0, int((now - born).total_seconds()))


def _age_text(born: datetime | None, now: datetime) -> str:
    seconds = _age_seconds(born, now)
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
    return f"{text} (since {_iso(born)})"


# -- rotate ------------------------------------------------------------------------------------


def _rotate(args: argparse.Namespace, run: _Run) -> int:
    store = run.aws.store()
    secret = store.describe(args.secret_id)
    function_arn = _require_rotation(secret)
    before = secret.version_with(CURRENT)
    started = run.now()
    # moto forgets the rotation function when RotateSecret omits it; AWS keeps it either way,
    # so naming the one already attached changes nothing there.
    # The token is chosen here because moto answers a RotateSecret that does not rotate
    # immediately with the AWSCURRENT version id instead of the new one.
    token = str(uuid.uuid4())
    aws_call(
        "RotateSecret",
        run.aws.secretsmanager().rotate_secret,
        SecretId=secret.arn,
        ClientRequestToken=token,
        RotationLambdaARN=function_arn,
    )
    run.console.out(
        f"Rotation of {secret.name} started: new version {token} (AWSCURRENT is {before})."
    )
    if not args.wait:
        run.console.out(f"Follow it with: {PROG} status --secret-id {secret.arn}")
        return EXIT_OK
    log = _FunctionLog(run.aws, function_arn, started)
    return _follow(
        store=store, arn=secret.arn, token=token, before=before, log=log, args=args, run=run
    )


def _follow(
    *,
    store: SecretsStore,
    arn: str,
    token: str,
    before: str | None,
    log: _FunctionLog,
    args: argparse.Namespace,
    run: _Run,
) -> int:
    """Poll until AWSCURRENT moves (0) or the rotation is seen to fail or times out (1)."""
    started = run.clock()
    deadline = started + args.timeout
    next_log = started
    stored: SecretValue | None = None
    seen_pending = False

    def progress(text: str) -> None:
        run.console.out(f"  [{run.clock() - started:6.1f}s] {text}")

    while True:
        secret = store.describe(arn)
        current = secret.version_with(CURRENT)
        if current is not None and current != before:
            if current == token:
                progress(f"AWSCURRENT moved to {token}: rotation complete.")
            else:
                progress(f"AWSCURRENT moved to {current} (another rotation finished first).")
            return EXIT_OK
        labels = secret.stages_of(token)
        if PENDING in labels and not seen_pending:
            seen_pending = True
            progress(f"version {token} is AWSPENDING; waiting for the new key")
        if stored is None and PENDING in labels:
            stored, _ = _read_version(store, arn, token, run.console)
            if stored is not None:
                progress(f"new key stored in version {token} ({_key_label(stored)})")
        if seen_pending and PENDING not in labels:
            raise CliError(
                f"rotation failed: version {token} lost its AWSPENDING label without becoming "
                "AWSCURRENT (cancelled or cleaned up)",
                EXIT_FAILED,
            )
        now = run.clock()
        if now >= next_log:
            next_log = now + _LOG_POLL_SECONDS
            reason = log.failure(token)
            if reason:
                raise CliError(f"rotation failed: {reason}", EXIT_FAILED)
        if now >= deadline:
            reason = _timeout_reason(token, stored, log, args.timeout, seen_pending=seen_pending)
            raise CliError(reason, EXIT_FAILED)
        run.sleep(min(args.poll_interval, max(0.0, deadline - now)))


def _timeout_reason(
    token: str, stored: SecretValue | None, log: _FunctionLog, timeout: float, *, seen_pending: bool
) -> str:
    reason = log.failure(token)
    if not seen_pending:
        state = f"version {token} never appeared as AWSPENDING: the function was not invoked"
    elif stored is None:
        state = (
            f"version {token} is still AWSPENDING and holds no key: createSecret did not complete"
        )
    else:
        state = (
            f"the new key ({_key_label(stored)}) is stored as AWSPENDING in version {token} "
            "but setSecret, testSecret or finishSecret did not complete"
        )
    where = reason or f"see the log group {log.group}"
    return f"rotation failed: AWSCURRENT did not move within {timeout:g}s; {state}; {where}"


# -- check -------------------------------------------------------------------------------------


def _check(args: argparse.Namespace, run: _Run) -> int:
    cekura_url = _cekura_url(args, run.env)
    store = run.aws.store()
    secret = store.describe(args.secret_id)
    function_arn = _require_rotation(secret)
    started = run.now()
    token = str(uuid.uuid4())  # chosen here for the reason given in _rotate
    aws_call(
        "RotateSecret",
        run.aws.secretsmanager().rotate_secret,
        SecretId=secret.arn,
        ClientRequestToken=token,
        RotationLambdaARN=function_arn,
        RotateImmediately=False,
    )
    run.console.out(
        f"Secrets Manager accepted the rotation configuration of {secret.name} and is running "
        f"testSecret (version {token}, function {function_arn})."
    )
    after = store.describe(secret.arn)
    if not after.rotation_enabled:
        raise CliError("check failed: rotation is not enabled on the secret", EXIT_FAILED)
    # testSecret validates a copy of the AWSCURRENT value; the same validation from here gives
    # a verdict even where the function's log cannot be read.
    current, problem = _read_version(store, secret.arn, _current_of(after), run.console)
    if current is None:
        raise CliError(f"check failed: the AWSCURRENT version has {problem}", EXIT_FAILED)
    _validate_current(current, cekura_url, run)
    log = _FunctionLog(run.aws, function_arn, started)
    run.console.out(f"Function log: {_await_test_verdict(log, token, args, run)}")
    run.console.out("Check passed.")
    return EXIT_OK


def _current_of(secret: SecretDescription) -> str:
    current = secret.version_with(CURRENT)
    if current is None:
        raise CliError("check failed: no version of the secret is AWSCURRENT", EXIT_FAILED)
    return current


def _validate_current(current: SecretValue, cekura_url: str, run: _Run) -> None:
    label = _key_label(current)
    if current.project_id is None:
        run.console.out(
            f"Cekura: not validated from here: the secret names no project_id (the function "
            f"uses its CEKURA_PROJECT_ID) for {label}."
        )
        return
    cekura = CekuraClient(base_url=cekura_url)
    try:
        cekura.validate(current.api_key, project_id=current.project_id)
    except (CekuraAuthError, CekuraForbiddenError, CekuraRequestError, CekuraNotFoundError) as e:
        raise CliError(
            f"check failed: Cekura does not accept the current key ({label}) for project "
            f"{current.project_id}: {e.message}",
            EXIT_FAILED,
        ) from None
    finally:
        cekura.close()
    run.console.out(f"Cekura accepts the current key ({label}) for project {current.project_id}.")


def _await_test_verdict(log: _FunctionLog, token: str, args: argparse.Namespace, run: _Run) -> str:
    deadline = run.clock() + args.timeout
    while True:
        for record in log.events(token):
            message = str(record.get("message", ""))
            if message.startswith(_STEP_FAILED):
                raise CliError(f"check failed: {_failure_text(record)}", EXIT_FAILED)
            if message == _STEP_COMPLETE and record.get("step") == "testSecret":
                return f"testSecret passed for version {token}."
        if not log.enabled:
            return f"not readable from here ({log.group}); skipped."
        if run.clock() >= deadline:
            return f"no testSecret outcome for {token} in {log.group} within {args.timeout:g}s."
        run.sleep(min(_LOG_POLL_SECONDS, max(0.0, deadline - run.clock())))


# -- bootstrap ---------------------------------------------------------------------------------


def _bootstrap(args: argparse.Namespace, run: _Run) -> int:
    cekura_url = _cekura_url(args, run.env)
    key = _read_key(run.stdin, run.env)
    run.console.watch(key)
    if not _FUNCTION_ARN.fullmatch(args.function_arn):
        raise CliError(
            "--function-arn must be a Lambda function ARN "
            "(arn:aws:lambda:REGION:ACCOUNT:function:NAME)",
            EXIT_USAGE,
        )
    rules = _rotation_rules(args.schedule, args.window)
    fresh = SecretValue(
        api_key=key, project_id=args.project_id, key_id=args.key_id, key_name=args.key_name
    )
    # The port's parser holds the key rules (visible ASCII, length); render, then parse back.
    SecretValue.parse(fresh.render(), default_project_id=None)

    store = run.aws.store()
    existing = _existing(store, args.secret_name)
    if existing is not None and not args.update:
        raise CliError(
            f"the secret already exists ({existing.arn}); nothing was changed. Pass --update "
            "to store this key as its new AWSCURRENT version",
            EXIT_USAGE,
        )
    if existing is not None and args.kms_key_id:
        raise CliError("--kms-key-id applies only when the secret is created", EXIT_USAGE)
    if args.no_validate:
        run.console.out("Key not validated at Cekura (--no-validate).")
    else:
        _validate_new_key(key, args.project_id, cekura_url, run)

    client = run.aws.secretsmanager()
    if existing is None:
        kwargs: dict[str, Any] = {
            "Name": args.secret_name,
            "SecretString": fresh.render(),
            "Description": args.description
            or f"Cekura API key for project {args.project_id}, rotated by {args.function_arn}",
            "ClientRequestToken": str(uuid.uuid4()),
        }
        if args.kms_key_id:
            kwargs["KmsKeyId"] = args.kms_key_id
        created = aws_call("CreateSecret", client.create_secret, **kwargs)
        arn, version = str(created["ARN"]), str(created["VersionId"])
        run.console.out(f"Created secret {args.secret_name} ({arn}), version {version}.")
    else:
        arn = existing.arn
        value = _updated_value(store, existing, fresh, run.console)
        put = aws_call(
            "PutSecretValue",
            client.put_secret_value,
            SecretId=arn,
            SecretString=value.render(),
            ClientRequestToken=str(uuid.uuid4()),
        )
        run.console.out(f"Stored the key as version {put['VersionId']} (AWSCURRENT) of {arn}.")

    test_token = str(uuid.uuid4())  # chosen here for the reason given in _rotate
    try:
        aws_call(
            "RotateSecret",
            client.rotate_secret,
            SecretId=arn,
            ClientRequestToken=test_token,
            RotationLambdaARN=args.function_arn,
            RotationRules=rules,
            RotateImmediately=False,
        )
    except SecretsStoreError as e:
        raise CliError(
            f"the key is stored in {arn}, but attaching rotation failed: {e.message}; fix that "
            "and run bootstrap again with --update",
            _aws_exit_code(e.code, "bootstrap"),
        ) from None
    run.console.out(
        f"Attached rotation: function {args.function_arn}, schedule {_schedule_text(rules)}. "
        f"Secrets Manager is testing it (testSecret, version {test_token})."
    )
    run.console.out(
        f"Next: {PROG} status --secret-id {arn}  (to rotate now: rotate --secret-id {arn} --wait)"
    )
    return EXIT_OK


def _read_key(stdin: TextIO | None, env: Mapping[str, str]) -> str:
    """The first key: piped on stdin or in CEKURA_API_KEY. Deliberately never an argument,
    which would land in shell history and in every process listing."""
    piped: str | None = None
    if stdin is not None and not _is_tty(stdin):
        lines = [line.strip() for line in stdin.read().splitlines() if line.strip()]
        if len(lines) > 1:
            raise CliError("stdin holds more than one line; pipe only the key", EXIT_USAGE)
        piped = lines[0] if lines else None
    from_env = env.get("CEKURA_API_KEY", "").strip() or None
    if piped and from_env and piped != from_env:
        raise CliError(
            "two different keys were given (stdin and CEKURA_API_KEY); give only one", EXIT_USAGE
        )
    key = piped or from_env
    if not key:
        raise CliError(
            "no key given: pipe it on stdin or set CEKURA_API_KEY (it is never taken from an "
            "argument)",
            EXIT_USAGE,
        )
    return key


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _rotation_rules(schedule: str, window: str | None) -> dict[str, Any]:
    text = schedule.strip()
    rate = _RATE.fullmatch(text)
    rules: dict[str, Any]
    if rate and rate.group(2).lower().startswith("day"):
        days = int(rate.group(1))
        if not 1 <= days <= 1000:
            raise CliError("--schedule rate(N days) needs N from 1 to 1000", EXIT_USAGE)
        # AutomaticallyAfterDays means the same as rate(N days) on AWS, and moto enables
        # rotation only for it.
        rules = {"AutomaticallyAfterDays": days}
    elif rate or _CRON.fullmatch(text):
        rules = {"ScheduleExpression": text}
    else:
        raise CliError(
            f"--schedule must be rate(N days), rate(N hours) or cron(...), not {text!r}",
            EXIT_USAGE,
        )
    if window is not None:
        if not _WINDOW.fullmatch(window.strip()):
            raise CliError(f"--window must be hours such as 4h, not {window!r}", EXIT_USAGE)
        rules["Duration"] = window.strip()
    return rules


def _existing(store: SecretsStore, name: str) -> SecretDescription | None:
    try:
        return store.describe(name)
    except SecretsStoreError as e:
        if e.code == "ResourceNotFoundException":
            return None
        raise


def _validate_new_key(key: str, project_id: int, cekura_url: str, run: _Run) -> None:
    cekura = CekuraClient(base_url=cekura_url)
    nothing = "nothing was created"
    try:
        cekura.validate(key, project_id=project_id)
    except CekuraAuthError as e:
        raise CliError(
            f"Cekura does not accept the key: {e.message}; {nothing}", EXIT_USAGE
        ) from None
    except CekuraForbiddenError as e:
        raise CliError(
            f"the key does not belong to project {project_id}: {e.message}; {nothing}",
            EXIT_USAGE,
        ) from None
    except (CekuraRequestError, CekuraNotFoundError) as e:
        raise CliError(f"Cekura refused the key: {e.message}; {nothing}", EXIT_USAGE) from None
    except CekuraError as e:
        raise CliError(
            f"could not validate the key at Cekura: {e.message}; {nothing} "
            "(--no-validate skips this check)",
            EXIT_UNAVAILABLE,
        ) from None
    finally:
        cekura.close()
    run.console.out(f"Cekura accepts the key ({fingerprint(key)}) for project {project_id}.")


def _updated_value(
    store: SecretsStore, existing: SecretDescription, fresh: SecretValue, console: _Console
) -> SecretValue:
    """The new key in the documented JSON format, keeping the old value's other fields."""
    current, _ = _read_version(store, existing.arn, existing.version_with(CURRENT) or "", console)
    if current is None or current.plain:
        return fresh
    return replace(fresh, extra=dict(current.extra))


# -- wiring ------------------------------------------------------------------------------------


@dataclass
class _Run:
    console: _Console
    stdin: TextIO | None
    env: Mapping[str, str]
    aws: _Aws
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


_COMMANDS: dict[str, Callable[[argparse.Namespace, _Run], int]] = {
    "status": _status,
    "rotate": _rotate,
    "check": _check,
    "bootstrap": _bootstrap,
}


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (built on demand: importing the module has no side effects)."""
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Inspect and operate Cekura API key rotation in AWS Secrets Manager.",
        epilog="Exit codes: 0 ok, 1 rotation or check failed, 2 usage or input error, "
        "3 AWS or Cekura unreachable or refused.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # The AWS options work before or after the command; SUPPRESS keeps a command's parser from
    # overwriting a value given before it.
    aws = _Parser(add_help=False, allow_abbrev=False)
    for target, default in ((parser, None), (aws, argparse.SUPPRESS)):
        target.add_argument(
            "--endpoint-url",
            default=default,
            help="Secrets Manager (and Logs) endpoint, e.g. moto server; default: AWS",
        )
        target.add_argument(
            "--region", default=default, help="AWS region; default: boto3's configuration"
        )
    cekura = _Parser(add_help=False, allow_abbrev=False)
    cekura.add_argument(
        "--cekura-url",
        help=f"Cekura API base URL; default: $CEKURA_API_URL or {DEFAULT_API_URL}",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "status",
        allow_abbrev=False,
        parents=[aws, cekura],
        help="versions, labels, keys (fingerprints only) and rotation state of a secret",
    )
    status.add_argument("--secret-id", required=True, help="secret name or ARN")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    rotate = commands.add_parser(
        "rotate", allow_abbrev=False, parents=[aws], help="start a rotation now (RotateSecret)"
    )
    rotate.add_argument("--secret-id", required=True, help="secret name or ARN")
    rotate.add_argument(
        "--wait", action="store_true", help="follow it until AWSCURRENT moves or it fails"
    )
    rotate.add_argument(
        "--timeout", type=_seconds, default=120.0, help="seconds --wait waits (default 120)"
    )
    rotate.add_argument(
        "--poll-interval", type=_seconds, default=1.0, help="seconds between polls (default 1)"
    )

    check = commands.add_parser(
        "check",
        allow_abbrev=False,
        parents=[aws, cekura],
        help="test the rotation configuration (RotateSecret with RotateImmediately=false)",
    )
    check.add_argument("--secret-id", required=True, help="secret name or ARN")
    check.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        help="seconds to wait for testSecret's outcome in the function's log (default 60)",
    )

    bootstrap = commands.add_parser(
        "bootstrap",
        allow_abbrev=False,
        parents=[aws, cekura],
        help="create the secret from a first key (stdin or $CEKURA_API_KEY) and attach rotation",
        description="The key is read from stdin when it is not a terminal, else from "
        "CEKURA_API_KEY; there is no option for it.",
    )
    bootstrap.add_argument("--secret-name", required=True)
    bootstrap.add_argument("--project-id", required=True, type=_positive_int)
    bootstrap.add_argument("--function-arn", required=True, help="the rotation function's ARN")
    bootstrap.add_argument(
        "--schedule",
        default="rate(30 days)",
        help="rate(N days), rate(N hours) or cron(...) (default rate(30 days))",
    )
    bootstrap.add_argument("--window", help="rotation window duration, e.g. 4h")
    bootstrap.add_argument("--kms-key-id", help="customer KMS key for a new secret")
    bootstrap.add_argument("--description", help="description of a new secret")
    bootstrap.add_argument(
        "--key-id", type=_positive_int, help="the key's id on the Cekura dashboard, if known"
    )
    bootstrap.add_argument("--key-name", help="the key's name on the Cekura dashboard, if known")
    bootstrap.add_argument(
        "--no-validate", action="store_true", help="skip validating the key at Cekura first"
    )
    bootstrap.add_argument(
        "--update",
        action="store_true",
        help="if the secret exists, store the key as its new AWSCURRENT version",
    )
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
    console = _Console(out, err)
    run = _Run(
        console=console,
        stdin=stdin if stdin is not None else sys.stdin,
        env=os.environ,
        aws=_Aws(region=args.region, endpoint_url=args.endpoint_url),
    )
    subject = getattr(args, "secret_id", None) or getattr(args, "secret_name", None)
    with _reported(console, args.command, subject) as outcome:
        outcome.code = _COMMANDS[args.command](args, run)
    return outcome.code


@dataclass
class _Outcome:
    code: int = EXIT_OK


@contextmanager
def _reported(console: _Console, command: str, subject: str | None) -> Iterator[_Outcome]:
    """Turn every failure into one line on stderr and an exit code."""
    outcome = _Outcome()
    try:
        yield outcome
    except CliError as e:
        outcome.code = e.exit_code
        console.error(command, subject, e.message)
    except SecretsStoreError as e:
        outcome.code = _aws_exit_code(e.code, command)
        console.error(command, subject, e.message)
    except (ConfigError, SecretFormatError) as e:
        outcome.code = EXIT_USAGE
        console.error(command, subject, e.message)
    except CekuraError as e:
        outcome.code = EXIT_UNAVAILABLE
        console.error(command, subject, e.message)
    except RotatorError as e:
        outcome.code = EXIT_FAILED
        console.error(command, subject, e.message)
    except KeyboardInterrupt:
        outcome.code = 130
        console.error(command, subject, "interrupted")
    except Exception as e:  # an operator gets one line, not a traceback
        outcome.code = EXIT_FAILED
        console.error(command, subject, f"unexpected error: {type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
