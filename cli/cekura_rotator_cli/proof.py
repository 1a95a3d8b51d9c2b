"""Proof that a recorded key is gone at Cekura, and clearing its record.

TEMPORARY: the lead's revocation API (`cekura_rotator.revocation`: `Proof`, `Revoker.prove_gone`,
`Revoker.clear`) does exactly this. Once it is on main, each function below becomes one line:

    prove_gone -> Revoker(store=store, cekura=cekura).prove_gone(key, project=..., deadline=...)
    clear      -> Revoker(store=store, cekura=cekura).clear(arn, entry)

and `Proof` is imported from there. Nothing else in the CLI decides what proves a key gone.
"""

from __future__ import annotations

from enum import StrEnum

from cekura_rotator import ledger
from cekura_rotator.cekura import CekuraClient
from cekura_rotator.errors import CekuraAuthError, CekuraError, CekuraForbiddenError
from cekura_rotator.secrets_store import SecretsStore


class Proof(StrEnum):
    """What Cekura's validate says of a key: 401 gone; 200 or 403 (a live key of another
    project) live; anything else unknown."""

    GONE = "gone"
    LIVE = "live"
    UNKNOWN = "unknown"


def prove_gone(
    store: SecretsStore,
    cekura: CekuraClient,
    key: str,
    *,
    project: int,
    deadline: float | None = None,
) -> Proof:
    """Validate the key at Cekura: 401 -> GONE, 200/403 -> LIVE, anything else -> UNKNOWN."""
    del store  # the Revoker that replaces this holds it
    try:
        cekura.validate(key, project_id=project, deadline=deadline)
    except CekuraAuthError:
        return Proof.GONE
    except CekuraForbiddenError:
        return Proof.LIVE
    except CekuraError:
        return Proof.UNKNOWN
    return Proof.LIVE


def clear(store: SecretsStore, arn: str, entry: ledger.Entry) -> bool:
    """Remove the entry's labels from its version; True when every one is gone."""
    for label in entry.labels:
        store.move_stage(arn, stage=label, to_version=None, from_version=entry.version_id)
    return True
