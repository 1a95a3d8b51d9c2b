"""The owed-revocation record: the rotator's own staging labels, their names and their budget.

The record lives on the secret as staging labels on the version that holds each key:

- `CEKURA_OWED_<project>_<key id>`: owed. Later finishSecrets and the health check delete the key
  at Cekura once no label holds it, then remove the label.
- `CEKURA_GRACE_<project>_<key id>`: superseded while a rotation ran (a person's PutSecretValue
  made another version current). Readers may still hold it, so it becomes owed only when the next
  rotation begins.
- `CEKURA_MANUAL_<project>_<key id>`: Cekura refused the deletion to the rotator's credential, or
  the key lies outside the credential's scope: a person deletes it in the Cekura dashboard.
- A trailing `_R` says the rotator minted the key for the very version the label is on (so no
  version created before that one can hold it, whatever else is unknown).
- `CEKURA_OWED_<version id>` and `CEKURA_MANUAL_<version id>`: the key's id is unknown (a key
  stored without `key_id`, or a record written by 0.2). Only these need the version's value.

The key id and project are in the label so that a record can be settled, listed and explained
without decrypting anything: a KMS key change can make an old version unreadable for good.

The budget: Secrets Manager allows 20 labels across a secret's versions. A rotation needs room
for AWSPENDING (RotateSecret), AWSPREVIOUS (the AWSCURRENT move) and CEKURA_UNTESTED (testSecret),
so a record is written only while that room stays free, and at most MAX_RECORDED at once.
Nothing in this module performs I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from cekura_rotator.secrets_store import CURRENT, PENDING, PREVIOUS

OWED_PREFIX = "CEKURA_OWED_"
GRACE_PREFIX = "CEKURA_GRACE_"
MANUAL_PREFIX = "CEKURA_MANUAL_"
# On a version whose testSecret could not read its value: finishSecret tests it before the move.
UNTESTED = "CEKURA_UNTESTED"
MINTED_SUFFIX = "_R"

MAX_LABELS = 20
MAX_RECORDED = 10
# Labels a rotation may have to attach: RotateSecret's AWSPENDING, the move's AWSPREVIOUS,
# testSecret's CEKURA_UNTESTED. The record never takes the room they need.
RESERVED = (PENDING, PREVIOUS, UNTESTED)
AWS_LABELS = frozenset({CURRENT, PENDING, PREVIOUS})

# Version ids are 32-64 characters; `<project>_<key id>` with ids of at most 15 digits is shorter.
_KEY_FORM = re.compile(r"(\d{1,15})_(\d{1,15})(_R)?")


class State(StrEnum):
    """Where an owed revocation stands."""

    OWED = "owed"
    GRACE = "grace"
    MANUAL = "manual"


_PREFIXES = {State.OWED: OWED_PREFIX, State.GRACE: GRACE_PREFIX, State.MANUAL: MANUAL_PREFIX}
# Settling order: owed before grace before manual.
_ORDER = {State.OWED: 0, State.GRACE: 1, State.MANUAL: 2}


@dataclass(frozen=True, slots=True)
class KeyRef:
    """What the record states of a key, when it states it."""

    key_id: int
    project: int | None  # None: not known when recorded
    minted_here: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """One version's owed revocation: its labels (normally one) and the key they name."""

    version_id: str
    labels: tuple[str, ...]
    state: State
    key: KeyRef | None  # None: only the version's value names the key

    @property
    def key_id(self) -> int | None:
        return self.key.key_id if self.key else None

    @property
    def project(self) -> int | None:
        return self.key.project if self.key else None

    @property
    def label(self) -> str:
        """The label that states this entry in its state."""
        return entry_label(self.state, version_id=self.version_id, key=self.key)

    def moved_to(self, state: State) -> str:
        """The label of this entry in another state."""
        return entry_label(state, version_id=self.version_id, key=self.key)


def entry_label(state: State, *, version_id: str, key: KeyRef | None) -> str:
    """The label recording `key` (held by `version_id`) in `state`."""
    prefix = _PREFIXES[state]
    if key is None:
        return prefix + version_id
    suffix = MINTED_SUFFIX if key.minted_here else ""
    return f"{prefix}{key.project or 0}_{key.key_id}{suffix}"


def parse_label(label: str) -> tuple[State, KeyRef | None] | None:
    """The state and key a record label states; None for any other label."""
    for state, prefix in _PREFIXES.items():
        if label.startswith(prefix):
            rest = label[len(prefix) :]
            match = _KEY_FORM.fullmatch(rest)
            if match is None:
                return (state, None) if rest else None
            project = int(match.group(1)) or None
            return state, KeyRef(int(match.group(2)), project, bool(match.group(3)))
    return None


def is_rotator_label(label: str) -> bool:
    """The rotator's own bookkeeping labels: they hold no key for anyone."""
    return label == UNTESTED or parse_label(label) is not None


def entries(versions: Mapping[str, Iterable[str]]) -> list[Entry]:
    """Every owed revocation recorded on the secret: owed, then grace, then manual."""
    found = []
    for version_id, stages in versions.items():
        parsed = [(s, p) for s in stages if (p := parse_label(s)) is not None]
        if not parsed:
            continue
        states = {state for _, (state, _) in parsed}
        # A crash between attaching the new state's label and removing the old one leaves two:
        # the more cautious state wins (manual, then owed, then grace).
        state = next(s for s in (State.MANUAL, State.OWED, State.GRACE) if s in states)
        key = next((k for _, (_, k) in parsed if k is not None), None)
        found.append(Entry(version_id, tuple(s for s, _ in parsed), state, key))
    return sorted(found, key=lambda e: (_ORDER[e.state], e.version_id))


def held_versions(versions: Mapping[str, Iterable[str]]) -> list[str]:
    """Versions carrying any label someone may read a key through (AWS's or an application's)."""
    return [v for v, stages in versions.items() if any(not is_rotator_label(s) for s in stages)]


def labels_in_use(versions: Mapping[str, Iterable[str]]) -> set[str]:
    """Every distinct label on the secret."""
    return {s for stages in versions.values() for s in stages}


def spare_labels(
    versions: Mapping[str, Iterable[str]], *, reserved: Iterable[str] = RESERVED
) -> int:
    """Labels that can still be attached while leaving room for every `reserved` one."""
    in_use = labels_in_use(versions)
    missing = sum(1 for label in reserved if label not in in_use)
    return MAX_LABELS - len(in_use) - missing


def room_to_record(versions: Mapping[str, Iterable[str]]) -> bool:
    """Whether one more entry fits the budget (a change of state needs only a spare label)."""
    return spare_labels(versions) >= 1 and len(entries(versions)) < MAX_RECORDED


def rotator_labels(versions: Mapping[str, Iterable[str]]) -> set[str]:
    """The rotator's own labels on the secret."""
    return {label for label in labels_in_use(versions) if is_rotator_label(label)}
