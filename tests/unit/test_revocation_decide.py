"""The revocation decision, table by table: every kind of entry, every rule, no AWS and no Cekura.

Each row is a snapshot (labels, what reading found, creation dates, the revoking credential) and
the one action the rules give for the record entry on version `v-old`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from cekura_rotator.ledger import KeyRef, State, entries, entry_label
from cekura_rotator.revocation.decide import (
    NO_VALUE,
    UNREADABLE,
    Action,
    Do,
    HeldKey,
    Known,
    Listed,
    Outcome,
    Scope,
    Snapshot,
    after_delete,
    needs,
    plan,
    strays,
)

OLD = "v-old-0000-0000-0000-000000000000"  # the version the entry is on
CUR = "v-cur-1111-1111-1111-111111111111"  # AWSCURRENT
PIN = "v-pin-2222-2222-2222-222222222222"  # an application's pinned version
PEND = "v-pen-3333-3333-3333-333333333333"  # a rotation in progress
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROJECT = 7
ADMIN = Scope(None)
SELF = Scope(frozenset({PROJECT}))

OLD_KEY = HeldKey("fp-old", 41, "rotator-s-abcd1234-v-old-0", PROJECT)
CUR_KEY = HeldKey("fp-cur", 42, "rotator-s-abcd1234-v-cur-1", PROJECT)


def owed(key_id: int | None = 41, *, state: State = State.OWED, minted_here: bool = False) -> str:
    key = KeyRef(key_id, PROJECT, minted_here) if key_id is not None else None
    return entry_label(state, version_id=OLD, key=key)


@dataclass
class Row:
    """One snapshot and the action expected for the entry on OLD."""

    name: str
    old_labels: tuple[str, ...]
    do: Do
    reason: str
    keys: dict[str, Known] = field(default_factory=lambda: {CUR: CUR_KEY})
    others: dict[str, tuple[str, ...]] = field(default_factory=dict)
    created: dict[str, datetime] | None = None
    scope: Scope | None = SELF

    def snapshot(self) -> Snapshot:
        versions = {OLD: self.old_labels, CUR: ("AWSCURRENT",), **self.others}
        return Snapshot(versions, self.keys, self.created, self.scope)


ROWS = [
    # -- an owed key named by the label: the common case ----------------------------------
    Row("owed, no label holds it: delete", (owed(),), Do.DELETE, "no label holds it"),
    Row("owed, its own version is AWSPREVIOUS: keep", (owed(), "AWSPREVIOUS"), Do.KEEP, "held"),
    Row(
        "owed, an application label on its own version: keep",
        (owed(), "APP_PINNED"),
        Do.KEEP,
        "APP_PINNED",
    ),
    Row(
        "owed, the same key id pinned on another version: keep",
        (owed(),),
        Do.KEEP,
        "held by ['APP_PINNED']",
        keys={CUR: CUR_KEY, PIN: HeldKey("fp-old", 41)},
        others={PIN: ("APP_PINNED",)},
    ),
    Row(
        "owed, another version pins the same key without an id (value matched): keep",
        (owed(),),
        Do.KEEP,
        "APP_PINNED",
        keys={CUR: CUR_KEY, OLD: OLD_KEY, PIN: HeldKey("fp-old")},
        others={PIN: ("APP_PINNED",)},
        created={OLD: T0, PIN: T0 - timedelta(days=1), CUR: T0},
    ),
    Row(
        "owed, a pinned key known only by value, the owed version read and different: delete",
        (owed(),),
        Do.DELETE,
        "no label holds it",
        keys={CUR: CUR_KEY, OLD: OLD_KEY, PIN: HeldKey("fp-person")},
        others={PIN: ("APP_PINNED",)},
    ),
    Row(
        "owed, a pinned key known only by value, the owed version unreadable: keep",
        (owed(),),
        Do.KEEP,
        "may hold it",
        keys={CUR: CUR_KEY, OLD: UNREADABLE, PIN: HeldKey("fp-person")},
        others={PIN: ("APP_PINNED",)},
    ),
    Row(
        "owed, another pinned version holds a different key id: delete",
        (owed(),),
        Do.DELETE,
        "no label holds it",
        keys={CUR: CUR_KEY, PIN: HeldKey("fp-x", 99)},
        others={PIN: ("APP_PINNED",)},
    ),
    Row(
        "owed, a pinned version holds no key at all: delete",
        (owed(),),
        Do.DELETE,
        "no label holds it",
        keys={CUR: CUR_KEY, PIN: HeldKey(None)},
        others={PIN: ("APP_PINNED",)},
    ),
    # -- a labelled version that cannot be read (KMS key change) ----------------------------
    Row(
        "owed, an unreadable pinned version, dates unknown: keep",
        (owed(minted_here=True),),
        Do.KEEP,
        "may hold it",
        keys={CUR: CUR_KEY, PIN: UNREADABLE},
        others={PIN: ("APP_PINNED",)},
    ),
    Row(
        "owed, minted here, an unreadable pinned version older than its version: delete",
        (owed(minted_here=True),),
        Do.DELETE,
        "no label holds it",
        keys={CUR: CUR_KEY, PIN: UNREADABLE},
        others={PIN: ("APP_PINNED",)},
        created={PIN: T0 - timedelta(days=90), OLD: T0, CUR: T0 + timedelta(days=30)},
    ),
    Row(
        "owed, minted here, an unreadable pinned version newer than its version: keep",
        (owed(minted_here=True),),
        Do.KEEP,
        "may hold it",
        keys={CUR: CUR_KEY, PIN: UNREADABLE},
        others={PIN: ("APP_PINNED",)},
        created={PIN: T0 + timedelta(days=1), OLD: T0, CUR: T0 + timedelta(days=30)},
    ),
    Row(
        "owed, not minted here (a person's key), an older unreadable pinned version: keep",
        (owed(minted_here=False),),
        Do.KEEP,
        "may hold it",
        keys={CUR: CUR_KEY, PIN: UNREADABLE},
        others={PIN: ("APP_PINNED",)},
        created={PIN: T0 - timedelta(days=90), OLD: T0, CUR: T0 + timedelta(days=30)},
    ),
    Row(
        "owed, a pending version with no value yet (RotateSecret's stub): delete",
        (owed(),),
        Do.DELETE,
        "no label holds it",
        keys={CUR: CUR_KEY, PEND: NO_VALUE},
        others={PEND: ("AWSPENDING",)},
    ),
    Row(
        "owed, a current version that reads as no value (a lagging read): keep",
        (owed(),),
        Do.KEEP,
        "may hold it",
        keys={CUR: NO_VALUE},
    ),
    # -- the credential -----------------------------------------------------------------------
    Row(
        "owed, no credential to revoke with: keep", (owed(),), Do.KEEP, "no credential", scope=None
    ),
    Row(
        "owed, a key of a project the credential does not reach: manual",
        (owed(),),
        Do.MARK_MANUAL,
        "outside the credential's scope",
        scope=Scope(frozenset({PROJECT + 1})),
    ),
    Row(
        "owed, an admin credential reaches every project: delete",
        (owed(),),
        Do.DELETE,
        "no label",
        scope=ADMIN,
    ),
    Row(
        "owed, Cekura refused this credential lately: manual",
        (owed(),),
        Do.MARK_MANUAL,
        "refused",
        scope=Scope(frozenset({PROJECT}), refused=True),
    ),
    Row(
        "owed and held, Cekura refused lately: still kept, never manual",
        (owed(), "APP_PINNED"),
        Do.KEEP,
        "APP_PINNED",
        scope=Scope(frozenset({PROJECT}), refused=True),
    ),
    # -- grace ---------------------------------------------------------------------------------
    Row(
        "grace, no label holds it: waits for the next rotation",
        (owed(state=State.GRACE),),
        Do.KEEP,
        "grace",
    ),
    Row("grace, held: keep", (owed(state=State.GRACE), "AWSPREVIOUS"), Do.KEEP, "AWSPREVIOUS"),
    # -- manual ---------------------------------------------------------------------------------
    Row(
        "manual, no label holds it, not refused lately: ask Cekura again",
        (owed(state=State.MANUAL),),
        Do.DELETE,
        "no label holds it",
    ),
    Row(
        "manual, refused lately: keep for the dashboard",
        (owed(state=State.MANUAL),),
        Do.KEEP,
        "refused",
        scope=Scope(frozenset({PROJECT}), refused=True),
    ),
    Row(
        "manual, held again by an application label: back to owed",
        (owed(state=State.MANUAL), "APP_PINNED"),
        Do.MARK_OWED,
        "held again",
    ),
    Row(
        "manual, out of scope: stays manual",
        (owed(state=State.MANUAL),),
        Do.KEEP,
        "outside",
        scope=Scope(frozenset({PROJECT + 1})),
    ),
    # -- entries named only by their version ------------------------------------------------
    Row(
        "version form, read: its key id is used",
        (owed(None),),
        Do.DELETE,
        "no label holds it",
        keys={CUR: CUR_KEY, OLD: OLD_KEY},
    ),
    Row(
        "version form, a key without an id: manual",
        (owed(None),),
        Do.MARK_MANUAL,
        "no key id",
        keys={CUR: CUR_KEY, OLD: HeldKey("fp-plain", None, None, PROJECT)},
    ),
    Row(
        "version form, holds no key: clear",
        (owed(None),),
        Do.CLEAR,
        "holds no key",
        keys={CUR: CUR_KEY, OLD: HeldKey(None)},
    ),
    Row(
        "version form, unreadable: keep (the key cannot be named)",
        (owed(None),),
        Do.KEEP,
        "cannot be read",
        keys={CUR: CUR_KEY, OLD: UNREADABLE},
    ),
    Row("version form, not read: keep", (owed(None),), Do.KEEP, "not read"),
    Row(
        "version form, manual, its own version unreadable and pinned again: back to owed",
        (owed(None, state=State.MANUAL), "APP_OTHER"),
        Do.MARK_OWED,
        "held again",
        keys={CUR: CUR_KEY, OLD: UNREADABLE},
    ),
    Row(
        "version form, manual, key without id: stays manual",
        (owed(None, state=State.MANUAL),),
        Do.KEEP,
        "no key id",
        keys={CUR: CUR_KEY, OLD: HeldKey("fp-plain", None, None, PROJECT)},
    ),
    Row(
        "version form, the same value is current (a person re-stored it): keep",
        (owed(None),),
        Do.KEEP,
        "AWSCURRENT",
        keys={CUR: HeldKey("fp-plain"), OLD: HeldKey("fp-plain")},
        created={CUR: T0, OLD: T0 - timedelta(days=1)},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_one_action_per_entry(row: Row) -> None:
    # Given a snapshot with one record entry on the old version
    snapshot = row.snapshot()
    # When the rules are applied
    actions = plan(snapshot)
    # Then that entry gets the expected action, for the expected reason
    assert len(actions) == 1
    action = actions[0]
    assert action.entry.version_id == OLD
    assert (action.do, row.reason in action.reason) == (row.do, True), action.reason


HOLDING = ("held", "APP_PINNED", "AWSPREVIOUS", "AWSCURRENT", "may hold")


@pytest.mark.parametrize(
    "row", [r for r in ROWS if any(word in r.reason for word in HOLDING)], ids=lambda r: r.name
)
@pytest.mark.parametrize("scope", [SELF, ADMIN, Scope(frozenset({PROJECT}), refused=True), None])
def test_a_key_a_label_may_hold_is_never_deleted_nor_sent_to_the_dashboard(
    row: Row, scope: Scope | None
) -> None:
    # Given a snapshot in which a label holds (or may hold) the entry's key, and any credential
    snapshot = Snapshot(row.snapshot().versions, row.keys, row.created, scope)
    # When the rules are applied
    (action,) = plan(snapshot)
    # Then the key is neither deleted nor handed to a person for deletion
    assert action.do not in {Do.DELETE, Do.MARK_MANUAL}, action.reason


AFTER = [
    (State.OWED, Outcome.DELETED, Do.CLEAR),
    (State.OWED, Outcome.ABSENT, Do.CLEAR),
    (State.OWED, Outcome.HIDDEN, Do.KEEP),
    (State.OWED, Outcome.REFUSED, Do.MARK_MANUAL),
    (State.OWED, Outcome.FAILED, Do.KEEP),
    (State.MANUAL, Outcome.DELETED, Do.CLEAR),
    (State.MANUAL, Outcome.ABSENT, Do.CLEAR),
    (State.MANUAL, Outcome.HIDDEN, Do.KEEP),
    (State.MANUAL, Outcome.REFUSED, Do.KEEP),
    (State.MANUAL, Outcome.FAILED, Do.KEEP),
]


@pytest.mark.parametrize(("state", "outcome", "do"), AFTER)
def test_what_cekuras_answer_to_a_delete_means(state: State, outcome: Outcome, do: Do) -> None:
    # Given an entry whose key was sent a DELETE
    (entry,) = entries({OLD: (owed(state=state),)})
    deleting = Action(Do.DELETE, entry, 41, PROJECT, "no label holds it")
    # When Cekura answers
    then = after_delete(deleting, outcome)
    # Then only a deletion, or a 404 from a credential that sees the project, clears the record
    assert then.do is do
    assert then.entry is entry


def test_needs_reads_held_versions_and_dates_only_when_a_held_key_is_uncertain() -> None:
    # Given a snapshot where the pinned version was not read yet
    versions = {OLD: (owed(),), CUR: ("AWSCURRENT",), PIN: ("APP_PINNED",)}
    first = needs(Snapshot(versions, {CUR: CUR_KEY}))
    # Then it is to be read, and dates are not needed yet
    assert first.versions == {PIN}
    assert not first.created
    # When it turns out unreadable, creation dates are needed
    second = needs(Snapshot(versions, {CUR: CUR_KEY, PIN: UNREADABLE}))
    assert second.versions == frozenset()
    assert second.created
    # And a readable key with an id needs none
    assert not needs(Snapshot(versions, {CUR: CUR_KEY, PIN: HeldKey("x", 5)})).created
    # But a pinned key known only by value needs the owed version read, to compare values
    by_value = needs(Snapshot(versions, {CUR: CUR_KEY, PIN: HeldKey("fp-person")}))
    assert by_value.versions == {OLD}


# -- strays ---------------------------------------------------------------------------------

STEM = "rotator-s-abcd1234-"


def _listed(key_id: int, version: str, *, project: int | None = PROJECT) -> Listed:
    return Listed(key_id, STEM + version[:8], project)


@dataclass
class StrayRow:
    name: str
    key: Listed
    swept: bool
    versions: dict[str, tuple[str, ...]]
    keys: dict[str, Known]
    created: dict[str, datetime] | None = None
    all_versions: tuple[str, ...] = ()
    recorded: tuple[int, ...] = ()


STRAY_ROWS = [
    StrayRow(
        "minted for the current version, another key stored there: stray",
        _listed(50, CUR),
        True,
        {CUR: ("AWSCURRENT",)},
        {CUR: CUR_KEY},
    ),
    StrayRow(
        "the key the current version holds: kept",
        _listed(42, CUR),
        False,
        {CUR: ("AWSCURRENT",)},
        {CUR: CUR_KEY},
    ),
    StrayRow(
        "minted for a rotation in progress (AWSPENDING off AWSCURRENT): kept",
        _listed(60, PEND),
        False,
        {CUR: ("AWSCURRENT",), PEND: ("AWSPENDING",)},
        {CUR: CUR_KEY, PEND: NO_VALUE},
    ),
    StrayRow(
        "minted for a version not visible yet (a rotation that just began): kept",
        _listed(61, PEND),
        False,
        {CUR: ("AWSCURRENT",)},
        {CUR: CUR_KEY},
    ),
    StrayRow(
        "minted for a deprecated version (listed with every version): stray",
        _listed(62, PEND),
        True,
        {CUR: ("AWSCURRENT",)},
        {CUR: CUR_KEY},
        all_versions=(PEND, CUR),
    ),
    StrayRow(
        "a labelled key known only by value, newer than the stray's version: kept",
        _listed(63, OLD),
        False,
        {CUR: ("AWSCURRENT",), OLD: ()},
        {CUR: HeldKey("fp-person")},
        created={OLD: T0, CUR: T0 + timedelta(days=1)},
    ),
    StrayRow(
        "a labelled key known only by value, older than the stray's version: stray",
        _listed(64, OLD),
        True,
        {CUR: ("AWSCURRENT",), OLD: ()},
        {CUR: HeldKey("fp-person")},
        created={OLD: T0, CUR: T0 - timedelta(days=1)},
    ),
    StrayRow(
        "an unreadable pinned version, dates unknown: kept",
        _listed(65, OLD),
        False,
        {CUR: ("AWSCURRENT",), OLD: (), PIN: ("APP_PINNED",)},
        {CUR: CUR_KEY, PIN: UNREADABLE},
    ),
    StrayRow(
        "a key the record settles already: left to the record",
        _listed(41, OLD),
        False,
        {CUR: ("AWSCURRENT",), OLD: (owed(),)},
        {CUR: CUR_KEY},
        recorded=(41,),
    ),
    StrayRow(
        "a key of another project: not this secret's",
        _listed(66, CUR, project=PROJECT + 1),
        False,
        {CUR: ("AWSCURRENT",)},
        {CUR: CUR_KEY},
    ),
    StrayRow(
        "a key of another secret (another stem): not this secret's",
        Listed(67, "rotator-other-00000000-" + CUR[:8], PROJECT),
        False,
        {CUR: ("AWSCURRENT",)},
        {CUR: CUR_KEY},
    ),
]


@pytest.mark.parametrize("row", STRAY_ROWS, ids=[r.name for r in STRAY_ROWS])
def test_which_listed_keys_are_strays(row: StrayRow) -> None:
    # Given a listing of keys and a snapshot of the secret
    snapshot = Snapshot(row.versions, row.keys, row.created, SELF)
    # When strays are picked
    found, spared = strays(
        snapshot,
        [row.key],
        stem=STEM,
        project=PROJECT,
        recorded=row.recorded,
        all_versions=row.all_versions,
    )
    # Then only a key no rotation can still be storing, and no label may hold, is a stray
    assert (row.key in found) is row.swept, spared
