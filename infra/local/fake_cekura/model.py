"""Cekura's tenancy and permission rules, free of HTTP.

Organizations own projects. API keys act within a scope: one project, or their whole
organization (admin keys). Dashboard sessions act for a user across their organization. Which
operations read an API key at all depends on the permission world (`Mode`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Final, Literal, get_args

Mode = Literal["spec", "permissive", "nocreate"]
RouteName = Literal["create", "list", "retrieve", "update", "delete", "validate", "projects"]
KeyKind = Literal["project", "admin", "readonly"]

# Recognisable prefixes let tests grep logs for leaked secrets and let the fake redact them.
KEY_PREFIX: Final = "ck_fake_"
SESSION_PREFIX: Final = "sb_fake_"

NO_CREATE: Final = "API key authentication cannot create API keys; use a dashboard session."
READ_ONLY: Final = "Read-only API keys cannot manage API keys."

_ALL_ROUTES: Final[frozenset[RouteName]] = frozenset(get_args(RouteName))
_KEY_ROUTES: Final[frozenset[RouteName]] = frozenset(
    {"create", "list", "retrieve", "update", "delete"}
)

# Per world, the operations that read X-CEKURA-API-KEY at all. The others take only a session,
# so a key sent to them is never looked at (FakeCekura.refusal_status answers it).
API_KEY_ROUTES: Final[Mapping[Mode, frozenset[RouteName]]] = {
    # The spec since 2026-08-04: of the key operations, only create lists `api_key`.
    "spec": frozenset({"create", "validate", "projects"}),
    # The spec from 2025-07 to 2026-08-04: every operation took a key.
    "permissive": _ALL_ROUTES,
    # The SDK's reading: create still reads the key, but only to refuse it (see `denial`).
    "nocreate": frozenset({"create", "validate", "projects"}),
}
# validate is the OTel auth service asking whether an *API key* owns a project: its only
# security is `api_key`, so a bearer token sent there is ignored.
SESSION_ROUTES: Final[frozenset[RouteName]] = _ALL_ROUTES - {"validate"}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    kind: KeyKind = "project"


@dataclass
class Org:
    id: int
    name: str
    created_at: str


@dataclass
class Project:
    id: int
    name: str
    org: Org
    created_at: str


@dataclass
class Key:
    id: int
    name: str
    secret: str = field(repr=False)
    org: Org
    project: Project | None  # None: organization-wide
    created_at: str
    read_only: bool = False
    deleted: bool = False
    validate_lag: int = 0

    @property
    def kind(self) -> KeyKind:
        # Derived, not stored: moving a key into or out of a project changes what it is.
        if self.read_only:
            return "readonly"
        return "admin" if self.project is None else "project"


@dataclass(frozen=True)
class Session:
    """A dashboard user's session: everything that user may do, across their organization."""

    token: str = field(repr=False)
    org: Org
    project: None = None  # never narrower than the organization; lets `sees` treat it as a key


Caller = Key | Session


def sees(caller: Caller, org: Org, project: Project | None) -> bool:
    """An org-wide caller reaches its whole organization; a project-level key only its project."""
    return caller.org is org and (caller.project is None or caller.project is project)


def denial(mode: Mode, caller: Caller, route: RouteName) -> str | None:
    """Why an authenticated caller may never run `route`, whatever the object; None if it may."""
    if isinstance(caller, Session):
        return None
    if route == "create" and mode == "nocreate":
        return NO_CREATE
    # Keys are credentials, not data: a read-only key may not even list or retrieve them.
    if caller.read_only and route in _KEY_ROUTES:
        return READ_ONLY
    return None


class Registry:
    """Every organization, project, key and session. Not thread-safe: callers hold a lock."""

    def __init__(self) -> None:
        self.projects: dict[int, Project] = {}
        self.keys: dict[int, Key] = {}
        self.minted: list[str] = []
        self._orgs: dict[str, Org] = {}
        self._by_secret: dict[str, Key] = {}
        self._sessions: dict[str, Session] = {}
        self._ids = {"org": count(1), "project": count(1), "key": count(1)}

    def org(self, name: str) -> Org:
        if name not in self._orgs:
            self._orgs[name] = Org(next(self._ids["org"]), name, now())
        return self._orgs[name]

    def add_project(self, name: str, organization: str) -> Project:
        project = Project(next(self._ids["project"]), name, self.org(organization), now())
        self.projects[project.id] = project
        return project

    def owner(
        self, project_id: int | None, organization: str | None, *, what: str
    ) -> tuple[Org, Project | None]:
        """The organization and project named by a fixture call, checked for consistency."""
        if project_id is None:
            if organization is None:
                raise ValueError(f"{what} without project_id needs organization=")
            return self.org(organization), None
        project = self.projects.get(project_id)
        if project is None:
            raise ValueError(f"unknown project {project_id}")
        if organization not in (None, project.org.name):
            raise ValueError(f"project {project_id} is not in {organization!r}")
        return project.org, project

    def add_key(
        self,
        name: str,
        org: Org,
        project: Project | None,
        *,
        read_only: bool = False,
        validate_lag: int = 0,
    ) -> Key:
        secret = KEY_PREFIX + secrets.token_urlsafe(36)  # 48 url-safe characters
        key = Key(
            next(self._ids["key"]),
            name,
            secret,
            org,
            project,
            now(),
            read_only=read_only,
            validate_lag=validate_lag,
        )
        self.keys[key.id] = key
        self._by_secret[secret] = key
        self.minted.append(secret)
        return key

    def add_session(self, org: Org) -> Session:
        session = Session(SESSION_PREFIX + secrets.token_urlsafe(36), org)
        self._sessions[session.token] = session
        return session

    def key_for(self, secret: str) -> Key | None:
        """The key with this secret, deleted or not."""
        return self._by_secret.get(secret)

    def live_key(self, secret: str) -> Key | None:
        key = self._by_secret.get(secret)
        return key if key is not None and not key.deleted else None

    def session_for(self, token: str) -> Session | None:
        return self._sessions.get(token)
