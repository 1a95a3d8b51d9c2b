"""Shared fixtures: moto in-process, the fake Cekura over HTTP, a seeded secret, captured logs."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from cekura_rotator import handler
from cekura_rotator.cekura import CekuraClient
from cekura_rotator.config import Config, RevocationPolicy
from cekura_rotator.observability import logger
from cekura_rotator.secrets_store import SecretsStore
from cekura_rotator.steps import RotationRequest, Rotator, Step
from infra.local.fake_cekura import FakeCekura
from infra.local.lambda_bridge import FUNCTION_ARN, LambdaBridge
from infra.local.stack import DUMMY_CREDENTIALS, create_function, enable_rotation, secret_json

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    handler.rotator.cache_clear()


@pytest.fixture
def fake() -> Iterator[FakeCekura]:
    with FakeCekura(mode="spec") as server:
        yield server


@pytest.fixture
def sm() -> Iterator[SecretsManagerClient]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield boto3.client("secretsmanager", region_name="us-east-1")


class LogCapture:
    """Every line the rotator's logger wrote, serialized exactly as in Lambda."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    stream_handler = logging.StreamHandler(capture.stream)
    stream_handler.setFormatter(logger.registered_formatter)
    logger.addHandler(stream_handler)
    try:
        yield capture
    finally:
        logger._logger.removeHandler(stream_handler)


@dataclass
class World:
    """A secret with rotation enabled, a project at the fake Cekura, and ways to act on them."""

    sm: SecretsManagerClient
    fake: FakeCekura
    project_id: int
    bootstrap_key: str
    bootstrap_id: int
    arn: str
    sleeps: list[float] = field(default_factory=list)

    def rotator(self, policy: str = "grace", **config: Any) -> Rotator:
        settings = Config(
            cekura_api_url=self.fake.url,
            revocation_policy=RevocationPolicy(policy),
            validate_max_wait=config.pop("validate_max_wait", 2.0),
            **config,
        )
        cekura = CekuraClient(
            base_url=self.fake.url,
            sleep=self.sleeps.append,
            clock=self.clock,
            retry_after_cap=settings.retry_after_cap,
        )
        return Rotator(
            config=settings,
            store=SecretsStore(self.sm),
            cekura=cekura,
            clock=self.clock,
            sleep=self.sleeps.append,
        )

    def clock(self) -> float:
        """Monotonic time in which the recorded (not slept) backoff has passed."""
        return time.monotonic() + sum(self.sleeps)

    def start_rotation(self) -> str:
        """RotateSecret with a bridge that runs nothing: leaves the AWSPENDING stub, like AWS."""
        bridge = LambdaBridge(handler=lambda event, context: None)
        token = str(uuid.uuid4())
        with bridge.patched():
            # moto forgets the function when RotateSecret omits it (AWS keeps it): always name it.
            self.sm.rotate_secret(
                SecretId=self.arn, ClientRequestToken=token, RotationLambdaARN=FUNCTION_ARN
            )
        return token

    def step(self, rotator: Rotator, step: Step, token: str, **event: Any) -> str:
        request = RotationRequest(step, event.pop("secret_id", self.arn), token, **event)
        return rotator.run(request)

    def rotate(self, rotator: Rotator) -> str:
        token = self.start_rotation()
        for step in Step:
            self.step(rotator, step, token)
        return token

    def stages(self) -> dict[str, list[str]]:
        return dict(self.sm.describe_secret(SecretId=self.arn)["VersionIdsToStages"])

    def current(self) -> str:
        return self.sm.get_secret_value(SecretId=self.arn, VersionStage="AWSCURRENT")[
            "SecretString"
        ]

    def value_of(self, version_id: str) -> str | None:
        try:
            out = self.sm.get_secret_value(SecretId=self.arn, VersionId=version_id)
        except self.sm.exceptions.ResourceNotFoundException:
            return None
        return out.get("SecretString")

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a bad input must leave unchanged, at AWS and at Cekura."""
        versions = self.stages()
        values = {v: self.value_of(v) for v in versions if versions[v]}
        live = [(k.id, k.deleted) for k in self.fake.all_keys()]
        return (versions, values, live)


def _noop(event: dict[str, Any], context: Any) -> None:
    return None


@pytest.fixture
def make_world(sm: SecretsManagerClient, fake: FakeCekura) -> Callable[..., World]:
    """A secret with rotation enabled whose value the test chooses (built from a fresh key)."""

    def build(value: Callable[[str, int, int], str | bytes] | str | bytes) -> World:
        project_id = fake.create_project(name=f"p-{uuid.uuid4().hex[:6]}", organization="Acme")
        issued = fake.issue_key(project_id=project_id, name="bootstrap")
        raw = value(issued.key, project_id, issued.id) if callable(value) else value
        kwargs: dict[str, Any] = (
            {"SecretBinary": raw} if isinstance(raw, bytes) else {"SecretString": raw}
        )
        arn = sm.create_secret(Name=f"cekura/{uuid.uuid4().hex[:8]}", **kwargs)["ARN"]
        create_function()
        with LambdaBridge(handler=_noop).patched():
            enable_rotation(sm, arn)
        return World(sm, fake, project_id, issued.key, issued.id, arn)

    return build


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    """The usual secret: JSON with the bootstrap key, its id, its project and an extra field."""
    return make_world(
        lambda key, project, key_id: secret_json(key, project, key_id=key_id, team="qa")
    )
