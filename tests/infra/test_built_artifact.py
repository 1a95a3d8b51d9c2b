"""What plain `sam build` produces, and that artifact used for real.

The build (tests/infra/conftest.py) runs in a fresh copy of the repository with only the SAM CLI and
Python 3.13 on PATH. Its packages must hold the dependencies, the function code without the CLI,
and bytecode that Lambda's python3.13 uses as shipped. Then a separate interpreter imports the
handler from the build output (with only the packaged dependencies, and an AWS SDK placed after
them as the Lambda runtime places its own) and rotates a secret on moto server and the fake.

The health function ships the same files (checked below), its Handler's package among them; only
the rotation is run here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.local.fake_cekura import FakeCekura
from infra.local.lambda_bridge import FUNCTION_ARN
from infra.local.stack import DUMMY_CREDENTIALS, create_function, enable_rotation, secret_json
from tests.infra.cfn import REPO_ROOT, function_properties, load_template
from tests.infra.conftest import FUNCTION_IDS, SamBuild

# The issue's goal for the package as deployed (zipped, bytecode included), and Lambda's limit.
PACKAGE_ZIPPED_GOAL = 4_000_000
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# PEP 552: bit 0 of the .pyc flags = hash-based, bit 1 = check the source. Unchecked-hash: 0b01.
UNCHECKED_HASH = 0b01
# Lambda's python3.13 imports bytecode compiled for it only.
CACHE_TAG = "cpython-313"

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


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _requirement_names() -> list[str]:
    names: list[str] = []
    for raw in (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(canonicalize_name(Requirement(line).name))
    return names


def _distributions(root: Path) -> set[str]:
    """Canonical names of the distributions installed in the package (name-version.dist-info)."""
    return {
        canonicalize_name(p.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        for p in root.iterdir()
        if p.name.endswith(".dist-info")
    }


@pytest.mark.slow
@pytest.mark.xdist_group("sam")
@pytest.mark.parametrize("function_id", FUNCTION_IDS)
def test_plain_sam_build_ships_dependencies_code_and_bytecode(
    sam_build: SamBuild, function_id: str
) -> None:
    # Given one function as plain `sam build` built it in a fresh clone
    root = sam_build.artifact_dirs[function_id]
    files = _files(root)
    top_level = {p.name for p in root.iterdir()}
    sources = [p for p in files if p.suffix == ".py"]
    bytecode = [p for p in files if p.suffix == ".pyc"]
    # When its contents are listed
    # Then it was built by the Makefile's target for it (SAM's makefile build)
    assert f"{function_id}: Running CustomMakeBuilder:MakeBuild" in sam_build.output
    # ... it holds every dependency of requirements.txt, and not the SDK the runtime provides
    installed = _distributions(root)
    for name in _requirement_names():
        assert name in installed, f"{name} is not in the package"
    assert {"httpx", "aws_lambda_powertools", "tenacity", "cekura_rotator"} <= top_level
    assert not {"boto3", "botocore", "bin"} & top_level
    # ... the function's package, with the module its Handler names (a module file, or a
    # package such as cekura_rotator.health), without the operator CLI or development leftovers
    assert (root / "cekura_rotator" / "handler.py").is_file()
    handler = function_properties(load_template(sam_build.template), function_id)["Handler"]
    module = root.joinpath(*handler.rsplit(".", 1)[0].split("."))
    assert module.with_suffix(".py").is_file() or (module / "__init__.py").is_file(), handler
    assert "cekura_rotator_cli" not in top_level
    assert not (root / "cekura_rotator" / "cli.py").exists()
    assert not {"tests", ".venv", "venv", ".pytest_cache", ".mypy_cache", "lambda"} & top_level
    assert not list((root / "cekura_rotator").rglob("test_*.py"))
    # ... and for every module its bytecode, for python3.13, unchecked-hash, of this very source
    assert len(bytecode) == len(sources)
    for source in sources:
        cached = source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"
        assert cached.is_file(), f"no bytecode for {source.relative_to(root)}"
        header = cached.read_bytes()[:16]
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH, cached
        assert header[8:16] == importlib.util.source_hash(source.read_bytes()), cached


@pytest.mark.slow
@pytest.mark.xdist_group("sam")
def test_package_fits_the_size_goal_and_lambdas_limits(sam_build: SamBuild, tmp_path: Path) -> None:
    # Given the rotator's package as built
    root = sam_build.artifact_dir
    archive = tmp_path / "function.zip"
    # When it is zipped the way sam package does (deflate)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _files(root):
            zf.write(path, path.relative_to(root))
    # Then it is within the goal (4 MB with its bytecode) and far inside Lambda's limits
    assert archive.stat().st_size <= PACKAGE_ZIPPED_GOAL
    assert sum(p.stat().st_size for p in _files(root)) < LAMBDA_UNZIPPED_LIMIT


@pytest.mark.slow
@pytest.mark.xdist_group("sam")
def test_both_functions_ship_the_same_code(sam_build: SamBuild) -> None:
    # Given the two functions' packages
    rotator, health = (sam_build.artifact_dirs[f] for f in FUNCTION_IDS)
    # When their files are compared
    ours = {p.relative_to(rotator) for p in _files(rotator)}
    theirs = {p.relative_to(health) for p in _files(health)}
    # Then they hold the same files, the same sources, and the template points each at its own
    assert ours == theirs
    for relative in ours:
        if relative.suffix == ".py":
            assert (rotator / relative).read_bytes() == (health / relative).read_bytes()
    built = load_template(sam_build.template)
    for function_id in FUNCTION_IDS:
        assert function_properties(built, function_id)["CodeUri"] == function_id


# Imports the handler with its source replaced: only the shipped .pyc can make this work.
BYTECODE_DRIVER = """
import cekura_rotator.handler as handler
assert callable(handler.lambda_handler)
assert handler.__cached__.endswith("handler.%s.pyc"), handler.__cached__
print("imported from bytecode")
"""


@pytest.mark.slow
@pytest.mark.xdist_group("sam")
def test_the_shipped_bytecode_is_what_lambda_runs(
    sam_build: SamBuild, runtime_python: Path, tmp_path: Path
) -> None:
    # Given a copy of the package whose handler source no longer compiles, its .pyc untouched
    # (Lambda sees files with 1980 timestamps: only hash-based bytecode survives that)
    package = tmp_path / "task"
    shutil.copytree(sam_build.artifact_dir, package)
    (package / "cekura_rotator" / "handler.py").write_text("this is not python (\n")
    for path in _files(package):
        os.utime(path, (315532800, 315532800))  # 1980-01-01, as in SAM's zip
    runtime_sdk = Path(boto3.__file__).parent.parent
    pythonpath = os.pathsep.join(map(str, (package, runtime_sdk)))
    # When Lambda's interpreter (python3.13, nothing written back) imports the handler
    result = subprocess.run(
        [str(runtime_python), *ISOLATED, _with_path(pythonpath) + BYTECODE_DRIVER % CACHE_TAG],
        env={"PATH": os.environ["PATH"], "PYTHONNOUSERSITE": "1", **DUMMY_CREDENTIALS},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it runs the shipped bytecode, not the source
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported from bytecode" in result.stdout
