"""Which admin secret a rotated secret uses, and whether Cekura accepts its credential.

The function decides with the same rule (`cekura_rotator.credentials`): the secret's own
`admin_secret_arn`, else the function's default `CEKURA_ADMIN_SECRET_ARN`. The CLI reads the
default from the function's configuration, best-effort. The credential itself is read only to
take its fingerprint and to ask Cekura about it; it is never printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cekura_rotator.cekura import CekuraClient
from cekura_rotator.credentials import AdminCredential, load_admin_credential
from cekura_rotator.errors import (
    AdminSecretError,
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
)
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import SecretsStore
from cekura_rotator_cli.console import Console
from cekura_rotator_cli.reading import function_config

DEFAULT_VARIABLE = "CEKURA_ADMIN_SECRET_ARN"
Source = Literal["secret", "function", "none", "unknown"]
SOURCES: Mapping[Source, str] = {
    "secret": "named by the secret (admin_secret_arn)",
    "function": f"the function's default ({DEFAULT_VARIABLE})",
    "none": "none: keys are minted with the key being replaced",
    "unknown": "unknown: the function's configuration cannot be read (the secret names none)",
}


@dataclass(frozen=True)
class AdminView:
    """What status shows of the admin credential a secret uses."""

    arn: str | None
    source: Source
    kind: str | None = None
    fingerprint: str | None = None
    allowed: bool | None = None
    accepted: bool | None = None
    verdict: str | None = None

    def lines(self) -> list[str]:
        if self.arn is None:
            return [f"Admin secret       {SOURCES[self.source]}"]
        lines = [f"Admin secret       {self.arn} ({SOURCES[self.source]})"]
        if self.fingerprint:
            lines.append(f"  credential       {self.kind} {self.fingerprint}")
        if self.allowed is False:
            lines.append("  allowed          no: the function's AdminSecretArns do not include it")
        lines.append(f"  Cekura           {self.verdict}")
        return lines

    def document(self) -> dict[str, Any]:
        return {
            "arn": self.arn,
            "source": self.source,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "allowed_by_function": self.allowed,
            "accepted": self.accepted,
            "verdict": self.verdict,
        }


def admin_arn(
    value: SecretValue | None, function_env: Mapping[str, str] | None
) -> tuple[str | None, Source]:
    """The admin secret the function would use for this secret, and where that comes from."""
    if value is not None and value.admin_secret_arn:
        return value.admin_secret_arn, "secret"
    if function_env is None:
        return None, "unknown"
    default = function_env.get(DEFAULT_VARIABLE, "").strip()
    return (default, "function") if default else (None, "none")


def allowed_by_function(arn: str, function_env: Mapping[str, str] | None) -> bool | None:
    """Whether the function may use this admin secret; None when its settings are unknown."""
    config = function_config(function_env)
    return config.admin_allowed(arn) if config else None


def inspect(
    *,
    store: SecretsStore,
    cekura: CekuraClient,
    value: SecretValue | None,
    function_env: Mapping[str, str] | None,
    console: Console,
) -> AdminView:
    """The admin secret `value` uses, its credential's fingerprint, and Cekura's verdict."""
    arn, source = admin_arn(value, function_env)
    if arn is None:
        return AdminView(None, source)
    allowed = allowed_by_function(arn, function_env)
    try:
        admin = load_admin_credential(store, arn)
    except AdminSecretError as e:
        return AdminView(arn, source, allowed=allowed, accepted=False, verdict=e.message)
    console.watch(admin.credential.value)
    project = value.project_id if value is not None else None
    accepted, verdict = probe(cekura, admin, project)
    return AdminView(
        arn,
        source,
        kind=admin.credential.kind,
        fingerprint=admin.credential.fingerprint,
        allowed=allowed,
        accepted=accepted,
        verdict=verdict,
    )


def probe(
    cekura: CekuraClient, admin: AdminCredential, project: int | None
) -> tuple[bool | None, str]:
    """Ask Cekura whether it accepts the credential: (True/False/None if unknown, why).

    An API key is asked through validate, which reads only API keys and answers for one project.
    A bearer token (a dashboard session) is ignored there, so it is asked to list keys, which a
    session may do in every permission world.
    """
    if project is not None and not admin.may_mint_for(project):
        return False, f"may not mint for project {project}: it is not in the secret's 'projects'"
    try:
        if admin.credential.kind == "api_key" and project is not None:
            cekura.validate(admin.credential, project_id=project)
        else:
            cekura.list_keys(admin.credential)
    except CekuraAuthError as e:
        return False, f"rejected: {e.message}"
    except CekuraForbiddenError as e:
        scope = f" for project {project}" if project is not None else ""
        return False, f"refused{scope}: {e.message}"
    except CekuraError as e:  # 405, or a failure for now: says nothing about the credential
        return None, f"not confirmed: {e.message}"
    if project is not None and admin.credential.kind == "api_key":
        return True, f"accepted for project {project}"
    return True, "accepted"
