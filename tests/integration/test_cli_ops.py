"""The CLI at 3 a.m.: one exit-code table, whole messages, checks before changes, the right
region, `doctor`, `rotate --cancel`, and the smaller promises of issue 16. In-process against
moto server and the fake Cekura; the installed command's own tests (pipes, signals) are in
test_cli_install.py.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from cekura_rotator import ledger
from cekura_rotator.errors import SecretsStoreError
from cekura_rotator.secrets_store import SecretsStore
from cekura_rotator_cli.app import main
from infra.local.fake_cekura import KEY_PREFIX, Fault
from infra.local.lambda_bridge import FUNCTION_NAME, REGION
from infra.local.stack import FUNCTION_ARN, LocalStack, delete_in_dashboard, secret_json
from tests.integration.cli_harness import (
    FAST,
    LOG_GROUP,
    Result,
    Seeded,
    admin_secret,
    assert_no_key_material,
    assert_one_line,
    bootstrap_argv,
    cli,
    current_value,
    dead_port,
    kill,
    lambda_client,
    rotate,
    seed,
    set_function_environment,
    stages,
    stored_string,
    version_with,
)

WHERE = "region us-east-1, account 123456789012"


def malformed(stack: LocalStack) -> Seeded:
    """A bootstrapped secret whose AWSCURRENT a person overwrote with a value of no known shape."""
    seeded = seed(stack)
    stack.client().put_secret_value(SecretId=seeded.arn, SecretString='{"apikey": "oops"}')
    return seeded


# -- one exit-code table -----------------------------------------------------------------------


def test_help_documents_the_one_exit_code_table_for_every_command() -> None:
    # Given the top-level help and each command's
    for argv in (["--help"], ["status", "--help"], ["rotate", "--help"], ["doctor", "--help"]):
        out = io.StringIO()
        # When it is asked for
        code = main(argv, stdout=out, stderr=io.StringIO())
        # Then it lists the same table
        assert code == 0
        text = out.getvalue()
        assert "exit codes (the same for every command):" in text
        for line in (
            "0    ok",
            "1    the rotation, check or key is bad",
            "2    usage or input error",
            "3    AWS or Cekura unreachable, or your own AWS credentials refused",
            "130  interrupted (Ctrl-C)",
        ):
            assert line in text


@pytest.mark.parametrize("command", ["status", "check", "rotate --wait", "bootstrap"])
def test_cekura_down_exits_3_everywhere(stack: LocalStack, command: str) -> None:
    # Given a secret, and Cekura failing every request (for the CLI and the function alike)
    seeded = seed(stack)
    for route in ("validate", "create"):
        stack.fake.inject(route, Fault(status=500, times=100))
    argv = {
        "status": ["status", "--secret-id", seeded.arn],
        "check": ["check", "--secret-id", seeded.arn, "--timeout", "1"],
        "rotate --wait": ["rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "2", *FAST],
        "bootstrap": [
            "bootstrap", "--secret-name", f"cekura/{uuid.uuid4().hex[:8]}",
            "--project-id", str(seeded.project), "--function-arn", FUNCTION_ARN,
        ],
    }[command]  # fmt: skip
    started = time.monotonic()

    # When the command runs
    result = cli(stack, *argv, stdin=seeded.key.key if command == "bootstrap" else "")

    # Then it exits 3 ("Cekura unreachable"), with one line that names Cekura's host
    assert result.code == 3, result.err
    assert result.err.count("\n") == 1
    assert f"(Cekura API at {stack.fake.url})" in result.err
    assert time.monotonic() - started < 20
    assert_no_key_material(stack, result.text)


def test_status_says_whether_cekura_accepts_the_current_key(stack: LocalStack) -> None:
    # Given a healthy secret and one whose key was deleted in the dashboard
    healthy = seed(stack)
    dead = seed(stack)
    kill(stack, dead)

    # When status runs on each
    ok = cli(stack, "status", "--secret-id", healthy.arn)
    bad = cli(stack, "status", "--secret-id", dead.arn)
    bad_json = cli(stack, "status", "--secret-id", dead.arn, "--output", "json")

    # Then the healthy key is accepted (exit 0); the dead one rejected (exit 1), with its
    # whole report all the same and one line on stderr saying what to do
    assert ok.code == 0, ok.err
    assert f"Current key        accepted for project {healthy.project}" in ok.out
    assert bad.code == 1
    assert "Current key        rejected: Cekura does not know the key" in bad.out
    assert "Versions" in bad.out
    assert_one_line(bad.err, "status", dead.arn)
    assert "bootstrap --update --secret-name" in bad.err
    assert bad_json.code == 1
    assert json.loads(bad_json.out)["current_key"]["state"] == "rejected"
    assert_no_key_material(stack, ok.text, bad.text, bad_json.text)


def test_status_of_a_malformed_awscurrent_exits_1(stack: LocalStack) -> None:
    # Given a secret whose AWSCURRENT is not in the documented format
    seeded = malformed(stack)

    # When status runs
    result = cli(stack, "status", "--secret-id", seeded.arn, "--output", "json")

    # Then the key is bad: exit 1, and the report says so in plain grammar
    assert result.code == 1
    report = json.loads(result.out)
    assert report["current_key"]["state"] == "malformed"
    assert "the AWSCURRENT version is not in the documented format" in result.err
    assert "has not in" not in result.err


# -- whole messages ----------------------------------------------------------------------------


@pytest.mark.usefixtures("function_log")
def test_a_long_reason_reaches_the_operator_whole(stack: LocalStack) -> None:
    # Given a secret whose key was deleted, no admin credential, and the function's log readable
    seeded = seed(stack)
    kill(stack, seeded)
    set_function_environment(stack, {"CEKURA_API_URL": stack.fake.url})

    # When it is rotated with --wait
    result = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "30", *FAST)

    # Then the function's reason and the recovery both arrive uncut, in one line
    assert result.code == 1
    assert_one_line(result.err, "rotate", seeded.arn)
    assert len(result.err) > 1000
    assert (
        "set an admin secret (template parameter AdminSecretArns) to recover, then rotate again"
        in result.err
    )
    assert result.err.rstrip().endswith("without --admin-secret-arn (key on stdin)")


# -- rotate: refuse early, stop early ----------------------------------------------------------


def test_rotate_refuses_a_malformed_secret_before_starting(stack: LocalStack) -> None:
    # Given a secret whose AWSCURRENT is not in the documented format
    seeded = malformed(stack)
    calls = len(stack.bridge.invocations)
    before = stages(stack.client(), seeded.arn)

    # When it is rotated
    result = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait")

    # Then no rotation was started (exit 1), and the fix is named
    assert result.code == 1
    assert_one_line(result.err, "rotate", seeded.arn)
    assert "is not in the documented format" in result.err
    assert "nothing was started" in result.err
    assert len(stack.bridge.invocations) == calls
    assert stages(stack.client(), seeded.arn) == before


def test_rotate_wait_stops_early_when_the_admin_credential_is_refused_too(
    stack: LocalStack, allow_admin: Callable[[str], None]
) -> None:
    # Given a dead key, an admin secret configured whose credential Cekura also rejects, and a
    # function log that cannot be read
    seeded = seed(stack)
    arn, credential = admin_secret(stack, seeded.project)
    allow_admin(arn)
    admin_id = stack.fake.key_id(credential)
    assert admin_id is not None
    kill(stack, seeded)
    session = delete_in_dashboard(stack.fake, admin_id, project_id=seeded.project)
    started = time.monotonic()

    # When it is rotated with --wait and a long timeout
    result = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "60", *FAST)

    # Then it stops at the first look instead of waiting out the timeout, and says why
    assert result.code == 1
    assert time.monotonic() - started < 20
    assert_one_line(result.err, "rotate", seeded.arn)
    assert "rotation cannot complete" in result.err
    assert f"admin secret {arn} is configured, but rejected" in result.err
    assert_no_key_material(stack, result.text, extra=(credential, session))


def test_rotate_wait_with_an_unreadable_log_and_configuration_stops_and_says_so(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dead key, and an operator who may read neither the function's log nor its
    # configuration (Lambda unreachable from here)
    seeded = seed(stack)
    kill(stack, seeded)
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.moto_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{dead_port()}")
    monkeypatch.setenv("CEKURA_API_URL", stack.fake.url)
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()

    # When it is rotated with --wait and a long timeout
    code = main(
        ["rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "60", *FAST],
        stdout=out,
        stderr=err,
    )

    # Then its own probe's "rejected" ends the wait early, and the message says the log could
    # not be read (so the function's reason is unknown)
    assert code == 1
    assert time.monotonic() - started < 20
    assert_one_line(err.getvalue(), "rotate", seeded.arn)
    assert "rotation stopped being followed" in err.getvalue()
    assert "Cekura no longer accepts the current key" in err.getvalue()
    assert f"the function's log {LOG_GROUP} could not be read from here" in err.getvalue()
    assert_no_key_material(stack, out.getvalue(), err.getvalue())


# -- bootstrap checks first --------------------------------------------------------------------


def secret_names(stack: LocalStack) -> list[str]:
    return [s["Name"] for s in stack.client().list_secrets()["SecretList"]]


def test_bootstrap_with_a_mistyped_function_creates_nothing(stack: LocalStack) -> None:
    # Given a key, and a function ARN with a typo
    project = stack.fake.create_project("boot-typo", organization="Acme")
    key = stack.fake.issue_key(project).key
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    typo = FUNCTION_ARN + "x"

    # When bootstrap runs
    result = cli(stack, *bootstrap_argv(name, project, typo), stdin=key)

    # Then it fails before anything exists, naming where it looked
    assert result.code == 2
    assert_one_line(result.err, "bootstrap", name)
    assert f"there is no function {typo} (looked in {WHERE})" in result.err
    assert "nothing was created" in result.err
    assert name not in secret_names(stack)


def test_bootstrap_refuses_a_function_that_is_not_the_rotator(stack: LocalStack) -> None:
    # Given another Lambda function in the account
    lam = lambda_client(stack)
    role = boto3.client("iam", region_name=REGION, endpoint_url=stack.moto_url).get_role(
        RoleName=f"{FUNCTION_NAME}-role"
    )["Role"]["Arn"]
    other = lam.create_function(
        FunctionName=f"other-{uuid.uuid4().hex[:6]}",
        Runtime="python3.13",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )["FunctionArn"]
    project = stack.fake.create_project("boot-other-fn", organization="Acme")
    name = f"cekura/{uuid.uuid4().hex[:8]}"

    # When bootstrap names it
    result = cli(
        stack, *bootstrap_argv(name, project, other), stdin=stack.fake.issue_key(project).key
    )

    # Then it is refused before anything is created
    assert result.code == 2
    assert f"{other} is not the Cekura rotator: its handler is app.handler" in result.err
    assert name not in secret_names(stack)


def test_bootstrap_refuses_an_admin_secret_the_function_does_not_allow(stack: LocalStack) -> None:
    # Given an admin secret, and a function deployed without it in AdminSecretArns
    project = stack.fake.create_project("boot-not-allowed", organization="Acme")
    arn, credential = admin_secret(stack, project)
    set_function_environment(stack, {"CEKURA_API_URL": stack.fake.url})
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    stack.fake.reset_requests()

    # When bootstrap would mint with it
    result = cli(stack, *bootstrap_argv(name, project), "--admin-secret-arn", arn)

    # Then it fails (exit 2) before minting or creating anything
    assert result.code == 2
    assert_one_line(result.err, "bootstrap", name)
    assert f"the function does not allow admin secret {arn}" in result.err
    assert stack.fake.requests == []
    assert name not in secret_names(stack)
    assert_no_key_material(stack, result.text, extra=(credential,))


def test_bootstrap_next_steps_keep_the_aws_options_in_use(stack: LocalStack) -> None:
    # Given a key
    project = stack.fake.create_project("boot-next", organization="Acme")
    issued = stack.fake.issue_key(project)
    name = f"cekura/{uuid.uuid4().hex[:8]}"

    # When bootstrap runs with an explicit region and the key's id
    result = cli(stack, "--region", REGION, *bootstrap_argv(name, project), "--key-id",
                 str(issued.id), stdin=issued.key)  # fmt: skip

    # Then the "Next:" hint repeats the endpoint and region, and no --key-id warning is given
    assert result.code == 0, result.err
    arn = current_arn(stack, name)
    assert (
        f"Next: cekura-rotator --region {REGION} --endpoint-url {stack.moto_url} status "
        f"--secret-id {arn}"
    ) in result.out
    assert "warning" not in result.err


def current_arn(stack: LocalStack, name: str) -> str:
    return str(stack.client().describe_secret(SecretId=name)["ARN"])


# -- the region --------------------------------------------------------------------------------


def test_not_found_names_the_region_and_account_searched(stack: LocalStack) -> None:
    # Given a secret in us-east-1
    seeded = seed(stack)
    # When status looks for it by name in another region
    result = cli(stack, "status", "--secret-id", seeded.name, "--region", "eu-west-1")
    # Then the error names the region and the account it searched
    assert result.code == 2
    assert_one_line(result.err, "status", seeded.name)
    assert "looked in region eu-west-1, account 123456789012" in result.err


@pytest.mark.parametrize("command", ["status", "rotate", "revocations clear"])
def test_an_arn_of_another_region_is_spotted(stack: LocalStack, command: str) -> None:
    # Given a us-east-1 secret ARN, and a session in us-west-2
    seeded = seed(stack)
    extra = ["--version-id", "v"] if command == "revocations clear" else []

    # When a command names it
    result = cli(stack, "--region", "us-west-2", *command.split(), "--secret-id", seeded.arn,
                 *extra)  # fmt: skip

    # Then both regions are named, with the fix
    assert result.code == 2
    assert_one_line(result.err, command, seeded.arn)
    assert "is in region us-east-1, but this command looks in region us-west-2" in result.err
    assert "pass --region us-east-1" in result.err


# -- unknown options ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["separate", "equals", "stray", "choice"])
def test_unknown_options_are_named_and_values_hidden(stack: LocalStack, form: str) -> None:
    # Given a key pasted where it does not belong
    key = KEY_PREFIX + uuid.uuid4().hex
    argv = {
        "separate": ["status", "--secret-id", "s", "--api-key", key],
        "equals": ["status", "--secret-id", "s", f"--api-key={key}"],
        "stray": ["status", "--secret-id", "s", key],
        "choice": ["status", "--secret-id", "s", "--output", key],
    }[form]

    # When the command is parsed
    result = cli(stack, *argv)

    # Then it is a usage error that names the option, never the value
    assert result.code == 2
    assert key not in result.text
    if form in ("separate", "equals"):
        assert "unrecognized arguments: --api-key (and 1 value(s), not shown" in result.err
    elif form == "stray":
        assert "unrecognized arguments: (none named) (and 1 value(s), not shown" in result.err
    else:
        assert "argument --output: invalid choice (not shown)" in result.err


# -- output format -----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["AWS_DEFAULT_OUTPUT", "profile", "text"])
def test_the_aws_output_setting_is_honoured(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str
) -> None:
    # Given a secret and an output format chosen the AWS CLI's way
    seeded = seed(stack)
    if source == "AWS_DEFAULT_OUTPUT":
        monkeypatch.setenv("AWS_DEFAULT_OUTPUT", "json")
    elif source == "profile":
        config = tmp_path / "config"
        config.write_text("[default]\noutput = json\n")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    else:
        monkeypatch.setenv("AWS_DEFAULT_OUTPUT", "text")

    # When status runs without --output
    result = cli(stack, "status", "--secret-id", seeded.arn)

    # Then json gives one JSON document; `text` gives the table
    assert result.code == 0, result.err
    if source == "text":
        assert result.out.startswith(f"Secret             {seeded.name}\n")
    else:
        assert json.loads(result.out)["secret"]["arn"] == seeded.arn


def test_json_output_gives_a_document_on_failure_too(stack: LocalStack) -> None:
    # When a secret that does not exist is asked for, as JSON
    missing = f"cekura/missing-{uuid.uuid4().hex[:6]}"
    result = cli(stack, "status", "--secret-id", missing, "--output", "json")
    # Then stdout still holds one JSON document, with the error and the exit code
    assert result.code == 2
    error = json.loads(result.out)["error"]
    assert (error["command"], error["secret"], error["exit_code"]) == ("status", missing, 2)
    assert "ResourceNotFoundException" in error["message"]


# -- doctor ------------------------------------------------------------------------------------


@pytest.fixture
def topic(stack: LocalStack) -> Iterator[str]:
    sns = boto3.client("sns", region_name=REGION, endpoint_url=stack.moto_url)
    arn = str(sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:6]}")["TopicArn"])
    yield arn
    sns.delete_topic(TopicArn=arn)


def subscribe(stack: LocalStack, topic_arn: str) -> None:
    sns = boto3.client("sns", region_name=REGION, endpoint_url=stack.moto_url)
    sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint="ops@example.com")


def checks(result: Result) -> dict[str, tuple[str, str | None]]:
    return {c["check"]: (c["status"], c["fix"]) for c in json.loads(result.out)["checks"]}


@pytest.mark.usefixtures("function_log")
def test_doctor_passes_a_healthy_setup(stack: LocalStack, topic: str) -> None:
    # Given a bootstrapped secret, the function's log readable, and a subscribed alert topic
    seeded = seed(stack)
    subscribe(stack, topic)

    # When doctor runs, as a table and as JSON
    table = cli(stack, "doctor", "--secret-id", seeded.arn, "--alert-topic-arn", topic)
    document = cli(stack, "doctor", "--secret-id", seeded.arn, "--alert-topic-arn", topic,
                   "--output", "json")  # fmt: skip

    # Then every check is ok, one line each
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * len(lines)
    assert re.search(
        rf"^ok +function +{FUNCTION_ARN}: the Cekura rotator \(handler", table.out, re.M
    )
    assert set(checks(document)) == {
        "function", "configuration", "log group", "secret format", "rotation", "cekura",
        "admin secret", "alert topic",
    }  # fmt: skip
    assert {status for status, _ in checks(document).values()} == {"ok"}
    assert_no_key_material(stack, table.text, document.text)


def test_doctor_names_each_failure_with_its_fix(
    stack: LocalStack, topic: str, allow_admin: Callable[[str], None]
) -> None:
    # Given a secret whose key was deleted, which names an admin secret the function does not
    # allow, no log group, and an alert topic nobody subscribed to
    seeded = seed(stack)
    arn, credential = admin_secret(stack, seeded.project)
    other, _ = admin_secret(stack, seeded.project)
    allow_admin(other)
    stack.client().put_secret_value(
        SecretId=seeded.arn,
        SecretString=secret_json(
            seeded.key.key, seeded.project, key_id=seeded.key.id, admin_secret_arn=arn
        ),
    )
    kill(stack, seeded)

    # When doctor runs
    result = cli(stack, "doctor", "--secret-id", seeded.arn, "--alert-topic-arn", topic,
                 "--output", "json")  # fmt: skip

    # Then it fails (exit 1), and each problem is its own line with the fix
    assert result.code == 1
    found = checks(result)
    assert found["function"][0] == "ok"
    assert found["log group"] == (
        "warn",
        "it appears with the first rotation; then run doctor again",
    )
    assert found["cekura"][0] == "fail"
    assert "AdminSecretArns" in (found["cekura"][1] or "")
    assert found["admin secret"] == ("fail", "deploy the stack with it in AdminSecretArns")
    assert found["alert topic"][0] == "fail"
    assert f"aws sns subscribe --topic-arn {topic}" in (found["alert topic"][1] or "")
    assert "check(s) failed (cekura, admin secret, alert topic)" in result.err
    assert_no_key_material(stack, result.text, extra=(credential,))


def test_doctor_finds_the_alert_topic_of_the_functions_stack(stack: LocalStack) -> None:
    # Given the function deployed by a CloudFormation stack whose AlertTopic has a subscriber
    cfn = boto3.client("cloudformation", region_name=REGION, endpoint_url=stack.moto_url)
    stack_name = f"rotator-{uuid.uuid4().hex[:6]}"
    template = {"Resources": {"AlertTopic": {"Type": "AWS::SNS::Topic"}}}
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(template))
    topic_arn = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId="AlertTopic")[
        "StackResourceDetail"
    ]["PhysicalResourceId"]
    subscribe(stack, topic_arn)
    lam = lambda_client(stack)
    lam.tag_resource(Resource=FUNCTION_ARN, Tags={"aws:cloudformation:stack-name": stack_name})
    try:
        # When doctor checks the function alone
        result = cli(stack, "doctor", "--function-arn", FUNCTION_ARN, "--output", "json")
    finally:
        lam.untag_resource(Resource=FUNCTION_ARN, TagKeys=["aws:cloudformation:stack-name"])

    # Then it found the stack's topic and its confirmed subscription
    assert result.code == 0, result.err
    (topic_check,) = [c for c in json.loads(result.out)["checks"] if c["check"] == "alert topic"]
    assert topic_check["status"] == "ok"
    assert topic_check["text"].startswith(f"{topic_arn}: 1 confirmed subscription(s) (email)")


def test_doctor_exits_3_when_cekura_cannot_be_asked(stack: LocalStack) -> None:
    # Given a healthy secret, and Cekura failing every request
    seeded = seed(stack)
    stack.fake.inject("validate", Fault(status=500, times=100))

    # When doctor runs (no alert topic known: a warning, not a failure)
    result = cli(stack, "doctor", "--secret-id", seeded.arn, "--output", "json")

    # Then the only failure is "could not be made": exit 3, with the fix
    assert result.code == 3
    found = checks(result)
    assert found["cekura"][0] == "fail"
    assert "check this machine's network" in (found["cekura"][1] or "")
    assert found["alert topic"][0] == "warn"
    assert {name for name, (status, _) in found.items() if status == "fail"} == {"cekura"}


def test_doctor_needs_a_secret_or_a_function(stack: LocalStack) -> None:
    result = cli(stack, "doctor")
    assert result.code == 2
    assert "name a secret (--secret-id) or a function (--function-arn)" in result.err


# -- rotate --cancel ---------------------------------------------------------------------------


@pytest.fixture
def short_timeout(stack: LocalStack) -> Iterator[int]:
    """The function deployed with a 1 s timeout (moto's default is 3 s)."""
    lam = lambda_client(stack)
    lam.update_function_configuration(FunctionName=FUNCTION_NAME, Timeout=1)
    yield 1
    lam.update_function_configuration(FunctionName=FUNCTION_NAME, Timeout=3)


def stuck(stack: LocalStack) -> tuple[Seeded, str, int]:
    """A rotation stuck after createSecret: testSecret refused, the new key in AWSPENDING."""
    stack.fake.mode = "permissive"
    seeded = seed(stack)
    stack.fake.inject("validate", Fault(status=403, times=20))
    failed = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "0.5", *FAST)
    stack.fake.clear_faults()
    assert failed.code == 1
    pending = version_with(stack.client(), seeded.arn, "AWSPENDING")
    assert pending is not None
    raw = stored_string(stack.client(), seeded.arn, pending)
    assert raw is not None
    return seeded, pending, int(json.loads(raw)["key_id"])


@pytest.mark.usefixtures("function_log")
def test_cancel_unsticks_a_rotation_and_records_its_key_as_owed(
    stack: LocalStack, short_timeout: int
) -> None:
    # Given a stuck rotation whose createSecret minted a key
    seeded, pending, minted_id = stuck(stack)
    minted_key = json.loads(stored_string(stack.client(), seeded.arn, pending) or "{}")["api_key"]

    # When it is cancelled at once, while a step logged less than the timeout ago
    early = cli(stack, "rotate", "--cancel", "--secret-id", seeded.arn)

    # Then it refuses: without proof that no step runs, nothing changes
    assert early.code == 1
    assert_one_line(early.err, "rotate", seeded.arn)
    assert "refused to cancel" in early.err
    assert "a step may still run" in early.err
    assert "nothing was changed" in early.err
    assert version_with(stack.client(), seeded.arn, "AWSPENDING") == pending

    # When it is cancelled once the log has been quiet for longer than the function's timeout
    time.sleep(short_timeout + 2.5)
    result = cli(stack, "rotate", "--cancel", "--secret-id", seeded.arn)

    # Then AWSPENDING is off the version, and the key minted there is recorded as owed, by id,
    # as minted for that very version
    assert result.code == 0, result.err
    labels = stages(stack.client(), seeded.arn)
    assert "AWSPENDING" not in labels[pending]
    (entry,) = [e for e in ledger.entries(labels) if e.version_id == pending]
    assert entry.state == ledger.State.OWED
    assert (entry.key_id, entry.project) == (minted_id, seeded.project)
    assert entry.key is not None
    assert entry.key.minted_here
    assert "A new rotation can start" in result.out

    # When a new rotation runs
    rotate(stack, seeded.arn)

    # Then it completes, and the owed key minted by the stuck one is revoked
    assert current_value(stack.client(), seeded.arn)["api_key"] != minted_key
    assert not stack.fake.is_live(minted_key)
    assert_no_key_material(stack, early.text, result.text)


def test_cancel_refuses_without_a_readable_log(stack: LocalStack, short_timeout: int) -> None:
    # Given a stuck rotation, long past the function's timeout, and no readable log
    seeded, _, _ = stuck(stack)
    time.sleep(short_timeout + 2.5)
    before = stages(stack.client(), seeded.arn)

    # When it is cancelled
    result = cli(stack, "rotate", "--cancel", "--secret-id", seeded.arn)

    # Then it refuses (exit 1), saying why and what to do, and changes nothing
    assert result.code == 1
    assert_one_line(result.err, "rotate", seeded.arn)
    assert f"the function's log {LOG_GROUP} could not be read from here" in result.err
    assert f"grant yourself logs:FilterLogEvents on {LOG_GROUP}" in result.err
    assert stages(stack.client(), seeded.arn) == before


def test_cancel_with_nothing_pending_changes_nothing(stack: LocalStack) -> None:
    seeded = seed(stack)
    before = stages(stack.client(), seeded.arn)
    result = cli(stack, "rotate", "--cancel", "--secret-id", seeded.arn)
    assert result.code == 0, result.err
    assert "Nothing to cancel" in result.out
    assert stages(stack.client(), seeded.arn) == before


def test_rotate_refused_for_a_pending_rotation_points_at_cancel(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a secret, and Secrets Manager's rule that moto lacks (aws-rules.md): RotateSecret is
    # refused while AWSPENDING is on a version other than AWSCURRENT's
    seeded = seed(stack)

    def refuse(*args: object, **kwargs: object) -> None:
        raise SecretsStoreError(
            "Secrets Manager RotateSecret failed: InvalidRequestException: A previous rotation "
            "isn't complete. That rotation will be reattempted.",
            code="InvalidRequestException",
            operation="RotateSecret",
        )

    monkeypatch.setattr(SecretsStore, "start_rotation", refuse)

    # When a rotation is asked for
    result = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait")

    # Then the refusal is the rotation's state (exit 1), with the way to follow or unstick it
    assert result.code == 1
    assert_one_line(result.err, "rotate", seeded.arn)
    assert "A previous rotation isn't complete" in result.err
    assert "nothing was started" in result.err
    assert f"status --secret-id {seeded.arn}" in result.err
    assert f"rotate --cancel --secret-id {seeded.arn}" in result.err
