"""Scripted misbehaviour and the rate limit. Neither is thread-safe: FakeCekura holds its lock."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from infra.local.fake_cekura.model import RouteName
from infra.local.fake_cekura.wire import Reply, detail, encode


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by the next `times` requests of its route.

    `drop` or `status` replace the operation: nothing changes server-side (a `status` fault
    answers a DRF-style JSON detail for 4xx and an HTML error page for 5xx, as Django and load
    balancers do). Every other field alters the response of an operation that does run, so a
    key is minted even when the client never learns it (`missing_key`, `lost_response`, `body`).
    `delay` applies before either. `key_value` must be JSON-serialisable.
    """

    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    drop: bool = False
    body: bytes | None = None
    content_type: str | None = None
    missing_key: bool = False
    lost_response: bool = False
    times: int = 1
    key_value: object = _UNSET
    oversize: int = 0
    # The operation runs, but answers with this status (a create answering 200, not 201).
    success_status: int | None = None

    def __post_init__(self) -> None:
        if self.times < 1 or self.delay < 0 or self.oversize < 0:
            raise ValueError("times must be >= 1, delay and oversize >= 0")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"not an HTTP status: {self.status}")


def fault_reply(status: int) -> Reply:
    """What a `status` fault answers instead of running the operation."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if status >= 500:
        page = f"<html><body><h1>{status} {phrase}</h1></body></html>"
        return Reply(status, raw=page.encode(), content_type="text/html")
    return detail(status, "Request was throttled." if status == 429 else phrase)


def distort(reply: Reply, fault: Fault | None) -> Reply:
    """The reply as the fault would have the client receive it."""
    if fault is None:
        return reply
    payload = reply.payload
    if isinstance(payload, dict) and "key" in payload:
        payload = dict(payload)
        if fault.missing_key:
            del payload["key"]
        elif fault.key_value is not _UNSET:
            payload["key"] = fault.key_value
    body = reply.raw if payload is None else encode(payload)
    if fault.body is not None:
        body = fault.body
    headers = dict(reply.headers)
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    return Reply(
        fault.success_status or reply.status,
        # Trailing whitespace keeps JSON valid, so only a client-side size cap notices.
        raw=body.ljust(fault.oversize, b" "),
        content_type=fault.content_type or reply.content_type,
        headers=headers,
    )


@dataclass
class _Queued:
    fault: Fault
    left: int


class FaultQueues:
    """Per-route queues of faults, served in order, each `times` times."""

    def __init__(self) -> None:
        self._queues: dict[RouteName, deque[_Queued]] = {}

    def add(self, route: RouteName, faults: tuple[Fault, ...]) -> None:
        queue = self._queues.setdefault(route, deque())
        queue.extend(_Queued(fault, fault.times) for fault in faults)

    def take(self, route: RouteName | None) -> Fault | None:
        queue = self._queues.get(route) if route else None
        if not queue:
            return None
        head = queue[0]
        head.left -= 1
        if head.left == 0:
            queue.popleft()
        return head.fault

    def clear(self) -> None:
        self._queues.clear()

    def pending(self) -> int:
        return sum(queued.left for queue in self._queues.values() for queued in queue)


class RateLimit:
    """Requests per second across all routes: a token bucket with one second of burst."""

    def __init__(self) -> None:
        self._rate: float | None = None
        self._tokens = 0.0
        self._refilled = 0.0

    @property
    def rate(self) -> float | None:
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("rate_limit must be positive or None")
        self._rate = value
        self._tokens = max(1.0, value or 0.0)
        self._refilled = time.monotonic()

    def admit(self) -> Reply | None:
        """None when the request may go on, else the 429 DRF's throttling answers."""
        rate = self._rate
        if rate is None:
            return None
        now = time.monotonic()
        self._tokens = min(max(1.0, rate), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        wait = max(1, math.ceil((1 - self._tokens) / rate))
        unit = "second" if wait == 1 else "seconds"  # DRF's own wording
        message = f"Request was throttled. Expected available in {wait} {unit}."
        return detail(429, message, {"Retry-After": str(wait)})
