"""Fixtures for the SAM template checks.

`sam_build` builds the functions once per test session (per xdist worker), with plain `sam build`
in a fresh copy of the repository and nothing but the SAM CLI, Python 3.13 and the system's tools
on PATH. Tests that use it must carry `@pytest.mark.xdist_group("sam")` so that, under
`--dist loadgroup`, they share one worker and one build instead of each worker building its own.
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
FUNCTION_IDS = ("RotatorFunction", "HealthCheckFunction")
# What a machine has without this project's venvs: the shell, make, cp and the like.
SYSTEM_PATH = (Path("/usr/local/bin"), Path("/usr/bin"), Path("/bin"))
# Left out of the copy when git cannot list the files (a tarball): what .gitignore names.
_NOT_IN_A_CLONE = (
    ".git",
    ".venv",
    ".venv-tools",
    ".aws-sam",
    "build",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "*.egg-info",
)


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
    """Unzipped contents of the rotator's package: put it on PYTHONPATH to import the handler."""
    artifact_dirs: dict[str, Path]
    """Each function's package, by logical ID."""
    template: Path
    seconds: float
    output: str
    """What sam build printed (stdout and stderr)."""


def fresh_clone(destination: Path) -> Path:
    """The repository's files as a fresh clone has them, with this working tree's changes: what
    git tracks or would add, nothing it ignores (no .venv, .venv-tools, .aws-sam or caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        shutil.copytree(REPO_ROOT, destination, ignore=shutil.ignore_patterns(*_NOT_IN_A_CLONE))
        return destination
    for name in listed.stdout.decode().split("\0"):
        source = REPO_ROOT / name
        if name and source.is_file():  # a tracked file deleted in the working tree is skipped
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def bare_path(tools: Tools, runtime_python: Path, scratch: Path) -> list[Path]:
    """A PATH with the SAM CLI (alone, not its venv's python), Python 3.13 and the system."""
    sam_only = scratch / "sam-only"
    sam_only.mkdir()
    (sam_only / "sam").symlink_to(tools.bin_dir / "sam")
    return [sam_only, runtime_python.parent, *SYSTEM_PATH]


@pytest.fixture(scope="session")
def sam_build(
    tools: Tools, runtime_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SamBuild]:
    scratch = tmp_path_factory.mktemp("sam")
    clone = fresh_clone(scratch / "clone")
    assert not (clone / ".venv").exists()
    build_dir = clone / ".aws-sam" / "build"
    # Plain `sam build` at the root of a fresh clone, as a new user types it: samconfig.toml and
    # the template's makefile builds must be found by default. Only the SAM CLI and Python 3.13
    # are on PATH, and no venv is active.
    assert SAMCONFIG_PATH.is_file(), "samconfig.toml must sit at the root, where SAM looks"
    env = {
        key: value
        for key, value in tool_env().items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYENV_VERSION"}
    }
    env["PATH"] = os.pathsep.join(str(p) for p in bare_path(tools, runtime_python, scratch))
    started = time.monotonic()
    result = subprocess.run(
        ["sam", "build"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"sam build failed:\n{result.stdout}\n{result.stderr}"
    yield SamBuild(
        artifact_dir=build_dir / FUNCTION_ID,
        artifact_dirs={function_id: build_dir / function_id for function_id in FUNCTION_IDS},
        template=build_dir / "template.yaml",
        seconds=seconds,
        output=result.stdout + result.stderr,
    )
    shutil.rmtree(scratch, ignore_errors=True)
