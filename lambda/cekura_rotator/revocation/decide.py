"""Which keys may be revoked now: a pure decision from a snapshot, with no I/O.

The snapshot is what is known at one moment: every version's labels, what each read version holds,
when versions were created (when that was needed), and the credential that would revoke. The
answer is one action per record entry, and the stray keys that may be deleted. `revoker` gathers
the snapshot, carries the actions out, and asks `after_delete` what Cekura's answer means.

The rules, in the order they are applied:
1. A key that any label holds is never revoked: matched by id, or by value; a version whose value
   cannot be read could hold it, unless it was created before the version the rotator minted the
   key for (a key shown once, and stored only there, cannot be in an older version).
2. A manual entry whose key a label holds again goes back to owed: a person is told to delete only
   a key that no label holds.
3. Grace entries wait for the next rotation's beginning; a version of unknown content waits.
4. A key with no id cannot be deleted by id: it is for the dashboard.
5. A key outside the credential's projects cannot be deleted with it, and a 404 would prove
   nothing: it is for the dashboard.
6. A credential Cekura refused lately is not asked again: the entry becomes manual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cekura_rotator import key_names
from cekura_rotator.ledger import Entry, State, entries, held_versions, is_rotator_label
from cekura_rotator.secrets_store import CURRENT, PENDING


@dataclass(frozen=True, slots=True)
class HeldKey:
    """What a version holds, read loosely: a strict parse must not hide a key that is in use."""

    fingerprint: str | None  # None: the version holds no key
    key_id: int | None = None
    key_name: str | None = None
    project: int | None = None


class Unreadable:
    """A version whose value could not be read: an error (KMS, throttling), or "no value", which
    for a labelled version is a read not yet consistent, or a pending version not yet written."""

    def __init__(self, why: str):
        self.why = why

    def __repr__(self) -> str:
        return f"Unreadable({self.why!r})"


UNREADABLE = Unreadable("unreadable")
NO_VALUE = Unreadable("no value")
Known = HeldKey | Unreadable


@dataclass(frozen=True, slots=True)
class Scope:
    """The credential that would revoke: which projects it reaches, and Cekura's last word."""

    projects: frozenset[int] | None  # None: every project of its organisation
    refused: bool = False  # Cekura refused it a deletion lately

    def sees(self, project: int | None) -> bool:
        """Whether a 404 from this credential proves a key of `project` gone."""
        if self.projects is None:
            return True
        return project is not None and project in self.projects


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What is known of one secret at one moment."""

    versions: Mapping[str, tuple[str, ...]]
    keys: Mapping[str, Known]  # versions read so far
    created: Mapping[str, datetime] | None = None  # None: not fetched
    scope: Scope | None = None  # None: no credential to revoke with


class Do(StrEnum):
    """What to do with one entry."""

    DELETE = "delete"
    CLEAR = "clear"
    MARK_MANUAL = "mark manual"
    MARK_OWED = "mark owed"
    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class Action:
    """One entry's fate, with the key it is about and why (for the log and for people)."""

    do: Do
    entry: Entry
    key_id: int | None
    project: int | None
    reason: str


class Outcome(StrEnum):
    """Cekura's answer to a DELETE, classified once (see `revoker.Revoker.delete`)."""

    DELETED = "deleted"  # 2xx
    ABSENT = "absent"  # 404 from a credential that sees the key's project: gone
    HIDDEN = "hidden"  # 404 from one that may not see it: proves nothing
    REFUSED = "refused"  # 401, 403, 405: not with this credential
    FAILED = "failed"  # 5xx, 429, timeouts, broken answers: not now


@dataclass(frozen=True, slots=True)
class Needs:
    """What must be read before deciding."""

    versions: frozenset[str]
    created: bool


def needs(snapshot: Snapshot) -> Needs:
    """The versions to read (held ones, and entries known only by value) and whether version
    creation dates are needed. Call again after reading: what was read may need dates."""
    held = held_versions(snapshot.versions)
    wanted = set(held) | {e.version_id for e in entries(snapshot.versions) if e.key is None}
    if any(_by_value_only(snapshot.keys.get(v)) for v in held):
        # A held key known only by value is compared by value: every entry's key is needed.
        wanted |= {e.version_id for e in entries(snapshot.versions)}
    missing = frozenset(v for v in wanted if v not in snapshot.keys)
    uncertain = any(_uncertain(snapshot.keys.get(v)) for v in held)
    return Needs(missing, uncertain and snapshot.created is None)


def _uncertain(known: Known | None) -> bool:
    """A held version whose key cannot be matched by id: only its value or creation order can
    rule it out."""
    return isinstance(known, Unreadable) or _by_value_only(known)


def _by_value_only(known: Known | None) -> bool:
    return isinstance(known, HeldKey) and known.key_id is None and known.fingerprint is not None


def plan(snapshot: Snapshot) -> list[Action]:
    """One action per entry of the record."""
    return [_decide(snapshot, entry) for entry in entries(snapshot.versions)]


def _decide(s: Snapshot, entry: Entry) -> Action:  # noqa: PLR0911  (one outcome per rule)
    target = _target(s, entry)
    key_id = target.key_id if isinstance(target, HeldKey) else entry.key_id
    project = target.project if isinstance(target, HeldKey) else entry.project
    own = _public_labels(s, entry.version_id)
    empty = isinstance(target, HeldKey) and target.fingerprint is None and target.key_id is None
    if empty and not own:
        return Action(Do.CLEAR, entry, None, None, "the version holds no key")
    # Its own version labelled is held whether or not its value can be read.
    holder = f"{own} on version {entry.version_id}" if own else None
    if holder is None and isinstance(target, HeldKey):
        holder = _holder(s, entry, target)
    if holder is not None:
        if entry.state is State.MANUAL:
            return Action(Do.MARK_OWED, entry, key_id, project, f"held again by {holder}")
        return Action(Do.KEEP, entry, key_id, project, f"held by {holder}")
    if not isinstance(target, HeldKey):
        return Action(Do.KEEP, entry, key_id, project, target)
    if entry.state is State.GRACE:
        return Action(Do.KEEP, entry, key_id, project, "grace: owed from the next rotation on")
    manual = Do.KEEP if entry.state is State.MANUAL else Do.MARK_MANUAL
    if key_id is None:
        return Action(manual, entry, None, project, "no key id: delete it in the dashboard")
    if s.scope is None:
        return Action(Do.KEEP, entry, key_id, project, "no credential to revoke with")
    if not s.scope.sees(project) and project is not None:
        reason = f"project {project} is outside the credential's scope"
        return Action(manual, entry, key_id, project, reason)
    if s.scope.refused:
        return Action(manual, entry, key_id, project, "Cekura refused this credential lately")
    return Action(Do.DELETE, entry, key_id, project, "no label holds it")


def after_delete(action: Action, outcome: Outcome) -> Action:
    """What the entry becomes after Cekura answered its DELETE."""
    entry = action.entry

    def then(do: Do, reason: str) -> Action:
        return Action(do, entry, action.key_id, action.project, reason)

    if outcome in {Outcome.DELETED, Outcome.ABSENT}:
        return then(Do.CLEAR, f"key {outcome.value}")
    if outcome is Outcome.REFUSED and entry.state is State.OWED:
        return then(Do.MARK_MANUAL, "Cekura refuses deletion to this credential")
    if outcome is Outcome.HIDDEN:
        return then(Do.KEEP, "404 from a credential that may not see the key: not proof")
    return then(Do.KEEP, f"deletion {outcome.value}; retried later")


def _target(s: Snapshot, entry: Entry) -> HeldKey | str:
    """The key an entry names, or why it cannot be told."""
    known = s.keys.get(entry.version_id)
    if entry.key is not None:
        fingerprint = known.fingerprint if isinstance(known, HeldKey) else None
        return HeldKey(fingerprint, entry.key.key_id, None, entry.key.project)
    if known is None:
        return "the version was not read"
    if isinstance(known, Unreadable):
        return "the version cannot be read, so its key cannot be named"
    return known


def _holder(s: Snapshot, entry: Entry, target: HeldKey) -> str | None:
    """The labels of a version that holds (or may hold) the key, if any."""
    minted_here = entry.key is not None and entry.key.minted_here
    for version_id in held_versions(s.versions):
        if version_id == entry.version_id:
            continue  # (its own labels were weighed first)
        where = f"{_public_labels(s, version_id)} on version {version_id}"
        known = s.keys.get(version_id)
        if isinstance(known, HeldKey):
            if _same(known, target) is False:
                continue
            if _same(known, target):
                return where
        elif _pending_stub(s, version_id, known):
            continue
        # Unreadable, or a key that cannot be told apart from this one.
        if minted_here and _older(s, version_id, than=entry.version_id):
            continue
        return f"{where}, which may hold it"
    return None


def _same(a: HeldKey, b: HeldKey) -> bool | None:
    """Whether two versions hold the same key; None when it cannot be told."""
    if a.fingerprint is None and a.key_id is None:
        return False  # holds no key
    if a.key_id is not None and b.key_id is not None:
        return a.key_id == b.key_id
    if a.fingerprint is not None and b.fingerprint is not None:
        return a.fingerprint == b.fingerprint
    return None


def _pending_stub(s: Snapshot, version_id: str, known: Known | None) -> bool:
    """A version only AWSPENDING labels, with no value yet: RotateSecret's stub, which will only
    ever hold a key minted for it, never an older one."""
    return known is NO_VALUE and _public_labels(s, version_id) == [PENDING]


def _public_labels(s: Snapshot, version_id: str) -> list[str]:
    return [label for label in s.versions[version_id] if not is_rotator_label(label)]


def _older(s: Snapshot, version_id: str, *, than: str) -> bool:
    """`version_id` was created before `than` (creation dates are Secrets Manager's own)."""
    if s.created is None:
        return False
    mine, other = s.created.get(version_id), s.created.get(than)
    return mine is not None and other is not None and mine < other


# -- strays ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listed:
    """A key as Cekura lists it."""

    id: int
    name: str
    project: int | None


def strays(
    s: Snapshot,
    listed: Sequence[Listed],
    *,
    stem: str,
    project: int,
    recorded: Iterable[int],
    all_versions: Iterable[str] = (),
) -> tuple[list[Listed], list[str]]:
    """Keys minted for this secret that no label holds and no rotation may still be storing, and
    why others were spared.

    A key is named for the version it was minted for. It is spared while that version carries
    AWSPENDING off AWSCURRENT (its createSecret may be storing it right now), and while that
    version is not visible at all (in `s.versions` or `all_versions`, every version id including
    deprecated ones): a rotation that began after the snapshot.
    """
    visible = set(s.versions) | set(all_versions)
    in_flight = {
        v for v, stages in s.versions.items() if PENDING in stages and CURRENT not in stages
    }
    skip = set(recorded)
    found: list[Listed] = []
    spared: list[str] = []
    for key in listed:
        tag = key_names.tag_of(key.name, stem)
        if tag is None or key.project not in (None, project) or key.id in skip:
            continue
        minted_for = [v for v in visible if v.startswith(tag)]
        if not minted_for:
            spared.append(f"key {key.id}: the version it was minted for is not visible")
        elif any(v in in_flight for v in minted_for):
            spared.append(f"key {key.id}: its rotation is in progress")
        elif (holder := _stray_holder(s, key, minted_for)) is not None:
            if holder:  # (a key simply held by its version is no stray, and not worth a word)
                spared.append(f"key {key.id}: {holder}")
        else:
            found.append(key)
    return found, spared


def _stray_holder(s: Snapshot, key: Listed, minted_for: list[str]) -> str | None:
    """Why a labelled version may hold a listed key ("" when it plainly does); None if none."""
    target = HeldKey(None, key.id)
    for version_id in held_versions(s.versions):
        known = s.keys.get(version_id)
        same = _same(known, target) if isinstance(known, HeldKey) else None
        if same is False or _pending_stub(s, version_id, known):
            continue
        if same:
            return ""
        # Unreadable or known only by value: it may be this key, unless it is older than every
        # version the key could have been minted for.
        if not all(_older(s, version_id, than=v) for v in minted_for):
            return f"version {version_id} may hold it (not known by id)"
    return None
