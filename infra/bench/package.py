"""The deployment package: `sam build`, its size unzipped and zipped, and what dominates it.

Also builds a precompiled copy (every module compiled to `.pyc`), because `sam build` ships
sources only and Lambda's code directory is read-only: without shipped bytecode, every cold start
compiles boto3, botocore, httpx and Powertools from source. The cold-start figures run from both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from infra.bench.stand import ROOT

FUNCTION_DIR = "RotatorFunction"
TOP_ENTRIES = 8


@dataclass
class Package:
    """A built package and its sizes (bytes)."""

    directory: Path
    precompiled: Path
    build_seconds: float
    unzipped: int
    zipped: int
    precompiled_unzipped: int
    precompiled_zipped: int
    top: list[tuple[str, int]] = field(default_factory=list)
    service_models: int = 0


def build(workdir: Path) -> Package | str:
    """Build into `workdir`; a string says why no package could be built."""
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
    command = [
        str(sam),
        "build",
        "--template-file",
        "template.yaml",
        # CodeUri (lambda/) has no manifest of its own; without this the build ships no deps.
        "--manifest",
        "requirements.txt",
        "--build-dir",
        str(build_dir),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    seconds = time.perf_counter() - started
    function_dir = build_dir / FUNCTION_DIR
    if done.returncode != 0 or not function_dir.is_dir():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return f"sam build failed ({done.returncode}): {' | '.join(tail)}"
    precompiled = workdir / "precompiled"
    shutil.copytree(function_dir, precompiled)
    # Unchecked-hash bytecode is used whatever the files' mtimes (zip rounds them to 2 s). A
    # child process, because compileall's worker pool would re-import this program's __main__.
    subprocess.run(
        [
            sys.executable,
            *("-m", "compileall", "-q", "-j", "0"),
            *("--invalidation-mode", "unchecked-hash", str(precompiled)),
        ],
        check=True,
        timeout=600,
    )
    return Package(
        directory=function_dir,
        precompiled=precompiled,
        build_seconds=seconds,
        unzipped=_tree_size(function_dir),
        zipped=_zipped_size(function_dir, workdir / "package.zip"),
        precompiled_unzipped=_tree_size(precompiled),
        precompiled_zipped=_zipped_size(precompiled, workdir / "precompiled.zip"),
        top=_top_entries(function_dir),
        service_models=_tree_size(function_dir / "botocore" / "data"),
    )


def bytecode_tag() -> str:
    """The interpreter tag baked into the `.pyc` names (Lambda's python3.13 needs cpython-313)."""
    return sys.implementation.cache_tag or "none"


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
