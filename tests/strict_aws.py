"""The strict AWS model: Secrets Manager as AWS documents it, layered on moto, for the tests.

moto keeps the state (secrets, versions, labels, values) and answers most calls. This model sits
at botocore's event boundary of the clients it is attached to (`before-call` and `after-call`),
and reads and writes moto's in-process backend, to add the rules of the real service that moto
does not have, or has the wrong way round. Each rule names the AWS documentation it follows
(collected, with the sources, in the team's aws-rules notes; the README lists them):

1. `label-quota`: at most 20 staging labels across all versions of a secret. A call that would
   attach a 21st (UpdateSecretVersionStage, the AWSPREVIOUS an AWSCURRENT move creates,
   PutSecretValue's labels, RotateSecret's AWSPENDING) fails with LimitExceededException and
   changes nothing. (User Guide, "What's in a secret" and the quotas table.)
2. `versions-pruned`: about 100 versions per secret. Past it, unlabelled versions created more than
   24 hours ago are deleted, oldest first; labelled versions never are. The model has its own
   clock for version ages (`age`). (User Guide, quotas; UpdateSecretVersionStage API reference.)
3. `kms-unreadable`: a KMS key change (`change_kms_key`, an UpdateSecret with KmsKeyId) re-encrypts
   only the versions labelled AWSCURRENT, AWSPENDING or AWSPREVIOUS at that moment. Every other
   version stays under the old key, which the model treats as disabled (the answer worst for the
   rotator): GetSecretValue of it fails with DecryptionFailure. (User Guide, "Change the
   encryption key for a secret".)
4. `rotate-accepted` / `rotate-refused`: RotateSecret is refused ("A previous rotation isn't
   complete...") only while AWSPENDING is on a version other than AWSCURRENT's; with AWSPENDING on
   AWSCURRENT's version it is accepted and the label moves. moto has this inverted.
   (RotateSecret API reference.)
5. `put-mid-rotation`: PutSecretValue without VersionStages (or with AWSCURRENT) moves AWSCURRENT
   to the new version and AWSPREVIOUS to the version that was current, keeping every other label,
   at any moment, mid-rotation included. moto gives AWSPREVIOUS to the version it last made
   current itself and drops that version's other labels. (PutSecretValue API reference.)
   `overwrite-refused`: a PutSecretValue whose ClientRequestToken names a version that holds
   another value fails with ResourceExistsException; the same value again is an idempotent
   success that changes nothing. moto overwrites. (PutSecretValue API reference.)
   `label-cas-refused`: moving a label that sits on another version requires naming that version
   in RemoveFromVersionId, else InvalidParameterException; moto puts the label on two versions.
   Removing a label from a version that does not carry it (any more) fails too: AWS documents a
   mismatched RemoveFromVersionId as a failure, and the model takes it for removals as well (the
   answer worst for the rotator). (UpdateSecretVersionStage API reference.)
6. `deletion-refused`: a secret scheduled for deletion refuses reads and writes
   (InvalidRequestException, "marked for deletion") until RestoreSecret; DescribeSecret still
   answers, with DeletedDate. moto lets writes through. (DeleteSecret API reference;
   InvalidRequestException causes.)
7. `lagging-read`: reads may lag writes. With `read_lag` = n, each version a PutSecretValue
   writes answers ResourceNotFoundException to the first n reads that resolve to it, until
   `catch_up` (time has passed: the harness calls it when the faults clear).
   `lost-answer`: a write carried out whose answer is lost is injected by the harness
   (`AwsFaults` with `after=True`) and counted here. (Eventual consistency notes; general AWS API
   behaviour.)
8. `throttled`: PutSecretValue and UpdateSecretVersionStage share an account-wide quota; with
   `throttle_rate` > 0 a call fails, before any change, with ThrottlingException, as botocore
   surfaces it after its own retries. (User Guide, quotas.)
9. `pending-removed` / `pending-kept`: when a rotation completes, Secrets Manager may remove
   AWSPENDING itself or leave it on AWSCURRENT's version; both end states are legal, and when the
   backend cleans up is not documented. The harness calls `rotation_finished` after a finishSecret
   succeeded, and the model picks one (`pending_after_finish`); an actor may have it cleaned up
   the moment finishSecret moves AWSCURRENT (`remove_pending`), while that finishSecret runs.
   (Rotation function docs; aws-samples rotation-lambdas issue #168, PR #145.)
10. RotateSecret sends the ARN as SecretId: `infra/local/lambda_bridge.py` already does that.
11. `deprecated-hidden`: DescribeSecret lists in VersionIdsToStages only the versions that have
   labels (the others are deprecated); ListSecretVersionIds lists those only with
   IncludeDeprecated, and dates each version when it was written (on the model's clock). moto
   lists every version everywhere and dates them all "now". (DescribeSecret and
   ListSecretVersionIds API references.)

Roles. A client attached as `rotator` meets every rule. A client attached as `observer` (the
tests' own client, which the actors write with) meets the write rules, but reads ground truth:
its GetSecretValue is never refused for KMS, lag or a scheduled deletion, so that invariant checks
see what is stored. `versions` and `value_of` read the backend directly, pruned versions included.

Every rule met is counted in `counts` (see `RULES`), which `make reliability` prints.
`on_call` lets a test act at a call chosen by what it does (its operation and parameters), before
it or after it succeeds: a person's PutSecretValue just before finishSecret moves AWSCURRENT, a
second RotateSecret just after.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from infra.local.lambda_bridge import ACCOUNT_ID, REGION

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

Role = Literal["rotator", "observer"]
PendingAfterFinish = Literal["remove", "keep", "random"]

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
AWS_LABELS = (CURRENT, PENDING, PREVIOUS)
MAX_LABELS = 20
MAX_VERSIONS = 100
PRUNE_AGE_SECONDS = 24 * 3600.0
DEFAULT_KMS_KEY = "alias/aws/secretsmanager"

# The names under which rules met are counted, in the order they are printed.
RULES = (
    "label-quota",
    "versions-pruned",
    "kms-unreadable",
    "rotate-accepted",
    "rotate-refused",
    "put-mid-rotation",
    "overwrite-refused",
    "label-cas-refused",
    "deletion-refused",
    "lagging-read",
    "lost-answer",
    "throttled",
    "pending-removed",
    "pending-kept",
    "deprecated-hidden",
)

_PARAMS = "strict_aws.params"
_WRITES = frozenset({"PutSecretValue", "UpdateSecretVersionStage", "UpdateSecret"})
_MARKED_FOR_DELETION = (
    "You can't perform this operation on the secret because it was marked for deletion."
)
ROTATION_IN_PROGRESS = "A previous rotation isn't complete. That rotation will be reattempted."


@dataclass(frozen=True)
class Refusal:
    """A call refused with LimitExceededException, and the labels at that moment."""

    operation: str
    labels: tuple[str, ...]  # the labels the call would have attached
    before: Mapping[str, tuple[str, ...]]  # every version's labels when it was refused
    role: Role
    # An observer (an actor) changed labels since the last call a rotator client made.
    actor_moved_labels: bool


@dataclass(frozen=True)
class StoredVersion:
    """One version as stored (ground truth): its labels and value, pruned or not."""

    id: str
    stages: tuple[str, ...]
    value: str | bytes | None = field(repr=False)  # a key: never in an assertion's message
    pruned: bool = False


@dataclass
class _Meta:
    created: float  # epoch seconds on the model's clock (`StrictAws.now`)
    order: int  # when first seen, among all versions (ties of `created` broken by it)
    kms_key: str


@dataclass
class _Hook:
    operation: str
    after: bool
    match: Callable[[Mapping[str, Any]], bool]
    act: Callable[[Mapping[str, Any]], object]
    once: bool


@dataclass
class StrictAws:
    """The strict AWS model over moto's in-process backend (see the module docstring)."""

    seed: int = 0
    throttle_rate: float = 0.0
    read_lag: int = 0
    pending_after_finish: PendingAfterFinish = "remove"
    account: str = ACCOUNT_ID
    region: str = REGION
    counts: Counter[str] = field(default_factory=Counter)
    refusals: list[Refusal] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._rng = random.Random(self.seed)
        self._clock = 0.0  # how far the model's clock is ahead of the real one
        self._meta: dict[tuple[str, str], _Meta] = {}
        self._keys: dict[str, str] = {}  # arn -> the secret's KMS key now
        self._lagging: dict[tuple[str, str], int] = {}
        self._pruned: dict[str, list[StoredVersion]] = {}
        self._hooks: list[_Hook] = []
        self._observer: SecretsManagerClient | None = None
        self._actor_moved_labels = False
        self._suspended = 0

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, client: SecretsManagerClient, *, role: Role = "rotator") -> None:
        """Apply the model to every Secrets Manager call this client makes. Faults armed on the
        client before (the harness's `AwsFaults`) fire first: such a call never reached AWS."""
        events = client.meta.events
        events.register("before-parameter-build.secrets-manager", _stash_params)
        events.register_last(
            "before-call.secrets-manager",
            lambda model, context, **_: self._before(str(model.name), context, role),
        )
        events.register_last(
            "after-call.secrets-manager",
            lambda model, http_response, parsed, context, **_: self._after(
                str(model.name), context, http_response, parsed, role
            ),
        )
        if role == "observer" and self._observer is None:
            self._observer = client

    @property
    def backend(self) -> Any:
        """moto's Secrets Manager backend for the model's account and region."""
        from moto.secretsmanager.models import secretsmanager_backends

        return secretsmanager_backends[self.account][self.region]

    def on_call(
        self,
        operation: str,
        act: Callable[[Mapping[str, Any]], object],
        *,
        after: bool = False,
        match: Callable[[Mapping[str, Any]], bool] = lambda _: True,
        once: bool = True,
    ) -> None:
        """Run `act(params)` when a rotator client's call of `operation` whose parameters
        `match` begins (or, `after`, has succeeded), in the calling thread, before the caller
        goes on. The model's lock is not held: `act` may make calls of its own."""
        self._hooks.append(_Hook(operation, after, match, act, once))

    def clear_hooks(self) -> None:
        self._hooks.clear()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """No rule applies inside the block (set-up calls of a test, not part of a scenario)."""
        with self._lock:
            self._suspended += 1
        try:
            yield
        finally:
            with self._lock:
                self._suspended -= 1

    # -- actors and Secrets Manager's own acts ---------------------------------------------

    def age(self, hours: float) -> None:
        """Time passes for version ages (rules 2 and 11)."""
        with self._lock:
            self._clock += hours * 3600.0

    def catch_up(self) -> None:
        """Time passes for reads (rule 7): every version written so far is seen by every read.
        (A lag is counted in reads, and a version nobody read would otherwise lag for ever.)"""
        with self._lock:
            self._lagging.clear()

    def now(self) -> float:
        """The model's clock: real time, plus the hours `age` let pass."""
        return time.time() + self._clock

    def change_kms_key(self, secret_id: str, key_id: str | None = None) -> str:
        """A person points the secret at another KMS key (UpdateSecret with KmsKeyId, through the
        observer client) and disables the old one. Returns the new key's id."""
        assert self._observer is not None, "attach an observer client first"
        new_key = key_id or f"arn:aws:kms:{self.region}:{self.account}:key/{uuid.uuid4()}"
        self._observer.update_secret(SecretId=secret_id, KmsKeyId=new_key)
        return new_key

    def remove_pending(self, secret_id: str, token: str) -> bool:
        """Secrets Manager cleans AWSPENDING up itself, now, if it is on AWSCURRENT's version
        (the token's): the rotation is complete as far as AWS is concerned (rule 9, at the
        moment finishSecret moved AWSCURRENT, while that finishSecret still runs)."""
        with self._lock:
            secret = self._secret(secret_id)
            stages = secret.versions.get(token, {}).get("version_stages", []) if secret else []
            if PENDING not in stages or CURRENT not in stages:
                return False
            stages.remove(PENDING)
            self.counts["pending-removed"] += 1
            return True

    def rotation_finished(self, secret_id: str, token: str) -> str:
        """Secrets Manager after a finishSecret succeeded: AWSPENDING, if it is on AWSCURRENT's
        version (the token's), is removed or kept. Returns "removed", "kept" or "absent"."""
        with self._lock:
            secret = self._secret(secret_id)
            if secret is None:
                return "absent"
            stages = secret.versions.get(token, {}).get("version_stages", [])
            if PENDING not in stages or CURRENT not in stages:
                return "absent"
            choice = self.pending_after_finish
            if choice == "random":
                choice = self._rng.choice(("remove", "keep"))
            if choice == "keep":
                self.counts["pending-kept"] += 1
                return "kept"
            stages.remove(PENDING)
            self.counts["pending-removed"] += 1
            return "removed"

    def reseed(self, seed: int) -> None:
        """Start the model's random choices (throttling, AWSPENDING after finish) afresh."""
        with self._lock:
            self.seed = seed
            self._rng.seed(seed)

    def add_history(self, secret_id: str, count: int, *, hours_ago: float = 25.0) -> list[str]:
        """Versions the secret accumulated before the test: `count` unlabelled copies of
        AWSCURRENT's value, written `hours_ago` (a year of rotations and edits, say)."""
        with self._lock:
            secret = self._secret(secret_id)
            current = _holder(self._labels_of(secret), CURRENT)
            value = dict(secret.versions[current])
            made = []
            for _ in range(count):
                version_id = str(uuid.uuid4())
                secret.versions[version_id] = {
                    **value,
                    "version_id": version_id,
                    "version_stages": [],
                }
                made.append(version_id)
            for version_id in made:
                self._meta[(secret.arn, version_id)] = _Meta(
                    self.now() - hours_ago * 3600.0, len(self._meta), self._key_of(secret)
                )
            self._sync(secret)
            return made

    def count_lost_answer(self) -> None:
        """A write carried out whose answer was lost (injected by the harness)."""
        with self._lock:
            self.counts["lost-answer"] += 1

    # -- ground truth -----------------------------------------------------------------------

    def versions(self, secret_id: str) -> list[StoredVersion]:
        """Every version as stored, with its value, then the versions pruned (rule 2)."""
        with self._lock:
            secret = self._secret(secret_id)
            if secret is None:
                return []
            stored = [
                StoredVersion(version_id, tuple(v["version_stages"]), _value(v))
                for version_id, v in secret.versions.items()
            ]
            return stored + list(self._pruned.get(secret.arn, ()))

    def labels(self, secret_id: str) -> dict[str, tuple[str, ...]]:
        """Every version's labels, as DescribeSecret would list them."""
        return {v.id: v.stages for v in self.versions(secret_id) if not v.pruned}

    def created(self, secret_id: str, version_id: str) -> float | None:
        """When the version was written, on the model's clock (None: not known to the model)."""
        with self._lock:
            secret = self._secret(secret_id)
            if secret is not None:
                self._sync(secret)
            meta = self._meta.get((secret.arn if secret is not None else secret_id, version_id))
            return meta.created if meta else None

    def readable(self, secret_id: str, version_id: str) -> bool:
        """Whether the version's KMS key is the secret's (rule 3)."""
        with self._lock:
            secret = self._secret(secret_id)
            if secret is None:
                return False
            self._sync(secret)
            meta = self._meta.get((secret.arn, version_id))
            return meta is None or meta.kms_key == self._key_of(secret)

    # -- the rules --------------------------------------------------------------------------

    def _before(self, operation: str, context: dict[str, Any], role: Role) -> Any:
        params: Mapping[str, Any] = context.get(_PARAMS, {})
        if role == "rotator":
            self._run_hooks(operation, params, after=False)
        with self._lock:
            if self._suspended:
                return None
            if role == "rotator":
                self._actor_moved_labels = False
            secret = self._secret(str(params.get("SecretId", "")))
            if secret is None:
                return None  # moto answers ResourceNotFoundException
            self._sync(secret)
            handler = _RULES_BY_OPERATION.get(operation)
            return handler(self, secret, params, role) if handler else None

    def _after(
        self, operation: str, context: dict[str, Any], http: Any, parsed: Any, role: Role
    ) -> None:
        params: Mapping[str, Any] = context.get(_PARAMS, {})
        ok = getattr(http, "status_code", 500) < 300
        if ok and operation == "DescribeSecret" and role == "rotator" and not self._suspended:
            listed = parsed.get("VersionIdsToStages") or {}
            labelled = {v: stages for v, stages in listed.items() if stages}
            if len(labelled) < len(listed):
                self.counts["deprecated-hidden"] += 1
                parsed["VersionIdsToStages"] = labelled
        if ok and operation in {"RotateSecret", "UpdateSecret"}:
            with self._lock:
                secret = self._secret(str(params.get("SecretId", "")))
                if secret is not None:
                    self._sync(secret)
                    self._prune(secret)
        if ok and role == "rotator":
            self._run_hooks(operation, params, after=True)

    def _run_hooks(self, operation: str, params: Mapping[str, Any], *, after: bool) -> None:
        for hook in list(self._hooks):
            if hook.operation != operation or hook.after != after or not hook.match(params):
                continue
            if hook.once:
                if hook not in self._hooks:
                    continue  # a nested call ran it already
                self._hooks.remove(hook)
            hook.act(params)

    # GetSecretValue: deletion, KMS, lag (rules 3, 6, 7)
    def _get(self, secret: Any, params: Mapping[str, Any], role: Role) -> Any:
        if role == "observer":
            return self._truthful_read(secret, params) if secret.is_deleted() else None
        if secret.is_deleted():
            return self._refuse_deleted()
        version_id = self._resolve(secret, params)
        if version_id is None:
            return None  # moto answers: no such version or label
        lag = self._lagging.get((secret.arn, version_id), 0)
        if lag > 0:
            self._lagging[(secret.arn, version_id)] = lag - 1
            self.counts["lagging-read"] += 1
            what = "VersionId" if params.get("VersionId") else "staging label"
            name = params.get("VersionId") or params.get("VersionStage") or CURRENT
            return _error(
                "ResourceNotFoundException",
                f"Secrets Manager can't find the specified secret value for {what}: {name}",
            )
        if self._meta[(secret.arn, version_id)].kms_key != self._key_of(secret):
            self.counts["kms-unreadable"] += 1
            return _error(
                "DecryptionFailure",
                "Secrets Manager can't decrypt the protected secret text using the provided KMS "
                "key.",
            )
        return None

    # DescribeSecret answers even for a secret marked for deletion (moto; rule 11 after it).

    # ListSecretVersionIds (rule 11): labelled versions, or all with IncludeDeprecated, dated.
    def _list_versions(self, secret: Any, params: Mapping[str, Any], role: Role) -> Any:
        include = bool(params.get("IncludeDeprecated"))
        found = sorted(
            (self._meta[(secret.arn, v)].order, v, list(d["version_stages"]))
            for v, d in secret.versions.items()
        )
        listed = [(v, stages) for _, v, stages in found if include or stages]
        if len(listed) < len(found):
            self.counts["deprecated-hidden"] += 1
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 100)
        page = listed[start : start + size]
        answer: dict[str, Any] = {
            "ARN": secret.arn,
            "Name": secret.name,
            "Versions": [
                {
                    "VersionId": v,
                    "VersionStages": stages,
                    "CreatedDate": datetime.fromtimestamp(self._meta[(secret.arn, v)].created, UTC),
                }
                for v, stages in page
            ],
        }
        if start + size < len(listed):
            answer["NextToken"] = str(start + size)
        return _answer(**answer)

    # PutSecretValue (rules 1, 2, 5, 6, 7, 8)
    def _put(self, secret: Any, params: Mapping[str, Any], role: Role) -> Any:
        if secret.is_deleted():
            return self._refuse_deleted()
        if (throttled := self._throttle(role)) is not None:
            return throttled
        token = str(params.get("ClientRequestToken") or uuid.uuid4())
        value_field = "secret_string" if "SecretString" in params else "secret_binary"
        value = params.get("SecretString", params.get("SecretBinary"))
        existing = secret.versions.get(token)
        if existing is not None and _value(existing) is not None:
            if _value(existing) != value:
                self.counts["overwrite-refused"] += 1
                return _error(
                    "ResourceExistsException",
                    f"You can't use ClientRequestToken {token} because that value is already in "
                    f"use for a version of secret {secret.arn}.",
                )
            return _answer(
                ARN=secret.arn,
                Name=secret.name,
                VersionId=token,
                VersionStages=list(existing["version_stages"]),
            )
        stages = list(dict.fromkeys(params.get("VersionStages") or [CURRENT]))
        before = self._labels_of(secret)
        after = {v: list(s) for v, s in before.items() if v != token}
        after[token] = list(before.get(token, ()))
        for stage in stages:
            _move(after, stage, token)
        old_current = _holder(before, CURRENT)
        if CURRENT in stages and old_current not in (None, token):
            _move(after, PREVIOUS, old_current)
        if (limit := self._quota(secret, "PutSecretValue", before, after, role)) is not None:
            return limit
        pending = _holder(before, PENDING)
        if CURRENT in stages and pending not in (None, old_current, token):
            self.counts["put-mid-rotation"] += 1
        version = existing if existing is not None else {}
        version.update({"createdate": int(time.time()), "version_id": token, value_field: value})
        secret.versions[token] = version
        self._apply(secret, after)
        if CURRENT in stages:
            secret.set_default_version_id(token)
        secret.last_changed_date = int(time.time())
        self._sync(secret)
        if self.read_lag:
            self._lagging[(secret.arn, token)] = self.read_lag
        self._note_write(role)
        self._prune(secret)
        return _answer(
            ARN=secret.arn, Name=secret.name, VersionId=token, VersionStages=after[token]
        )

    # UpdateSecretVersionStage (rules 1, 5, 6, 8)
    def _move_stage(  # noqa: PLR0911  (one answer per way AWS refuses the call)
        self, secret: Any, params: Mapping[str, Any], role: Role
    ) -> Any:
        if secret.is_deleted():
            return self._refuse_deleted()
        if (throttled := self._throttle(role)) is not None:
            return throttled
        stage = str(params["VersionStage"])
        remove_from = params.get("RemoveFromVersionId")
        move_to = params.get("MoveToVersionId")
        before = self._labels_of(secret)
        for version_id in (remove_from, move_to):
            if version_id is not None and version_id not in before:
                return _error("InvalidParameterException", f"Not a valid version: {version_id}")
        holder = _holder(before, stage)
        if remove_from is not None and holder != remove_from:
            self.counts["label-cas-refused"] += 1
            return _error(
                "InvalidParameterException",
                f"Version stage {stage} not found in version {remove_from}",
            )
        if move_to is not None and holder not in (None, move_to, remove_from):
            self.counts["label-cas-refused"] += 1
            return _error(
                "InvalidParameterException",
                f"The parameter RemoveFromVersionId can't be empty. Staging label {stage} is "
                f"currently attached to version {holder}, so you must explicitly reference that "
                "version in RemoveFromVersionId.",
            )
        if stage == CURRENT and move_to is None:
            return _error(
                "InvalidParameterException",
                "You can't remove the AWSCURRENT staging label from a version without moving it "
                "to another version.",
            )
        after = {v: list(s) for v, s in before.items()}
        if move_to is None:
            after[str(remove_from)].remove(stage)
        else:
            _move(after, stage, str(move_to))
            if stage == CURRENT and holder not in (None, move_to):
                _move(after, PREVIOUS, str(holder))
        if limit := self._quota(secret, "UpdateSecretVersionStage", before, after, role):
            return limit
        self._apply(secret, after)
        if stage == CURRENT and move_to is not None:
            secret.set_default_version_id(move_to)
        self._note_write(role)
        return _answer(ARN=secret.arn, Name=secret.name)

    # RotateSecret (rules 1, 4, 6); moto then makes the stub and invokes the function.
    def _rotate(self, secret: Any, params: Mapping[str, Any], role: Role) -> Any:
        if secret.is_deleted():
            return self._refuse_deleted()
        before = self._labels_of(secret)
        pending, current = _holder(before, PENDING), _holder(before, CURRENT)
        if pending is not None and pending != current:
            self.counts["rotate-refused"] += 1
            return _error("InvalidRequestException", ROTATION_IN_PROGRESS)
        after = {v: [s for s in labels if s != PENDING] for v, labels in before.items()}
        token = str(params.get("ClientRequestToken") or "new version")
        after[token] = [PENDING]
        if (limit := self._quota(secret, "RotateSecret", before, after, role)) is not None:
            return limit
        if pending is not None:
            # AWS moves AWSPENDING off AWSCURRENT's version; moto would refuse.
            self.counts["rotate-accepted"] += 1
            secret.versions[pending]["version_stages"].remove(PENDING)
        self._note_write(role)
        return None

    # UpdateSecret: a KMS key change (rule 3); a new value goes to moto.
    def _update(self, secret: Any, params: Mapping[str, Any], role: Role) -> Any:
        if secret.is_deleted():
            return self._refuse_deleted()
        key = params.get("KmsKeyId")
        if key is None or "SecretString" in params or "SecretBinary" in params:
            return None
        for version_id, version in secret.versions.items():
            if any(s in AWS_LABELS for s in version["version_stages"]):
                self._meta[(secret.arn, version_id)].kms_key = str(key)
        self._keys[secret.arn] = str(key)
        secret.kms_key_id = str(key)
        return _answer(ARN=secret.arn, Name=secret.name)

    # -- helpers (under the lock) -------------------------------------------------------------

    def _secret(self, secret_id: str) -> Any:
        secrets = self.backend.secrets
        return secrets.get(secret_id) if secret_id in secrets else None

    def _key_of(self, secret: Any) -> str:
        return self._keys.setdefault(secret.arn, str(secret.kms_key_id or DEFAULT_KMS_KEY))

    def _sync(self, secret: Any) -> None:
        """Versions the model has not seen yet: created now, under the secret's key."""
        key = self._key_of(secret)
        for version_id in secret.versions:
            if (secret.arn, version_id) not in self._meta:
                self._meta[(secret.arn, version_id)] = _Meta(self.now(), len(self._meta), key)

    @staticmethod
    def _labels_of(secret: Any) -> dict[str, tuple[str, ...]]:
        return {v: tuple(d["version_stages"]) for v, d in secret.versions.items()}

    @staticmethod
    def _apply(secret: Any, after: Mapping[str, list[str]]) -> None:
        for version_id, stages in after.items():
            if version_id in secret.versions:
                secret.versions[version_id]["version_stages"] = list(stages)

    def _resolve(self, secret: Any, params: Mapping[str, Any]) -> str | None:
        version_id = params.get("VersionId")
        if version_id is not None:
            return str(version_id) if version_id in secret.versions else None
        stage = params.get("VersionStage") or CURRENT
        return _holder(self._labels_of(secret), str(stage))

    def _quota(
        self,
        secret: Any,
        operation: str,
        before: Mapping[str, tuple[str, ...]],
        after: Mapping[str, list[str]],
        role: Role,
    ) -> Any:
        """LimitExceededException if `after` has more distinct labels than allowed and more
        than `before` (rule 1)."""
        now = {s for labels in before.values() for s in labels}
        then = {s for labels in after.values() for s in labels}
        if len(then) <= MAX_LABELS or len(then) <= len(now):
            return None
        self.counts["label-quota"] += 1
        self.refusals.append(
            Refusal(
                operation,
                tuple(sorted(then - now)),
                dict(before),
                role,
                self._actor_moved_labels,
            )
        )
        return _error(
            "LimitExceededException",
            f"You can't attach more than {MAX_LABELS} staging labels to the versions of secret "
            f"{secret.name}.",
        )

    def _throttle(self, role: Role) -> Any:
        if role != "rotator" or self.throttle_rate <= 0:
            return None
        if self._rng.random() >= self.throttle_rate:
            return None
        self.counts["throttled"] += 1
        return _error("ThrottlingException", "Rate exceeded")

    def _refuse_deleted(self) -> Any:
        self.counts["deletion-refused"] += 1
        return _error("InvalidRequestException", _MARKED_FOR_DELETION)

    def _note_write(self, role: Role) -> None:
        if role == "observer":
            self._actor_moved_labels = True

    def _truthful_read(self, secret: Any, params: Mapping[str, Any]) -> Any:
        version_id = self._resolve(secret, params)
        version = secret.versions.get(version_id) if version_id else None
        if version is None or _value(version) is None:
            return _error("ResourceNotFoundException", "Secrets Manager can't find the value.")
        answer: dict[str, Any] = {
            "ARN": secret.arn,
            "Name": secret.name,
            "VersionId": version_id,
            "VersionStages": list(version["version_stages"]),
        }
        if "secret_string" in version:
            answer["SecretString"] = version["secret_string"]
        else:
            answer["SecretBinary"] = version["secret_binary"]
        return _answer(**answer)

    def _prune(self, secret: Any) -> None:
        """Past MAX_VERSIONS: unlabelled versions older than 24 hours go, oldest first."""
        excess = len(secret.versions) - MAX_VERSIONS
        if excess <= 0:
            return
        meta = {v: self._meta[(secret.arn, v)] for v in secret.versions}
        old = sorted(
            (
                (meta[v].created, meta[v].order, v)
                for v, d in secret.versions.items()
                if not d["version_stages"] and self.now() - meta[v].created >= PRUNE_AGE_SECONDS
            ),
        )
        for _, _, version_id in old[:excess]:
            version = secret.versions.pop(version_id)
            self._pruned.setdefault(secret.arn, []).append(
                StoredVersion(version_id, (), _value(version), pruned=True)
            )
            self.counts["versions-pruned"] += 1


_RULES_BY_OPERATION: dict[str, Callable[[StrictAws, Any, Mapping[str, Any], Role], Any]] = {
    "GetSecretValue": StrictAws._get,
    "PutSecretValue": StrictAws._put,
    "UpdateSecretVersionStage": StrictAws._move_stage,
    "RotateSecret": StrictAws._rotate,
    "UpdateSecret": StrictAws._update,
    "ListSecretVersionIds": StrictAws._list_versions,
}


def _stash_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Keep the call's parameters for `before-call`, which sees only the serialized request."""
    context[_PARAMS] = dict(params)


def _holder(labels: Mapping[str, Any], stage: str) -> str | None:
    return next((v for v, stages in labels.items() if stage in stages), None)


def _move(labels: dict[str, list[str]], stage: str, to: str) -> None:
    for version_id, stages in labels.items():
        if stage in stages and version_id != to:
            stages.remove(stage)
    if stage not in labels[to]:
        labels[to].append(stage)


def _value(version: Mapping[str, Any]) -> str | bytes | None:
    if "secret_string" in version:
        return str(version["secret_string"])
    binary = version.get("secret_binary")
    return binary if isinstance(binary, bytes) else (str(binary) if binary is not None else None)


def _answer(**parsed: Any) -> tuple[AWSResponse, dict[str, Any]]:
    http = AWSResponse("https://secretsmanager.strict-aws.local/", 200, HTTPHeaders(), None)
    return http, {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": 0}}


def _error(code: str, message: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    http = AWSResponse("https://secretsmanager.strict-aws.local/", status, HTTPHeaders(), None)
    return http, {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": 0},
    }


__all__ = [
    "RULES",
    "PendingAfterFinish",
    "Refusal",
    "Role",
    "StoredVersion",
    "StrictAws",
]
