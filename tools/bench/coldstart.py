"""Cold starts, peak memory and import costs, each from a fresh interpreter (tools.bench.probe).

A scenario is one way of laying out the code a container would load:
- `shipped`: exactly what plain `sam build` produced (its makefile build ships unchecked-hash
  `.pyc`), run with `-S` so only the package and the standard library are importable, and nothing
  is written back, as in Lambda's read-only code directory.
- `sources`: the same package without its bytecode, as a build that skips the Makefile ships it:
  every module is compiled from source on every cold start.
- `venv`: without a build (`--skip-build`), the project's venv with PYTHONPATH=lambda:. and its
  bytecode caches warm; modules the package would not contain are hidden from the probe.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.bench.stand import ROOT, BenchError, Stand
from tools.bench.stats import summary

MODES = ("handler", "minimal")
# Top-level modules grouped by the dependency that brings them, for the import breakdown.
_GROUPS = {
    "boto3 + botocore": {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six"},
    "urllib3": {"urllib3"},
    "httpx stack": {"httpx", "httpcore", "h11", "anyio", "idna", "certifi", "sniffio"},
    "aws_lambda_powertools": {"aws_lambda_powertools", "typing_extensions"},
    "tenacity": {"tenacity"},
    "cekura_rotator": {"cekura_rotator"},
}
_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    pythonpath: tuple[Path, ...]
    flags: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeRun:
    """One probe process: its own timings, plus what the parent saw from outside."""

    mode: str
    wall_s: float
    peak_rss_bytes: int
    result: dict[str, Any]
    stderr: str

    @property
    def import_s(self) -> float:
        return float(self.result["import_s"])

    @property
    def first_rotation_s(self) -> float:
        return float(self.result["first_rotation_s"])

    @property
    def total_s(self) -> float:
        return self.import_s + self.first_rotation_s


def runtime_sdk() -> Path:
    """A folder standing for the Lambda runtime's own AWS SDK (/var/runtime): links to this
    venv's boto3 and its dependencies, placed after the package on the path as Lambda does."""
    folder = ROOT / "build" / "bench-runtime-sdk"
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(_closure_modules(["boto3", "botocore"])):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        link = folder / source.name
        if not link.exists():
            link.symlink_to(source)
    return folder


def shipped(directory: Path) -> Scenario:
    """The rotator's package exactly as plain `sam build` left it."""
    return Scenario(
        "shipped",
        "as plain `sam build` ships it (with its .pyc)",
        (directory, ROOT, runtime_sdk()),
        ("-S",),
        {"PYTHONDONTWRITEBYTECODE": "1"},
    )


def sources(directory: Path) -> Scenario:
    """The same package without bytecode (tools.bench.package.Package.sources)."""
    return Scenario(
        "sources",
        "the same package without .pyc",
        (directory, ROOT, runtime_sdk()),
        ("-S",),
        {"PYTHONDONTWRITEBYTECODE": "1"},
    )


def venv(*, allow: Iterable[str] = ()) -> Scenario:
    cache = ROOT / "build" / "bench-pycache"
    hidden = hidden_modules(ROOT / "requirements.txt", ROOT / "requirements-aws.txt", allow=allow)
    return Scenario(
        "venv",
        "venv, PYTHONPATH=lambda:., .pyc warm",
        (ROOT / "lambda", ROOT),
        (),
        # A private bytecode cache: warm after the first run, and the tree stays clean even when
        # PYTHONDONTWRITEBYTECODE is set (as the Makefile does).
        {"PYTHONPYCACHEPREFIX": str(cache), "BENCH_HIDE": ",".join(hidden)},
    )


def run_probe(
    stand: Stand,
    scenario: Scenario,
    mode: str,
    *,
    importtime: bool = False,
    extra_env: Mapping[str, str] | None = None,
    secret: str | None = None,
) -> ProbeRun:
    """Start a rotation, let a fresh interpreter run its four steps, check that it completed.

    The secret is a fresh one (its first rotation) unless `secret` names one to rotate again.
    """
    arn = secret or stand.new_secrets(1, f"cold-{mode}")[0]
    token = stand.start_rotations([arn])[0]
    env = {
        **stand.child_env(),
        **scenario.env,
        **(extra_env or {}),
        "PYTHONPATH": os.pathsep.join(str(p) for p in scenario.pythonpath),
        "BENCH_SECRET_ARN": arn,
        "BENCH_TOKEN": token,
    }
    flags = [*scenario.flags, *(["-X", "importtime"] if importtime else [])]
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        result_path = Path(tmp) / "result.json"
        stderr_path = Path(tmp) / "stderr"
        command = [sys.executable, *flags, "-m", "tools.bench.probe", mode, str(result_path)]
        with stderr_path.open("wb") as stderr:
            started = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
            # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the max over all.
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        errors = stderr_path.read_text(errors="replace")
        if process.returncode != 0 or not result_path.exists():
            tail = " | ".join(errors.strip().splitlines()[-3:])
            raise BenchError(f"probe {mode} ({scenario.key}) exited {process.returncode}: {tail}")
        result = json.loads(result_path.read_text())
    if not stand.is_current(arn, token):
        raise BenchError(f"probe {mode} ({scenario.key}) returned but did not rotate the secret")
    peak = int(result["peak_rss_kb"]) * 1024
    if peak < 0:
        # No /proc: fall back to ru_maxrss (bytes on macOS, KiB elsewhere), which may include
        # the bench process the child was forked from, so it can only overstate.
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return ProbeRun(mode, wall, peak, result, errors)


def measure(stand: Stand, scenario: Scenario, repeats: int) -> dict[str, Any]:
    """Median cold start of handler and minimal rotator, interleaved so drift hits both."""
    for mode in MODES:
        run_probe(stand, scenario, mode)  # warms the page cache (and, for venv, the .pyc)
    runs: dict[str, list[ProbeRun]] = {mode: [] for mode in MODES}
    for i in range(repeats):
        for mode in MODES if i % 2 == 0 else reversed(MODES):
            runs[mode].append(run_probe(stand, scenario, mode))
    figures: dict[str, Any] = {"scenario": scenario.key, "title": scenario.title}
    for mode, samples in runs.items():
        figures[mode] = {
            "import_s": statistics.median(r.import_s for r in samples),
            "first_rotation_s": statistics.median(r.first_rotation_s for r in samples),
            "total_s": statistics.median(r.total_s for r in samples),
            "total": summary([r.total_s for r in samples]),
            "process_wall_s": statistics.median(r.wall_s for r in samples),
            "peak_rss_bytes": max(r.peak_rss_bytes for r in samples),
            "steps_s": {
                step: statistics.median(float(r.result["steps_s"][step]) for r in samples)
                for step in samples[0].result["steps_s"]
            },
            "modules": samples[0].result["modules"],
        }
    figures["ratio"] = figures["handler"]["total_s"] / figures["minimal"]["total_s"]
    return figures


def import_breakdown(stand: Stand, scenario: Scenario) -> dict[str, Any]:
    """Self time of the handler's imports (`-X importtime`), summed per dependency."""
    run = run_probe(stand, scenario, "handler", importtime=True)
    groups: Counter[str] = Counter()
    total = 0
    for line in run.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match is None:
            continue
        self_us, name = int(match.group(1)), match.group(4)
        total += self_us
        groups[_group_of(name.partition(".")[0])] += self_us
    return {
        "scenario": scenario.key,
        "total_s": total / 1e6,
        "groups_s": {name: us / 1e6 for name, us in groups.most_common()},
    }


def tracer_cost(stand: Stand) -> dict[str, Any] | str:
    """What Powertools Tracer (aws-xray-sdk) would add to a cold start: import, then construct."""
    try:
        metadata.distribution("aws-xray-sdk")
    except metadata.PackageNotFoundError:
        return "aws-xray-sdk is not installed here (it is not a project dependency); skipped"
    scenario = venv(allow=_closure_modules(["aws-xray-sdk"]))
    extra = {
        # Tracer disables itself outside Lambda; this makes it patch botocore and httpx as it
        # would in production. No daemon listens, so nothing is sent.
        "LAMBDA_TASK_ROOT": str(ROOT / "lambda"),
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    }
    run_probe(stand, scenario, "tracer", extra_env=extra)  # warm the bytecode cache
    runs = [run_probe(stand, scenario, "tracer", extra_env=extra) for _ in range(3)]
    return {
        "xray_import_s": statistics.median(float(r.result["tracer_xray_import_s"]) for r in runs),
        "import_s": statistics.median(float(r.result["tracer_import_s"]) for r in runs),
        "init_s": statistics.median(float(r.result["tracer_init_s"]) for r in runs),
        "rss_delta_bytes": 1024
        * statistics.median(int(r.result["tracer_rss_delta_kb"]) for r in runs),
        "handler_import_s": statistics.median(r.import_s for r in runs),
    }


def hidden_modules(*requirements: Path, allow: Iterable[str] = ()) -> list[str]:
    """Top-level modules installed here that Lambda would not have: neither the package's nor
    the runtime's (the AWS SDK, requirements-aws.txt)."""
    names = []
    for raw in (line for path in requirements for line in path.read_text().splitlines()):
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(Requirement(line).name)
    shipped = _closure_modules(names) | {"cekura_rotator", "infra", "tools"} | set(allow)
    installed = metadata.packages_distributions()
    return sorted(
        name
        for name in installed
        if name not in shipped and name not in sys.stdlib_module_names and name.isidentifier()
    )


def _closure_modules(distributions: Iterable[str]) -> set[str]:
    """Top-level module names of these distributions and everything they require."""
    seen: set[str] = set()
    queue = [canonicalize_name(d) for d in distributions]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                queue.append(canonicalize_name(requirement.name))
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if any(canonicalize_name(d) in seen for d in dists)
    }


def _group_of(top: str) -> str:
    for group, members in _GROUPS.items():
        if top in members:
            return group
    if top in sys.stdlib_module_names or top in {"encodings", "__future__"}:
        return "stdlib"
    return "other"
