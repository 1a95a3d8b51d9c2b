"""The Cekura port: mint, validate, list and delete keys over httpx. Knows nothing of AWS.

Retries run on tenacity with exponential backoff, full jitter and `Retry-After` (capped), and never
past the caller's deadline. Each operation retries only what is safe for it: a POST that may have
reached the server is never repeated, because it would mint a second key.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal, NoReturn

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from cekura_rotator import __version__
from cekura_rotator.config import Config
from cekura_rotator.errors import (
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
    CekuraMethodNotAllowedError,
    CekuraNotFoundError,
    CekuraProtocolError,
    CekuraRateLimitedError,
    CekuraRequestError,
    CekuraUnavailableError,
    OrphanKeyError,
)
from cekura_rotator.secret_value import MintedKey, fingerprint

KEYS_PATH = "/user/api/v1/user-api-key/"
VALIDATE_PATH = "/app/otel/validate/"
PROJECTS_PATH = "/user/v1/projects/"
AUTH_HEADER = "X-CEKURA-API-KEY"
BEARER_HEADER = "Authorization"
USER_AGENT = f"cekura-rotator/{__version__}"
MAX_BODY_BYTES = 256 * 1024
# Time kept back from the Lambda deadline so a failure is still reported, not cut off.
_DEADLINE_MARGIN = 1.0
_DETAIL_CHARS = 300

# A request that never left this machine cannot have created anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# `Retry-After: 0` (or a tiny value) would otherwise turn throttling into a busy loop.
_MIN_THROTTLE_WAIT = 0.5
# A throttled call is retried until the deadline, but never more often than this.
_MAX_THROTTLED_ATTEMPTS = 30
# Response fields whose value is a credential: never formatted into an error's text.
_SECRET_FIELD = re.compile(r"key|token|secret|password|authorization|credential|session", re.I)


@dataclass(frozen=True, slots=True)
class Credential:
    """How a request authenticates: an API key or a bearer token. `repr` never shows it."""

    kind: Literal["api_key", "bearer"]
    value: str = field(repr=False)

    @classmethod
    def api_key(cls, key: str) -> Credential:
        """An API key, sent as `X-CEKURA-API-KEY`."""
        return cls("api_key", key)

    @classmethod
    def bearer(cls, token: str) -> Credential:
        """A bearer token (a dashboard session), sent as `Authorization: Bearer`."""
        return cls("bearer", token)

    @property
    def fingerprint(self) -> str:
        """How this credential is shown to a person."""
        return fingerprint(self.value)

    def headers(self) -> dict[str, str]:
        if self.kind == "bearer":
            return {BEARER_HEADER: f"Bearer {self.value}"}
        return {AUTH_HEADER: self.value}


def as_credential(credential: Credential | str) -> Credential:
    """A bare string is an API key: the rotated secret's own key."""
    return credential if isinstance(credential, Credential) else Credential.api_key(credential)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as Cekura lists it (never with its secret)."""

    id: int
    name: str
    project: int | None


@dataclass(frozen=True, slots=True)
class _RetryPolicy:
    statuses: frozenset[int]
    transport: tuple[type[Exception], ...]
    max_attempts: int = 5
    budget: float | None = None


_READ = _RetryPolicy(frozenset({429, 502, 503, 504}), (httpx.TransportError,))
_CREATE = _RetryPolicy(frozenset({429}), _NOT_SENT)


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    credential: Credential
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        content_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise CekuraProtocolError(
                f"Cekura answered {self.status} with content type {content_type or 'none'!r}, "
                "not application/json",
                status=self.status,
            )
        try:
            return json.loads(self.body)
        except ValueError:
            raise CekuraProtocolError(
                f"Cekura answered {self.status} with a body that is not valid JSON",
                status=self.status,
            ) from None


class _Retryable(Exception):
    """Internal signal to tenacity; never escapes the client."""

    def __init__(self, reply: _Reply | None = None, error: Exception | None = None):
        super().__init__("retryable")
        self.reply = reply
        self.error = error


class CekuraClient:
    """Cekura's key API. One instance per container: its connection pool is reused."""

    def __init__(
        self,
        *,
        base_url: str,
        http_client: httpx.Client | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        retry_after_cap: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._retry_after_cap = retry_after_cap
        self._sleep = sleep
        self._clock = clock
        # Redirects are refused: httpx would replay our key header to wherever they point.
        # TLS verification is fixed on and the environment (proxies, netrc) is not consulted.
        self._http = http_client or httpx.Client(
            verify=True,
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    @classmethod
    def from_config(cls, config: Config) -> CekuraClient:
        """A client with the configured URL and timeouts."""
        return cls(
            base_url=config.cekura_api_url,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            retry_after_cap=config.retry_after_cap,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def create_key(
        self,
        credential: Credential | str,
        *,
        name: str,
        project: int,
        deadline: float | None = None,
    ) -> MintedKey:
        """Mint a project key; the response is the only time Cekura shows its secret."""
        auth = as_credential(credential)
        body = {"name": name, "project": project}
        reply = self._send(_Call("POST", KEYS_PATH, auth, body=body), _CREATE, deadline)
        # 200 with a valid body is a created key too: refusing it would orphan a live key.
        if reply.status not in {200, 201}:
            self._raise_for(reply, "key creation", auth)
        return _minted_key(reply.json(), project=project, status=reply.status)

    def validate(
        self,
        credential: Credential | str,
        *,
        project_id: int,
        deadline: float | None = None,
        activation_wait: float = 0.0,
    ) -> None:
        """Return if `api_key` authenticates and owns `project_id`, else raise.

        A key minted a moment ago may not be live everywhere yet, so 401 is retried for up to
        `activation_wait` seconds. 403 (a key of another project) is final at once.
        """
        policy = _READ
        if activation_wait > 0:
            policy = _RetryPolicy(_READ.statuses | {401}, _READ.transport, 50, activation_wait)
        auth = as_credential(credential)
        params = {"project_id": str(project_id)}
        reply = self._send(_Call("GET", VALIDATE_PATH, auth, params=params), policy, deadline)
        if reply.status != 200:
            self._raise_for(reply, "key validation", auth)

    def sees_project(
        self, credential: Credential | str, *, project_id: int, deadline: float | None = None
    ) -> bool:
        """Whether Cekura authenticates `credential` and shows it project `project_id`: one
        bounded GET of the projects list filtered to that project. Works for a dashboard session
        too, which `validate` ignores. Raises on a refusal (401, 403) or a failure."""
        auth = as_credential(credential)
        params = {"project_id": str(project_id)}
        call = _Call("GET", PROJECTS_PATH, auth, params=params)
        items = self._list(call, "the project listing", "project", deadline)
        return any(isinstance(item, dict) and item.get("id") == project_id for item in items)

    def delete_key(
        self, credential: Credential | str, key_id: int, *, deadline: float | None = None
    ) -> bool:
        """Delete a key; True if deleted now, False if Cekura no longer had it."""
        auth = as_credential(credential)
        reply = self._send(_Call("DELETE", f"{KEYS_PATH}{key_id}/", auth), _READ, deadline)
        if reply.status in {200, 202, 204}:
            return True
        if reply.status == 404:
            return False
        return self._raise_for(reply, f"deletion of key {key_id}", auth)

    def list_keys(
        self, credential: Credential | str, *, deadline: float | None = None
    ) -> list[KeyInfo]:
        """The keys this credential may see."""
        auth = as_credential(credential)
        items = self._list(_Call("GET", KEYS_PATH, auth), "key listing", "key", deadline)
        return [_key_info(item) for item in items]

    def _list(self, call: _Call, what: str, noun: str, deadline: float | None) -> list[Any]:
        """A list endpoint's items: its JSON array, or the `results` of a page of one."""
        reply = self._send(call, _READ, deadline)
        if reply.status != 200:
            self._raise_for(reply, what, call.credential)
        body = reply.json()
        items = body.get("results", body) if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise CekuraProtocolError(f"Cekura's {noun} list is not a JSON array", status=200)
        return items

    def _send(self, call: _Call, policy: _RetryPolicy, deadline: float | None) -> _Reply:
        started = self._clock()
        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            wait=self._wait,
            stop=lambda state: self._should_stop(state, policy, started, deadline),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(call, policy, deadline)
        except _Retryable as final:
            if final.reply is not None:
                return final.reply
            raise CekuraUnavailableError(
                f"Cekura {call} could not be reached: {type(final.error).__name__}"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _once(self, call: _Call, policy: _RetryPolicy, deadline: float | None) -> _Reply:
        request = self._http.build_request(
            call.method,
            self._base_url + call.path,
            headers=call.credential.headers(),
            json=call.body,
            params=call.params,
            timeout=self._timeout_until(deadline),
        )
        try:
            response = self._http.send(request, stream=True)
            try:
                reply = _Reply(response.status_code, response.headers, _read_capped(response))
            finally:
                response.close()
        except CekuraProtocolError:
            raise
        except policy.transport as e:
            raise _Retryable(error=e) from None
        except httpx.HTTPError as e:
            # Not retryable for this operation: a create that may have reached Cekura.
            raise CekuraUnavailableError(
                f"Cekura {call} failed after the request was sent ({type(e).__name__}); "
                "it was not repeated"
            ) from None
        if reply.status in policy.statuses:
            raise _Retryable(reply=reply)
        return reply

    def _timeout_until(self, deadline: float | None) -> httpx.Timeout:
        if deadline is None:
            return self._timeout
        left = max(0.1, deadline - _DEADLINE_MARGIN - self._clock())
        read = min(self._timeout.read or left, left)
        connect = min(self._timeout.connect or left, left)
        return httpx.Timeout(read, connect=connect)

    def _wait(self, state: RetryCallState) -> float:
        backoff = random.uniform(0, min(8.0, 0.25 * 2**state.attempt_number))  # noqa: S311
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Retryable) and failure.reply is not None:
            retry_after = _retry_after(failure.reply.headers.get("retry-after"))
            if retry_after is not None:
                return max(_MIN_THROTTLE_WAIT, min(retry_after, self._retry_after_cap))
            if failure.reply.status == 429:
                return max(_MIN_THROTTLE_WAIT, backoff)
        return backoff

    def _should_stop(
        self, state: RetryCallState, policy: _RetryPolicy, started: float, deadline: float | None
    ) -> bool:
        # At least the time slept has passed, even when an injected sleep does not advance the
        # clock; without this a deadline-bounded retry would never end under a test's sleep.
        wake = max(self._clock(), started + state.idle_for) + state.upcoming_sleep
        if deadline is not None and wake + _DEADLINE_MARGIN >= deadline:
            return True
        # A 429 means Cekura did nothing and says when to come back; it is not a fault. When a
        # fleet rotates at once, each throttled request waits its turn behind the others (200
        # secrets at 20 requests/s: up to ~30 turns, `make bench`), so a fixed count of attempts
        # fails rotations that had time left. With a deadline to bound them, 429s are retried
        # until it; without one, they count like any other failure.
        if state.attempt_number >= policy.max_attempts and not (
            deadline is not None and _throttled(state)
        ):
            return True
        if state.attempt_number >= max(policy.max_attempts, _MAX_THROTTLED_ATTEMPTS):
            return True
        return policy.budget is not None and wake - started > policy.budget

    def _raise_for(self, reply: _Reply, what: str, credential: Credential) -> NoReturn:
        detail = _detail(reply, credential.value)
        message = f"Cekura refused {what}: HTTP {reply.status}" + (f": {detail}" if detail else "")
        error_type: type[CekuraError] = {
            400: CekuraRequestError,
            401: CekuraAuthError,
            403: CekuraForbiddenError,
            404: CekuraNotFoundError,
            405: CekuraMethodNotAllowedError,
            429: CekuraRateLimitedError,
        }.get(reply.status, CekuraError)
        if reply.status >= 500:
            error_type = CekuraUnavailableError
        elif 300 <= reply.status < 400:
            error_type = CekuraProtocolError
            message = f"Cekura answered {what} with a redirect (HTTP {reply.status}); not followed"
        elif error_type is CekuraError and 400 <= reply.status < 500:
            error_type = CekuraRequestError
        raise error_type(message, status=reply.status, detail=detail)


def _throttled(state: RetryCallState) -> bool:
    failure = state.outcome.exception() if state.outcome else None
    return (
        isinstance(failure, _Retryable)
        and failure.reply is not None
        and (failure.reply.status == 429)
    )


def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise CekuraProtocolError(
                f"Cekura's answer exceeds {MAX_BODY_BYTES} bytes; refused",
                status=response.status_code,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _detail(reply: _Reply, api_key: str) -> str:
    """Cekura's error text: `{"detail": ...}` or `{"field": ["..."]}`, scrubbed and shortened."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        text = str(body["detail"])
    elif isinstance(body, dict):
        # Only field-error lists (`{"field": ["..."]}`), and never a field named like a secret:
        # an unexpected success body would otherwise put a fresh key into the error text.
        text = "; ".join(
            f"{name}: {' '.join(str(m) for m in msgs)}"
            for name, msgs in body.items()
            if isinstance(msgs, list)
            and not _SECRET_FIELD.search(str(name))
            and all(isinstance(m, str) for m in msgs)
        )
    else:
        return ""
    return text.replace(api_key, "***")[:_DETAIL_CHARS]


def _minted_key(body: Any, *, project: int, status: int) -> MintedKey:
    if not isinstance(body, dict):
        raise CekuraProtocolError("Cekura's created key is not a JSON object", status=status)
    key_id = body.get("id")
    if isinstance(key_id, bool) or not isinstance(key_id, int):
        raise CekuraProtocolError("Cekura's created key has no integer 'id'", status=status)
    key = body.get("key")
    if not isinstance(key, str) or not key:
        raise OrphanKeyError(
            f"Cekura created key {key_id} but its answer has no usable 'key'",
            key_id=key_id,
        )
    if body.get("project") != project:
        raise OrphanKeyError(
            f"Cekura created key {key_id} for project {body.get('project')!r}, not {project}",
            key_id=key_id,
        )
    created_at = body.get("created_at")
    return MintedKey(
        id=key_id,
        name=str(body.get("name") or ""),
        project=project,
        key=key,
        created_at=created_at if isinstance(created_at, str) else None,
    )


def _key_info(item: Any) -> KeyInfo:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        raise CekuraProtocolError("Cekura's key list holds an entry without an integer 'id'")
    project = item.get("project")
    return KeyInfo(
        id=item["id"],
        name=str(item.get("name") or ""),
        project=project if isinstance(project, int) else None,
    )
