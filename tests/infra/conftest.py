"""Fixtures for the SAM template checks.

`sam_build` builds the function once per test session (per xdist worker). Tests that use it must
carry `@pytest.mark.xdist_group("sam")` so that, under `--dist loadgroup`, they share one worker
and one build instead of each worker building its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMCONFIG_PATH = REPO_ROOT / "samconfig.toml"
FUNCTION_ID = "RotatorFunction"


@dataclass(frozen=True)
class Tools:
    bin_dir: Path

    def run(self, tool: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            cwd=REPO_ROOT,
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def tool_env(extra_path: Sequence[Path] = ()) -> dict[str, str]:
    env = dict(os.environ)
    # sam validate --lint and cfn-lint need a region to resolve the spec, never credentials.
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    env["SAM_CLI_TELEMETRY"] = "0"
    env["PATH"] = os.pathsep.join([*(str(p) for p in extra_path), env.get("PATH", "")])
    return env


@pytest.fixture(scope="session")
def tools() -> Tools:
    candidates = [Path(os.environ["TOOLS_BIN"])] if os.environ.get("TOOLS_BIN") else []
    candidates.append(REPO_ROOT / ".venv-tools" / "bin")
    for candidate in candidates:
        if candidate.is_dir():
            return Tools(bin_dir=candidate)
    pytest.skip(
        "infrastructure tools not installed: neither $TOOLS_BIN nor .venv-tools/bin exists "
        "(run `make setup`)"
    )


@pytest.fixture(scope="session")
def runtime_python() -> Path:
    """The interpreter matching the Lambda runtime (python3.13), which sam build insists on."""
    found = subprocess.run(
        [str(REPO_ROOT / "scripts" / "find-python.sh"), "3.13", "--exact"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(f"python3.13 not found, sam build cannot run: {found.stderr.strip()}")
    return Path(found.stdout.strip())


@dataclass(frozen=True)
class SamBuild:
    artifact_dir: Path
    """Unzipped contents of the function package: put it on PYTHONPATH to import the handler."""
    template: Path
    seconds: float
    output: str
    """What sam build printed (stdout and stderr)."""


@pytest.fixture(scope="session")
def sam_build(
    tools: Tools, runtime_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SamBuild]:
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    # Plain `sam build` from the repo root, as a new user types it: the root samconfig.toml must
    # be found by default and must name the manifest. The two options only keep the repository's
    # .aws-sam/ untouched; they change nothing about how dependencies are resolved.
    assert SAMCONFIG_PATH.is_file(), "samconfig.toml must sit at the root, where SAM looks"
    started = time.monotonic()
    result = subprocess.run(
        [str(tools.bin_dir / "sam"), "build", "--build-dir", str(build_dir), "--no-cached"],
        cwd=REPO_ROOT,
        env=tool_env(extra_path=[runtime_python.parent]),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"sam build failed:\n{result.stdout}\n{result.stderr}"
    yield SamBuild(
        artifact_dir=build_dir / FUNCTION_ID,
        template=build_dir / "template.yaml",
        seconds=seconds,
        output=result.stdout + result.stderr,
    )
    shutil.rmtree(build_dir, ignore_errors=True)
