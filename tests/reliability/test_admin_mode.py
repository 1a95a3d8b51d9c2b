"""Admin credential mode (issue 9) under faults, bad admin secrets and dead keys.

A rotated secret mints and revokes with the credential of an admin secret (an admin API key, or a
dashboard session as `bearer_token`) when the function names one. What must hold:
- createSecret refuses before any Cekura call when the admin secret's `projects` excludes the
  secret's project, and an admin secret that is missing, unreadable, badly formed, not allowed or
  refused by Cekura fails it with an `AdminSecretError` naming the admin secret (never its value),
  with nothing changed at AWS or Cekura;
- finishSecret with the admin secret unreadable still moves AWSCURRENT, leaves the revocation owed
  (recorded), warns naming the admin secret, and a later rotation settles it;
- the fault matrix's failure points, for the admin secret's read and the admin credential's calls;
- no admin credential appears in any log line, exception, return value or rotated secret.

Every scenario ends with the reliability invariants (`Harness.check`, which also looks for the
admin credential by value) and, where the rotation goes on, `Harness.settle`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from cekura_rotator.errors import (
    AdminSecretError,
    CekuraRateLimitedError,
    CekuraUnavailableError,
    OrphanKeyError,
    RotatorError,
)
from cekura_rotator.ledger import State, entries
from cekura_rotator.steps import Step
from infra.local.fake_cekura import KeyKind, RouteName, SeenRequest
from infra.local.lambda_bridge import ACCOUNT_ID, REGION
from infra.local.stack import (
    ADMIN_KINDS,
    AdminKind,
    AdminSecret,
    admin_secret_json,
    delete_in_dashboard,
)
from tests.reliability import invariants
from tests.reliability.conftest import Ledger
from tests.reliability.harness import (
    AWS_ERRORS,
    CEKURA_FAULTS,
    AwsFault,
    Harness,
    Mode,
    Rig,
    admin_credentials_absent,
)
from tests.reliability.summary import is_full

KEYS_PATH = "/user/api/v1/user-api-key/"
UNAVAILABLE_WARNING = "Admin credential unavailable for revocation"


def deletion_allowed(mode: Mode, kind: AdminKind) -> bool:
    """Whether the admin credential may delete keys: a session always, an API key only in the
    older spec (`permissive`)."""
    return kind == "bearer_token" or mode == "permissive"


def kill_key(h: Harness, key_id: int) -> None:
    """Delete a key at Cekura as a person in the dashboard would (with a session)."""
    delete_in_dashboard(h.fake, key_id, project_id=h.project_id)


def version_with(h: Harness, stage: str) -> str | None:
    return next((v for v, s in h.world.stages().items() if stage in s), None)


def key_of(h: Harness, version_id: str) -> str:
    raw = h.world.value_of(version_id)
    assert raw is not None
    key = json.loads(raw)["api_key"]
    assert isinstance(key, str)
    return key


def outputs(h: Harness, *extra: str) -> list[str]:
    return [*h.rig.logs.lines, *h.evidence.outputs, *extra]


def assert_names_admin_not_value(error: BaseException | None, arn: str, *secrets: str) -> None:
    """An AdminSecretError that names the admin secret's ARN and shows none of `secrets`."""
    assert isinstance(error, AdminSecretError), f"{type(error).__name__}: {error}"
    assert arn in str(error), str(error)
    for secret in secrets:
        assert secret not in str(error)
        assert secret not in repr(error)


# -- which credential does what -------------------------------------------------------------


@pytest.mark.parametrize("kind", ADMIN_KINDS)
def test_admin_mints_and_revokes_the_new_key_validates_itself(
    kind: AdminKind, rig: Rig, ledger: Ledger
) -> None:
    # Given a secret whose function names an admin secret, in the world where both may delete
    h = rig.harness(mode="permissive", admin=kind)
    admin = h.admin
    assert admin is not None
    admin_id = h.fake.key_id(admin.credential) if kind == "api_key" else None
    seen_before = len(h.fake.requests)

    # When it is rotated three times (grace revokes from the second on)
    for _ in range(3):
        h.rotate()
    ledger.scenarios += 1

    # Then every create, delete and list went with the admin credential, never a project key ...
    by_route: dict[str, list[SeenRequest]] = {}
    for seen in h.fake.requests[seen_before:]:
        by_route.setdefault(str(seen.route), []).append(seen)
    assert len(by_route["create"]) == 3
    assert by_route["delete"], "grace revokes from the second rotation on"
    for route in ("create", "delete", "list"):
        for seen in by_route.get(route, []):
            if kind == "bearer_token":
                assert seen.credential == "bearer", (route, seen)
            else:
                assert (seen.credential, seen.caller_key_id) == ("api_key", admin_id), seen
    # ... every validate with the key it validates (a key of the project, never the admin's)
    project_keys = {k.id for k in h.fake.all_keys(h.project_id)}
    assert by_route["validate"]
    assert all(seen.caller_key_id in project_keys for seen in by_route["validate"])
    # ... and the invariants hold
    h.check(ledger, swept=True, grace_bound=True)


# -- projects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ADMIN_KINDS)
def test_a_project_outside_projects_is_refused_before_any_cekura_call(
    kind: AdminKind, rig: Rig, ledger: Ledger
) -> None:
    # Given an admin secret limited to another project of the organization
    h = rig.harness(mode="permissive")
    other = h.fake.create_project("another project", organization="Acme")
    admin = h.use_admin(kind, projects=[other])
    h.via_handler = True
    token = h.start_rotation()
    before = invariants.snapshot(h.sm, h.arn, h.fake)
    seen_before = len(h.fake.requests)

    # When createSecret runs
    error = h.step(Step.CREATE, token)
    ledger.bad_inputs += 1

    # Then it is refused before any call to Cekura, naming the admin secret and the project
    assert_names_admin_not_value(error, admin.arn, admin.credential)
    assert f"may not mint keys for project {h.project_id}" in str(error)
    assert f"secret={h.arn}" in str(error)
    assert "step=createSecret" in str(error)
    assert h.fake.requests[seen_before:] == []
    after = invariants.snapshot(h.sm, h.arn, h.fake)
    invariants.verify(ledger, lambda: invariants.unchanged(before, after))
    h.check(ledger)


def test_projects_that_include_the_project_mint(rig: Rig, ledger: Ledger) -> None:
    # Given an admin secret whose projects include the secret's project
    h = rig.harness(mode="permissive")
    other = h.fake.create_project("another project", organization="Acme")
    h.use_admin("bearer_token", projects=[other, h.project_id])
    # When it is rotated  # Then the rotation completes
    token = h.rotate()
    ledger.scenarios += 1
    h.check(ledger, completed=token, swept=True)


# -- bad admin secrets ------------------------------------------------------------------------

# How a case sets up the function's admin configuration: it returns the ARN the error must name
# and every secret value that must not appear anywhere.
Setup = Callable[[Harness], tuple[str, list[str]]]
MISSING_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:cekura/no-such-admin-AbCdEf"


def _admin_key(h: Harness, *, organization: str | None = None, kind: KeyKind = "admin") -> str:
    """An organization-wide key of the secret's organization (or of `organization`)."""
    project = h.project_id if organization is None else None
    return h.fake.issue_key(project, "admin", organization=organization, kind=kind).key


def _stored(value: Callable[[str, str], str | bytes]) -> Setup:
    """An admin secret whose value is `value(admin key, session)`, configured as the default."""

    def setup(h: Harness) -> tuple[str, list[str]]:
        key, session = _admin_key(h), h.fake.issue_session(h.project_id)
        raw = value(key, session)
        if isinstance(raw, bytes):
            arn = h.sm.create_secret(Name="cekura/bad-admin", SecretBinary=raw)["ARN"]
        else:
            arn = h.sm.create_secret(Name="cekura/bad-admin", SecretString=raw)["ARN"]
        h.configure_admin(arn)
        return arn, [key, session]

    return setup


def _missing(h: Harness) -> tuple[str, list[str]]:
    h.configure_admin(MISSING_ARN)
    return MISSING_ARN, []


def _deleted(h: Harness) -> tuple[str, list[str]]:
    admin = h.use_admin("api_key")
    h.sm.delete_secret(SecretId=admin.arn, RecoveryWindowInDays=7)
    return admin.arn, [admin.credential]


def _unreadable(error: str) -> Setup:
    def setup(h: Harness) -> tuple[str, list[str]]:
        admin = h.use_admin("api_key")
        h.rig.aws.arm(AwsFault("GetSecretValue", error, secret_id=admin.arn))
        return admin.arn, [admin.credential]

    return setup


def _not_allowed(*, with_default: bool) -> Setup:
    """The rotated secret names an admin secret the function does not allow."""

    def setup(h: Harness) -> tuple[str, list[str]]:
        allowed = h.make_admin_secret("bearer_token")
        named = h.make_admin_secret("api_key")
        h.configure_admin(allowed.arn if with_default else None)
        current = h.world.value_of(version_with_current(h))
        document = {**json.loads(current or "{}"), "admin_secret_arn": named.arn}
        h.sm.put_secret_value(SecretId=h.arn, SecretString=json.dumps(document))
        return named.arn, [allowed.credential, named.credential]

    return setup


def version_with_current(h: Harness) -> str:
    current = version_with(h, "AWSCURRENT")
    assert current is not None
    return current


def _revoked_admin_key(h: Harness) -> tuple[str, list[str]]:
    admin = h.use_admin("api_key")
    admin_id = h.fake.key_id(admin.credential)
    assert admin_id is not None
    kill_key(h, admin_id)
    return admin.arn, [admin.credential]


def _good_api_key(h: Harness) -> tuple[str, list[str]]:
    admin = h.use_admin("api_key")
    return admin.arn, [admin.credential]


def _unknown_session(h: Harness) -> tuple[str, list[str]]:
    token = "sb_fake_" + "x" * 48  # shaped like a session, known to no one
    arn = h.sm.create_secret(
        Name="cekura/stale-session", SecretString=admin_secret_json("bearer_token", token)
    )["ARN"]
    h.configure_admin(arn)
    return arn, [token]


def _foreign(kind: str) -> Setup:
    """An admin secret whose credential Cekura refuses for this project (403): an admin key of
    another organization, or an organization-wide read-only key."""

    def setup(h: Harness) -> tuple[str, list[str]]:
        key = (
            _admin_key(h, organization="Other Org")
            if kind == "other-org"
            else _admin_key(h, kind="readonly")
        )
        arn = h.sm.create_secret(
            Name=f"cekura/admin-{kind}", SecretString=admin_secret_json("api_key", key)
        )["ARN"]
        h.configure_admin(arn)
        return arn, [key]

    return setup


@dataclass(frozen=True)
class BadAdmin:
    id: str
    setup: Setup = field(compare=False)
    says: str  # what the error must say
    calls_cekura: bool = False  # the refusal comes from Cekura's answer to the create
    mode: Mode = "permissive"


BAD_ADMINS = (
    BadAdmin("missing", _missing, "has no AWSCURRENT value"),
    BadAdmin("deleted", _deleted, "cannot be read"),
    BadAdmin("kms-access-denied", _unreadable("kms-access-denied"), "AccessDeniedException"),
    BadAdmin("throttled", _unreadable("throttling"), "ThrottlingException"),
    BadAdmin("internal-error", _unreadable("internal-error"), "InternalServiceError"),
    BadAdmin("binary", _stored(lambda key, _: key.encode()), "SecretBinary"),
    BadAdmin("not-json", _stored(lambda key, _: key), "not a JSON object"),
    BadAdmin("broken-json", _stored(lambda key, _: '{"api_key": "' + key), "not a JSON object"),
    BadAdmin("json-array", _stored(lambda key, _: json.dumps([key])), "not a JSON object"),
    BadAdmin("json-string", _stored(lambda key, _: json.dumps(key)), "not a JSON object"),
    BadAdmin(
        "both-fields",
        _stored(lambda key, session: json.dumps({"api_key": key, "bearer_token": session})),
        "exactly one of",
    ),
    BadAdmin("neither-field", _stored(lambda key, _: json.dumps({"key": key})), "exactly one of"),
    BadAdmin("empty-object", _stored(lambda *_: "{}"), "exactly one of"),
    BadAdmin("api-key-empty", _stored(lambda *_: json.dumps({"api_key": ""})), "'api_key' must"),
    BadAdmin(
        "api-key-with-a-space",
        _stored(lambda key, _: json.dumps({"api_key": f"{key} x"})),
        "'api_key' must be a non-empty string of visible ASCII",
    ),
    BadAdmin("api-key-a-number", _stored(lambda *_: '{"api_key": 12345678}'), "'api_key' must"),
    BadAdmin(
        "bearer-token-null", _stored(lambda *_: '{"bearer_token": null}'), "'bearer_token' must"
    ),
    BadAdmin(
        "projects-a-string",
        _stored(lambda key, _: json.dumps({"api_key": key, "projects": "1"})),
        "'projects' must be a list",
    ),
    BadAdmin(
        "projects-with-zero",
        _stored(lambda key, _: json.dumps({"api_key": key, "projects": [0]})),
        "'projects' must be a list",
    ),
    BadAdmin(
        "projects-with-a-boolean",
        _stored(lambda key, _: json.dumps({"api_key": key, "projects": [True]})),
        "'projects' must be a list",
    ),
    BadAdmin(
        "projects-with-a-string",
        _stored(lambda key, _: json.dumps({"api_key": key, "projects": ["1"]})),
        "'projects' must be a list",
    ),
    BadAdmin("not-allowed", _not_allowed(with_default=True), "does not allow"),
    BadAdmin("not-allowed-no-default", _not_allowed(with_default=False), "does not allow"),
    BadAdmin("refused-401-deleted-key", _revoked_admin_key, "HTTP 401", calls_cekura=True),
    BadAdmin("refused-401-unknown-session", _unknown_session, "HTTP 401", calls_cekura=True),
    BadAdmin("refused-403-other-org", _foreign("other-org"), "HTTP 403", calls_cekura=True),
    BadAdmin("refused-403-read-only", _foreign("read-only"), "HTTP 403", calls_cekura=True),
    BadAdmin(
        "refused-403-api-keys-cannot-create",
        _good_api_key,
        "cannot create API keys",
        calls_cekura=True,
        mode="nocreate",
    ),
)


@pytest.mark.parametrize("case", BAD_ADMINS, ids=[c.id for c in BAD_ADMINS])
def test_a_bad_admin_secret_changes_nothing(case: BadAdmin, rig: Rig, ledger: Ledger) -> None:
    # Given a secret rotated once, then an admin configuration that cannot serve
    h = rig.harness(mode="permissive")
    h.rotate()
    h.set_mode(case.mode)
    arn, secrets = case.setup(h)
    h.via_handler = True
    token = h.start_rotation()
    before = invariants.snapshot(h.sm, h.arn, h.fake)
    seen_before = len(h.fake.requests)

    # When createSecret runs (through the handler, as Secrets Manager invokes it)
    error = h.step(Step.CREATE, token)
    ledger.bad_inputs += 1

    # Then an AdminSecretError names the admin secret and what is wrong, never a value ...
    assert_names_admin_not_value(error, arn, *secrets)
    assert case.says in str(error), str(error)
    assert f"secret={h.arn}" in str(error)
    assert "step=createSecret" in str(error)
    # ... Cekura was not called, or only with the create it refused ...
    seen = h.fake.requests[seen_before:]
    if case.calls_cekura:
        assert [(r.route, r.status in (401, 403)) for r in seen] == [("create", True)]
    else:
        assert seen == []
    # ... nothing changed, and no credential is anywhere in the output
    after = invariants.snapshot(h.sm, h.arn, h.fake)
    invariants.verify(
        ledger,
        lambda: invariants.unchanged(before, after),
        lambda: admin_credentials_absent(outputs(h), secrets),
    )
    h.check(ledger)


def test_a_repaired_admin_secret_takes_effect_at_the_next_step(rig: Rig, ledger: Ledger) -> None:
    # Given createSecret failed because the admin secret is not JSON
    h = rig.harness(mode="spec")
    session = h.fake.issue_session(h.project_id)
    arn = h.sm.create_secret(Name="cekura/admin-typo", SecretString=session)["ARN"]
    h.admin_secrets.append(AdminSecret(arn, "bearer_token", session))  # looked for in outputs
    h.configure_admin(arn)
    token = h.start_rotation()
    assert isinstance(h.step(Step.CREATE, token), AdminSecretError)

    # When an operator stores a good value, and Secrets Manager retries the same token
    h.sm.put_secret_value(SecretId=arn, SecretString=admin_secret_json("bearer_token", session))
    completed = h.drive(token)
    ledger.scenarios += 1

    # Then the rotation completes with the repaired credential (no container restart)
    assert completed, h.failures()
    h.check(ledger, completed=token, swept=True)
    h.settle(ledger, deletion_allowed=True)


# -- a dead application key -------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "kind"), [("spec", "api_key"), ("nocreate", "bearer_token")])
def test_a_dead_key_is_recovered_with_an_admin_credential(
    mode: Mode, kind: AdminKind, rig: Rig, ledger: Ledger
) -> None:
    # Given a secret rotated once whose current key was then deleted in the dashboard
    h = rig.harness(mode="permissive", admin=kind)
    h.rotate()
    h.set_mode(mode)
    dead = key_of(h, version_with_current(h))
    dead_id = h.fake.key_id(dead)
    assert dead_id is not None
    kill_key(h, dead_id)
    h.evidence.excused_key_ids.add(dead_id)

    # When it is rotated with the admin credential
    token = h.rotate()
    ledger.scenarios += 1

    # Then AWSCURRENT holds a new, live key that Cekura accepted, and the invariants hold
    assert key_of(h, token) != dead
    assert h.fake.is_live(key_of(h, token))
    h.check(ledger, completed=token)
    h.settle(ledger, deletion_allowed=deletion_allowed(mode, kind))


def test_a_dead_key_without_an_admin_credential_fails_at_create(rig: Rig, ledger: Ledger) -> None:
    # Given a secret whose current key was deleted in the dashboard, and no admin credential
    h = rig.harness(mode="spec")
    kill_key(h, h.world.bootstrap_id)
    h.via_handler = True
    token = h.start_rotation()
    before = invariants.snapshot(h.sm, h.arn, h.fake)

    # When createSecret runs
    error = h.step(Step.CREATE, token)
    ledger.bad_inputs += 1

    # Then it fails, naming the secret, the step and Cekura's refusal; nothing changed
    assert isinstance(error, RotatorError)
    assert "step=createSecret" in str(error)
    assert f"secret={h.arn}" in str(error)
    assert "HTTP 401" in str(error)
    after = invariants.snapshot(h.sm, h.arn, h.fake)
    invariants.verify(ledger, lambda: invariants.unchanged(before, after))


# -- finishSecret without its admin credential ------------------------------------------------


def _garble(h: Harness) -> None:
    admin = h.admin
    assert admin is not None
    h.sm.put_secret_value(SecretId=admin.arn, SecretString="not json " + admin.credential[:4])


FINISH_BREAKS: dict[str, Callable[[Harness], None]] = {
    # Read errors at the botocore boundary (moto cannot be told to fail them) ...
    "kms-access-denied": lambda h: h.rig.aws.arm(
        AwsFault("GetSecretValue", "kms-access-denied", secret_id=_admin_arn(h))
    ),
    "throttling": lambda h: h.rig.aws.arm(
        AwsFault("GetSecretValue", "throttling", secret_id=_admin_arn(h))
    ),
    # ... and a bad manual rotation of the admin secret between createSecret and finishSecret
    "garbled": _garble,
}


def _admin_arn(h: Harness) -> str:
    assert h.admin is not None
    return h.admin.arn


# (how, world, policy): each way of breaking the read, in both credential worlds and policies
FINISH_CASES = [
    pytest.param(how, mode, kind, policy, id=f"{how}-{mode}-{kind}-{policy}")
    for how, mode, kind, policy in (
        ("kms-access-denied", "spec", "bearer_token", "grace"),
        ("kms-access-denied", "permissive", "api_key", "immediate"),
        ("throttling", "permissive", "api_key", "grace"),
        ("throttling", "spec", "bearer_token", "immediate"),
        ("garbled", "spec", "bearer_token", "grace"),
        ("garbled", "permissive", "api_key", "immediate"),
    )
]


@pytest.mark.parametrize(("how", "mode", "kind", "policy"), FINISH_CASES)
def test_finish_with_the_admin_secret_unreadable_moves_current_and_owes(
    how: str, mode: Mode, kind: AdminKind, policy: str, rig: Rig, ledger: Ledger
) -> None:
    # Given a secret rotated once (so the next finishSecret owes a revocation under either
    # policy), and the next rotation through testSecret
    h = rig.harness(policy=policy, mode=mode, admin=kind)
    admin = h.admin
    assert admin is not None
    good_value = admin_secret_json(kind, admin.credential)
    h.via_handler = True
    h.rotate()
    owed = version_with(h, "AWSPREVIOUS" if policy == "grace" else "AWSCURRENT")
    assert owed is not None
    owed_key = key_of(h, owed)
    token = h.start_rotation()
    for step in (Step.CREATE, Step.SET, Step.TEST):
        assert h.step(step, token) is None, h.failures()

    # When finishSecret cannot read the admin secret
    FINISH_BREAKS[how](h)
    log_start = len(h.rig.logs.text)
    error = h.step(Step.FINISH, token)
    ledger.scenarios += 1

    # Then the step passed and AWSCURRENT moved to the tested key ...
    assert error is None, h.failures()
    assert "AWSCURRENT" in h.world.stages()[token]
    # ... the revocation is owed: recorded on the version, its key still live ...
    assert [e.state for e in entries(h.world.stages()) if e.version_id == owed] == [State.OWED]
    assert h.fake.is_live(owed_key)
    # ... and a warning names the admin secret (not its value)
    finish_logs = h.rig.logs.text[log_start:]
    warnings = [
        json.loads(line)
        for line in finish_logs.splitlines()
        if UNAVAILABLE_WARNING in line and line.startswith("{")
    ]
    assert warnings, finish_logs
    assert all(w["level"] == "WARNING" and admin.arn in w["error"] for w in warnings)
    h.check(ledger, completed=token)

    # When the admin secret is readable again and the next rotation runs
    h.clear_faults()
    if how == "garbled":
        h.sm.put_secret_value(SecretId=admin.arn, SecretString=good_value)
    h.rotate()

    # Then the debt is settled: deleted where the credential may delete, else left for manual
    assert State.OWED not in [e.state for e in entries(h.world.stages()) if e.version_id == owed]
    if deletion_allowed(mode, kind):
        assert not h.fake.is_live(owed_key)
    h.check(ledger)
    h.settle(ledger, deletion_allowed=deletion_allowed(mode, kind))


def test_a_replaced_admin_credential_revokes_at_the_next_rotation(rig: Rig) -> None:
    # (Its own ledger: while the rotator falls short here, its violations must not count in the
    # reliability summary, which reports the suite's 0 violations.)
    ledger = Ledger()
    # Given Cekura letting API keys delete, a secret rotated once with an admin API key, and the
    # admin key revoked in the dashboard after the next rotation's testSecret: its finishSecret
    # is answered 401 for the deletion it owes
    h = rig.harness(mode="permissive", admin="api_key")
    admin = h.admin
    assert admin is not None
    h.rotate()
    token = h.start_rotation()
    for step in (Step.CREATE, Step.SET, Step.TEST):
        assert h.step(step, token) is None, h.failures()
    admin_id = h.fake.key_id(admin.credential)
    assert admin_id is not None
    kill_key(h, admin_id)
    assert h.step(Step.FINISH, token) is None, h.failures()
    stale = [key_of(h, v) for v, s in h.world.stages().items() if any("CEKURA_" in x for x in s)]
    assert stale, "the deletion answered 401 must stay on record"

    # When an operator stores a new admin key in the admin secret (a manual rotation of it), and
    # the next rotation runs in the same container
    fresh = h.fake.issue_key(h.project_id, "admin (new)", kind="admin")
    h.sm.put_secret_value(SecretId=admin.arn, SecretString=admin_secret_json("api_key", fresh.key))
    h.admin_secrets.append(AdminSecret(admin.arn, "api_key", fresh.key))
    h.rotate()

    # Then the new credential, which may delete, revokes what is owed: the key the old one could
    # not delete, and the one this rotation supersedes. (Today the refusal of the old credential
    # is remembered for the ARN: neither is tried, both are recorded for manual deletion.)
    h.check(ledger)
    all_versions = invariants.versions(h.sm, h.arn)
    invariants.verify(
        ledger,
        lambda: invariants.debts_settled(
            h.fake, all_versions, deletion_allowed=True, excused=h.evidence.excused_key_ids
        ),
    )
    assert not any(h.fake.is_live(key) for key in stale)


# -- no admin credential in any output ------------------------------------------------------


@pytest.mark.parametrize("kind", ADMIN_KINDS)
def test_no_admin_credential_in_any_output(
    kind: AdminKind, rig: Rig, ledger: Ledger, capfd: pytest.CaptureFixture[str]
) -> None:
    # Given rotations through the handler in admin mode, including the failures an admin
    # credential can meet: refused by Cekura at create, unreadable at finish, owed revocations
    h = rig.harness(mode="spec", admin=kind)
    admin = h.admin
    assert admin is not None
    h.via_handler = True
    h.rotate()
    h.inject("create", CEKURA_FAULTS["401"])
    h.rotate()
    h.inject("delete", CEKURA_FAULTS["503-persistent"])
    h.rotate()
    token = h.start_rotation()
    for step in (Step.CREATE, Step.SET, Step.TEST):
        assert h.step(step, token) is None
    h.rig.aws.arm(AwsFault("GetSecretValue", "kms-access-denied", secret_id=admin.arn))
    assert h.step(Step.FINISH, token) is None
    h.clear_faults()
    h.rotate()
    out, err = capfd.readouterr()
    ledger.security_checks += 1

    # Then no log line, exception, traceback, return value or Lambda output holds it
    assert any(isinstance(a.error, AdminSecretError) for a in h.attempts)
    texts = outputs(h, out, err)
    assert not [t for t in texts if admin.credential in t]
    # (the checks also look for any key-shaped string, and in every version of the secret)
    h.check(ledger, extra_outputs=(out, err))


def test_the_admin_credential_travels_only_in_its_header(rig: Rig, ledger: Ledger) -> None:
    # Given every request the rotator's Cekura client sends, recorded as it leaves
    sent: list[httpx.Request] = []
    rig.cekura._http.event_hooks["request"].append(sent.append)
    h = rig.harness(mode="permissive", admin="bearer_token")
    admin = h.admin
    assert admin is not None
    # When a few rotations run
    for _ in range(3):
        h.rotate()
    ledger.security_checks += 1
    # Then the session went as a bearer token to the configured host only, never in a URL or
    # body, and never to validate (which takes the key it validates)
    with_admin = [r for r in sent if r.headers.get("Authorization") == f"Bearer {admin.credential}"]
    assert {r.method for r in with_admin} == {"POST", "GET", "DELETE"}
    assert {(r.url.host, r.url.port) for r in sent} == {("127.0.0.1", h.fake.port)}
    for request in sent:
        assert admin.credential not in str(request.url)
        assert admin.credential.encode() not in request.content
        if "/otel/validate/" in request.url.path:
            assert "Authorization" not in request.headers


# -- the fault matrix, for the admin secret's read and the admin credential's calls ---------


@dataclass(frozen=True)
class Case:
    """One failure point in admin mode. `expect`: the error the armed step raises first (None:
    the rotation goes through without a failed step). `blocked`: the fault keeps a deletion from
    happening in this rotation; `refused`: it reads as Cekura refusing deletion (recorded for
    the dashboard from then on)."""

    id: str
    step: Step
    arm: Callable[[Harness], None] = field(compare=False)
    expect: type[BaseException] | None
    mode: Mode
    kind: AdminKind
    policy: str = "grace"
    repeat: int = 1
    blocked: bool = False
    refused: bool = False


Arm = Callable[[Harness], None]
Expect = type[BaseException] | None


def _aws_admin_arm(error: str) -> Callable[[Harness], None]:
    return lambda h: h.rig.aws.arm(AwsFault("GetSecretValue", error, secret_id=_admin_arn(h)))


def _cekura_arm(route: RouteName, kind: str) -> Callable[[Harness], None]:
    return lambda h: h.inject(route, CEKURA_FAULTS[kind])


# Reading the admin secret fails in createSecret: a typed error, nothing minted; in finishSecret:
# never a failure, the revocation stays owed.
ADMIN_READ = {Step.CREATE: AdminSecretError, Step.FINISH: None}
# Cekura's answers to the admin credential's create: a refusal names the admin secret.
ADMIN_CREATE: dict[str, type[BaseException] | None] = {
    "429": None,
    "429-persistent": CekuraRateLimitedError,
    "500": CekuraUnavailableError,
    "503": CekuraUnavailableError,
    "timeout": CekuraUnavailableError,
    "lost-response": CekuraUnavailableError,
    "201-without-key": OrphanKeyError,
    "401": AdminSecretError,
    "403": AdminSecretError,
}
# ... to its deletes and listing in finishSecret: never a failure.
ADMIN_DELETE = ("503-persistent", "500", "429-persistent", "401")
ADMIN_LIST = ("503-persistent", "401")
ADMIN_FINISH: tuple[tuple[RouteName, tuple[str, ...]], ...] = (
    ("delete", ADMIN_DELETE),
    ("list", ADMIN_LIST),
)
_BLOCKING = {"503-persistent", "500", "429-persistent", "401"}
_REFUSING = {"401"}


def admin_cases(
    worlds: tuple[tuple[Mode, AdminKind], ...], policies: tuple[str, ...]
) -> list[Case]:
    return [case for m, k in worlds for p in policies for case in _cases_of(m, k, p)]


def _cases_of(mode: Mode, kind: AdminKind, policy: str) -> list[Case]:
    def case(source: str, what: str, step: Step, arm: Arm, expect: Expect, **kw: Any) -> Case:
        name = f"{source}-{mode}-{kind}-{policy}-{what}"
        return Case(name, step, arm, expect, mode=mode, kind=kind, policy=policy, **kw)

    reads = [
        case(
            "aws",
            f"{step}-admin-read-{error}",
            step,
            _aws_admin_arm(error),
            expect,
            repeat=2,  # the first retry fails too
            blocked=step is Step.FINISH,
        )
        for step, expect in ADMIN_READ.items()
        for error in AWS_ERRORS
    ]
    creates = [
        case("cekura", f"create-{fault}", Step.CREATE, _cekura_arm("create", fault), expect)
        for fault, expect in ADMIN_CREATE.items()
    ]
    finishes = [
        case(
            "cekura",
            f"{route}-{fault}",
            Step.FINISH,
            _cekura_arm(route, fault),
            None,
            blocked=fault in _BLOCKING,
            refused=fault in _REFUSING,
        )
        for route, faults in ADMIN_FINISH
        for fault in faults
        if deletion_allowed(mode, kind)  # else every delete is refused anyway
    ]
    return reads + creates + finishes


_DEFAULT_WORLDS: tuple[tuple[Mode, AdminKind], ...] = (
    ("permissive", "api_key"),
    ("nocreate", "bearer_token"),
)
_FULL_WORLDS: tuple[tuple[Mode, AdminKind], ...] = (
    *_DEFAULT_WORLDS,
    ("spec", "api_key"),
    ("spec", "bearer_token"),
    ("permissive", "bearer_token"),
)
DEFAULT = admin_cases(_DEFAULT_WORLDS, ("grace",))
FULL = admin_cases(_FULL_WORLDS, ("grace", "immediate"))
assert len({c.id for c in FULL}) == len(FULL), "scenario ids must be distinct"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.name == "test_admin_fault_then_retries":
        cases = FULL if is_full(metafunc.config) else DEFAULT
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def test_admin_fault_then_retries(case: Case, rig: Rig, ledger: Ledger) -> None:
    # Given a secret in admin mode rotated twice, so AWSPREVIOUS holds a rotator-made key
    h = rig.harness(policy=case.policy, mode=case.mode, admin=case.kind)
    h.rotate()
    h.rotate()
    before = len(h.attempts)
    token = h.start_rotation()

    # When the fault hits its step (and, for `repeat`, its retries), and Secrets Manager retries
    def arm(step: Step, attempt: int) -> None:
        if step is case.step and attempt < case.repeat:
            case.arm(h)

    completed = h.drive(token, arm=arm)
    ledger.scenarios += 1

    # Then every invariant holds (admin credential nowhere in the output) ...
    may_delete = deletion_allowed(case.mode, case.kind) and not case.blocked
    h.check(
        ledger,
        completed=token,
        swept=may_delete and case.policy != "off",
        grace_bound=may_delete and case.policy == "grace",
    )
    # ... the step failed the way it should, or not at all ...
    error = h.assert_outcome(completed, before, case.step, case.expect)
    if case.expect is AdminSecretError:
        assert h.admin is not None
        assert h.admin.arn in str(error)
    if case.id.startswith("aws-"):
        assert h.rig.aws.fired, "the AWS fault never fired"
    if case.step is Step.FINISH and case.id.startswith("aws-"):
        assert UNAVAILABLE_WARNING in h.log_text
    # ... and once the faults clear, two more rotations pay what the policy owes
    h.settle(ledger, deletion_allowed=deletion_allowed(case.mode, case.kind) and not case.refused)


def test_admin_matrix_is_large_enough() -> None:
    # Given the default and the full admin matrix  # Then both cover every admin failure point
    points = len(ADMIN_READ) * len(AWS_ERRORS) + len(ADMIN_CREATE)
    assert len(DEFAULT) >= 2 * points
    assert len(FULL) > len(DEFAULT)
