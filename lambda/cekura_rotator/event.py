"""The rotation event Secrets Manager sends, validated into a typed request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cekura_rotator.errors import EventError


class Step(StrEnum):
    """The four steps Secrets Manager invokes."""

    CREATE = "createSecret"
    SET = "setSecret"
    TEST = "testSecret"
    FINISH = "finishSecret"


@dataclass(frozen=True, slots=True)
class RotationRequest:
    """A validated rotation event. `rotation_token` is a credential: it is never shown."""

    step: Step
    secret_id: str
    token: str
    rotation_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_event(cls, event: Any) -> RotationRequest:
        """Validate the raw event; raise EventError naming what is wrong (never a value)."""
        if not isinstance(event, Mapping):
            raise EventError(f"the event must be a JSON object, not {type(event).__name__}")
        secret_id = event.get("SecretId")
        step = event.get("Step")
        if not isinstance(secret_id, str) or not 0 < len(secret_id) <= 2048:
            raise EventError("the event's SecretId must be a non-empty string", step=_str(step))
        if step not in set(Step):
            known = ", ".join(Step)
            raise EventError(
                f"the event's Step must be one of {known}, got {_str(step)!r}", secret_id=secret_id
            )
        token = event.get("ClientRequestToken")
        if not isinstance(token, str) or not 32 <= len(token) <= 64:
            raise EventError(
                "the event's ClientRequestToken must be a string of 32 to 64 characters",
                secret_id=secret_id,
                step=step,
            )
        rotation_token = event.get("RotationToken")
        if rotation_token is not None and not isinstance(rotation_token, str):
            raise EventError(
                "the event's RotationToken must be a string", secret_id=secret_id, step=step
            )
        return cls(Step(step), secret_id, token, rotation_token or None)


def _str(value: object) -> str:
    return value[:64] if isinstance(value, str) else type(value).__name__
