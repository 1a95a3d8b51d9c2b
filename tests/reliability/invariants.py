"""The invariants (six of issue 4, three of issue 8, two of issue 14) as checks returning what
is violated.

Each check reads the world as it is (Secrets Manager as stored, through the strict AWS model's
ground truth or the tests' own client; Cekura through the fake's test controls) and takes what the
scenario did as `Evidence`. `verify` counts the checks and the violations in the test's `Ledger`
and fails the test with every violation listed. The rotator's record is read with
`cekura_rotator.ledger`, never re-spelt here.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from cekura_rotator import ledger as record
from cekura_rotator.key_names import TAG_CHARS
from infra.local.fake_cekura import KEY_PREFIX, FakeCekura, KeyRecord

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from tests.reliability.conftest import Ledger
    from tests.strict_aws import Refusal, StrictAws

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
ROTATOR_PREFIX = "rotator-"
# Anything shaped like a fake Cekura key, whichever test minted it.
_KEY_SHAPE = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{6,}")
_LOGGED_KEY_ID = re.compile(r'"key_id": (\d+)[,}]')


@dataclass
class Evidence:
    """What a scenario did and produced, for the checks that cannot read it from the world."""

    # Text the rotator produced outside its logs: return values, exception texts and tracebacks,
    # metric output. Scanned for key material along with the log lines.
    outputs: list[str] = field(default_factory=list)
    # createSecret attempts that did not finish: each may leave one minted-but-unstored key.
    create_failures: int = 0
    # Of those, the ones where Cekura's answer was lost or refused (timeout, dropped response,
    # malformed body): the rotator never learnt the key's id, so it cannot have logged it.
    lost_answers: int = 0
    # Keys left live by someone else's doing (a person's edit of the secret that took the last
    # label off a version, a rotation Secrets Manager abandoned): not counted by the grace bound.
    excused_key_ids: set[int] = field(default_factory=set)
    # 404s injected for a DELETE: Cekura said "gone" of a key that may be live, and the rotator
    # has to believe it (only a key minted for the secret can be found again, as a stray).
    delete_lies: int = 0

    def output(self, value: object) -> None:
        """Keep a return value or an exception (with its traceback and causes) for scanning."""
        if isinstance(value, BaseException):
            self.outputs.append(str(value))
            self.outputs.append(repr(value))
            self.outputs.append("".join(traceback.format_exception(value)))
        elif value is not None:
            self.outputs.append(str(value))


@dataclass(frozen=True)
class Version:
    """One version of the secret: its labels and, when it has a readable one, its key."""

    id: str
    stages: tuple[str, ...]
    api_key: str | None = field(repr=False)  # never shown in an assertion's message
    key_id: int | None = None  # as the value states it (a person may store a key without)
    project_id: int | None = None  # as the value states it
    pruned: bool = False  # Secrets Manager deleted it (strict model, rule 2)

    @property
    def held(self) -> bool:
        """Some label other than the rotator's own is on it: someone may read its key."""
        return any(not record.is_rotator_label(s) for s in self.stages)


def versions(
    sm: SecretsManagerClient, arn: str, *, truth: StrictAws | None = None
) -> list[Version]:
    """Every version kept, labelled or not, with the key it holds. With `truth` (the strict AWS
    model), as stored: every value whatever KMS says, and the versions pruned since."""
    if truth is not None:
        return [_version(v.id, v.stages, v.value, pruned=v.pruned) for v in truth.versions(arn)]
    described = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    found = []
    for version_id, stages in described.items():
        try:
            raw = sm.get_secret_value(SecretId=arn, VersionId=version_id).get("SecretString")
        except ClientError:
            raw = None  # the AWSPENDING stub RotateSecret makes has no value yet
        found.append(_version(version_id, tuple(stages), raw))
    return found


def _version(
    version_id: str, stages: tuple[str, ...], value: str | bytes | None, *, pruned: bool = False
) -> Version:
    raw = value.decode(errors="replace") if isinstance(value, bytes) else value
    return Version(version_id, stages, _api_key(raw), _key_id(raw), _project_of(raw), pruned=pruned)


def labels_of(all_versions: Iterable[Version]) -> dict[str, tuple[str, ...]]:
    """The labels of the versions still kept."""
    return {v.id: v.stages for v in all_versions if not v.pruned}


def held_key_ids(fake: FakeCekura, all_versions: Iterable[Version]) -> set[int]:
    """Keys a version holds under some label other than the rotator's own."""
    return {
        key_id
        for v in all_versions
        if v.api_key and v.held
        for key_id in [fake.key_id(v.api_key)]
        if key_id is not None
    }


def entry_key_ids(
    fake: FakeCekura, all_versions: Iterable[Version], *, states: Iterable[record.State] = ()
) -> dict[int, record.Entry]:
    """The keys the rotator's record names (in `states`, or in any): by the id in the label, or
    for an entry that names only its version, by that version's value."""
    everything = list(all_versions)
    values = {v.id: v.api_key for v in everything}
    wanted = set(states) or set(record.State)
    named: dict[int, record.Entry] = {}
    for entry in record.entries(labels_of(everything)):
        if entry.state not in wanted:
            continue
        key_id = entry.key_id
        if key_id is None:
            value = values.get(entry.version_id)
            key_id = fake.key_id(value) if value else None
        if key_id is not None:
            named[key_id] = entry
    return named


def recorded_key_ids(fake: FakeCekura, all_versions: Iterable[Version]) -> set[int]:
    """Keys the record names, in any state (owed, grace or manual)."""
    return set(entry_key_ids(fake, all_versions))


def _key_id(raw: str | None) -> int | None:
    try:
        document = json.loads(raw or "")
    except ValueError:
        return None
    key_id = document.get("key_id") if isinstance(document, dict) else None
    return key_id if isinstance(key_id, int) else None


def _api_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        document = json.loads(raw)
    except ValueError:
        return raw.strip()
    if isinstance(document, dict):
        key = document.get("api_key")
        return key if isinstance(key, str) else None
    return raw.strip()


def rotator_keys(fake: FakeCekura, project_id: int) -> list[KeyRecord]:
    """Live keys of the project that the rotator made (named `rotator-...`)."""
    return [k for k in fake.live_keys(project_id) if k.name.startswith(ROTATOR_PREFIX)]


def logged_key_ids(log_text: str) -> set[int]:
    """Key ids that appear as a `key_id` field in any log line."""
    return {int(m) for m in _LOGGED_KEY_ID.findall(log_text)}


# -- 1. AWSCURRENT holds a key Cekura accepts for the secret's project --------------------------


def current_is_live(sm: SecretsManagerClient, arn: str, fake: FakeCekura) -> list[str]:
    raw = sm.get_secret_value(SecretId=arn, VersionStage=CURRENT).get("SecretString")
    key = _api_key(raw)
    if key is None:
        return ["1: AWSCURRENT holds no readable api_key"]
    if not fake.is_live(key):
        return [f"1: AWSCURRENT holds key {fake.key_id(key)}, which Cekura no longer accepts"]
    project = _project_of(raw)
    key_id = fake.key_id(key)
    if project is not None and not any(k.id == key_id for k in fake.all_keys(project)):
        return [f"1: AWSCURRENT holds key {key_id}, which is not a key of project {project}"]
    return []


def _project_of(raw: str | None) -> int | None:
    try:
        document = json.loads(raw or "")
    except ValueError:
        return None
    project = document.get("project_id") if isinstance(document, dict) else None
    return project if isinstance(project, int) else None


# -- 2. A retried rotation completes; no AWSPENDING is left off AWSCURRENT ----------------------


def rotation_completed(all_versions: Iterable[Version], token: str) -> list[str]:
    problems = []
    by_id = {v.id: v for v in all_versions}
    if CURRENT not in by_id.get(token, Version(token, (), None)).stages:
        problems.append(f"2: the retried rotation {token[:8]} did not make its version AWSCURRENT")
    problems += [
        f"2: AWSPENDING is left on version {v.id[:8]}, which is not AWSCURRENT"
        for v in by_id.values()
        if PENDING in v.stages and CURRENT not in v.stages
    ]
    return problems


# -- 3. At most one stray key per interrupted createSecret, its id logged when it was known ------


def strays(fake: FakeCekura, project_id: int, all_versions: Iterable[Version]) -> list[KeyRecord]:
    """Live rotator-made keys that no version of the secret holds."""
    held = {fake.key_id(v.api_key) for v in all_versions if v.api_key}
    return [k for k in rotator_keys(fake, project_id) if k.id not in held]


def strays_of_secret(
    fake: FakeCekura, stem: str, all_versions: Iterable[Version]
) -> list[KeyRecord]:
    """Live keys minted for this secret (their name starts with its stem), in any project, that
    no version of the secret holds (pruned versions included)."""
    held = {fake.key_id(v.api_key) for v in all_versions if v.api_key}
    return [
        k
        for k in fake.live_keys()
        if k.name.startswith(stem) and len(k.name) == len(stem) + TAG_CHARS and k.id not in held
    ]


def strays_accounted(found: list[KeyRecord], evidence: Evidence, log_text: str) -> list[str]:
    problems = []
    if len(found) > evidence.create_failures:
        problems.append(
            f"3: {len(found)} stray keys ({[k.id for k in found]}) but only "
            f"{evidence.create_failures} interrupted createSecret attempts"
        )
    unlogged = [k.id for k in found if k.id not in logged_key_ids(log_text)]
    if len(unlogged) > evidence.lost_answers:
        problems.append(
            f"3: stray keys {unlogged} are not in the logs, and only {evidence.lost_answers} "
            "of Cekura's answers were lost"
        )
    return problems


def no_strays_left(found: list[KeyRecord]) -> list[str]:
    """After the faults cleared and two more rotations that could sweep safely: none is left."""
    if not found:
        return []
    return [f"3: strays {[k.id for k in found]} were never swept, though the sweep could be safe"]


def no_strays_of(found: list[KeyRecord], token: str) -> list[str]:
    """After a permissive-mode finishSecret swept: none of this rotation's strays is left."""
    mine = [k.id for k in found if k.name.endswith(f"-{token[:8]}")]
    return [f"3: strays {mine} of rotation {token[:8]} survived its sweep"] if mine else []


# -- 4. No key material in any log line, exception, metric or return value ----------------------


def key_material(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """Every text that holds a key: any key-shaped string, or any minted key's random part."""
    bodies = [s[len(KEY_PREFIX) :] for s in secrets if s.startswith(KEY_PREFIX)]
    problems = []
    for number, text in enumerate(texts):
        shaped = _KEY_SHAPE.search(text)
        hit = shaped.group(0) if shaped else next((b for b in bodies if b in text), None)
        if hit:
            at = text.find(hit)
            context = text[max(0, at - 60) : at].replace(hit, "<KEY>")
            problems.append(f"4: key material in output #{number} after {context!r}")
    return problems


# -- 5. Under grace with deletion permitted, at most two rotator-made keys live ----------------


def grace_bound(fake: FakeCekura, project_id: int, evidence: Evidence) -> list[str]:
    live = [k.id for k in rotator_keys(fake, project_id) if k.id not in evidence.excused_key_ids]
    if len(live) > 2:
        return [f"5: {len(live)} rotator-made keys live under grace: {live}"]
    return []


def grace_bound_of_secret(fake: FakeCekura, stem: str, evidence: Evidence) -> list[str]:
    """Invariant 5 for one secret, in whichever projects its keys were minted."""
    live = [
        k.id
        for k in fake.live_keys()
        if k.name.startswith(stem) and k.id not in evidence.excused_key_ids
    ]
    if len(live) > 2:
        return [f"5: {len(live)} rotator-made keys live under grace: {live}"]
    return []


# -- 6. Bad input changes nothing -----------------------------------------------------------


def snapshot(sm: SecretsManagerClient, arn: str, fake: FakeCekura) -> tuple[Any, ...]:
    """The secret's labels and values, and the live keys and their names, at this moment."""
    described = sm.describe_secret(SecretId=arn)
    return (
        described.get("RotationEnabled"),
        described.get("RotationLambdaARN"),
        sorted((v.id, v.stages, v.api_key) for v in versions(sm, arn)),
        sorted((k.id, k.name, k.project) for k in fake.live_keys()),
    )


def unchanged(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
    names = ("rotation enabled", "rotation function", "versions", "live Cekura keys")
    return [f"6: {name} changed" for name, b, a in zip(names, before, after, strict=True) if b != a]


# -- 7. AWSCURRENT never holds a key Cekura has not accepted ----------------------------------


def current_was_accepted(
    sm: SecretsManagerClient, arn: str, fake: FakeCekura, *, trusted: set[int]
) -> list[str]:
    """The AWSCURRENT key was validated (200, answer delivered) for the secret's project by
    itself, unless it is one the scenario started from (`trusted`)."""
    raw = sm.get_secret_value(SecretId=arn, VersionStage=CURRENT).get("SecretString")
    key = _api_key(raw)
    key_id = fake.key_id(key) if key else None
    if key_id is None or key_id in trusted:
        return []
    project = _project_of(raw)
    accepted = any(
        r.route == "validate"
        and r.status == 200
        and not r.dropped
        and r.caller_key_id == key_id
        and (project is None or r.query.get("project_id") == str(project))
        for r in fake.requests
    )
    return [] if accepted else [f"7: AWSCURRENT holds key {key_id}, which Cekura never accepted"]


# -- 8. Every revocation the policy owes is done, or recorded for the dashboard --------------

MANUAL_PREFIX = record.MANUAL_PREFIX


def given_up(log_text: str) -> tuple[set[int], set[str]]:
    """The keys (by id) and versions an ERROR log line names: where the rotator gave a record up
    loudly (no room in the label budget), that line is the record."""
    key_ids: set[int] = set()
    version_ids: set[str] = set()
    for line in log_text.splitlines():
        if '"level": "ERROR"' not in line:
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document.get("key_id"), int):
            key_ids.add(document["key_id"])
        if isinstance(document.get("version_id"), str):
            version_ids.add(document["version_id"])
    return key_ids, version_ids


def debts_settled(
    fake: FakeCekura,
    all_versions: Iterable[Version],
    *,
    deletion_allowed: bool,
    excused: set[int],
    scope: set[int] | None = None,
    log_text: str = "",
    undecidable: set[int] | None = None,
) -> list[str]:
    """After the faults cleared and two more rotations: every live key that no labelled version
    holds any more is deleted where the rotator could delete it (deletion allowed, the key in
    its credential's `scope` of projects (None: every project), and known by id), and otherwise
    recorded (owed, grace or manual), or given up loudly (an ERROR line in `log_text` names it or
    its version: the budget of labels had no room). A key in `undecidable` (no reading the
    rotator can make proves that no label holds it) may stay recorded. (A key several versions
    hold is judged once.)
    """
    everything = list(all_versions)
    logged_keys, logged_versions = given_up(log_text)
    held = held_key_ids(fake, everything)
    recorded = recorded_key_ids(fake, everything)
    # A key no version or record names by id cannot be deleted by id: recording it is all
    # there is to do.
    named = {v.key_id for v in everything if v.key_id is not None}
    named |= {e.key_id for e in record.entries(labels_of(everything)) if e.key_id is not None}
    projects = {k.id: k.project for k in fake.all_keys()}
    owed = {
        key_id: version
        for version in everything
        if version.api_key and fake.is_live(version.api_key)
        for key_id in [fake.key_id(version.api_key)]
        if key_id is not None and key_id not in held and key_id not in excused
    }
    # Given up for any version that holds it is given up for the key (a key stored twice).
    holders: dict[int, set[str]] = {}
    for version in everything:
        if version.api_key and (key_id := fake.key_id(version.api_key)) is not None:
            holders.setdefault(key_id, set()).add(version.id)
    problems = []
    for key_id, version in owed.items():
        if key_id in logged_keys or holders.get(key_id, set()) & logged_versions:
            continue
        deletable = (
            deletion_allowed
            and key_id in named
            and (scope is None or projects.get(key_id) in scope)
            and key_id not in (undecidable or set())
        )
        if deletable:
            problems.append(
                f"8: key {key_id} (version {version.id[:8]}) is owed a revocation and is still live"
            )
        elif key_id not in recorded:
            problems.append(
                f"8: key {key_id} (version {version.id[:8]}) is owed a revocation and is not "
                "recorded"
            )
    return problems


# -- 9. No labelled version's key is ever revoked --------------------------------------------


def labelled_keys_live(
    fake: FakeCekura, all_versions: Iterable[Version], *, excused: set[int]
) -> list[str]:
    problems = []
    for version in all_versions:
        key_id = fake.key_id(version.api_key) if version.api_key else None
        if key_id is None or key_id in excused or not version.held:
            continue
        if not fake.is_live(version.api_key or ""):
            labels = [s for s in version.stages if not record.is_rotator_label(s)]
            problems.append(f"9: key {key_id} held by {labels} was revoked")
    return problems


# -- 10. No rotation is ever made impossible by the rotator's own labels -----------------------


def _own_record(labels: Mapping[str, Iterable[str]]) -> set[str]:
    """The rotator's labels that take room beyond the reserved ones (its record entries)."""
    return record.rotator_labels(labels) - {record.UNTESTED}


def rotator_leaves_room(
    labels: Mapping[str, tuple[str, ...]],
    *,
    before: Mapping[str, tuple[str, ...]] | None = None,
    settled: bool = True,
) -> list[str]:
    """After a rotator step: when the secret's labels plus the reserved ones it lacks
    (AWSPENDING, AWSPREVIOUS, CEKURA_UNTESTED) exceed 20, the rotator holds no label of its own
    (CEKURA_UNTESTED, itself reserved, aside). Judged after a step that settled the record, or
    that attached a label of its own; a step in between cannot answer labels people attached
    since the last settling (a refusal they cause is judged by `no_refusal_for_rotator_labels`)."""
    if record.spare_labels(labels) >= 0:
        return []
    own = sorted(_own_record(labels))
    added = own if before is None else sorted(set(own) - _own_record(before))
    if not own or not (settled or added):
        return []
    in_use = len(record.labels_in_use(labels))
    what = "settled, yet holds" if settled else "attached"
    return [
        f"10: {in_use} labels leave no room for the reserved ones, and the rotator {what} "
        f"{len(added if not settled else own)} of its own ({(added or own)[:3]}...)"
    ]


def no_refusal_for_rotator_labels(refusals: Iterable[Refusal]) -> list[str]:
    """No RotateSecret or move of a reserved label was refused for the label quota while
    removing the rotator's own labels would have made room. (A refusal that follows a change
    of labels by someone else since the rotator's last call is theirs to answer for.)"""
    problems = []
    for refusal in refusals:
        reserved = [label for label in refusal.labels if label in record.RESERVED]
        if not reserved or (refusal.role == "observer" and refusal.actor_moved_labels):
            continue
        own = _own_record(refusal.before)
        if not own:
            continue
        wanted = record.labels_in_use(refusal.before) | set(refusal.labels)
        if len(wanted - own) <= record.MAX_LABELS:
            problems.append(
                f"10: {refusal.operation} could not attach {reserved} (label quota), and "
                f"removing the rotator's {len(own)} label(s) would have made room"
            )
    return problems


# -- 11. A record tells a person to delete only a key that no label holds ------------------


def manual_only_unheld(
    fake: FakeCekura,
    all_versions: Iterable[Version],
    *,
    before: Mapping[str, tuple[str, ...]] | None = None,
    settled: bool = True,
) -> list[str]:
    """After a rotator step: no CEKURA_MANUAL_ entry names a key (by id, or by its version's
    value) that a version with a label other than the rotator's holds. Judged for every entry
    after a step that settled the record, and for the entries a step made manual (a person may
    pin a key the record names between two settlings: the next one answers it)."""
    everything = list(all_versions)
    held = held_key_ids(fake, everything)
    manual = entry_key_ids(fake, everything, states=(record.State.MANUAL,))
    made_here = set() if before is None else record.rotator_labels(labels_of(everything))
    if before is not None:
        made_here -= record.rotator_labels(before)
    return [
        f"11: {entry.label} (version {entry.version_id[:8]}) tells a person to delete key "
        f"{key_id}, which a labelled version holds"
        for key_id, entry in manual.items()
        if key_id in held and (settled or set(entry.labels) & made_here)
    ]


# -- bookkeeping ----------------------------------------------------------------------------


class InvariantViolation(AssertionError):
    """Raised by `verify`: never taken for a failed step, wherever it is raised from."""


def verify(ledger: Ledger, *checks: Callable[[], list[str]]) -> None:
    """Run the checks, count them and their violations, and fail listing every violation."""
    problems: list[str] = []
    for check in checks:
        ledger.invariant_checks += 1
        problems += check()
    ledger.invariant_violations += len(problems)
    if problems:
        raise InvariantViolation("invariants violated:\n" + "\n".join(problems))
