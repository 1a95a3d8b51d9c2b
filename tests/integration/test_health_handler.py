"""The health check's Lambda entry point: events, bad input, the cursor in SSM, the metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from cekura_rotator.errors import ConfigError, EventError
from cekura_rotator.health import handler as health
from infra.local.lambda_bridge import FUNCTION_ARN, REGION, SCHEDULED_EVENT, FakeLambdaContext
from tests.conftest import LogCapture
from tests.integration.health_fleet import Fleet, ReadClock, bulk

CURSOR = "/cekura-rotator/health-cursor"
METRICS = (
    "CurrentKeyRejected",
    "RotationsStuck",
    "RotationsOverdue",
    "FleetRevocationsOwed",
    "FleetRevocationsManual",
    "HealthSecretsChecked",
    "HealthUnfinished",
    "HealsStarted",
    "HealSuppressed",
)


@pytest.fixture(autouse=True)
def deployed(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The health function configured for the fleet as the template would."""
    for name, value in {
        "CEKURA_API_URL": fleet.fake.url,
        "ROTATION_FUNCTION_ARN": FUNCTION_ARN,
        "HEALTH_CURSOR_PARAMETER": CURSOR,
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("ssm", region_name=REGION).put_parameter(Name=CURSOR, Value="-", Type="String")
    built = health.health_check  # a test may replace it
    built.cache_clear()
    health._ssm.cache_clear()
    yield
    built.cache_clear()
    health._ssm.cache_clear()


def invoke(event: Any, timeout: float = 300.0) -> dict[str, Any]:
    summary: dict[str, Any] = health.lambda_handler(
        event, FakeLambdaContext(timeout_seconds=timeout)
    )
    return summary


def cursor() -> str:
    value = boto3.client("ssm", region_name=REGION).get_parameter(Name=CURSOR)
    return str(value["Parameter"]["Value"])


def emf(out: str) -> dict[str, float]:
    """The metrics of the EMF documents Powertools printed."""
    values: dict[str, float] = {}
    for line in out.splitlines():
        if '"_aws"' in line:
            document = json.loads(line)
            for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = document[metric["Name"]]
                values[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return values


def test_scheduled_event_returns_the_summary_and_flushes_every_metric(
    fleet: Fleet, logs: LogCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two secrets, one with a dead key (no admin credential)
    healthy, dead = fleet.add(2)
    fleet.kill(dead)
    capsys.readouterr()
    # When the scheduled event arrives
    summary = invoke(SCHEDULED_EVENT)
    # Then the answer is the summary, exactly
    assert summary == {
        "checked": 2,
        "rejected": 1,
        "stuck": [],
        "overdue": [],
        "owed_settled": 0,
        "manual_cleared": 0,
        "healed": [],
        "unfinished": [],
    }
    # ... every metric was flushed, zeros included, without a dimension of its own
    out = capsys.readouterr().out
    metrics = emf(out)
    assert set(METRICS) <= set(metrics)
    assert metrics["CurrentKeyRejected"] == 1
    assert metrics["HealthSecretsChecked"] == 2
    assert metrics["HealsStarted"] == 0
    documents = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]] for d in documents)
    # ... the log has the summary, never the raw event, never a key
    (done,) = [json.loads(line) for line in logs.lines if "Health check complete" in line]
    assert (done["checked"], done["rejected"]) == (2, 1)
    assert SCHEDULED_EVENT["id"] not in logs.text
    assert healthy.bootstrap_key not in logs.text + out
    # ... and a run that finished leaves the cursor at the beginning
    assert cursor() == "-"


def test_secret_ids_event_checks_those_only(fleet: Fleet) -> None:
    _one, two = fleet.add(2)
    summary = invoke({"secret_ids": [two.arn]})
    assert summary["checked"] == 1
    assert summary["unfinished"] == []


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([FUNCTION_ARN], "must be a JSON object"),
        ({"secret_ids": []}, "non-empty list"),
        ({"secret_ids": "arn:aws:secretsmanager:x"}, "non-empty list"),
        ({"secret_ids": [42]}, "not a secret ARN or name"),
        ({"secret_ids": [""]}, "not a secret ARN or name"),
        (
            {"Step": "createSecret", "SecretId": "s", "ClientRequestToken": "t" * 36},
            "belongs to the rotation function",
        ),
    ],
)
def test_malformed_event_is_a_typed_error_and_checks_nothing(
    fleet: Fleet, event: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.add(1)
    fleet.fake.reset_requests()
    fleet.aws_calls.clear()
    capsys.readouterr()
    with pytest.raises(EventError, match=message):
        invoke(event)
    assert fleet.fake.requests == []
    assert fleet.aws_calls == {}
    # And the failed run is counted, so a health check that keeps failing is seen
    assert emf(capsys.readouterr().out).get("HealthCheckFailed") == 1


def test_secret_ids_not_this_rotators_are_a_typed_error_naming_the_secret(
    fleet: Fleet, logs: LogCapture
) -> None:
    # Given a secret of this rotator and one without rotation
    (mine,) = fleet.add(1)
    plain = fleet.sm.create_secret(Name="plain", SecretString="x")["ARN"]
    before = fleet.state()
    fleet.fake.reset_requests()
    # When the event names both
    with pytest.raises(EventError) as raised:
        invoke({"secret_ids": [mine.arn, plain]})
    # Then the error names the foreign one, and nothing was checked or changed
    assert raised.value.secret_id == plain
    assert plain in str(raised.value)
    assert mine.arn not in raised.value.message
    assert fleet.fake.requests == []
    assert fleet.state() == before
    assert any('"Health check failed"' in line for line in logs.lines)


def test_bad_configuration_is_a_config_error(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet.add(1)
    monkeypatch.setenv("STUCK_ROTATION_HOURS", "soon")
    with pytest.raises(ConfigError, match="STUCK_ROTATION_HOURS"):
        invoke(SCHEDULED_EVENT)


def test_a_run_out_of_time_writes_the_cursor_and_the_next_starts_there(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given eight secrets, and a clock that moves 10 s at every read of a current key
    fleet.add(1)
    arns = sorted([*bulk(fleet, 7), fleet.worlds[0].arn])
    clock = ReadClock(fleet.sm)
    check = fleet.check(clock=clock, cursor_parameter=CURSOR)
    monkeypatch.setattr(health, "health_check", lambda: check)
    # When a scheduled run has 68 s (60 s once the handler's reserve is kept back)
    first = invoke(SCHEDULED_EVENT, timeout=68)
    # Then it stopped cleanly, wrote where the next run starts, and counted what it left
    assert first["unfinished"]
    assert first["checked"] + len(first["unfinished"]) == len(arns)
    assert first["unfinished"] == arns[first["checked"] :]
    assert cursor() == arns[first["checked"] - 1]
    # When the next run has plenty of time
    clock.stop()
    second = invoke(SCHEDULED_EVENT)
    # Then it checked everything and the cursor is back at the beginning
    assert second["checked"] == len(arns)
    assert cursor() == "-"


def test_an_unreadable_cursor_starts_at_the_beginning(fleet: Fleet, logs: LogCapture) -> None:
    fleet.add(2)
    boto3.client("ssm", region_name=REGION).delete_parameter(Name=CURSOR)
    summary = invoke(SCHEDULED_EVENT)
    assert summary["checked"] == 2
    assert any("cursor cannot be read" in line for line in logs.lines)
