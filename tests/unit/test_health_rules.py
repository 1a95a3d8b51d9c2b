"""The health check's pure decisions and settings, by table: no AWS, no Cekura."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cekura_rotator.errors import ConfigError, EventError
from cekura_rotator.health import HealthReport, HealthSettings, SecretHealth
from cekura_rotator.health.event import HealthRequest
from cekura_rotator.health.rules import (
    heals_suppressed,
    in_cursor_order,
    is_stuck,
    next_cursor,
    overdue,
    pending_version,
    rotated_by,
    rotation_interval,
)
from cekura_rotator.secrets_store import SecretDescription, SecretDetails

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:cekura-rotator"


def secret(arn: str = "arn:s", **fields: Any) -> SecretDetails:
    """A secret as ListSecrets shows it; `rotate_after_days` and `schedule_expression` go to its
    RotationRules, the rest to its description."""
    rules: dict[str, Any] = {}
    if "rotate_after_days" in fields:
        rules["AutomaticallyAfterDays"] = fields.pop("rotate_after_days")
    if "schedule_expression" in fields:
        rules["ScheduleExpression"] = fields.pop("schedule_expression")
    values: dict[str, Any] = {
        "arn": arn,
        "name": arn.rsplit(":", 1)[-1],
        "rotation_enabled": True,
        "rotation_lambda_arn": FUNCTION,
        "versions": {"v1": ("AWSCURRENT",)},
        **fields,
    }
    return SecretDetails(SecretDescription(**values), rules)


@pytest.mark.parametrize(
    ("configured", "mine"),
    [
        (FUNCTION, True),
        (FUNCTION + ":live", True),
        (FUNCTION + ":7", True),
        (FUNCTION.replace("cekura-rotator", "cekura-rotator-2"), False),
        (FUNCTION.replace("123456789012", "210987654321"), False),
        (None, False),
    ],
)
def test_rotated_by_compares_without_qualifier(configured: str | None, mine: bool) -> None:
    assert rotated_by(secret(rotation_lambda_arn=configured).secret, FUNCTION + ":live") is mine


@pytest.mark.parametrize(
    ("versions", "pending"),
    [
        ({"a": ("AWSCURRENT",)}, None),
        ({"a": ("AWSCURRENT", "AWSPENDING")}, None),
        ({"a": ("AWSCURRENT",), "b": ("AWSPENDING",)}, "b"),
        ({"a": ("AWSCURRENT",), "b": ("AWSPENDING", "CEKURA_UNTESTED")}, "b"),
        ({"a": ("AWSCURRENT",), "b": ("AWSPREVIOUS",)}, None),
    ],
)
def test_pending_version(versions: dict[str, tuple[str, ...]], pending: str | None) -> None:
    assert pending_version(versions) == pending


@pytest.mark.parametrize(
    ("age_hours", "limit", "stuck"),
    [(3.9, 4, False), (4.1, 4, True), (0.6, 0.5, True), (None, 4, False)],
)
def test_is_stuck(age_hours: float | None, limit: float, stuck: bool) -> None:
    created = NOW - timedelta(hours=age_hours) if age_hours is not None else None
    assert is_stuck(created, NOW, limit) is stuck


@pytest.mark.parametrize(
    ("fields", "interval"),
    [
        ({"rotate_after_days": 30}, timedelta(days=30)),
        ({"schedule_expression": "rate(10 days)"}, timedelta(days=10)),
        ({"schedule_expression": "rate(1 day)"}, timedelta(days=1)),
        ({"schedule_expression": "rate(12 hours)"}, timedelta(hours=12)),
        ({"schedule_expression": "cron(0 16 1,15 * ? *)"}, "no fixed interval"),
        ({}, "no rotation schedule"),
    ],
)
def test_rotation_interval(fields: dict[str, Any], interval: timedelta | str) -> None:
    found = rotation_interval(secret(**fields).rotation_rules)
    if isinstance(interval, str):
        assert isinstance(found, str)
        assert interval in found
    else:
        assert found == interval


@pytest.mark.parametrize(
    ("fields", "late", "note"),
    [
        # AWS reports the next rotation: more than a day past is overdue
        ({"next_rotation": NOW - timedelta(hours=23)}, False, None),
        ({"next_rotation": NOW - timedelta(hours=25)}, True, "was due"),
        ({"next_rotation": NOW + timedelta(days=3)}, False, None),
        # ... disabled rotation is never overdue
        ({"next_rotation": NOW - timedelta(days=9), "rotation_enabled": False}, False, None),
        # AWS reports none: the last rotation older than the interval plus a day
        (
            {"last_rotated": NOW - timedelta(days=30, hours=23), "rotate_after_days": 30},
            False,
            None,
        ),
        (
            {"last_rotated": NOW - timedelta(days=32, hours=1), "rotate_after_days": 30},
            True,
            "past",
        ),
        (
            {"last_rotated": NOW - timedelta(hours=38), "schedule_expression": "rate(12 hours)"},
            True,
            "past",
        ),
        # ... a cron schedule, or no dates at all, is not judged (and says so)
        (
            {"last_rotated": NOW - timedelta(days=90), "schedule_expression": "cron(0 1 * * ? *)"},
            False,
            "not judged",
        ),
        ({"rotate_after_days": 30}, False, "not judged"),
    ],
)
def test_overdue(fields: dict[str, Any], late: bool, note: str | None) -> None:
    verdict = overdue(secret(**fields), NOW)
    assert verdict.overdue is late
    if note is None:
        assert verdict.note is None or late
    else:
        assert verdict.note is not None
        assert note in verdict.note


@pytest.mark.parametrize(
    ("accepted", "rejected", "suppressed"),
    [(0, 3, False), (1, 3, True), (2, 2, False), (2, 3, True), (0, 4, True), (10, 10, False)],
)
def test_heals_suppressed_when_most_of_at_least_four_keys_are_rejected(
    accepted: int, rejected: int, suppressed: bool
) -> None:
    assert heals_suppressed(accepted, rejected) is suppressed


def test_cursor_order_wraps_after_the_cursor_and_the_next_cursor_is_before_the_first_left() -> None:
    secrets = [secret(arn) for arn in ("arn:d", "arn:a", "arn:c", "arn:b")]

    def arns(start_after: str | None) -> list[str]:
        return [d.secret.arn for d in in_cursor_order(secrets, start_after)]

    assert arns(None) == ["arn:a", "arn:b", "arn:c", "arn:d"]
    assert arns("arn:b") == ["arn:c", "arn:d", "arn:a", "arn:b"]
    # A cursor whose secret is gone still splits the order where it would be
    assert arns("arn:bb")[0] == "arn:c"
    order = ["arn:c", "arn:d", "arn:a", "arn:b"]
    assert next_cursor(order, {"arn:a", "arn:b"}, "arn:b") == "arn:d"
    assert next_cursor(order, {"arn:c", "arn:d", "arn:a", "arn:b"}, "arn:b") == "arn:b"
    assert next_cursor(order, set(), "arn:b") is None


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
        {"detail-type": "Scheduled Event", "resources": []},
    ],
)
def test_scheduled_events_check_the_fleet(event: dict[str, Any]) -> None:
    assert HealthRequest.from_event(event).fleet


def test_secret_ids_are_kept_in_order_once_each() -> None:
    request = HealthRequest.from_event({"secret_ids": [" a ", "b", "a"]})
    assert request.secret_ids == ("a", "b")
    assert not request.fleet


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, "JSON object"),
        ("secret", "JSON object"),
        ({"secret_ids": None}, "non-empty list"),
        ({"secret_ids": ["x" * 3000]}, "not a secret ARN"),
        ({"secret_ids": ["ok"] * 501}, "at most 500"),
        ({"SecretId": "s", "Step": "createSecret"}, "rotation function"),
    ],
)
def test_malformed_events(event: Any, message: str) -> None:
    with pytest.raises(EventError, match=message):
        HealthRequest.from_event(event)


def test_settings_from_env() -> None:
    settings = HealthSettings.from_env(
        {
            "ROTATION_FUNCTION_ARN": FUNCTION + ":live",
            "STUCK_ROTATION_HOURS": "2.5",
            "HEAL_DEAD_KEYS": "FALSE",
            "HEALTH_CURSOR_PARAMETER": "/cekura/health-cursor",
        }
    )
    assert settings == HealthSettings(FUNCTION + ":live", 2.5, False, "/cekura/health-cursor")
    assert HealthSettings.from_env({"ROTATION_FUNCTION_ARN": FUNCTION}) == HealthSettings(FUNCTION)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ROTATION_FUNCTION_ARN": ""}, "ROTATION_FUNCTION_ARN"),
        ({"ROTATION_FUNCTION_ARN": "cekura-rotator"}, "ROTATION_FUNCTION_ARN"),
        ({"STUCK_ROTATION_HOURS": "four"}, "STUCK_ROTATION_HOURS"),
        ({"STUCK_ROTATION_HOURS": "0"}, "STUCK_ROTATION_HOURS"),
        ({"STUCK_ROTATION_HOURS": "nan"}, "STUCK_ROTATION_HOURS"),
        ({"HEAL_DEAD_KEYS": "yes"}, "HEAL_DEAD_KEYS"),
        ({"HEALTH_CURSOR_PARAMETER": "a name with spaces"}, "HEALTH_CURSOR_PARAMETER"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        HealthSettings.from_env({"ROTATION_FUNCTION_ARN": FUNCTION, **env})


def test_summary_is_the_lambdas_answer() -> None:
    def health(arn: str, **fields: Any) -> SecretHealth:
        values: dict[str, Any] = {
            "arn": arn,
            "name": arn,
            "rotation_enabled": True,
            "last_rotated": None,
            "next_rotation": None,
            "current_key": "accepted",
            "current_key_id": 1,
            "stuck": False,
            "overdue": False,
            "owed": 0,
            "grace": 0,
            "manual": 0,
            "notes": (),
            "actions": (),
            **fields,
        }
        return SecretHealth(**values)

    report = HealthReport(
        secrets=[
            health("a", current_key="rejected"),
            health("b", stuck=True, overdue=True),
            health("c", current_key="unknown"),
        ],
        unfinished=["d"],
        healed=["a"],
        owed_settled=2,
        manual_cleared=1,
    )
    assert report.summary() == {
        "checked": 3,
        "rejected": 1,
        "stuck": ["b"],
        "overdue": ["b"],
        "owed_settled": 2,
        "manual_cleared": 1,
        "healed": ["a"],
        "unfinished": ["d"],
    }
