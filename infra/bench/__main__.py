"""`make bench`: every figure from one run on this machine, then a table of goals and JSON.

    python -m infra.bench [--rotations N] [--scale 10,50,200] [--rate 20] [--skip-build]

The real handler is measured beside a minimal rotator (infra/bench/minimal.py) on the same
stand-ins in the same run, so the ratios are what matter; absolute times are this machine's and
loopback's. Exit status 1 means a rotation failed (the figures are then not comparable), not that
a goal was missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from infra.bench import coldstart, package, rotations, scale
from infra.bench.report import Report, write_json
from infra.bench.stand import ROOT, BenchError, Stand, open_stand
from infra.local.stack import patched_environ


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("scale sizes must be positive integers")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.bench", description="Benchmark the Cekura rotator."
    )
    parser.add_argument("--rotations", type=int, default=30, help="warm rotations per rotator")
    parser.add_argument("--scale", type=_sizes, default=[10, 50, 200], help="secrets at once")
    parser.add_argument("--rate", type=float, default=20.0, help="Cekura requests/s in --scale")
    parser.add_argument("--cold-repeats", type=int, default=5, help="cold starts per rotator")
    parser.add_argument("--skip-build", action="store_true", help="no sam build (no size figures)")
    parser.add_argument("--json", type=Path, default=ROOT / "build" / "bench.json")
    args = parser.parse_args(argv)
    if args.rotations < 2 or args.cold_repeats < 1 or args.rate <= 0:
        parser.error("--rotations must be >= 2, --cold-repeats >= 1, --rate > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(sys.stdout)
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "machine": _machine(),
        "args": {**vars(args), "json": str(args.json)},
    }
    m = figures["machine"]
    report.line(
        f"== Cekura rotator bench: Python {m['python']} on {m['system']} {m['arch']}, "
        f"{m['cpus']} CPUs; boto3 {m['boto3']}, moto {m['moto']} =="
    )
    report.line(
        "Stand-ins: moto server and the fake Cekura ('spec' mode: API keys may create keys, "
        "not list or delete them) on 127.0.0.1; revocation policy grace (the default)."
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, open(os.devnull, "w") as devnull:
        built = package.build(Path(tmp)) if not args.skip_build else "--skip-build"
        report.package(built)
        figures["package"] = built
        if isinstance(built, str):
            scenarios = [coldstart.venv()]
        else:
            scenarios = [
                coldstart.shipped(built.directory),
                coldstart.precompiled(built.precompiled),
            ]
        try:
            with open_stand(devnull) as stand:
                failed = _measure(stand, args, scenarios, report, figures)
        except BenchError as e:
            report.line(f"\nbench aborted: {e}")
            return 1
    report.summary()
    figures["seconds"] = time.perf_counter() - started
    write_json(args.json, figures, report.rows)
    shown = args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json
    report.line(f"\nwritten to {shown}; the run took {figures['seconds']:.0f} s")
    return 1 if failed else 0


def _measure(
    stand: Stand,
    args: argparse.Namespace,
    scenarios: list[coldstart.Scenario],
    report: Report,
    figures: dict[str, Any],
) -> bool:
    """Every figure taken on the stand-ins, in order; True if a scale rotation failed."""
    colds = []
    for scenario in scenarios:
        colds.append(coldstart.measure(stand, scenario, args.cold_repeats))
        report.cold(colds[-1], args.cold_repeats)
    figures["cold_start"] = colds
    if len(colds) == 2:
        report.bytecode(*colds)
    figures["imports"] = coldstart.import_breakdown(stand, scenarios[-1])
    report.imports(figures["imports"])
    report.memory(colds)
    figures["tracer"] = coldstart.tracer_cost(stand)
    report.tracer(figures["tracer"])

    warm = rotations.measure_time(stand, args.rotations)
    with patched_environ({"REVOCATION_POLICY": "off"}):
        off = rotations.measure_time(stand, args.rotations)
    rotations.reset_clients()
    warm["handler_no_revocation"] = {"later": off["handler"]["later"], "ratio": off["ratio"]}
    figures["warm"] = warm
    report.warm(warm)
    figures["calls"] = rotations.count_calls(stand)
    report.calls(figures["calls"])

    limited, free = [], []
    for count in args.scale:
        free.append(scale.run(stand, count, None))
        limited.append(scale.run(stand, count, args.rate))
    figures["scale"] = {"rate": args.rate, "limited": limited, "unlimited": free}
    report.scale(limited, free, args.rate)
    return any(run["failed"] or run["completed"] < run["secrets"] for run in limited)


def _machine() -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "python": platform.python_version(),
        "system": platform.system(),
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "boto3": version("boto3"),
        "moto": version("moto"),
        "httpx": version("httpx"),
        "powertools": version("aws-lambda-powertools"),
        "at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


if __name__ == "__main__":
    sys.exit(main())
