"""The health function's settings: the environment variables only it reads, validated."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cekura_rotator.config import positive_number
from cekura_rotator.errors import ConfigError

DEFAULT_STUCK_HOURS = 4.0
_MAX_STUCK_HOURS = 24 * 30
_FUNCTION_ARN = re.compile(
    r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,140}(:[A-Za-z0-9$_-]+)?"
)
_SSM_NAME = re.compile(r"[A-Za-z0-9_.\-/:]{1,2048}")


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """The health check's own environment (it also reads all of the rotator's)."""

    rotation_function_arn: str
    stuck_hours: float = DEFAULT_STUCK_HOURS
    heal: bool = True
    cursor_parameter: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HealthSettings:
        """Parse the environment; raise ConfigError naming the first bad variable."""
        function_arn = env.get("ROTATION_FUNCTION_ARN", "").strip()
        if not _FUNCTION_ARN.fullmatch(function_arn):
            raise ConfigError(
                "ROTATION_FUNCTION_ARN must be the rotation function's ARN "
                f"(arn:aws:lambda:<region>:<account>:function:<name>), got {function_arn[:120]!r}"
            )
        return cls(
            rotation_function_arn=function_arn,
            stuck_hours=positive_number(
                env,
                "STUCK_ROTATION_HOURS",
                DEFAULT_STUCK_HOURS,
                upper=_MAX_STUCK_HOURS,
                unit="hours",
            ),
            heal=_flag(env.get("HEAL_DEAD_KEYS", "")),
            cursor_parameter=_parameter(env.get("HEALTH_CURSOR_PARAMETER", "")),
        )


def _flag(raw: str) -> bool:
    text = raw.strip().lower()
    if text in {"", "true"}:
        return True
    if text == "false":
        return False
    raise ConfigError(f"HEAL_DEAD_KEYS must be true or false, got {raw[:40]!r}")


def _parameter(raw: str) -> str | None:
    text = raw.strip()
    if not text:
        return None
    if not _SSM_NAME.fullmatch(text):
        raise ConfigError(f"HEALTH_CURSOR_PARAMETER is not an SSM parameter name: {text[:120]!r}")
    return text
