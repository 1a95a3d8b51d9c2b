"""Bad input of every kind: a typed, clear error, and nothing changed at AWS or at Cekura.

Every case goes through `lambda_handler`, as Secrets Manager would invoke it, so the error is the
one an operator sees: a `RotatorError` subclass whose message names the secret and the step (when
the event carries them). Before and after, the secret's versions, labels, values and rotation
settings, and Cekura's live keys, are compared (invariant 6).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from cekura_rotator import handler
from cekura_rotator.errors import (
    CekuraProtocolError,
    ConfigError,
    EventError,
    OrphanKeyError,
    RotationStateError,
    RotatorError,
    SecretFormatError,
    SecretsStoreError,
)
from cekura_rotator.steps import Step
from infra.local.fake_cekura import Fault
from infra.local.lambda_bridge import ACCOUNT_ID, REGION, FakeLambdaContext, LambdaBridge
from infra.local.stack import enable_rotation, secret_json
from tests.conftest import LogCapture, World
from tests.reliability import invariants
from tests.reliability.conftest import Ledger
from tests.reliability.harness import Harness, Rig

Event = dict[str, Any]


def invoke(event: Any) -> RotatorError:
    """Run the handler on `event`; it must fail with a RotatorError, which is returned."""
    with pytest.raises(RotatorError) as caught:
        handler.lambda_handler(event, FakeLambdaContext())
    return caught.value


def assert_clear(error: RotatorError, event: Any, expected: type[RotatorError]) -> None:
    """The error is of the expected type and names the secret and the step the event gave."""
    assert isinstance(error, expected), f"{type(error).__name__}: {error}"
    text = str(error)
    if isinstance(event, dict):
        if isinstance(event.get("SecretId"), str) and event["SecretId"]:
            assert f"secret={event['SecretId'][:64]}" in text, text
        if isinstance(event.get("Step"), str) and event["Step"]:
            assert f"step={event['Step']}" in text, text
    assert error.message.strip(), "the error must say what is wrong"


def assert_nothing_changed(
    ledger: Ledger, h: Harness, before: tuple[Any, ...], error: RotatorError
) -> None:
    after = invariants.snapshot(h.sm, h.arn, h.fake)
    texts = [*h.rig.logs.lines, str(error), repr(error)]
    invariants.verify(
        ledger,
        lambda: invariants.unchanged(before, after),
        lambda: invariants.key_material(texts, h.fake.minted_secrets()),
    )


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadEvent:
    id: str
    build: Callable[[str, str, str], Any] = field(compare=False)  # (arn, token, previous)
    error: type[RotatorError]


def _event(**fields: Any) -> Callable[[str, str, str], Event]:
    """An event from a valid createSecret one, with `fields` replaced (a value of ... drops it)."""

    def build(arn: str, token: str, previous: str) -> Event:
        base: Event = {"Step": "createSecret", "SecretId": arn, "ClientRequestToken": token}
        for name, value in fields.items():
            if value is ...:
                base.pop(name)
            elif callable(value):
                base[name] = value(arn, token, previous)
            else:
                base[name] = value
        return base

    return build


UNKNOWN_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:no-such-secret-AbCdEf"
BAD_EVENTS = (
    BadEvent("missing-step", _event(Step=...), EventError),
    BadEvent("unknown-step", _event(Step="rotateSecret"), EventError),
    BadEvent("step-of-wrong-case", _event(Step="CreateSecret"), EventError),
    BadEvent("step-not-a-string", _event(Step=3), EventError),
    BadEvent("step-null", _event(Step=None), EventError),
    BadEvent("missing-token", _event(ClientRequestToken=...), EventError),
    BadEvent("token-not-a-string", _event(ClientRequestToken=12345678901234567890), EventError),
    BadEvent("token-too-short", _event(ClientRequestToken="abc"), EventError),
    BadEvent("token-too-long", _event(ClientRequestToken="t" * 65), EventError),
    BadEvent(
        "token-not-a-version",
        _event(ClientRequestToken=lambda *_: str(uuid.uuid4())),
        RotationStateError,
    ),
    BadEvent(
        "token-of-a-version-not-pending",
        _event(ClientRequestToken=lambda _arn, _token, previous: previous),
        RotationStateError,
    ),
    BadEvent("missing-secret-id", _event(SecretId=...), EventError),
    BadEvent("secret-id-not-a-string", _event(SecretId=lambda arn, *_: [arn]), EventError),
    BadEvent("secret-id-empty", _event(SecretId=""), EventError),
    BadEvent("secret-id-too-long", _event(SecretId="s" * 2049), EventError),
    BadEvent("unknown-secret", _event(SecretId=UNKNOWN_SECRET), SecretsStoreError),
    BadEvent("rotation-token-not-a-string", _event(RotationToken=42), EventError),
    BadEvent("event-not-an-object", lambda arn, token, _: [arn, token], EventError),
    BadEvent("event-null", lambda *_: None, EventError),
    BadEvent("event-a-string", lambda arn, *_: arn, EventError),
)


@pytest.mark.parametrize("case", BAD_EVENTS, ids=[c.id for c in BAD_EVENTS])
def test_bad_event(case: BadEvent, rig: Rig, ledger: Ledger) -> None:
    # Given a secret rotated once, with a rotation now in progress
    h = rig.harness(mode="permissive")
    h.rotate()
    token = h.start_rotation()
    old = next(v for v, stages in h.world.stages().items() if "AWSPREVIOUS" in stages)
    before = invariants.snapshot(h.sm, h.arn, h.fake)
    event = case.build(h.arn, token, old)
    # When the handler is invoked with the bad event
    error = invoke(event)
    ledger.bad_inputs += 1
    # Then a typed error names what is wrong, and nothing changed
    assert_clear(error, event, case.error)
    assert_nothing_changed(ledger, h, before, error)


def _other_function(world: World) -> str:
    """A second rotation function in moto, and the secret handed to it."""
    iam = boto3.client("iam", region_name=REGION)
    role = iam.get_role(RoleName="cekura-rotator-role")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "# never run\n")
    arn = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="someone-elses-rotator",
        Runtime="python3.13",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    with LambdaBridge(handler=lambda event, context: None).patched():
        enable_rotation(world.sm, world.arn, function_arn=arn)
        world.sm.rotate_secret(SecretId=world.arn, RotationLambdaARN=arn)
    return str(arn)


@pytest.mark.parametrize("situation", ["secret-of-another-function", "rotation-disabled"])
def test_secret_not_ours_to_rotate(situation: str, rig: Rig, ledger: Ledger) -> None:
    # Given a secret that another function rotates, or whose rotation was turned off
    h = rig.harness(mode="permissive")
    if situation == "secret-of-another-function":
        other = _other_function(h.world)
        assert h.sm.describe_secret(SecretId=h.arn)["RotationLambdaARN"] == other
        token = next(v for v, stages in h.world.stages().items() if "AWSPENDING" in stages)
    else:
        token = h.start_rotation()
        h.sm.cancel_rotate_secret(SecretId=h.arn)
    before = invariants.snapshot(h.sm, h.arn, h.fake)
    event = {"Step": "createSecret", "SecretId": h.arn, "ClientRequestToken": token}
    # When this function is invoked for it
    error = invoke(event)
    ledger.bad_inputs += 1
    # Then it refuses, saying why, and changes nothing
    assert_clear(error, event, RotationStateError)
    assert_nothing_changed(ledger, h, before, error)


# -- secret values ---------------------------------------------------------------------------

Value = Callable[[str, int, int], str | bytes]


def _doc(**fields: Any) -> Value:
    """A JSON secret: `api_key` and `project_id` unless overridden (... drops a field)."""

    def build(key: str, project: int, _key_id: int) -> str:
        document: dict[str, Any] = {"api_key": key, "project_id": project}
        for name, value in fields.items():
            if value is ...:
                document.pop(name, None)
            else:
                document[name] = value
        return json.dumps(document)

    return build


BAD_VALUES: tuple[tuple[str, Value], ...] = (
    ("binary", lambda *_: b"\x00\x01 not a string"),
    ("whitespace-only", lambda *_: "   \n\t "),
    ("broken-json", lambda *_: "{broken"),
    ("broken-json-array", lambda key, *_: f'["{key}"'),
    ("json-array", lambda key, project, _: json.dumps([key, project])),
    ("empty-json-object", lambda *_: "{}"),
    ("json-null-without-project", lambda *_: "null"),
    ("missing-api-key", _doc(api_key=...)),
    ("empty-api-key", _doc(api_key="")),
    ("api-key-a-number", _doc(api_key=12345678)),
    ("api-key-null", _doc(api_key=None)),
    ("api-key-an-object", _doc(api_key={"key": "x"})),
    ("api-key-non-ascii", lambda key, project, _: secret_json(f"ключ-{key}", project)),
    ("api-key-with-a-space", lambda key, project, _: secret_json(f"{key} x", project)),
    ("api-key-too-long", lambda key, project, _: secret_json(key + "k" * 600, project)),
    ("project-id-a-string", _doc(project_id="7")),
    ("project-id-negative", _doc(project_id=-1)),
    ("project-id-a-boolean", _doc(project_id=True)),
    ("project-id-a-float", _doc(project_id=1.5)),
    ("no-project-anywhere", _doc(project_id=...)),
    ("plain-string-without-project", lambda key, *_: key),
    ("key-id-a-string", _doc(key_id="12")),
    ("key-name-a-number", _doc(key_name=5)),
    ("created-at-a-list", _doc(created_at=[])),
    ("near-64KiB", _doc(notes="n" * 64_600)),
)


@pytest.mark.parametrize(("kind", "value"), BAD_VALUES, ids=[k for k, _ in BAD_VALUES])
def test_bad_secret_value(kind: str, value: Value, rig: Rig, ledger: Ledger) -> None:
    # Given a secret whose AWSCURRENT value is malformed, and a rotation started on it
    h = rig.harness(mode="permissive", value=value)
    token = h.start_rotation()
    before = invariants.snapshot(h.sm, h.arn, h.fake)
    event = {"Step": str(Step.CREATE), "SecretId": h.arn, "ClientRequestToken": token}
    # When createSecret runs
    error = invoke(event)
    ledger.bad_inputs += 1
    # Then it fails with a SecretFormatError saying what is wrong (never the value) ...
    assert_clear(error, event, SecretFormatError)
    assert not any(r.route == "create" for r in h.fake.requests), "nothing may be minted"
    # ... and nothing changed
    assert_nothing_changed(ledger, h, before, error)


# -- configuration -------------------------------------------------------------------------

BAD_CONFIG: tuple[tuple[str, dict[str, str]], ...] = (
    ("url-http-to-a-public-host", {"CEKURA_API_URL": "http://api.cekura.ai"}),
    ("url-ftp", {"CEKURA_API_URL": "ftp://api.cekura.ai"}),
    ("url-without-scheme", {"CEKURA_API_URL": "api.cekura.ai"}),
    ("url-with-credentials", {"CEKURA_API_URL": "https://user:pw@api.cekura.ai"}),
    ("url-with-a-query", {"CEKURA_API_URL": "https://api.cekura.ai/?next=evil.example"}),
    ("url-bad-port", {"CEKURA_API_URL": "https://api.cekura.ai:99999"}),
    ("unknown-policy", {"REVOCATION_POLICY": "sometimes"}),
    ("project-id-not-a-number", {"CEKURA_PROJECT_ID": "abc"}),
    ("project-id-zero", {"CEKURA_PROJECT_ID": "0"}),
    ("project-id-negative", {"CEKURA_PROJECT_ID": "-3"}),
    ("read-timeout-not-a-number", {"CEKURA_READ_TIMEOUT": "fast"}),
    ("read-timeout-zero", {"CEKURA_READ_TIMEOUT": "0"}),
    ("read-timeout-infinite", {"CEKURA_READ_TIMEOUT": "inf"}),
    ("connect-timeout-nan", {"CEKURA_CONNECT_TIMEOUT": "nan"}),
    ("validate-wait-too-long", {"CEKURA_VALIDATE_MAX_WAIT": "1e9"}),
    ("retry-after-cap-negative", {"CEKURA_RETRY_AFTER_CAP": "-1"}),
    ("key-name-prefix-with-a-space", {"CEKURA_KEY_NAME_PREFIX": "has space"}),
)


@pytest.mark.parametrize(("kind", "env"), BAD_CONFIG, ids=[k for k, _ in BAD_CONFIG])
def test_bad_configuration(
    kind: str,
    env: dict[str, str],
    world: World,
    logs: LogCapture,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a function configured with one bad variable, and a rotation in progress
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    handler.rotator.cache_clear()  # the real, environment-built rotator
    token = world.start_rotation()
    before = invariants.snapshot(world.sm, world.arn, world.fake)
    event = {"Step": str(Step.CREATE), "SecretId": world.arn, "ClientRequestToken": token}
    # When a step runs
    error = invoke(event)
    ledger.bad_inputs += 1
    # Then a ConfigError names the variable (and the secret and step), and nothing changed
    assert_clear(error, event, ConfigError)
    assert next(iter(env)) in error.message
    after = invariants.snapshot(world.sm, world.arn, world.fake)
    invariants.verify(ledger, lambda: invariants.unchanged(before, after))
    assert world.fake.requests == []
    handler.rotator.cache_clear()


# -- Cekura's answers --------------------------------------------------------------------------

BAD_ANSWERS: tuple[tuple[str, Fault, type[RotatorError]], ...] = (
    ("oversized-body", Fault(status=201, oversize=300_000), CekuraProtocolError),
    (
        "html-instead-of-json",
        Fault(status=201, content_type="text/html", body=b"<html>Created</html>"),
        CekuraProtocolError,
    ),
    (
        "json-as-text-plain",
        Fault(status=201, content_type="text/plain", body=b'{"id": 1, "key": "k"}'),
        CekuraProtocolError,
    ),
    ("json-array", Fault(status=201, body=b"[]"), CekuraProtocolError),
    ("id-not-an-integer", Fault(status=201, body=b'{"id": "7"}'), CekuraProtocolError),
    ("key-a-number", Fault(key_value=123), OrphanKeyError),
    ("key-null", Fault(key_value=None), OrphanKeyError),
    ("key-empty", Fault(key_value=""), OrphanKeyError),
    ("redirect", Fault(status=302), CekuraProtocolError),
)


@pytest.mark.parametrize(
    ("kind", "fault", "expected"), BAD_ANSWERS, ids=[k for k, _, _ in BAD_ANSWERS]
)
def test_bad_cekura_answer(
    kind: str, fault: Fault, expected: type[RotatorError], rig: Rig, ledger: Ledger
) -> None:
    # Given a rotation in progress, where Cekura lets API keys delete keys
    h = rig.harness(mode="permissive")
    token = h.start_rotation()
    before = invariants.snapshot(h.sm, h.arn, h.fake)
    # When Cekura answers key creation with something that breaks its contract
    h.inject("create", fault)
    event = {"Step": str(Step.CREATE), "SecretId": h.arn, "ClientRequestToken": token}
    error = invoke(event)
    ledger.bad_inputs += 1
    # Then a typed error says so, and nothing is left changed: a key Cekura did create is
    # deleted at once (its id was in the answer)
    assert_clear(error, event, expected)
    assert_nothing_changed(ledger, h, before, error)


def test_oversized_validation_answer(rig: Rig, ledger: Ledger) -> None:
    # Given a pending key stored by createSecret and setSecret
    h = rig.harness(mode="permissive")
    token = h.start_rotation()
    for step in (Step.CREATE, Step.SET):
        assert h.step(step, token) is None
    before = invariants.snapshot(h.sm, h.arn, h.fake)
    # When Cekura's answer to validation is larger than the cap
    h.inject("validate", Fault(oversize=300_000))
    event = {"Step": str(Step.TEST), "SecretId": h.arn, "ClientRequestToken": token}
    error = invoke(event)
    ledger.bad_inputs += 1
    # Then testSecret fails with a protocol error, and nothing changed
    assert_clear(error, event, CekuraProtocolError)
    assert_nothing_changed(ledger, h, before, error)


def test_enough_kinds() -> None:
    # Given every bad-input table  # Then together they hold at least 30 kinds (the bar)
    kinds = len(BAD_EVENTS) + 2 + len(BAD_VALUES) + len(BAD_CONFIG) + len(BAD_ANSWERS) + 1
    assert kinds >= 30
