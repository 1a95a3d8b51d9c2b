"""Shared by the CLI tests: one local stack per module, the CLI run in-process, seeded secrets.

RotateSecret reaches the real handler through the bridge, so every rotation, check and
bootstrap runs the real rotation steps against moto server and the fake Cekura over HTTP.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from cekura_rotator import handler
from cekura_rotator.observability import logger
from cekura_rotator_cli.app import main
from infra.local.fake_cekura import KEY_PREFIX, SESSION_PREFIX, IssuedKey
from infra.local.lambda_bridge import FUNCTION_NAME, REGION
from infra.local.stack import LocalStack, enable_rotation, local_stack, secret_json

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

FAST = ["--poll-interval", "0.05"]
LOG_GROUP = f"/aws/lambda/{FUNCTION_NAME}"


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[LocalStack]:
    # Starting moto server costs about a second: one per module, each test on its own secret.
    with local_stack(mode="spec") as stack:
        yield stack


@pytest.fixture
def stack(shared_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    # The autouse fixture in conftest clears the endpoint variables before every test; the
    # in-process handler needs them back to reach moto server rather than AWS.
    for name, value in shared_stack.handler_env(CEKURA_VALIDATE_MAX_WAIT="0.2").items():
        monkeypatch.setenv(name, value)
    handler.rotator.cache_clear()
    yield shared_stack
    shared_stack.fake.clear_faults()
    shared_stack.fake.mode = "spec"
    set_function_environment(shared_stack, {})
    handler.rotator.cache_clear()


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(stack: LocalStack, *argv: str, stdin: str = "") -> Result:
    """The CLI in this process, pointed at moto server, as `cekura-rotator ARGV`."""
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--endpoint-url", stack.moto_url, *argv],
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
    )
    return Result(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Seeded:
    arn: str
    name: str
    project: int
    key: IssuedKey


def seed(stack: LocalStack, **extra: Any) -> Seeded:
    """A secret in the documented format, rotation attached, as bootstrap leaves it on AWS."""
    project = stack.fake.create_project(f"p-{uuid.uuid4().hex[:6]}", organization="Acme")
    issued = stack.fake.issue_key(project, name="bootstrap")
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    client = stack.client()
    value = secret_json(issued.key, project, key_id=issued.id, key_name="bootstrap", **extra)
    arn = client.create_secret(Name=name, SecretString=value)["ARN"]
    enable_rotation(client, arn)
    return Seeded(arn, name, project, issued)


class _ShipToCloudWatch(logging.Handler):
    """What Lambda does with the function's output: each record becomes a log event."""

    def __init__(self, moto_url: str):
        super().__init__()
        self.setFormatter(logger.registered_formatter)
        self._logs = boto3.client("logs", region_name="us-east-1", endpoint_url=moto_url)

    def emit(self, record: logging.LogRecord) -> None:
        self._logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName="local",
            logEvents=[{"timestamp": int(record.created * 1000), "message": self.format(record)}],
        )


@pytest.fixture
def function_log(stack: LocalStack) -> Iterator[None]:
    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=stack.moto_url)
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="local")
    shipper = _ShipToCloudWatch(stack.moto_url)
    logger.addHandler(shipper)
    try:
        yield
    finally:
        logger._logger.removeHandler(shipper)
        # Later tests must again see a function whose log cannot be read.
        logs.delete_log_group(logGroupName=LOG_GROUP)


@pytest.fixture
def allow_admin(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Deploy the function with AdminSecretArns=ARN: its environment, as the template sets it."""

    def allow(arn: str) -> None:
        variables = {
            "CEKURA_ADMIN_SECRET_ARN": arn,
            "CEKURA_ALLOWED_ADMIN_SECRET_ARNS": arn,
            "CEKURA_API_URL": stack.fake.url,
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        handler.rotator.cache_clear()
        set_function_environment(stack, variables)

    return allow


def lambda_client(stack: LocalStack) -> Any:
    return boto3.client("lambda", region_name=REGION, endpoint_url=stack.moto_url)


def set_function_environment(stack: LocalStack, variables: dict[str, str]) -> None:
    """What the template sets on the function, as the CLI reads it (GetFunctionConfiguration)."""
    lam = boto3.client("lambda", region_name=REGION, endpoint_url=stack.moto_url)
    lam.update_function_configuration(
        FunctionName=FUNCTION_NAME, Environment={"Variables": variables}
    )


def stages(client: SecretsManagerClient, secret_id: str) -> dict[str, list[str]]:
    return dict(client.describe_secret(SecretId=secret_id)["VersionIdsToStages"])


def current_value(client: SecretsManagerClient, secret_id: str) -> dict[str, Any]:
    raw = client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]
    return dict(json.loads(raw))


def stored_string(client: SecretsManagerClient, secret_id: str, version_id: str) -> str | None:
    try:
        answer = client.get_secret_value(SecretId=secret_id, VersionId=version_id)
    except client.exceptions.ResourceNotFoundException:
        return None  # an AWSPENDING stub whose createSecret never stored a value
    return answer.get("SecretString")


def version_with(client: SecretsManagerClient, secret_id: str, label: str) -> str | None:
    return next((v for v, s in stages(client, secret_id).items() if label in s), None)


def assert_no_key_material(stack: LocalStack, *texts: str, extra: tuple[str, ...] = ()) -> None:
    """No key, session or other credential, and no prefix of one: every fake key starts with
    KEY_PREFIX and every session with SESSION_PREFIX. The CLI masks a value it is about to print
    as ***, so that must not appear either."""
    keys = [*stack.fake.minted_secrets(), *extra]
    assert keys
    for text in texts:
        assert KEY_PREFIX not in text
        assert SESSION_PREFIX not in text
        assert "***" not in text
        for key in keys:
            assert key not in text


def assert_one_line(err: str, command: str, secret: str) -> None:
    assert err.endswith("\n")
    assert err.count("\n") == 1
    assert f"cekura-rotator {command}: secret {secret!r}:" in err
    assert "Traceback" not in err


def rotate(stack: LocalStack, secret: str) -> str:
    """Rotate through the CLI and return the new AWSCURRENT version."""
    result = cli(stack, "rotate", "--secret-id", secret, "--wait", *FAST)
    assert result.code == 0, result.err
    new = version_with(stack.client(), secret, "AWSCURRENT")
    assert new is not None
    return new
