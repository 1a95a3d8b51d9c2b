"""Revoking old keys: `decide` (pure: which keys may go now) and `revoker` (carrying it out).

The record itself, the rotator's staging labels, is `cekura_rotator.ledger`.
"""

from cekura_rotator.revocation.decide import HeldKey, Outcome, Scope
from cekura_rotator.revocation.record import Recorder
from cekura_rotator.revocation.revoker import (
    Proof,
    RevocationCredential,
    Revoker,
    SettleReport,
    SweepScope,
    VersionReader,
    held_key,
    key_ref,
    revocation_credential,
)

__all__ = [
    "HeldKey",
    "Outcome",
    "Proof",
    "Recorder",
    "RevocationCredential",
    "Revoker",
    "Scope",
    "SettleReport",
    "SweepScope",
    "VersionReader",
    "held_key",
    "key_ref",
    "revocation_credential",
]
