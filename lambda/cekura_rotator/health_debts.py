"""TEMPORARY stand-in for the revocation API of issue 14 (`cekura_rotator.revocation`).

The health check codes against the names PLAN.md gives that API: `Revoker.settle`, `prove_gone`
and `clear`, `revocation_credential`, `Proof`, `SettleReport`, `RevocationCredential`. Until the
lead's package lands, `health.py` imports them from here, in one line; then that line imports
them from `cekura_rotator.revocation` and this file is deleted.

What it does meanwhile, over `cekura_rotator.ledger`:
- `prove_gone` validates a key at Cekura: 401 is GONE, 200 or 403 LIVE, anything else UNKNOWN.
- `clear` removes an entry's labels.
- `settle` settles nothing: owed entries wait for the next finishSecret (which settles them
  today), and it reports what is left. Its tests (tests/integration/test_health_debts.py) are
  skipped until the swap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from cekura_rotator import ledger
from cekura_rotator.cekura import CekuraClient, Credential
from cekura_rotator.config import Config
from cekura_rotator.credentials import admin_arn_for, load_admin_credential
from cekura_rotator.errors import (
    AdminSecretError,
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
    SecretsStoreError,
)
from cekura_rotator.observability import logger
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import SecretDescription, SecretsStore


class Proof(StrEnum):
    """What Cekura's answer for a key proves."""

    GONE = "gone"
    LIVE = "live"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RevocationCredential:
    """Who revokes: the admin credential when one is configured, else the key itself."""

    credential: Credential | None
    credential_id: str
    projects: frozenset[int] | None


def revocation_credential(
    value: SecretValue, *, arn: str, config: Config, store: SecretsStore
) -> RevocationCredential:
    """The secret's admin credential when configured, else the key `value` holds."""
    try:
        admin_arn = admin_arn_for(value, config)
    except AdminSecretError as e:
        logger.warning("Admin credential unavailable for revocation", error=e.message)
        return RevocationCredential(None, "unavailable", None)
    if admin_arn is None:
        projects = frozenset({value.project_id}) if value.project_id else None
        return RevocationCredential(Credential.api_key(value.api_key), f"self {arn}", projects)
    try:
        admin = load_admin_credential(store, admin_arn)
    except AdminSecretError as e:
        logger.warning("Admin credential unavailable for revocation", error=e.message)
        return RevocationCredential(None, admin_arn, None)
    return RevocationCredential(
        admin.credential, f"{admin_arn} {admin.credential.fingerprint}", admin.projects
    )


@dataclass(frozen=True, slots=True)
class SettleReport:
    """What one settle did, and what is left on the secret."""

    deleted: int
    cleared: int
    marked_manual: int
    owed: int
    grace: int
    manual: int
    unrecorded: int
    skipped: tuple[str, ...]


class Revoker:
    """Stand-in for `cekura_rotator.revocation.Revoker` (see the module docstring)."""

    def __init__(
        self,
        *,
        store: SecretsStore,
        cekura: CekuraClient,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._store = store
        self._cekura = cekura
        self._clock = clock

    def settle(
        self,
        secret: SecretDescription,
        *,
        who: RevocationCredential,
        deadline: float | None,
        known: Mapping[str, object] | None = None,
        sweep: object | None = None,
    ) -> SettleReport:
        """Settles nothing yet: reports the entries left (owed ones wait for finishSecret).
        Re-describes the secret first, as the real one does."""
        try:
            versions = self._store.describe(secret.arn).versions
        except SecretsStoreError:
            versions = secret.versions
        found = ledger.entries(versions)
        owed = sum(1 for e in found if e.state is ledger.State.OWED)
        return SettleReport(
            deleted=0,
            cleared=0,
            marked_manual=0,
            owed=owed,
            grace=sum(1 for e in found if e.state is ledger.State.GRACE),
            manual=sum(1 for e in found if e.state is ledger.State.MANUAL),
            unrecorded=0,
            skipped=("owed revocations are settled by the next finishSecret",) if owed else (),
        )

    def prove_gone(self, key: str, *, project: int, deadline: float | None) -> Proof:
        """Validate the key at Cekura: 401 is GONE, 200/403 LIVE, anything else UNKNOWN."""
        try:
            self._cekura.validate(key, project_id=project, deadline=deadline)
        except CekuraAuthError:
            return Proof.GONE
        except CekuraForbiddenError:
            return Proof.LIVE
        except CekuraError:
            return Proof.UNKNOWN
        return Proof.LIVE

    def clear(self, arn: str, entry: ledger.Entry) -> bool:
        """Remove the entry's labels; False (logged) if Secrets Manager refused one."""
        for label in entry.labels:
            try:
                self._store.move_stage(
                    arn, stage=label, to_version=None, from_version=entry.version_id
                )
            except SecretsStoreError as e:
                logger.warning(
                    "Clearing a revocation record failed",
                    secret_arn=arn,
                    label=label,
                    error_code=e.code,
                )
                return False
        return True
