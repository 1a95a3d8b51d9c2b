"""The guard and the four steps, on moto in-process and the fake Cekura over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from cekura_rotator.errors import (
    CekuraAuthError,
    KeyValidationError,
    RotationStateError,
    SecretFormatError,
    SecretsStoreError,
)
from cekura_rotator.steps import Step
from infra.local.fake_cekura import Fault, Mode
from infra.local.stack import secret_json
from tests.conftest import LogCapture, World


def _value(world: World, **kwargs: str) -> dict[str, Any]:
    raw = world.sm.get_secret_value(SecretId=world.arn, **kwargs)["SecretString"]
    return dict(json.loads(raw))


def _fail_next(world: World, operation: str, code: str = "InternalServiceError") -> list[int]:
    """Make the next `operation` fail as AWS would (moto cannot be told to fail)."""
    calls: list[int] = []

    def fail(**_: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)

    world.sm.meta.events.register(f"before-call.secrets-manager.{operation}", fail)
    return calls


def test_full_rotation_moves_current_to_a_new_working_key(world: World) -> None:
    # Given a secret holding the bootstrap key
    rotator = world.rotator()
    # When it is rotated through all four steps
    token = world.rotate(rotator)
    # Then AWSCURRENT is the new version, holding a new live key of the same project
    stages = world.stages()
    assert stages[token] == ["AWSCURRENT"]
    new = _value(world, VersionStage="AWSCURRENT")
    assert new["api_key"] != world.bootstrap_key
    assert world.fake.is_live(new["api_key"])
    assert new["key_id"] == world.fake.key_id(new["api_key"])
    assert new["project_id"] == world.project_id
    assert new["key_name"].endswith(token[:8])
    assert new["created_at"]
    # And the field the rotator does not own is carried over unchanged
    assert new["team"] == "qa"
    # And no version but AWSCURRENT carries AWSPENDING
    assert all("AWSPENDING" not in s for v, s in stages.items() if "AWSCURRENT" not in s)


@pytest.mark.parametrize("step", list(Step))
def test_every_step_is_safe_to_run_again(world: World, step: Step) -> None:
    # Given a rotation run up to and including `step`
    rotator = world.rotator()
    token = world.start_rotation()
    for s in Step:
        world.step(rotator, s, token)
        if s is step:
            break
    before = world.snapshot()
    minted_before = len(world.fake.minted_secrets())
    # When Secrets Manager retries the same step with the same event
    world.step(rotator, step, token)
    # Then nothing changes: no second key, no label moved
    assert world.snapshot() == before
    assert len(world.fake.minted_secrets()) == minted_before


def test_step_on_already_current_token_does_nothing(world: World) -> None:
    # Given a completed rotation
    rotator = world.rotator()
    token = world.rotate(rotator)
    before = world.snapshot()
    # When any step is replayed with its token
    outcomes = [world.step(rotator, s, token) for s in Step]
    # Then each says so and nothing changed
    assert outcomes == ["already current"] * 4
    assert world.snapshot() == before


def test_token_without_awspending_is_refused(world: World) -> None:
    # Given a rotation that completed, leaving the old version as AWSPREVIOUS
    rotator = world.rotator()
    world.rotate(rotator)
    previous = next(v for v, s in world.stages().items() if "AWSPREVIOUS" in s)
    # When a step names the AWSPREVIOUS version
    with pytest.raises(RotationStateError, match="not AWSPENDING"):
        world.step(rotator, Step.CREATE, previous)


def test_token_that_is_not_a_version_is_refused(world: World) -> None:
    with pytest.raises(RotationStateError, match="not a version"):
        world.step(world.rotator(), Step.CREATE, "0" * 36)


def test_secret_id_may_be_name_or_arn(world: World) -> None:
    # Given the secret's name instead of its ARN (moto's RotateSecret sends the name)
    name = world.sm.describe_secret(SecretId=world.arn)["Name"]
    rotator = world.rotator()
    token = world.start_rotation()
    # When the steps run with the name
    for step in Step:
        world.step(rotator, step, token, secret_id=name)
    # Then the rotation completed
    assert "AWSCURRENT" in world.stages()[token]


def test_rotation_token_is_passed_to_put_secret_value(world: World) -> None:
    # Given an event carrying a RotationToken
    seen: list[dict[str, Any]] = []
    world.sm.meta.events.register(
        "provide-client-params.secrets-manager.PutSecretValue",
        lambda params, **_: seen.append(dict(params)),
    )
    token = world.start_rotation()
    # When createSecret stores the pending value
    world.step(world.rotator(), Step.CREATE, token, rotation_token="rt-" + "x" * 40)
    # Then PutSecretValue carried it, with the token and the AWSPENDING stage
    assert seen[0]["RotationToken"] == "rt-" + "x" * 40
    assert seen[0]["ClientRequestToken"] == token
    assert seen[0]["VersionStages"] == ["AWSPENDING"]


def test_plain_string_secret_stays_plain(
    make_world: Callable[..., World], logs: LogCapture
) -> None:
    # Given a secret that is the key itself, with the project from configuration
    world = make_world(lambda key, project, key_id: key)
    rotator = world.rotator(default_project_id=world.project_id)
    # When it is rotated
    world.rotate(rotator)
    # Then the new version is again a bare key, and a live one
    new = world.current()
    assert new != world.bootstrap_key
    assert not new.startswith("{")
    assert world.fake.is_live(new)
    # And the log says once that revocation by id is impossible
    assert sum("cannot be revoked by id" in line for line in logs.lines) == 1


def test_plain_string_without_any_project_is_refused_before_minting(
    make_world: Callable[..., World],
) -> None:
    world = make_world(lambda key, project, key_id: key)
    token = world.start_rotation()
    before = world.snapshot()
    with pytest.raises(SecretFormatError, match="no project"):
        world.step(world.rotator(), Step.CREATE, token)
    assert world.snapshot() == before


def test_create_retries_429_honouring_retry_after(world: World) -> None:
    # Given Cekura throttles the first create with Retry-After: 3
    world.fake.inject("create", Fault(status=429, retry_after="3"))
    token = world.start_rotation()
    # When createSecret runs
    world.step(world.rotator(), Step.CREATE, token)
    # Then it waited what Cekura asked and stored the key minted on the second try
    assert world.sleeps == [3.0]
    assert _value(world, VersionId=token, VersionStage="AWSPENDING")["key_id"]
    assert len([r for r in world.fake.requests if r.route == "create"]) == 2


def test_create_with_a_rejected_key_changes_nothing(world: World) -> None:
    # Given Cekura rejects the current key
    world.fake.inject("create", Fault(status=401))
    token = world.start_rotation()
    before = world.snapshot()
    # When createSecret runs
    with pytest.raises(CekuraAuthError):
        world.step(world.rotator(), Step.CREATE, token)
    # Then nothing changed at AWS or Cekura, and the create was not retried
    assert world.snapshot() == before
    assert len([r for r in world.fake.requests if r.route == "create"]) == 1


@pytest.mark.parametrize("mode", ["spec", "permissive"])
def test_failed_store_after_minting_deletes_the_new_key(
    world: World, logs: LogCapture, mode: Mode
) -> None:
    # Given PutSecretValue fails once, after the key was minted
    world.fake.mode = mode
    calls = _fail_next(world, "PutSecretValue")
    token = world.start_rotation()
    # When createSecret runs
    with pytest.raises(SecretsStoreError, match="PutSecretValue"):
        world.step(world.rotator(), Step.CREATE, token)
    # Then a compensating delete was attempted for the minted key, logged by id
    minted = [k for k in world.fake.all_keys() if k.name.endswith(token[:8])]
    assert calls == [1]
    assert len(minted) == 1
    deletes = [r for r in world.fake.requests if r.route == "delete"]
    assert len(deletes) == 1
    assert minted[0].deleted is (mode == "permissive")
    assert any(f'"key_id": {minted[0].id}' in line for line in logs.lines)


def test_testsecret_fails_clearly_for_a_key_of_another_project(world: World) -> None:
    # Given a pending value whose key belongs to another project
    other = world.fake.create_project(name="Other", organization="Acme")
    foreign = world.fake.issue_key(project_id=other, name="foreign")
    token = world.start_rotation()
    world.sm.put_secret_value(
        SecretId=world.arn,
        ClientRequestToken=token,
        SecretString=secret_json(foreign.key, world.project_id),
        VersionStages=["AWSPENDING"],
    )
    # When testSecret runs, Then it fails naming the project and 403
    with pytest.raises(KeyValidationError, match=rf"project {world.project_id} \(HTTP 403\)"):
        world.step(world.rotator(), Step.TEST, token)


def test_testsecret_waits_for_a_fresh_key_to_activate(world: World) -> None:
    # Given a new key that Cekura rejects for its first two validations
    world.fake.activation_failures = 2
    rotator = world.rotator()
    token = world.start_rotation()
    world.step(rotator, Step.CREATE, token)
    # When testSecret runs, Then it retries 401 with backoff and passes
    world.step(rotator, Step.TEST, token)
    assert len(world.sleeps) == 2
    validations = [r.status for r in world.fake.requests if r.route == "validate"]
    assert validations[-3:] == [401, 401, 200]


def test_testsecret_gives_up_on_401_within_its_time_bound(world: World) -> None:
    # Given a pending key that never activates
    world.fake.activation_failures = 1000
    rotator = world.rotator(validate_max_wait=3.0)
    token = world.start_rotation()
    world.step(rotator, Step.CREATE, token)
    # When testSecret runs, Then it fails with a clear error after bounded waiting
    with pytest.raises(KeyValidationError, match="HTTP 401"):
        world.step(rotator, Step.TEST, token)
    assert 0 < sum(world.sleeps) <= 3.0


def _keys_by_generation(world: World, tokens: list[str]) -> list[Any]:
    by_name = {k.name: k for k in world.fake.all_keys()}
    return [next(k for n, k in by_name.items() if n.endswith(t[:8])) for t in tokens]


@pytest.mark.parametrize("mode", ["spec", "permissive"])
@pytest.mark.parametrize("policy", ["grace", "immediate", "off"])
def test_revocation_policy_in_each_permission_world(
    world: World, logs: LogCapture, policy: str, mode: Mode
) -> None:
    # Given Cekura in `mode` and the rotator under `policy`
    world.fake.mode = mode
    rotator = world.rotator(policy)
    # When the secret is rotated three times
    tokens = [world.rotate(rotator) for _ in range(3)]
    gen1, gen2, gen3 = _keys_by_generation(world, tokens)
    bootstrap = next(k for k in world.fake.all_keys() if k.id == world.bootstrap_id)
    deleted = {k.id for k in (bootstrap, gen1, gen2, gen3) if k.deleted}
    refused = [line for line in logs.lines if "delete this key in the dashboard" in line]
    # Then what was deleted (or refused, for the dashboard) follows the policy
    expected = {
        "grace": {bootstrap.id, gen1.id},  # two rotations old
        "immediate": {bootstrap.id, gen1.id, gen2.id},  # each key as soon as it is superseded
        "off": set(),
    }[policy]
    if mode == "permissive":
        assert deleted == expected
        assert refused == []
    else:
        assert deleted == set()
        refused_ids = {json.loads(line)["key_id"] for line in refused}
        assert refused_ids == expected
    # And the current key always works
    assert not gen3.deleted
    assert world.fake.is_live(_value(world, VersionStage="AWSCURRENT")["api_key"])


def test_grace_keeps_the_superseded_key_valid_for_one_period(world: World) -> None:
    # Given deletion is permitted
    world.fake.mode = "permissive"
    rotator = world.rotator("grace")
    # When the secret is rotated twice
    world.rotate(rotator)
    world.rotate(rotator)
    # Then the AWSPREVIOUS key, which clients may have cached, still works
    previous = _value(world, VersionStage="AWSPREVIOUS")
    assert world.fake.is_live(previous["api_key"])


def test_finish_retried_after_current_moved_completes_immediate_revocation(
    world: World,
) -> None:
    # Given an immediate-policy rotation whose finishSecret died after moving AWSCURRENT
    world.fake.mode = "permissive"
    rotator = world.rotator("immediate")
    token = world.start_rotation()
    for step in (Step.CREATE, Step.SET, Step.TEST):
        world.step(rotator, step, token)
    old = world.sm.describe_secret(SecretId=world.arn)["VersionIdsToStages"]
    old_current = next(v for v, s in old.items() if "AWSCURRENT" in s)
    world.sm.update_secret_version_stage(
        SecretId=world.arn,
        VersionStage="AWSCURRENT",
        MoveToVersionId=token,
        RemoveFromVersionId=old_current,
    )
    # When finishSecret is retried
    world.step(rotator, Step.FINISH, token)
    # Then the superseded key is deleted and AWSPENDING is gone from the new version
    assert not world.fake.is_live(world.bootstrap_key)
    assert world.stages()[token] == ["AWSCURRENT"]


def test_rotation_refused_when_not_enabled(make_world: Callable[..., World]) -> None:
    world = make_world(lambda key, project, key_id: secret_json(key, project))
    token = world.start_rotation()
    world.sm.cancel_rotate_secret(SecretId=world.arn)
    with pytest.raises(RotationStateError, match="not enabled"):
        world.step(world.rotator(), Step.CREATE, token)


def test_secret_of_another_function_is_refused(world: World) -> None:
    token = world.start_rotation()
    rotator = world.rotator()
    from cekura_rotator.steps import RotationRequest

    request = RotationRequest(Step.CREATE, world.arn, token)
    other = "arn:aws:lambda:us-east-1:123456789012:function:someone-else"
    before = world.snapshot()
    with pytest.raises(RotationStateError, match="not by this function"):
        rotator.run(request, function_arn=other)
    assert world.snapshot() == before


def test_testsecret_without_a_pending_value_checks_the_current_key(world: World) -> None:
    # Given a rotation whose pending version holds no value yet (a configuration check)
    token = world.start_rotation()
    # When testSecret runs, Then it validates the current key and passes
    assert "works for project" in world.step(world.rotator(), Step.TEST, token)
    # And when the current key has been revoked, it fails clearly
    world.fake.mode = "permissive"
    httpx.delete(
        f"{world.fake.url}/user/api/v1/user-api-key/{world.bootstrap_id}/",
        headers={"X-CEKURA-API-KEY": world.bootstrap_key},
    )
    with pytest.raises(KeyValidationError, match="401"):
        world.step(world.rotator(validate_max_wait=1.0), Step.TEST, token)
