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


def _fail_next(
    world: World, operation: str, code: str = "InternalServiceError", *, times: int = 1
) -> list[int]:
    """Make the next `times` calls of `operation` fail as AWS would (moto cannot be told to)."""
    calls: list[int] = []

    def fail(**_: Any) -> None:
        calls.append(1)
        if len(calls) <= times:
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
    assert sum("can only be deleted in the dashboard" in line for line in logs.lines) == 1


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
def test_store_refused_after_minting_deletes_the_new_key(
    world: World, logs: LogCapture, mode: Mode
) -> None:
    # Given PutSecretValue is refused once with an error that proves it did nothing
    world.fake.mode = mode
    calls = _fail_next(world, "PutSecretValue", "LimitExceededException")
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


def test_store_failing_ambiguously_keeps_the_key_and_names_it(
    world: World, logs: LogCapture
) -> None:
    # Given PutSecretValue fails with an error after which the write may have happened
    # (botocore retried a throttled call: an earlier attempt may have been carried out)
    world.fake.mode = "permissive"
    _fail_next(world, "PutSecretValue", "ThrottlingException")
    token = world.start_rotation()
    # When createSecret runs
    with pytest.raises(SecretsStoreError, match="ThrottlingException"):
        world.step(world.rotator(), Step.CREATE, token)
    # Then the key is not deleted (it may be the stored one) and its id is in the log
    minted = [k for k in world.fake.all_keys() if k.name.endswith(token[:8])]
    assert len(minted) == 1
    assert not minted[0].deleted
    assert any(f'"key_id": {minted[0].id}' in line and "kept" in line for line in logs.lines)


def test_store_that_reports_failure_after_writing_keeps_the_key_and_completes(
    world: World, logs: LogCapture
) -> None:
    # Given PutSecretValue stores the value but its answer is lost (a 500 after the write)
    world.fake.mode = "permissive"
    lost: list[int] = []

    def lose_answer(**_: Any) -> None:
        if not lost:
            lost.append(1)
            raise ClientError({"Error": {"Code": "InternalServiceError", "Message": "x"}}, "Put")

    world.sm.meta.events.register("after-call.secrets-manager.PutSecretValue", lose_answer)
    rotator = world.rotator()
    token = world.start_rotation()
    # When the rotation runs
    for step in Step:
        world.step(rotator, step, token)
    # Then createSecret read its version back, found its key stored, and did not delete it:
    # the rotation completed onto a live key
    assert lost == [1]
    current = _value(world, VersionStage="AWSCURRENT")
    assert world.stages()[token] == ["AWSCURRENT"]
    assert world.fake.is_live(current["api_key"])
    assert any("stored although the call reported a failure" in line for line in logs.lines)


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
    manual = _recorded_key_ids(world, "CEKURA_MANUAL_")
    # Then what was deleted (or recorded for deletion in the dashboard) follows the policy
    expected = {
        "grace": {bootstrap.id, gen1.id},  # two rotations old
        "immediate": {bootstrap.id, gen1.id, gen2.id},  # each key as soon as it is superseded
        "off": set(),
    }[policy]
    if mode == "permissive":
        assert deleted == expected
        assert manual == set()
    else:
        assert deleted == set()
        assert manual == expected
    assert _recorded_key_ids(world, "CEKURA_OWED_") == set()
    # And the current key always works
    assert not gen3.deleted
    assert world.fake.is_live(_value(world, VersionStage="AWSCURRENT")["api_key"])


def test_a_refused_listing_is_not_asked_again_and_each_rotation_says_strays_wait(
    world: World, logs: LogCapture
) -> None:
    # Given Cekura refuses API keys the key listing (the current spec) and one warm container
    world.fake.mode = "spec"
    rotator = world.rotator("grace")
    # When the secret is rotated twice
    for _ in range(2):
        world.rotate(rotator)
    # Then the listing was asked once, and each finishSecret said its strays were not swept
    listings = [r for r in world.fake.requests if r.route == "list"]
    assert len(listings) == 1
    assert sum("strays are not swept" in line for line in logs.lines) == 2


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


def _recorded_key_ids(world: World, prefix: str) -> set[int]:
    """Key ids of the versions carrying an owed-revocation label with `prefix`."""
    return {
        _value(world, VersionId=version)["key_id"]
        for version, stages in world.stages().items()
        if any(s.startswith(prefix) for s in stages)
    }


@pytest.mark.parametrize("policy", ["grace", "immediate"])
def test_a_failing_delete_never_blocks_rotation_and_is_settled_later(
    world: World, policy: str
) -> None:
    # Given deletion is allowed but Cekura's DELETE answers 503 for a long while
    world.fake.mode = "permissive"
    rotator = world.rotator(policy)
    if policy == "grace":
        world.rotate(rotator)  # a key two rotations old exists only after one rotation
    world.fake.inject("delete", Fault(status=503, times=500))
    # When a rotation runs
    token = world.rotate(rotator)
    # Then it completes, and the key it owes is recorded on its version, still live
    assert world.stages()[token] == ["AWSCURRENT"]
    owed = _recorded_key_ids(world, "CEKURA_OWED_")
    assert owed == {world.bootstrap_id}
    assert world.fake.is_live(world.bootstrap_key)
    # And when the fault clears, the next rotation settles the debt and clears the record
    world.fake.clear_faults()
    world.rotate(rotator)
    assert not world.fake.is_live(world.bootstrap_key)
    assert _recorded_key_ids(world, "CEKURA_OWED_") == set()


def test_immediate_takes_awsprevious_off_the_key_it_revokes(world: World) -> None:
    # Given immediate revocation with deletion allowed
    world.fake.mode = "permissive"
    # When the secret is rotated
    world.rotate(world.rotator("immediate"))
    # Then no label points at the revoked key: AWSPREVIOUS is gone with it
    assert not world.fake.is_live(world.bootstrap_key)
    assert all("AWSPREVIOUS" not in stages for stages in world.stages().values())


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
    assert "configuration check" in world.step(world.rotator(), Step.TEST, token)
    assert "CEKURA_UNTESTED" in world.stages()[token]
    # And when the current key has been revoked, it fails clearly
    world.fake.mode = "permissive"
    httpx.delete(
        f"{world.fake.url}/user/api/v1/user-api-key/{world.bootstrap_id}/",
        headers={"X-CEKURA-API-KEY": world.bootstrap_key},
    )
    with pytest.raises(KeyValidationError, match="401"):
        world.step(world.rotator(validate_max_wait=1.0), Step.TEST, token)


@pytest.mark.parametrize("alive", [True, False])
def test_a_pending_key_test_could_not_read_is_tested_by_finish(world: World, alive: bool) -> None:
    # Given createSecret stored a new key, but testSecret's reads of it (the first and both
    # re-reads) came back "not found" (reads are not always consistent right after a write)
    world.fake.mode = "permissive"
    rotator = world.rotator(validate_max_wait=1.0)
    token = world.start_rotation()
    world.step(rotator, Step.CREATE, token)
    world.step(rotator, Step.SET, token)
    _fail_next(world, "GetSecretValue", "ResourceNotFoundException", times=3)
    world.step(rotator, Step.TEST, token)
    assert "CEKURA_UNTESTED" in world.stages()[token]
    pending = _value(world, VersionId=token, VersionStage="AWSPENDING")
    if not alive:
        httpx.delete(
            f"{world.fake.url}/user/api/v1/user-api-key/{pending['key_id']}/",
            headers={"X-CEKURA-API-KEY": world.bootstrap_key},
        )
    before = world.current()
    # When finishSecret runs
    if alive:
        world.step(rotator, Step.FINISH, token)
        # Then it tested the key itself, promoted it, and dropped the mark
        assert world.stages()[token] == ["AWSCURRENT"]
    else:
        # Then a key Cekura does not accept is never promoted
        with pytest.raises(KeyValidationError, match="401"):
            world.step(rotator, Step.FINISH, token)
        assert world.current() == before


def test_a_pending_value_read_too_early_is_read_again_and_tested(world: World) -> None:
    # Given createSecret stored a new key, and testSecret's first read of it says "not found"
    rotator = world.rotator()
    token = world.start_rotation()
    world.step(rotator, Step.CREATE, token)
    calls = _fail_next(world, "GetSecretValue", "ResourceNotFoundException")
    # When testSecret runs
    outcome = world.step(rotator, Step.TEST, token)
    # Then it read again after a short pause and tested the new key itself
    assert len(calls) >= 2
    assert world.sleeps[:1] == [0.3]
    assert "pending key works" in outcome
    assert "CEKURA_UNTESTED" not in world.stages()[token]


def test_plain_string_secret_never_loses_its_new_key_to_the_stray_sweep(
    make_world: Callable[..., World],
) -> None:
    # Given a plain-string secret, and Cekura letting API keys list and delete
    world = make_world(lambda key, project, key_id: key)
    world.fake.mode = "permissive"
    rotator = world.rotator("grace", default_project_id=world.project_id)
    # When it is rotated twice
    world.rotate(rotator)
    world.rotate(rotator)
    # Then AWSCURRENT still holds a live key, and nothing was deleted by id
    current = world.sm.get_secret_value(SecretId=world.arn, VersionStage="AWSCURRENT")
    assert world.fake.is_live(current["SecretString"])
    assert not [r for r in world.fake.requests if r.route == "delete"]


def test_a_key_held_without_key_id_or_by_a_custom_label_is_never_revoked(world: World) -> None:
    # Given deletion is allowed, an application pins the first rotation's version with its own
    # label, and an operator re-stored the current key without its key_id
    world.fake.mode = "permissive"
    rotator = world.rotator("grace")
    first = world.rotate(rotator)
    world.sm.update_secret_version_stage(
        SecretId=world.arn, VersionStage="APP_PINNED", MoveToVersionId=first
    )
    second = world.rotate(rotator)
    second_key = _value(world, VersionId=second)["api_key"]
    world.sm.put_secret_value(
        SecretId=world.arn, SecretString=secret_json(second_key, world.project_id)
    )
    pinned_key = _value(world, VersionId=first)["api_key"]
    # When the next grace rotation runs
    world.rotate(rotator)
    # Then the key that AWSPREVIOUS now holds (known there only by value) is live, and so is the
    # key pinned by the custom label; every labelled version's key is live
    assert world.fake.is_live(second_key)
    assert world.fake.is_live(pinned_key)
    held = [
        json.loads(world.value_of(v) or "{}").get("api_key")
        for v, stages in world.stages().items()
        if any(not s.startswith("CEKURA_") for s in stages)
    ]
    assert held
    assert all(world.fake.is_live(k) for k in held)
