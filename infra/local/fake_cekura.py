"""A fake of the Cekura API endpoints the key rotator touches, served over real HTTP.

It runs in-process on 127.0.0.1 so the rotator's own HTTP client, timeouts and error handling
are exercised exactly as against the real service. Behaviour follows
shared/cekura/openapi-excerpt.json. The `spec` mode is the current spec: only create accepts an
API key, and list, retrieve, update and delete want a dashboard session. The `permissive` mode
is the older spec: API keys work everywhere, scoped to their project or organization.

Standalone, for manual poking:
    python -m infra.local.fake_cekura --port 8765 --mode spec --seed-project 1
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import json
import math
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from types import TracebackType
from typing import Any, Final, Literal, Self, get_args
from urllib.parse import parse_qs, urlsplit

Mode = Literal["spec", "permissive"]
RouteName = Literal["create", "list", "retrieve", "update", "delete", "validate", "projects"]

API_KEY_HEADER: Final = "X-CEKURA-API-KEY"
# A recognisable prefix lets tests grep logs for leaked secrets and lets the fake redact them.
KEY_PREFIX: Final = "ck_fake_"
MAX_BODY_BYTES: Final = 1 << 20

_NOT_PROVIDED = "Authentication credentials were not provided."
_INVALID_KEY = "Invalid API key."
_FORBIDDEN = "You do not have permission to perform this action."
_NOT_FOUND = "Not found."
_REQUIRED = "This field is required."
_NOT_INT = "A valid integer is required."
_PROJECT_LEVEL_ONLY = "Only project-level API keys can be created with API key authentication."
# In the current spec these operations take only `supabase_session`, so an API key is ignored.
_SESSION_ONLY: frozenset[RouteName] = frozenset({"list", "retrieve", "update", "delete"})
_KEY_PATTERN = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]+")
_INT_PATTERN = re.compile(r"\s*[+-]?\d+\s*")

# Path pattern -> method -> operation. Django REST framework routers allow any id segment
# without "/" or "."; a non-numeric id is then a plain 404.
_ROUTES: tuple[tuple[re.Pattern[str], dict[str, RouteName]], ...] = (
    (re.compile(r"/user/api/v1/user-api-key/"), {"GET": "list", "POST": "create"}),
    (
        re.compile(r"/user/api/v1/user-api-key/(?P<id>[^/.]+)/"),
        {"GET": "retrieve", "PUT": "update", "PATCH": "update", "DELETE": "delete"},
    ),
    (re.compile(r"/app/otel/validate/"), {"GET": "validate"}),
    (re.compile(r"/user/v1/projects/"), {"GET": "projects"}),
)


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

    def __post_init__(self) -> None:
        if self.times < 1 or self.delay < 0 or self.oversize < 0:
            raise ValueError("times must be >= 1, delay and oversize >= 0")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"not an HTTP status: {self.status}")


@dataclass(frozen=True)
class IssuedKey:
    """A key made as if on the dashboard; `key` stays out of repr so it cannot leak via logs."""

    id: int
    key: str = field(repr=False)


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    project: int | None
    organization: str
    created_at: str
    deleted: bool


@dataclass(frozen=True)
class SeenRequest:
    """One request as the server saw it. `status` is 0 when the connection was dropped unanswered;
    `dropped` with a real status means the operation ran but its response was never sent."""

    method: str
    path: str
    query: dict[str, str]
    route: RouteName | None
    status: int
    caller_key_id: int | None
    at: float
    dropped: bool = False


@dataclass
class _Org:
    id: int
    name: str
    created_at: str


@dataclass
class _Project:
    id: int
    name: str
    org: _Org
    created_at: str


@dataclass
class _Key:
    id: int
    name: str
    secret: str
    org: _Org
    project: _Project | None
    created_at: str
    deleted: bool = False
    validate_lag: int = 0


@dataclass
class _Queued:
    fault: Fault
    left: int


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    query: dict[str, str]
    methods: Mapping[str, RouteName]  # empty: unknown path
    object_id: str | None
    content_type: str
    body: bytes | None  # None: too large or not length-delimited, left unread
    api_key: str | None

    @property
    def route(self) -> RouteName | None:
        return self.methods.get(self.method)


@dataclass
class _Reply:
    status: int
    payload: object = None  # JSON document; None means `raw` is the body
    raw: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, payload=payload, content_type="application/json", headers=headers or {})


def _detail(status: int, message: str, headers: dict[str, str] | None = None) -> _Reply:
    return _json(status, {"detail": message}, headers)


def _not_allowed(method: str, allowed: Iterable[str]) -> _Reply:
    return _detail(405, f'Method "{method}" not allowed.', {"Allow": ", ".join(sorted(allowed))})


def _fault_reply(status: int) -> _Reply:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if status >= 500:
        page = f"<html><body><h1>{status} {phrase}</h1></body></html>"
        return _Reply(status, raw=page.encode(), content_type="text/html")
    return _detail(status, "Request was throttled." if status == 429 else phrase)


def _render(reply: _Reply, fault: Fault | None) -> tuple[int, dict[str, str], bytes]:
    headers = dict(reply.headers)
    payload, content_type = reply.payload, reply.content_type
    if fault is not None and isinstance(payload, dict) and "key" in payload:
        payload = dict(payload)
        if fault.missing_key:
            del payload["key"]
        elif fault.key_value is not _UNSET:
            payload["key"] = fault.key_value
    body = reply.raw
    if payload is not None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if fault is not None:
        body = fault.body if fault.body is not None else body
        content_type = fault.content_type or content_type
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        # Trailing whitespace keeps JSON valid, so only a client-side size cap notices.
        body = body.ljust(fault.oversize, b" ")
    if content_type:
        headers["Content-Type"] = content_type
    return reply.status, headers, body


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_int(value: object) -> int | None:
    """Integer the way DRF reads a pk or query parameter: ints and digit strings, never bools."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_PATTERN.fullmatch(value):
        return int(value)
    return None


def _redact(text: str) -> str:
    return _KEY_PATTERN.sub("<redacted>", text)


def _parse_body(call: _Call) -> dict[str, object] | _Reply:  # noqa: PLR0911 (one per media type)
    body = call.body or b""
    if not body:
        return {}
    media = call.content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        try:
            data = json.loads(body)
        except ValueError as exc:
            return _detail(400, f"JSON parse error - {exc}")
        if not isinstance(data, dict):
            problem = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
            return _json(400, {"non_field_errors": [problem]})
        return data
    if media == "application/x-www-form-urlencoded":
        pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[-1] for name, values in pairs.items()}
    if media == "multipart/form-data":
        head = f"Content-Type: {call.content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields: dict[str, object] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                fields[name] = part.get_content()
        return fields
    return _detail(415, f'Unsupported media type "{call.content_type}" in request.')


def _clean_name(
    data: Mapping[str, object], errors: dict[str, list[str]], *, required: bool
) -> str | None:
    """DRF CharField rules: required, not null, trimmed, not blank, at most 255 characters."""
    if "name" not in data:
        if required:
            errors["name"] = [_REQUIRED]
        return None
    value = data["name"]
    if value is None:
        problem = "This field may not be null."
    elif isinstance(value, bool) or not isinstance(value, str | int | float):
        problem = "Not a valid string."
    elif not (text := str(value).strip()):
        problem = "This field may not be blank."
    elif len(text) > 255:
        problem = "Ensure this field has no more than 255 characters."
    else:
        return text
    errors["name"] = [problem]
    return None


def _sees(caller: _Key, org: _Org, project: _Project | None) -> bool:
    """An org-level key reaches its whole organization; a project-level key only its project."""
    return caller.org is org and (caller.project is None or caller.project is project)


def _key_json(key: _Key, *, reveal: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "id": key.id,
        "name": key.name,
        "organization_name": key.org.name,
        "project": key.project.id if key.project else None,
        "project_name": key.project.name if key.project else None,
    }
    if reveal:
        body["key"] = key.secret
    body["created_at"] = key.created_at
    return body


def _project_json(project: _Project) -> dict[str, object]:
    org = project.org
    return {
        "id": project.id,
        "name": project.name,
        "members": [],
        "organization": {
            "id": org.id,
            "name": org.name,
            "members": [],
            "created_at": org.created_at,
            "updated_at": org.created_at,
        },
        "is_deleted": False,
        "created_at": project.created_at,
        "updated_at": project.created_at,
    }


class FakeCekura:
    """The fake server and its test controls. One lock guards all state."""

    def __init__(
        self,
        mode: Mode = "spec",
        rate_limit: float | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._mode: Mode = "spec"
        self._refusal_status = 403
        self._rate_limit: float | None = None
        self._tokens = 0.0
        self._refilled = 0.0
        self.mode = mode
        self.rate_limit = rate_limit
        # Newly minted keys answer 401 on validate this many times, like a real propagation lag.
        self.activation_failures = 0
        self._orgs: dict[str, _Org] = {}
        self._projects: dict[int, _Project] = {}
        self._keys: dict[int, _Key] = {}
        self._by_secret: dict[str, _Key] = {}
        self._minted: list[str] = []
        self._ids = {"org": count(1), "project": count(1), "key": count(1)}
        self._faults: dict[RouteName, deque[_Queued]] = {}
        self._seen: list[SeenRequest] = []
        self._handlers: dict[RouteName, Callable[[_Call, _Key], _Reply]] = {
            "create": self._create,
            "list": self._list,
            "retrieve": self._retrieve,
            "update": self._update,
            "delete": self._delete,
            "validate": self._validate,
            "projects": self._list_projects,
        }

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FakeCekura is already running")
        server = _Server(self._address, self)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits out one poll; tests stop often
            name=f"fake-cekura-{server.server_port}",
            daemon=True,
        )
        self._server = server
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        # Keep-alive connections would otherwise go on being served after "the outage".
        server.close_connections()
        thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeCekura is not running")
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- run-time switches -----------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in get_args(Mode):
            raise ValueError(f"mode must be one of {get_args(Mode)}, not {value!r}")
        with self._lock:
            self._mode = value

    @property
    def refusal_status(self) -> int:
        """What spec mode answers API-key calls to session-only operations: 401, 403 or 405."""
        return self._refusal_status

    @refusal_status.setter
    def refusal_status(self, value: int) -> None:
        if value not in (401, 403, 405):
            raise ValueError(f"refusal_status must be 401, 403 or 405, not {value!r}")
        with self._lock:
            self._refusal_status = value

    @property
    def rate_limit(self) -> float | None:
        """Requests per second across all routes (token bucket, one second of burst)."""
        return self._rate_limit

    @rate_limit.setter
    def rate_limit(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("rate_limit must be positive or None")
        with self._lock:
            self._rate_limit = value
            self._tokens = max(1.0, value or 0.0)
            self._refilled = time.monotonic()

    # -- fixtures and inspection -----------------------------------------------------------

    def create_project(
        self, name: str = "Default Project", organization: str = "Default Organization"
    ) -> int:
        with self._lock:
            project = _Project(next(self._ids["project"]), name, self._org(organization), _now())
            self._projects[project.id] = project
            return project.id

    def issue_key(
        self,
        project_id: int | None = None,
        name: str = "dashboard key",
        *,
        organization: str | None = None,
    ) -> IssuedKey:
        """A key made on the dashboard: org-level when project_id is None (needs organization)."""
        with self._lock:
            if project_id is None:
                if organization is None:
                    raise ValueError("an org-level key needs organization=")
                org, project = self._org(organization), None
            else:
                project = self._projects.get(project_id)
                if project is None:
                    raise ValueError(f"unknown project {project_id}")
                if organization not in (None, project.org.name):
                    raise ValueError(f"project {project_id} is not in {organization!r}")
                org = project.org
            key = self._new_key(name, org, project, validate_lag=0)
            return IssuedKey(id=key.id, key=key.secret)

    def inject(self, route: RouteName, *faults: Fault) -> None:
        if route not in get_args(RouteName):
            raise ValueError(f"unknown route {route!r}; expected one of {get_args(RouteName)}")
        with self._lock:
            queue = self._faults.setdefault(route, deque())
            queue.extend(_Queued(fault, fault.times) for fault in faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        """Fault responses still queued, counting each repeat of `times`."""
        with self._lock:
            return sum(queued.left for queue in self._faults.values() for queued in queue)

    def all_keys(self, project_id: int | None = None) -> list[KeyRecord]:
        with self._lock:
            return [
                KeyRecord(
                    id=key.id,
                    name=key.name,
                    project=key.project.id if key.project else None,
                    organization=key.org.name,
                    created_at=key.created_at,
                    deleted=key.deleted,
                )
                for key in self._keys.values()
                if project_id is None or (key.project and key.project.id == project_id)
            ]

    def live_keys(self, project_id: int | None = None) -> list[KeyRecord]:
        return [record for record in self.all_keys(project_id) if not record.deleted]

    def is_live(self, key: str) -> bool:
        with self._lock:
            found = self._by_secret.get(key)
            return found is not None and not found.deleted

    def key_id(self, key: str) -> int | None:
        with self._lock:
            found = self._by_secret.get(key)
            return found.id if found else None

    def minted_secrets(self) -> list[str]:
        with self._lock:
            return list(self._minted)

    @property
    def requests(self) -> list[SeenRequest]:
        """Snapshot in arrival order; paths and queries have key-shaped values redacted."""
        with self._lock:
            return sorted(self._seen, key=lambda seen: seen.at)

    def reset_requests(self) -> None:
        with self._lock:
            self._seen.clear()

    # -- request pipeline (called from server threads) -------------------------------------

    def _process(self, call: _Call) -> tuple[int, dict[str, str], bytes] | None:
        """Throttle, faults, then the operation; None means close the socket unanswered."""
        arrived = time.monotonic()
        with self._lock:
            found = self._by_secret.get(call.api_key or "")
            caller_id = found.id if found and not found.deleted else None
            reply = self._throttle()
            fault = self._take_fault(call.route) if reply is None else None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop:
            self._record(call, arrived, caller_id, 0, dropped=True)
            return None
        if reply is None and fault is not None and fault.status is not None:
            reply = _fault_reply(fault.status)
        if reply is None:
            with self._lock:
                reply = self._dispatch(call)
        status, headers, body = _render(reply, fault)
        lost = fault is not None and fault.lost_response
        # Recorded before the response is written so a test that got an answer can assert on it.
        self._record(call, arrived, caller_id, status, dropped=lost)
        return None if lost else (status, headers, body)

    def _throttle(self) -> _Reply | None:
        rate = self._rate_limit
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
        return _detail(429, message, {"Retry-After": str(wait)})

    def _take_fault(self, route: RouteName | None) -> Fault | None:
        queue = self._faults.get(route) if route else None
        if not queue:
            return None
        head = queue[0]
        head.left -= 1
        if head.left == 0:
            queue.popleft()
        return head.fault

    def _record(
        self, call: _Call, arrived: float, caller_id: int | None, status: int, *, dropped: bool
    ) -> None:
        seen = SeenRequest(
            method=call.method,
            path=_redact(call.path),
            query={_redact(name): _redact(value) for name, value in call.query.items()},
            route=call.route,
            status=status,
            caller_key_id=caller_id,
            at=arrived,
            dropped=dropped,
        )
        with self._lock:
            self._seen.append(seen)

    def _dispatch(self, call: _Call) -> _Reply:  # noqa: PLR0911 (a guard per HTTP-level check)
        route = call.route
        if not call.methods:
            return _detail(404, _NOT_FOUND)
        if route is None:
            return _not_allowed(call.method, call.methods)
        if call.body is None:
            return _detail(413, "Request body too large or not length-delimited.")
        if self._mode == "spec" and route in _SESSION_ONLY:
            # The session-only auth never reads X-CEKURA-API-KEY: good and bad keys fare alike.
            if self._refusal_status == 405:
                usable = [m for m, r in call.methods.items() if r not in _SESSION_ONLY]
                return _not_allowed(call.method, usable)
            message = _NOT_PROVIDED if self._refusal_status == 401 else _FORBIDDEN
            return _detail(self._refusal_status, message)
        if call.api_key is None:
            return _detail(401, _NOT_PROVIDED)
        caller = self._by_secret.get(call.api_key)
        if caller is None or caller.deleted:
            return _detail(401, _INVALID_KEY)
        return self._handlers[route](call, caller)

    # -- operations (run under the lock) ---------------------------------------------------

    def _create(self, call: _Call, caller: _Key) -> _Reply:
        data = _parse_body(call)
        if isinstance(data, _Reply):
            return data
        errors: dict[str, list[str]] = {}
        name = _clean_name(data, errors, required=True)
        project = self._clean_project(data, errors, required=True)
        if errors or name is None or project is None:
            return _json(400, errors)
        if not _sees(caller, project.org, project):
            return _detail(403, _FORBIDDEN)
        key = self._new_key(name, project.org, project, validate_lag=self.activation_failures)
        return _json(201, _key_json(key, reveal=True))

    def _list(self, call: _Call, caller: _Key) -> _Reply:
        visible = [
            k for k in self._keys.values() if not k.deleted and _sees(caller, k.org, k.project)
        ]
        return _json(200, [_key_json(key, reveal=False) for key in visible])

    def _retrieve(self, call: _Call, caller: _Key) -> _Reply:
        key = self._scoped_key(call, caller)
        return key if isinstance(key, _Reply) else _json(200, _key_json(key, reveal=False))

    def _update(self, call: _Call, caller: _Key) -> _Reply:
        key = self._scoped_key(call, caller)
        if isinstance(key, _Reply):
            return key
        data = _parse_body(call)
        if isinstance(data, _Reply):
            return data
        errors: dict[str, list[str]] = {}
        name = _clean_name(data, errors, required=call.method == "PUT")
        project = self._clean_project(data, errors, required=False)
        if errors:
            return _json(400, errors)
        if project is not None:
            if not _sees(caller, project.org, project):
                return _detail(403, _FORBIDDEN)
            key.project = project
        key.name = name or key.name
        return _json(200, _key_json(key, reveal=False))

    def _delete(self, call: _Call, caller: _Key) -> _Reply:
        key = self._scoped_key(call, caller)
        if isinstance(key, _Reply):
            return key
        key.deleted = True
        return _Reply(204)

    def _validate(self, call: _Call, caller: _Key) -> _Reply:
        if caller.validate_lag > 0:
            caller.validate_lag -= 1
            return _detail(401, _INVALID_KEY)
        # Agents are not modelled: every agent_id is one the key does not own.
        for param, thing in (("project_id", "project"), ("agent_id", "agent")):
            if param not in call.query:
                continue
            wanted = _as_int(call.query[param])
            if wanted is None:
                return _json(400, {param: [_NOT_INT]})
            project = self._projects.get(wanted) if thing == "project" else None
            if project is not None and _sees(caller, project.org, project):
                return _Reply(200)
            return _detail(403, f"API key does not own this {thing}.")
        return _json(400, {"project_id": ["Either project_id or agent_id is required."]})

    def _list_projects(self, call: _Call, caller: _Key) -> _Reply:
        wanted: dict[str, int] = {}
        for param in ("organization_id", "project_id"):
            if param in call.query:
                value = _as_int(call.query[param])
                if value is None:
                    return _json(400, {param: [_NOT_INT]})
                wanted[param] = value
        visible = [
            _project_json(project)
            for project in self._projects.values()
            if _sees(caller, project.org, project)
            and wanted.get("organization_id", project.org.id) == project.org.id
            and wanted.get("project_id", project.id) == project.id
        ]
        return _json(200, visible)

    # -- helpers (run under the lock) ------------------------------------------------------

    def _org(self, name: str) -> _Org:
        if name not in self._orgs:
            self._orgs[name] = _Org(next(self._ids["org"]), name, _now())
        return self._orgs[name]

    def _new_key(
        self, name: str, org: _Org, project: _Project | None, *, validate_lag: int
    ) -> _Key:
        secret = KEY_PREFIX + secrets.token_urlsafe(36)  # 48 url-safe characters
        key = _Key(next(self._ids["key"]), name, secret, org, project, _now())
        key.validate_lag = validate_lag
        self._keys[key.id] = key
        self._by_secret[secret] = key
        self._minted.append(secret)
        return key

    def _scoped_key(self, call: _Call, caller: _Key) -> _Key | _Reply:
        """Out of scope looks exactly like missing, so ids of other tenants do not leak."""
        key = self._keys.get(_as_int(call.object_id) or 0)
        if key is None or key.deleted or not _sees(caller, key.org, key.project):
            return _detail(404, _NOT_FOUND)
        return key

    def _clean_project(
        self, data: Mapping[str, object], errors: dict[str, list[str]], *, required: bool
    ) -> _Project | None:
        value = data.get("project")
        if value is None or value == "":
            if required or "project" in data:
                errors["project"] = [_PROJECT_LEVEL_ONLY]
            return None
        wanted = _as_int(value)
        if wanted is None:
            problem = f"Incorrect type. Expected pk value, received {type(value).__name__}."
            errors["project"] = [problem]
            return None
        project = self._projects.get(wanted)
        if project is None:
            errors["project"] = [f'Invalid pk "{wanted}" - object does not exist.']
        return project


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # 200 clients connect at once; with the default backlog of 5 the kernel drops SYNs and
    # clients stall for a one-second retransmit.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], fake: FakeCekura) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall for seconds
        # on machines without working reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket, *, is_open: bool) -> None:
        with self.fake._lock:
            (self._open.add if is_open else self._open.discard)(connection)

    def close_connections(self) -> None:
        with self.fake._lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its own thread
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-response are part of the fault drills.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API and httpx's pool expect
    server: _Server

    def version_string(self) -> str:
        return "FakeCekura/1.0"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; Nagle plus delayed ACK would add 40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, is_open=True)

    def finish(self) -> None:
        self.server.track(self.connection, is_open=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: FakeCekura.requests is the log, and stderr noise hides test output."""

    def _serve(self) -> None:
        outcome = self.server.fake._process(self._read_call())
        if outcome is None:
            self.close_connection = True
            return
        status, headers, body = outcome
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:  # a 204 carries neither a body nor a Content-Length
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _read_call(self) -> _Call:
        split = urlsplit(self.path)
        methods: Mapping[str, RouteName] = {}
        object_id = None
        for pattern, table in _ROUTES:
            if match := pattern.fullmatch(split.path):
                methods, object_id = table, match.groupdict().get("id")
                break
        length = _as_int(self.headers.get("Content-Length", "0"))
        body = None
        if (
            length is not None
            and 0 <= length <= MAX_BODY_BYTES
            and "Transfer-Encoding" not in self.headers
        ):
            body = self.rfile.read(length)
        else:
            self.close_connection = True  # an unread body would corrupt the next request
        query = parse_qs(split.query, keep_blank_values=True)
        return _Call(
            method=self.command,
            path=split.path,
            query={name: values[-1] for name, values in query.items()},
            methods=methods,
            object_id=object_id,
            content_type=self.headers.get("Content-Type", ""),
            body=body,
            api_key=self.headers.get(API_KEY_HEADER),
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake Cekura API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--mode", choices=get_args(Mode), default="spec")
    parser.add_argument(
        "--seed-project",
        type=int,
        default=1,
        metavar="N",
        help="projects to create (ids 1..N); the bootstrap key belongs to project 1",
    )
    parser.add_argument("--organization", default="Acme")
    parser.add_argument("--rate-limit", type=float, default=None, metavar="RPS")
    parser.add_argument("--activation-failures", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)

    fake = FakeCekura(mode=args.mode, rate_limit=args.rate_limit, port=args.port)
    fake.activation_failures = args.activation_failures
    projects = [
        fake.create_project(f"Project {n}", args.organization)
        for n in range(1, max(1, args.seed_project) + 1)
    ]
    bootstrap = fake.issue_key(projects[0], "bootstrap")
    with fake:
        # KEY=value lines so a shell can `eval` them.
        print(f"CEKURA_BASE_URL={fake.url}")
        print(f"CEKURA_PROJECT_ID={projects[0]}")
        print(f"CEKURA_API_KEY={bootstrap.key}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
