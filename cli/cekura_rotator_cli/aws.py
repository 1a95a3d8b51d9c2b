"""AWS access: one boto3 session (profile, region, endpoint), and the function's log and settings.

Clients are created on first use, so `--help` and input errors need no AWS. `--endpoint-url`
points every service the CLI calls (Secrets Manager, CloudWatch Logs, Lambda) at one endpoint,
such as moto server or LocalStack; service-specific `AWS_ENDPOINT_URL_*` variables work too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from cekura_rotator import __version__
from cekura_rotator.secrets_store import SecretsStore, aws_call

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

STEP_FAILED = "Rotation step failed"
STEP_COMPLETE = "Step complete"
# CloudWatch Logs allows a handful of FilterLogEvents calls per second per account: polling it
# at DescribeSecret's pace would throttle other readers.
LOG_POLL_SECONDS = 5.0
_LOG_PAGES = 5
_USER_AGENT = f"cekura-rotator-cli/{__version__}"


class _LogsClient(Protocol):
    """The one CloudWatch Logs call the CLI makes (no type stubs are installed for Logs)."""

    def filter_log_events(self, **kwargs: Any) -> Mapping[str, Any]: ...


class _LambdaClient(Protocol):
    """The one Lambda call the CLI makes."""

    def get_function_configuration(self, **kwargs: Any) -> Mapping[str, Any]: ...


@dataclass
class Aws:
    """The AWS side of one CLI run."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    _session: boto3.session.Session | None = None
    _sm: SecretsManagerClient | None = None

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            self._session = aws_call(
                "session",
                lambda: boto3.session.Session(profile_name=self.profile, region_name=self.region),
            )
        return self._session

    def secretsmanager(self) -> SecretsManagerClient:
        if self._sm is None:
            # Retries are left to botocore's configuration (AWS_MAX_ATTEMPTS, the profile).
            config = BotoConfig(connect_timeout=10, read_timeout=30, user_agent_extra=_USER_AGENT)
            self._sm = aws_call(
                "client",
                lambda: self.session.client(
                    "secretsmanager", endpoint_url=self.endpoint_url, config=config
                ),
            )
        return self._sm

    def store(self) -> SecretsStore:
        return SecretsStore(self.secretsmanager())

    def _client(self, service: str, region: str | None) -> Any:
        return self.session.client(
            service,  # type: ignore[call-overload]
            region_name=region or self.session.region_name,
            endpoint_url=self.endpoint_url,
            config=BotoConfig(
                connect_timeout=5,
                read_timeout=10,
                retries={"max_attempts": 2},
                user_agent_extra=_USER_AGENT,
            ),
        )

    def logs(self, region: str | None) -> _LogsClient:
        return cast(_LogsClient, self._client("logs", region))

    def function_environment(self, function_arn: str) -> Mapping[str, str] | None:
        """The rotation function's environment variables, or None when they cannot be read.

        Best-effort: an operator may lack lambda:GetFunctionConfiguration, and the facts read
        from it (the default admin secret) are shown as unknown rather than failing the command.
        """
        try:
            client = cast(_LambdaClient, self._client("lambda", arn_region(function_arn)))
            answer = client.get_function_configuration(FunctionName=function_arn)
        except (ClientError, BotoCoreError):
            return None
        variables = (answer.get("Environment") or {}).get("Variables") or {}
        return {str(k): str(v) for k, v in variables.items()}


@dataclass
class FunctionLog:
    """The rotation function's CloudWatch log, read best-effort for one version token.

    Any failure (no permission, no such group, no Logs service as in moto) turns it off quietly:
    the log only adds detail, and the labels remain the source of truth.
    """

    aws: Aws
    function_arn: str
    since: datetime
    enabled: bool = True
    _client: _LogsClient | None = None

    @property
    def group(self) -> str:
        return f"/aws/lambda/{function_name(self.function_arn)}"

    def events(self, token: str) -> list[dict[str, Any]]:
        """The function's JSON log records that mention `token`, oldest first."""
        if not self.enabled:
            return []
        try:
            if self._client is None:
                self._client = self.aws.logs(arn_region(self.function_arn))
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

    def failure(self, token: str) -> tuple[str | None, str] | None:
        """The step that failed for `token` and why, if the function logged so."""
        for record in self.events(token):
            if str(record.get("message", "")).startswith(STEP_FAILED):
                step = record.get("step")
                return (str(step) if step else None), failure_text(record)
        return None

    def completed_steps(self, token: str) -> list[str]:
        """The steps the function logged as complete for `token`, in order."""
        return [
            str(r["step"])
            for r in self.events(token)
            if r.get("message") == STEP_COMPLETE and r.get("step")
        ]


def _log_record(message: str) -> dict[str, Any]:
    try:
        record = json.loads(message)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def failure_text(record: Mapping[str, Any]) -> str:
    """A logged step failure in one line: the step, the error type and its last line."""
    step = record.get("step") or "a step"
    error_type = record.get("error_type") or record.get("exception_name") or "error"
    lines = [line.strip() for line in str(record.get("exception", "")).splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    detail = last.split(":", 1)[1].strip() if ":" in last else last
    return f"the function logged: {step} failed: {error_type}: {detail or 'no detail'}"[:300]


def function_name(function_arn: str) -> str:
    parts = function_arn.split(":")
    return parts[6] if len(parts) > 6 else function_arn


def arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None
