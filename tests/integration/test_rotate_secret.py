"""The manual trigger path: moto's RotateSecret invokes the real handler for every step.

In-process moto and moto server over HTTP; the fake Cekura over HTTP in both.
"""

from __future__ import annotations

import json
import uuid
from typing import Literal

import pytest

from cekura_rotator import handler
from infra.local.fake_cekura import Fault
from infra.local.lambda_bridge import FUNCTION_ARN, FakeLambdaContext, LambdaBridge
from infra.local.stack import enable_rotation, local_stack, secret_json
from tests.conftest import World


@pytest.fixture
def bridge(world: World, monkeypatch: pytest.MonkeyPatch) -> LambdaBridge:
    monkeypatch.setenv("CEKURA_API_URL", world.fake.url)
    handler.rotator.cache_clear()
    return LambdaBridge(handler=handler.lambda_handler)


@pytest.mark.parametrize("secret_id_as", ["arn", "name"])
def test_rotate_secret_drives_all_four_steps_in_process(
    world: World, bridge: LambdaBridge, secret_id_as: Literal["arn", "name"]
) -> None:
    # Given rotation through moto, with the SecretId as AWS (ARN) or moto (name) sends it
    bridge.secret_id_as = secret_id_as
    old_key = world.bootstrap_key
    # When an operator runs rotate-secret
    with bridge.patched():
        token = world.sm.rotate_secret(SecretId=world.arn, RotationLambdaARN=FUNCTION_ARN)[
            "VersionId"
        ]
    # Then the four steps ran in order without error and AWSCURRENT moved to a working key
    assert [i.step for i in bridge.invocations] == [
        "createSecret",
        "setSecret",
        "testSecret",
        "finishSecret",
    ]
    assert bridge.failures() == []
    assert world.stages()[token] == ["AWSCURRENT"]
    new_key = world.current()
    assert old_key not in new_key
    assert world.fake.is_live(json.loads(new_key)["api_key"])


def test_rotate_immediately_false_runs_only_testsecret(world: World, bridge: LambdaBridge) -> None:
    # When rotation is checked without rotating
    with bridge.patched():
        world.sm.rotate_secret(
            SecretId=world.arn, RotationLambdaARN=FUNCTION_ARN, RotateImmediately=False
        )
    # Then only testSecret ran, it passed, and AWSCURRENT did not move
    assert [i.step for i in bridge.invocations] == ["testSecret"]
    assert bridge.failures() == []
    assert world.bootstrap_key in world.current()
    assert len(world.fake.minted_secrets()) == 1


def test_failed_step_stops_the_rotation_and_a_retry_completes(
    world: World, bridge: LambdaBridge
) -> None:
    # Given Cekura is down for the first create
    world.fake.inject("create", Fault(status=500))
    token = str(uuid.uuid4())
    with bridge.patched():
        world.sm.rotate_secret(
            SecretId=world.arn, RotationLambdaARN=FUNCTION_ARN, ClientRequestToken=token
        )
    # Then createSecret failed and no later step ran
    assert [(i.step, i.error is not None, i.skipped) for i in bridge.invocations] == [
        ("createSecret", True, False),
        ("setSecret", False, True),
        ("testSecret", False, True),
        ("finishSecret", False, True),
    ]
    assert "step=createSecret" in str(bridge.failures()[0].error)
    # When Secrets Manager retries the steps with the same token
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        handler.lambda_handler(
            {"Step": step, "SecretId": world.arn, "ClientRequestToken": token},
            FakeLambdaContext(),
        )
    # Then the rotation completed
    assert world.stages()[token] == ["AWSCURRENT"]


@pytest.mark.parametrize("mode", ["spec", "permissive"])
def test_end_to_end_over_moto_server(mode: Literal["spec", "permissive"]) -> None:
    # Given moto server and the fake Cekura over HTTP, the handler reaching both by URL
    with local_stack(mode=mode) as stack:
        project = stack.fake.create_project(name="E2E", organization="Acme")
        issued = stack.fake.issue_key(project_id=project, name="bootstrap")
        sm = stack.client()
        arn = sm.create_secret(
            Name="e2e", SecretString=secret_json(issued.key, project, key_id=issued.id)
        )["ARN"]
        enable_rotation(sm, arn)
        # When it is rotated three times through RotateSecret
        for _ in range(3):
            sm.rotate_secret(SecretId=arn, RotationLambdaARN=FUNCTION_ARN)
        # Then every step of every rotation succeeded
        steps = [i for i in stack.bridge.invocations if not i.skipped]
        assert [i.error for i in steps] == [None] * 13
        # And the current key works, and deletion followed the permission world
        stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
        current = next(v for v, s in stages.items() if "AWSCURRENT" in s)
        value = sm.get_secret_value(SecretId=arn, VersionId=current)["SecretString"]
        assert stack.fake.is_live(json.loads(value)["api_key"])
        live = stack.fake.live_keys(project)
        assert len(live) == (2 if mode == "permissive" else 4)
