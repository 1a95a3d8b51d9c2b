"""The child process of the cold-start, memory and Tracer figures: a stand-in Lambda container.

    python -m tools.bench.probe {handler|minimal|tracer} RESULT.json

It imports the rotator named, runs the four steps of the rotation the parent started (secret and
token in BENCH_SECRET_ARN / BENCH_TOKEN) against the parent's moto server and fake Cekura, and
writes its timings as JSON. Only modules the interpreter has already loaded at startup are used
before the timed import, so the figure is the rotator's alone. BENCH_HIDE lists top-level modules
that are installed here but absent from the deployment package: they are made unimportable, so
that optional imports (httpx's CLI pulls in click and pygments when it can) cost what they cost
in Lambda, which is nothing.
"""

import os
import sys
import time

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


class _Hidden:
    """A meta path finder that fails imports of modules the Lambda package does not contain."""

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in self._names:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the package)", name=name)


class _Context:
    """What the handler and Powertools read from a Lambda context."""

    function_name = "cekura-rotator"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cekura-rotator"
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    function_version = "$LATEST"
    log_group_name = "/aws/lambda/cekura-rotator"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self._deadline = time.monotonic() + 60

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def main() -> None:
    mode, result_path = sys.argv[1], sys.argv[2]
    hidden = os.environ.get("BENCH_HIDE", "")
    if hidden:
        sys.meta_path.insert(0, _Hidden(frozenset(hidden.split(","))))
    modules_at_start = len(sys.modules)

    started = time.perf_counter()
    if mode == "minimal":
        from tools.bench.minimal import lambda_handler
    else:
        from cekura_rotator.handler import lambda_handler
    imported = time.perf_counter()

    steps: dict[str, float] = {}
    for step in STEPS:
        event = {
            "Step": step,
            "SecretId": os.environ["BENCH_SECRET_ARN"],
            "ClientRequestToken": os.environ["BENCH_TOKEN"],
        }
        step_started = time.perf_counter()
        lambda_handler(event, _Context())
        steps[step] = time.perf_counter() - step_started
    rotated = time.perf_counter()

    result: dict[str, object] = {
        "import_s": imported - started,
        "first_rotation_s": rotated - imported,
        "steps_s": steps,
        "modules": len(sys.modules) - modules_at_start,
    }
    if mode == "tracer":
        result.update(_tracer())

    import json

    result["peak_rss_kb"] = _status_kb("VmHWM")
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(result, out)


def _tracer() -> dict[str, object]:
    """Cost of adding Powertools Tracer to an already-loaded handler: import, then construct.

    Tracer switches itself off outside Lambda; LAMBDA_TASK_ROOT (set by the parent) turns it on,
    so construction patches botocore and httpx as it would in production.
    """
    rss_before = _status_kb("VmRSS")
    started = time.perf_counter()
    import importlib

    importlib.import_module("aws_xray_sdk.core")  # not a project dependency: no stubs, no types
    xray = time.perf_counter()
    from aws_lambda_powertools import Tracer

    imported = time.perf_counter()
    Tracer(service="cekura-rotator")
    built = time.perf_counter()
    return {
        "tracer_xray_import_s": xray - started,
        "tracer_import_s": imported - started,
        "tracer_init_s": built - imported,
        "tracer_rss_delta_kb": _status_kb("VmRSS") - rss_before,
    }


def _status_kb(field: str) -> int:
    """A memory figure of this process image, in KiB; -1 where /proc is missing.

    Not ru_maxrss: Linux carries that across exec, so a child forked from the large bench
    process would report the parent's size. VmHWM is the peak of this image alone.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


if __name__ == "__main__":
    main()
