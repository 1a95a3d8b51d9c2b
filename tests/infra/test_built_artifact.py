"""The built artifact used for real: a separate interpreter imports the handler from the `sam build`
output (with only the packaged dependencies, and an AWS SDK placed after them as the Lambda runtime
places its own) and rotates a secret on moto server and the fake.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from infra.local.fake_cekura import FakeCekura
from infra.local.lambda_bridge import FUNCTION_ARN
from infra.local.stack import DUMMY_CREDENTIALS, create_function, enable_rotation, secret_json
from tests.infra.conftest import SamBuild

# Acts as Secrets Manager: one invocation per step, each must succeed.
DRIVER = """
import json, sys
from cekura_rotator.handler import lambda_handler
from infra_context import Context
for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
    lambda_handler({"Step": step, "SecretId": sys.argv[1], "ClientRequestToken": sys.argv[2]},
                   Context())
import httpx, boto3, tenacity, aws_lambda_powertools, cekura_rotator
origins = {
    "httpx": httpx.__file__, "tenacity": tenacity.__file__,
    "powertools": aws_lambda_powertools.__file__, "pkg": cekura_rotator.__file__,
    "boto3": boto3.__file__,
}
print(json.dumps(origins))
"""

CONTEXT = """
class Context:
    function_name = "cekura-rotator"
    invoked_function_arn = "%s"
    memory_limit_in_mb = 256
    aws_request_id = "artifact-test"
    def get_remaining_time_in_millis(self):
        return 60000
"""


# -I keeps this venv out; -B because the build is shared by the session's other checks, which
# expect it as sam built it, without __pycache__ (and -I ignores PYTHONDONTWRITEBYTECODE).
ISOLATED = ("-I", "-B", "-c")


def _with_path(pythonpath: str) -> str:
    # -I ignores PYTHONPATH (and the user site), so the artifact is put on sys.path explicitly.
    return f"import sys; sys.path[:0] = {pythonpath.split(os.pathsep)!r}\n"


@pytest.fixture
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    httpx.post(f"{url}/moto-api/reset")
    httpx.post(f"{url}/moto-api/config", json={"lambda": {"use_docker": False}})
    yield url
    server.stop()


@pytest.mark.slow
@pytest.mark.xdist_group("sam")
def test_built_handler_rotates_a_secret_in_a_separate_interpreter(
    sam_build: SamBuild, runtime_python: Path, moto_url: str, tmp_path: Path
) -> None:
    # Given a secret with rotation started on moto server, and the fake Cekura
    with FakeCekura(mode="permissive") as fake:
        project = fake.create_project(name="Artifact", organization="Acme")
        issued = fake.issue_key(project_id=project, name="bootstrap")
        sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=moto_url)
        arn = sm.create_secret(
            Name="artifact", SecretString=secret_json(issued.key, project, key_id=issued.id)
        )["ARN"]
        create_function(moto_url)
        enable_rotation(sm, arn)
        token = str(uuid.uuid4())
        # moto's own Lambda does nothing here: the steps run below, in the built artifact.
        sm.rotate_secret(SecretId=arn, RotationLambdaARN=FUNCTION_ARN, ClientRequestToken=token)
        (tmp_path / "infra_context.py").write_text(CONTEXT % FUNCTION_ARN)
        # The runtime's SDK comes after the function's code (/var/task before /var/runtime).
        runtime_sdk = Path(boto3.__file__).parent.parent
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.pathsep.join(
                map(str, (sam_build.artifact_dir, tmp_path, runtime_sdk))
            ),
            "PYTHONNOUSERSITE": "1",
            **DUMMY_CREDENTIALS,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_url,
            "CEKURA_API_URL": fake.url,
            "REVOCATION_POLICY": "immediate",
        }
        # When the runtime's interpreter, isolated from this venv, runs the four steps
        result = subprocess.run(
            [str(runtime_python), *ISOLATED, _with_path(env["PYTHONPATH"]) + DRIVER, arn, token],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # Then it succeeded, using only packaged code, and the secret rotated
        assert result.returncode == 0, result.stderr[-3000:]
        origins = json.loads(result.stdout.strip().splitlines()[-1])
        sdk = origins.pop("boto3")
        for path in origins.values():
            assert str(sam_build.artifact_dir) in path
        # ... and the package leaves the AWS SDK to the runtime
        assert str(sam_build.artifact_dir) not in sdk
        assert not (sam_build.artifact_dir / "boto3").exists()
        assert not (sam_build.artifact_dir / "botocore").exists()
        stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
        assert stages[token] == ["AWSCURRENT"]
        new_key = json.loads(sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"])
        assert fake.is_live(new_key["api_key"])
        assert not fake.is_live(issued.key)
        # And nothing the child logged contains a key
        for key in fake.minted_secrets():
            assert key not in result.stdout + result.stderr
