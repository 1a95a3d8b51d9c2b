"""Shared by the CLI tests: the CLI run in-process, seeded secrets, and what they check (the
fixtures, one local stack per module, are in conftest.py).

RotateSecret reaches the real handler through the bridge, so every rotation, check and
bootstrap runs the real rotation steps against moto server and the fake Cekura over HTTP.
"""

from __future__ import annotations

import io
import json
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

from cekura_rotator_cli.app import main
from infra.local.fake_cekura import KEY_PREFIX, SESSION_PREFIX, IssuedKey
from infra.local.lambda_bridge import FUNCTION_NAME, REGION
from infra.local.stack import (
    FUNCTION_ARN,
    AdminKind,
    LocalStack,
    delete_in_dashboard,
    enable_rotation,
    secret_json,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

FAST = ["--poll-interval", "0.05"]
LOG_GROUP = f"/aws/lambda/{FUNCTION_NAME}"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(stack: LocalStack, *argv: str, stdin: str = "") -> Result:
    """The CLI in this process, pointed at moto server, as `cekura-rotator ARGV`."""
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--endpoint-url", stack.moto_url, *argv],
        stdin=io.StringIO(stdin),
        stdout=out,
        stderr=err,
    )
    return Result(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Seeded:
    arn: str
    name: str
    project: int
    key: IssuedKey


def seed(stack: LocalStack, **extra: Any) -> Seeded:
    """A secret in the documented format, rotation attached, as bootstrap leaves it on AWS."""
    project = stack.fake.create_project(f"p-{uuid.uuid4().hex[:6]}", organization="Acme")
    issued = stack.fake.issue_key(project, name="bootstrap")
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    client = stack.client()
    value = secret_json(issued.key, project, key_id=issued.id, key_name="bootstrap", **extra)
    arn = client.create_secret(Name=name, SecretString=value)["ARN"]
    enable_rotation(client, arn)
    return Seeded(arn, name, project, issued)


def lambda_client(stack: LocalStack) -> Any:
    return boto3.client("lambda", region_name=REGION, endpoint_url=stack.moto_url)


def kill(stack: LocalStack, seeded: Seeded) -> str:
    """Delete the key the secret was seeded with (its current key until it rotates) at Cekura,
    as a person in the dashboard would; returns their session (for scanning outputs)."""
    session = delete_in_dashboard(stack.fake, seeded.key.id, project_id=seeded.project)
    assert not stack.fake.is_live(seeded.key.key)
    return session


def admin_secret(
    stack: LocalStack,
    project: int,
    kind: AdminKind = "api_key",
    *,
    projects: list[int] | None = None,
) -> tuple[str, str]:
    """An admin secret for the project's organization: (its ARN, the credential in it)."""
    admin = stack.create_admin_secret(kind, project_id=project, projects=projects)
    return admin.arn, admin.credential


def bootstrap_argv(
    name: str,
    project: int,
    function_arn: str = FUNCTION_ARN,
    *,
    admin_secret_arn: str | None = None,
) -> list[str]:
    argv = [
        "bootstrap", "--secret-name", name, "--project-id", str(project),
        "--function-arn", function_arn,
    ]  # fmt: skip
    return argv + (["--admin-secret-arn", admin_secret_arn] if admin_secret_arn else [])


def dead_port() -> int:
    """A local port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def set_function_environment(stack: LocalStack, variables: dict[str, str]) -> None:
    """What the template sets on the function, as the CLI reads it (GetFunctionConfiguration)."""
    lam = boto3.client("lambda", region_name=REGION, endpoint_url=stack.moto_url)
    lam.update_function_configuration(
        FunctionName=FUNCTION_NAME, Environment={"Variables": variables}
    )


def stages(client: SecretsManagerClient, secret_id: str) -> dict[str, list[str]]:
    return dict(client.describe_secret(SecretId=secret_id)["VersionIdsToStages"])


def current_value(client: SecretsManagerClient, secret_id: str) -> dict[str, Any]:
    raw = client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]
    return dict(json.loads(raw))


def stored_string(client: SecretsManagerClient, secret_id: str, version_id: str) -> str | None:
    try:
        answer = client.get_secret_value(SecretId=secret_id, VersionId=version_id)
    except client.exceptions.ResourceNotFoundException:
        return None  # an AWSPENDING stub whose createSecret never stored a value
    return answer.get("SecretString")


def version_with(client: SecretsManagerClient, secret_id: str, label: str) -> str | None:
    return next((v for v, s in stages(client, secret_id).items() if label in s), None)


def assert_no_key_material(stack: LocalStack, *texts: str, extra: tuple[str, ...] = ()) -> None:
    """No key, session or other credential, and no prefix of one: every fake key starts with
    KEY_PREFIX and every session with SESSION_PREFIX. The CLI masks a value it is about to print
    as ***, so that must not appear either."""
    keys = [*stack.fake.minted_secrets(), *extra]
    assert keys
    for text in texts:
        assert KEY_PREFIX not in text
        assert SESSION_PREFIX not in text
        assert "***" not in text
        for key in keys:
            assert key not in text


def assert_one_line(err: str, command: str, secret: str) -> None:
    assert err.endswith("\n")
    assert err.count("\n") == 1
    assert f"cekura-rotator {command}: secret {secret!r}:" in err
    assert "Traceback" not in err


def rotate(stack: LocalStack, secret: str) -> str:
    """Rotate through the CLI and return the new AWSCURRENT version."""
    result = cli(stack, "rotate", "--secret-id", secret, "--wait", *FAST)
    assert result.code == 0, result.err
    new = version_with(stack.client(), secret, "AWSCURRENT")
    assert new is not None
    return new
