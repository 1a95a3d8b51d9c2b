"""The health tests' fleet: secrets rotated by the function, the fake Cekura, and a health check
over them; with the helpers those tests share (tests import them from here, never from another
test module). The `fleet` fixture is in conftest.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

from cekura_rotator import handler
from cekura_rotator.cekura import CekuraClient
from cekura_rotator.config import Config
from cekura_rotator.health import HealthCheck, HealthReport, HealthSettings, SecretHealth
from cekura_rotator.secrets_store import SecretsStore
from infra.local.fake_cekura import FakeCekura
from infra.local.lambda_bridge import FUNCTION_ARN, REGION, LambdaBridge
from infra.local.stack import (
    AdminSecret,
    admin_env,
    create_admin_secret,
    delete_in_dashboard,
    enable_rotation,
    secret_json,
)
from tests.conftest import LogCapture, World

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

OTHER_FUNCTION = FUNCTION_ARN.replace(":cekura-rotator", ":someone-elses-rotator")
_GET_SECRET_VALUE = "before-call.secrets-manager.GetSecretValue"


def later(**delta: float) -> Callable[[], datetime]:
    """A `now` that many days or hours from the real one."""
    return lambda: datetime.now(UTC) + timedelta(**delta)


@dataclass
class Fleet:
    """Secrets rotated by the function, the fake Cekura, and a health check over them."""

    sm: SecretsManagerClient
    fake: FakeCekura
    make_world: Callable[..., World]
    monkeypatch: pytest.MonkeyPatch
    worlds: list[World] = field(default_factory=list)
    admin: AdminSecret | None = None
    sleeps: list[float] = field(default_factory=list)
    aws_calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.sm.meta.events.register("before-call.secrets-manager", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.aws_calls[str(model.name)] += 1

    def add(self, count: int = 1) -> list[World]:
        """Secrets in the documented format, each with its own live key and project."""
        made = [
            self.make_world(lambda key, project, key_id: secret_json(key, project, key_id=key_id))
            for _ in range(count)
        ]
        self.worlds.extend(made)
        return made

    def with_admin(self) -> AdminSecret:
        """An organisation-wide admin API key as the function's default admin secret."""
        project = self.worlds[0].project_id if self.worlds else None
        self.admin = create_admin_secret(self.sm, self.fake, "api_key", project_id=project)
        return self.admin

    def clock(self) -> float:
        """Monotonic time in which the recorded (not slept) backoff has passed."""
        return time.monotonic() + sum(self.sleeps)

    def config(self) -> Config:
        admin = self.admin.arn if self.admin else None
        return Config(
            cekura_api_url=self.fake.url,
            admin_secret_arn=admin,
            allowed_admin_secret_arns=frozenset({admin} if admin else ()),
        )

    def check(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        clock: Callable[[], float] | None = None,
        workers: int = 1,
        **settings: Any,
    ) -> HealthCheck:
        clock = clock or self.clock
        cekura = CekuraClient(base_url=self.fake.url, sleep=self.sleeps.append, clock=clock)
        return HealthCheck(
            config=self.config(),
            settings=HealthSettings(FUNCTION_ARN, **settings),
            store=SecretsStore(self.sm),
            cekura=cekura,
            clock=clock,
            now=now or (lambda: datetime.now(UTC)),
            workers=workers,
        )

    @contextmanager
    def deployed(self) -> Iterator[LambdaBridge]:
        """RotateSecret reaches the real rotation handler, configured as the template would."""
        variables = {
            "CEKURA_API_URL": self.fake.url,
            "CEKURA_VALIDATE_MAX_WAIT": "2",
            **admin_env(self.admin.arn if self.admin else None),
        }
        for name, value in variables.items():
            self.monkeypatch.setenv(name, value)
        handler.rotator.cache_clear()
        bridge = LambdaBridge(handler=handler.lambda_handler)
        try:
            with bridge.patched():
                yield bridge
        finally:
            handler.rotator.cache_clear()

    def state(self) -> list[tuple[Any, ...]]:
        """Everything at AWS and Cekura that a check without findings must leave unchanged."""
        return [w.snapshot() for w in self.worlds]

    def current(self, world: World) -> dict[str, Any]:
        return self.parsed(world.current())

    @staticmethod
    def parsed(raw: str) -> dict[str, Any]:
        return dict(json.loads(raw))

    def delete_key(self, world: World, key_id: int) -> None:
        """Delete a key of the world's project in the dashboard, as a person would."""
        delete_in_dashboard(self.fake, key_id, project_id=world.project_id)

    def add_foreign(self) -> tuple[World, str]:
        """A secret rotated by another function (not this rotator's); returns it and that
        function's ARN."""
        world = self.make_world(lambda key, project, key_id: secret_json(key, project))
        function = other_function(self.sm)
        with LambdaBridge(handler=lambda event, context: None).patched():
            enable_rotation(self.sm, world.arn, function_arn=function)
        return world, function

    def kill(self, world: World) -> int:
        """Delete the secret's current key in the dashboard; returns its id."""
        key_id = int(self.current(world)["key_id"])
        self.delete_key(world, key_id)
        return key_id


def by_arn(report: HealthReport) -> dict[str, SecretHealth]:
    return {s.arn: s for s in report.secrets}


def records(logs: LogCapture, message: str) -> list[dict[str, Any]]:
    """The log records whose message starts with `message`."""
    parsed = [json.loads(line) for line in logs.lines]
    return [r for r in parsed if str(r.get("message", "")).startswith(message)]


def fail_reads(
    sm: SecretsManagerClient, arn: str, code: str = "DecryptionFailure", **which: str
) -> list[str]:
    """GetSecretValue of `arn` (by VersionStage or VersionId, as given) fails as KMS would."""
    fired: list[str] = []

    def before(params: Any, **_: Any) -> None:
        request = json.loads(params.get("body") or b"{}")
        if request.get("SecretId") == arn and all(request.get(k) == v for k, v in which.items()):
            fired.append(arn)
            message = "Secrets Manager can't decrypt the protected secret text using the KMS key."
            raise ClientError({"Error": {"Code": code, "Message": message}}, "GetSecretValue")

    sm.meta.events.register(_GET_SECRET_VALUE, before)
    return fired


def other_function(sm: SecretsManagerClient) -> str:
    """A second rotation function in moto's Lambda, rotating someone else's secrets."""
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName=f"other-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument="{}")
    lam = boto3.client("lambda", region_name=REGION)
    lam.create_function(
        FunctionName="someone-elses-rotator",
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="x.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )
    return OTHER_FUNCTION


def bulk(fleet: Fleet, count: int) -> list[str]:
    """`count` secrets of one project rotated by the function (fewer calls than make_world)."""
    project = fleet.fake.create_project(name="bulk", organization="Acme")
    arns = []
    with LambdaBridge(handler=lambda event, context: None).patched():
        for i in range(count):
            issued = fleet.fake.issue_key(project_id=project, name=f"bulk-{i}")
            arn = fleet.sm.create_secret(
                Name=f"bulk/{i:04d}",
                SecretString=secret_json(issued.key, project, key_id=issued.id),
            )["ARN"]
            enable_rotation(fleet.sm, arn)
            arns.append(arn)
    return arns


class ReadClock:
    """Monotonic time that moves `seconds` at every GetSecretValue: a run runs out of time by the
    reads it makes, without sleeping."""

    def __init__(self, sm: SecretsManagerClient, seconds: float = 10.0) -> None:
        self._sm = sm
        self._seconds = seconds
        self._offset = 0.0
        sm.meta.events.register(_GET_SECRET_VALUE, self._tick)

    def __call__(self) -> float:
        return time.monotonic() + self._offset

    def _tick(self, **_: Any) -> None:
        self._offset += self._seconds

    def stop(self) -> None:
        """Back to real time; reads no longer move it."""
        self._sm.meta.events.unregister(_GET_SECRET_VALUE, self._tick)
        self._offset = 0.0
