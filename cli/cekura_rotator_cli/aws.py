"""AWS access: one boto3 session (profile, region, endpoint), the rotation function, its log.

Clients are created on first use, so `--help` and input errors need no AWS. `--endpoint-url`
points every service the CLI calls (Secrets Manager, CloudWatch Logs, Lambda, SNS, STS,
CloudFormation) at one endpoint, such as moto server or LocalStack; service-specific
`AWS_ENDPOINT_URL_*` variables work too. Secrets Manager is read and written only through the
rotator's own port (`SecretsStore`); the other services through `request`, which turns every
failure into an `AwsError` with its code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from cekura_rotator import __version__
from cekura_rotator.secrets_store import SecretsStore, aws_call
from cekura_rotator_cli.errors import EXIT_USAGE, AwsError, CliError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ROTATOR_HANDLER = "cekura_rotator.handler.lambda_handler"
STEP_FAILED = "Rotation step failed"
STEP_COMPLETE = "Step complete"
# CloudWatch Logs allows a handful of FilterLogEvents calls per second per account: polling it
# at DescribeSecret's pace would throttle other readers.
LOG_POLL_SECONDS = 5.0
_LOG_PAGES = 5
# Lambda's clock and this machine's may disagree by a little.
LOG_CLOCK_SKEW = timedelta(minutes=2)
_USER_AGENT = f"cekura-rotator-cli/{__version__}"


class Client(Protocol):
    """A boto3 client of a service without type stubs here: methods are looked up by name."""

    def __getattr__(self, name: str) -> Callable[..., Mapping[str, Any]]: ...


@dataclass(frozen=True)
class FunctionInfo:
    """What GetFunctionConfiguration says about a function."""

    arn: str
    handler: str | None
    runtime: str | None
    timeout: int
    environment: Mapping[str, str]
    version: str | None
    code_sha256: str | None
    last_modified: str | None

    @property
    def is_rotator(self) -> bool:
        return self.handler == ROTATOR_HANDLER

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{function_name(self.arn)}"

    def describe(self) -> str:
        parts = [f"handler {self.handler}", str(self.runtime)]
        if self.version:
            parts.append(f"version {self.version}")
        if self.code_sha256:
            parts.append(f"code sha256 {self.code_sha256[:12]}")
        if self.last_modified:
            parts.append(f"deployed {self.last_modified[:19]}")
        return ", ".join(parts)


@dataclass
class Aws:
    """The AWS side of one CLI run."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    _session: boto3.session.Session | None = None
    _sm: SecretsManagerClient | None = None
    _clients: dict[tuple[str, str | None], Client] = field(default_factory=dict)
    _functions: dict[str, FunctionInfo] = field(default_factory=dict)
    _account: str | None = None

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            self._session = aws_call(
                "session",
                lambda: boto3.session.Session(profile_name=self.profile, region_name=self.region),
            )
        return self._session

    @property
    def session_region(self) -> str | None:
        return self.session.region_name

    def _secretsmanager(self) -> SecretsManagerClient:
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
        """The Secrets Manager port: the CLI's only way to Secrets Manager."""
        return SecretsStore(self._secretsmanager())

    def client(self, service: str, region: str | None = None) -> Client:
        """A client of another service, in `region` (default: the session's)."""
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = cast(
                Client,
                request(
                    service,
                    "client",
                    lambda: self.session.client(
                        service,  # type: ignore[call-overload]
                        region_name=region or self.session.region_name,
                        endpoint_url=self.endpoint_url,
                        config=BotoConfig(
                            connect_timeout=5,
                            read_timeout=10,
                            retries={"max_attempts": 2},
                            user_agent_extra=_USER_AGENT,
                        ),
                    ),
                ),
            )
        return self._clients[key]

    def configured_output(self) -> str | None:
        """The profile's `output` setting (the AWS CLI's), if any."""
        config = botocore.session.Session(profile=self.profile).get_scoped_config()
        value = config.get("output")
        return str(value) if value else None

    def account(self) -> str | None:
        """The caller's account (STS GetCallerIdentity), or None when it cannot be had."""
        if self._account is None:
            try:
                answer = request("STS", "GetCallerIdentity", self.client("sts").get_caller_identity)
            except (AwsError, CliError):
                return None
            self._account = str(answer.get("Account") or "") or None
        return self._account

    def where(self) -> str:
        """`region R, account A`: where this run looks, for a not-found error."""
        try:
            region = self.session_region or "none"
        except Exception:  # a broken profile is reported by the command
            region = "unknown"
        return f"region {region}, account {self.account() or 'unknown'}"

    def check_region(self, arn: str, what: str) -> None:
        """Refuse an ARN of another region than the session's: nothing there would be found."""
        region = arn_region(arn)
        if not arn.startswith("arn:") or region is None:
            return
        session = self.session_region
        if session and region != session:
            raise CliError(
                f"{what} {arn} is in region {region}, but this command looks in region {session} "
                f"(from --region, AWS_REGION or the profile): pass --region {region}",
                EXIT_USAGE,
            )

    def function(self, function_arn: str) -> FunctionInfo:
        """GetFunctionConfiguration, reduced; raise AwsError when it cannot be had."""
        if function_arn not in self._functions:
            lam = self.client("lambda", arn_region(function_arn))
            answer = request(
                "Lambda",
                "GetFunctionConfiguration",
                lam.get_function_configuration,
                FunctionName=function_arn,
            )
            variables = (answer.get("Environment") or {}).get("Variables") or {}
            self._functions[function_arn] = FunctionInfo(
                arn=str(answer.get("FunctionArn") or function_arn),
                handler=answer.get("Handler"),
                runtime=answer.get("Runtime"),
                timeout=int(answer.get("Timeout") or 3),
                environment={str(k): str(v) for k, v in variables.items()},
                version=answer.get("Version"),
                code_sha256=answer.get("CodeSha256"),
                last_modified=answer.get("LastModified"),
            )
        return self._functions[function_arn]

    def function_environment(self, function_arn: str) -> Mapping[str, str] | None:
        """The rotation function's environment variables, or None when they cannot be read.

        Best-effort: an operator may lack lambda:GetFunctionConfiguration, and the facts read
        from it (the default admin secret, the Cekura URL) are then shown as unknown.
        """
        try:
            return self.function(function_arn).environment
        except (AwsError, CliError):
            return None


def request(service: str, operation: str, method: Any, **kwargs: Any) -> Mapping[str, Any]:
    """Call a client method of another service, turning every failure into AwsError."""
    try:
        return cast(Mapping[str, Any], method(**kwargs))
    except ClientError as e:
        error = e.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).strip()[:300]
        raise AwsError(
            f"{service} {operation} failed: {code}: {message}", code=code, operation=operation
        ) from None
    except ParamValidationError:
        raise AwsError(
            f"{service} {operation} was given an invalid parameter",
            code="ParamValidationError",
            operation=operation,
        ) from None
    except BotoCoreError as e:
        raise AwsError(
            f"{service} {operation} failed: {type(e).__name__}: {e}",
            code=type(e).__name__,
            operation=operation,
        ) from None


@dataclass
class FunctionLog:
    """The rotation function's CloudWatch log, read best-effort for one version token.

    A failure (no permission, no such group, no Logs service) turns it off and keeps the reason
    in `problem`: the log only adds detail, and the labels remain the source of truth.
    """

    aws: Aws
    function_arn: str
    since: datetime
    enabled: bool = True
    problem: str | None = None

    @property
    def group(self) -> str:
        return f"/aws/lambda/{function_name(self.function_arn)}"

    def unreadable_text(self) -> str:
        """`the function's log X could not be read from here (why)`."""
        why = f" ({self.problem})" if self.problem else ""
        return f"the function's log {self.group} could not be read from here{why}"

    def timed_events(
        self, token: str, *, since: datetime | None = None, pages: int = _LOG_PAGES
    ) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        """The function's JSON log records that mention `token`, oldest first, each with its
        timestamp (ms); and whether every page was read."""
        if not self.enabled:
            return [], False
        start = since or self.since
        kwargs: dict[str, Any] = {
            "logGroupName": self.group,
            "filterPattern": f'"{token}"',
            "startTime": int((start - LOG_CLOCK_SKEW).timestamp() * 1000),
        }
        records: list[tuple[int, dict[str, Any]]] = []
        try:
            logs = self.aws.client("logs", arn_region(self.function_arn))
            for _ in range(pages):
                page = request(
                    "CloudWatch Logs", "FilterLogEvents", logs.filter_log_events, **kwargs
                )
                for event in page.get("events", []):
                    record = _log_record(event.get("message", ""))
                    if record:
                        records.append((int(event.get("timestamp", 0)), record))
                kwargs["nextToken"] = page.get("nextToken")
                if not kwargs["nextToken"]:
                    return records, True
        except (AwsError, CliError) as e:
            self.enabled = False
            self.problem = e.message
            return [], False
        except (ValueError, TypeError, AttributeError) as e:
            self.enabled = False
            self.problem = f"unexpected answer: {type(e).__name__}"
            return [], False
        return records, False

    def events(self, token: str) -> list[dict[str, Any]]:
        """The function's JSON log records that mention `token`, oldest first."""
        return [record for _, record in self.timed_events(token)[0]]

    def failure(self, token: str) -> tuple[str | None, str, str | None] | None:
        """The step that failed for `token`, why, and the error type, if the function logged so."""
        for record in self.events(token):
            if str(record.get("message", "")).startswith(STEP_FAILED):
                step = record.get("step")
                error_type = record.get("error_type")
                return (
                    (str(step) if step else None),
                    failure_text(record),
                    str(error_type) if error_type else None,
                )
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
    """A logged step failure in one line: the step, the error type and its message, whole."""
    step = record.get("step") or "a step"
    error_type = record.get("error_type") or record.get("exception_name") or "error"
    lines = [line.strip() for line in str(record.get("exception", "")).splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    detail = last.split(":", 1)[1].strip() if ":" in last else last
    # The function's messages are its own, bounded text (AWS's and Cekura's parts are cut to
    # 300 characters where they are read); nothing is cut here, so the fix is never lost.
    return f"the function logged: {step} failed: {error_type}: {detail or 'no detail'}"


def function_name(function_arn: str) -> str:
    parts = function_arn.split(":")
    return parts[6] if len(parts) > 6 else function_arn


def arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


def arn_account(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else None
