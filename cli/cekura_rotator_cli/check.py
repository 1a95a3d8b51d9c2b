"""`check`: RotateSecret with RotateImmediately=false, which runs only testSecret, plus the same
validation of the current key from here, so there is a verdict even where the function's log
cannot be read."""

from __future__ import annotations

import argparse

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
from cekura_rotator_cli.keys import judge_key
from cekura_rotator_cli.options import add_cekura_url, add_secret_id, seconds
from cekura_rotator_cli.reading import (
    cekura_url,
    explicit_cekura_url,
    find_secret,
    key_label,
    read_version,
    require_rotation,
)
from cekura_rotator_cli.rotate import refuse_bad_current, start

NAME = "check"
HELP = "test the rotation configuration (RotateSecret with RotateImmediately=false)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_secret_id(parser)
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=60.0,
        help="seconds to wait for testSecret's outcome in the function's log (default 60)",
    )
    add_cekura_url(parser)


def run(args: argparse.Namespace, run: Run) -> int:
    explicit_cekura_url(args, run.env)  # a bad URL fails before anything runs
    store = run.aws.store()
    secret = find_secret(run, args.secret_id)
    function_arn = require_rotation(secret, run)
    refuse_bad_current(run, store, secret)
    started = run.now()
    token = start(run, secret, function_arn, immediately=False)
    run.partial.update({"secret_arn": secret.arn, "version_id": token})
    run.aftermath = (
        f"Secrets Manager's test of the configuration (testSecret, version {token}) goes on and "
        f"changes nothing; its outcome will be in the log group of {function_arn}"
    )
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
    read = read_version(store, secret.arn, current_id, run.console)
    if read.value is None:
        raise CliError(f"check failed: the AWSCURRENT version {read.problem}", EXIT_FAILED)
    function_env = run.aws.function_environment(function_arn)
    cekura = run.cekura(cekura_url(args, run.env, function_env))
    try:
        verdict = judge_key(cekura, read.value, read.value.project_id)
    finally:
        cekura.close()
    label = key_label(read.value)
    if verdict.state == "not checked":
        cekura_verdict = (
            f"not validated from here: the secret names no project_id (the function uses its "
            f"CEKURA_PROJECT_ID) for {label}."
        )
    elif verdict.state == "accepted":
        cekura_verdict = (
            f"Cekura accepts the current key ({label}) for project {read.value.project_id}."
        )
    else:
        raise CliError(
            f"check failed: whether Cekura accepts the current key ({label}) is {verdict.text}"
            if verdict.state == "unknown"
            else f"check failed: Cekura does not accept the current key ({label}): {verdict.text}",
            verdict.exit_code,
        )
    run.console.info(cekura_verdict if verdict.state == "accepted" else f"Cekura: {cekura_verdict}")
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
            return f"{log.unreadable_text()}; skipped."
        if run.clock() >= deadline:
            return f"no testSecret outcome for {token} in {log.group} within {args.timeout:g}s."
        run.sleep(min(LOG_POLL_SECONDS, max(0.0, deadline - run.clock())))
