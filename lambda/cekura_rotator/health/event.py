"""The health function's event (a schedule's, or `{"secret_ids": [...]}`), validated into a typed
request, as `cekura_rotator.event` does for the rotation function's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cekura_rotator.errors import EventError

MAX_SECRET_IDS = 500
_MAX_ID_CHARS = 2048


@dataclass(frozen=True, slots=True)
class HealthRequest:
    """A validated health-check event: the whole fleet, or the secrets it names."""

    secret_ids: tuple[str, ...] | None = None

    @property
    def fleet(self) -> bool:
        return self.secret_ids is None

    @classmethod
    def from_event(cls, event: Any) -> HealthRequest:
        """An EventBridge scheduled event (or `{}`): the fleet. `{"secret_ids": [...]}`: those.
        Anything else raises EventError saying what is wrong (never echoing a value at length)."""
        if not isinstance(event, Mapping):
            raise EventError(f"the event must be a JSON object, not {type(event).__name__}")
        if "secret_ids" in event:
            return cls(_secret_ids(event["secret_ids"]))
        if not event or event.get("source") == "aws.events" or "detail-type" in event:
            return cls(None)
        names = ", ".join(sorted(str(k)[:40] for k in event)[:5])
        raise EventError(
            'the event is neither a scheduled event nor {"secret_ids": [...]} '
            f"(it has: {names}); a rotation step event belongs to the rotation function"
        )


def _secret_ids(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise EventError("the event's secret_ids must be a non-empty list of secret ARNs or names")
    if len(raw) > MAX_SECRET_IDS:
        raise EventError(f"the event's secret_ids may name at most {MAX_SECRET_IDS} secrets")
    ids = []
    for item in raw:
        if not isinstance(item, str) or not 0 < len(item.strip()) <= _MAX_ID_CHARS:
            shown = item[:64] if isinstance(item, str) else type(item).__name__
            raise EventError(
                f"the event's secret_ids holds {shown!r}, not a secret ARN or name",
                secret_id=item[:_MAX_ID_CHARS] if isinstance(item, str) and item else None,
            )
        ids.append(item.strip())
    return tuple(dict.fromkeys(ids))
