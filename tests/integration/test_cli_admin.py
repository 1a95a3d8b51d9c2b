"""The CLI's admin-credential parts: bootstrap minting the first key with an admin secret, status
showing the admin secret a secret uses, and rotate --wait on a secret whose key is dead.

Against moto server and the fake Cekura over HTTP; the rotations run the real steps, which mint
with the admin credential when the function's environment names one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pytest

from cekura_rotator.cekura import Credential
from cekura_rotator.secret_value import fingerprint
from infra.local.stack import AdminKind, LocalStack, delete_in_dashboard
from tests.integration.cli_harness import (
    FAST,
    admin_secret,
    assert_no_key_material,
    assert_one_line,
    bootstrap_argv,
    cli,
    current_value,
    kill,
    seed,
    set_function_environment,
    version_with,
)

# -- bootstrap ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["api_key", "bearer_token"])
def test_bootstrap_mints_the_first_key_with_the_admin_credential(
    stack: LocalStack, allow_admin: Callable[[str], None], kind: AdminKind
) -> None:
    # Given a project and an admin secret the function may use; no key is pasted
    project = stack.fake.create_project(f"boot-admin-{kind}", organization="Acme")
    arn, credential = admin_secret(stack, project, kind)
    allow_admin(arn)
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    before = {k.id for k in stack.fake.all_keys()}

    # When bootstrap runs with --admin-secret-arn
    result = cli(stack, *bootstrap_argv(name, project, admin_secret_arn=arn))

    # Then one key was minted for the project, stored with its id, name, creation time and the
    # admin secret's ARN, and rotation attached (the function's testSecret passed with it)
    assert result.code == 0, result.err
    value = current_value(stack.client(), name)
    minted = [k for k in stack.fake.all_keys() if k.id not in before]
    assert [(k.id, k.project, k.deleted) for k in minted] == [(value["key_id"], project, False)]
    assert value["project_id"] == project
    assert value["admin_secret_arn"] == arn
    assert value["key_name"] == minted[0].name == f"rotator-{name}-bootstrap"
    assert value["created_at"]
    assert stack.fake.is_live(value["api_key"])
    assert [(i.step, i.error) for i in stack.bridge.invocations[-1:]] == [("testSecret", None)]
    assert f"with admin secret {arn}" in result.out
    assert Credential.api_key(credential).fingerprint in result.out
    assert result.err == ""
    assert_no_key_material(stack, result.text, extra=(credential,))


def test_bootstrap_refuses_a_project_outside_the_admin_secrets_projects(
    stack: LocalStack, allow_admin: Callable[[str], None]
) -> None:
    # Given an admin secret the function allows, limited to another project
    project = stack.fake.create_project("boot-outside", organization="Acme")
    other = stack.fake.create_project("boot-other", organization="Acme")
    arn, credential = admin_secret(stack, project, "bearer_token", projects=[other])
    allow_admin(arn)
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    stack.fake.reset_requests()

    # When bootstrap is asked to mint for the project
    result = cli(stack, *bootstrap_argv(name, project, admin_secret_arn=arn))

    # Then it refuses before calling Cekura, and nothing exists
    assert result.code == 2
    assert_one_line(result.err, "bootstrap", name)
    assert f"may not mint keys for project {project}" in result.err
    assert "nothing was created" in result.err
    assert stack.fake.requests == []
    assert name not in [s["Name"] for s in stack.client().list_secrets()["SecretList"]]
    assert_no_key_material(stack, result.text, extra=(credential,))


@pytest.mark.parametrize(
    ("value", "field"),
    [("not json", "not a JSON object"), ('{"token": "x"}', "exactly one of")],
    ids=["not JSON", "no credential field"],
)
def test_bootstrap_with_a_bad_admin_secret_creates_nothing(
    stack: LocalStack, allow_admin: Callable[[str], None], value: str, field: str
) -> None:
    # Given an admin secret the function allows, but that is not in the admin format
    project = stack.fake.create_project("boot-bad-admin", organization="Acme")
    arn = stack.client().create_secret(
        Name=f"cekura/bad-{uuid.uuid4().hex[:6]}", SecretString=value
    )["ARN"]
    allow_admin(arn)
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    stack.fake.reset_requests()

    # When bootstrap names it
    result = cli(stack, *bootstrap_argv(name, project, admin_secret_arn=arn))

    # Then a usage error names the admin secret and what is wrong, and nothing was created
    assert result.code == 2
    assert_one_line(result.err, "bootstrap", name)
    assert f"admin secret {arn}" in result.err
    assert field in result.err
    assert stack.fake.requests == []
    assert name not in [s["Name"] for s in stack.client().list_secrets()["SecretList"]]


def test_bootstrap_refuses_a_pasted_key_together_with_an_admin_secret(stack: LocalStack) -> None:
    # Given a pasted key and an admin secret
    project = stack.fake.create_project("boot-both", organization="Acme")
    arn, _ = admin_secret(stack, project, "bearer_token")
    key = stack.fake.issue_key(project).key
    name = f"cekura/{uuid.uuid4().hex[:8]}"

    # When both are given
    result = cli(stack, *bootstrap_argv(name, project, admin_secret_arn=arn), stdin=key)

    # Then it is a usage error, the key is not echoed, nothing is created
    assert result.code == 2
    assert "give one" in result.err
    assert key not in result.text
    assert name not in [s["Name"] for s in stack.client().list_secrets()["SecretList"]]


# -- status ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["api_key", "bearer_token"])
def test_status_shows_the_admin_secret_its_fingerprint_and_cekuras_verdict(
    stack: LocalStack, allow_admin: Callable[[str], None], kind: AdminKind
) -> None:
    # Given a secret that names an admin secret the function allows
    project = stack.fake.create_project(f"status-admin-{kind}", organization="Acme")
    arn, credential = admin_secret(stack, project, kind)
    allow_admin(arn)
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    assert cli(stack, *bootstrap_argv(name, project, admin_secret_arn=arn)).code == 0

    # When status runs
    text = cli(stack, "status", "--secret-id", name)
    document = cli(stack, "status", "--secret-id", name, "--output", "json")

    # Then it names the admin secret, shows the credential's fingerprint, and Cekura accepts it
    assert text.code == 0, text.err
    assert f"Admin secret       {arn} (named by the secret (admin_secret_arn))" in text.out
    shown_kind = "api_key" if kind == "api_key" else "bearer"
    assert f"credential       {shown_kind} {fingerprint(credential)}" in text.out
    assert "Cekura           accepted" in text.out
    shown = json.loads(document.out)["admin_secret"]
    assert shown == {
        "arn": arn,
        "source": "secret",
        "kind": shown_kind,
        "fingerprint": fingerprint(credential),
        "allowed_by_function": True,
        "accepted": True,
        "verdict": shown["verdict"],
    }
    assert shown["verdict"].startswith("accepted")
    assert_no_key_material(stack, text.text, document.text, extra=(credential,))


def test_status_shows_the_functions_default_admin_secret_and_a_rejected_credential(
    stack: LocalStack, allow_admin: Callable[[str], None]
) -> None:
    # Given a secret that names no admin secret, a function whose default is an admin API key,
    # and that admin key deleted at Cekura
    seeded = seed(stack)
    arn, credential = admin_secret(stack, seeded.project, "api_key")
    allow_admin(arn)
    admin_id = stack.fake.key_id(credential)
    assert admin_id is not None
    session = delete_in_dashboard(stack.fake, admin_id, project_id=seeded.project)

    # When status runs
    result = cli(stack, "status", "--secret-id", seeded.arn)

    # Then the admin secret is the function's default, and Cekura rejects its credential
    assert result.code == 0, result.err
    assert f"Admin secret       {arn} (the function's default (CEKURA_ADMIN_SECRET_ARN))" in (
        result.out
    )
    assert "Cekura           rejected: " in result.out
    assert "HTTP 401" in result.out
    assert_no_key_material(stack, result.text, extra=(credential, session))


# -- rotate --wait on a dead key ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["api_key", "bearer_token"])
def test_rotate_wait_recovers_a_dead_key_with_an_admin_credential(
    stack: LocalStack, allow_admin: Callable[[str], None], kind: AdminKind
) -> None:
    # Given a secret whose current key was deleted at Cekura, and an admin credential configured
    seeded = seed(stack)
    arn, credential = admin_secret(stack, seeded.project, kind)
    allow_admin(arn)
    kill(stack, seeded)
    before = version_with(stack.client(), seeded.arn, "AWSCURRENT")

    # When it is rotated with --wait
    result = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "30", *FAST)

    # Then the rotation completed: AWSCURRENT holds a new, live key of the project
    assert result.code == 0, result.err
    after = version_with(stack.client(), seeded.arn, "AWSCURRENT")
    assert after not in (None, before)
    value = current_value(stack.client(), seeded.arn)
    assert stack.fake.is_live(value["api_key"])
    assert value["project_id"] == seeded.project
    assert "Rotation complete." in result.out
    assert_no_key_material(stack, result.text, extra=(credential,))


def test_rotate_wait_on_a_dead_key_without_admin_says_how_to_recover(stack: LocalStack) -> None:
    # Given a secret whose current key was deleted at Cekura, and no admin credential anywhere
    seeded = seed(stack)
    kill(stack, seeded)
    set_function_environment(stack, {"CEKURA_API_URL": stack.fake.url})
    started = time.monotonic()

    # When it is rotated with --wait and a long timeout
    result = cli(stack, "rotate", "--secret-id", seeded.arn, "--wait", "--timeout", "60", *FAST)

    # Then it fails without waiting out the timeout, naming the dead key and the ways out
    assert result.code == 1
    assert time.monotonic() - started < 20
    assert_one_line(result.err, "rotate", seeded.arn)
    assert f"Cekura no longer accepts the current key (key {seeded.key.id} 'bootstrap'" in (
        result.err
    )
    assert "no admin credential is configured" in result.err
    assert "AdminSecretArns=" in result.err
    assert f"bootstrap --update --secret-name {seeded.name}" in result.err
    assert "--admin-secret-arn ARN" in result.err
    assert_no_key_material(stack, result.text)
