"""Which Cekura credential a step uses: the rotated key itself, or an admin secret.

An admin secret is a Secrets Manager secret holding `{"api_key": ...}` or `{"bearer_token": ...}`,
optionally with `"projects": [ids]` that the credential may mint for. It is read each time a step
needs it, so a manual rotation of the admin secret takes effect at the next step. Its value travels
only from Secrets Manager to the Cekura client's header: never into a rotated secret or a log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cekura_rotator.cekura import Credential
from cekura_rotator.config import Config
from cekura_rotator.errors import AdminSecretError, SecretsStoreError
from cekura_rotator.observability import redactor
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import CURRENT, SecretsStore

API_KEY = "api_key"
BEARER_TOKEN = "bearer_token"  # noqa: S105  (a field name, not a token)
PROJECTS = "projects"
_MAX_CREDENTIAL_CHARS = 4096


@dataclass(frozen=True, slots=True)
class AdminCredential:
    """A credential read from an admin secret. `repr` never shows the value."""

    arn: str
    credential: Credential
    projects: frozenset[int] | None = None

    def may_mint_for(self, project: int) -> bool:
        """Whether the admin secret lets this credential mint for `project`."""
        return self.projects is None or project in self.projects


def admin_arn_for(value: SecretValue, config: Config) -> str | None:
    """The admin secret a rotated secret uses: its own `admin_secret_arn`, else the default.

    A secret may only name an admin secret the function's configuration allows: otherwise anyone
    who can write the rotated secret could point the rotator at any credential it may read.
    """
    named = value.admin_secret_arn
    if named is None:
        return config.admin_secret_arn
    if not config.admin_allowed(named):
        raise AdminSecretError(
            f"the secret names admin secret {named}, which the function does not allow "
            "(CEKURA_ADMIN_SECRET_ARN / CEKURA_ALLOWED_ADMIN_SECRET_ARNS)"
        )
    return named


def load_admin_credential(store: SecretsStore, arn: str) -> AdminCredential:
    """Read and check an admin secret; raise AdminSecretError naming the ARN and the field."""
    try:
        raw = store.read(arn, stage=CURRENT)
    except SecretsStoreError as e:
        raise AdminSecretError(f"admin secret {arn} cannot be read: {e.message}") from e
    if raw is None:
        raise AdminSecretError(f"admin secret {arn} does not exist or has no AWSCURRENT value")
    if isinstance(raw, bytes):
        raise AdminSecretError(f"admin secret {arn} holds SecretBinary, not a JSON SecretString")
    try:
        document: Any = json.loads(raw)
    except ValueError:
        raise AdminSecretError(f"admin secret {arn} is not a JSON object") from None
    if not isinstance(document, dict):
        raise AdminSecretError(f"admin secret {arn} is not a JSON object")
    present = [name for name in (API_KEY, BEARER_TOKEN) if name in document]
    if len(present) != 1:
        raise AdminSecretError(
            f"admin secret {arn} must hold exactly one of {API_KEY!r} and {BEARER_TOKEN!r}"
        )
    field_name = present[0]
    secret = document[field_name]
    if (
        not isinstance(secret, str)
        or not 0 < len(secret) <= _MAX_CREDENTIAL_CHARS
        or not all("!" <= c <= "~" for c in secret)
    ):
        raise AdminSecretError(
            f"admin secret {arn}: {field_name!r} must be a non-empty string of visible ASCII"
        )
    redactor.watch(secret)
    credential = Credential.api_key(secret) if field_name == API_KEY else Credential.bearer(secret)
    return AdminCredential(arn, credential, _projects(document, arn))


def _projects(document: dict[str, Any], arn: str) -> frozenset[int] | None:
    if PROJECTS not in document or document[PROJECTS] is None:
        return None
    projects = document[PROJECTS]
    if not isinstance(projects, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in projects
    ):
        raise AdminSecretError(
            f"admin secret {arn}: {PROJECTS!r} must be a list of positive project ids"
        )
    return frozenset(projects)
