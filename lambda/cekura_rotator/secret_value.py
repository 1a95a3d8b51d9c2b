"""The secret's format: parse, validate and render. The only module that knows field names.

Two shapes are accepted. A JSON object with `api_key` (required), `project_id`, the fields the
rotator maintains (`key_id`, `key_name`, `created_at`) and any others, which are carried over
unchanged. Or a plain string, which is the key itself and stays a plain string.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from cekura_rotator.errors import SecretFormatError

API_KEY = "api_key"
PROJECT_ID = "project_id"
KEY_ID = "key_id"
KEY_NAME = "key_name"
CREATED_AT = "created_at"
ADMIN_SECRET_ARN = "admin_secret_arn"  # noqa: S105  (a field name)

_MAINTAINED = frozenset({API_KEY, PROJECT_ID, KEY_ID, KEY_NAME, CREATED_AT, ADMIN_SECRET_ARN})

# Secrets Manager's limit for SecretString.
MAX_SECRET_BYTES = 65_536
# Headroom for a minted key and its metadata, checked before minting so that a value too large
# to store is refused before anything exists at Cekura.
_MINT_HEADROOM_BYTES = 1_024
_MAX_KEY_CHARS = 512


@dataclass(frozen=True, slots=True)
class MintedKey:
    """What Cekura returned for a freshly created key."""

    id: int
    name: str
    project: int
    key: str = field(repr=False)
    created_at: str | None


@dataclass(frozen=True, slots=True)
class SecretValue:
    """One version's value, parsed. `repr` never shows the key."""

    api_key: str = field(repr=False)
    project_id: int | None = None
    key_id: int | None = None
    key_name: str | None = None
    created_at: str | None = None
    admin_secret_arn: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    plain: bool = False

    @classmethod
    def parse(cls, raw: str | bytes | None, *, default_project_id: int | None) -> SecretValue:
        """Parse a stored value; raise SecretFormatError saying what is wrong (never the value)."""
        if isinstance(raw, bytes):
            raise SecretFormatError("the version holds SecretBinary; a SecretString is required")
        if raw is None or not raw.strip():
            raise SecretFormatError("the version's SecretString is empty")
        if len(raw.encode("utf-8")) > MAX_SECRET_BYTES:
            raise SecretFormatError(f"the SecretString is larger than {MAX_SECRET_BYTES} bytes")
        document = _load_json(raw)
        if document is _NOT_JSON or not isinstance(document, dict | list):
            key = _check_key(raw.strip(), where="the plain-string secret")
            return cls(api_key=key, project_id=default_project_id, plain=True)
        if isinstance(document, list):
            raise SecretFormatError("the SecretString is a JSON array; a JSON object is required")
        return cls._from_object(document, default_project_id=default_project_id)

    @classmethod
    def _from_object(cls, doc: dict[str, Any], *, default_project_id: int | None) -> SecretValue:
        if API_KEY not in doc:
            raise SecretFormatError(f"the JSON secret has no {API_KEY!r} field")
        if not isinstance(doc[API_KEY], str):
            raise SecretFormatError(f"{API_KEY!r} must be a string")
        project_id = _optional_int(doc, PROJECT_ID)
        return cls(
            api_key=_check_key(doc[API_KEY], where=f"{API_KEY!r}"),
            project_id=project_id if project_id is not None else default_project_id,
            key_id=_optional_int(doc, KEY_ID),
            key_name=_optional_str(doc, KEY_NAME),
            created_at=_optional_str(doc, CREATED_AT),
            admin_secret_arn=_optional_str(doc, ADMIN_SECRET_ARN),
            extra={k: v for k, v in doc.items() if k not in _MAINTAINED},
        )

    @property
    def fingerprint(self) -> str:
        """The key as a person may see it."""
        return fingerprint(self.api_key)

    def require_project(self) -> int:
        """The project to mint for; raise when neither the secret nor the config names one."""
        if self.project_id is None:
            raise SecretFormatError(
                f"no project: set {PROJECT_ID!r} in the secret or CEKURA_PROJECT_ID on the function"
            )
        return self.project_id

    def check_room_for_rotation(self) -> None:
        """Raise if the rotated value could exceed Secrets Manager's size limit."""
        if len(self.render().encode("utf-8")) + _MINT_HEADROOM_BYTES > MAX_SECRET_BYTES:
            raise SecretFormatError(
                f"the secret is too close to the {MAX_SECRET_BYTES}-byte limit to hold a new key"
            )

    def rotated(self, minted: MintedKey) -> SecretValue:
        """The value of the next version: the new key, its metadata, every other field kept."""
        if self.plain:
            return replace(self, api_key=minted.key)
        return replace(
            self,
            api_key=minted.key,
            project_id=minted.project,
            key_id=minted.id,
            key_name=minted.name,
            created_at=minted.created_at,
        )

    def render(self) -> str:
        """The SecretString to store."""
        if self.plain:
            return self.api_key
        doc: dict[str, Any] = {API_KEY: self.api_key}
        maintained = {
            PROJECT_ID: self.project_id,
            KEY_ID: self.key_id,
            KEY_NAME: self.key_name,
            CREATED_AT: self.created_at,
            ADMIN_SECRET_ARN: self.admin_secret_arn,
        }
        doc.update({k: v for k, v in maintained.items() if v is not None})
        doc.update(self.extra)
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


_NOT_JSON = object()


def _load_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        # A value that opens like JSON but does not parse is a broken JSON secret, not a key.
        if raw.lstrip()[:1] in {"{", "["}:
            raise SecretFormatError("the SecretString looks like JSON but does not parse") from None
        return _NOT_JSON


def _check_key(key: str, *, where: str) -> str:
    if not key:
        raise SecretFormatError(f"{where} is empty")
    if len(key) > _MAX_KEY_CHARS:
        raise SecretFormatError(f"{where} is longer than {_MAX_KEY_CHARS} characters")
    # The key travels in an HTTP header: only visible ASCII survives that unchanged.
    if not all("!" <= c <= "~" for c in key):
        raise SecretFormatError(f"{where} must be visible ASCII with no spaces")
    return key


def _optional_int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SecretFormatError(f"{name!r} must be a positive integer")
    return value


def _optional_str(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SecretFormatError(f"{name!r} must be a string")
    return value


def fingerprint(key: str | None) -> str:
    """How a key is shown to a person: a short hash that tells keys apart and reveals nothing."""
    if not key:
        return "(none)"
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
