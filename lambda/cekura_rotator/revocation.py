"""Which old keys may be revoked, the durable record of revocations still owed, the stray sweep.

The record lives in Secrets Manager as staging labels on the versions whose keys are owed:
`CEKURA_OWED_<version id>` (retried by every later finishSecret) and `CEKURA_MANUAL_<version id>`
(Cekura refused deletion with the rotator's credential: awaiting deletion in the dashboard, probed
again now and then in case Cekura starts to allow it). A label is attached before the key is
superseded and removed once the key is gone, so a step killed anywhere in between leaves the
debt on record. A labelled version is also one that Secrets Manager never deprecates, so the key's
id, name and value stay readable until it is settled. At most `MAX_RECORDED` labels are used.

Nothing here ever fails a step: a revocation that cannot be done now stays owed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cekura_rotator.cekura import CekuraClient, Credential, KeyInfo
from cekura_rotator.errors import (
    CekuraError,
    CekuraRefusedError,
    SecretsStoreError,
)
from cekura_rotator.observability import count, logger
from cekura_rotator.secret_value import SecretValue, fingerprint
from cekura_rotator.secrets_store import SecretsStore

OWED_PREFIX = "CEKURA_OWED_"
MANUAL_PREFIX = "CEKURA_MANUAL_"
# On a version whose testSecret could not read its value (see steps): finishSecret tests it.
UNTESTED = "CEKURA_UNTESTED"
# Owed records kept at once; Secrets Manager allows 20 labels per secret, and the application's
# own labels and AWSCURRENT/AWSPREVIOUS/AWSPENDING need room too.
MAX_RECORDED = 10
MAX_LABELS = 20
# After Cekura refuses listing or deleting with a credential, this container does not ask again
# for this long: the answer will not change between two rotations a minute apart.
REFUSAL_MEMORY_SECONDS = 3600.0
# Failures that mean a label cannot be written at all (limits, a bad name), as opposed to failing
# for now: recording is then given up, loudly, instead of blocking the rotation.
_UNRECORDABLE = frozenset(
    {"LimitExceededException", "InvalidParameterException", "ValidationException"}
)


def owed_label(version_id: str, *, manual: bool = False) -> str:
    """The label that records an owed revocation on a version."""
    return (MANUAL_PREFIX if manual else OWED_PREFIX) + version_id


def is_rotator_label(label: str) -> bool:
    """The rotator's own bookkeeping labels, which hold no key for anyone."""
    return label.startswith((OWED_PREFIX, MANUAL_PREFIX)) or label == UNTESTED


@dataclass(frozen=True, slots=True)
class OwedRevocation:
    """One version whose key is owed a revocation."""

    version_id: str
    labels: tuple[str, ...]
    manual: bool

    @property
    def label(self) -> str:
        """The label that states the entry (manual wins over owed)."""
        return owed_label(self.version_id, manual=self.manual)


def owed_revocations(versions: Mapping[str, Iterable[str]]) -> list[OwedRevocation]:
    """Every owed revocation recorded on the secret, owed ones before manual ones."""
    found = []
    for version_id, stages in versions.items():
        mine = tuple(s for s in stages if s.startswith((OWED_PREFIX, MANUAL_PREFIX)))
        if mine:
            manual = any(s.startswith(MANUAL_PREFIX) for s in mine)
            found.append(OwedRevocation(version_id, mine, manual))
    return sorted(found, key=lambda o: (o.manual, o.version_id))


def held_versions(versions: Mapping[str, Iterable[str]]) -> list[str]:
    """Versions carrying any label someone may read a key through (AWS's or custom)."""
    return [v for v, stages in versions.items() if any(not is_rotator_label(s) for s in stages)]


@dataclass(frozen=True, slots=True)
class HeldKey:
    """What a version holds, read loosely: a strict parse must not hide a key that is in use."""

    fingerprint: str | None
    key_id: int | None
    key_name: str | None


def held_key(raw: str | bytes | None) -> HeldKey:
    """The key in a version's value, as far as it can be told."""
    if not isinstance(raw, str) or not raw.strip():
        return HeldKey(None, None, None)
    try:
        document: Any = json.loads(raw)
    except ValueError:
        return HeldKey(fingerprint(raw.strip()), None, None)
    if not isinstance(document, dict):
        return HeldKey(fingerprint(raw.strip()), None, None)
    key = document.get("api_key")
    key_id = document.get("key_id")
    name = document.get("key_name")
    return HeldKey(
        fingerprint(key) if isinstance(key, str) and key else None,
        key_id if isinstance(key_id, int) and not isinstance(key_id, bool) else None,
        name if isinstance(name, str) else None,
    )


class _Unreadable:
    """A version whose value could not be read (KMS, throttling): its key is unknown."""


UNREADABLE = _Unreadable()


@dataclass
class VersionReader:
    """Reads versions' values for one step, each at most once."""

    store: SecretsStore
    arn: str
    known: dict[str, HeldKey | _Unreadable] = field(default_factory=dict)

    def remember(self, version_id: str, value: SecretValue) -> None:
        """A value the step has read already: not read again."""
        self.known[version_id] = HeldKey(value.fingerprint, value.key_id, value.key_name)

    def get(self, version_id: str) -> HeldKey | _Unreadable:
        if version_id not in self.known:
            try:
                raw = self.store.read(self.arn, version_id=version_id)
            except SecretsStoreError as e:
                logger.warning("A version cannot be read", version_id=version_id, error_code=e.code)
                self.known[version_id] = UNREADABLE
            else:
                # Every version read here is labelled or owed, so it holds a value: "not found"
                # is a read not yet consistent, not an empty version, and proves nothing.
                self.known[version_id] = UNREADABLE if raw is None else held_key(raw)
        return self.known[version_id]


@dataclass(frozen=True, slots=True)
class _InUse:
    ids: frozenset[int]
    fingerprints: frozenset[str]
    complete: bool  # every labelled version could be read
    all_have_ids: bool  # every labelled key is known by id (listing can be matched to it)

    def holds(self, key: HeldKey) -> bool:
        return (key.key_id is not None and key.key_id in self.ids) or (
            key.fingerprint is not None and key.fingerprint in self.fingerprints
        )


@dataclass(frozen=True, slots=True)
class Revocation:
    """What one finishSecret revokes: where, with what, until when."""

    arn: str
    versions: Mapping[str, tuple[str, ...]]  # the labels as they are now (after the move)
    credential: Credential | None  # None: the admin credential could not be had
    credential_id: str  # "self", or the admin secret's ARN: whose refusals are remembered
    project: int | None  # None: the sweep cannot tell this secret's keys, and is skipped
    key_stem: str | None  # names of keys this rotator mints for the secret; None: no sweep
    deadline: float | None


class Revoker:
    """Settles owed revocations and sweeps strays. One per container: it remembers refusals."""

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
        self._delete_refused_until: dict[str, float] = {}
        self._list_refused_until: dict[str, float] = {}

    # -- the record ---------------------------------------------------------------------------

    def refuses_deletion(self, credential_id: str) -> bool:
        """Cekura refused this credential a deletion lately (this container remembers)."""
        return self._refused(self._delete_refused_until, credential_id)

    def record(
        self,
        arn: str,
        versions: Mapping[str, tuple[str, ...]],
        version_ids: Iterable[str],
        *,
        manual: bool = False,
        reader: VersionReader | None = None,
    ) -> dict[str, tuple[str, ...]]:
        """Put the owed label on each version before its key is superseded; return the labels.
        `manual`: record them as awaiting manual deletion straight away. `reader` names the key
        in the log when it cannot be recorded.

        Raises on a failure that may pass (the step is retried before anything moved); gives up
        recording, with an error log, when the labels are full or cannot be written.
        """
        labels = {v: tuple(s) for v, s in versions.items()}
        for version_id in version_ids:
            if any(s.startswith((OWED_PREFIX, MANUAL_PREFIX)) for s in labels.get(version_id, ())):
                continue
            if not self._room(labels):
                self._unrecorded(version_id, "the owed-revocation record is full", reader)
                continue
            label = owed_label(version_id, manual=manual)
            try:
                self._store.move_stage(arn, stage=label, to_version=version_id, from_version=None)
            except SecretsStoreError as e:
                if e.code not in _UNRECORDABLE:
                    raise
                self._unrecorded(version_id, f"the label cannot be written ({e.code})", reader)
                continue
            labels[version_id] = (*labels.get(version_id, ()), label)
        return labels

    @staticmethod
    def _room(labels: Mapping[str, tuple[str, ...]]) -> bool:
        in_use = {s for stages in labels.values() for s in stages}
        return len(owed_revocations(labels)) < MAX_RECORDED and len(in_use) < MAX_LABELS

    @staticmethod
    def _unrecorded(version_id: str, why: str, reader: VersionReader | None) -> None:
        key = reader.get(version_id) if reader is not None else UNREADABLE
        count("RevocationsUnrecorded")
        # This log line is then the only record: it names the key as far as it is known.
        logger.error(
            "An owed revocation could not be recorded; delete this key in the dashboard, and "
            "settle the record (cekura-rotator revocations)",
            version_id=version_id,
            reason=why,
            key_id=key.key_id if isinstance(key, HeldKey) else None,
            key_name=key.key_name if isinstance(key, HeldKey) else None,
        )

    # -- settling -----------------------------------------------------------------------------

    def settle(self, job: Revocation, reader: VersionReader) -> int:
        """Revoke what is owed and may go now; return how many revocations are still owed."""
        owed = owed_revocations(job.versions)
        if not owed:
            return 0
        in_use = self._in_use(job.versions, reader)
        if not in_use.complete:
            logger.warning(
                "A labelled version cannot be read, so no key can be shown unused; "
                "revocations stay owed",
                owed=len(owed),
            )
            return len(owed)
        if job.credential is None:
            logger.warning("No credential to revoke with; revocations stay owed", owed=len(owed))
            return len(owed)
        remaining = 0
        revoked: set[str] = set()
        for entry in owed:
            if entry.manual and self._refused(self._delete_refused_until, job.credential_id):
                remaining += 1  # not even read: nothing can be done with it for now
                continue
            if not self._settle_one(job, entry, reader.get(entry.version_id), in_use, revoked):
                remaining += 1
        return remaining

    def _settle_one(  # noqa: PLR0911  (one outcome per kind of entry, top to bottom)
        self,
        job: Revocation,
        entry: OwedRevocation,
        target: HeldKey | _Unreadable,
        in_use: _InUse,
        revoked: set[str],
    ) -> bool:
        """True when the entry is settled (its label removed)."""
        fields: dict[str, Any] = {"version_id": entry.version_id}
        if isinstance(target, _Unreadable):
            return False  # logged by the reader; retried by a later finishSecret
        fields.update(key_id=target.key_id, key_name=target.key_name)
        if target.fingerprint is None:
            logger.info("Owed version holds no key; record cleared", **fields)
            return self._clear(job, entry)
        if in_use.holds(target):
            logger.info("Owed key is still held by a labelled version; kept", **fields)
            return False
        if target.fingerprint in revoked:
            return self._clear(job, entry)
        if target.key_id is None:
            if entry.manual:
                return False
            count("RevocationsImpossible")
            logger.warning(
                "Owed key has no key id, so it cannot be revoked by id; delete it in the "
                "dashboard, then clear the record",
                fingerprint=target.fingerprint,
                **fields,
            )
            return self._mark_manual(job, entry)
        if self._refused(self._delete_refused_until, job.credential_id):
            count("RevocationsRefused")
            logger.warning(
                "Cekura refused this credential a deletion lately; recorded for deletion in the "
                "dashboard",
                credential=job.credential_id,
                **fields,
            )
            return self._mark_manual(job, entry)
        assert job.credential is not None  # checked by settle
        try:
            deleted = self._cekura.delete_key(job.credential, target.key_id, deadline=job.deadline)
        except CekuraRefusedError as e:
            self._remember_refusal(self._delete_refused_until, job.credential_id)
            count("RevocationsRefused")
            logger.warning(
                "Cekura refuses to delete keys with this credential; delete this key in the "
                "dashboard",
                status=e.status,
                credential=job.credential_id,
                **fields,
            )
            return self._mark_manual(job, entry)
        except CekuraError as e:
            count("RevocationsFailed")
            logger.warning(
                "Deleting an owed key failed; a later rotation retries it", error=str(e), **fields
            )
            return False
        revoked.add(target.fingerprint)
        if deleted:
            count("KeysRevoked")
            logger.info("Deleted key", **fields)
        else:
            logger.info("Key was already gone", **fields)
        return self._clear(job, entry)

    def _in_use(self, versions: Mapping[str, tuple[str, ...]], reader: VersionReader) -> _InUse:
        ids: set[int] = set()
        fingerprints: set[str] = set()
        complete = all_have_ids = True
        for version_id in held_versions(versions):
            held = reader.get(version_id)
            if isinstance(held, _Unreadable):
                complete = False
                continue
            if held.key_id is not None:
                ids.add(held.key_id)
            elif held.fingerprint is not None:
                all_have_ids = False
            if held.fingerprint is not None:
                fingerprints.add(held.fingerprint)
        return _InUse(frozenset(ids), frozenset(fingerprints), complete, all_have_ids)

    def _clear(self, job: Revocation, entry: OwedRevocation) -> bool:
        for label in entry.labels:
            try:
                self._store.move_stage(
                    job.arn, stage=label, to_version=None, from_version=entry.version_id
                )
            except SecretsStoreError as e:
                # The key is gone; the label only makes a later step find that out again.
                logger.warning("Clearing an owed record failed", label=label, error_code=e.code)
                return False
        return True

    def _mark_manual(self, job: Revocation, entry: OwedRevocation) -> bool:
        if entry.manual:
            return False
        manual = owed_label(entry.version_id, manual=True)
        try:
            # Attached before the owed label goes: a crash in between leaves both, never none.
            self._store.move_stage(
                job.arn, stage=manual, to_version=entry.version_id, from_version=None
            )
            for label in entry.labels:
                self._store.move_stage(
                    job.arn, stage=label, to_version=None, from_version=entry.version_id
                )
        except SecretsStoreError as e:
            logger.warning("Marking a revocation as manual failed", error_code=e.code)
        return False

    # -- strays -------------------------------------------------------------------------------

    def sweep(self, job: Revocation, reader: VersionReader) -> None:
        """Delete keys minted for this secret that no labelled version holds."""
        if job.key_stem is None or job.credential is None or job.project is None:
            return
        if self._refused(self._list_refused_until, job.credential_id):
            return
        in_use = self._in_use(job.versions, reader)
        if not (in_use.complete and in_use.all_have_ids):
            # A key known only by value cannot be matched to a listed id: it could be deleted.
            logger.info("Stray sweep skipped: a labelled key is not known by id")
            return
        # Keys settle() is revoking anyway; manual ones are not read (a stray delete of one
        # is a debt paid, which the next settle() finds gone).
        owed_ids = {
            held.key_id
            for entry in owed_revocations(job.versions)
            if not entry.manual
            and isinstance(held := reader.get(entry.version_id), HeldKey)
            and held.key_id
        }
        try:
            listed = self._cekura.list_keys(job.credential, deadline=job.deadline)
        except CekuraRefusedError:
            self._remember_refusal(self._list_refused_until, job.credential_id)
            logger.info("Cekura does not let this credential list keys; strays are not swept")
            return
        except CekuraError as e:
            logger.warning("Listing keys for strays failed; a later rotation sweeps", error=str(e))
            return
        for key in listed:
            if self._is_stray(key, job, in_use.ids | owed_ids):
                self._delete_stray(job, key)

    @staticmethod
    def _is_stray(key: KeyInfo, job: Revocation, held: set[int] | frozenset[int]) -> bool:
        stem = job.key_stem or ""
        return (
            key.name.startswith(stem)
            and len(key.name) == len(stem) + KEY_TAG_CHARS
            and key.project in (None, job.project)
            and key.id not in held
        )

    def _delete_stray(self, job: Revocation, key: KeyInfo) -> None:
        fields: dict[str, Any] = {"key_id": key.id, "key_name": key.name}
        logger.warning("Stray key found: minted for this secret, held by no version", **fields)
        if self._refused(self._delete_refused_until, job.credential_id):
            return
        assert job.credential is not None  # checked by sweep
        try:
            deleted = self._cekura.delete_key(job.credential, key.id, deadline=job.deadline)
        except CekuraRefusedError:
            self._remember_refusal(self._delete_refused_until, job.credential_id)
            count("RevocationsRefused")
            logger.warning("Cekura refuses to delete the stray; delete it by hand", **fields)
            return
        except CekuraError as e:
            logger.warning("Deleting a stray failed; later rotations retry", error=str(e), **fields)
            return
        if deleted:
            count("StraysDeleted")
            logger.info("Deleted stray key", **fields)

    # -- refusals -----------------------------------------------------------------------------

    def _refused(self, memory: dict[str, float], credential_id: str) -> bool:
        until = memory.get(credential_id)
        return until is not None and self._clock() < until

    def _remember_refusal(self, memory: dict[str, float], credential_id: str) -> None:
        memory[credential_id] = self._clock() + REFUSAL_MEMORY_SECONDS


# Keys are named `<prefix>-<secret name>-<ARN hash>-<first 8 characters of the token>`: see
# steps.Rotator._key_stem.
KEY_TAG_CHARS = 8
