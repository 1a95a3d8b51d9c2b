"""`cekura-rotator health` and the fleet view of `status` (issue 15's CLI part), against moto
server and the fake Cekura. Both run the health check's own code (`cekura_rotator.health`).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable

import boto3

from infra.local.lambda_bridge import FUNCTION_NAME, REGION
from infra.local.stack import FUNCTION_ARN, AdminSecret, LocalStack, enable_rotation
from tests.integration.cli_harness import (
    Seeded,
    assert_no_key_material,
    cli,
    current_value,
    kill,
    lambda_client,
    seed,
)


def rotator_function(stack: LocalStack) -> str:
    """Another deployment of the rotator (its own stack): a function with the rotator's handler,
    so that a test's fleet holds only the secrets it attaches to it."""
    role = boto3.client("iam", region_name=REGION, endpoint_url=stack.moto_url).get_role(
        RoleName=f"{FUNCTION_NAME}-role"
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("cekura_rotator/handler.py", "# moto never runs this\n")
    return str(
        lambda_client(stack).create_function(
            FunctionName=f"rotator-{uuid.uuid4().hex[:8]}",
            Runtime="python3.13",
            Role=role,
            Handler="cekura_rotator.handler.lambda_handler",
            Code={"ZipFile": code.getvalue()},
            Environment={"Variables": {"CEKURA_API_URL": stack.fake.url}},
        )["FunctionArn"]
    )


def fleet(stack: LocalStack, function_arn: str, count: int) -> list[Seeded]:
    secrets = [seed(stack) for _ in range(count)]
    for secret in secrets:
        enable_rotation(stack.client(), secret.arn, function_arn=function_arn)
    return secrets


def test_fleet_status_shows_one_row_per_secret_of_the_function(stack: LocalStack) -> None:
    # Given a rotator with two secrets, one of whose keys was deleted in the dashboard
    function = rotator_function(stack)
    healthy, dead = fleet(stack, function, 2)
    session = kill(stack, dead)

    # When status runs without --secret-id, as a table and as JSON
    table = cli(stack, "status", "--function-arn", function)
    document = cli(stack, "status", "--function-arn", function, "--output", "json")

    # Then there is one row per secret, with the current key accepted or rejected, and the
    # rejected key makes it exit 1
    assert table.code == 1
    rows = {line.split()[0]: line.split() for line in table.out.splitlines()[1:]}
    assert set(rows) == {healthy.name, dead.name}
    assert table.out.splitlines()[0].split()[:2] == ["SECRET", "LAST"]
    assert "accepted" in rows[healthy.name]
    assert "rejected" in rows[dead.name]
    assert (
        f"1 secret(s) need attention (a rejected key, a stuck or overdue rotation): {dead.name}"
        in (table.err)
    )
    assert document.code == 1
    shown = {s["name"]: s for s in json.loads(document.out)["secrets"]}
    assert set(shown) == {healthy.name, dead.name}
    assert shown[dead.name]["current_key"] == "rejected"
    assert shown[healthy.name]["current_key"] == "accepted"
    assert {k: shown[healthy.name][k] for k in ("stuck", "owed", "manual")} == {
        "stuck": False,
        "owed": 0,
        "manual": 0,
    }
    assert_no_key_material(stack, table.text, document.text, extra=(session,))


def test_fleet_status_of_a_healthy_fleet_exits_0(stack: LocalStack) -> None:
    # Given a rotator whose secrets are all healthy
    function = rotator_function(stack)
    secrets = fleet(stack, function, 3)
    # When the fleet's status is asked for
    result = cli(stack, "status", "--function-arn", function, "--output", "json")
    # Then every secret is listed, accepted, and it exits 0
    assert result.code == 0, result.err
    shown = json.loads(result.out)["secrets"]
    assert sorted(s["name"] for s in shown) == sorted(s.name for s in secrets)
    assert {s["current_key"] for s in shown} == {"accepted"}


def test_fleet_status_in_a_region_without_the_rotator_says_where_it_looked(
    stack: LocalStack,
) -> None:
    # When the fleet of a region with no rotated secret is asked for
    result = cli(stack, "status", "--region", "eu-west-1")
    # Then it is an input error naming the region and account
    assert result.code == 2
    assert "no secret in region eu-west-1, account 123456789012 is rotated by a Cekura rotator" in (
        result.err
    )


def test_health_reports_a_dead_key_and_changes_nothing_without_fix(stack: LocalStack) -> None:
    # Given a secret of the rotator whose key was deleted in the dashboard
    seeded = seed(stack)
    session = kill(stack, seeded)
    before = current_value(stack.client(), seeded.arn)

    # When health runs without --fix
    result = cli(stack, "health", "--secret-id", seeded.arn)

    # Then it reports the rejected key (exit 1), and nothing changed
    assert result.code == 1
    assert "rejected" in result.out
    assert current_value(stack.client(), seeded.arn) == before
    assert_no_key_material(stack, result.text, extra=(session,))


def dead_key_with_admin(
    stack: LocalStack, allow_admin: Callable[[str], None]
) -> tuple[Seeded, AdminSecret, str]:
    """A secret whose key was deleted in the dashboard, and the function deployed with an admin
    credential for its project: the secret, the admin secret, the dashboard session."""
    seeded = seed(stack)
    admin = stack.create_admin_secret("bearer_token", project_id=seeded.project)
    allow_admin(admin.arn)
    return seeded, admin, kill(stack, seeded)


def test_health_without_fix_says_it_would_heal_and_heals_nothing(
    stack: LocalStack, allow_admin: Callable[[str], None]
) -> None:
    # Given a dead key, and the function deployed with an admin credential that could heal it
    seeded, admin, session = dead_key_with_admin(stack, allow_admin)
    before = current_value(stack.client(), seeded.arn)

    # When health runs without --fix
    result = cli(stack, "health", "--secret-id", seeded.arn)

    # Then it says which rotation it would start, and started none
    assert result.code == 1
    assert f"would start a rotation with admin secret {admin.arn}" in result.out
    assert current_value(stack.client(), seeded.arn) == before
    assert_no_key_material(stack, result.text, extra=(session, admin.credential))


def test_health_fix_heals_a_dead_key_with_the_admin_credential(
    stack: LocalStack, allow_admin: Callable[[str], None]
) -> None:
    # Given a dead key, and the function deployed with an admin credential
    seeded, admin, session = dead_key_with_admin(stack, allow_admin)

    # When health runs with --fix, as JSON
    result = cli(stack, "health", "--secret-id", seeded.arn, "--fix", "--output", "json")

    # Then it found the key rejected and healed it: a rotation minted a new, live key
    report = json.loads(result.out)
    (function,) = report["functions"]
    assert function["function_arn"] == FUNCTION_ARN
    (secret,) = function["secrets"]
    assert secret["current_key"] == "rejected"
    assert secret["actions"]
    assert report["fix"] is True
    new = current_value(stack.client(), seeded.arn)
    assert new["api_key"] != seeded.key.key
    assert stack.fake.is_live(new["api_key"])
    assert_no_key_material(stack, result.text, extra=(session, admin.credential))


def test_health_refuses_a_secret_the_function_does_not_rotate(stack: LocalStack) -> None:
    # Given a secret without rotation
    name = f"cekura/plain-{uuid.uuid4().hex[:6]}"
    stack.client().create_secret(Name=name, SecretString="x" * 20)
    # When health is asked to check it
    result = cli(stack, "health", "--secret-id", name)
    # Then it is an input error naming it
    assert result.code == 2
    assert "has no rotation function" in result.err
