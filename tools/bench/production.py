"""Rotations as production times them: every call pays a network round trip.

The same warm rotations through moto's RotateSecret as `rotations.py`, with latency injected on
the client side of this process (`latency.py`: 25 ms per Secrets Manager call and 150 ms per
Cekura call unless told otherwise), for each revocation policy, the real handler beside the
minimal rotator following the same policy. The fake Cekura runs in its `permissive` mode (API
keys may list and delete keys), so revocation really happens and its calls are paid for.

Each rotator gets its own secret per policy and rotates it once before the timed rotations, so
that a previous version exists (under `grace` every timed rotation then deletes a key) and the
clients and their connections are warm: the steady state a deployed rotator lives in.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from infra.local.stack import patched_environ
from tools.bench import minimal, rotations
from tools.bench.latency import AwsLatency, CekuraLatency, Sleep
from tools.bench.stand import BenchError, Handler, Stand
from tools.bench.stats import summary

POLICIES = ("grace", "immediate", "off")
STEPS = rotations.STEPS
VARIANTS = rotations.VARIANTS
DEFAULT_AWS_MS = 25.0
DEFAULT_CEKURA_MS = 150.0


@dataclasses.dataclass
class _Injectors:
    aws: AwsLatency
    cekura: CekuraLatency

    def booked_to(self, step: str) -> None:
        self.aws.step = self.cekura.step = step

    def reset(self) -> None:
        self.aws.reset()
        self.cekura.reset()


def run(
    stand: Stand,
    *,
    aws_ms: float = DEFAULT_AWS_MS,
    cekura_ms: float = DEFAULT_CEKURA_MS,
    rotations_per_policy: int = 6,
    policies: Sequence[str] = POLICIES,
    sleep: Sleep | None = None,
) -> dict[str, Any]:
    """Time `rotations_per_policy` rotations per rotator and policy; count their calls."""
    kwargs = {} if sleep is None else {"sleep": sleep}
    fake = stand.stack.fake
    injectors = _Injectors(
        AwsLatency(aws_ms / 1000, **kwargs), CekuraLatency(cekura_ms / 1000, fake.url, **kwargs)
    )
    # A project of its own: the stray sweep lists the project's keys, and the earlier figures
    # (which cannot delete in the spec world) left many behind in the bench's main project.
    project = fake.create_project(name="bench-production", organization="Bench")
    own = dataclasses.replace(stand, project_id=project)
    figures: dict[str, Any] = {
        "aws_ms": aws_ms,
        "cekura_ms": cekura_ms,
        "rotations": rotations_per_policy,
        "policies": {},
    }
    with stand.fake_mode("permissive"), _injected(injectors):
        for policy in policies:
            env = {"REVOCATION_POLICY": policy, minimal.POLICY_ENV: policy}
            with patched_environ(env):
                rotations.reset_clients(keep_session=True)  # Config is read once per container
                figures["policies"][policy] = _policy(own, policy, injectors, rotations_per_policy)
    return figures


@contextmanager
def _injected(injectors: _Injectors) -> Iterator[None]:
    try:
        with injectors.aws.on_default_session(), injectors.cekura.patched():
            rotations.reset_clients(keep_session=True)
            yield
    finally:
        rotations.reset_clients()


def _policy(stand: Stand, policy: str, injectors: _Injectors, count: int) -> dict[str, Any]:
    arns = {name: stand.new_secrets(1, f"prod-{policy}-{name}")[0] for name in VARIANTS}
    for name, rotate in VARIANTS.items():
        _rotate(stand, arns[name], rotate, injectors)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    steps: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STEPS} for name in VARIANTS}
    calls: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name in VARIANTS}
    for i in range(count):
        names = list(VARIANTS) if i % 2 == 0 else list(VARIANTS)[::-1]
        for name in names:
            seconds, per_step, bridge_steps = _rotate(stand, arns[name], VARIANTS[name], injectors)
            times[name].append(seconds)
            calls[name].append(per_step)
            for step, took in bridge_steps:
                steps[name][step].append(took)
    figures: dict[str, Any] = {}
    for name in VARIANTS:
        last = calls[name][-1]
        figures[name] = {
            "rotation": summary(times[name]),
            "steps_median_s": {s: statistics.median(v) for s, v in steps[name].items() if v},
            "calls": last,
            "aws": sum(step["aws"] for step in last.values()),
            "cekura": sum(step["cekura"] for step in last.values()),
            # The same rotation should make the same calls every time; say so if it did not.
            "calls_vary": any(c != last for c in calls[name]),
        }
    if figures["handler"]["aws"] == 0 or figures["handler"]["cekura"] == 0:
        raise BenchError(
            "the latency injectors saw none of the handler's calls "
            f"(AWS {figures['handler']['aws']}, Cekura {figures['handler']['cekura']}): its "
            "Secrets Manager client is no longer made from boto3's default session, or its "
            "Cekura client no longer uses httpx's HTTPTransport; the figures would be loopback's"
        )
    figures["ratio"] = (
        figures["handler"]["rotation"]["median"] / figures["minimal"]["rotation"]["median"]
    )
    return figures


def _rotate(
    stand: Stand, arn: str, rotate: Handler, injectors: _Injectors
) -> tuple[float, dict[str, dict[str, Any]], list[tuple[str, float]]]:
    """One rotation; its time, its calls per step, and each step's own time."""
    injectors.reset()

    def booked(event: dict[str, Any], context: Any) -> Any:
        injectors.booked_to(str(event.get("Step")))
        try:
            return rotate(event, context)
        finally:
            injectors.booked_to("-")

    bridge, seconds = stand.rotate(arn, booked)
    per_step = {
        step: _calls_of(step, injectors.aws.calls, injectors.cekura.calls) for step in STEPS
    }
    return seconds, per_step, [(i.step, i.seconds) for i in bridge.invocations]


def _calls_of(
    step: str, aws: Counter[tuple[str, str]], cekura: Counter[tuple[str, str]]
) -> dict[str, Any]:
    aws_ops = {op: n for (s, op), n in sorted(aws.items()) if s == step}
    cekura_ops = {op: n for (s, op), n in sorted(cekura.items()) if s == step}
    return {
        "aws": sum(aws_ops.values()),
        "cekura": sum(cekura_ops.values()),
        "aws_ops": aws_ops,
        "cekura_ops": cekura_ops,
    }


def beyond(handler: dict[str, int], floor: dict[str, int]) -> dict[str, int]:
    """The calls the handler made beyond the minimal rotator's, per operation."""
    extra = Counter(handler)
    extra.subtract(floor)
    return {op: n for op, n in sorted(extra.items()) if n > 0}


def waiting_s(figures: dict[str, Any], name: str, aws_ms: float, cekura_ms: float) -> float:
    """The injected delays of one rotation, added up (what it waits if nothing overlaps)."""
    f = figures[name]
    return float(f["aws"] * aws_ms + f["cekura"] * cekura_ms) / 1000
