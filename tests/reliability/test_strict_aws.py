"""The strict AWS model itself (tests/strict_aws.py): each rule does what it says, against moto.

Two clients on one moto: `rotator` meets every rule, `person` (an observer) meets the write
rules and reads ground truth.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local.lambda_bridge import FUNCTION_ARN, LambdaBridge
from infra.local.stack import create_function
from tests.strict_aws import MAX_LABELS, ROTATION_IN_PROGRESS, StrictAws

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


@dataclass
class Clients:
    model: StrictAws
    rotator: SecretsManagerClient
    person: SecretsManagerClient
    arn: str

    def labels(self) -> dict[str, list[str]]:
        return {v.id: list(v.stages) for v in self.model.versions(self.arn) if not v.pruned}

    def holder(self, label: str) -> str | None:
        return next((v for v, s in self.labels().items() if label in s), None)

    def put(self, value: str, **kwargs: Any) -> str:
        return str(
            self.person.put_secret_value(SecretId=self.arn, SecretString=value, **kwargs)[
                "VersionId"
            ]
        )

    def label(self, label: str, version_id: str) -> None:
        self.person.update_secret_version_stage(
            SecretId=self.arn, VersionStage=label, MoveToVersionId=version_id
        )

    def read(self, client: SecretsManagerClient, **kwargs: Any) -> str:
        return str(client.get_secret_value(SecretId=self.arn, **kwargs)["SecretString"])

    def rotate(self, token: str | None = None) -> str:
        """RotateSecret, its function doing nothing yet (AWSPENDING is left on a stub)."""
        token = token or str(uuid.uuid4())
        with LambdaBridge(handler=lambda event, context: None).patched():
            self.person.rotate_secret(
                SecretId=self.arn, ClientRequestToken=token, RotationLambdaARN=FUNCTION_ARN
            )
        return token


@pytest.fixture
def aws(sm: SecretsManagerClient) -> Clients:
    model = StrictAws(seed=7)
    rotator = boto3.client("secretsmanager", region_name="us-east-1")
    model.attach(rotator, role="rotator")
    model.attach(sm, role="observer")
    arn = sm.create_secret(Name=f"strict/{uuid.uuid4().hex[:8]}", SecretString="v0")["ARN"]
    create_function()
    return Clients(model, rotator, sm, arn)


def _code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def _fill(aws: Clients, version_id: str, *, upto: int = MAX_LABELS) -> None:
    """Application labels on one version until the secret has `upto` labels."""
    number = 0
    while len({s for stages in aws.labels().values() for s in stages}) < upto:
        aws.label(f"APP_{number}", version_id)
        number += 1


# -- 1. the label quota ----------------------------------------------------------------------


def test_a_21st_label_is_refused_and_nothing_changes(aws: Clients) -> None:
    # Given a secret whose versions carry 20 labels in all, none of them AWSPREVIOUS
    old = aws.holder("AWSCURRENT")
    assert old is not None
    new = aws.put("v1")
    aws.person.update_secret_version_stage(
        SecretId=aws.arn, VersionStage="AWSPREVIOUS", RemoveFromVersionId=old
    )
    _fill(aws, old)
    before = aws.labels()
    # When a 21st label is attached, or moving AWSCURRENT would create a 21st (AWSPREVIOUS)
    with pytest.raises(ClientError) as extra:
        aws.label("APP_ONE_TOO_MANY", new)
    with pytest.raises(ClientError) as move:
        aws.rotator.update_secret_version_stage(
            SecretId=aws.arn,
            VersionStage="AWSCURRENT",
            MoveToVersionId=old,
            RemoveFromVersionId=new,
        )
    # Then both fail with LimitExceededException and no label moved
    assert _code(extra.value) == _code(move.value) == "LimitExceededException"
    assert aws.labels() == before
    assert aws.model.counts["label-quota"] == 2
    # ... while moving a label that exists already needs no room
    aws.person.update_secret_version_stage(
        SecretId=aws.arn, VersionStage="APP_0", MoveToVersionId=new, RemoveFromVersionId=old
    )
    assert "APP_0" in aws.labels()[new]


def test_rotate_secret_and_put_secret_value_need_room_for_their_labels(aws: Clients) -> None:
    # Given 20 labels, none of them AWSPENDING, AWSPREVIOUS absent
    current = aws.holder("AWSCURRENT")
    assert current is not None
    _fill(aws, current)
    before = aws.labels()
    # When RotateSecret needs AWSPENDING, and a PutSecretValue needs AWSPREVIOUS
    with pytest.raises(ClientError) as rotate:
        aws.rotate()
    with pytest.raises(ClientError) as put:
        aws.put("v1")
    # Then both are refused for the quota and the secret is as it was
    assert _code(rotate.value) == _code(put.value) == "LimitExceededException"
    assert aws.labels() == before
    assert [r.operation for r in aws.model.refusals] == ["RotateSecret", "PutSecretValue"]
    assert aws.model.refusals[0].labels == ("AWSPENDING",)


# -- 2. about 100 versions: old unlabelled ones are pruned --------------------------------------


def test_past_100_versions_old_unlabelled_versions_are_pruned_labelled_never(
    aws: Clients,
) -> None:
    # Given 100 versions: most unlabelled, one pinned by an application label, all a day old
    first = aws.put("old-0")
    aws.label("APP_PINNED", first)
    for number in range(1, 99):
        aws.put(f"old-{number}", VersionStages=["STAGING"])
    aws.model.age(hours=25)
    # When the 101st version is written, then two more
    young = aws.put("young", VersionStages=["STAGING"])
    aws.put("new-1", VersionStages=["STAGING"])
    aws.put("new-2", VersionStages=["STAGING"])
    # Then each time the oldest unlabelled old version went (never the pinned one, AWSPREVIOUS
    # or a young one), and the pruned ones stay in the ground truth
    kept = aws.labels()
    assert len(kept) == 100
    assert {first, young, aws.holder("AWSPREVIOUS")} <= set(kept)
    pruned = [v for v in aws.model.versions(aws.arn) if v.pruned]
    assert [v.value for v in pruned] == ["old-1", "old-2", "old-3"]
    assert aws.model.counts["versions-pruned"] == 3


def test_young_versions_are_never_pruned(aws: Clients) -> None:
    # Given 105 versions, all written within the last day
    for number in range(105):
        aws.put(f"v-{number}", VersionStages=["STAGING"])
    # Then none was pruned
    assert aws.model.counts["versions-pruned"] == 0
    assert len(aws.labels()) == 106


# -- 3. a KMS key change re-encrypts only the AWS-labelled versions ------------------------------


def test_a_kms_key_change_leaves_other_versions_undecryptable(aws: Clients) -> None:
    # Given an unlabelled old version, one pinned by an application, AWSPREVIOUS and AWSCURRENT
    unlabelled = aws.holder("AWSCURRENT")
    assert unlabelled is not None
    pinned = aws.put("pinned")
    aws.label("APP_PINNED", pinned)
    previous = aws.put("previous")
    current = aws.put("current")
    # When the secret's KMS key changes and the old key is disabled
    aws.model.change_kms_key(aws.arn)
    # Then the rotator reads AWSCURRENT and AWSPREVIOUS, and nothing else ...
    assert aws.read(aws.rotator, VersionId=current) == "current"
    assert aws.read(aws.rotator, VersionId=previous, VersionStage="AWSPREVIOUS") == "previous"
    for version_id in (unlabelled, pinned):
        with pytest.raises(ClientError) as failed:
            aws.read(aws.rotator, VersionId=version_id)
        assert _code(failed.value) == "DecryptionFailure"
    assert aws.model.counts["kms-unreadable"] == 2
    # ... a version written after the change reads, and the checks see every value
    assert aws.read(aws.rotator, VersionId=aws.put("later")) == "later"
    assert aws.read(aws.person, VersionId=pinned) == "pinned"
    assert not aws.model.readable(aws.arn, pinned)


# -- 4. RotateSecret is refused only while AWSPENDING is off AWSCURRENT ---------------------------


def test_rotate_secret_is_refused_only_while_a_rotation_is_incomplete(aws: Clients) -> None:
    # Given a rotation in progress (AWSPENDING on a version that is not AWSCURRENT)
    first = aws.rotate()
    aws.rotator.put_secret_value(
        SecretId=aws.arn, ClientRequestToken=first, SecretString="v1", VersionStages=["AWSPENDING"]
    )
    # When RotateSecret is called again
    with pytest.raises(ClientError) as refused:
        aws.rotate()
    # Then AWS refuses it
    assert _code(refused.value) == "InvalidRequestException"
    assert ROTATION_IN_PROGRESS in str(refused.value)
    # When finishSecret has moved AWSCURRENT (AWSPENDING now shares its version)
    old = str(aws.holder("AWSCURRENT"))
    aws.rotator.update_secret_version_stage(
        SecretId=aws.arn, VersionStage="AWSCURRENT", MoveToVersionId=first, RemoveFromVersionId=old
    )
    second = aws.rotate()
    # Then the next RotateSecret is accepted, and AWSPENDING moves to its version
    assert aws.holder("AWSPENDING") == second
    assert aws.labels()[first] == ["AWSCURRENT"]
    assert aws.model.counts["rotate-accepted"] == 1
    assert aws.model.counts["rotate-refused"] == 1


# -- 5. PutSecretValue moves AWSCURRENT and AWSPREVIOUS at any moment ------------------------------


def test_put_secret_value_mid_rotation_moves_current_and_previous_only(aws: Clients) -> None:
    # Given a rotation in progress, after AWSCURRENT was last moved by UpdateSecretVersionStage,
    # and an application label on AWSCURRENT's version
    aws.put("v1")
    first = aws.holder("AWSCURRENT")
    v2 = aws.put("v2", VersionStages=["STAGING"])
    assert first is not None
    aws.person.update_secret_version_stage(
        SecretId=aws.arn, VersionStage="AWSCURRENT", MoveToVersionId=v2, RemoveFromVersionId=first
    )
    aws.label("APP_PINNED", v2)
    token = aws.rotate()
    # When a person stores a new value without VersionStages
    mine = aws.put("person")
    # Then AWSCURRENT is on it, AWSPREVIOUS on the version that was current (which keeps its
    # other label), and the rotation's AWSPENDING is where it was
    labels = aws.labels()
    assert labels[mine] == ["AWSCURRENT"]
    assert sorted(labels[v2]) == ["APP_PINNED", "AWSPREVIOUS", "STAGING"]
    assert labels[token] == ["AWSPENDING"]
    assert aws.model.counts["put-mid-rotation"] == 1


def test_a_version_keeps_its_value(aws: Clients) -> None:
    # Given a version stored with a token
    token = str(uuid.uuid4())
    aws.rotator.put_secret_value(
        SecretId=aws.arn, ClientRequestToken=token, SecretString="one", VersionStages=["AWSPENDING"]
    )
    before = aws.labels()
    # When the same token is put again with the same value, then with another
    aws.rotator.put_secret_value(
        SecretId=aws.arn, ClientRequestToken=token, SecretString="one", VersionStages=["AWSPENDING"]
    )
    with pytest.raises(ClientError) as refused:
        aws.rotator.put_secret_value(
            SecretId=aws.arn,
            ClientRequestToken=token,
            SecretString="two",
            VersionStages=["AWSPENDING"],
        )
    # Then the first is an idempotent success, the second is refused, and the value stays
    assert _code(refused.value) == "ResourceExistsException"
    assert aws.read(aws.person, VersionId=token) == "one"
    assert aws.labels() == before


def test_moving_a_label_from_another_version_must_name_it(aws: Clients) -> None:
    # Given a label on one version
    one = aws.put("one")
    two = aws.put("two")
    aws.label("APP", one)
    # When it is moved to another version without naming the version it is on
    with pytest.raises(ClientError) as refused:
        aws.label("APP", two)
    # Then AWS refuses (moto would put it on both)
    assert _code(refused.value) == "InvalidParameterException"
    assert aws.holder("APP") == one
    assert "APP" not in aws.labels()[two]


# -- 6. a secret scheduled for deletion refuses reads and writes -----------------------------------


def test_a_secret_scheduled_for_deletion_refuses_until_restored(aws: Clients) -> None:
    # Given a secret scheduled for deletion
    current = aws.holder("AWSCURRENT")
    assert current is not None
    aws.person.delete_secret(SecretId=aws.arn, RecoveryWindowInDays=7)
    # When the rotator reads, writes or moves a label, and a person rotates
    calls: list[Callable[[], object]] = [
        lambda: aws.rotator.get_secret_value(SecretId=aws.arn, VersionStage="AWSCURRENT"),
        lambda: aws.rotator.put_secret_value(SecretId=aws.arn, SecretString="x"),
        lambda: aws.rotator.update_secret_version_stage(
            SecretId=aws.arn, VersionStage="APP", MoveToVersionId=current
        ),
        aws.rotate,
    ]
    codes = []
    for call in calls:
        with pytest.raises(ClientError) as refused:
            call()
        codes.append(_code(refused.value))
    # Then every call is refused, DescribeSecret answers with DeletedDate, the checks still see
    # the value, and after RestoreSecret everything works again
    assert codes == ["InvalidRequestException"] * 4
    assert aws.rotator.describe_secret(SecretId=aws.arn).get("DeletedDate") is not None
    assert aws.read(aws.person, VersionStage="AWSCURRENT") == "v0"
    aws.person.restore_secret(SecretId=aws.arn)
    assert aws.read(aws.rotator, VersionStage="AWSCURRENT") == "v0"
    assert aws.model.counts["deletion-refused"] >= 3


# -- 7. reads lag writes ------------------------------------------------------------------------


def test_a_just_written_version_may_not_be_found_for_a_while(aws: Clients) -> None:
    # Given reads that lag writes by two reads
    aws.model.read_lag = 2
    token = str(uuid.uuid4())
    aws.rotator.put_secret_value(
        SecretId=aws.arn, ClientRequestToken=token, SecretString="new", VersionStages=["STAGING"]
    )
    # When the rotator reads it three times
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(aws.read(aws.rotator, VersionId=token))
        except ClientError as e:
            outcomes.append(_code(e))
    # Then the first two are "not found", the third finds it; the checks see it at once
    assert outcomes == ["ResourceNotFoundException", "ResourceNotFoundException", "new"]
    assert aws.model.counts["lagging-read"] == 2


# -- 8. the shared write quota -----------------------------------------------------------------


def test_writes_are_throttled_before_they_change_anything(aws: Clients) -> None:
    # Given every write of the rotator throttled
    aws.model.throttle_rate = 1.0
    current = str(aws.holder("AWSCURRENT"))
    before = aws.labels()
    # When it writes
    with pytest.raises(ClientError) as throttled:
        aws.rotator.update_secret_version_stage(
            SecretId=aws.arn, VersionStage="APP", MoveToVersionId=current
        )
    # Then ThrottlingException, nothing changed, and a person's write is not affected
    assert _code(throttled.value) == "ThrottlingException"
    assert aws.labels() == before
    aws.label("APP", current)
    assert aws.model.counts["throttled"] == 1


# -- 9. AWSPENDING after a finished rotation -----------------------------------------------------


@pytest.mark.parametrize(("choice", "pending"), [("remove", False), ("keep", True)])
def test_secrets_manager_removes_or_keeps_pending_after_finish(
    aws: Clients, choice: Any, pending: bool
) -> None:
    # Given a rotation whose finishSecret moved AWSCURRENT and left AWSPENDING with it
    aws.model.pending_after_finish = choice
    token = aws.rotate()
    aws.rotator.put_secret_value(
        SecretId=aws.arn, ClientRequestToken=token, SecretString="v1", VersionStages=["AWSPENDING"]
    )
    aws.rotator.update_secret_version_stage(
        SecretId=aws.arn,
        VersionStage="AWSCURRENT",
        MoveToVersionId=token,
        RemoveFromVersionId=str(aws.holder("AWSCURRENT")),
    )
    # When Secrets Manager ends the rotation
    outcome = aws.model.rotation_finished(aws.arn, token)
    # Then AWSPENDING is gone or still on AWSCURRENT's version, as the model chose
    assert outcome == ("kept" if pending else "removed")
    assert ("AWSPENDING" in aws.labels()[token]) is pending
    assert "AWSCURRENT" in aws.labels()[token]


def test_random_end_states_give_both(aws: Clients) -> None:
    aws.model.pending_after_finish = "random"
    seen = set()
    for _ in range(12):
        token = aws.rotate()
        aws.rotator.put_secret_value(
            SecretId=aws.arn,
            ClientRequestToken=token,
            SecretString=token,
            VersionStages=["AWSPENDING"],
        )
        aws.rotator.update_secret_version_stage(
            SecretId=aws.arn,
            VersionStage="AWSCURRENT",
            MoveToVersionId=token,
            RemoveFromVersionId=str(aws.holder("AWSCURRENT")),
        )
        seen.add(aws.model.rotation_finished(aws.arn, token))
        if "AWSPENDING" in aws.labels()[token]:
            aws.person.update_secret_version_stage(
                SecretId=aws.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token
            )
    assert seen == {"kept", "removed"}


# -- actors: acting at a call chosen by what it does -------------------------------------------


def test_an_actor_acts_around_the_call_it_is_armed_for(aws: Clients) -> None:
    # Given actors armed for the rotator's AWSCURRENT move, before and after it
    seen: list[tuple[str, str | None]] = []
    aws.model.on_call(
        "UpdateSecretVersionStage",
        lambda p: seen.append(("before", aws.holder("AWSCURRENT"))),
        match=lambda p: p.get("VersionStage") == "AWSCURRENT",
    )
    aws.model.on_call(
        "UpdateSecretVersionStage",
        lambda p: seen.append(("after", aws.holder("AWSCURRENT"))),
        after=True,
        match=lambda p: p.get("VersionStage") == "AWSCURRENT",
    )
    old = str(aws.holder("AWSCURRENT"))
    new = aws.put("v1", VersionStages=["STAGING"])
    # When the rotator moves another label, then AWSCURRENT twice
    aws.rotator.update_secret_version_stage(
        SecretId=aws.arn, VersionStage="APP", MoveToVersionId=new
    )
    for to, frm in ((new, old), (old, new)):
        aws.rotator.update_secret_version_stage(
            SecretId=aws.arn, VersionStage="AWSCURRENT", MoveToVersionId=to, RemoveFromVersionId=frm
        )
    # Then each actor acted once, on the first AWSCURRENT move, before and after it
    assert seen == [("before", old), ("after", new)]


def test_ground_truth_is_the_stored_value(aws: Clients) -> None:
    # Given a JSON value
    aws.put(json.dumps({"api_key": "k"}))
    # Then the model's versions carry the values as stored, with their labels
    current = next(v for v in aws.model.versions(aws.arn) if "AWSCURRENT" in v.stages)
    assert json.loads(str(current.value)) == {"api_key": "k"}


# -- 11. deprecated versions: not described, listed only when asked, with their dates ----------


def test_unlabelled_versions_are_deprecated_and_dated(aws: Clients) -> None:
    # Given a version that lost its last label, an hour before two newer ones were written
    old = str(aws.holder("AWSCURRENT"))
    aws.put("v1")
    aws.put("v2")  # `old` is neither AWSCURRENT nor AWSPREVIOUS now
    aws.model.age(hours=1)
    newest = aws.put("v3")
    # When the rotator describes the secret, and lists its versions with and without deprecated
    described = aws.rotator.describe_secret(SecretId=aws.arn)["VersionIdsToStages"]
    labelled = aws.rotator.list_secret_version_ids(SecretId=aws.arn)["Versions"]
    everything = aws.rotator.list_secret_version_ids(SecretId=aws.arn, IncludeDeprecated=True)[
        "Versions"
    ]
    # Then only labelled versions are described or listed by default, every one with
    # IncludeDeprecated, and the dates say which was written first
    assert old not in described
    assert old not in {v["VersionId"] for v in labelled}
    dates = {v["VersionId"]: v["CreatedDate"] for v in everything}
    assert set(dates) == set(aws.labels())
    assert (dates[newest] - dates[old]).total_seconds() >= 3600
    # ... and the tests' own client still sees every version
    assert old in aws.person.describe_secret(SecretId=aws.arn)["VersionIdsToStages"]


def test_pending_may_be_cleaned_up_as_soon_as_current_moved(aws: Clients) -> None:
    # Given a rotation whose finishSecret has just moved AWSCURRENT (AWSPENDING shares its
    # version), and another still in progress elsewhere would not be touched
    token = aws.rotate()
    aws.rotator.put_secret_value(
        SecretId=aws.arn, ClientRequestToken=token, SecretString="v1", VersionStages=["AWSPENDING"]
    )
    assert not aws.model.remove_pending(aws.arn, token)  # not AWSCURRENT yet: nothing done
    aws.rotator.update_secret_version_stage(
        SecretId=aws.arn,
        VersionStage="AWSCURRENT",
        MoveToVersionId=token,
        RemoveFromVersionId=str(aws.holder("AWSCURRENT")),
    )
    # When Secrets Manager cleans up at once
    assert aws.model.remove_pending(aws.arn, token)
    # Then AWSPENDING is gone, and the finishSecret's own removal of it is refused
    assert aws.labels()[token] == ["AWSCURRENT"]
    with pytest.raises(ClientError) as refused:
        aws.rotator.update_secret_version_stage(
            SecretId=aws.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token
        )
    assert _code(refused.value) == "InvalidParameterException"
    assert aws.model.counts["pending-removed"] == 1
