"""The handler: event parsing, error binding, metrics, and that nothing secret is logged."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cekura_rotator import handler
from cekura_rotator.errors import EventError, RotationStateError, RotatorError, SecretsStoreError
from cekura_rotator.observability import Redactor, logger, redactor
from infra.local.lambda_bridge import FakeLambdaContext
from tests.conftest import LogCapture, World

ROTATION_TOKEN = "rotation-token-" + "z" * 30
REPO_ROOT = Path(__file__).resolve().parents[2]


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


def test_a_runtime_sdk_without_rotation_token_fails_the_first_step_clearly(
    env: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a runtime botocore whose PutSecretValue predates RotationToken (before 1.34.125):
    # its service model, without the member, found first on botocore's data path
    import boto3
    import botocore.loaders

    model = botocore.loaders.Loader().load_service_model("secretsmanager", "service-2")
    del model["shapes"]["PutSecretValueRequest"]["members"]["RotationToken"]
    folder = tmp_path / "secretsmanager" / model["metadata"]["apiVersion"]
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a fresh session reads the data path
    handler.rotator.cache_clear()
    token = env.start_rotation()
    before = env.snapshot()
    # When the first step runs, Then it fails naming the step, the secret, the fix; nothing changed
    with pytest.raises(RotatorError, match="RotationToken") as caught:
        handler.lambda_handler(_event(env, "createSecret", token), FakeLambdaContext())
    assert f"step=createSecret secret={env.arn}" in str(caught.value)
    assert "requirements-aws.txt" in str(caught.value)
    assert env.snapshot() == before
    handler.rotator.cache_clear()


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


# -- runtime settings ----------------------------------------------------------------------------

_EMIT = """
from cekura_rotator.observability import count, metrics
count("StepSucceeded")
metrics.add_dimension(name="Step", value="createSecret")
metrics.flush_metrics()
"""


def _emitted(env: dict[str, str]) -> dict[str, object]:
    """The EMF document a fresh interpreter prints after importing observability under `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    result = subprocess.run(
        [sys.executable, "-c", _EMIT],
        env={**clean, "PYTHONPATH": str(REPO_ROOT / "lambda"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    document = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize(
    ("env", "namespace", "service"),
    [
        (
            {"POWERTOOLS_METRICS_NAMESPACE": "TeamRotation", "POWERTOOLS_SERVICE_NAME": "keys"},
            "TeamRotation",
            "keys",
        ),
        ({}, "CekuraRotator", "cekura-rotator"),
    ],
    ids=["from the environment", "code fall-backs"],
)
def test_powertools_names_come_from_the_environment_with_the_code_as_fallback(
    env: dict[str, str], namespace: str, service: str
) -> None:
    # Given the function's environment with or without the Powertools variables
    # When a fresh interpreter imports the rotator and emits a metric
    document = _emitted(env)
    # Then the metric carries the environment's namespace and service, else the code's
    aws = document["_aws"]
    assert isinstance(aws, dict)
    (directive,) = aws["CloudWatchMetrics"]
    assert directive["Namespace"] == namespace
    assert document["service"] == service
    assert sorted(directive["Dimensions"][0]) == ["Step", "service"]


class _Silent(threading.Thread):
    """A TCP endpoint that accepts connections and never answers: a hung Secrets Manager."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self.held.append(connection)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        for connection in self.held:
            connection.close()
        self.server.close()


def test_secrets_manager_client_has_timeouts_and_a_retry_budget_that_fit_a_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the configured client settings, which must fit one 60 s step for a hung call
    config: Any = handler.secretsmanager_config()  # botocore's stubs do not type its options
    assert config.retries == {"mode": "standard", "total_max_attempts": handler.SM_MAX_ATTEMPTS}
    assert (config.connect_timeout, config.read_timeout) == (
        handler.SM_CONNECT_TIMEOUT,
        handler.SM_READ_TIMEOUT,
    )
    worst = handler.SM_MAX_ATTEMPTS * (handler.SM_CONNECT_TIMEOUT + handler.SM_READ_TIMEOUT)
    assert worst + 3 < 60  # plus standard mode's jittered backoff (< 1 s, then < 2 s)

    # Given a Secrets Manager that accepts connections and never answers (the read timeout
    # shortened, so that the test need not wait it out)
    silent = _Silent()
    silent.start()
    monkeypatch.setattr(handler, "SM_READ_TIMEOUT", 0.3)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", silent.url)
    handler.rotator.cache_clear()
    event = {"Step": "createSecret", "SecretId": "cekura/hung", "ClientRequestToken": "t" * 36}
    started = time.monotonic()
    try:
        # When the handler runs a step
        with pytest.raises(SecretsStoreError, match="ReadTimeoutError") as caught:
            handler.lambda_handler(event, FakeLambdaContext())
    finally:
        silent.stop()
        handler.rotator.cache_clear()
    # Then the call was tried exactly three times, each cut off by the read timeout, and the step
    # failed with a typed error long before its deadline
    assert silent.accepted == 3
    assert time.monotonic() - started < 10
    assert "step=createSecret secret=cekura/hung" in str(caught.value)
