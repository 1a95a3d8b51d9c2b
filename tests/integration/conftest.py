"""Fixtures of the integration tests (their helpers are in health_fleet.py and cli_harness.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import boto3
import pytest

from cekura_rotator import handler
from cekura_rotator.observability import logger
from infra.local.fake_cekura import FakeCekura
from infra.local.stack import LocalStack, local_stack
from tests.conftest import World
from tests.integration.cli_harness import LOG_GROUP, set_function_environment
from tests.integration.health_fleet import Fleet

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


@pytest.fixture
def fleet(
    sm: SecretsManagerClient,
    fake: FakeCekura,
    make_world: Callable[..., World],
    monkeypatch: pytest.MonkeyPatch,
) -> Fleet:
    """Secrets rotated by the function, the fake Cekura, and a health check over them."""
    return Fleet(sm, fake, make_world, monkeypatch)


# -- the CLI tests' local stack --------------------------------------------------------------------


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
