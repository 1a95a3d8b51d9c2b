"""Health-check figures: one scheduled run over N healthy secrets, Cekura limited to `rate`.

    python -m tools.bench.health RESULT.json      (the child: one health-function container)

The stand-ins are a fresh moto account holding only the health fleet, so ListSecrets pages are
the fleet's. The run itself happens in a fresh interpreter, as a Lambda container would run it
(the venv scenario of the cold-start figures: PYTHONPATH=lambda:., modules the package lacks
hidden): it imports `cekura_rotator.health`, runs `lambda_handler` on a scheduled event with the
template's 300 s, counts its Secrets Manager calls with a botocore hook, and reports its own
VmHWM. The fake Cekura counts what reached it, accepted and throttled.

- time against the rate-limit bound: the handler's run (not the import) against accepted Cekura
  requests / rate, as the scale figures compute it (goal <= 1.2x);
- calls per healthy secret: GetSecretValue and accepted Cekura requests per secret checked
  (goal 1 + 1), beside the ListSecrets pages (one per 100 secrets of the account);
- peak RSS of the child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

RATIO_GOAL = 1.2
SIZES = (200, 1000)
# The template's Timeout for the health function.
TIMEOUT_S = 300.0
SCHEDULED = {
    "version": "0",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/cekura-rotator-health-check"],
    "detail": {},
}


def run(sizes: list[int], rate: float, devnull: TextIO) -> dict[str, Any]:
    """The fleet grown to each size in turn, one health-check run per size."""
    from tools.bench.stand import open_stand

    runs = []
    with open_stand(devnull) as stand:
        made = 0
        for size in sorted(sizes):
            stand.new_secrets(size - made, "health")
            made = size
            runs.append(measure(stand, size, rate))
    return {"rate": rate, "runs": runs}


def measure(stand: Any, count: int, rate: float) -> dict[str, Any]:
    """One health-check run in a fresh process over the stand's `count` secrets."""
    from infra.local.lambda_bridge import FUNCTION_ARN
    from tools.bench import coldstart
    from tools.bench.stand import ROOT, BenchError

    scenario = coldstart.venv()
    env = {
        **stand.child_env(),
        **scenario.env,
        "PYTHONPATH": os.pathsep.join(str(p) for p in scenario.pythonpath),
        "ROTATION_FUNCTION_ARN": FUNCTION_ARN,
        "HEALTH_CURSOR_PARAMETER": "",
    }
    fake = stand.stack.fake
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        result_path = Path(tmp) / "result.json"
        stderr_path = Path(tmp) / "stderr"
        command = [sys.executable, "-m", "tools.bench.health", str(result_path)]
        fake.reset_requests()
        fake.rate_limit = rate  # also refills the bucket: one second of burst to start with
        try:
            with stderr_path.open("wb") as stderr:
                process = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
                _, status, usage = os.wait4(process.pid, 0)
        finally:
            fake.rate_limit = None
        if os.waitstatus_to_exitcode(status) != 0 or not result_path.exists():
            tail = " | ".join(stderr_path.read_text(errors="replace").strip().splitlines()[-3:])
            raise BenchError(f"health probe over {count} secrets failed: {tail}")
        result = json.loads(result_path.read_text())
    requests = fake.requests
    throttled = sum(1 for r in requests if r.status == 429)
    accepted = len(requests) - throttled
    summary = result["summary"]
    checked = int(summary["checked"])
    aws: dict[str, int] = result["aws_calls"]
    seconds = float(result["run_s"])
    peak = int(result["peak_rss_kb"]) * 1024
    if peak < 0:
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    # Within the fake's one second of burst the rate limit binds nothing: no bound to compare.
    bound = accepted / rate if accepted > rate else None
    return {
        "secrets": count,
        "rate": rate,
        "seconds": seconds,
        "import_s": float(result["import_s"]),
        "lower_bound_s": bound,
        "ratio": seconds / bound if bound else None,
        "checked": checked,
        "rejected": int(summary["rejected"]),
        "unfinished": len(summary["unfinished"]),
        "aws_calls": aws,
        "list_pages": aws.get("ListSecrets", 0),
        "aws_per_secret": sum(n for op, n in aws.items() if op != "ListSecrets") / max(1, checked),
        "cekura_accepted": accepted,
        "cekura_429": throttled,
        "cekura_per_secret": accepted / max(1, checked),
        "cekura_routes": dict(Counter(f"{r.route} {r.status}" for r in requests)),
        "peak_rss_bytes": peak,
    }


def failed(figures: dict[str, Any]) -> bool:
    """A run that did not check every secret healthy: its figures compare nothing."""
    return any(
        run["checked"] != run["secrets"] or run["rejected"] or run["unfinished"]
        for run in figures["runs"]
    )


# -- the child ------------------------------------------------------------------------------------


class _Context:
    """What the handler and Powertools read from a Lambda context."""

    function_name = "cekura-rotator-health"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cekura-rotator-health"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-4000-8000-000000000001"
    function_version = "$LATEST"
    log_group_name = "/aws/lambda/cekura-rotator-health"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self._deadline = time.monotonic() + TIMEOUT_S

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def _child(result_path: str) -> None:
    from tools.bench.probe import _Hidden, _status_kb

    hidden = os.environ.get("BENCH_HIDE", "")
    if hidden:
        sys.meta_path.insert(0, _Hidden(frozenset(hidden.split(","))))
    started = time.perf_counter()
    import boto3

    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[str(model.name)] += 1

    # The handler's client is made from the default session after this: it carries the hook.
    session = boto3.Session()
    session.events.register("before-call.secrets-manager", count)
    boto3.DEFAULT_SESSION = session
    from cekura_rotator.health import lambda_handler

    imported = time.perf_counter()
    summary = lambda_handler(dict(SCHEDULED), _Context())
    done = time.perf_counter()
    result = {
        "import_s": imported - started,
        "run_s": done - imported,
        "summary": summary,
        "aws_calls": dict(calls),
        "peak_rss_kb": _status_kb("VmHWM"),
    }
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    _child(sys.argv[1])
