"""The benchmark's stand-ins and the bookkeeping shared by every figure.

One moto server and one fake Cekura serve the whole run (`infra.local.stack.local_stack`). The
bench drives them through its own boto3 Session, so a hook on the default session (which the
handler's `boto3.client("secretsmanager")` uses) counts the rotator's calls and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import boto3

# Imported for its side effect: the rotator's logger must exist before open_stand mutes it.
from cekura_rotator import handler as _handler  # noqa: F401
from infra.local.lambda_bridge import FUNCTION_ARN, REGION, LambdaBridge
from infra.local.stack import LocalStack, enable_rotation, local_stack, secret_json

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ROOT = Path(__file__).resolve().parents[2]
Handler = Callable[[dict[str, Any], Any], Any]
Mode = Literal["spec", "permissive"]


class BenchError(RuntimeError):
    """A rotation the bench drove did not complete, so its figures would mean nothing."""


def _noop(event: dict[str, Any], context: Any) -> None:
    return None


@dataclass
class Stand:
    """The running stand-ins, a driver client, and one project whose keys seed the secrets."""

    stack: LocalStack
    driver: SecretsManagerClient
    project_id: int
    _names: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def new_secrets(self, count: int, label: str) -> list[str]:
        """Secrets with rotation enabled, each holding its own freshly issued key."""
        arns = []
        with LambdaBridge(handler=_noop).patched():
            for _ in range(count):
                name = f"bench/{label}-{next(self._names)}"
                issued = self.stack.fake.issue_key(project_id=self.project_id, name=name)
                value = secret_json(issued.key, self.project_id, key_id=issued.id)
                arn = self.driver.create_secret(Name=name, SecretString=value)["ARN"]
                enable_rotation(self.driver, arn)
                arns.append(arn)
        return arns

    def start_rotations(self, arns: list[str]) -> list[str]:
        """RotateSecret with a bridge that runs nothing: each secret is left with its
        AWSPENDING stub, as AWS leaves it for the function; the returned tokens name them."""
        tokens = []
        with LambdaBridge(handler=_noop).patched():
            for arn in arns:
                token = str(uuid.uuid4())
                self.driver.rotate_secret(
                    SecretId=arn, ClientRequestToken=token, RotationLambdaARN=FUNCTION_ARN
                )
                tokens.append(token)
        return tokens

    def rotate(self, arn: str, handler: Handler) -> tuple[LambdaBridge, float]:
        """One full rotation through moto's RotateSecret, its four steps run by `handler`.
        Returns the bridge (per-step records) and the RotateSecret round trip in seconds."""
        bridge = LambdaBridge(handler=handler)
        token = str(uuid.uuid4())
        with bridge.patched():
            started = time.perf_counter()
            self.driver.rotate_secret(
                SecretId=arn, ClientRequestToken=token, RotationLambdaARN=FUNCTION_ARN
            )
            seconds = time.perf_counter() - started
        if bridge.failures():
            raise BenchError(f"a rotation failed: {bridge.failures()[0].error}")
        if len(bridge.invocations) != 4:
            raise BenchError(f"RotateSecret ran {len(bridge.invocations)} steps, not 4")
        return bridge, seconds

    @contextlib.contextmanager
    def fake_mode(self, mode: Mode) -> Iterator[None]:
        """The fake Cekura in `mode` for the block (`permissive`: API keys may list and delete
        keys, as in the older spec; `spec`: they may only create), then as it was."""
        fake = self.stack.fake
        saved = fake.mode
        fake.mode = mode
        try:
            yield
        finally:
            fake.mode = saved

    def is_current(self, arn: str, token: str) -> bool:
        stages = self.driver.describe_secret(SecretId=arn)["VersionIdsToStages"]
        return "AWSCURRENT" in stages.get(token, [])

    def child_env(self) -> dict[str, str]:
        """The environment a probe process needs to reach the stand-ins, as the handler would."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
        env = {k: v for k, v in os.environ.items() if k in keep}
        return {**env, **self.stack.handler_env()}


class AwsCallLog:
    """Counts Secrets Manager calls by (step, operation) through a botocore `before-call` hook."""

    def __init__(self) -> None:
        self.step = "-"
        self.calls: Counter[tuple[str, str]] = Counter()

    def hook(self, model: Any, **_: Any) -> None:
        self.calls[(self.step, str(model.name))] += 1

    def install_on_default_session(self) -> None:
        """Hook the default session. Clients copy their session's hooks when they are made, so
        the rotator's clients must be created after this (the caller resets them)."""
        session = boto3.Session()
        session.events.register("before-call.secrets-manager", self.hook)
        boto3.DEFAULT_SESSION = session

    @staticmethod
    def uninstall() -> None:
        boto3.DEFAULT_SESSION = None


@contextlib.contextmanager
def open_stand(devnull: TextIO) -> Iterator[Stand]:
    """Start the stand-ins with their chatter (werkzeug's access log, the rotator's JSON logs
    and EMF metrics) sent to `devnull`: the rotator still formats and writes every line, as it
    would in Lambda, so the cost stays in the figures."""
    logging.getLogger("werkzeug").disabled = True
    rotator_log = logging.getLogger("cekura-rotator")
    streams: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in rotator_log.handlers:
        if isinstance(handler, logging.StreamHandler):
            streams.append((handler, handler.setStream(devnull)))
    try:
        with contextlib.redirect_stdout(devnull), local_stack() as stack:
            driver = boto3.Session().client(
                "secretsmanager", region_name=REGION, endpoint_url=stack.moto_url
            )
            project = stack.fake.create_project(name="bench", organization="Bench")
            yield Stand(stack=stack, driver=driver, project_id=project)
    finally:
        for handler, stream in streams:
            handler.setStream(stream)
        logging.getLogger("werkzeug").disabled = False
