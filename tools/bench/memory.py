"""Peak memory of a process that runs one full rotation, per revocation policy (and more cases).

Each sample is a fresh interpreter (`probe.py`, as for the cold starts) that imports the rotator
and runs the four steps of a steady-state rotation: the secret was rotated once before, so there
is a previous key to revoke, and the fake Cekura runs in its `permissive` mode so that listing
and deleting keys really happen. The figure is the probe's own VmHWM (see `probe._status_kb`).

A case is a name and the environment variables it adds to the probe's. `policy_cases()` gives
one per revocation policy, `admin_case()` one in admin mode (an admin API key, under grace).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.bench import coldstart, minimal
from tools.bench.stand import Stand

POLICIES = ("grace", "immediate", "off")
GOAL_BYTES = 90_000_000


@dataclass(frozen=True)
class MemoryCase:
    """A named probe environment: what the case sets beyond the stand's own variables."""

    name: str
    env: Mapping[str, str] = field(default_factory=dict)


def policy_cases(policies: Iterable[str] = POLICIES) -> list[MemoryCase]:
    """One case per revocation policy; the minimal rotator follows the same policy."""
    return [
        MemoryCase(policy, {"REVOCATION_POLICY": policy, minimal.POLICY_ENV: policy})
        for policy in policies
    ]


def admin_case(stand: Stand) -> MemoryCase:
    """Grace with an admin secret (an organisation-wide admin API key) minting and revoking."""
    admin = stand.stack.create_admin_secret("api_key", project_id=stand.project_id)
    return MemoryCase(
        "admin, grace",
        {"REVOCATION_POLICY": "grace", minimal.POLICY_ENV: "grace", **admin.env()},
    )


def measure_case(
    stand: Stand,
    scenario: coldstart.Scenario,
    name: str,
    extra_env: Mapping[str, str],
    *,
    repeats: int = 2,
    modes: Iterable[str] = ("handler", "minimal"),
) -> dict[str, Any]:
    """Peak RSS (the largest of `repeats` fresh processes) of a full rotation, per rotator."""
    figures: dict[str, Any] = {"case": name, "env": dict(extra_env), "scenario": scenario.key}
    with stand.fake_mode("permissive"):
        for mode in modes:
            peaks = []
            for _ in range(repeats):
                arn = stand.new_secrets(1, f"mem-{mode}")[0]
                # One rotation first (by the minimal rotator, in this process), so the probe's
                # rotation finds a previous version and revokes its key, as in steady state.
                stand.rotate(arn, minimal.lambda_handler)
                run = coldstart.run_probe(stand, scenario, mode, extra_env=extra_env, secret=arn)
                peaks.append(run.peak_rss_bytes)
            figures[mode] = {"peak_rss_bytes": max(peaks), "samples": peaks}
    return figures


def run(
    stand: Stand, scenario: coldstart.Scenario, cases: Iterable[MemoryCase], *, repeats: int = 2
) -> dict[str, Any]:
    """Every case in turn, in the same package layout."""
    return {
        "scenario": scenario.key,
        "title": scenario.title,
        "repeats": repeats,
        "cases": [
            measure_case(stand, scenario, case.name, case.env, repeats=repeats) for case in cases
        ],
    }
