"""What crosses the wire: routing, request bodies, JSON renderings and DRF-style error bodies."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qs

from infra.local.fake_cekura.model import KEY_PREFIX, SESSION_PREFIX, Key, Project, RouteName

CredentialKind = Literal["api_key", "bearer"]

API_KEY_HEADER: Final = "X-CEKURA-API-KEY"
MAX_BODY_BYTES: Final = 1 << 20

NOT_PROVIDED: Final = "Authentication credentials were not provided."
INVALID_KEY: Final = "Invalid API key."
INVALID_SESSION: Final = "Invalid or expired session token."
FORBIDDEN: Final = "You do not have permission to perform this action."
NOT_FOUND: Final = "Not found."
NOT_INT: Final = "A valid integer is required."
PROJECT_LEVEL_ONLY: Final = (
    "Only project-level API keys can be created with API key authentication."
)
_REQUIRED: Final = "This field is required."

_SECRET_PATTERN = re.compile(
    f"(?:{re.escape(KEY_PREFIX)}|{re.escape(SESSION_PREFIX)})" + r"[A-Za-z0-9_-]+"
)
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


def resolve(path: str) -> tuple[Mapping[str, RouteName], str | None]:
    """The methods a path takes (empty: unknown path) and the object id it names."""
    for pattern, methods in _ROUTES:
        if match := pattern.fullmatch(path):
            return methods, match.groupdict().get("id")
    return {}, None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer` header, "" when malformed, None when absent.

    Other schemes are not a bearer attempt at all, as with DRF's token authenticators.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return "" if " " in token else token


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    methods: Mapping[str, RouteName]  # empty: unknown path
    object_id: str | None
    content_type: str
    body: bytes | None  # None: too large or not length-delimited, left unread
    api_key: str | None = field(repr=False)
    bearer: str | None = field(repr=False)

    @property
    def route(self) -> RouteName | None:
        return self.methods.get(self.method)

    @property
    def credential(self) -> CredentialKind | None:
        """The credential presented, in the order the server reads them: a session first."""
        if self.bearer is not None:
            return "bearer"
        return "api_key" if self.api_key is not None else None


@dataclass(frozen=True)
class SeenRequest:
    """One request as the server saw it. `status` is 0 when the connection was dropped unanswered;
    `dropped` with a real status means the operation ran but its response was never sent.
    `credential` names the kind presented (never its value): "bearer" wins when both are."""

    method: str
    path: str
    query: dict[str, str]
    route: RouteName | None
    status: int
    caller_key_id: int | None
    at: float
    dropped: bool = False
    credential: CredentialKind | None = None


@dataclass
class Reply:
    status: int
    payload: object = None  # JSON document; None means `raw` is the body
    raw: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: object, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, payload=payload, content_type="application/json", headers=headers or {})


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply(status, {"detail": message}, headers)


def not_allowed(method: str, allowed: Iterable[str]) -> Reply:
    return detail(405, f'Method "{method}" not allowed.', {"Allow": ", ".join(sorted(allowed))})


def encode(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def render(reply: Reply) -> tuple[int, dict[str, str], bytes]:
    headers = dict(reply.headers)
    if reply.content_type:
        headers["Content-Type"] = reply.content_type
    body = reply.raw if reply.payload is None else encode(reply.payload)
    return reply.status, headers, body


def as_int(value: object) -> int | None:
    """Integer the way DRF reads a pk or query parameter: ints and digit strings, never bools."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_PATTERN.fullmatch(value):
        return int(value)
    return None


def redact(text: str) -> str:
    return _SECRET_PATTERN.sub("<redacted>", text)


def parse_body(call: Call) -> dict[str, object] | Reply:  # noqa: PLR0911 (one per media type)
    body = call.body or b""
    if not body:
        return {}
    media = call.content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        try:
            data = json.loads(body)
        except ValueError as exc:
            return detail(400, f"JSON parse error - {exc}")
        if not isinstance(data, dict):
            problem = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
            return json_reply(400, {"non_field_errors": [problem]})
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
    return detail(415, f'Unsupported media type "{call.content_type}" in request.')


def clean_name(
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


def key_json(key: Key, *, reveal: bool) -> dict[str, object]:
    """A `UserAPIKey`; `key` only in the create response, as Cekura shows a secret once."""
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


def project_json(project: Project) -> dict[str, object]:
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
