"""Printing the figures as they arrive, the closing table of goals, and the JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tools.bench import production
from tools.bench.package import Package, SlimPackage
from tools.bench.rotations import MINIMUM, REVOCATION, STEPS
from tools.bench.stats import mb, ms, spread

COLD_GOAL = 1.1  # the package as plain `sam build` ships it
WARM_GOAL = 1.25
PRODUCTION_GOAL = 1.15  # under grace
PACKAGE_GOAL = 4_000_000  # zipped, as deployed (plain `sam build`, with its .pyc)
RSS_GOAL = 90_000_000
SCALE_GOAL = 1.5
HEALTH_GOAL = 1.2


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    goal: str
    verdict: str  # PASS, MISS or "" for figures without a goal


class Report:
    """Writes sections to `out` and collects the summary rows."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.rows: list[Row] = []

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def heading(self, text: str) -> None:
        self.line()
        self.line(f"-- {text} --")

    def row(self, figure: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        self.rows.append(Row(figure, value, goal, verdict))

    # -- sections ---------------------------------------------------------------------------

    def package(self, package: Package | str) -> None:
        self.heading("Deployment package (plain sam build: python3.13, arm64, with bytecode)")
        if isinstance(package, str):
            self.line(f"  skipped: {package}")
            self.row("package size", "skipped")
            return
        self.line(f"  built in {package.build_seconds:.1f} s ({package.bytecode_files} .pyc)")
        self.line(f"  as built:      {mb(package.unzipped)} unzipped, {mb(package.zipped)} zipped")
        self.line(
            f"  without .pyc:  {mb(package.sources_unzipped)} unzipped, "
            f"{mb(package.sources_zipped)} zipped"
        )
        self.line("  largest entries (unzipped):")
        for name, size in package.top:
            self.line(f"    {name:<28} {mb(size):>9}  {100 * size / package.unzipped:4.1f}%")
        self.line(f"  goal: at most {mb(PACKAGE_GOAL)} zipped, as plain `sam build` ships it")
        self.row(
            "package zipped, as sam build ships it (.pyc)",
            f"{mb(package.zipped)} ({mb(package.unzipped)} unzipped)",
            f"<= {mb(PACKAGE_GOAL)}",
            package.zipped <= PACKAGE_GOAL,
        )

    def slim(self, slim: SlimPackage | str) -> None:
        self.line(
            "  without the AWS SDK: pip install --target of requirements.txt less the SDK, for "
            "python3.13 arm64, plus lambda/"
        )
        if isinstance(slim, str):
            self.line(f"    skipped: {slim}")
            self.row("package without the SDK", "skipped")
            return
        self.line(f"    left out: {', '.join(slim.left_out)} (built in {slim.build_seconds:.1f} s)")
        self.line(f"    as built:  {mb(slim.unzipped)} unzipped, {mb(slim.zipped)} zipped")
        self.line(
            f"    with .pyc: {mb(slim.precompiled_unzipped)} unzipped, "
            f"{mb(slim.precompiled_zipped)} zipped"
        )
        for name, requirers in slim.came_back.items():
            self.line(
                f"    {name} is in it anyway: required by {', '.join(requirers) or 'nothing named'}"
            )
        largest = ", ".join(f"{name} {mb(size)}" for name, size in slim.top[:5])
        self.line(f"    largest entries (unzipped): {largest}")
        self.row(
            "package zipped without the SDK, .pyc",
            f"{mb(slim.precompiled_zipped)} ({mb(slim.zipped)} without .pyc)",
            f"<= {mb(PACKAGE_GOAL)}",
            slim.precompiled_zipped <= PACKAGE_GOAL,
        )

    def cold(self, figures: dict[str, Any], repeats: int) -> None:
        self.heading(
            f"Cold start: fresh interpreter, import + first rotation (4 steps), median of {repeats}"
        )
        self.line(f"  {figures['title']}")
        self.line(
            f"    {'':<9} {'import':>10} {'1st rot.':>10} {'total':>10} "
            f"{'p10-p90 total':>17} {'process':>10}"
        )
        for mode in ("handler", "minimal"):
            f = figures[mode]
            total = f["total"]
            self.line(
                f"    {mode:<9} {ms(f['import_s']):>10} {ms(f['first_rotation_s']):>10} "
                f"{ms(f['total_s']):>10} "
                f"{total['p10'] * 1000:>8.0f}-{total['p90'] * 1000:.0f} ms "
                f"{ms(f['process_wall_s']):>10}"
            )
        steps = " ".join(
            f"{s[:-6]} {figures['handler']['steps_s'][s] * 1000:.0f}/"
            f"{figures['minimal']['steps_s'][s] * 1000:.0f}"
            for s in STEPS
        )
        self.line(f"    first-rotation steps, ms handler/minimal: {steps}")
        ratio = figures["ratio"]
        # The goal is for what ships; the package without bytecode is shown for comparison.
        goal = COLD_GOAL if figures["scenario"] in ("shipped", "venv") else None
        target = f" (goal <= {goal})" if goal else " (no goal: not what ships)"
        self.line(f"    ratio handler/minimal {ratio:.2f}{target}")
        self.row(
            f"cold start ratio, {figures['scenario']}",
            f"{ratio:.2f} ({ms(figures['handler']['total_s'])})",
            f"<= {goal}" if goal else "",
            ratio <= goal if goal else None,
        )

    def bytecode(self, sources: dict[str, Any], shipped: dict[str, Any]) -> None:
        saved = sources["handler"]["total_s"] - shipped["handler"]["total_s"]
        speedup = sources["handler"]["total_s"] / shipped["handler"]["total_s"]
        self.line(
            f"  the shipped .pyc save {ms(saved)} of the handler's cold start "
            f"({speedup:.1f}x faster than the same package without them): Lambda's code "
            "directory is read-only, so without them every cold start compiles every module"
        )
        self.row("cold start, sam build / without .pyc", f"{speedup:.1f}x faster (-{ms(saved)})")

    def imports(self, breakdown: dict[str, Any]) -> None:
        total = breakdown["total_s"]
        parts = ", ".join(
            f"{name} {seconds * 1000:.0f}" for name, seconds in breakdown["groups_s"].items()
        )
        self.line(
            f"  handler import by dependency (-X importtime self time, {breakdown['scenario']}, "
            f"total {ms(total)}): {parts} ms"
        )

    def tracer(self, figures: dict[str, Any] | str) -> None:
        self.heading("Powertools Tracer (aws-xray-sdk), were it added: cold-start cost")
        if isinstance(figures, str):
            self.line(f"  {figures}")
            return
        added = figures["import_s"] + figures["init_s"]
        self.line(
            f"  import aws_xray_sdk + Tracer {ms(figures['import_s'])}, Tracer() with patching "
            f"{ms(figures['init_s'])}: +{ms(added)} on a handler import of "
            f"{ms(figures['handler_import_s'])} (.pyc warm), RSS +{mb(figures['rss_delta_bytes'])}"
        )
        self.row("Tracer cold-start cost (.pyc)", f"+{ms(added)}")

    def memory(self, colds: list[dict[str, Any]]) -> None:
        self.heading("Peak memory of a process that imports the rotator and runs a rotation")
        for cold in colds:
            self.line(
                f"  {cold['title']}: handler {mb(cold['handler']['peak_rss_bytes'])}, "
                f"minimal {mb(cold['minimal']['peak_rss_bytes'])}"
            )
        self.line(
            "  (VmHWM of the probe process: ru_maxrss would include the bench process it was "
            "forked from)"
        )
        peak = max(cold["handler"]["peak_rss_bytes"] for cold in colds)
        self.row("peak RSS, handler", mb(peak), f"< {mb(RSS_GOAL)}", peak < RSS_GOAL)

    def memory_cases(self, figures: dict[str, Any]) -> None:
        self.heading(
            f"Peak memory of a full steady-state rotation per case: a fresh process each, "
            f"largest of {figures['repeats']}"
        )
        self.line(
            f"  {figures['title']}; fake Cekura permissive (the old key is deleted, strays listed)"
        )
        self.line(f"  {'case':<24} {'handler':>10} {'minimal':>10}")
        for case in figures["cases"]:
            handler = case["handler"]["peak_rss_bytes"]
            floor = case.get("minimal", {}).get("peak_rss_bytes")
            self.line(f"  {case['case']:<24} {mb(handler):>10} {mb(floor) if floor else '-':>10}")
            self.row(
                f"peak RSS, full rotation, {case['case']}",
                mb(handler),
                f"< {mb(RSS_GOAL)}",
                handler < RSS_GOAL,
            )
        self.line(f"  goal: under {mb(RSS_GOAL)} in every case, so that a 128 MB function works")

    def production(self, figures: dict[str, Any]) -> None:
        aws_ms, cekura_ms = figures["aws_ms"], figures["cekura_ms"]
        self.heading(
            f"Production-shaped: {aws_ms:g} ms per AWS call, {cekura_ms:g} ms per Cekura call "
            f"(injected client-side), {figures['rotations']} steady-state rotations each"
        )
        self.line(
            "  fake Cekura permissive (API keys may list and delete keys); the minimal rotator "
            "follows the same policy, so its calls are the minimum"
        )
        self.line(
            f"  {'policy':<10} {'handler':>10} {'minimal':>10} {'ratio':>6}   "
            f"{'AWS calls':>9} {'min':>4}   {'Cekura calls':>12} {'min':>4}   "
            f"{'waiting h/min':>15}"
        )
        for policy, f in figures["policies"].items():
            handler, floor = f["handler"], f["minimal"]
            waits = [production.waiting_s(f, n, aws_ms, cekura_ms) for n in ("handler", "minimal")]
            self.line(
                f"  {policy:<10} {ms(handler['rotation']['median']):>10} "
                f"{ms(floor['rotation']['median']):>10} {f['ratio']:>6.2f}   "
                f"{handler['aws']:>9} {floor['aws']:>4}   {handler['cekura']:>12} "
                f"{floor['cekura']:>4}   "
                f"{f'{waits[0] * 1000:.0f}/{waits[1] * 1000:.0f} ms':>15}"
            )
            if handler["calls_vary"] or floor["calls_vary"]:
                self.line("    (the calls were not the same in every rotation; shown: the last)")
        self.line(
            "  times are medians of RotateSecret round trips; waiting = calls x latency, what a "
            "rotation waits if no calls overlap"
        )
        for policy, f in figures["policies"].items():
            self.line(f"  {policy}: calls by step, handler; [beyond the minimal rotator]; ms h/min")
            for step in STEPS:
                handler, floor = f["handler"]["calls"][step], f["minimal"]["calls"][step]
                extra = {
                    **production.beyond(handler["aws_ops"], floor["aws_ops"]),
                    **production.beyond(handler["cekura_ops"], floor["cekura_ops"]),
                }
                ops = _ops(handler["aws_ops"])
                if handler["cekura_ops"]:
                    ops += "; Cekura " + _ops(handler["cekura_ops"])
                took = (
                    f"{f['handler']['steps_median_s'].get(step, 0) * 1000:.0f}/"
                    f"{f['minimal']['steps_median_s'].get(step, 0) * 1000:.0f}"
                )
                self.line(f"    {step:<13} {ops}  [{_ops(extra) or 'none'}]  {took}")
        for policy, f in figures["policies"].items():
            goal = policy == "grace"
            self.row(
                f"production-shaped ratio, {policy}",
                f"{f['ratio']:.2f} ({ms(f['handler']['rotation']['median'])} vs "
                f"{ms(f['minimal']['rotation']['median'])})",
                f"<= {PRODUCTION_GOAL}" if goal else "",
                f["ratio"] <= PRODUCTION_GOAL if goal else None,
            )
            self.row(
                f"calls/rotation, {policy} (min)",
                f"{f['handler']['aws']} AWS + {f['handler']['cekura']} Cekura "
                f"({f['minimal']['aws']} + {f['minimal']['cekura']})",
            )

    def warm(self, figures: dict[str, Any]) -> None:
        self.heading(
            f"Rotation through RotateSecret, one process, loopback stand-ins "
            f"({figures['rotations']} each, interleaved)"
        )
        for mode in ("handler", "minimal"):
            f = figures[mode]
            self.line(
                f"  {mode:<8} later: {spread(f['later'])}, IQR "
                f"{f['later']['p25'] * 1000:.1f}-{f['later']['p75'] * 1000:.1f}; "
                f"first with new clients: {ms(f['first']['median'])}"
            )
        steps = " ".join(
            f"{s[:-6]} {figures['handler']['steps_median_s'][s] * 1000:.1f}/"
            f"{figures['minimal']['steps_median_s'][s] * 1000:.1f}"
            for s in STEPS
        )
        self.line(f"  per step, median ms handler/minimal: {steps}")
        ratio = figures["ratio"]
        self.line(f"  ratio handler/minimal {ratio:.2f} (goal <= {WARM_GOAL})")
        self.row(
            "first / later rotation, handler",
            f"{ms(figures['handler']['first']['median'])} / "
            f"{ms(figures['handler']['later']['median'])}",
        )
        self.row(
            "warm rotation ratio",
            f"{ratio:.2f} ({ms(figures['handler']['later']['median'])})",
            f"<= {WARM_GOAL}",
            ratio <= WARM_GOAL,
        )
        if "handler_no_revocation" in figures:
            other = figures["handler_no_revocation"]
            self.line(
                f"  handler with REVOCATION_POLICY=off: {spread(other['later'])}, "
                f"ratio {other['ratio']:.2f} (its calls beyond the minimal's: see the "
                "production-shaped table, policy off)"
            )
            self.row("warm ratio, revocation off", f"{other['ratio']:.2f}")

    def calls(self, figures: dict[str, Any]) -> None:
        self.heading("Calls per rotation: handler steady (its first rotation), minimal, minimum")
        self.line(
            f"  {'step':<13} {'AWS: handler':>14} {'minimal':>8} {'minimum':>8}   "
            f"{'Cekura: handler':>15} {'minimal':>8} {'minimum':>8}"
        )
        totals = [0, 0, 0, 0, 0, 0]
        handler, smallest = figures["handler"], figures["minimal"]["steady"]
        for step in STEPS:
            steady, first = handler["steady"][step], handler["first"][step]
            least_aws, least_cekura, _ = MINIMUM[step]
            if step == "finishSecret":
                least_aws += REVOCATION[0]
                least_cekura += REVOCATION[1]
            values = [
                steady["aws"],
                first["aws"],
                smallest[step]["aws"],
                least_aws,
                steady["cekura"],
                first["cekura"],
                smallest[step]["cekura"],
                least_cekura,
            ]
            self.line(
                f"  {step:<13} {values[0]:>9} ({values[1]}) {values[2]:>8} {values[3]:>8}   "
                f"{values[4]:>10} ({values[5]}) {values[6]:>8} {values[7]:>8}"
            )
            for i, v in enumerate((values[0], values[2], values[3], values[4], values[6])):
                totals[i] += v
            totals[5] += values[7]
        self.line(
            f"  {'total':<13} {totals[0]:>13} {totals[1]:>8} {totals[2]:>8}   "
            f"{totals[3]:>14} {totals[4]:>8} {totals[5]:>8}"
        )
        self.line(
            "  (in brackets: a secret's first rotation, with no AWSPREVIOUS key to revoke yet)"
        )
        self.line("  handler calls by operation, steady state:")
        for step in STEPS:
            aws = _ops(handler["steady"][step]["aws_ops"])
            cekura = _ops(handler["steady"][step]["cekura_ops"])
            self.line(f"    {step:<13} {aws}{'; Cekura ' + cekura if cekura else ''}")
        self.line("  minimum, and why (finishSecret's includes revoking the superseded key):")
        for step in STEPS:
            self.line(f"    {step:<13} {MINIMUM[step][2]}")
        self.line(
            "    finishSecret  + GetSecretValue AWSPREVIOUS (the old key and its id); Cekura: "
            "delete, authorised by the old key itself"
        )
        self.row(
            "calls/rotation, handler (min)",
            f"{totals[0]} AWS + {totals[3]} Cekura ({totals[2]} + {totals[5]})",
        )

    def scale(self, runs: list[dict[str, Any]], free: list[dict[str, Any]], rate: float) -> None:
        self.heading(
            f"Scale: N secrets rotating at once (a thread per container), Cekura at {rate:g} "
            "req/s (429 + Retry-After)"
        )
        self.line(
            f"  {'N':>4} {'time':>8} {'bound':>8} {'ratio':>6} {'ok/fail':>8} {'AWS':>6} "
            f"{'Cekura':>7} {'429s':>6} {'rotation med/max':>17} {'no limit':>9}"
        )
        previous: dict[str, Any] | None = None
        for run, unlimited in zip(runs, free, strict=True):
            self.line(
                f"  {run['secrets']:>4} {run['seconds']:>7.1f}s {run['lower_bound_s']:>7.1f}s "
                f"{run['ratio']:>6.2f} {run['completed']:>4}/{run['failed']:<3} "
                f"{run['aws_calls']:>6} {run['cekura_accepted']:>7} {run['cekura_429']:>6} "
                f"{_seconds(run['rotation_median_s']):>8}/{_seconds(run['rotation_max_s']):<8} "
                f"{unlimited['seconds']:>8.1f}s"
            )
            for error in run["errors"]:
                self.line(f"       failure: {error[:150]}")
            if previous is not None:
                grow = run["secrets"] / previous["secrets"]
                self.line(
                    f"       x{grow:g} secrets: time x{run['seconds'] / previous['seconds']:.1f}, "
                    f"Cekura calls x{run['cekura_accepted'] / previous['cekura_accepted']:.1f}, "
                    f"429s x{run['cekura_429'] / max(1, previous['cekura_429']):.1f}"
                )
            previous = run
            ok = run["failed"] == 0 and run["completed"] == run["secrets"]
            self.row(
                f"scale {run['secrets']} secrets",
                f"{run['ratio']:.2f}x bound, {run['completed']}/{run['secrets']} done",
                f"<= {SCALE_GOAL}x, 0 fail",
                ok and run["ratio"] <= SCALE_GOAL,
            )
        self.line(
            "  bound = accepted Cekura requests / rate; 'no limit' = the same N unthrottled, "
            "the floor that moto server and this machine's 2 cores set"
        )

    def health(self, figures: dict[str, Any]) -> None:
        rate = figures["rate"]
        self.heading(
            f"Health check: one scheduled run over N healthy secrets (a fresh process), Cekura at "
            f"{rate:g} req/s (429 + Retry-After)"
        )
        self.line(
            f"  {'N':>5} {'time':>8} {'bound':>8} {'ratio':>6} {'checked':>8} "
            f"{'AWS/secret':>11} {'Cekura/secret':>14} {'429s':>5} {'ListSecrets':>12} "
            f"{'peak RSS':>9}"
        )
        for run in figures["runs"]:
            ratio, bound = run["ratio"], run["lower_bound_s"]
            self.line(
                f"  {run['secrets']:>5} {run['seconds']:>7.1f}s "
                f"{f'{bound:.1f}s' if bound else '-':>8} {f'{ratio:.2f}' if ratio else '-':>6} "
                f"{run['checked']:>8} {run['aws_per_secret']:>11.2f} "
                f"{run['cekura_per_secret']:>14.2f} {run['cekura_429']:>5} "
                f"{run['list_pages']:>12} {mb(run['peak_rss_bytes']):>9}"
            )
            done = run["checked"] == run["secrets"] and not run["unfinished"]
            if ratio is None:
                self.row(
                    f"health check, {run['secrets']} secrets",
                    f"within Cekura's burst ({run['seconds']:.1f} s), "
                    f"{run['checked']}/{run['secrets']}",
                    "all checked",
                    done,
                )
            else:
                self.row(
                    f"health check, {run['secrets']} secrets",
                    f"{ratio:.2f}x bound ({run['seconds']:.1f} s), "
                    f"{run['checked']}/{run['secrets']}",
                    f"<= {HEALTH_GOAL}x",
                    done and ratio <= HEALTH_GOAL,
                )
            self.row(
                f"health calls/healthy secret, {run['secrets']}",
                f"{run['aws_per_secret']:.2f} AWS + {run['cekura_per_secret']:.2f} Cekura "
                f"(+ {run['list_pages']} ListSecrets pages)",
                "1 AWS + 1 Cekura",
                run["aws_per_secret"] <= 1 and run["cekura_per_secret"] <= 1,
            )
            self.row(
                f"peak RSS, health check {run['secrets']}",
                mb(run["peak_rss_bytes"]),
                f"< {mb(RSS_GOAL)}",
                run["peak_rss_bytes"] < RSS_GOAL,
            )
        self.line(
            "  bound = accepted Cekura requests / rate (none within the first second's burst); "
            "time = the handler's run, import apart; "
            "AWS/secret = GetSecretValue per secret checked (ListSecrets pages apart, one per 100 "
            "secrets of the account)"
        )

    def summary(self) -> None:
        self.line()
        self.line("== Summary ==")
        width = max(len(r.figure) for r in self.rows)
        value_width = max(len(r.value) for r in self.rows)
        for r in self.rows:
            self.line(f"  {r.figure:<{width}}  {r.value:<{value_width}}  {r.goal:<17} {r.verdict}")


def write_json(path: Path, figures: dict[str, Any], rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**figures, "summary": [r.__dict__ for r in rows]}
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Package | SlimPackage):
        return {k: v for k, v in value.__dict__.items() if not isinstance(v, Path)}
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in counts.items())


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
