"""`make bench`: every figure from one run on this machine, then a table of goals and JSON.

    python -m tools.bench [--rotations N] [--scale 10,50,200] [--rate 20] [--skip-build]
                          [--aws-latency-ms 25] [--cekura-latency-ms 150] [--prod-rotations 6]
                          [--health 200,1000] [--quick]

The real handler is measured beside a minimal rotator (tools/bench/minimal.py) on the same
stand-ins in the same run, so the ratios are what matter; absolute times are this machine's.
The loopback figures measure mostly Python; the production-shaped ones add a round trip to every
call (BENCH_AWS_LATENCY_MS, BENCH_CEKURA_LATENCY_MS, or the flags), where the number of calls
decides the time. Exit status 1 means a rotation failed (the figures are then not comparable),
not that a goal was missed.
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

from infra.local.stack import patched_environ
from tools.bench import coldstart, health, memory, package, production, rotations, scale
from tools.bench.report import Report, write_json
from tools.bench.stand import ROOT, BenchError, Stand, open_stand


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("scale sizes must be positive integers")
    return sizes


def _env_ms(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a number of milliseconds, not {raw!r}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description="Benchmark the Cekura rotator."
    )
    parser.add_argument("--rotations", type=int, default=30, help="warm rotations per rotator")
    parser.add_argument("--scale", type=_sizes, default=[10, 50, 200], help="secrets at once")
    parser.add_argument(
        "--rate", type=float, default=20.0, help="Cekura requests/s in --scale and --health"
    )
    parser.add_argument(
        "--health",
        type=_sizes,
        default=list(health.SIZES),
        help="fleet sizes for the health check's figures",
    )
    parser.add_argument("--cold-repeats", type=int, default=5, help="cold starts per rotator")
    parser.add_argument("--skip-build", action="store_true", help="no sam build (no size figures)")
    parser.add_argument(
        "--aws-latency-ms",
        type=float,
        default=_env_ms("BENCH_AWS_LATENCY_MS", production.DEFAULT_AWS_MS),
        help="round trip per Secrets Manager call (env BENCH_AWS_LATENCY_MS; default 25)",
    )
    parser.add_argument(
        "--cekura-latency-ms",
        type=float,
        default=_env_ms("BENCH_CEKURA_LATENCY_MS", production.DEFAULT_CEKURA_MS),
        help="round trip per Cekura call (env BENCH_CEKURA_LATENCY_MS; default 150)",
    )
    parser.add_argument(
        "--prod-rotations", type=int, default=6, help="production-shaped rotations per policy"
    )
    parser.add_argument(
        "--memory-repeats", type=int, default=2, help="fresh processes per memory case"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: no build, 2 rotations, 1 repeat, scale 2, 2 production rotations",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "build" / "bench.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.skip_build = True
        args.rotations, args.cold_repeats, args.scale, args.health = 2, 1, [2], [3]
        args.prod_rotations, args.memory_repeats = 2, 1
    if args.rotations < 2 or args.cold_repeats < 1 or args.rate <= 0:
        parser.error("--rotations must be >= 2, --cold-repeats >= 1, --rate > 0")
    if args.prod_rotations < 1 or args.memory_repeats < 1:
        parser.error("--prod-rotations and --memory-repeats must be >= 1")
    if args.aws_latency_ms < 0 or args.cekura_latency_ms < 0:
        parser.error("latencies must be >= 0 ms")
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
        "not list or delete them) on 127.0.0.1; revocation policy grace (the default). The "
        "memory and production-shaped figures switch the fake to 'permissive' (keys may delete)."
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, open(os.devnull, "w") as devnull:
        built = package.build(Path(tmp)) if not args.skip_build else "--skip-build"
        report.package(built)
        figures["package"] = built
        slim = package.build_slim(Path(tmp)) if not args.skip_build else "--skip-build"
        report.slim(slim)
        figures["package_without_sdk"] = slim
        if isinstance(built, str):
            scenarios = [coldstart.venv()]
        else:
            # The shipped package last: the memory and import figures use the last scenario.
            scenarios = [coldstart.sources(built.sources), coldstart.shipped(built.directory)]
        try:
            with open_stand(devnull) as stand:
                failed = _measure(stand, args, scenarios, report, figures)
            # On stand-ins of its own: the account then holds only the health check's fleet.
            figures["health"] = health.run(args.health, args.rate, devnull)
            report.health(figures["health"])
            failed = failed or health.failed(figures["health"])
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

    cases = [*memory.policy_cases(), memory.admin_case(stand)]
    figures["memory"] = memory.run(stand, scenarios[-1], cases, repeats=args.memory_repeats)
    report.memory_cases(figures["memory"])

    figures["production"] = production.run(
        stand,
        aws_ms=args.aws_latency_ms,
        cekura_ms=args.cekura_latency_ms,
        rotations_per_policy=args.prod_rotations,
    )
    report.production(figures["production"])

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
