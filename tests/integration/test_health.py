"""The health check between rotations, on moto in-process and the fake Cekura over HTTP.

Each test builds a small fleet of secrets rotated by the function, runs `HealthCheck.run` (or
the Lambda entry point) and asserts on what changed at AWS and Cekura, what was called, and what
the report and the log say. Heals run the real rotation: moto's RotateSecret reaches the real
handler through the Lambda bridge. Time is moved by the check's `now` and `clock`, never slept.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

import pytest

from infra.local.fake_cekura import Fault
from tests.conftest import LogCapture, World
from tests.integration.health_fleet import (
    Fleet,
    ReadClock,
    bulk,
    by_arn,
    fail_reads,
    later,
    records,
)

# -- a healthy fleet ------------------------------------------------------------------------------


def test_healthy_fleet_costs_one_read_and_one_validate_per_secret_and_changes_nothing(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given three healthy secrets (one rotated once, so it has AWSPREVIOUS), a secret without
    # rotation and one rotated by another function
    worlds = fleet.add(3)
    worlds[0].rotate(worlds[0].rotator())
    fleet.sm.create_secret(Name="not-rotated", SecretString="x")
    fleet.add_foreign()
    before = fleet.state()
    fleet.fake.reset_requests()
    fleet.aws_calls.clear()
    # When the health check runs
    report = fleet.check().run()
    calls = Counter(fleet.aws_calls)
    # Then every secret of this rotator, and only those, was checked and found healthy
    assert report.summary() == {
        "checked": 3,
        "rejected": 0,
        "stuck": [],
        "overdue": [],
        "owed_settled": 0,
        "manual_cleared": 0,
        "healed": [],
        "unfinished": [],
    }
    assert sorted(by_arn(report)) == sorted(w.arn for w in worlds)
    for health in report.secrets:
        assert health.current_key == "accepted"
        assert (
            health.current_key_id
            == fleet.current(next(w for w in worlds if w.arn == health.arn))["key_id"]
        )
        assert (health.stuck, health.overdue, health.owed, health.manual) == (False, False, 0, 0)
        assert health.actions == ()
    # ... at one ListSecrets page, one GetSecretValue and one Cekura call per secret
    assert calls == Counter({"ListSecrets": 1, "GetSecretValue": 3})
    requests = fleet.fake.requests
    assert [(r.route, r.status) for r in requests] == [("validate", 200)] * 3
    # ... and nothing changed, at AWS or at Cekura; nothing was worth a warning
    assert fleet.state() == before
    assert not [line for line in logs.lines if '"level":"WARNING"' in line]
    assert report.next_start_after is None


# -- the current key ----------------------------------------------------------------------------


def test_dead_key_is_healed_with_the_admin_credential(fleet: Fleet, logs: LogCapture) -> None:
    # Given two secrets and an admin credential, and one secret's key deleted in the dashboard
    healthy, dead = fleet.add(2)
    fleet.with_admin()
    dead_id = fleet.kill(dead)
    # When the health check runs, RotateSecret reaching the real rotation function
    with fleet.deployed() as bridge:
        report = fleet.check().run()
    # Then the dead key was found and a rotation started for it, and only for it
    assert report.summary()["rejected"] == 1
    assert report.healed == [dead.arn]
    assert by_arn(report)[dead.arn].current_key == "rejected"
    assert by_arn(report)[dead.arn].current_key_id == dead_id
    assert any("started a rotation" in a for a in by_arn(report)[dead.arn].actions)
    assert {i.secret_id for i in bridge.invocations} == {dead.arn}
    # ... which recovered: AWSCURRENT holds a live key again, minted with the admin credential
    assert not bridge.failures()
    assert fleet.fake.is_live(fleet.current(dead)["api_key"])
    assert fleet.current(dead)["key_id"] != dead_id
    # ... the log says which secret and key, never the key
    rejected = records(logs, "Cekura rejects the current key")
    assert [(r["secret_arn"], r["key_id"], r["status"]) for r in rejected] == [
        (dead.arn, dead_id, 401)
    ]
    assert records(logs, "Rotation started to replace the rejected key")
    assert healthy.bootstrap_key not in logs.text
    assert dead.bootstrap_key not in logs.text


def test_dead_key_without_admin_credential_is_alarmed_with_the_recovery_command(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given a secret whose key was deleted in the dashboard, and no admin credential
    (dead,) = fleet.add(1)
    dead_id = fleet.kill(dead)
    before = fleet.state()
    # When the health check runs
    with fleet.deployed() as bridge:
        report = fleet.check().run()
    # Then it is reported rejected, nothing is started, nothing changes
    assert report.summary()["rejected"] == 1
    assert report.healed == []
    assert bridge.invocations == []
    assert fleet.state() == before
    # ... and the log names the secret, the key and the way to recover
    (record,) = records(logs, "Cekura rejects the current key; not healed")
    assert (record["secret_arn"], record["key_id"]) == (dead.arn, dead_id)
    assert "no admin credential" in record["reason"]
    assert f"cekura-rotator rotate --secret-id {dead.arn}" in record["recovery"]
    assert "bootstrap --update" in record["recovery"]


def test_alone_a_dead_key_heals_on_the_admin_credentials_proof(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given a fleet of one secret, whose key is dead: no key can be accepted in this run
    (dead,) = fleet.add(1)
    fleet.with_admin()
    fleet.kill(dead)
    fleet.fake.reset_requests()
    # When the health check runs
    with fleet.deployed():
        report = fleet.check().run()
    # Then the admin credential was asked once before the heal (one project listing, filtered to
    # the secret's project) and its answer was the proof that Cekura answers normally: the
    # secret was healed
    assert report.healed == [dead.arn]
    admin_id = fleet.fake.key_id(fleet.admin.credential) if fleet.admin else None
    asked = [
        r for r in fleet.fake.requests if r.caller_key_id == admin_id and r.route == "projects"
    ]
    assert len(asked) == 1
    assert asked[0].query.get("project_id") == str(dead.project_id)
    assert fleet.fake.is_live(fleet.current(dead)["api_key"])


def test_no_heal_when_the_admin_credential_is_rejected_too(fleet: Fleet, logs: LogCapture) -> None:
    # Given one dead key, and the admin credential deleted as well: Cekura accepts nothing
    (dead,) = fleet.add(1)
    admin = fleet.with_admin()
    fleet.kill(dead)
    admin_id = fleet.fake.key_id(admin.credential)
    assert admin_id is not None
    session = fleet.fake.issue_session(dead.project_id)
    import httpx

    httpx.delete(
        f"{fleet.fake.url}/user/api/v1/user-api-key/{admin_id}/",
        headers={"Authorization": f"Bearer {session}"},
    ).raise_for_status()
    before = fleet.state()
    # When the health check runs
    with fleet.deployed() as bridge:
        report = fleet.check().run()
    # Then nothing is started: there is no proof that Cekura answers normally
    assert report.healed == []
    assert bridge.invocations == []
    assert fleet.state() == before
    assert any("no proof" in n for n in by_arn(report)[dead.arn].notes)
    assert records(logs, "Not healed: no proof that Cekura answers normally")


def test_report_only_run_changes_nothing_and_says_what_it_would_do(fleet: Fleet) -> None:
    # Given a dead key with an admin credential
    _healthy, dead = fleet.add(2)
    fleet.with_admin()
    fleet.kill(dead)
    before = fleet.state()
    # When the health check runs without fix (the CLI's default)
    with fleet.deployed() as bridge:
        report = fleet.check().run(fix=False)
    # Then it reports, and says what it would do, and does nothing
    assert report.healed == []
    assert bridge.invocations == []
    assert fleet.state() == before
    assert any("would start a rotation" in a for a in by_arn(report)[dead.arn].actions)


def test_heal_dead_keys_false_alarms_only(fleet: Fleet, logs: LogCapture) -> None:
    _healthy, dead = fleet.add(2)
    fleet.with_admin()
    fleet.kill(dead)
    with fleet.deployed() as bridge:
        report = fleet.check(heal=False).run()
    assert report.summary()["rejected"] == 1
    assert report.healed == []
    assert bridge.invocations == []
    (record,) = records(logs, "Cekura rejects the current key; not healed")
    assert record["reason"] == "HEAL_DEAD_KEYS is false"


def test_key_of_another_project_is_rejected(fleet: Fleet) -> None:
    # Given a secret whose key belongs to another project than the one it names (403)
    world, other = fleet.add(2)
    value = fleet.current(world)
    value["project_id"] = other.project_id
    world.sm.put_secret_value(SecretId=world.arn, SecretString=json.dumps(value))
    # When the health check runs
    report = fleet.check().run()
    # Then Cekura's 403 counts as rejected
    assert by_arn(report)[world.arn].current_key == "rejected"
    assert report.summary()["rejected"] == 1


# -- stuck and overdue -------------------------------------------------------------------------


def test_stuck_rotation_is_reported_with_the_command_that_clears_it(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given a rotation started and never finished (AWSPENDING on a version not AWSCURRENT)
    _healthy, world = fleet.add(2)
    token = world.start_rotation()
    fleet.aws_calls.clear()
    # When the health check runs within STUCK_ROTATION_HOURS, then 5 hours later
    early = fleet.check(stuck_hours=4).run()
    fleet.aws_calls.clear()
    late = fleet.check(stuck_hours=4, now=later(hours=5)).run()
    # Then it is in progress at first, stuck later, and only it
    assert early.stuck == []
    assert any("in progress" in n for n in by_arn(early)[world.arn].notes)
    assert late.stuck == [world.arn]
    assert late.summary()["stuck"] == [world.arn]
    # ... its version's age was read (one ListSecretVersionIds, for that secret only)
    assert fleet.aws_calls["ListSecretVersionIds"] == 1
    # ... and the log names the version and the command that clears it
    (record,) = records(logs, "Rotation stuck")
    assert record["version_id"] == token
    assert record["command"] == f"cekura-rotator rotate --cancel --secret-id {world.arn}"


def test_dead_key_with_a_rotation_in_progress_is_not_healed(fleet: Fleet) -> None:
    (world,) = fleet.add(1)
    fleet.with_admin()
    world.start_rotation()
    fleet.kill(world)
    with fleet.deployed() as bridge:
        report = fleet.check().run()
    assert report.healed == []
    assert bridge.invocations == []
    assert any("already in progress" in n for n in by_arn(report)[world.arn].notes)


def test_overdue_rotation_is_reported(fleet: Fleet, logs: LogCapture) -> None:
    # Given secrets on a 30-day schedule (AWS reports the next rotation in 30 days)
    worlds = fleet.add(2)
    # When the health check runs 30.5 days later, then 32 days later
    on_time = fleet.check(now=later(days=30.5)).run()
    late = fleet.check(now=later(days=32)).run()
    # Then half a day late is within the window's slack; two days late is overdue
    assert on_time.overdue == []
    assert sorted(late.overdue) == sorted(w.arn for w in worlds)
    assert len(records(logs, "Rotation overdue")) == 2


def test_secret_with_rotation_disabled_is_checked_but_never_overdue(fleet: Fleet) -> None:
    (world,) = fleet.add(1)
    fleet.sm.cancel_rotate_secret(SecretId=world.arn)
    report = fleet.check(now=later(days=60)).run()
    listed = fleet.sm.list_secrets()["SecretList"]
    if not any(s["ARN"] == world.arn and s.get("RotationLambdaARN") for s in listed):
        pytest.skip("moto forgets the rotation function when rotation is cancelled")
    assert report.overdue == []
    assert by_arn(report)[world.arn].rotation_enabled is False


# -- an unreadable version ------------------------------------------------------------------------


def test_kms_unreadable_current_version_is_skipped_and_named(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given three secrets, one of whose current version KMS cannot decrypt
    worlds = fleet.add(3)
    broken = worlds[1]
    fired = fail_reads(fleet.sm, broken.arn, VersionStage="AWSCURRENT")
    version = next(v for v, s in broken.stages().items() if "AWSCURRENT" in s)
    # When the health check runs
    report = fleet.check().run()
    # Then the others are checked as usual, and that one is skipped and named
    assert fired
    assert report.summary()["checked"] == 3
    assert by_arn(report)[broken.arn].current_key == "unreadable"
    assert all(by_arn(report)[w.arn].current_key == "accepted" for w in worlds if w is not broken)
    assert any("DecryptionFailure" in n and version in n for n in by_arn(report)[broken.arn].notes)
    (record,) = records(logs, "The current version cannot be read")
    assert (record["secret_arn"], record["version_id"], record["error_code"]) == (
        broken.arn,
        version,
        "DecryptionFailure",
    )


# -- Cekura in trouble --------------------------------------------------------------------------


def test_cekura_down_nothing_cleared_nothing_healed(fleet: Fleet, logs: LogCapture) -> None:
    # Given a dead key with an admin credential (a heal), while Cekura answers 503 to everything
    _healthy, dead = fleet.add(2)
    fleet.with_admin()
    fleet.kill(dead)
    fleet.fake.inject("validate", Fault(status=503, times=1000))
    fleet.fake.inject("list", Fault(status=503, times=1000))
    before = fleet.state()
    # When the health check runs
    with fleet.deployed() as bridge:
        report = fleet.check().run()
    # Then no key has a verdict: nothing rejected, nothing healed, nothing changed
    assert {s.current_key for s in report.secrets} == {"unknown"}
    assert report.summary()["rejected"] == 0
    assert report.healed == []
    assert bridge.invocations == []
    assert fleet.state() == before


def test_cekura_rejecting_every_key_makes_no_proof(fleet: Fleet, logs: LogCapture) -> None:
    # Given a healthy fleet with an admin credential, and Cekura answering 401 to every key
    # (an incident of its own, not dead keys)
    worlds = fleet.add(3)
    fleet.with_admin()
    fleet.fake.inject("validate", Fault(status=401, times=1000))
    fleet.fake.inject("projects", Fault(status=401, times=1000))
    before = fleet.state()
    # When the health check runs
    with fleet.deployed() as bridge:
        report = fleet.check().run()
    # Then the keys are reported rejected (and alarmed), but nothing is started: no key and not
    # the admin credential was accepted, so there is no proof that Cekura answers normally
    assert report.summary()["rejected"] == 3
    assert report.healed == []
    assert bridge.invocations == []
    assert fleet.state() == before
    assert all(any("no proof" in n for n in s.notes) for s in report.secrets)
    assert len(worlds) == 3


def test_most_keys_rejected_heals_nothing_and_alarms(fleet: Fleet, logs: LogCapture) -> None:
    # Given four secrets with an admin credential, three of whose keys were deleted
    worlds = fleet.add(4)
    fleet.with_admin()
    for world in worlds[1:]:
        fleet.kill(world)
    before = fleet.state()
    # When the health check runs (one key accepted: Cekura does answer)
    with fleet.deployed() as bridge:
        report = fleet.check().run()
    # Then more than half of four rejected: nothing healed, HealSuppressed instead
    assert report.summary()["rejected"] == 3
    assert report.healed == []
    assert report.heal_suppressed
    assert bridge.invocations == []
    assert fleet.state() == before
    assert records(logs, "Healing suppressed")


def test_half_rejected_still_heals(fleet: Fleet) -> None:
    # Given four secrets, two dead: not more than half
    worlds = fleet.add(4)
    fleet.with_admin()
    for world in worlds[2:]:
        fleet.kill(world)
    with fleet.deployed() as bridge:
        report = fleet.check().run()
    assert sorted(report.healed) == sorted(w.arn for w in worlds[2:])
    assert not report.heal_suppressed
    assert not bridge.failures()


# -- scale and time -----------------------------------------------------------------------------


def test_pagination_past_100_secrets(fleet: Fleet, make_world: Callable[..., World]) -> None:
    # Given 130 secrets rotated by the function and a few that are not
    fleet.add(1)  # registers the function with moto's Lambda
    arns = [*bulk(fleet, 129), fleet.worlds[0].arn]
    for i in range(3):
        fleet.sm.create_secret(Name=f"unrelated/{i}", SecretString="x")
    fleet.aws_calls.clear()
    fleet.fake.reset_requests()
    # When the health check runs, four at a time as in Lambda
    report = fleet.check(workers=4).run()
    calls = Counter(fleet.aws_calls)
    # Then every one was checked once, over two ListSecrets pages
    assert sorted(by_arn(report)) == sorted(arns)
    assert report.unfinished == []
    assert calls == Counter({"ListSecrets": 2, "GetSecretValue": 130})
    assert sum(1 for r in fleet.fake.requests if r.route == "validate") == 130


def test_run_out_of_time_stops_cleanly_and_the_next_run_starts_with_the_rest(
    fleet: Fleet,
) -> None:
    # Given eight secrets, and a clock that moves 10 s at every read of a current key
    fleet.add(1)
    arns = sorted([*bulk(fleet, 7), fleet.worlds[0].arn])
    clock = ReadClock(fleet.sm)
    # When a run has 60 s (a reserve of 6 s is kept for what follows the checks)
    first = fleet.check(clock=clock).run(deadline=clock() + 60)
    # Then it checked the first secrets in ARN order and left the rest for the next run
    done = [s.arn for s in first.secrets]
    assert done == arns[: len(done)]
    assert 1 <= len(done) < len(arns)
    assert first.unfinished == arns[len(done) :]
    assert first.next_start_after == done[-1]
    # ... and the next run, started there, checks the rest first
    second = fleet.check(clock=clock).run(deadline=clock() + 60, start_after=first.next_start_after)
    assert [s.arn for s in second.secrets][: len(first.unfinished)] == first.unfinished[
        : len(second.secrets)
    ]


def test_a_run_with_time_left_finishes_and_resets_the_cursor(fleet: Fleet) -> None:
    worlds = fleet.add(3)
    arns = sorted(w.arn for w in worlds)
    report = fleet.check().run(start_after=arns[0], deadline=time.monotonic() + 120)
    assert [s.arn for s in report.secrets] == [*arns[1:], arns[0]]
    assert report.unfinished == []
    assert report.next_start_after is None


# -- input ------------------------------------------------------------------------------------


def test_named_secrets_only_and_foreign_ones_refused(fleet: Fleet) -> None:
    # Given two secrets of this rotator, one of another function and one without rotation
    mine, also_mine = fleet.add(2)
    foreign, function = fleet.add_foreign()
    plain = fleet.sm.create_secret(Name="plain", SecretString="x")["ARN"]
    fleet.fake.reset_requests()
    # When the health check is asked for one of its own
    report = fleet.check().run([mine.arn])
    # Then only that one is checked
    assert [s.arn for s in report.secrets] == [mine.arn]
    # When it is asked for its own and for others
    refused = fleet.check().run([also_mine.arn, foreign.arn, plain, "no-such-secret"])
    # Then nothing is checked, and each other one is named with why
    assert refused.secrets == []
    assert set(refused.rejected_input) == {foreign.arn, plain, "no-such-secret"}
    assert function.split(":")[-1] in refused.rejected_input[foreign.arn]
    assert "no function" in refused.rejected_input[plain]
    assert refused.rejected_input["no-such-secret"] == "no such secret"
    assert [r.route for r in fleet.fake.requests] == ["validate"]


def test_cekura_down_stops_the_run_after_eight_checks_without_a_verdict(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given twelve secrets, and Cekura answering 503 to everything
    fleet.add(1)
    arns = sorted([*bulk(fleet, 11), fleet.worlds[0].arn])
    fleet.fake.inject("validate", Fault(status=503, times=10_000))
    # When the health check runs
    report = fleet.check().run()
    # Then it stops asking after eight checks in a row without a verdict: the rest is left for
    # the next run, rather than each spending its retries on the outage
    assert [s.arn for s in report.secrets] == arns[:8]
    assert {s.current_key for s in report.secrets} == {"unknown"}
    assert report.unfinished == arns[8:]
    assert report.next_start_after == arns[7]
    assert records(logs, "Cekura gave no verdict on the last checks")
