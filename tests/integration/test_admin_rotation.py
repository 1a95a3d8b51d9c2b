"""Admin credential mode through RotateSecret: moto's RotateSecret drives the real handler.

Every permission world (`spec`, `permissive`, `nocreate`: API keys may not create keys) x every
credential (the rotated key itself, an admin API key, a dashboard session as `bearer_token`) x
every revocation policy runs three rotations and holds the reliability invariants. What each
world then revokes:

| world      | self            | admin api_key   | admin bearer_token |
|------------|-----------------|-----------------|--------------------|
| spec       | manual (refused)| manual (refused)| deleted            |
| permissive | deleted         | deleted         | deleted            |
| nocreate   | cannot rotate   | cannot rotate   | deleted            |

Also: a dead application key is recovered with an admin credential (and without one, createSecret
fails clearly), and a project outside the admin secret's `projects` is refused before any call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pytest

from cekura_rotator import handler
from cekura_rotator.ledger import MANUAL_PREFIX
from infra.local.fake_cekura import Mode
from infra.local.lambda_bridge import FUNCTION_ARN, LambdaBridge
from infra.local.stack import (
    AdminKind,
    AdminSecret,
    admin_env,
    create_admin_secret,
    delete_in_dashboard,
)
from tests.conftest import LogCapture, World
from tests.reliability import invariants, summary
from tests.reliability.conftest import Ledger
from tests.reliability.harness import admin_credentials_absent, admin_credentials_not_stored

Credential = Literal["self", "api_key", "bearer_token"]
WORLDS: tuple[Mode, ...] = ("spec", "permissive", "nocreate")
CREDENTIALS: tuple[Credential, ...] = ("self", "api_key", "bearer_token")
POLICIES = ("grace", "immediate", "off")
ROTATIONS = 3  # grace revokes from the second on: three give it two keys to revoke
STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]


def may_create(mode: Mode, credential: Credential) -> bool:
    """In `nocreate` only a session may create keys; elsewhere every credential may."""
    return mode != "nocreate" or credential == "bearer_token"


def may_delete(mode: Mode, credential: Credential) -> bool:
    """A session may delete in every world; API keys (project or admin) only in `permissive`."""
    return mode == "permissive" or credential == "bearer_token"


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """As the reliability suite's: what this test checked shows in the reliability summary."""
    entry = Ledger()
    yield entry
    request.node.user_properties.append((summary.PROPERTY, asdict(entry)))


@dataclass
class Deployment:
    """The function as deployed for one test: its environment, and RotateSecret driving it."""

    world: World
    bridge: LambdaBridge
    logs: LogCapture
    admin: AdminSecret | None = None

    def rotate(self) -> str:
        """One RotateSecret; returns its token. A failed step stops it, as on AWS."""
        token = str(uuid.uuid4())
        with self.bridge.patched():
            self.world.sm.rotate_secret(
                SecretId=self.world.arn, ClientRequestToken=token, RotationLambdaARN=FUNCTION_ARN
            )
        return token

    def steps_of(self, token: str) -> list[tuple[str, str | None]]:
        return [(i.step, i.error) for i in self.bridge.invocations if i.token == token]

    def texts(self, *extra: str) -> list[str]:
        """Everything the function put out: log lines, step errors, captured stdout/stderr."""
        errors = [i.error for i in self.bridge.invocations if i.error]
        return [*self.logs.lines, *errors, *extra]


@pytest.fixture
def deploy(
    world: World, logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Deployment]]:
    """Configure the function (policy, admin secret) as the template would, for `world`."""

    def build(policy: str = "grace", credential: Credential = "self", **admin: Any) -> Deployment:
        made = None
        if credential != "self":
            made = create_admin_secret(
                world.sm, world.fake, credential, project_id=world.project_id, **admin
            )
        variables = {
            "CEKURA_API_URL": world.fake.url,
            "REVOCATION_POLICY": policy,
            "CEKURA_VALIDATE_MAX_WAIT": "2",
            **admin_env(made.arn if made else None),
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        handler.rotator.cache_clear()
        return Deployment(world, LambdaBridge(handler=handler.lambda_handler), logs, made)

    yield build
    handler.rotator.cache_clear()


def unchanged_but_stub(before: tuple[Any, ...], after: tuple[Any, ...], token: str) -> list[str]:
    """Invariant 6 across a RotateSecret that failed at createSecret: the one change allowed
    is the value-less AWSPENDING version RotateSecret itself adds (AWS does the same)."""
    enabled, function, versions, keys = after
    stub = [v for v in versions if v[0] == token]
    problems = [] if stub == [(token, ("AWSPENDING",), None)] else [f"6: pending stub is {stub}"]
    rest = (enabled, function, [v for v in versions if v[0] != token], keys)
    return problems + invariants.unchanged(before, rest)


def minted_with(
    world: World, d: Deployment, presented: str | None, caller: int | None
) -> Credential | None:
    """Which configured credential a request to Cekura carried."""
    if presented == "bearer":
        return "bearer_token"
    if d.admin is not None and caller == world.fake.key_id(d.admin.credential):
        return "api_key"
    project_keys = {k.id for k in world.fake.all_keys(world.project_id)}
    return "self" if caller in project_keys else None


def kill(world: World, key_id: int) -> None:
    """Delete a key at Cekura as a person in the dashboard would, with a session."""
    delete_in_dashboard(world.fake, key_id, project_id=world.project_id)


def current_key(world: World) -> str:
    key = json.loads(world.current())["api_key"]
    assert isinstance(key, str)
    return key


def check_outputs(ledger: Ledger, d: Deployment, *extra: str) -> None:
    """Invariant 4, with the admin credential looked for by value (a session is not key-shaped)
    and in every version of the rotated secret."""
    texts = d.texts(*extra)
    credentials = [d.admin.credential] if d.admin else []
    invariants.verify(
        ledger,
        lambda: invariants.key_material(texts, d.world.fake.minted_secrets()),
        lambda: admin_credentials_absent(texts, credentials),
        lambda: admin_credentials_not_stored(d.world.sm, d.world.arn, credentials),
    )


# -- every world x credential x policy --------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("mode", WORLDS)
def test_rotate_secret_in_every_world_with_every_credential_and_policy(
    mode: Mode,
    credential: Credential,
    policy: str,
    world: World,
    deploy: Callable[..., Deployment],
    ledger: Ledger,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Given Cekura in `mode`, and the function configured with the credential and the policy
    world.fake.mode = mode
    d = deploy(policy, credential)
    ledger.scenarios += 1

    if not may_create(mode, credential):
        # When RotateSecret runs where the credential may not create keys
        before = invariants.snapshot(world.sm, world.arn, world.fake)
        token = d.rotate()
        # Then createSecret fails with a clear error naming the secret, and nothing changed
        steps = d.steps_of(token)
        assert [step for step, error in steps if error] == ["createSecret"]
        error = str(steps[0][1])
        assert f"secret={world.arn}" in error
        assert "step=createSecret" in error
        assert "HTTP 403" in error
        assert "cannot create API keys" in error
        if d.admin is not None:
            assert error.startswith("AdminSecretError: ")
            assert d.admin.arn in error
        after = invariants.snapshot(world.sm, world.arn, world.fake)
        invariants.verify(ledger, lambda: unchanged_but_stub(before, after, token))
        out, err = capfd.readouterr()
        check_outputs(ledger, d, out, err)
        return

    # When it is rotated three times through RotateSecret
    tokens = [d.rotate() for _ in range(ROTATIONS)]

    # Then every step of every rotation succeeded, and the last made its version AWSCURRENT
    for token in tokens:
        assert d.steps_of(token) == [(step, None) for step in STEPS], d.steps_of(token)
    assert world.stages()[tokens[-1]] == ["AWSCURRENT"]
    # ... every key was minted with the configured credential ...
    creates = [r for r in world.fake.requests if r.route == "create"]
    assert len(creates) == ROTATIONS
    assert {minted_with(world, d, r.credential, r.caller_key_id) for r in creates} == {credential}
    # ... the reliability invariants hold ...
    out, err = capfd.readouterr()
    all_versions = invariants.versions(world.sm, world.arn)
    found = invariants.strays(world.fake, world.project_id, all_versions)
    checks: list[Callable[[], list[str]]] = [
        lambda: invariants.current_is_live(world.sm, world.arn, world.fake),
        lambda: invariants.current_was_accepted(
            world.sm, world.arn, world.fake, trusted={world.bootstrap_id}
        ),
        lambda: invariants.labelled_keys_live(world.fake, all_versions, excused=set()),
        lambda: invariants.rotation_completed(all_versions, tokens[-1]),
        lambda: invariants.strays_accounted(found, invariants.Evidence(), "\n".join(d.texts())),
    ]
    if policy != "off":
        checks.append(
            lambda: invariants.debts_settled(
                world.fake,
                all_versions,
                deletion_allowed=may_delete(mode, credential),
                excused=set(),
            )
        )
    invariants.verify(ledger, *checks)
    check_outputs(ledger, d, out, err)
    # ... and what was revoked follows the world: deleted where the credential may delete, else
    # recorded on its version for deletion in the dashboard; nothing at all under `off`
    live = world.fake.live_keys(world.project_id)
    manual = [
        s for stages in world.stages().values() for s in stages if s.startswith(MANUAL_PREFIX)
    ]
    superseded = {"grace": ROTATIONS - 1, "immediate": ROTATIONS, "off": 0}[policy]
    if may_delete(mode, credential):
        assert (len(live), manual) == (ROTATIONS + 1 - superseded, [])
    else:
        assert (len(live), len(manual)) == (ROTATIONS + 1, superseded)


# -- a dead application key -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "kind"), [("spec", "api_key"), ("nocreate", "bearer_token"), ("spec", "bearer_token")]
)
@pytest.mark.parametrize("policy", ["grace", "immediate"])
def test_a_dead_key_is_recovered_with_an_admin_credential(
    mode: Mode,
    kind: AdminKind,
    policy: str,
    world: World,
    deploy: Callable[..., Deployment],
    ledger: Ledger,
) -> None:
    # Given the secret's current key deleted at Cekura (after a leak), and an admin credential
    world.fake.mode = mode
    d = deploy(policy, kind)
    kill(world, world.bootstrap_id)

    # When RotateSecret runs
    token = d.rotate()
    ledger.scenarios += 1

    # Then the rotation completed: AWSCURRENT holds a new key, live, of the secret's project
    assert d.steps_of(token) == [(step, None) for step in STEPS], d.steps_of(token)
    assert world.stages()[token] == ["AWSCURRENT"]
    assert current_key(world) != world.bootstrap_key
    all_versions = invariants.versions(world.sm, world.arn)
    dead = {world.bootstrap_id}
    invariants.verify(
        ledger,
        lambda: invariants.current_is_live(world.sm, world.arn, world.fake),
        lambda: invariants.current_was_accepted(world.sm, world.arn, world.fake, trusted=set()),
        lambda: invariants.labelled_keys_live(world.fake, all_versions, excused=dead),
    )
    check_outputs(ledger, d)
    # ... and the next rotations go on as usual
    for _ in range(2):
        assert [e for _, e in d.steps_of(d.rotate())] == [None] * 4
    invariants.verify(
        ledger,
        lambda: invariants.debts_settled(
            world.fake,
            invariants.versions(world.sm, world.arn),
            deletion_allowed=may_delete(mode, kind),
            excused=dead,
        ),
    )


def test_a_dead_key_without_an_admin_credential_fails_at_create(
    world: World, deploy: Callable[..., Deployment], ledger: Ledger
) -> None:
    # Given the secret's current key deleted at Cekura, and no admin credential configured
    d = deploy("grace")
    kill(world, world.bootstrap_id)
    before = invariants.snapshot(world.sm, world.arn, world.fake)

    # When RotateSecret runs
    token = d.rotate()
    ledger.bad_inputs += 1

    # Then createSecret fails, naming the secret, the step, Cekura's 401 and the way out (an
    # admin secret); nothing changed
    steps = d.steps_of(token)
    assert [step for step, error in steps if error] == ["createSecret"]
    error = str(steps[0][1])
    assert f"secret={world.arn}" in error
    assert "step=createSecret" in error
    assert "rejects the current key (HTTP 401)" in error
    assert "AdminSecretArns" in error
    after = invariants.snapshot(world.sm, world.arn, world.fake)
    invariants.verify(ledger, lambda: unchanged_but_stub(before, after, token))
    check_outputs(ledger, d)


# -- projects ---------------------------------------------------------------------------------


def test_a_project_outside_projects_is_refused_before_any_call(
    world: World, deploy: Callable[..., Deployment], ledger: Ledger
) -> None:
    # Given an admin secret limited to another project of the organization
    other = world.fake.create_project("elsewhere", organization="Acme")
    d = deploy("grace", "bearer_token", projects=[other])
    assert d.admin is not None
    before = invariants.snapshot(world.sm, world.arn, world.fake)
    seen = len(world.fake.requests)

    # When RotateSecret runs
    token = d.rotate()
    ledger.bad_inputs += 1

    # Then createSecret is refused before any call to Cekura, naming the admin secret
    steps = d.steps_of(token)
    assert [step for step, error in steps if error] == ["createSecret"]
    error = str(steps[0][1])
    assert error.startswith("AdminSecretError: ")
    assert f"admin secret {d.admin.arn} may not mint keys for project {world.project_id}" in error
    assert world.fake.requests[seen:] == []
    after = invariants.snapshot(world.sm, world.arn, world.fake)
    invariants.verify(ledger, lambda: unchanged_but_stub(before, after, token))
    check_outputs(ledger, d)
