"""What one health-check run found and did: read by the Lambda's answer, its metrics and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

CurrentKey = Literal["accepted", "rejected", "unknown", "unreadable"]


@dataclass(frozen=True, slots=True)
class SecretHealth:
    """One secret as the health check found it (and what it did about it)."""

    arn: str
    name: str
    rotation_enabled: bool
    last_rotated: datetime | None
    next_rotation: datetime | None
    current_key: CurrentKey
    current_key_id: int | None
    stuck: bool
    overdue: bool
    owed: int
    grace: int
    manual: int
    notes: tuple[str, ...]
    actions: tuple[str, ...]


@dataclass
class HealthReport:
    """One run: the secrets checked, those left for the next run, and what was done."""

    secrets: list[SecretHealth]
    unfinished: list[str]
    healed: list[str]
    owed_settled: int = 0
    manual_cleared: int = 0
    # Secret ids of a `secret_ids` run that are not this rotator's, with why; when any is,
    # nothing is checked (the Lambda then fails with an EventError naming them).
    rejected_input: dict[str, str] = field(default_factory=dict)
    heal_suppressed: bool = False
    # Where the next scheduled run starts (after this ARN); None: at the beginning.
    next_start_after: str | None = None

    @property
    def rejected(self) -> list[str]:
        """Secrets whose current key Cekura rejected."""
        return [s.arn for s in self.secrets if s.current_key == "rejected"]

    @property
    def stuck(self) -> list[str]:
        return [s.arn for s in self.secrets if s.stuck]

    @property
    def overdue(self) -> list[str]:
        return [s.arn for s in self.secrets if s.overdue]

    def summary(self) -> dict[str, Any]:
        """The Lambda's answer (issue 15)."""
        return {
            "checked": len(self.secrets),
            "rejected": len(self.rejected),
            "stuck": self.stuck,
            "overdue": self.overdue,
            "owed_settled": self.owed_settled,
            "manual_cleared": self.manual_cleared,
            "healed": list(self.healed),
            "unfinished": list(self.unfinished),
        }
