"""The deployment package: plain `sam build`, its size unzipped and zipped, and what dominates it.

`sam build` runs the root Makefile's build-<LogicalId> targets (template.yaml: BuildMethod
makefile), so the package it ships holds unchecked-hash bytecode. The bench measures exactly that
directory. It also makes a copy without the bytecode (what `sam build` shipped before 0.3, and
what any build that skips the Makefile ships), because Lambda's code directory is read-only:
without shipped bytecode every cold start compiles httpx and Powertools from source. The
cold-start figures run from both.

And a variant without the AWS SDK (`build_slim`): `pip install --target` of requirements.txt
less boto3, botocore and the packages only they bring (s3transfer, jmespath, python-dateutil,
urllib3, six), for the function's platform, plus the code, zipped. It is what the package would
weigh if the function used the SDK the Lambda runtime includes; whatever pip brings back because
another dependency requires it is kept and named, so the figure is measured, not guessed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.bench.stand import ROOT

FUNCTION_DIR = "RotatorFunction"
TOP_ENTRIES = 8
# The AWS SDK and what only it needs, as distribution names.
SDK = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six")
# The function's platform (template.yaml: python3.13, arm64), for pip's wheel selection.
PLATFORM = ("--platform", "manylinux2014_aarch64", "--implementation", "cp")
PYTHON_VERSION = "3.13"


@dataclass
class Package:
    """A built package and its sizes (bytes)."""

    directory: Path
    """The rotator's package exactly as plain `sam build` produced it."""
    sources: Path
    """A copy of it without bytecode."""
    build_seconds: float
    unzipped: int
    zipped: int
    sources_unzipped: int
    sources_zipped: int
    bytecode_files: int
    top: list[tuple[str, int]] = field(default_factory=list)


def build(workdir: Path) -> Package | str:
    """Plain `sam build` into `workdir`; a string says why no package could be built."""
    sam = _sam()
    if sam is None:
        return "sam not found (set TOOLS_BIN to the tools venv's bin, or put sam on PATH)"
    python = _runtime_python()
    if python is None:
        return "no python3.13 found (scripts/find-python.sh 3.13 --exact); sam build needs it"
    env = {
        **os.environ,
        "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
    }
    build_dir = workdir / "sam"
    # Plain `sam build` from the root (samconfig.toml gives the template and the options); the
    # build directory only keeps the repository's .aws-sam/ untouched.
    command = [str(sam), "build", "--build-dir", str(build_dir)]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    seconds = time.perf_counter() - started
    function_dir = build_dir / FUNCTION_DIR
    if done.returncode != 0 or not function_dir.is_dir():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return f"sam build failed ({done.returncode}): {' | '.join(tail)}"
    sources = workdir / "sources-only"
    shutil.copytree(function_dir, sources, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return Package(
        directory=function_dir,
        sources=sources,
        build_seconds=seconds,
        unzipped=_tree_size(function_dir),
        zipped=_zipped_size(function_dir, workdir / "package.zip"),
        sources_unzipped=_tree_size(sources),
        sources_zipped=_zipped_size(sources, workdir / "sources.zip"),
        bytecode_files=sum(1 for _ in function_dir.rglob("*.pyc")),
        top=_top_entries(function_dir),
    )


@dataclass
class SlimPackage:
    """The package without the SDK: sizes (bytes), and what came back as a dependency."""

    unzipped: int
    zipped: int
    precompiled_unzipped: int
    precompiled_zipped: int
    build_seconds: float
    left_out: list[str]
    # SDK distributions installed anyway -> the installed distributions that require them.
    came_back: dict[str, list[str]] = field(default_factory=dict)
    top: list[tuple[str, int]] = field(default_factory=list)


def build_slim(workdir: Path, *, leave_out: Iterable[str] = SDK) -> SlimPackage | str:
    """pip install --target of requirements.txt less `leave_out`, plus lambda/, zipped; a
    string says why it could not be built (pip needs the package index)."""
    left_out: set[str] = {canonicalize_name(name) for name in leave_out}
    kept = [
        line
        for line in _requirement_lines(ROOT / "requirements.txt")
        if canonicalize_name(Requirement(line).name) not in left_out
    ]
    target = workdir / "slim"
    requirements = workdir / "slim-requirements.txt"
    requirements.write_text("\n".join(kept) + "\n")
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"),
            *("--target", str(target), *PLATFORM, "--python-version", PYTHON_VERSION),
            *("--only-binary=:all:", "-r", str(requirements)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-2:]
        return f"pip install --target failed ({done.returncode}): {' | '.join(tail)}"
    shutil.copytree(
        ROOT / "lambda",
        target,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    seconds = time.perf_counter() - started
    precompiled = workdir / "slim-precompiled"
    shutil.copytree(target, precompiled)
    _compile(precompiled)
    return SlimPackage(
        unzipped=_tree_size(target),
        zipped=_zipped_size(target, workdir / "slim.zip"),
        precompiled_unzipped=_tree_size(precompiled),
        precompiled_zipped=_zipped_size(precompiled, workdir / "slim-precompiled.zip"),
        build_seconds=seconds,
        left_out=sorted(left_out),
        came_back=_came_back(target, left_out),
        top=_top_entries(target),
    )


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def _came_back(target: Path, left_out: set[str]) -> dict[str, list[str]]:
    """Left-out distributions that pip installed anyway, with who requires them."""
    installed = {
        canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions(path=[str(target)])
    }
    back: dict[str, list[str]] = {}
    for name in sorted(left_out & set(installed)):
        back[name] = sorted(
            other
            for other, dist in installed.items()
            if any(canonicalize_name(Requirement(r).name) == name for r in dist.requires or [])
        )
    return back


def _compile(directory: Path) -> None:
    # Unchecked-hash bytecode is used whatever the files' mtimes (zip rounds them to 2 s). A
    # child process, because compileall's worker pool would re-import this program's __main__.
    subprocess.run(
        [
            sys.executable,
            *("-m", "compileall", "-q", "-j", "0"),
            *("--invalidation-mode", "unchecked-hash", str(directory)),
        ],
        check=True,
        timeout=600,
    )


def _sam() -> Path | None:
    tools = os.environ.get("TOOLS_BIN")
    if tools and (Path(tools) / "sam").is_file():
        return Path(tools) / "sam"
    found = shutil.which("sam")
    return Path(found) if found else None


def _runtime_python() -> str | None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "find-python.sh"), "3.13", "--exact"],
        capture_output=True,
        text=True,
        check=False,
    )
    path = done.stdout.strip()
    return path if done.returncode == 0 and path else None


def _tree_size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _zipped_size(path: Path, archive: Path) -> int:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                out.write(f, f.relative_to(path))
    size = archive.stat().st_size
    archive.unlink()
    return size


def _top_entries(path: Path) -> list[tuple[str, int]]:
    sizes = [
        (entry.name + "/", _tree_size(entry))
        if entry.is_dir()
        else (entry.name, entry.stat().st_size)
        for entry in path.iterdir()
    ]
    return sorted(sizes, key=lambda item: -item[1])[:TOP_ENTRIES]
