"""Warm rotations through moto's RotateSecret, in this process, and the calls each one makes.

The real handler and the minimal rotator take turns on the same stand-ins, each rotating its own
secret again and again, so both reach the steady state a deployed rotator lives in (a previous
version exists; the real one then revokes its key).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3

from cekura_rotator import handler
from tools.bench import minimal
from tools.bench.stand import AwsCallLog, Handler, Stand
from tools.bench.stats import summary

VARIANTS: dict[str, Handler] = {
    "handler": handler.lambda_handler,
    "minimal": minimal.lambda_handler,
}
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")

# The fewest calls a correct rotation can make, per step: (AWS, Cekura, why).
MINIMUM: dict[str, tuple[int, int, str]] = {
    "createSecret": (
        4,
        1,
        "DescribeSecret (guard: rotation on, token is AWSPENDING); GetSecretValue of the "
        "token (a retried step must not mint twice); GetSecretValue AWSCURRENT (its key "
        "authorises the mint); PutSecretValue. Cekura: create",
    ),
    "setSecret": (1, 0, "DescribeSecret (guard); Cekura keys are live on creation"),
    "testSecret": (
        2,
        1,
        "DescribeSecret; GetSecretValue of the token (the key to test). Cekura: validate",
    ),
    "finishSecret": (
        3,
        0,
        "DescribeSecret (which version is AWSCURRENT); UpdateSecretVersionStage to move "
        "AWSCURRENT, and again to drop AWSPENDING (moto insists; AWS would not)",
    ),
}
# Revoking a key (policy grace: AWSPREVIOUS, from the second rotation on; immediate: the version
# AWSCURRENT leaves) needs, in finishSecret: GetSecretValue of that version (its key id, and its
# key, which may authorise its own deletion), and the DELETE at Cekura.
REVOCATION = (1, 1)


def reset_clients(*, keep_session: bool = False) -> None:
    """Make both rotators build new clients on their next step, as a fresh container would."""
    if not keep_session:
        # A new default session, or the second rotator would find botocore's models loaded.
        boto3.DEFAULT_SESSION = None
    handler.rotator.cache_clear()
    minimal.reset()


def measure_time(stand: Stand, rotations: int, firsts: int = 3) -> dict[str, Any]:
    """First rotation after new clients, then `rotations` later ones, turn and turn about."""
    arns = {name: stand.new_secrets(1, f"warm-{name}")[0] for name in VARIANTS}
    first: dict[str, list[float]] = {name: [] for name in VARIANTS}
    later: dict[str, list[float]] = {name: [] for name in VARIANTS}
    steps: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STEPS} for name in VARIANTS}
    for i in range(firsts):
        for name in _turns(i):
            reset_clients()
            first[name].append(stand.rotate(arns[name], VARIANTS[name])[1])
    for name, rotate in VARIANTS.items():
        stand.rotate(arns[name], rotate)  # the resets above also dropped this one's clients
    for i in range(rotations):
        for name in _turns(i):
            bridge, seconds = stand.rotate(arns[name], VARIANTS[name])
            later[name].append(seconds)
            for invocation in bridge.invocations:
                steps[name][invocation.step].append(invocation.seconds)
    figures: dict[str, Any] = {
        name: {
            "first": summary(first[name]),
            "later": summary(later[name]),
            "steps_median_s": {s: statistics.median(v) for s, v in steps[name].items()},
        }
        for name in VARIANTS
    }
    figures["ratio"] = figures["handler"]["later"]["median"] / figures["minimal"]["later"]["median"]
    figures["rotations"] = rotations
    return figures


def count_calls(stand: Stand, rotations: int = 3) -> dict[str, Any]:
    """Calls per step for a secret's first rotation and for a later one (steady state)."""
    log = AwsCallLog()
    log.install_on_default_session()
    reset_clients(keep_session=True)
    figures: dict[str, Any] = {}
    try:
        for name, rotate in VARIANTS.items():
            arn = stand.new_secrets(1, f"calls-{name}")[0]
            per_rotation = []
            for _ in range(rotations):
                log.calls.clear()
                cekura: Counter[tuple[str, str]] = Counter()
                stand.rotate(arn, _attributed(rotate, log, stand, cekura))
                per_rotation.append(_per_step(log.calls, cekura))
            figures[name] = {"first": per_rotation[0], "steady": per_rotation[-1]}
    finally:
        AwsCallLog.uninstall()
        reset_clients()
    return figures


def _turns(i: int) -> list[str]:
    names = list(VARIANTS)
    return names if i % 2 == 0 else names[::-1]


def _attributed(
    rotate: Handler, log: AwsCallLog, stand: Stand, cekura: Counter[tuple[str, str]]
) -> Callable[[dict[str, Any], Any], Any]:
    """`rotate`, with the calls each step makes booked to that step."""
    fake = stand.stack.fake

    def run(event: dict[str, Any], context: Any) -> Any:
        log.step = str(event.get("Step"))
        seen = len(fake.requests)
        try:
            return rotate(event, context)
        finally:
            for request in fake.requests[seen:]:
                cekura[(log.step, f"{request.method} {request.route} {request.status}")] += 1
            log.step = "-"

    return run


def _per_step(
    aws: Counter[tuple[str, str]], cekura: Counter[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    return {
        step: {
            "aws": sum(n for (s, _), n in aws.items() if s == step),
            "cekura": sum(n for (s, _), n in cekura.items() if s == step),
            "aws_ops": {op: n for (s, op), n in sorted(aws.items()) if s == step},
            "cekura_ops": {op: n for (s, op), n in sorted(cekura.items()) if s == step},
        }
        for step in STEPS
    }
