"""`check`: RotateSecret with RotateImmediately=false, which runs only testSecret, plus the same
validation of the current key from here, so there is a verdict even where the function's log
cannot be read."""

from __future__ import annotations

import argparse

from cekura_rotator.errors import CekuraNotFoundError, CekuraRefusedError, CekuraRequestError
from cekura_rotator.secret_value import SecretValue
from cekura_rotator.secrets_store import CURRENT
from cekura_rotator_cli.aws import (
    LOG_POLL_SECONDS,
    STEP_COMPLETE,
    STEP_FAILED,
    FunctionLog,
    failure_text,
)
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import EXIT_FAILED, EXIT_OK, CliError
from cekura_rotator_cli.reading import (
    cekura_url,
    explicit_cekura_url,
    key_label,
    read_version,
    require_rotation,
)
from cekura_rotator_cli.rotate import start


def command(args: argparse.Namespace, run: Run) -> int:
    explicit_cekura_url(args, run.env)  # a bad URL fails before anything runs
    store = run.aws.store()
    secret = store.describe(args.secret_id)
    function_arn = require_rotation(secret)
    started = run.now()
    token = start(run, secret, function_arn, RotateImmediately=False)
    run.console.info(
        f"Secrets Manager accepted the rotation configuration of {secret.name} and is running "
        f"testSecret (version {token}, function {function_arn})."
    )
    after = store.describe(secret.arn)
    if not after.rotation_enabled:
        raise CliError("check failed: rotation is not enabled on the secret", EXIT_FAILED)
    current_id = after.version_with(CURRENT)
    if current_id is None:
        raise CliError("check failed: no version of the secret is AWSCURRENT", EXIT_FAILED)
    # testSecret validates a copy of the AWSCURRENT value; the same validation from here gives
    # a verdict even where the function's log cannot be read.
    current, problem = read_version(store, secret.arn, current_id, run.console)
    if current is None:
        raise CliError(f"check failed: the AWSCURRENT version has {problem}", EXIT_FAILED)
    url = cekura_url(args, run.env, run.aws.function_environment(function_arn))
    cekura_verdict = _validate_current(current, url, run)
    log = FunctionLog(run.aws, function_arn, started)
    function_verdict = _await_test_verdict(log, token, args, run)
    run.console.info(f"Function log: {function_verdict}")
    run.console.result(
        {
            "secret_arn": secret.arn,
            "version_id": token,
            "status": "passed",
            "cekura": cekura_verdict,
            "function_log": function_verdict,
        },
        ["Check passed."],
    )
    return EXIT_OK


def _validate_current(current: SecretValue, url: str, run: Run) -> str:
    label = key_label(current)
    if current.project_id is None:
        verdict = (
            f"not validated from here: the secret names no project_id (the function uses its "
            f"CEKURA_PROJECT_ID) for {label}."
        )
        run.console.info(f"Cekura: {verdict}")
        return verdict
    cekura = run.cekura(url)
    try:
        cekura.validate(current.api_key, project_id=current.project_id)
    except (CekuraRefusedError, CekuraRequestError, CekuraNotFoundError) as e:
        raise CliError(
            f"check failed: Cekura does not accept the current key ({label}) for project "
            f"{current.project_id}: {e.message}",
            EXIT_FAILED,
        ) from None
    finally:
        cekura.close()
    verdict = f"Cekura accepts the current key ({label}) for project {current.project_id}."
    run.console.info(verdict)
    return verdict


def _await_test_verdict(log: FunctionLog, token: str, args: argparse.Namespace, run: Run) -> str:
    deadline = run.clock() + args.timeout
    while True:
        for record in log.events(token):
            message = str(record.get("message", ""))
            if message.startswith(STEP_FAILED):
                raise CliError(f"check failed: {failure_text(record)}", EXIT_FAILED)
            if message == STEP_COMPLETE and record.get("step") == "testSecret":
                return f"testSecret passed for version {token}."
        if not log.enabled:
            return f"not readable from here ({log.group}); skipped."
        if run.clock() >= deadline:
            return f"no testSecret outcome for {token} in {log.group} within {args.timeout:g}s."
        run.sleep(min(LOG_POLL_SECONDS, max(0.0, deadline - run.clock())))
