"""The operator CLI's commands against moto server and the fake Cekura over HTTP.

RotateSecret reaches the real handler through the bridge, so every rotation, check and
bootstrap below runs the real rotation steps.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cekura_rotator import handler, ledger
from cekura_rotator.secret_value import fingerprint
from cekura_rotator_cli.app import main
from infra.local.fake_cekura import KEY_PREFIX, Fault
from infra.local.stack import FUNCTION_ARN, LocalStack, secret_json
from tests.integration.cli_harness import (
    FAST,
    LOG_GROUP,
    assert_no_key_material,
    assert_one_line,
    cli,
    current_value,
    dead_port,
    rotate,
    seed,
    stages,
    stored_string,
    version_with,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_reads_the_key_from_stdin_and_attaches_rotation(stack: LocalStack) -> None:
    # Given a project and a key made on the dashboard
    project = stack.fake.create_project("boot-stdin", organization="Acme")
    issued = stack.fake.issue_key(project, name="dashboard")
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    stack.fake.reset_requests()

    # When the key is piped to bootstrap
    result = cli(
        stack,
        "bootstrap",
        "--secret-name", name,
        "--project-id", str(project),
        "--function-arn", FUNCTION_ARN,
        stdin=issued.key + "\n",
    )  # fmt: skip

    # Then the key was validated (by the CLI, then by the function's testSecret once rotation was
    # attached), stored in the documented format, and rotation attached
    assert result.code == 0, result.err
    assert [r.route for r in stack.fake.requests] == ["validate", "validate"]
    assert [(i.step, i.error) for i in stack.bridge.invocations[-1:]] == [("testSecret", None)]
    client = stack.client()
    assert current_value(client, name) == {"api_key": issued.key, "project_id": project}
    described = client.describe_secret(SecretId=name)
    assert described["RotationLambdaARN"] == FUNCTION_ARN
    assert described["RotationEnabled"] is True
    assert described["RotationRules"]["AutomaticallyAfterDays"] == 30
    assert fingerprint(issued.key) in result.out
    # ... with a warning that, without --key-id, the key can never be revoked by id
    assert result.err.startswith("warning: no --key-id:")
    assert "can never revoke this key by id" in result.err
    assert_no_key_material(stack, result.text)


def test_bootstrap_reads_the_key_from_cekura_api_key(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a key only in CEKURA_API_KEY, with nothing piped
    project = stack.fake.create_project("boot-env", organization="Acme")
    issued = stack.fake.issue_key(project, name="dashboard")
    monkeypatch.setenv("CEKURA_API_KEY", issued.key)
    name = f"cekura/{uuid.uuid4().hex[:8]}"

    # When bootstrap runs with a weekly schedule and the key's dashboard id
    result = cli(
        stack,
        "bootstrap",
        "--secret-name", name,
        "--project-id", str(project),
        "--function-arn", FUNCTION_ARN,
        "--schedule", "rate(7 days)",
        "--key-id", str(issued.id),
        "--key-name", "dashboard",
    )  # fmt: skip

    # Then the secret holds that key and its id, and rotates weekly
    assert result.code == 0, result.err
    client = stack.client()
    assert current_value(client, name) == {
        "api_key": issued.key,
        "project_id": project,
        "key_id": issued.id,
        "key_name": "dashboard",
    }
    assert client.describe_secret(SecretId=name)["RotationRules"]["AutomaticallyAfterDays"] == 7
    assert_no_key_material(stack, result.text)


@pytest.mark.parametrize("problem", ["unknown key", "key of another project"])
def test_bootstrap_refuses_a_key_cekura_rejects_and_creates_nothing(
    stack: LocalStack, problem: str
) -> None:
    # Given a key Cekura does not know, or one that belongs to another project
    project = stack.fake.create_project("boot-bad", organization="Acme")
    if problem == "unknown key":
        key, expected = KEY_PREFIX + uuid.uuid4().hex, "does not accept the key"
    else:
        other = stack.fake.create_project("other", organization="Acme")
        key = stack.fake.issue_key(other).key
        expected = f"does not belong to project {project}"
    name = f"cekura/{uuid.uuid4().hex[:8]}"

    # When it is bootstrapped
    result = cli(
        stack,
        "bootstrap",
        "--secret-name", name,
        "--project-id", str(project),
        "--function-arn", FUNCTION_ARN,
        stdin=key,
    )  # fmt: skip

    # Then it is refused as an input error, and no secret was created
    assert result.code == 2
    assert_one_line(result.err, "bootstrap", name)
    assert expected in result.err
    assert "nothing was created" in result.err
    assert key not in result.text
    assert "***" not in result.text
    names = [s["Name"] for s in stack.client().list_secrets()["SecretList"]]
    assert name not in names


def test_bootstrap_refuses_an_existing_secret_unless_update(stack: LocalStack) -> None:
    # Given a bootstrapped secret with a field of its own
    seeded = seed(stack)
    client = stack.client()
    client.put_secret_value(
        SecretId=seeded.arn,
        SecretString=secret_json(seeded.key.key, seeded.project, team="qa"),
    )
    before = stages(client, seeded.arn)
    replacement = stack.fake.issue_key(seeded.project, name="replacement")
    argv = [
        "bootstrap",
        "--secret-name", seeded.name,
        "--project-id", str(seeded.project),
        "--function-arn", FUNCTION_ARN,
    ]  # fmt: skip

    # When bootstrap runs again without --update
    refused = cli(stack, *argv, stdin=replacement.key)

    # Then it exits 2 and changes nothing
    assert refused.code == 2
    assert_one_line(refused.err, "bootstrap", seeded.name)
    assert "already exists" in refused.err
    assert stages(client, seeded.arn) == before
    assert current_value(client, seeded.arn)["api_key"] == seeded.key.key

    # When it runs with --update
    updated = cli(stack, *argv, "--update", stdin=replacement.key)

    # Then the new key is AWSCURRENT, the secret's own field kept, the old key AWSPREVIOUS
    assert updated.code == 0, updated.err
    assert current_value(client, seeded.arn) == {
        "api_key": replacement.key,
        "project_id": seeded.project,
        "team": "qa",
    }
    previous = version_with(client, seeded.arn, "AWSPREVIOUS")
    assert previous is not None
    old = client.get_secret_value(SecretId=seeded.arn, VersionId=previous)["SecretString"]
    assert json.loads(old)["api_key"] == seeded.key.key
    assert_no_key_material(stack, refused.text, updated.text)


def test_bootstrap_takes_no_key_argument_and_needs_a_key(stack: LocalStack) -> None:
    # Given a valid key
    project = stack.fake.create_project("boot-none", organization="Acme")
    key = stack.fake.issue_key(project).key
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    argv = [
        "bootstrap",
        "--secret-name", name,
        "--project-id", str(project),
        "--function-arn", FUNCTION_ARN,
    ]  # fmt: skip

    # When it is passed as an argument, or not given at all
    as_argument = cli(stack, *argv, "--api-key", key)
    missing = cli(stack, *argv)

    # Then both are usage errors; the argument's value is not echoed
    assert as_argument.code == 2
    assert "unrecognized arguments" in as_argument.err
    assert key not in as_argument.text
    assert missing.code == 2
    assert_one_line(missing.err, "bootstrap", name)
    assert "CEKURA_API_KEY" in missing.err
    names = [s["Name"] for s in stack.client().list_secrets()["SecretList"]]
    assert name not in names


def test_bootstrap_as_a_process_reads_a_piped_key(stack: LocalStack) -> None:
    # Given a key and the CLI run as a process (`python -m cekura_rotator_cli`, what the
    # installed `cekura-rotator` script runs)
    project = stack.fake.create_project("boot-proc", organization="Acme")
    issued = stack.fake.issue_key(project, name="dashboard")
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["lambda", "cli"])}
    env.pop("CEKURA_API_KEY", None)

    argv = [
        sys.executable, "-m", "cekura_rotator_cli",
        "--endpoint-url", stack.moto_url,
        "bootstrap",
        "--secret-name", name,
        "--project-id", str(project),
        "--function-arn", FUNCTION_ARN,
    ]  # fmt: skip

    # When the key is piped in
    proc = subprocess.run(
        argv,
        input=issued.key + "\n",
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
        check=False,
    )

    # Then the secret holds it, and the process printed no key
    assert proc.returncode == 0, proc.stderr
    assert current_value(stack.client(), name)["api_key"] == issued.key
    assert f"Created secret {name}" in proc.stdout
    assert_no_key_material(stack, proc.stdout, proc.stderr)


# -- status ------------------------------------------------------------------------------------


def test_status_shows_versions_keys_and_fingerprints_before_and_after_rotations(
    stack: LocalStack,
) -> None:
    # Given a freshly attached secret
    seeded = seed(stack)
    client = stack.client()
    first = version_with(client, seeded.arn, "AWSCURRENT")
    assert first is not None

    # When status runs before any rotation
    before = cli(stack, "status", "--secret-id", seeded.name)

    # Then it shows the labelled version, its key id and fingerprint, no admin secret, and
    # nothing awaiting deletion
    assert before.code == 0, before.err
    assert f"{first}  AWSCURRENT" in before.out
    assert f"key id       {seeded.key.id}" in before.out
    assert f"fingerprint  {fingerprint(seeded.key.key)}" in before.out
    assert f"Rotation function  {FUNCTION_ARN}" in before.out
    assert "Schedule           every 30 days" in before.out
    assert "Last rotation      ok" in before.out
    assert "Admin secret       none: keys are minted with the key being replaced" in before.out
    assert "Revocations awaiting deletion: none" in before.out

    # When the secret is rotated twice (spec mode: Cekura refuses API-key deletes)
    second = rotate(stack, seeded.arn)
    third = rotate(stack, seeded.arn)
    after = cli(stack, "status", "--secret-id", seeded.arn)

    # Then the labels moved, each key shows its own id and fingerprint, and the bootstrap key,
    # whose revocation Cekura refused, awaits manual deletion with its id, name and version
    assert after.code == 0, after.err
    current = current_value(client, seeded.arn)
    assert f"{third}  AWSCURRENT" in after.out
    assert f"{second}  AWSPREVIOUS" in after.out
    (manual,) = [e for e in ledger.entries(stages(client, seeded.arn)) if e.version_id == first]
    assert manual.state == ledger.State.MANUAL
    assert f"{first}  {' '.join(manual.labels)}" in after.out
    assert f"fingerprint  {fingerprint(current['api_key'])}" in after.out
    assert f"key id       {current['key_id']}" in after.out
    assert "Last rotation      ok" in after.out
    awaiting = after.out.split("Revocations awaiting deletion", 1)[1]
    assert awaiting.startswith(" (1)\n")
    assert (
        f"key {seeded.key.id} 'bootstrap' {fingerprint(seeded.key.key)} (project "
        f"{seeded.project}) in version {first}, age " in awaiting
    )
    assert "awaiting manual deletion in the Cekura dashboard" in awaiting
    assert fingerprint(current["api_key"]) not in awaiting
    assert stack.fake.is_live(seeded.key.key)
    assert after.err == ""
    assert_no_key_material(stack, before.text, after.text)


def test_status_json_carries_the_same_facts_without_key_material(stack: LocalStack) -> None:
    # Given a secret rotated twice, then a rotation whose createSecret fails
    seeded = seed(stack)
    client = stack.client()
    first = version_with(client, seeded.arn, "AWSCURRENT")
    rotate(stack, seeded.arn)
    rotate(stack, seeded.arn)
    stack.fake.inject("create", Fault(status=503))
    failed = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "0.2", *FAST)
    assert failed.code == 1

    # When status runs with --output json
    result = cli(stack, "status", "--secret-id", seeded.arn, "--output", "json")

    # Then stdout is one JSON document, and every version's labels, key id and fingerprint match
    # the store
    assert result.code == 0, result.err
    report = json.loads(result.out)
    versions = {v["version_id"]: v for v in report["versions"]}
    listed = client.list_secret_version_ids(SecretId=seeded.arn, IncludeDeprecated=True)
    assert set(versions) == {v["VersionId"] for v in listed["Versions"]}
    for version_id, labels in stages(client, seeded.arn).items():
        assert sorted(versions[version_id]["labels"]) == sorted(labels)
    for version_id, version in versions.items():
        raw = stored_string(client, seeded.arn, version_id)
        if raw is None:
            assert version["fingerprint"] is None
            continue
        value = json.loads(raw)
        assert version["fingerprint"] == fingerprint(value["api_key"])
        assert version["key_id"] == value.get("key_id")
    # ... the failed rotation is reported as pending, the bootstrap key as awaiting deletion
    pending = version_with(client, seeded.arn, "AWSPENDING")
    assert pending is not None
    last_result = report["rotation"]["last_result"]
    assert (last_result["status"], last_result["pending_version"]) == ("pending", pending)
    assert last_result["text"].startswith(
        f"in progress or failed (pending version {pending}, since "
    )
    assert versions[pending]["fingerprint"] is None
    assert report["rotation"]["function_arn"] == FUNCTION_ARN
    assert report["admin_secret"]["source"] == "none"
    awaiting = report["revocations_awaiting_deletion"]
    assert [(k["key_id"], k["fingerprint"], k["state"], k["version_id"]) for k in awaiting] == [
        (seeded.key.id, fingerprint(seeded.key.key), "manual", first)
    ]
    assert_no_key_material(stack, result.text)


@pytest.mark.parametrize(("policy", "owed"), [("grace", 0), ("off", 0)], ids=["grace", "off"])
def test_status_shows_nothing_owed_when_cekura_lets_keys_delete(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, policy: str, owed: int
) -> None:
    # Given the older, permissive Cekura, and a secret rotated twice under a revocation policy
    stack.fake.mode = "permissive"
    monkeypatch.setenv("REVOCATION_POLICY", policy)
    handler.rotator.cache_clear()
    seeded = seed(stack)
    rotate(stack, seeded.arn)
    rotate(stack, seeded.arn)

    # When status runs
    result = cli(stack, "status", "--secret-id", seeded.arn, "--output", "json")

    # Then nothing awaits deletion: under grace the bootstrap key was deleted, under off nothing
    # is ever owed (the key stays live by choice)
    assert result.code == 0, result.err
    assert len(json.loads(result.out)["revocations_awaiting_deletion"]) == owed
    assert stack.fake.is_live(seeded.key.key) is (policy == "off")
    assert_no_key_material(stack, result.text)


# -- rotate ------------------------------------------------------------------------------------


def test_rotate_wait_ends_when_awscurrent_moves(stack: LocalStack) -> None:
    # Given an attached secret
    seeded = seed(stack)
    client = stack.client()
    before = version_with(client, seeded.arn, "AWSCURRENT")

    # When it is rotated with --wait
    result = cli(stack, "rotate", "--secret-id", seeded.name, "--wait", *FAST)

    # Then the CLI reports the version that became AWSCURRENT, holding a new, live key
    assert result.code == 0, result.err
    after = version_with(client, seeded.arn, "AWSCURRENT")
    assert after not in (None, before)
    assert f"finishSecret complete: AWSCURRENT moved to {after}." in result.out
    assert result.out.endswith("Rotation complete.\n")
    new_key = current_value(client, seeded.arn)["api_key"]
    assert new_key != seeded.key.key
    assert stack.fake.is_live(new_key)
    assert result.err == ""
    assert_no_key_material(stack, result.text)


def test_rotate_without_wait_only_starts_the_rotation(stack: LocalStack) -> None:
    # Given an attached secret
    seeded = seed(stack)

    # When it is rotated without --wait
    result = cli(stack, "rotate", "--secret-id", seeded.arn)

    # Then the CLI names the new version and points at status
    assert result.code == 0, result.err
    started = stack.bridge.invocations[-1].token
    assert f"new version {started}" in result.out
    assert "status --secret-id" in result.out


@pytest.mark.parametrize(
    ("route", "fault", "reason", "reached"),
    [
        (
            "create",
            Fault(status=401),
            "holds no key: createSecret did not complete",
            "createSecret",
        ),
        ("validate", Fault(status=403), "is stored as AWSPENDING in version", "setSecret"),
    ],
    ids=["createSecret fails", "testSecret fails"],
)
def test_rotate_wait_fails_with_the_reason(
    stack: LocalStack, route: Any, fault: Fault, reason: str, reached: str
) -> None:
    # Given a secret whose next rotation fails at one step
    seeded = seed(stack)
    client = stack.client()
    before = version_with(client, seeded.arn, "AWSCURRENT")
    stack.fake.inject(route, fault)

    # When it is rotated with --wait
    result = cli(stack, "rotate", "--secret-id", seeded.name, "--wait", "--timeout", "0.3", *FAST)

    # Then the CLI exits 1 with one line saying where it stopped; AWSCURRENT did not move
    assert result.code == 1
    assert_one_line(result.err, "rotate", seeded.name)
    pending = version_with(client, seeded.arn, "AWSPENDING")
    assert pending is not None
    assert "rotation failed: AWSCURRENT did not move within 0.3s" in result.err
    assert f"(last step reached: {reached})" in result.err
    assert reason in result.err
    assert pending in result.err
    # ... and says that the function's log, which would give the reason, could not be read
    assert f"the function's log {LOG_GROUP} could not be read from here" in result.err
    assert "so the function's own reason is unknown" in result.err
    assert version_with(client, seeded.arn, "AWSCURRENT") == before
    assert_no_key_material(stack, result.text)


@pytest.mark.usefixtures("function_log")
def test_rotate_wait_reads_the_reason_from_the_function_log(stack: LocalStack) -> None:
    # Given the function's log in CloudWatch, and a rotation whose createSecret is refused
    seeded = seed(stack)
    stack.fake.inject("create", Fault(status=401))
    started = time.monotonic()

    # When it is rotated with --wait and a long timeout
    result = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "60", *FAST)

    # Then the logged failure ends the wait at once and is the reason given
    assert result.code == 1
    assert time.monotonic() - started < 10
    assert_one_line(result.err, "rotate", seeded.arn)
    assert "the function logged: createSecret failed: CekuraAuthError:" in result.err
    assert "Cekura rejects the current key (HTTP 401)" in result.err
    assert_no_key_material(stack, result.text)


@pytest.mark.usefixtures("function_log")
def test_rotate_wait_shows_each_step_reached_and_the_time_elapsed(stack: LocalStack) -> None:
    # Given an attached secret whose function logs to CloudWatch
    seeded = seed(stack)

    # When it is rotated with --wait
    result = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait", *FAST)

    # Then each step appears once, in order, with the seconds since the rotation started
    assert result.code == 0, result.err
    progress = re.findall(r"^  \[\s*(\d+\.\d)s\] (\w+) complete", result.out, re.MULTILINE)
    assert [step for _, step in progress] == [
        "createSecret",
        "setSecret",
        "testSecret",
        "finishSecret",
    ]
    elapsed = [float(seconds) for seconds, _ in progress]
    assert elapsed == sorted(elapsed)
    assert result.out.rstrip().endswith("Rotation complete.")
    assert_no_key_material(stack, result.text)


def test_rotate_wait_with_json_output_prints_one_document_and_progress_on_stderr(
    stack: LocalStack,
) -> None:
    # Given an attached secret
    seeded = seed(stack)
    before = version_with(stack.client(), seeded.arn, "AWSCURRENT")

    # When it is rotated with --wait --output json
    result = cli(stack, "--output", "json", "rotate", "--secret-id", seeded.arn, "--wait", *FAST)

    # Then stdout is exactly one JSON document naming the new version, and the progress lines
    # went to stderr
    assert result.code == 0, result.err
    report = json.loads(result.out)
    after = version_with(stack.client(), seeded.arn, "AWSCURRENT")
    assert report["status"] == "complete"
    assert (report["version_id"], report["previous_version"]) == (after, before)
    assert report["current_version"] == after
    assert report["progress"][-1]["reached"] == "finishSecret"
    assert report["revocations_awaiting_deletion"] == 0
    assert "finishSecret complete" in result.err
    assert_no_key_material(stack, result.text)


# -- check -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("function_log")
def test_check_passes_and_reports_the_functions_verdict(stack: LocalStack) -> None:
    # Given an attached secret whose function logs to CloudWatch
    seeded = seed(stack)
    client = stack.client()
    current = version_with(client, seeded.arn, "AWSCURRENT")
    calls = len(stack.bridge.invocations)

    # When it is checked
    result = cli(stack, "check", "--secret-id", seeded.arn, "--timeout", "5")

    # Then only testSecret ran, it passed, and the CLI says so; AWSCURRENT did not move
    assert result.code == 0, result.err
    ran = stack.bridge.invocations[calls:]
    assert [(i.step, i.error) for i in ran] == [("testSecret", None)]
    assert f"is running testSecret (version {ran[0].token}" in result.out
    assert f"Cekura accepts the current key (key {seeded.key.id} 'bootstrap'" in result.out
    assert f"Function log: testSecret passed for version {ran[0].token}." in result.out
    assert result.out.endswith("Check passed.\n")
    assert version_with(client, seeded.arn, "AWSCURRENT") == current
    assert_no_key_material(stack, result.text)


def test_check_fails_when_cekura_no_longer_accepts_the_current_key(stack: LocalStack) -> None:
    # Given an attached secret whose key was deleted at Cekura
    seeded = seed(stack)
    stack.fake.mode = "permissive"
    deleted = httpx.delete(
        f"{stack.fake.url}/user/api/v1/user-api-key/{seeded.key.id}/",
        headers={"X-CEKURA-API-KEY": seeded.key.key},
    )
    assert deleted.status_code == 204
    stack.fake.mode = "spec"
    calls = len(stack.bridge.invocations)

    # When it is checked
    result = cli(stack, "check", "--secret-id", seeded.name)

    # Then the check fails (exit 1) with Cekura's answer, as the function's testSecret did
    assert result.code == 1
    assert_one_line(result.err, "check", seeded.name)
    assert "check failed: Cekura does not accept the current key" in result.err
    assert "HTTP 401" in result.err
    ran = stack.bridge.invocations[calls:]
    assert [i.step for i in ran] == ["testSecret"]
    assert ran[0].error is not None
    assert "KeyValidationError" in ran[0].error
    assert_no_key_material(stack, result.text)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "rotate", "check"])
def test_an_unknown_secret_is_a_one_line_usage_error(stack: LocalStack, command: str) -> None:
    # Given a secret id that does not exist
    missing = f"cekura/missing-{uuid.uuid4().hex[:6]}"

    # When a command names it
    result = cli(stack, command, "--secret-id", missing)

    # Then it exits 2 with one line naming the command and the secret
    assert result.code == 2
    assert result.out == ""
    assert_one_line(result.err, command, missing)
    assert "ResourceNotFoundException" in result.err


def test_rotate_refuses_a_secret_without_rotation(stack: LocalStack) -> None:
    # Given a secret with no rotation function
    name = f"cekura/plain-{uuid.uuid4().hex[:6]}"
    stack.client().create_secret(Name=name, SecretString=secret_json("not-a-real-key", 1))

    # When it is rotated
    result = cli(stack, "rotate", "--secret-id", name, "--wait")

    # Then the CLI says rotation is not configured and RotateSecret was never called
    assert result.code == 2
    assert_one_line(result.err, "rotate", name)
    assert "rotation is not configured" in result.err
    assert "RotationLambdaARN" not in stack.client().describe_secret(SecretId=name)


def test_an_invalid_cekura_url_is_a_usage_error(stack: LocalStack) -> None:
    # Given an attached secret
    seeded = seed(stack)

    # When status is pointed at Cekura over plain http on a public host
    result = cli(stack, "status", "--secret-id", seeded.arn, "--cekura-url", "http://cekura.test")

    # Then it exits 2 before reading anything, saying why
    assert result.code == 2
    assert result.out == ""
    assert_one_line(result.err, "status", seeded.arn)
    assert "must use https://" in result.err


def test_unreachable_aws_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an endpoint nobody listens on, and no retries
    port = dead_port()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    out, err = io.StringIO(), io.StringIO()

    # When status runs against it
    code = main(
        ["status", "--secret-id", "cekura/x", "--endpoint-url", f"http://127.0.0.1:{port}"],
        stdout=out,
        stderr=err,
    )

    # Then it exits 3 with one line saying AWS could not be reached
    assert code == 3
    assert out.getvalue() == ""
    assert_one_line(err.getvalue(), "status", "cekura/x")
    assert "EndpointConnectionError" in err.getvalue()


# -- AWS conventions ---------------------------------------------------------------------------


def test_profile_selects_the_aws_configuration_and_a_missing_one_is_a_usage_error(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a named profile that alone holds the region and credentials
    seeded = seed(stack)
    config = tmp_path / "config"
    config.write_text("[profile ops]\nregion = us-east-1\n")
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)

    # When status runs with that profile, and with one that does not exist
    with_profile = cli(stack, "--profile", "ops", "status", "--secret-id", seeded.arn)
    missing = cli(stack, "status", "--secret-id", seeded.arn, "--profile", "nobody")

    # Then the profile's region and credentials reach the secret; the missing profile is one line
    assert with_profile.code == 0, with_profile.err
    assert f"ARN                {seeded.arn}" in with_profile.out
    assert missing.code == 2
    assert_one_line(missing.err, "status", seeded.arn)
    assert "ProfileNotFound" in missing.err


def test_region_is_the_one_given(stack: LocalStack) -> None:
    # Given a secret in us-east-1
    seeded = seed(stack)

    # When status looks for it by name in another region
    result = cli(stack, "status", "--secret-id", seeded.name, "--region", "eu-west-1")

    # Then it is not found there (moto keeps regions apart, as AWS does)
    assert result.code == 2
    assert_one_line(result.err, "status", seeded.name)
    assert "ResourceNotFoundException" in result.err


def test_help_lists_every_command_and_the_aws_options() -> None:
    # Given the parser
    out = io.StringIO()
    # When --help is asked for
    code = main(["--help"], stdout=out, stderr=io.StringIO())
    # Then it names the commands and the AWS CLI's options
    assert code == 0
    for word in ("status", "rotate", "check", "bootstrap", "revocations"):
        assert word in out.getvalue()
    for option in ("--profile", "--region", "--endpoint-url", "--output"):
        assert option in out.getvalue()
