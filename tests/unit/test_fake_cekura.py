"""The fake Cekura server, driven over real HTTP the way the rotator will drive it."""

from __future__ import annotations

import itertools
import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import httpx
import pytest

from infra.local import fake_cekura
from infra.local.fake_cekura import (
    KEY_PREFIX,
    SESSION_PREFIX,
    FakeCekura,
    Fault,
    IssuedKey,
    KeyKind,
    Mode,
)

KEYS = "/user/api/v1/user-api-key/"
VALIDATE = "/app/otel/validate/"
PROJECTS = "/user/v1/projects/"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def auth(key: str) -> dict[str, str]:
    return {"X-CEKURA-API-KEY": key}


@dataclass(frozen=True)
class World:
    """Acme owns projects A and B, Globex owns C; one key per project plus an Acme org key."""

    a: int
    b: int
    c: int
    key_a: IssuedKey
    key_b: IssuedKey
    key_c: IssuedKey
    org_key: IssuedKey


@pytest.fixture
def fake() -> Iterator[FakeCekura]:
    with FakeCekura() as server:
        yield server


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    """Built once: httpx makes one per client even for plain http, at ~35 ms each."""
    return ssl.create_default_context()


@pytest.fixture
def client(fake: FakeCekura, tls: ssl.SSLContext) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5.0, verify=tls) as http:
        yield http


@pytest.fixture
def world(fake: FakeCekura) -> World:
    a = fake.create_project("Voice QA", organization="Acme")
    b = fake.create_project("Chat QA", organization="Acme")
    c = fake.create_project("Other", organization="Globex")
    return World(
        a=a,
        b=b,
        c=c,
        key_a=fake.issue_key(a, name="bootstrap a"),
        key_b=fake.issue_key(b, name="bootstrap b"),
        key_c=fake.issue_key(c, name="bootstrap c"),
        org_key=fake.issue_key(None, name="org", organization="Acme"),
    )


def mint(client: httpx.Client, key: str, project: object, name: str = "rotated") -> httpx.Response:
    return client.post(KEYS, headers=auth(key), json={"name": name, "project": project})


# -- create ---------------------------------------------------------------------------------


def test_create_returns_the_documented_shape_with_a_fresh_secret(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a project-level key of project A
    # When it mints a key for its own project
    response = mint(client, world.key_a.key, world.a, name="rotation 1")

    # Then the key comes back once, with every UserAPIKey field
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == [
        "id",
        "name",
        "organization_name",
        "project",
        "project_name",
        "key",
        "created_at",
    ]
    assert body["id"] > world.org_key.id
    assert (body["name"], body["organization_name"]) == ("rotation 1", "Acme")
    assert (body["project"], body["project_name"]) == (world.a, "Voice QA")
    assert ISO_UTC.fullmatch(body["created_at"])
    assert re.fullmatch(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{48}", body["key"])
    assert fake.is_live(body["key"])
    assert fake.key_id(body["key"]) == body["id"]
    assert body["key"] in fake.minted_secrets()
    # And the next one is a different secret with a larger id
    again = mint(client, world.key_a.key, world.a).json()
    assert again["id"] > body["id"]
    assert again["key"] != body["key"]


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_create_accepts_form_bodies(client: httpx.Client, world: World, encoding: str) -> None:
    # Given the create body sent as a form instead of JSON
    fields = {"name": "from a form", "project": str(world.a)}
    headers = auth(world.key_a.key)

    # When it is posted
    if encoding == "form":
        response = client.post(KEYS, headers=headers, data=fields)
    else:
        multipart = {name: (None, value) for name, value in fields.items()}
        response = client.post(KEYS, headers=headers, files=multipart)

    # Then it is read like JSON
    assert response.status_code == 201
    assert (response.json()["name"], response.json()["project"]) == ("from a form", world.a)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"project": 1}, {"name": ["This field is required."]}),
        ({"name": "   ", "project": 1}, {"name": ["This field may not be blank."]}),
        ({"name": None, "project": 1}, {"name": ["This field may not be null."]}),
        (
            {"name": "x" * 256, "project": 1},
            {"name": ["Ensure this field has no more than 255 characters."]},
        ),
        (
            {"name": "k"},
            {
                "project": [
                    "Only project-level API keys can be created with API key authentication."
                ]
            },
        ),
        (
            {"name": "k", "project": None},
            {
                "project": [
                    "Only project-level API keys can be created with API key authentication."
                ]
            },
        ),
        (
            {"name": "k", "project": "one"},
            {"project": ["Incorrect type. Expected pk value, received str."]},
        ),
        ({"name": "k", "project": 999}, {"project": ['Invalid pk "999" - object does not exist.']}),
        (
            {},
            {
                "name": ["This field is required."],
                "project": [
                    "Only project-level API keys can be created with API key authentication."
                ],
            },
        ),
    ],
)
def test_create_rejects_invalid_fields(
    fake: FakeCekura, client: httpx.Client, world: World, body: object, errors: object
) -> None:
    # Given a valid caller and a body that breaks a field rule
    before = len(fake.live_keys())

    # When it tries to mint
    response = client.post(KEYS, headers=auth(world.key_a.key), json=body)

    # Then DRF-style field errors come back and nothing is minted
    assert response.status_code == 400
    assert response.json() == errors
    assert len(fake.live_keys()) == before


def test_create_rejects_unparseable_and_unsupported_bodies(
    client: httpx.Client, world: World
) -> None:
    # Given a valid caller
    headers = auth(world.key_a.key)

    # When the body is broken JSON, a JSON list, or plain text
    broken = client.post(
        KEYS, headers={**headers, "Content-Type": "application/json"}, content=b"{"
    )
    listed = client.post(KEYS, headers=headers, json=[1])
    text = client.post(KEYS, headers={**headers, "Content-Type": "text/plain"}, content=b"hi")

    # Then each is refused the way Django REST framework refuses it
    assert broken.status_code == 400
    assert broken.json()["detail"].startswith("JSON parse error - ")
    assert listed.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }
    assert (text.status_code, text.json()) == (
        415,
        {"detail": 'Unsupported media type "text/plain" in request.'},
    )


def test_a_project_key_cannot_mint_outside_its_project(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given keys of project A (Acme) and project C (Globex)
    before = len(fake.live_keys())

    # When each asks for a key in a project it does not belong to
    sibling = mint(client, world.key_a.key, world.b)
    foreign = mint(client, world.key_c.key, world.a)

    # Then both are forbidden and nothing is minted
    assert (sibling.status_code, foreign.status_code) == (403, 403)
    assert sibling.json() == {"detail": "You do not have permission to perform this action."}
    assert len(fake.live_keys()) == before


def test_an_org_key_mints_for_any_project_of_its_org_only(
    client: httpx.Client, world: World
) -> None:
    # Given an org-level Acme key
    # When it mints for both Acme projects and for Globex's
    statuses = [mint(client, world.org_key.key, p).status_code for p in (world.a, world.b, world.c)]

    # Then Acme's succeed and Globex's is forbidden
    assert statuses == [201, 201, 403]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Authentication credentials were not provided."),
        (auth(KEY_PREFIX + "not-a-real-key"), "Invalid API key."),
    ],
)
def test_create_needs_a_known_key(
    client: httpx.Client, world: World, headers: dict[str, str], detail: str
) -> None:
    # Given no key, or a key the server never issued
    # When it tries to mint
    response = client.post(KEYS, headers=headers, json={"name": "k", "project": world.a})

    # Then it is unauthenticated
    assert (response.status_code, response.json()) == (401, {"detail": detail})


# -- validate and projects ------------------------------------------------------------------


NOT_OWNED = {"detail": "API key does not own this project."}


@pytest.mark.parametrize(
    ("caller", "query", "expected"),
    [
        ("key_a", {"project_id": "A"}, (200, None)),
        ("org_key", {"project_id": "B"}, (200, None)),
        ("key_a", {"project_id": "B"}, (403, NOT_OWNED)),
        ("key_c", {"project_id": "A"}, (403, NOT_OWNED)),
        ("key_a", {"project_id": "999"}, (403, NOT_OWNED)),
        ("key_a", {"agent_id": "5"}, (403, {"detail": "API key does not own this agent."})),
        ("key_a", {}, (400, {"project_id": ["Either project_id or agent_id is required."]})),
        ("key_a", {"project_id": "x"}, (400, {"project_id": ["A valid integer is required."]})),
        ("unknown", {"project_id": "A"}, (401, {"detail": "Invalid API key."})),
        (
            None,
            {"project_id": "A"},
            (401, {"detail": "Authentication credentials were not provided."}),
        ),
    ],
)
def test_validate_answers_by_ownership(
    client: httpx.Client,
    world: World,
    caller: str | None,
    query: dict[str, str],
    expected: tuple[int, object],
) -> None:
    # Given a caller (or none) and a project named by letter
    keys = {"key_a": world.key_a, "key_c": world.key_c, "org_key": world.org_key}
    headers = {} if caller is None else auth(keys[caller].key if caller in keys else "bogus")
    ids = {"A": str(world.a), "B": str(world.b)}
    params = {name: ids.get(value, value) for name, value in query.items()}

    # When it asks whether its key owns the project
    response = client.get(VALIDATE, headers=headers, params=params)

    # Then the answer follows ownership, with an empty 200
    status, body = expected
    assert response.status_code == status
    if body is None:
        assert response.content == b""
    else:
        assert response.json() == body


def test_projects_lists_what_the_key_can_see(client: httpx.Client, world: World) -> None:
    # Given a project key of A and the Acme org key
    # When each lists projects
    own = client.get(PROJECTS, headers=auth(world.key_a.key)).json()
    org = client.get(PROJECTS, headers=auth(world.org_key.key)).json()
    filtered = client.get(
        PROJECTS, headers=auth(world.org_key.key), params={"project_id": world.b}
    ).json()

    # Then the project key sees its project, the org key all of Acme's, never Globex's
    assert [p["id"] for p in own] == [world.a]
    assert [p["id"] for p in org] == [world.a, world.b]
    assert [p["id"] for p in filtered] == [world.b]
    project = own[0]
    assert (project["name"], project["members"], project["is_deleted"]) == ("Voice QA", [], False)
    assert (project["organization"]["name"], project["organization"]["members"]) == ("Acme", [])
    assert ISO_UTC.fullmatch(project["created_at"])
    assert ISO_UTC.fullmatch(project["updated_at"])


# -- key management in the spec and permissive modes ------------------------------------------


@pytest.mark.parametrize(
    ("refusal", "detail"),
    [
        (403, "You do not have permission to perform this action."),
        (401, "Authentication credentials were not provided."),
        (405, None),
    ],
)
def test_spec_mode_refuses_api_keys_outside_create(
    fake: FakeCekura, client: httpx.Client, world: World, refusal: int, detail: str | None
) -> None:
    # Given the current spec, where only create accepts an API key
    fake.refusal_status = refusal
    own = mint(client, world.key_a.key, world.a).json()
    headers = auth(world.key_a.key)
    detail_path = f"{KEYS}{own['id']}/"

    # When the key tries to list, retrieve, update and delete
    responses = [
        client.get(KEYS, headers=headers),
        client.get(detail_path, headers=headers),
        client.patch(detail_path, headers=headers, json={"name": "renamed"}),
        client.put(detail_path, headers=headers, json={"name": "renamed"}),
        client.delete(detail_path, headers=headers),
    ]

    # Then each is refused with the configured status and the key is untouched
    for response in responses:
        method = response.request.method
        assert response.status_code == refusal
        expected = detail or f'Method "{method}" not allowed.'
        assert response.json() == {"detail": expected}
    assert fake.is_live(own["key"])
    assert [r.name for r in fake.live_keys(world.a) if r.id == own["id"]] == ["rotated"]


def test_permissive_mode_scopes_listing_and_never_shows_secrets(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given the older spec and a freshly minted key in project A
    fake.mode = "permissive"
    minted = mint(client, world.key_a.key, world.a).json()

    # When project A's key, and the Acme org key, list and retrieve
    by_project = client.get(KEYS, headers=auth(world.key_a.key)).json()
    by_org = client.get(KEYS, headers=auth(world.org_key.key)).json()
    own = client.get(f"{KEYS}{minted['id']}/", headers=auth(world.key_a.key))
    other = client.get(f"{KEYS}{world.key_b.id}/", headers=auth(world.key_a.key))
    foreign = client.get(f"{KEYS}{minted['id']}/", headers=auth(world.key_c.key))
    missing = client.get(f"{KEYS}99999/", headers=auth(world.key_a.key))

    # Then each sees only its scope, and no listing ever carries `key`
    assert [k["id"] for k in by_project] == [world.key_a.id, minted["id"]]
    assert [k["id"] for k in by_org] == [
        world.key_a.id,
        world.key_b.id,
        world.org_key.id,
        minted["id"],
    ]
    assert all("key" not in k for k in by_project + by_org)
    assert own.status_code == 200
    assert own.json() == {k: v for k, v in minted.items() if k != "key"}
    for response in (other, foreign, missing):
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."})


def test_permissive_mode_updates_names(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given the older spec and a minted key
    fake.mode = "permissive"
    minted = mint(client, world.key_a.key, world.a).json()
    path = f"{KEYS}{minted['id']}/"
    headers = auth(world.key_a.key)

    # When it is renamed by PATCH, then PUT without a name, then moved to project B
    patched = client.patch(path, headers=headers, json={"name": "renamed"})
    put = client.put(path, headers=headers, json={})
    moved = client.patch(path, headers=headers, json={"project": world.b})

    # Then only the valid rename applies, and the secret is not echoed
    assert patched.status_code == 200
    assert patched.json()["name"] == "renamed"
    assert "key" not in patched.json()
    assert (put.status_code, put.json()) == (400, {"name": ["This field is required."]})
    assert moved.status_code == 403
    assert [r.project for r in fake.live_keys() if r.id == minted["id"]] == [world.a]


def test_a_deleted_key_stops_authenticating(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given the older spec and a new key minted by the bootstrap key
    fake.mode = "permissive"
    minted = mint(client, world.key_a.key, world.a).json()
    path = f"{KEYS}{minted['id']}/"

    # When the new key deletes the bootstrap key, and the bootstrap key is then used
    deleted = client.delete(f"{KEYS}{world.key_a.id}/", headers=auth(minted["key"]))
    after = client.get(VALIDATE, headers=auth(world.key_a.key), params={"project_id": world.a})

    # Then the delete is an empty 204 and the old key is dead everywhere
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (after.status_code, after.json()) == (401, {"detail": "Invalid API key."})
    assert not fake.is_live(world.key_a.key)
    assert fake.key_id(world.key_a.key) == world.key_a.id
    assert [r.id for r in fake.live_keys(world.a)] == [minted["id"]]
    assert [r.deleted for r in fake.all_keys(world.a)] == [True, False]
    assert client.delete(f"{KEYS}{world.key_a.id}/", headers=auth(minted["key"])).status_code == 404
    assert client.get(path, headers=auth(minted["key"])).status_code == 200


def test_unknown_paths_and_methods(client: httpx.Client, world: World) -> None:
    # Given a valid key
    headers = auth(world.key_a.key)

    # When it calls a path that does not exist and a method a path does not take
    missing = client.get("/user/api/v1/nope/", headers=headers)
    no_slash = client.post(KEYS.rstrip("/"), headers=headers, json={})
    wrong = client.delete(KEYS, headers=headers)

    # Then Django REST framework's 404 and 405 come back
    for response in (missing, no_slash):
        assert (response.status_code, response.json()) == (404, {"detail": "Not found."})
    assert (wrong.status_code, wrong.json()) == (405, {"detail": 'Method "DELETE" not allowed.'})
    assert wrong.headers["allow"] == "GET, POST"


# -- key kinds, dashboard sessions and the nocreate world -------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


FORBIDDEN = {"detail": "You do not have permission to perform this action."}
READ_ONLY = {"detail": "Read-only API keys cannot manage API keys."}
NO_CREATE = {"detail": "API key authentication cannot create API keys; use a dashboard session."}
BAD_SESSION = {"detail": "Invalid or expired session token."}
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
PROJECT_LEVEL_ONLY = {
    "project": ["Only project-level API keys can be created with API key authentication."]
}
OK, MADE, GONE = (200, None), (201, None), (204, None)
REFUSED = (403, FORBIDDEN)  # the operation takes only a session in this world


@pytest.mark.parametrize(
    ("mode", "kind", "expected"),
    [
        ("spec", "project", (MADE, REFUSED, REFUSED, OK)),
        ("spec", "admin", (MADE, REFUSED, REFUSED, OK)),
        ("spec", "readonly", ((403, READ_ONLY), REFUSED, REFUSED, OK)),
        ("permissive", "project", (MADE, OK, GONE, OK)),
        ("permissive", "admin", (MADE, OK, GONE, OK)),
        ("permissive", "readonly", ((403, READ_ONLY), (403, READ_ONLY), (403, READ_ONLY), OK)),
        ("nocreate", "project", ((403, NO_CREATE), REFUSED, REFUSED, OK)),
        ("nocreate", "admin", ((403, NO_CREATE), REFUSED, REFUSED, OK)),
        ("nocreate", "readonly", ((403, NO_CREATE), REFUSED, REFUSED, OK)),
    ],
)
def test_each_key_kind_in_each_mode(
    fake: FakeCekura,
    client: httpx.Client,
    world: World,
    mode: Mode,
    kind: KeyKind,
    expected: tuple[tuple[int, object], ...],
) -> None:
    # Given a key of the kind for project A (an admin key spans Acme) and a key to delete
    fake.mode = mode
    key = fake.issue_key(world.a, name=kind, kind=kind)
    victim = fake.issue_key(world.a, name="victim")
    before = {r.id for r in fake.live_keys()}

    # When it creates, lists, deletes and validates within project A
    responses = [
        mint(client, key.key, world.a),
        client.get(KEYS, headers=auth(key.key)),
        client.delete(f"{KEYS}{victim.id}/", headers=auth(key.key)),
        client.get(VALIDATE, headers=auth(key.key), params={"project_id": world.a}),
    ]

    # Then each is answered as the world and the kind allow, with a detail when refused
    answers = [(r.status_code, r.json() if r.status_code >= 400 else None) for r in responses]
    assert answers == list(expected)
    # And only an allowed create mints, only an allowed delete removes
    created, _, deleted, _ = responses
    after = {r.id for r in fake.live_keys()}
    minted = {created.json()["id"]} if created.status_code == 201 else set()
    removed = {victim.id} if deleted.status_code == 204 else set()
    assert after == (before | minted) - removed


def test_key_kinds_are_recorded_and_admin_keys_span_their_organization(
    fake: FakeCekura, world: World
) -> None:
    # Given keys issued with each kind, and without one
    admin = fake.issue_key(world.b, name="admin", kind="admin")
    readonly = fake.issue_key(world.a, name="readonly", kind="readonly")
    org_readonly = fake.issue_key(name="org readonly", organization="Acme", kind="readonly")

    # When the records are inspected
    records = {r.id: r for r in fake.all_keys()}

    # Then the kind follows the call, an admin key has no project, and the default is unchanged
    assert [(records[k.id].kind, records[k.id].project) for k in (world.key_a, world.org_key)] == [
        ("project", world.a),
        ("admin", None),
    ]
    assert (records[admin.id].kind, records[admin.id].project) == ("admin", None)
    assert records[admin.id].organization == "Acme"
    assert (records[readonly.id].kind, records[readonly.id].project) == ("readonly", world.a)
    assert (records[org_readonly.id].kind, records[org_readonly.id].project) == ("readonly", None)


def test_an_admin_key_mints_project_keys_across_its_organization_only(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given an Acme admin key
    admin = fake.issue_key(organization="Acme", kind="admin")
    before = len(fake.live_keys())

    # When it mints for project B, for Globex's project C, and with no project
    sibling = mint(client, admin.key, world.b)
    foreign = mint(client, admin.key, world.c)
    orgwide = mint(client, admin.key, None)

    # Then B gets a project key in the UserAPIKey shape; C is forbidden, no project is invalid
    assert sibling.status_code == 201
    body = sibling.json()
    assert (body["project"], body["project_name"], body["organization_name"]) == (
        world.b,
        "Chat QA",
        "Acme",
    )
    assert [r.kind for r in fake.live_keys(world.b) if r.id == body["id"]] == ["project"]
    assert (foreign.status_code, foreign.json()) == (403, FORBIDDEN)
    assert (orgwide.status_code, orgwide.json()) == (400, PROJECT_LEVEL_ONLY)
    assert len(fake.live_keys()) == before + 1


@pytest.mark.parametrize(
    ("caller", "project", "expected"),
    [
        ("admin", "A", 200),
        ("admin", "B", 200),
        ("admin", "C", 403),
        ("readonly", "A", 200),
        ("readonly", "B", 403),
        ("org readonly", "B", 200),
        ("org readonly", "C", 403),
    ],
)
def test_validate_with_admin_and_read_only_keys(
    fake: FakeCekura,
    client: httpx.Client,
    world: World,
    caller: str,
    project: str,
    expected: int,
) -> None:
    # Given an Acme admin key, a read-only key of A and an Acme-wide read-only key
    keys = {
        "admin": fake.issue_key(organization="Acme", kind="admin"),
        "readonly": fake.issue_key(world.a, kind="readonly"),
        "org readonly": fake.issue_key(organization="Acme", kind="readonly"),
    }
    ids = {"A": world.a, "B": world.b, "C": world.c}

    # When the caller validates against the project
    response = client.get(
        VALIDATE, headers=auth(keys[caller].key), params={"project_id": ids[project]}
    )

    # Then the answer follows the key's scope
    assert response.status_code == expected
    if expected == 403:
        assert response.json() == NOT_OWNED


@pytest.mark.parametrize("mode", get_args(Mode))
def test_a_session_manages_every_key_of_its_organization_in_every_mode(
    fake: FakeCekura, client: httpx.Client, world: World, mode: Mode
) -> None:
    # Given an Acme dashboard session, in each permission world
    fake.mode = mode
    session = bearer(fake.issue_session(organization="Acme"))

    # When it mints for project B and organization-wide, lists, and works on single keys
    made = client.post(KEYS, headers=session, json={"name": "by hand", "project": world.b})
    orgwide = client.post(KEYS, headers=session, json={"name": "org-wide"})
    foreign = client.post(KEYS, headers=session, json={"name": "x", "project": world.c})
    listed = client.get(KEYS, headers=session)
    retrieved = client.get(f"{KEYS}{world.key_b.id}/", headers=session)
    moved = client.patch(f"{KEYS}{world.key_b.id}/", headers=session, json={"project": world.a})
    deleted = client.delete(f"{KEYS}{world.key_a.id}/", headers=session)
    other_org = client.get(f"{KEYS}{world.key_c.id}/", headers=session)
    projects = client.get(PROJECTS, headers=session)

    # Then everything within Acme works, in every mode, and Globex stays out of reach
    assert (made.status_code, made.json()["project"]) == (201, world.b)
    assert made.json()["key"].startswith(KEY_PREFIX)
    assert (orgwide.status_code, orgwide.json()["project"]) == (201, None)
    assert [r.kind for r in fake.live_keys() if r.id == orgwide.json()["id"]] == ["admin"]
    assert (foreign.status_code, foreign.json()) == (403, FORBIDDEN)
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()] == [
        world.key_a.id,
        world.key_b.id,
        world.org_key.id,
        made.json()["id"],
        orgwide.json()["id"],
    ]
    assert all("key" not in k for k in listed.json())
    assert (retrieved.status_code, retrieved.json()["name"]) == (200, "bootstrap b")
    assert (moved.status_code, moved.json()["project"]) == (200, world.a)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert not fake.is_live(world.key_a.key)
    assert (other_org.status_code, other_org.json()) == (404, {"detail": "Not found."})
    assert [p["id"] for p in projects.json()] == [world.a, world.b]


def test_a_session_is_not_an_api_key_for_validate(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a session of project A's organization
    session = bearer(fake.issue_session(world.a))
    params = {"project_id": world.a}

    # When it validates alone, and alongside a valid API key
    alone = client.get(VALIDATE, headers=session, params=params)
    beside = client.get(VALIDATE, headers={**session, **auth(world.key_a.key)}, params=params)

    # Then validate reads only the API key: the bearer is ignored
    assert (alone.status_code, alone.json()) == (401, NOT_PROVIDED)
    assert beside.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["Bearer sb_fake_never-issued", "Bearer", "Bearer two tokens", "bearer " + KEY_PREFIX + "x"],
)
def test_an_unknown_bearer_is_unauthenticated_even_beside_a_good_key(
    fake: FakeCekura, client: httpx.Client, world: World, authorization: str
) -> None:
    # Given a bearer no session answers to (an API key sent as a bearer included)
    headers = {"Authorization": authorization}
    before = len(fake.live_keys())

    # When it creates (also with a valid API key beside it), lists and lists projects
    responses = [
        client.post(KEYS, headers=headers, json={"name": "k", "project": world.a}),
        client.post(
            KEYS,
            headers={**headers, **auth(world.key_a.key)},
            json={"name": "k", "project": world.a},
        ),
        client.get(KEYS, headers=headers),
        client.get(PROJECTS, headers={**headers, **auth(world.key_a.key)}),
    ]

    # Then each is a 401 with a detail, because the session is read first, and nothing is minted
    assert [(r.status_code, r.json()) for r in responses] == [(401, BAD_SESSION)] * 4
    assert len(fake.live_keys()) == before


def test_an_api_key_sent_as_bearer_is_refused_but_other_schemes_are_ignored(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given project A's key, once as a bearer and once beside a Basic Authorization header
    as_bearer = bearer(world.key_a.key)
    beside_basic = {"Authorization": "Basic dXNlcjpwYXNz", **auth(world.key_a.key)}

    # When each mints
    refused = mint_with(client, as_bearer, world.a)
    accepted = mint_with(client, beside_basic, world.a)

    # Then an API key is no session, while a non-bearer scheme is not read at all
    assert (refused.status_code, refused.json()) == (401, BAD_SESSION)
    assert accepted.status_code == 201


def mint_with(client: httpx.Client, headers: dict[str, str], project: int) -> httpx.Response:
    return client.post(KEYS, headers=headers, json={"name": "rotated", "project": project})


def test_nocreate_refuses_every_api_key_create_before_reading_the_body(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given the SDK's world, where API keys cannot mint keys
    fake.mode = "nocreate"
    before = len(fake.live_keys())

    # When a project key, the org key and an unknown key create, one with a broken body
    own = mint(client, world.key_a.key, world.a)
    org = mint(client, world.org_key.key, world.b)
    broken = client.post(KEYS, headers=auth(world.key_a.key), json={"name": ""})
    unknown = mint(client, KEY_PREFIX + "not-a-real-key", world.a)

    # Then known keys get a 403 with a detail, unknown ones still a 401, and nothing is minted
    assert [(r.status_code, r.json()) for r in (own, org, broken)] == [(403, NO_CREATE)] * 3
    assert (unknown.status_code, unknown.json()) == (401, {"detail": "Invalid API key."})
    assert len(fake.live_keys()) == before
    # And the rest of the key API stays session-only, as in spec mode
    fake.refusal_status = 405
    listed = client.get(KEYS, headers=auth(world.key_a.key))
    assert (listed.status_code, listed.headers["allow"]) == (405, "POST")
    assert client.get(PROJECTS, headers=auth(world.key_a.key)).status_code == 200


def test_spec_mode_takes_the_credentials_the_committed_excerpt_lists(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given the OpenAPI excerpt beside the fake, and spec mode answering keys it ignores with 405
    excerpt = json.loads((Path(fake_cekura.__file__).parent / "openapi-excerpt.json").read_text())
    fake.refusal_status = 405
    session = bearer(fake.issue_session(world.a))
    checked = 0

    # When every modelled operation is called once with an API key and once with a session
    for path, operations in excerpt["paths"].items():
        for method, operation in operations.items():
            if operation["operationId"] == "projects-create":
                continue  # not modelled by the fake
            schemes = {name for requirement in operation["security"] for name in requirement}
            url = path.replace("{id}", str(world.key_b.id))
            body = {"name": "x", "project": world.b} if method in {"post", "put", "patch"} else None
            by_key = client.request(method, url, headers=auth(world.key_b.key), json=body)
            by_session = client.request(method, url, headers=session, json=body)

            # Then a credential is read exactly where the excerpt's `security` lists it
            assert (by_key.status_code != 405) == ("api_key" in schemes), (method, path)
            assert (by_session.status_code != 401) == ("supabase_session" in schemes), (
                method,
                path,
            )
            checked += 1
    assert checked == 8


def test_the_request_log_names_the_credential_kind_but_never_its_value(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a session and a clean log
    token = fake.issue_session(world.a)
    fake.reset_requests()

    # When a key, a session (leaking itself into the query) and nobody call
    mint(client, world.key_a.key, world.a)
    client.get(KEYS, headers=bearer(token), params={"leak": token})
    client.get(PROJECTS)

    # Then each request says which credential it presented, and the token is nowhere
    seen = fake.requests
    assert [(r.route, r.status, r.credential, r.caller_key_id) for r in seen] == [
        ("create", 201, "api_key", world.key_a.id),
        ("list", 200, "bearer", None),
        ("projects", 401, None, None),
    ]
    assert seen[1].query == {"leak": "<redacted>"}
    assert token not in repr(seen)
    assert token.startswith(SESSION_PREFIX)


def test_kind_and_session_controls_reject_nonsense(fake: FakeCekura) -> None:
    # Given a fake with one project
    project = fake.create_project()

    # When keys and sessions are asked for wrongly, Then it says so
    with pytest.raises(ValueError, match="kind"):
        fake.issue_key(project, kind="owner")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="project key needs project_id"):
        fake.issue_key(organization="Acme", kind="project")
    with pytest.raises(ValueError, match="organization"):
        fake.issue_session()
    with pytest.raises(ValueError, match="unknown project"):
        fake.issue_session(42)
    with pytest.raises(ValueError, match="is not in"):
        fake.issue_session(project, organization="Globex")


# -- faults -----------------------------------------------------------------------------------


def test_status_faults_are_served_in_order_and_change_nothing(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a 429 with Retry-After, then a 500, then two 503s queued for create
    fake.inject("create", Fault(status=429, retry_after="2"), Fault(status=500))
    fake.inject("create", Fault(status=503, times=2))
    before = len(fake.live_keys())

    # When the rotator keeps trying
    responses = [mint(client, world.key_a.key, world.a) for _ in range(5)]

    # Then each fault is served once, in order, then the real thing
    assert [r.status_code for r in responses] == [429, 500, 503, 503, 201]
    assert responses[0].headers["retry-after"] == "2"
    assert responses[0].json() == {"detail": "Request was throttled."}
    assert responses[1].headers["content-type"] == "text/html"
    assert len(fake.live_keys()) == before + 1
    assert fake.pending_faults() == 0


def test_faults_hit_only_their_route_and_can_be_cleared(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given faults queued for validate only
    fake.inject("validate", Fault(status=500, times=3))
    params = {"project_id": world.a}

    # When create and validate are called, and the rest of the queue is cleared
    created = mint(client, world.key_a.key, world.a)
    faulted = client.get(VALIDATE, headers=auth(world.key_a.key), params=params)
    fake.clear_faults()
    cleared = client.get(VALIDATE, headers=auth(world.key_a.key), params=params)

    # Then only validate failed, and only until cleared
    assert (created.status_code, faulted.status_code, cleared.status_code) == (201, 500, 200)


def test_delay_slows_the_response_but_the_key_is_still_minted(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a create that takes longer than the client waits
    fake.inject("create", Fault(delay=0.3))
    before = len(fake.live_keys())

    # When the client times out
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            KEYS,
            headers=auth(world.key_a.key),
            json={"name": "slow", "project": world.a},
            timeout=0.1,
        )

    # Then the server still finishes the create a moment later
    deadline = time.monotonic() + 2
    while len(fake.live_keys()) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(fake.live_keys()) == before + 1


def test_drop_closes_the_connection_and_mints_nothing(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a dropped create
    fake.inject("create", Fault(drop=True))
    before = len(fake.live_keys())

    # When the client posts
    with pytest.raises(httpx.RemoteProtocolError):
        mint(client, world.key_a.key, world.a)

    # Then no key exists and the log shows an unanswered request
    assert len(fake.live_keys()) == before
    last = fake.requests[-1]
    assert (last.route, last.status, last.dropped) == ("create", 0, True)
    # And the next request on a fresh connection works
    assert mint(client, world.key_a.key, world.a).status_code == 201


def test_lost_response_mints_but_the_client_never_hears(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a create whose response is lost after the key is made
    fake.inject("create", Fault(lost_response=True))
    before = len(fake.live_keys())

    # When the client posts
    with pytest.raises(httpx.RemoteProtocolError):
        mint(client, world.key_a.key, world.a, name="orphan")

    # Then an orphan key exists that the client never saw
    assert len(fake.live_keys()) == before + 1
    assert fake.live_keys()[-1].name == "orphan"
    last = fake.requests[-1]
    assert (last.status, last.dropped) == (201, True)


def test_malformed_body_replaces_a_real_response(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a create answered with broken JSON, then a gateway page with its own content type
    fake.inject(
        "create",
        Fault(body=b'{"id": 7, "key": '),
        Fault(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html"),
    )
    before = len(fake.live_keys())

    # When the client posts twice
    broken = mint(client, world.key_a.key, world.a)
    gateway = mint(client, world.key_a.key, world.a)

    # Then the first is a 201 it cannot parse (the key exists), the second a 502 page
    assert broken.status_code == 201
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    assert (gateway.status_code, gateway.content) == (502, b"<html>Bad Gateway</html>")
    assert gateway.headers["content-type"] == "text/html"
    assert len(fake.live_keys()) == before + 1


def test_missing_key_and_wrong_typed_key_still_mint(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a 201 without `key`, then one whose `key` is a number
    fake.inject("create", Fault(missing_key=True), Fault(key_value=123))

    # When the client mints twice
    missing = mint(client, world.key_a.key, world.a).json()
    numeric = mint(client, world.key_a.key, world.a).json()

    # Then both keys exist server-side, though the client cannot use either
    assert "key" not in missing
    assert numeric["key"] == 123
    live = {r.id for r in fake.live_keys(world.a)}
    assert {missing["id"], numeric["id"]} <= live
    assert len(fake.minted_secrets()) == 6


def test_oversize_pads_a_valid_body(client: httpx.Client, fake: FakeCekura, world: World) -> None:
    # Given a create response padded to 200 kB
    fake.inject("create", Fault(oversize=200_000))

    # When the client mints
    response = mint(client, world.key_a.key, world.a)

    # Then the body is that large and still valid JSON
    assert len(response.content) == 200_000
    assert response.json()["key"].startswith(KEY_PREFIX)


# -- throttling and activation lag ------------------------------------------------------------


def test_rate_limit_throttles_a_burst(fake: FakeCekura, client: httpx.Client, world: World) -> None:
    # Given a limit of 5 requests per second
    fake.rate_limit = 5.0
    params = {"project_id": world.a}

    # When 15 requests arrive in quick succession
    responses = [
        client.get(VALIDATE, headers=auth(world.key_a.key), params=params) for _ in range(15)
    ]

    # Then the burst beyond the bucket is told when to come back
    throttled = [r for r in responses if r.status_code == 429]
    assert 5 <= len(responses) - len(throttled) <= 12  # refills slowly even on a loaded machine
    first = throttled[0]
    assert int(first.headers["retry-after"]) >= 1
    assert re.fullmatch(
        r"Request was throttled\. Expected available in \d+ seconds?\.", first.json()["detail"]
    )
    # And lifting the limit lets everything through again
    fake.rate_limit = None
    assert client.get(VALIDATE, headers=auth(world.key_a.key), params=params).status_code == 200


def test_a_new_key_fails_validation_until_it_activates(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given keys that take two validate calls to start working
    fake.activation_failures = 2
    minted = mint(client, world.key_a.key, world.a).json()

    # When the new key and the dashboard-made key are validated
    params = {"project_id": world.a}
    fresh = [
        client.get(VALIDATE, headers=auth(minted["key"]), params=params).status_code
        for _ in range(3)
    ]
    old = client.get(VALIDATE, headers=auth(world.key_a.key), params=params).status_code

    # Then only the minted key lags
    assert fresh == [401, 401, 200]
    assert old == 200


# -- observability, concurrency, lifecycle ----------------------------------------------------


def test_request_log_records_routes_and_callers_but_never_secrets(
    fake: FakeCekura, client: httpx.Client, world: World
) -> None:
    # Given a clean log
    fake.reset_requests()

    # When a key mints, validates (leaking itself into the query) and a bad key calls
    minted = mint(client, world.key_a.key, world.a).json()
    client.get(VALIDATE, headers=auth(minted["key"]), params={"project_id": world.a})
    client.get(VALIDATE, headers=auth(world.key_a.key), params={"leak": minted["key"]})
    client.get(PROJECTS, headers=auth("bogus"))

    # Then each request is logged with route, status and caller id, and no secret appears
    seen = fake.requests
    assert [(r.method, r.route, r.status, r.caller_key_id) for r in seen] == [
        ("POST", "create", 201, world.key_a.id),
        ("GET", "validate", 200, minted["id"]),
        ("GET", "validate", 400, world.key_a.id),
        ("GET", "projects", 401, None),
    ]
    assert seen[2].query == {"leak": "<redacted>"}
    assert seen[0].path == KEYS
    assert all(r.at <= s.at for r, s in itertools.pairwise(seen))
    dump = repr(seen)
    assert not any(secret in dump for secret in fake.minted_secrets())
    fake.reset_requests()
    assert fake.requests == []


def test_two_hundred_concurrent_clients_get_distinct_keys(
    fake: FakeCekura, world: World, tls: ssl.SSLContext
) -> None:
    # Given 200 clients at once, each on its own connection
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    http = httpx.Client(base_url=fake.url, timeout=10.0, limits=limits, verify=tls)

    # When they all mint
    with http, ThreadPoolExecutor(max_workers=200) as pool:
        bodies = list(
            pool.map(lambda n: mint(http, world.key_a.key, world.a, f"c{n}").json(), range(200))
        )

    # Then every one got its own id and secret
    assert len({b["id"] for b in bodies}) == 200
    assert len({b["key"] for b in bodies}) == 200
    assert len(fake.live_keys(world.a)) == 201


def test_stop_also_closes_kept_alive_connections(tls: ssl.SSLContext) -> None:
    # Given a running server and a client holding a pooled connection to it
    fake = FakeCekura().start()
    project = fake.create_project()
    key = fake.issue_key(project)
    with httpx.Client(base_url=fake.url, timeout=2.0, verify=tls) as http:
        params = {"project_id": project}
        assert http.get(VALIDATE, headers=auth(key.key), params=params).status_code == 200

        # When the server stops
        fake.stop()

        # Then the pooled connection does not keep serving
        with pytest.raises(httpx.TransportError):
            http.get(VALIDATE, headers=auth(key.key), params=params)
    fake.stop()


def test_control_api_rejects_nonsense() -> None:
    # Given a fake that is never started
    fake = FakeCekura(mode="permissive", rate_limit=10)

    # When it is misconfigured, Then it says so
    with pytest.raises(ValueError, match="mode"):
        FakeCekura(mode="legacy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refusal_status"):
        fake.refusal_status = 418
    with pytest.raises(ValueError, match="unknown route"):
        fake.inject("rotate", Fault(status=500))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        Fault(times=0)
    with pytest.raises(ValueError, match="organization"):
        fake.issue_key(None)
    with pytest.raises(ValueError, match="unknown project"):
        fake.issue_key(42)
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.url
    # And an issued key never shows its secret in a repr
    issued = fake.issue_key(None, organization="Acme")
    assert issued.key not in repr(issued)


def test_main_serves_standalone_and_prints_a_bootstrap_key() -> None:
    # Given the module run as a program on a free port
    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable,
        "-m",
        "infra.local.fake_cekura",
        "--port",
        "0",
        "--seed-project",
        "2",
    ]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            printed = dict(process.stdout.readline().strip().split("=", 1) for _ in range(4))

            # When its bootstrap key validates against the printed project
            response = httpx.get(
                f"{printed['CEKURA_API_URL']}{VALIDATE}",
                headers=auth(printed["CEKURA_API_KEY"]),
                params={"project_id": printed["CEKURA_PROJECT_ID"]},
                timeout=5.0,
            )
            projects = httpx.get(
                f"{printed['CEKURA_API_URL']}{PROJECTS}",
                headers=auth(printed["CEKURA_API_KEY"]),
                timeout=5.0,
            )
            keys = httpx.get(
                f"{printed['CEKURA_API_URL']}{KEYS}",
                headers=bearer(printed["CEKURA_SESSION_TOKEN"]),
                timeout=5.0,
            )
        finally:
            process.terminate()

    # Then it answers like the fake in-process
    assert response.status_code == 200
    assert [p["id"] for p in projects.json()] == [1]
    # And its dashboard session lists keys, which spec mode keeps from API keys
    assert [k["name"] for k in keys.json()] == ["bootstrap"]
