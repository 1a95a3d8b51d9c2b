"""The handler: event parsing, error binding, metrics, and that nothing secret is logged."""

from __future__ import annotations

import json
import logging

import pytest

from cekura_rotator import handler
from cekura_rotator.errors import EventError, RotationStateError, RotatorError
from cekura_rotator.observability import Redactor, logger, redactor
from infra.local.lambda_bridge import FakeLambdaContext
from tests.conftest import LogCapture, World

ROTATION_TOKEN = "rotation-token-" + "z" * 30


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("CEKURA_API_URL", world.fake.url)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CekuraRotator")
    handler.rotator.cache_clear()
    return world


def _event(world: World, step: str, token: str) -> dict[str, str]:
    return {
        "Step": step,
        "SecretId": world.arn,
        "ClientRequestToken": token,
        "RotationToken": ROTATION_TOKEN,
    }


def test_four_events_rotate_the_secret_and_log_no_secret(
    env: World, logs: LogCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a rotation started by Secrets Manager
    token = env.start_rotation()
    # When the handler receives the four events
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        assert handler.lambda_handler(_event(env, step, token), FakeLambdaContext()) is None
    # Then the secret rotated
    assert "AWSCURRENT" in env.stages()[token]
    # And no key, no RotationToken appears in any log line or metric output
    emitted = logs.text + capsys.readouterr().out
    assert '"token": "' + token in logs.text
    for secret in [*env.fake.minted_secrets(), ROTATION_TOKEN]:
        assert secret not in emitted
    # And the step metrics were emitted as EMF
    assert '"StepSucceeded"' in emitted


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("not a dict", "must be a JSON object"),
        ({"Step": "createSecret", "ClientRequestToken": "t" * 36}, "SecretId"),
        ({"SecretId": "s", "Step": "rotate", "ClientRequestToken": "t" * 36}, "Step must be"),
        ({"SecretId": "s", "Step": "setSecret"}, "ClientRequestToken"),
        ({"SecretId": "s", "Step": "setSecret", "ClientRequestToken": "short"}, "32 to 64"),
        (
            {
                "SecretId": "s",
                "Step": "setSecret",
                "ClientRequestToken": "t" * 36,
                "RotationToken": 5,
            },
            "RotationToken must be a string",
        ),
    ],
)
def test_malformed_events_raise_event_error(
    env: World, event: object, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = env.snapshot()
    with pytest.raises(EventError, match=message):
        handler.lambda_handler(event, FakeLambdaContext())
    assert env.snapshot() == before
    assert '"StepFailed"' in capsys.readouterr().out


def test_errors_name_the_secret_and_the_step(env: World) -> None:
    with pytest.raises(RotationStateError) as caught:
        handler.lambda_handler(_event(env, "setSecret", "0" * 36), FakeLambdaContext())
    assert f"step=setSecret secret={env.arn}" in str(caught.value)


def test_bad_configuration_fails_the_first_step_clearly(
    env: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEKURA_API_URL", "http://api.cekura.ai")
    handler.rotator.cache_clear()
    with pytest.raises(RotatorError, match="must use https"):
        handler.lambda_handler(
            _event(env, "createSecret", env.start_rotation()), FakeLambdaContext()
        )


def test_redaction_masks_watched_values_and_secret_fields_in_tracebacks(logs: LogCapture) -> None:
    # Given a key the rotator has seen
    leaked = "ck_live_" + "q" * 40
    redactor.watch(leaked)
    # When code logs it in a message, a field, a secret-named field and a traceback
    try:
        raise ValueError(f"boom {leaked}")
    except ValueError:
        logger.exception("failed with %s", leaked, detail=leaked, api_key="other-secret-value")
    # Then none of it reaches the output
    assert leaked not in logs.text
    assert "other-secret-value" not in logs.text
    record = json.loads(logs.lines[-1])
    assert record["api_key"] == "***"
    assert "boom ***" in record["exception"]


def test_redactor_ignores_short_values_and_masks_json_escaped_forms() -> None:
    r = Redactor()
    r.watch("abc", 'ck"quoted"secret')
    assert r.scrub("abc") == "abc"
    assert "quoted" not in r.serialize({"m": 'ck"quoted"secret'})


def test_handler_never_turns_on_debug_logging(env: World, logs: LogCapture) -> None:
    # When a step runs through the handler
    handler.lambda_handler(_event(env, "createSecret", env.start_rotation()), FakeLambdaContext())
    # Then neither the root nor botocore's logger was turned to DEBUG, and no DEBUG line was written
    assert logging.getLogger().getEffectiveLevel() > logging.DEBUG
    assert logging.getLogger("botocore").getEffectiveLevel() > logging.DEBUG
    assert all(json.loads(line)["level"] != "DEBUG" for line in logs.lines)
