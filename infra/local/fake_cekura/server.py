"""FakeCekura: the operations, the test controls, and the HTTP server that carries them."""

from __future__ import annotations

import argparse
import contextlib
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, get_args
from urllib.parse import parse_qs, urlsplit

from infra.local.fake_cekura.faults import Fault, FaultQueues, RateLimit, distort, fault_reply
from infra.local.fake_cekura.model import (
    API_KEY_ROUTES,
    SESSION_ROUTES,
    Caller,
    IssuedKey,
    Key,
    KeyKind,
    KeyRecord,
    Mode,
    Project,
    Registry,
    RouteName,
    Session,
    denial,
    sees,
)
from infra.local.fake_cekura.wire import (
    API_KEY_HEADER,
    FORBIDDEN,
    INVALID_KEY,
    INVALID_SESSION,
    MAX_BODY_BYTES,
    NOT_FOUND,
    NOT_INT,
    NOT_PROVIDED,
    PROJECT_LEVEL_ONLY,
    Call,
    Reply,
    SeenRequest,
    as_int,
    bearer_token,
    clean_name,
    detail,
    json_reply,
    key_json,
    not_allowed,
    parse_body,
    project_json,
    redact,
    render,
    resolve,
)


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
        self._limit = RateLimit()
        self.mode = mode
        self.rate_limit = rate_limit
        # Newly minted keys answer 401 on validate this many times, like a real propagation lag.
        self.activation_failures = 0
        self._registry = Registry()
        self._faults = FaultQueues()
        self._seen: list[SeenRequest] = []
        self._handlers: dict[RouteName, Callable[[Call, Caller], Reply]] = {
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
        """Which operations read an API key: see `API_KEY_ROUTES`. Sessions work in every mode."""
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in get_args(Mode):
            raise ValueError(f"mode must be one of {get_args(Mode)}, not {value!r}")
        with self._lock:
            self._mode = value

    @property
    def refusal_status(self) -> int:
        """What an API key sent to a session-only operation gets: 401, 403 or 405."""
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
        return self._limit.rate

    @rate_limit.setter
    def rate_limit(self, value: float | None) -> None:
        with self._lock:
            self._limit.rate = value

    # -- fixtures and inspection -----------------------------------------------------------

    def create_project(
        self, name: str = "Default Project", organization: str = "Default Organization"
    ) -> int:
        with self._lock:
            return self._registry.add_project(name, organization).id

    def issue_key(
        self,
        project_id: int | None = None,
        name: str = "dashboard key",
        *,
        organization: str | None = None,
        kind: KeyKind | None = None,
    ) -> IssuedKey:
        """A key made on the dashboard, of `project_id` or of `organization` when that is None.

        `kind` defaults to "project" with a project_id and "admin" without. An admin key spans
        the whole organization (project_id then only names it); a read-only key is scoped like
        any other, to its project or, without project_id, to its organization.
        """
        if kind is not None and kind not in get_args(KeyKind):
            raise ValueError(f"kind must be one of {get_args(KeyKind)}, not {kind!r}")
        with self._lock:
            org, project = self._registry.owner(project_id, organization, what="a key")
            if kind == "admin":
                project = None
            elif kind == "project" and project is None:
                raise ValueError("a project key needs project_id")
            key = self._registry.add_key(name, org, project, read_only=kind == "readonly")
            return IssuedKey(id=key.id, key=key.secret)

    def issue_session(
        self, project_id: int | None = None, *, organization: str | None = None
    ) -> str:
        """A dashboard session token for `Authorization: Bearer`, acting across the organization
        of `project_id` (or `organization`): what a signed-in user may do, in every mode."""
        with self._lock:
            org, _ = self._registry.owner(project_id, organization, what="a session")
            return self._registry.add_session(org).token

    def inject(self, route: RouteName, *faults: Fault) -> None:
        if route not in get_args(RouteName):
            raise ValueError(f"unknown route {route!r}; expected one of {get_args(RouteName)}")
        with self._lock:
            self._faults.add(route, faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        """Fault responses still queued, counting each repeat of `times`."""
        with self._lock:
            return self._faults.pending()

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
                    kind=key.kind,
                )
                for key in self._registry.keys.values()
                if project_id is None or (key.project and key.project.id == project_id)
            ]

    def live_keys(self, project_id: int | None = None) -> list[KeyRecord]:
        return [record for record in self.all_keys(project_id) if not record.deleted]

    def is_live(self, key: str) -> bool:
        with self._lock:
            return self._registry.live_key(key) is not None

    def key_id(self, key: str) -> int | None:
        with self._lock:
            found = self._registry.key_for(key)
            return found.id if found else None

    def minted_secrets(self) -> list[str]:
        with self._lock:
            return list(self._registry.minted)

    @property
    def requests(self) -> list[SeenRequest]:
        """Snapshot in arrival order; paths and queries have key-shaped values redacted."""
        with self._lock:
            return sorted(self._seen, key=lambda seen: seen.at)

    def reset_requests(self) -> None:
        with self._lock:
            self._seen.clear()

    # -- request pipeline (called from server threads) -------------------------------------

    def _process(self, call: Call) -> tuple[int, dict[str, str], bytes] | None:
        """Throttle, faults, then the operation; None means close the socket unanswered."""
        arrived = time.monotonic()
        with self._lock:
            found = self._registry.live_key(call.api_key) if call.api_key else None
            caller_id = found.id if found else None
            reply = self._limit.admit()
            fault = self._faults.take(call.route) if reply is None else None
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop:
            self._record(call, arrived, caller_id, 0, dropped=True)
            return None
        if reply is None and fault is not None and fault.status is not None:
            reply = fault_reply(fault.status)
        if reply is None:
            with self._lock:
                reply = self._dispatch(call)
        status, headers, body = render(distort(reply, fault))
        lost = fault is not None and fault.lost_response
        # Recorded before the response is written so a test that got an answer can assert on it.
        self._record(call, arrived, caller_id, status, dropped=lost)
        return None if lost else (status, headers, body)

    def _record(
        self, call: Call, arrived: float, caller_id: int | None, status: int, *, dropped: bool
    ) -> None:
        seen = SeenRequest(
            method=call.method,
            path=redact(call.path),
            query={redact(name): redact(value) for name, value in call.query.items()},
            route=call.route,
            status=status,
            caller_key_id=caller_id,
            at=arrived,
            dropped=dropped,
            credential=call.credential,
        )
        with self._lock:
            self._seen.append(seen)

    def _dispatch(self, call: Call) -> Reply:
        route = call.route
        if not call.methods:
            return detail(404, NOT_FOUND)
        if route is None:
            return not_allowed(call.method, call.methods)
        if call.body is None:
            return detail(413, "Request body too large or not length-delimited.")
        caller = self._authenticate(call, route)
        if isinstance(caller, Reply):
            return caller
        if (reason := denial(self._mode, caller, route)) is not None:
            return detail(403, reason)
        return self._handlers[route](call, caller)

    def _authenticate(self, call: Call, route: RouteName) -> Caller | Reply:
        # DRF tries the operation's schemes in the spec's order, supabase_session before
        # api_key: a bearer header decides alone, and a bad one fails the request.
        if call.bearer is not None and route in SESSION_ROUTES:
            session = self._registry.session_for(call.bearer)
            return session if session is not None else detail(401, INVALID_SESSION)
        if route not in API_KEY_ROUTES[self._mode]:
            return self._refuse_api_key(call)
        if call.api_key is None:
            return detail(401, NOT_PROVIDED)
        key = self._registry.live_key(call.api_key)
        return key if key is not None else detail(401, INVALID_KEY)

    def _refuse_api_key(self, call: Call) -> Reply:
        # A session-only operation never reads X-CEKURA-API-KEY: good and bad keys fare alike.
        if self._refusal_status == 405:
            takes_keys = API_KEY_ROUTES[self._mode]
            return not_allowed(call.method, [m for m, r in call.methods.items() if r in takes_keys])
        message = NOT_PROVIDED if self._refusal_status == 401 else FORBIDDEN
        return detail(self._refusal_status, message)

    # -- operations (run under the lock) ---------------------------------------------------

    def _create(self, call: Call, caller: Caller) -> Reply:
        data = parse_body(call)
        if isinstance(data, Reply):
            return data
        errors: dict[str, list[str]] = {}
        name = clean_name(data, errors, required=True)
        project = self._clean_project(data.get("project"), errors, caller)
        if errors or name is None:
            return json_reply(400, errors)
        org = project.org if project else caller.org
        # Another organization's project is a 403, not a 400 'Invalid pk': the project exists,
        # so the pk field accepts it, and ownership is a permission check. The spec answers an
        # ownership mismatch with 403 (validate), as the fake always did for project keys.
        if not sees(caller, org, project):
            return detail(403, FORBIDDEN)
        key = self._registry.add_key(name, org, project, validate_lag=self.activation_failures)
        return json_reply(201, key_json(key, reveal=True))

    def _list(self, call: Call, caller: Caller) -> Reply:
        visible = [
            key
            for key in self._registry.keys.values()
            if not key.deleted and sees(caller, key.org, key.project)
        ]
        return json_reply(200, [key_json(key, reveal=False) for key in visible])

    def _retrieve(self, call: Call, caller: Caller) -> Reply:
        key = self._scoped_key(call, caller)
        return key if isinstance(key, Reply) else json_reply(200, key_json(key, reveal=False))

    def _update(self, call: Call, caller: Caller) -> Reply:
        key = self._scoped_key(call, caller)
        if isinstance(key, Reply):
            return key
        data = parse_body(call)
        if isinstance(data, Reply):
            return data
        errors: dict[str, list[str]] = {}
        name = clean_name(data, errors, required=call.method == "PUT")
        moving = "project" in data
        project = self._clean_project(data["project"], errors, caller) if moving else None
        if errors:
            return json_reply(400, errors)
        if moving:
            if project is not None and not sees(caller, project.org, project):
                return detail(403, FORBIDDEN)
            key.project = project
        key.name = name or key.name
        return json_reply(200, key_json(key, reveal=False))

    def _delete(self, call: Call, caller: Caller) -> Reply:
        key = self._scoped_key(call, caller)
        if isinstance(key, Reply):
            return key
        key.deleted = True
        return Reply(204)

    def _validate(self, call: Call, caller: Caller) -> Reply:
        if isinstance(caller, Key) and caller.validate_lag > 0:
            caller.validate_lag -= 1
            return detail(401, INVALID_KEY)
        # Agents are not modelled: every agent_id is one the key does not own. An admin key
        # owns every project of its organization, as it may mint keys for each of them.
        for param, thing in (("project_id", "project"), ("agent_id", "agent")):
            if param not in call.query:
                continue
            wanted = as_int(call.query[param])
            if wanted is None:
                return json_reply(400, {param: [NOT_INT]})
            project = self._registry.projects.get(wanted) if thing == "project" else None
            if project is not None and sees(caller, project.org, project):
                return Reply(200)
            return detail(403, f"API key does not own this {thing}.")
        return json_reply(400, {"project_id": ["Either project_id or agent_id is required."]})

    def _list_projects(self, call: Call, caller: Caller) -> Reply:
        wanted: dict[str, int] = {}
        for param in ("organization_id", "project_id"):
            if param in call.query:
                value = as_int(call.query[param])
                if value is None:
                    return json_reply(400, {param: [NOT_INT]})
                wanted[param] = value
        visible = [
            project_json(project)
            for project in self._registry.projects.values()
            if sees(caller, project.org, project)
            and wanted.get("organization_id", project.org.id) == project.org.id
            and wanted.get("project_id", project.id) == project.id
        ]
        return json_reply(200, visible)

    # -- helpers (run under the lock) ------------------------------------------------------

    def _scoped_key(self, call: Call, caller: Caller) -> Key | Reply:
        """Out of scope looks exactly like missing, so ids of other tenants do not leak."""
        key = self._registry.keys.get(as_int(call.object_id) or 0)
        if key is None or key.deleted or not sees(caller, key.org, key.project):
            return detail(404, NOT_FOUND)
        return key

    def _clean_project(
        self, value: object, errors: dict[str, list[str]], caller: Caller
    ) -> Project | None:
        """The `project` pk; null (or absent) means organization-wide, which only a session
        may ask for (the create page: API keys can create project-level keys only)."""
        if value is None or value == "":
            if not isinstance(caller, Session):
                errors["project"] = [PROJECT_LEVEL_ONLY]
            return None
        wanted = as_int(value)
        if wanted is None:
            problem = f"Incorrect type. Expected pk value, received {type(value).__name__}."
            errors["project"] = [problem]
            return None
        project = self._registry.projects.get(wanted)
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

    def _read_call(self) -> Call:
        split = urlsplit(self.path)
        methods, object_id = resolve(split.path)
        length = as_int(self.headers.get("Content-Length", "0"))
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
        return Call(
            method=self.command,
            path=split.path,
            query={name: values[-1] for name, values in query.items()},
            methods=methods,
            object_id=object_id,
            content_type=self.headers.get("Content-Type", ""),
            body=body,
            api_key=self.headers.get(API_KEY_HEADER),
            bearer=bearer_token(self.headers.get("Authorization")),
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
    session = fake.issue_session(projects[0])
    with fake:
        # KEY=value lines so a shell can `eval` them.
        print(f"CEKURA_API_URL={fake.url}")  # the name the rotator and the CLI read
        print(f"CEKURA_PROJECT_ID={projects[0]}")
        print(f"CEKURA_API_KEY={bootstrap.key}")
        # For the operations spec mode keeps to sessions: Authorization: Bearer <token>.
        print(f"CEKURA_SESSION_TOKEN={session}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
