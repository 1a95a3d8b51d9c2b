"""The Lambda's environment, parsed once into one frozen, typed object."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from cekura_rotator.errors import ConfigError

DEFAULT_API_URL = "https://api.cekura.ai"
_LOOPBACK_NAMES = frozenset({"localhost"})


class RevocationPolicy(StrEnum):
    """Which old key finishSecret deletes at Cekura."""

    GRACE = "grace"
    IMMEDIATE = "immediate"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the rotator reads from its environment."""

    cekura_api_url: str = DEFAULT_API_URL
    default_project_id: int | None = None
    revocation_policy: RevocationPolicy = RevocationPolicy.GRACE
    key_name_prefix: str = "rotator"
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    validate_max_wait: float = 30.0
    retry_after_cap: float = 20.0
    # The admin secret used when a rotated secret names none, and every one a secret may name.
    admin_secret_arn: str | None = None
    allowed_admin_secret_arns: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Parse the environment; raise ConfigError naming the first bad variable."""
        return cls(
            cekura_api_url=parse_api_url(env.get("CEKURA_API_URL", "") or DEFAULT_API_URL),
            default_project_id=_project_id(env.get("CEKURA_PROJECT_ID", "")),
            revocation_policy=_policy(env.get("REVOCATION_POLICY", "") or "grace"),
            key_name_prefix=_prefix(env.get("CEKURA_KEY_NAME_PREFIX", "") or "rotator"),
            connect_timeout=positive_number(env, "CEKURA_CONNECT_TIMEOUT", 5.0, upper=60),
            read_timeout=positive_number(env, "CEKURA_READ_TIMEOUT", 15.0, upper=300),
            validate_max_wait=positive_number(env, "CEKURA_VALIDATE_MAX_WAIT", 30.0, upper=600),
            retry_after_cap=positive_number(env, "CEKURA_RETRY_AFTER_CAP", 20.0, upper=600),
            admin_secret_arn=_arn(
                env.get("CEKURA_ADMIN_SECRET_ARN", ""), "CEKURA_ADMIN_SECRET_ARN"
            ),
            allowed_admin_secret_arns=frozenset(
                arn
                for part in env.get("CEKURA_ALLOWED_ADMIN_SECRET_ARNS", "").split(",")
                if (arn := _arn(part, "CEKURA_ALLOWED_ADMIN_SECRET_ARNS"))
            ),
        )

    def admin_allowed(self, arn: str) -> bool:
        """Whether a rotated secret may name this admin secret."""
        return arn == self.admin_secret_arn or arn in self.allowed_admin_secret_arns


def parse_api_url(raw: str) -> str:
    """Return the base URL without a trailing slash, or raise ConfigError.

    The key travels in a header to this host and no other, so anything that could send it in
    clear text or somewhere unexpected (plain http off loopback, credentials, query) is refused.
    """
    try:
        parts = urlsplit(raw.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018  # urlsplit validates the port lazily
    except ValueError as e:
        raise ConfigError(f"CEKURA_API_URL is not a valid URL: {e}") from None
    if not host:
        raise ConfigError("CEKURA_API_URL must be an absolute URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("CEKURA_API_URL must not carry credentials, a query or a fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"CEKURA_API_URL must use https:// (plain http is allowed only to a loopback host, "
            f"not {host!r})"
        )
    if parts.scheme not in {"https", "http"}:
        raise ConfigError(f"CEKURA_API_URL must use https://, not {parts.scheme or 'no'} scheme")
    return raw.strip().rstrip("/")


_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+"
)


def _arn(raw: str, name: str) -> str | None:
    text = raw.strip()
    if not text:
        return None
    if not _SECRET_ARN.fullmatch(text):
        raise ConfigError(f"{name} must hold Secrets Manager secret ARNs, got {text[:120]!r}")
    return text


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _project_id(raw: str) -> int | None:
    if not raw.strip():
        return None
    text = raw.strip()
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f"CEKURA_PROJECT_ID must be a positive integer, got {raw!r}")
    return int(text)


def _policy(raw: str) -> RevocationPolicy:
    try:
        return RevocationPolicy(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in RevocationPolicy)
        raise ConfigError(f"REVOCATION_POLICY must be one of {allowed}, got {raw!r}") from None


def _prefix(raw: str) -> str:
    text = raw.strip()
    if not (0 < len(text) <= 40) or not all(c.isalnum() or c in "-_." for c in text):
        raise ConfigError(
            "CEKURA_KEY_NAME_PREFIX must be 1-40 characters of letters, digits, '-', '_' or '.'"
        )
    return text


def positive_number(
    env: Mapping[str, str], name: str, default: float, *, upper: float, unit: str = "seconds"
) -> float:
    """The variable `name` as a number more than 0 and at most `upper`; `default` when unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of {unit}, got {raw!r}") from None
    if not math.isfinite(value) or not (0 < value <= upper):
        raise ConfigError(f"{name} must be more than 0 and at most {upper:g} {unit}")
    return value
