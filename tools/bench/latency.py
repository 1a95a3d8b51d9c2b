"""Network latency injected on the client side of the benchmark process, and calls counted.

On loopback a call costs a millisecond or two; in production a Secrets Manager call costs tens of
milliseconds and a Cekura call a hundred or more, so the number of round trips decides the time.
Both injectors sleep before a request leaves this process and then let it go on unchanged, so
the stand-ins answer exactly as before, only later. Each also counts the calls it delayed, per
step (the `step` attribute, set by whoever drives a rotation) and per operation.

- AWS: a botocore `before-send` hook. It is registered on a boto3 Session that is made the
  default one, so every Secrets Manager client made from `boto3.client(...)` afterwards (the
  handler's and the minimal rotator's, once their cached clients are dropped) copies it. The
  bench's own driver uses a Session of its own and is neither delayed nor counted.
- Cekura: a transport wrapper. `LatencyTransport` wraps any httpx transport; `patched()` wraps
  httpx's `HTTPTransport.handle_request` for the duration of a block, for requests to the fake
  Cekura's origin only. That reaches the Cekura client whatever way the rotator builds it (its
  own `httpx.Client` settings, `trust_env=False` and `follow_redirects=False`, stay as they are:
  nothing here constructs or reconfigures a client).

Counters are guarded by a lock, and `step` is shared by all threads: a rotator that overlaps
independent calls in helper threads has them booked to the step that started them, and their
delays overlap as they would on a real network.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import boto3
import httpx

Sleep = Callable[[float], None]
# `/user/api/v1/user-api-key/17/` and `/user/api/v1/user-api-key/` are both "keys".
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/user/api/v1/user-api-key/?$"), "keys"),
    (re.compile(r"^/user/api/v1/user-api-key/[^/]+/?$"), "key"),
    (re.compile(r"^/app/otel/validate/?$"), "validate"),
)
# What each (method, route) does, in the rotator's words.
_OPERATIONS = {
    ("POST", "keys"): "create",
    ("GET", "keys"): "list",
    ("DELETE", "key"): "delete",
    ("GET", "key"): "retrieve",
    ("GET", "validate"): "validate",
}


class _Counted:
    """A delay per call and a thread-safe count of calls per (step, operation)."""

    def __init__(self, delay_s: float, sleep: Sleep) -> None:
        if delay_s < 0:
            raise ValueError("a latency cannot be negative")
        self.delay_s = delay_s
        self.step = "-"
        self._sleep = sleep
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str]] = Counter()

    def _record(self, operation: str) -> None:
        self._count(operation)
        self._wait()

    def _count(self, operation: str) -> None:
        with self._lock:
            self._calls[(self.step, operation)] += 1

    def _wait(self) -> None:
        if self.delay_s > 0:
            self._sleep(self.delay_s)

    @property
    def calls(self) -> Counter[tuple[str, str]]:
        """A snapshot of the counts so far."""
        with self._lock:
            return Counter(self._calls)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()

    def total(self) -> int:
        with self._lock:
            return sum(self._calls.values())


class AwsLatency(_Counted):
    """Delays and counts Secrets Manager calls through a botocore `before-send` hook."""

    EVENT = "before-send.secrets-manager"

    def __init__(self, delay_s: float, *, sleep: Sleep = time.sleep) -> None:
        super().__init__(delay_s, sleep)

    def hook(self, event_name: str = "", **_: Any) -> None:
        """botocore calls this with the prepared request just before sending it. Returning None
        lets the request go on (a returned response would replace it)."""
        self._record(event_name.rsplit(".", 1)[-1] or "?")

    def register(self, events: Any) -> None:
        """Hook an event system: a Session's or a client's `meta.events`."""
        events.register(self.EVENT, self.hook)

    @contextlib.contextmanager
    def on_default_session(self) -> Iterator[boto3.Session]:
        """Make a hooked Session boto3's default for the block. Clients copy their session's
        hooks when they are made, so the rotators' cached clients must be dropped (by the
        caller) after entering and again after leaving."""
        saved = boto3.DEFAULT_SESSION
        session = boto3.Session()
        self.register(session.events)
        boto3.DEFAULT_SESSION = session
        try:
            yield session
        finally:
            boto3.DEFAULT_SESSION = saved


class CekuraLatency(_Counted):
    """Delays and counts HTTP requests to one origin (the fake Cekura's), through httpx."""

    def __init__(self, delay_s: float, origin: str, *, sleep: Sleep = time.sleep) -> None:
        super().__init__(delay_s, sleep)
        url = httpx.URL(origin)
        self._origin = (url.scheme, url.host, url.port)

    def applies_to(self, request: httpx.Request) -> bool:
        return (request.url.scheme, request.url.host, request.url.port) == self._origin

    def send(
        self, request: httpx.Request, send: Callable[[httpx.Request], httpx.Response]
    ) -> httpx.Response:
        """Wait out the round trip, send, and count the call by operation (with the status when
        it is not a success, so a refusal shows: `GET list 403`)."""
        if not self.applies_to(request):
            return send(request)
        operation = operation_of(request.method, request.url.path)
        self._wait()
        try:
            response = send(request)
        except Exception:
            self._count(f"{operation} (no answer)")
            raise
        status = response.status_code
        self._count(operation if status < 300 else f"{operation} {status}")
        return response

    def wrap(self, transport: httpx.BaseTransport) -> LatencyTransport:
        """A transport that delays and counts, then hands the request to `transport`."""
        return LatencyTransport(transport, self)

    @contextlib.contextmanager
    def patched(self) -> Iterator[CekuraLatency]:
        """Delay every httpx client's requests to the origin for the block (see the module)."""
        original = httpx.HTTPTransport.handle_request
        injector = self

        def handle_request(transport: httpx.HTTPTransport, request: httpx.Request) -> Any:
            return injector.send(request, lambda r: original(transport, r))

        with mock.patch.object(httpx.HTTPTransport, "handle_request", handle_request):
            yield self


class LatencyTransport(httpx.BaseTransport):
    """An httpx transport wrapper: the injector's delay and count, then the inner transport."""

    def __init__(self, inner: httpx.BaseTransport, injector: CekuraLatency) -> None:
        self._inner = inner
        self._injector = injector

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._injector.send(request, self._inner.handle_request)

    def close(self) -> None:
        self._inner.close()


def operation_of(method: str, path: str) -> str:
    """`POST create`, `GET validate`, `DELETE delete`...; an unknown path keeps its method."""
    for pattern, route in _ROUTES:
        if pattern.match(path):
            return f"{method} {_OPERATIONS.get((method, route), route)}"
    return f"{method} other"
