"""Writes the owed-revocation record (`cekura_rotator.ledger`'s labels) through the store.

It never calls Cekura: the CLI records a cancelled rotation's key with it alone. A write that
fails for now raises (the caller's step is retried before anything irreversible); a record that
cannot be written at all (the label budget, a bad name) is given up loudly: an error log names
the key, and `RevocationsUnrecorded` counts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cekura_rotator import ledger
from cekura_rotator.errors import SecretsStoreError
from cekura_rotator.ledger import Entry, KeyRef, State
from cekura_rotator.observability import count, logger
from cekura_rotator.revocation.decide import HeldKey
from cekura_rotator.secrets_store import SecretsStore

# Failures that mean a label cannot be written at all (limits, a bad name), as opposed to failing
# for now: recording is then given up, loudly, instead of blocking the rotation.
_UNRECORDABLE = frozenset(
    {"LimitExceededException", "InvalidParameterException", "ValidationException"}
)


class Recorder:
    """The record's writes for one store."""

    def __init__(self, store: SecretsStore):
        self._store = store

    def record(
        self,
        arn: str,
        versions: Mapping[str, tuple[str, ...]],
        version_id: str,
        key: KeyRef | None,
        *,
        state: State = State.OWED,
        named: HeldKey | None = None,
    ) -> dict[str, tuple[str, ...]]:
        """Record that `version_id`'s key is owed (in `state`); return the labels after.

        Raises on a failure that may pass (the step is retried before anything irreversible);
        gives up, with an error log naming the key, when the budget is spent or the label cannot
        be written at all.
        """
        labels = {v: tuple(s) for v, s in versions.items()}
        if any(e.version_id == version_id for e in ledger.entries(labels)):
            return labels
        label = ledger.entry_label(state, version_id=version_id, key=key)
        if label in ledger.labels_in_use(labels):
            return labels  # the same key is recorded on another version already
        if not ledger.room_to_record(labels):
            self._unrecorded(version_id, key, named, "no room in the label budget")
            return labels
        try:
            self._store.move_stage(arn, stage=label, to_version=version_id, from_version=None)
        except SecretsStoreError as e:
            if e.code not in _UNRECORDABLE:
                raise
            self._unrecorded(version_id, key, named, f"the label cannot be written ({e.code})")
            return labels
        labels[version_id] = (*labels.get(version_id, ()), label)
        logger.info(
            "Revocation recorded", version_id=version_id, state=str(state), key_id=_id(key, named)
        )
        return labels

    def change_state(
        self, arn: str, versions: dict[str, tuple[str, ...]], entry: Entry, state: State
    ) -> bool:
        """Move an entry to another state: the new label first, so a crash leaves both, never
        none. Needs one spare label for the moment both exist; without one the entry stays."""
        new = entry.moved_to(state)
        if ledger.spare_labels(versions) < 1:
            logger.warning("No spare label to change a record's state", version_id=entry.version_id)
            return False
        try:
            # An entry a crashed change left with both labels already carries the new one.
            if new not in versions[entry.version_id]:
                self._store.move_stage(
                    arn, stage=new, to_version=entry.version_id, from_version=None
                )
                versions[entry.version_id] = (*versions[entry.version_id], new)
            for label in (old for old in entry.labels if old != new):
                self._store.move_stage(
                    arn, stage=label, to_version=None, from_version=entry.version_id
                )
                versions[entry.version_id] = tuple(
                    s for s in versions[entry.version_id] if s != label
                )
        except SecretsStoreError as e:
            logger.warning("Changing a record's state failed", error_code=e.code)
            return False
        return True

    def clear(
        self, arn: str, entry: Entry, versions: dict[str, tuple[str, ...]] | None = None
    ) -> bool:
        """Remove an entry's labels (its key is gone, or a person settled it)."""
        for label in entry.labels:
            try:
                self._store.move_stage(
                    arn, stage=label, to_version=None, from_version=entry.version_id
                )
            except SecretsStoreError as e:
                # The key is gone; the label only makes a later run find that out again.
                logger.warning("Clearing a record failed", label=label, error_code=e.code)
                return False
            if versions is not None and entry.version_id in versions:
                versions[entry.version_id] = tuple(
                    s for s in versions[entry.version_id] if s != label
                )
        return True

    def shed(
        self,
        arn: str,
        versions: dict[str, tuple[str, ...]],
        *,
        needing: Iterable[str] = ledger.RESERVED,
    ) -> int:
        """Give up records, loudly, while the secret lacks room for the labels a rotation needs
        (`needing`; applications may have added labels since). Manual ones go first: a person
        has them already."""
        shed = 0
        for entry in sorted(ledger.entries(versions), key=lambda e: e.state != State.MANUAL):
            if ledger.spare_labels(versions, reserved=needing) >= 0:
                break
            if self.clear(arn, entry, versions):
                shed += 1
                self._unrecorded(entry.version_id, entry.key, None, "given up to free a label")
        return shed

    def _unrecorded(
        self, version_id: str, key: KeyRef | None, named: HeldKey | None, why: str
    ) -> None:
        count("RevocationsUnrecorded")
        # This log line is then the only record: it names the key as far as it is known.
        logger.error(
            "An owed revocation is not recorded; delete this key in the Cekura dashboard",
            version_id=version_id,
            reason=why,
            key_id=_id(key, named),
            key_name=named.key_name if named else None,
            project_id=(key.project if key else None) or (named.project if named else None),
        )


def _id(key: KeyRef | None, named: HeldKey | None) -> int | None:
    if key is not None:
        return key.key_id
    return named.key_id if named else None
