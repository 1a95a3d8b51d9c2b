"""Lets moto's RotateSecret invoke the real handler in this process, as Secrets Manager would.

moto's simple Lambda backend (`use_docker: False`) answers invocations without running anything;
the bridge replaces its `invoke` so each rotation step reaches `lambda_handler` with a real event
and a Lambda-like context. Two differences from moto are corrected to match AWS:
- AWS stops a rotation at the first failed step; moto would go on to the next ones.
- AWS sends the secret's ARN as `SecretId`; moto sends its name (`secret_id_as="arn"` fixes that).
A failed step is recorded, not raised: on AWS, RotateSecret returns before the Lambda runs, and
the failure is seen afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from unittest import mock

FUNCTION_NAME = "cekura-rotator"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{FUNCTION_NAME}"
# What EventBridge sends the health function on its schedule (HealthCheckSchedule).
SCHEDULED_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT_ID,
    "time": "2026-12-05T12:00:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/cekura-rotator-health-check"],
    "detail": {},
}

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class FakeLambdaContext:
    """The parts of the Lambda context object that the handler and Powertools read."""

    function_name: str = FUNCTION_NAME
    invoked_function_arn: str = FUNCTION_ARN
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = f"/aws/lambda/{FUNCTION_NAME}"
    log_stream_name: str = "local"
    timeout_seconds: float = 60.0
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until this invocation's timeout."""
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


@dataclass(frozen=True)
class Invocation:
    """One step as the bridge delivered it."""

    step: str
    secret_id: str
    token: str
    error: str | None
    seconds: float
    skipped: bool = False


@dataclass
class LambdaBridge:
    """Route moto's Lambda invocations to `handler` while `patched()` is active."""

    handler: Handler
    secret_id_as: Literal["arn", "name"] = "arn"
    timeout_seconds: float = 60.0
    invocations: list[Invocation] = field(default_factory=list)
    _failed_tokens: set[str] = field(default_factory=set)

    @contextmanager
    def patched(self) -> Iterator[LambdaBridge]:
        """Patch moto's simple Lambda backend for the duration of the block."""
        from moto.awslambda_simple.models import LambdaSimpleBackend

        bridge = self

        def invoke(
            backend: Any, function_name: str, qualifier: Any, body: Any, *_: Any, **__: Any
        ) -> bytes:
            return bridge.deliver(backend, json.loads(body))

        with mock.patch.object(LambdaSimpleBackend, "invoke", invoke):
            yield self

    def deliver(self, backend: Any, event: dict[str, Any]) -> bytes:
        """Run one step through the handler, as Secrets Manager would."""
        token = str(event.get("ClientRequestToken"))
        if token in self._failed_tokens:
            self._record(event, None, 0.0, skipped=True)
            return b"null"
        if self.secret_id_as == "arn":
            event = {**event, "SecretId": self._arn_of(backend, str(event["SecretId"]))}
        started = time.perf_counter()
        try:
            self.handler(event, FakeLambdaContext(timeout_seconds=self.timeout_seconds))
        except Exception as e:  # recorded like AWS records a failed step
            self._failed_tokens.add(token)
            self._record(event, f"{type(e).__name__}: {e}", time.perf_counter() - started)
            return b"null"
        self._record(event, None, time.perf_counter() - started)
        return b"null"

    def failures(self) -> list[Invocation]:
        """The steps that raised."""
        return [i for i in self.invocations if i.error is not None]

    def _record(self, event: dict[str, Any], error: str | None, seconds: float, **kw: Any) -> None:
        self.invocations.append(
            Invocation(
                step=str(event.get("Step")),
                secret_id=str(event.get("SecretId")),
                token=str(event.get("ClientRequestToken")),
                error=error,
                seconds=seconds,
                **kw,
            )
        )

    @staticmethod
    def _arn_of(backend: Any, secret_id: str) -> str:
        from moto.secretsmanager.models import secretsmanager_backends

        secrets = secretsmanager_backends[backend.account_id][backend.region_name]
        secret = secrets.secrets.get(secret_id)
        return str(secret.arn) if secret is not None else secret_id
