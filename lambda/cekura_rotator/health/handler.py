"""Health-check entry: Powertools decorators, parse the event, run the check, move the cursor,
emit the metrics. The checks themselves are `check.HealthCheck`."""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from cekura_rotator.cekura import CekuraClient
from cekura_rotator.config import Config
from cekura_rotator.errors import EventError, RotatorError
from cekura_rotator.health.check import HealthCheck
from cekura_rotator.health.event import HealthRequest
from cekura_rotator.health.report import HealthReport
from cekura_rotator.health.settings import HealthSettings
from cekura_rotator.observability import count, logger, metrics
from cekura_rotator.secrets_store import SecretsStore

# Kept back from the Lambda's remaining time for the cursor write and the metrics flush.
_HANDLER_RESERVE = 8.0
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:\S+")


@functools.cache
def health_check() -> HealthCheck:
    """The container's health check: configuration parsed and clients created once."""
    import boto3

    from cekura_rotator.handler import secretsmanager_config

    config = Config.from_env(os.environ)
    settings = HealthSettings.from_env(os.environ)
    store = SecretsStore(boto3.client("secretsmanager", config=secretsmanager_config()))
    return HealthCheck(
        config=config, settings=settings, store=store, cekura=CekuraClient.from_config(config)
    )


@functools.cache
def _ssm() -> Any:
    """The container's SSM client (for the cursor), created on first use."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "ssm",
        config=BotoConfig(
            connect_timeout=3,
            read_timeout=10,
            retries={"mode": "standard", "total_max_attempts": 3},
        ),
    )


def read_cursor(name: str) -> str | None:
    """Where this run starts (after this ARN); None on "-", on nothing, or when unreadable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        value = str(_ssm().get_parameter(Name=name)["Parameter"]["Value"]).strip()
    except (BotoCoreError, ClientError) as e:
        logger.warning(
            "The health check's cursor cannot be read; starting at the beginning",
            parameter=name,
            error=type(e).__name__,
        )
        return None
    if value in {"", "-"}:
        return None
    if not _SECRET_ARN.fullmatch(value):
        logger.warning("The health check's cursor is not a secret ARN; ignored", parameter=name)
        return None
    return value


def write_cursor(name: str, start_after: str | None) -> None:
    """Where the next run starts; a failure is logged (the next run then starts over)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _ssm().put_parameter(Name=name, Value=start_after or "-", Type="String", Overwrite=True)
    except (BotoCoreError, ClientError) as e:
        logger.warning(
            "The health check's cursor cannot be written", parameter=name, error=type(e).__name__
        )


def emit_metrics(report: HealthReport) -> None:
    """The run's metrics, emitted every run, zeros included: the alarms read them."""
    count("HealthSecretsChecked", len(report.secrets))
    count("CurrentKeyRejected", len(report.rejected))
    count("RotationsStuck", len(report.stuck))
    count("RotationsOverdue", len(report.overdue))
    count("FleetRevocationsOwed", sum(s.owed + s.grace for s in report.secrets))
    count("FleetRevocationsManual", sum(s.manual for s in report.secrets))
    count("HealthUnfinished", len(report.unfinished))
    count("HealsStarted", len(report.healed))
    count("HealSuppressed", 1 if report.heal_suppressed else 0)


def _refuse_input(rejected: Mapping[str, str]) -> None:
    """Raise EventError naming every secret id of the event that is not this rotator's."""
    if rejected:
        raise EventError(
            "secret_ids names secrets this health check does not check (nothing was checked): "
            + "; ".join(f"{secret_id}: {why}" for secret_id, why in rejected.items()),
            secret_id=next(iter(rejected)),
        )


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run the health check the event asks for; return its JSON summary."""
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - _HANDLER_RESERVE
    try:
        request = HealthRequest.from_event(event)
        check = health_check()
        cursor = check.settings.cursor_parameter if request.fleet else None
        start_after = read_cursor(cursor) if cursor else None
        report = check.run(request.secret_ids, fix=True, deadline=deadline, start_after=start_after)
        _refuse_input(report.rejected_input)
    except RotatorError as e:
        count("HealthCheckFailed")
        logger.exception("Health check failed", error_type=type(e).__name__)
        raise
    except Exception:
        count("HealthCheckFailed")
        logger.exception("Health check failed unexpectedly")
        raise
    if cursor and report.next_start_after != start_after:
        write_cursor(cursor, report.next_start_after)
    emit_metrics(report)
    summary = report.summary()
    logger.info(
        "Health check complete",
        checked=summary["checked"],
        rejected=summary["rejected"],
        stuck=len(report.stuck),
        overdue=len(report.overdue),
        owed_settled=report.owed_settled,
        manual_cleared=report.manual_cleared,
        healed=len(report.healed),
        unfinished=len(report.unfinished),
        heal_suppressed=report.heal_suppressed,
        next_start_after=report.next_start_after,
    )
    return summary
