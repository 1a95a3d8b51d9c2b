"""The health check's decisions, free of I/O: what a secret's labels, dates and schedule say.

Everything here takes a snapshot (a secret as ListSecrets shows it, the time now) and returns a
verdict; `check.py` does the calls. Tested by tables in tests/unit/test_health_rules.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cekura_rotator.secrets_store import CURRENT, PENDING, SecretDescription, SecretDetails

# Overdue means the schedule missed by more than this (the rotation window is at most 24 h).
OVERDUE_SLACK = timedelta(days=1)
# Fleet rule: with at least this many keys answered, more than half rejected heals nothing.
SUSPECT_MIN_KEYS = 4

_RATE = re.compile(r"rate\(\s*(\d{1,5})\s+(hours?|days?)\s*\)", re.IGNORECASE)


def unqualified(function_arn: str) -> str:
    """A Lambda function ARN without its version or alias qualifier."""
    return ":".join(function_arn.split(":")[:7])


def rotated_by(secret: SecretDescription, function_arn: str) -> bool:
    """Whether the secret's rotation function is this one (qualifiers ignored)."""
    configured = secret.rotation_lambda_arn
    return bool(configured) and unqualified(configured or "") == unqualified(function_arn)


def pending_version(versions: Mapping[str, Sequence[str]]) -> str | None:
    """The version carrying AWSPENDING without AWSCURRENT: a rotation in progress (or stuck)."""
    return next(
        (v for v, stages in versions.items() if PENDING in stages and CURRENT not in stages),
        None,
    )


def is_stuck(created: datetime | None, now: datetime, hours: float) -> bool:
    """A pending version older than `hours` (unknown age: not judged stuck)."""
    return created is not None and now - created > timedelta(hours=hours)


def rotation_interval(rules: Mapping[str, Any]) -> timedelta | str:
    """The schedule's interval (RotationRules), or why there is none to judge by."""
    days = rules.get("AutomaticallyAfterDays")
    if isinstance(days, int) and days > 0:
        return timedelta(days=days)
    expression = str(rules.get("ScheduleExpression") or "").strip()
    match = _RATE.fullmatch(expression)
    if match:
        amount = int(match.group(1))
        unit = match.group(2).lower()
        return timedelta(hours=amount) if unit.startswith("hour") else timedelta(days=amount)
    if expression:
        return f"schedule {expression} has no fixed interval"
    return "no rotation schedule"


@dataclass(frozen=True, slots=True)
class Overdue:
    """Whether a secret's rotation is overdue, and what a person should read about it."""

    overdue: bool
    note: str | None = None


def overdue(details: SecretDetails, now: datetime) -> Overdue:
    """Rotation enabled, and the next rotation AWS reports more than a day past; where AWS
    reports none, the last rotation older than the schedule's interval plus a day."""
    secret = details.secret
    if not secret.rotation_enabled:
        return Overdue(False)
    if secret.next_rotation is not None:
        late = now - secret.next_rotation
        why = f"the next rotation was due {_ago(late)} ago ({_iso(secret.next_rotation)})"
        return Overdue(True, why) if late > OVERDUE_SLACK else Overdue(False)
    interval = rotation_interval(details.rotation_rules)
    if isinstance(interval, str):
        return Overdue(False, f"overdue not judged: {interval} and AWS reports no next rotation")
    if secret.last_rotated is None:
        return Overdue(False, "overdue not judged: AWS reports neither a next nor a last rotation")
    late = now - secret.last_rotated - interval
    why = (
        f"last rotated {_iso(secret.last_rotated)}, {_ago(late)} past its interval of "
        f"{_ago(interval)}"
    )
    return Overdue(True, why) if late > OVERDUE_SLACK else Overdue(False)


def heals_suppressed(accepted: int, rejected: int) -> bool:
    """Suspect Cekura before the keys: with at least 4 keys answered, more than half rejected."""
    answered = accepted + rejected
    return answered >= SUSPECT_MIN_KEYS and 2 * rejected > answered


def in_cursor_order(
    secrets: Sequence[SecretDetails], start_after: str | None
) -> list[SecretDetails]:
    """The secrets by ARN, starting after `start_after` and wrapping around."""
    ordered = sorted(secrets, key=lambda d: d.secret.arn)
    if not start_after:
        return ordered
    split = next((i for i, d in enumerate(ordered) if d.secret.arn > start_after), len(ordered))
    return ordered[split:] + ordered[:split]


def next_cursor(order: Sequence[str], unfinished: set[str], start_after: str | None) -> str | None:
    """Where the next run starts: just before the first secret left unfinished (None: all done,
    the next run starts at the beginning)."""
    for i, arn in enumerate(order):
        if arn in unfinished:
            return order[i - 1] if i > 0 else start_after
    return None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _ago(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
