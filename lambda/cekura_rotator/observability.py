"""The logger (with its redaction layer) and the metrics. The one module that owns them.

Redaction is a last line of defence, not the design: no code path hands a key to the logger. Two
things are masked in every serialized record, tracebacks included: values of fields whose name
says they hold a secret, and any key value the rotator has seen in this container.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Mapping
from threading import Lock
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

# Fall-backs only: the template sets POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE, and
# its dashboard and alarms read the metrics under those names. Passing the code's values to
# Powertools unconditionally would win over the environment and break that link silently.
DEFAULT_SERVICE = "cekura-rotator"
DEFAULT_NAMESPACE = "CekuraRotator"
MASK = "***"


def service_name(env: Mapping[str, str]) -> str:
    """The Powertools service name: POWERTOOLS_SERVICE_NAME, else the code's default."""
    return env.get("POWERTOOLS_SERVICE_NAME", "").strip() or DEFAULT_SERVICE


def metrics_namespace(env: Mapping[str, str]) -> str:
    """The metrics namespace: POWERTOOLS_METRICS_NAMESPACE, else the code's default."""
    return env.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or DEFAULT_NAMESPACE


# Read once, at import: Lambda's environment is fixed for the life of the container.
SERVICE = service_name(os.environ)
NAMESPACE = metrics_namespace(os.environ)

_SENSITIVE_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "secret",
        "secretstring",
        "secret_string",
        "secretbinary",
        "rotationtoken",
        "rotation_token",
        "password",
        "authorization",
        "x-cekura-api-key",
    }
)
# Shorter strings are too likely to occur by chance in ordinary text to be masked safely.
_MIN_SECRET_CHARS = 8


class Redactor:
    """Masks known secret values and secret-named fields in log records."""

    def __init__(self, capacity: int = 256):
        self._secrets: deque[str] = deque(maxlen=capacity)
        self._lock = Lock()

    def watch(self, *values: str | None) -> None:
        """Mask these values from now on."""
        with self._lock:
            for value in values:
                if value and len(value) >= _MIN_SECRET_CHARS and value not in self._secrets:
                    self._secrets.append(value)

    def scrub(self, text: str) -> str:
        """`text` with every watched value masked (raw and JSON-escaped forms)."""
        with self._lock:
            secrets = list(self._secrets)
        for secret in secrets:
            text = text.replace(secret, MASK)
            escaped = json.dumps(secret)[1:-1]
            if escaped != secret:
                text = text.replace(escaped, MASK)
        return text

    def serialize(self, record: dict[str, Any]) -> str:
        """Powertools' json_serializer: mask fields, dump, then mask values."""
        return self.scrub(json.dumps(_mask_fields(record), default=str, ensure_ascii=False))


def _mask_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: MASK if str(k).lower() in _SENSITIVE_FIELDS else _mask_fields(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask_fields(v) for v in value]
    return value


redactor = Redactor()
logger = Logger(service=SERVICE, json_serializer=redactor.serialize, utc=True)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


_metrics_lock = Lock()


def count(name: str, value: int = 1) -> None:
    """Add to a count metric for this invocation (from any of a step's threads)."""
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
