"""Lambda entry point: Powertools decorators, parse the event, run one step. Nothing else."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config as BotoConfig

from cekura_rotator import __version__
from cekura_rotator.cekura import CekuraClient
from cekura_rotator.config import Config
from cekura_rotator.errors import RotatorError
from cekura_rotator.observability import count, logger, metrics
from cekura_rotator.secrets_store import SecretsStore
from cekura_rotator.steps import RotationRequest, Rotator

# Secrets Manager answers in milliseconds; botocore's defaults (60 s to connect, 60 s to read)
# let one hung call eat a whole 60 s step before any retry. With these, the worst case for one
# call is 3 attempts x (3 s + 10 s) plus standard mode's jittered backoff (< 1 s, then < 2 s):
# about 42 s, which leaves the step time to report the failure instead of being killed. Standard
# mode also retries throttling and transient 5xx answers, which legacy mode partly does not.
SM_CONNECT_TIMEOUT = 3.0
SM_READ_TIMEOUT = 10.0
SM_MAX_ATTEMPTS = 3
# Independent calls of a step overlap (reads beside reads, the stray listing beside deletions):
# on a real network a step mostly waits. Few are ever independent at once.
PARALLEL_CALLS = 4


def secretsmanager_config() -> BotoConfig:
    """The botocore configuration of the function's Secrets Manager client."""
    return BotoConfig(
        connect_timeout=SM_CONNECT_TIMEOUT,
        read_timeout=SM_READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": SM_MAX_ATTEMPTS},
        user_agent_extra=f"cekura-rotator/{__version__}",
    )


@functools.cache
def rotator() -> Rotator:
    """The container's rotator: config parsed and clients created once, on first use."""
    config = Config.from_env(os.environ)
    store = SecretsStore(boto3.client("secretsmanager", config=secretsmanager_config()))
    store.require_rotation_token()
    return Rotator(
        config=config,
        store=store,
        cekura=CekuraClient.from_config(config),
        parallel_calls=PARALLEL_CALLS,
    )


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Run the rotation step the event names; raise (and so fail the step) on any error."""
    step = event.get("Step") if isinstance(event, dict) else None
    secret_id = event.get("SecretId") if isinstance(event, dict) else None
    metrics.add_dimension(name="Step", value=str(step) if step in _STEP_NAMES else "invalid")
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000
    try:
        request = RotationRequest.from_event(event)
        logger.append_keys(secret_id=request.secret_id, step=request.step, token=request.token)
        rotator().run(request, deadline=deadline, function_arn=context.invoked_function_arn)
    except RotatorError as e:
        e.bind(secret_id=str(secret_id) if secret_id else None, step=str(step) if step else None)
        count("StepFailed")
        logger.exception("Rotation step failed", error_type=type(e).__name__)
        raise
    except Exception:
        count("StepFailed")
        logger.exception("Rotation step failed unexpectedly")
        raise
    count("StepSucceeded")


_STEP_NAMES = frozenset({"createSecret", "setSecret", "testSecret", "finishSecret"})
