"""Many secrets rotating at once against a rate-limited Cekura.

Each thread stands in for a Lambda container: its own Rotator, its own boto3 client and Cekura
connection pool, and a fresh deadline per step (the function's timeout). All threads start
together, so the fake Cekura sees the herd a fleet-wide rotation window would send it. The
production configuration is used (not the local stack's shortened validate wait).

Threads share this machine's cores and the GIL, where containers would each have their own CPU,
so a run without the rate limit is timed too: it is the floor the stand-ins themselves impose.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import boto3

from cekura_rotator.cekura import CekuraClient
from cekura_rotator.config import Config
from cekura_rotator.secrets_store import SecretsStore
from cekura_rotator.steps import RotationRequest, Rotator, Step
from infra.local.lambda_bridge import FUNCTION_ARN
from tools.bench.stand import AwsCallLog, Stand

# The template's Timeout: Secrets Manager invokes each step separately, each with this budget.
STEP_TIMEOUT = 60.0


def run(stand: Stand, count: int, rate: float | None) -> dict[str, Any]:
    """Rotate `count` fresh secrets concurrently; Cekura limited to `rate` requests/s (or not)."""
    arns = stand.new_secrets(count, f"scale{count}-{'limited' if rate else 'free'}")
    tokens = stand.start_rotations(arns)
    fake = stand.stack.fake
    # One session makes every container's client: botocore sessions are not thread-safe, and
    # each new one would load the service model again. Each client has its own connection pool.
    session = boto3.Session()
    containers = [_Container(session, fake.url) for _ in range(count)]
    durations: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count + 1)

    def rotate(i: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        step = Step.CREATE
        try:
            for step in Step:
                request = RotationRequest(step, arns[i], tokens[i])
                deadline = time.monotonic() + STEP_TIMEOUT
                containers[i].rotator.run(request, deadline=deadline, function_arn=FUNCTION_ARN)
        except Exception as e:  # every failure is a figure, not a crash
            with lock:
                errors.append(f"{step}: {type(e).__name__}: {e}")
        else:
            with lock:
                durations.append(time.perf_counter() - started)

    threads = [threading.Thread(target=rotate, args=(i,), name=f"rot-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    fake.reset_requests()
    fake.rate_limit = rate  # also refills the bucket: every run starts with one second of burst
    try:
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        fake.rate_limit = None
    for container in containers:
        container.cekura.close()
    requests = fake.requests
    throttled = sum(1 for r in requests if r.status == 429)
    accepted = len(requests) - throttled
    figures: dict[str, Any] = {
        "secrets": count,
        "rate": rate,
        "seconds": seconds,
        "completed": sum(stand.is_current(a, t) for a, t in zip(arns, tokens, strict=True)),
        "failed": len(errors),
        "errors": sorted(set(errors))[:3],
        "aws_calls": sum(sum(c.aws.calls.values()) for c in containers),
        "cekura_requests": len(requests),
        "cekura_429": throttled,
        "cekura_accepted": accepted,
        "rotation_median_s": statistics.median(durations) if durations else None,
        "rotation_max_s": max(durations) if durations else None,
    }
    if rate:
        figures["lower_bound_s"] = accepted / rate
        figures["ratio"] = seconds / figures["lower_bound_s"]
    return figures


class _Container:
    """What one Lambda container holds: a Rotator with its own clients (and a call counter)."""

    def __init__(self, session: boto3.Session, cekura_url: str) -> None:
        # The production settings, not the local stack's shortened validate wait.
        config = Config.from_env({"CEKURA_API_URL": cekura_url})
        client = session.client("secretsmanager")
        self.aws = AwsCallLog()
        client.meta.events.register("before-call.secrets-manager", self.aws.hook)
        self.cekura = CekuraClient.from_config(config)
        self.rotator = Rotator(config=config, store=SecretsStore(client), cekura=self.cekura)
