"""`pip install .` from the repository root, into a clean venv, gives a working `cekura-rotator`.

The checkout's packaging files and the two packages are copied to a temporary directory first:
pip builds in the source tree, and its `build/` and `.egg-info` must not land in the checkout
other people work in. The venv is built from scratch (no system site-packages); pip fetches
setuptools and the runtime dependencies from the package index, as an operator's pip would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from cekura_rotator import __version__
from cekura_rotator.secret_value import fingerprint
from infra.local.stack import DUMMY_CREDENTIALS, LocalStack, local_stack
from tests.integration.cli_harness import assert_no_key_material, seed

REPO_ROOT = Path(__file__).resolve().parents[2]
# What `pip install .` reads: the packaging metadata, the files it names, the two packages.
SOURCES = ("pyproject.toml", "requirements.txt", "requirements-aws.txt", "README.md", "LICENSE")
PACKAGES = ("lambda/cekura_rotator", "cli/cekura_rotator_cli")


@dataclass(frozen=True)
class Installed:
    bin_dir: Path

    def run(self, *argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "cekura-rotator"), *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    source = root / "checkout"
    for name in SOURCES:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return Installed(venv / "bin")


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH: the installed script must find everything in its own venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return {**env, **DUMMY_CREDENTIALS, **extra}


def _requirements(lines: list[str]) -> set[tuple[str, SpecifierSet]]:
    return {(r.name, r.specifier) for r in map(Requirement, lines)}


@pytest.fixture(scope="module")
def stand() -> Iterator[LocalStack]:
    with local_stack(mode="spec") as stack:
        yield stack


@pytest.mark.slow
def test_installed_script_answers_help_and_version(installed: Installed, tmp_path: Path) -> None:
    # Given the CLI installed with pip into a clean venv
    # When its help and version are asked for, from a directory outside the checkout
    help_text = installed.run("--help", env=_clean_env(), cwd=tmp_path)
    version = installed.run("--version", env=_clean_env(), cwd=tmp_path)
    # Then both answer, with every command and the one version
    assert help_text.returncode == 0, help_text.stderr
    for command in ("status", "rotate", "check", "bootstrap", "revocations"):
        assert command in help_text.stdout
    assert version.stdout.strip() == f"cekura-rotator {__version__}"


@pytest.mark.slow
def test_installed_metadata_reads_the_version_and_the_lambda_manifest(
    installed: Installed, tmp_path: Path
) -> None:
    # Given the installed distribution
    probe = (
        "import importlib.metadata as m, json; d = m.distribution('cekura-rotator'); "
        "print(json.dumps({'version': d.version, 'requires': d.requires, "
        "'files': [str(f) for f in d.files]}))"
    )
    # When its metadata is read in the venv
    result = subprocess.run(
        [str(installed.bin_dir / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    metadata = json.loads(result.stdout)
    manifest = [
        line.strip()
        for name in ("requirements.txt", "requirements-aws.txt")
        for line in (REPO_ROOT / name).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Then the version is __version__, the dependencies are the Lambda's requirements.txt and the
    # AWS SDK (which Lambda's runtime provides to the function), and both packages
    # (and nothing else of the checkout) were installed
    assert metadata["version"] == __version__
    assert _requirements(metadata["requires"]) == _requirements(manifest)
    tops = {f.split("/", 1)[0] for f in metadata["files"] if f.endswith(".py")}
    assert tops == {"cekura_rotator", "cekura_rotator_cli"}


@pytest.mark.slow
def test_installed_script_runs_status_against_moto_and_the_fake(
    installed: Installed, stand: LocalStack, tmp_path: Path
) -> None:
    # Given a bootstrapped secret on moto server
    seeded = seed(stand)

    # When the installed script asks for its status, as JSON
    result = installed.run(
        "--endpoint-url", stand.moto_url,
        "status", "--secret-id", seeded.name, "--output", "json",
        env=_clean_env(CEKURA_API_URL=stand.fake.url),
        cwd=tmp_path,
    )  # fmt: skip

    # Then it reads the secret through the installed packages and shows the key's fingerprint
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["secret"]["arn"] == seeded.arn
    fingerprints = [v["fingerprint"] for v in report["versions"] if "AWSCURRENT" in v["labels"]]
    assert fingerprints == [fingerprint(seeded.key.key)]
    assert_no_key_material(stand, result.stdout, result.stderr)


@pytest.mark.slow
def test_installed_script_reports_a_missing_secret_in_one_line(
    installed: Installed, stand: LocalStack, tmp_path: Path
) -> None:
    # Given a secret name that does not exist
    missing = f"cekura/missing-{uuid.uuid4().hex[:6]}"
    # When the installed script is asked about it
    result = installed.run(
        "--endpoint-url", stand.moto_url, "rotate", "--secret-id", missing,
        env=_clean_env(), cwd=tmp_path,
    )  # fmt: skip
    # Then it exits 2 with one line, no traceback
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"cekura-rotator rotate: secret {missing!r}:" in result.stderr
