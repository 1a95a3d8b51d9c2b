"""Carries revocation out: gathers a snapshot, asks `decide`, and acts through the two ports.

One delete path (`Revoker.delete`) classifies Cekura's answer once; createSecret's compensation,
settling and the stray sweep all use it. Before any DELETE the secret is described again and the
decision taken anew, since another actor (a RotateSecret accepted the moment AWSCURRENT moved, a
person's PutSecretValue, an application's label) may have changed the labels in between.

Nothing here fails a step for Cekura's or AWS's trouble: what cannot be done now stays recorded
and is reported. Only a record write that fails for now raises (the step is then retried before
anything irreversible happened).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from cekura_rotator import ledger
from cekura_rotator.cekura import CekuraClient, Credential
from cekura_rotator.config import Config
from cekura_rotator.credentials import admin_arn_for, load_admin_credential
from cekura_rotator.errors import (
    AdminSecretError,
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
    CekuraRefusedError,
    SecretsStoreError,
)
from cekura_rotator.ledger import KeyRef, State
from cekura_rotator.observability import count, logger
from cekura_rotator.parallel import Calls
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
from cekura_rotator.revocation.record import Recorder
from cekura_rotator.secret_value import SecretValue, fingerprint
from cekura_rotator.secrets_store import SecretsStore

# After Cekura refuses listing or deleting with a credential, this container does not ask again
# for this long: the answer will not change between two rotations a minute apart.
REFUSAL_MEMORY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class RevocationCredential:
    """Who revokes: the credential, whose refusals are remembered, and the projects it reaches."""

    credential: Credential | None  # None: it could not be had (an admin secret unreadable)
    credential_id: str
    projects: frozenset[int] | None  # None: every project of its organisation


def revocation_credential(
    value: SecretValue, *, arn: str, config: Config, store: SecretsStore
) -> RevocationCredential:
    """The secret's admin credential when one is configured, else the key `value` holds."""
    try:
        admin_arn = admin_arn_for(value, config)
        if admin_arn is not None:
            admin = load_admin_credential(store, admin_arn)
            # Refusals are remembered per credential: a replaced one is asked afresh.
            credential_id = f"{admin_arn} {admin.credential.fingerprint}"
            return RevocationCredential(admin.credential, credential_id, admin.projects)
    except AdminSecretError as e:
        # Only revocation needs it here: what is owed stays recorded until it can be had.
        logger.warning("Admin credential unavailable for revocation", error=e.message)
        return RevocationCredential(None, "admin", None)
    # A project key reaches its own project only; its refusals are its own (another secret's
    # key may be allowed what this one is not).
    projects = frozenset({value.project_id}) if value.project_id else frozenset()
    return RevocationCredential(Credential.api_key(value.api_key), f"self {arn}", projects)


@dataclass(frozen=True, slots=True)
class SweepScope:
    """Which listed keys are this secret's: its key names' stem, and its project."""

    stem: str
    project: int


class Proof(StrEnum):
    """What Cekura says of a key asked about directly."""

    GONE = "gone"  # 401: Cekura does not know it
    LIVE = "live"  # 200, or 403 (a live key of another project)
    UNKNOWN = "unknown"  # no answer worth trusting


@dataclass
class SettleReport:
    """What one settling did and left."""

    deleted: int = 0
    cleared: int = 0
    marked_manual: int = 0
    strays_deleted: int = 0
    unrecorded: int = 0
    owed: int = 0
    grace: int = 0
    manual: int = 0
    kept: list[str] = field(default_factory=list)
    settled_ids: set[int] = field(default_factory=set)  # keys this run deleted or found gone

    def left(self, versions: Mapping[str, tuple[str, ...]]) -> None:
        entries = ledger.entries(versions)
        self.owed = sum(1 for e in entries if e.state is State.OWED)
        self.grace = sum(1 for e in entries if e.state is State.GRACE)
        self.manual = sum(1 for e in entries if e.state is State.MANUAL)


def held_key(raw: str | bytes | None, *, default_project: int | None = None) -> HeldKey:
    """The key in a version's value, as far as it can be told (a loose read: a value that fails
    the strict parse may still hold a key someone uses)."""
    if not isinstance(raw, str) or not raw.strip():
        return HeldKey(None)
    try:
        document: Any = json.loads(raw)
    except ValueError:
        return HeldKey(fingerprint(raw.strip()), project=default_project)
    if not isinstance(document, dict):
        return HeldKey(fingerprint(raw.strip()), project=default_project)
    key, key_id = document.get("api_key"), document.get("key_id")
    name, project = document.get("key_name"), document.get("project_id")
    return HeldKey(
        fingerprint(key) if isinstance(key, str) and key else None,
        key_id if _positive_int(key_id) else None,
        name if isinstance(name, str) else None,
        project if _positive_int(project) else default_project,
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class VersionReader:
    """Reads versions' values for one step, each at most once, loosely."""

    store: SecretsStore
    arn: str
    default_project: int | None = None
    known: dict[str, Known] = field(default_factory=dict)

    def remember(self, version_id: str, value: SecretValue) -> None:
        """A value the step has read already: not read again."""
        self.known[version_id] = HeldKey(
            value.fingerprint, value.key_id, value.key_name, value.project_id
        )

    def get(self, version_id: str) -> Known:
        if version_id not in self.known:
            try:
                raw = self.store.read(self.arn, version_id=version_id)
            except SecretsStoreError as e:
                logger.warning("A version cannot be read", version_id=version_id, error_code=e.code)
                self.known[version_id] = UNREADABLE
            else:
                # "Not found" for a labelled version is a read not yet consistent (or a pending
                # version not yet written, which `decide` knows how to weigh), never proof.
                self.known[version_id] = (
                    NO_VALUE if raw is None else held_key(raw, default_project=self.default_project)
                )
        return self.known[version_id]


class Revoker:
    """Records, settles and sweeps. One per container: it remembers Cekura's refusals."""

    def __init__(
        self,
        *,
        store: SecretsStore,
        cekura: CekuraClient,
        clock: Callable[[], float] = time.monotonic,
        calls: Calls | None = None,
    ):
        self._store = store
        self._cekura = cekura
        self._clock = clock
        self._calls = calls or Calls()
        self.recorder = Recorder(store)
        self._delete_refused_until: dict[str, float] = {}
        self._list_refused_until: dict[str, float] = {}

    # -- settling -----------------------------------------------------------------------------

    def settle(
        self,
        arn: str,
        versions: Mapping[str, tuple[str, ...]],
        *,
        who: RevocationCredential,
        deadline: float | None,
        reader: VersionReader | None = None,
        sweep: SweepScope | None = None,
    ) -> SettleReport:
        """Revoke what is owed and may go now, and (with `sweep`) strays; report what is left."""
        reader = reader or VersionReader(self._store, arn)
        report = SettleReport()
        labels = {v: tuple(s) for v, s in versions.items()}
        # The listing and the record's settling are independent: side by side.
        listed, labels = self._calls.pair(
            partial(self._list, who, sweep, deadline),
            partial(self._settle_record, arn, labels, reader, who, deadline, report),
        )
        if listed and sweep is not None:
            self._sweep(arn, labels, listed, reader, who, sweep, deadline, report)
        report.unrecorded += self.recorder.shed(arn, labels)
        report.left(labels)
        return report

    def _settle_record(  # noqa: PLR0917  (the parts of one settling, passed along)
        self,
        arn: str,
        labels: dict[str, tuple[str, ...]],
        reader: VersionReader,
        who: RevocationCredential,
        deadline: float | None,
        report: SettleReport,
    ) -> dict[str, tuple[str, ...]]:
        """Carry out the decision for every entry; return the labels after."""
        if not ledger.entries(labels):
            return labels
        try:
            actions = plan(self._snapshot(arn, labels, reader, who)[0])
            if any(a.do is Do.DELETE for a in actions):
                # Decide again on the labels as they are now, before anything irreversible.
                labels = self._labels_now(arn)
                actions = plan(self._snapshot(arn, labels, reader, who)[0])
        except SecretsStoreError as e:
            # Without a fresh look nothing is deleted: the record keeps every debt for later.
            logger.warning("Settling postponed: the secret cannot be read now", error_code=e.code)
            return labels
        for action in actions:
            self._carry_out(
                arn, labels=labels, action=action, who=who, deadline=deadline, report=report
            )
        return labels

    def _sweep(  # noqa: PLR0917  (the parts of one settling, passed along)
        self,
        arn: str,
        labels: dict[str, tuple[str, ...]],
        listed: list[Listed],
        reader: VersionReader,
        who: RevocationCredential,
        sweep: SweepScope,
        deadline: float | None,
        report: SettleReport,
    ) -> None:
        """Delete the listed keys that are strays, after one more look at the labels: the
        listing may show the key of a rotation that began after the labels were read."""
        try:
            found = self._strays(arn, labels, listed, reader, who, sweep, report, log=False)
            if found:
                found = self._strays(
                    arn, self._labels_now(arn), listed, reader, who, sweep, report, log=True
                )
        except SecretsStoreError as e:
            logger.warning(
                "Stray sweep postponed: the secret cannot be read now", error_code=e.code
            )
            return
        for key in found:
            self._delete_stray(key, who, deadline, report)

    def _strays(  # noqa: PLR0917  (the parts of one settling, passed along)
        self,
        arn: str,
        labels: Mapping[str, tuple[str, ...]],
        listed: list[Listed],
        reader: VersionReader,
        who: RevocationCredential,
        sweep: SweepScope,
        report: SettleReport,
        *,
        log: bool,
    ) -> list[Listed]:
        snapshot, all_versions = self._snapshot(arn, labels, reader, who)
        # Keys the record names, and those this run settled, are the record's business.
        recorded = {e.key_id for e in ledger.entries(labels) if e.key_id} | report.settled_ids
        pick = partial(
            strays, snapshot, listed, stem=sweep.stem, project=sweep.project, recorded=recorded
        )
        found, spared = pick(all_versions=all_versions)
        if any("not visible" in why for why in spared) and not all_versions:
            # DescribeSecret omits versions without labels: list every version once.
            found, spared = pick(
                all_versions=[v.version_id for v in self._store.list_versions(arn)]
            )
        if log:
            for why in spared:
                logger.info("Possible stray kept", reason=why)
        return found

    def _labels_now(self, arn: str) -> dict[str, tuple[str, ...]]:
        return {v: tuple(s) for v, s in self._store.describe(arn).versions.items()}

    def _snapshot(
        self,
        arn: str,
        labels: Mapping[str, tuple[str, ...]],
        reader: VersionReader,
        who: RevocationCredential,
    ) -> tuple[Snapshot, list[str]]:
        """What `decide` needs, read as far as needed; and every version id when listed."""
        scope = None
        if who.credential is not None:
            scope = Scope(
                who.projects, self._refused(self._delete_refused_until, who.credential_id)
            )
        created: dict[str, datetime] | None = None
        all_versions: list[str] = []
        snapshot = Snapshot(labels, dict(reader.known), created, scope)
        for _ in range(2):  # what is read may show that creation dates are needed
            wanted = needs(snapshot)
            for version_id in wanted.versions:
                reader.get(version_id)
            if wanted.created:
                listing = self._store.list_versions(arn)
                created = {v.version_id: v.created for v in listing if v.created}
                all_versions = [v.version_id for v in listing]
            snapshot = Snapshot(labels, dict(reader.known), created, scope)
        return snapshot, all_versions

    def _carry_out(
        self,
        arn: str,
        *,
        labels: dict[str, tuple[str, ...]],
        action: Action,
        who: RevocationCredential,
        deadline: float | None,
        report: SettleReport,
    ) -> None:
        fields: dict[str, Any] = {
            "version_id": action.entry.version_id,
            "key_id": action.key_id,
            "project_id": action.project,
            "reason": action.reason,
        }
        if action.do is Do.DELETE:
            assert who.credential is not None  # decided so
            assert action.key_id is not None
            outcome = self.delete(
                who.credential,
                action.key_id,
                project=action.project,
                scope=Scope(who.projects),
                credential_id=who.credential_id,
                deadline=deadline,
            )
            if outcome in {Outcome.DELETED, Outcome.ABSENT}:
                report.deleted += 1
                report.settled_ids.add(action.key_id)
            action = after_delete(action, outcome)
            fields["reason"] = action.reason
        if action.do is Do.CLEAR:
            if self.recorder.clear(arn, action.entry, labels):
                report.cleared += 1
                logger.info("Revocation settled; record cleared", **fields)
        elif action.do is Do.MARK_MANUAL:
            count("RevocationsManual")
            logger.warning(
                "Owed key recorded for deletion in the Cekura dashboard "
                "(cekura-rotator revocations list)",
                **fields,
            )
            if self.recorder.change_state(arn, labels, action.entry, State.MANUAL):
                report.marked_manual += 1
        elif action.do is Do.MARK_OWED:
            logger.info("A label holds a manual entry's key again; back to owed", **fields)
            self.recorder.change_state(arn, labels, action.entry, State.OWED)
        elif action.do is Do.KEEP:
            report.kept.append(f"version {action.entry.version_id}: {action.reason}")
            logger.info("Revocation kept", **fields)

    # -- the one delete path ------------------------------------------------------------------

    def delete(
        self,
        credential: Credential,
        key_id: int,
        *,
        project: int | None,
        scope: Scope,
        credential_id: str,
        deadline: float | None,
    ) -> Outcome:
        """DELETE a key at Cekura and classify the answer. Refusals are remembered."""
        fields: dict[str, Any] = {"key_id": key_id, "project_id": project}
        try:
            deleted = self._cekura.delete_key(credential, key_id, deadline=deadline)
        except CekuraRefusedError as e:
            self._remember(self._delete_refused_until, credential_id)
            count("RevocationsRefused")
            logger.warning("Cekura refuses this credential a deletion", status=e.status, **fields)
            return Outcome.REFUSED
        except CekuraError as e:
            count("RevocationsFailed")
            logger.warning("Deleting a key failed; retried later", error=str(e), **fields)
            return Outcome.FAILED
        if deleted:
            count("KeysRevoked")
            logger.info("Deleted key", **fields)
            return Outcome.DELETED
        if scope.sees(project):
            logger.info("Key was already gone", **fields)
            return Outcome.ABSENT
        logger.warning(
            "Cekura answered 404 to a credential that may not see the key's project; kept",
            **fields,
        )
        return Outcome.HIDDEN

    def prove_gone(self, key: str, *, project: int, deadline: float | None) -> Proof:
        """Ask Cekura about a key directly: unknown to it (401) is the only proof it is gone."""
        try:
            self._cekura.validate(key, project_id=project, deadline=deadline)
        except CekuraAuthError:
            return Proof.GONE
        except CekuraForbiddenError:
            return Proof.LIVE
        except CekuraError:
            return Proof.UNKNOWN
        return Proof.LIVE

    # -- strays -------------------------------------------------------------------------------

    def _list(
        self, who: RevocationCredential, sweep: SweepScope | None, deadline: float | None
    ) -> list[Listed] | None:
        if sweep is None or who.credential is None:
            return None
        if self._refused(self._list_refused_until, who.credential_id):
            # Said every time: a finishSecret's log should tell why its strays may be left.
            logger.info("Cekura refused this credential a listing lately; strays are not swept")
            return None
        try:
            listed = self._cekura.list_keys(who.credential, deadline=deadline)
        except CekuraRefusedError:
            self._remember(self._list_refused_until, who.credential_id)
            logger.info("Cekura does not let this credential list keys; strays are not swept")
            return None
        except CekuraError as e:
            logger.warning("Listing keys for strays failed; a later run sweeps", error=str(e))
            return None
        return [Listed(k.id, k.name, k.project) for k in listed]

    def _delete_stray(
        self,
        key: Listed,
        who: RevocationCredential,
        deadline: float | None,
        report: SettleReport,
    ) -> None:
        logger.warning(
            "Stray key found: minted for this secret, held by no version",
            key_id=key.id,
            key_name=key.name,
        )
        if who.credential is None or self._refused(self._delete_refused_until, who.credential_id):
            return
        outcome = self.delete(
            who.credential,
            key.id,
            project=key.project,
            scope=Scope(who.projects),
            credential_id=who.credential_id,
            deadline=deadline,
        )
        if outcome is Outcome.DELETED:
            count("StraysDeleted")
            report.strays_deleted += 1

    # -- refusals -----------------------------------------------------------------------------

    def refused(self, credential_id: str) -> bool:
        """Cekura refused this credential a deletion lately (this container remembers)."""
        return self._refused(self._delete_refused_until, credential_id)

    def _refused(self, memory: dict[str, float], credential_id: str) -> bool:
        until = memory.get(credential_id)
        return until is not None and self._clock() < until

    def _remember(self, memory: dict[str, float], credential_id: str) -> None:
        memory[credential_id] = self._clock() + REFUSAL_MEMORY_SECONDS


def key_ref(known: HeldKey, *, minted_here: bool) -> KeyRef | None:
    """How the record names a key read from a version (None: it has no id)."""
    if known.key_id is None:
        return None
    return KeyRef(known.key_id, known.project, minted_here)
