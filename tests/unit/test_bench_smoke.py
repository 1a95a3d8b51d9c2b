"""`make bench` still works: the minimal rotator rotates, calls are counted, latency is injected,
the production-shaped run and the memory probe run, and the report prints their tables.

Not a timed test: benchmarks are a command (`python -m tools.bench`), and timings on a shared CI
machine mean nothing. The latency injectors are given a recording `sleep`, so what is checked is
that every call is delayed by the configured amount and counted, never how long anything took.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterator

import boto3
import httpx
import pytest

from cekura_rotator import handler
from tools.bench import coldstart, memory, production, rotations, scale
from tools.bench.__main__ import parse_args
from tools.bench.latency import AwsLatency, CekuraLatency, operation_of
from tools.bench.report import Report
from tools.bench.stand import Stand, open_stand


@pytest.fixture
def stand() -> Iterator[Stand]:
    with open(os.devnull, "w") as devnull, open_stand(devnull) as opened:
        yield opened


def test_minimal_rotator_call_counting_and_scale_run_on_tiny_n(stand: Stand) -> None:
    calls = rotations.count_calls(stand, rotations=2)
    timed = rotations.measure_time(stand, rotations=2, firsts=1)
    run = scale.run(stand, 2, rate=50.0)

    minimal = calls["minimal"]["steady"]
    # The minimal rotator (revocation off by default) makes exactly the calls its docstring
    # promises, no more.
    assert {step: (minimal[step]["aws"], minimal[step]["cekura"]) for step in minimal} == {
        "createSecret": (4, 1),
        "setSecret": (1, 0),
        "testSecret": (2, 1),
        "finishSecret": (3, 0),
    }
    assert minimal["createSecret"]["cekura_ops"] == {"POST create 201": 1}
    assert minimal["testSecret"]["cekura_ops"] == {"GET validate 200": 1}
    # The hooks saw the real handler too, and only it: the bench's own calls are not counted.
    first = calls["handler"]["first"]
    assert first["createSecret"]["aws_ops"]["PutSecretValue"] == 1
    assert "RotateSecret" not in str(calls)
    for step in rotations.STEPS:
        for key in ("aws", "cekura"):
            assert calls["handler"]["steady"][step][key] >= minimal[step][key]
    assert timed["handler"]["later"]["n"] == timed["minimal"]["later"]["n"] == 2
    assert (run["completed"], run["failed"]) == (2, 0)
    assert run["aws_calls"] >= 2 * 10


def test_injectors_delay_and_count_every_call_to_their_target_only(stand: Stand) -> None:
    slept: list[float] = []
    aws = AwsLatency(0.025, sleep=slept.append)
    arn = stand.new_secrets(1, "injector")[0]
    before = boto3.DEFAULT_SESSION
    with aws.on_default_session():
        client = boto3.client("secretsmanager")
        client.describe_secret(SecretId=arn)
        client.get_secret_value(SecretId=arn)
        client.get_secret_value(SecretId=arn)
    stand.driver.describe_secret(SecretId=arn)  # the bench's own client: not delayed
    assert boto3.DEFAULT_SESSION is before
    assert aws.calls == Counter({("-", "DescribeSecret"): 1, ("-", "GetSecretValue"): 2})
    assert slept == [0.025] * 3

    slept.clear()
    fake_url = stand.stack.fake.url
    cekura = CekuraLatency(0.15, fake_url, sleep=slept.append)
    cekura.step = "testSecret"
    with cekura.patched(), httpx.Client(trust_env=False, follow_redirects=False) as http:
        http.get(f"{fake_url}/app/otel/validate/", params={"project_id": "1"})
        http.get(f"{stand.stack.moto_url}/moto-api/")  # another origin: not delayed
    with httpx.Client(transport=cekura.wrap(httpx.HTTPTransport())) as wrapped:
        wrapped.delete(f"{fake_url}/user/api/v1/user-api-key/7/")
    # Without a key (validate) or an API key at all (delete is session-only in the spec world),
    # Cekura refuses both; the status shows in the count.
    assert cekura.calls == Counter(
        {("testSecret", "GET validate 401"): 1, ("testSecret", "DELETE delete 403"): 1}
    )
    assert slept == [0.15, 0.15]
    assert operation_of("POST", "/user/api/v1/user-api-key/") == "POST create"
    assert operation_of("GET", "/user/api/v1/user-api-key/") == "GET list"


def test_production_shaped_run_counts_calls_per_policy_and_prints_the_table(stand: Stand) -> None:
    slept: list[float] = []
    figures = production.run(
        stand, aws_ms=25, cekura_ms=150, rotations_per_policy=1, sleep=slept.append
    )
    assert set(slept) == {0.025, 0.15}
    minimum = {"grace": (11, 3), "immediate": (11, 3), "off": (10, 2)}
    for policy, (aws, cekura) in minimum.items():
        f = figures["policies"][policy]
        floor, ours = f["minimal"], f["handler"]
        assert (floor["aws"], floor["cekura"]) == (aws, cekura), policy
        assert ours["aws"] >= aws, policy
        assert ours["cekura"] >= cekura, policy
        for step in production.STEPS:
            assert ours["calls"][step]["aws"] >= floor["calls"][step]["aws"], (policy, step)
        assert f["ratio"] > 0
    # Under grace both rotators revoke: the fake is permissive, so the delete really happens.
    grace = figures["policies"]["grace"]
    assert grace["minimal"]["calls"]["finishSecret"]["cekura_ops"] == {"DELETE delete": 1}
    assert grace["handler"]["calls"]["finishSecret"]["cekura_ops"].get("DELETE delete") == 1
    assert "DELETE delete" not in str(figures["policies"]["off"]["minimal"]["calls"])
    # The bench left the stand as it found it.
    assert stand.stack.fake.mode == "spec"
    assert handler.rotator.cache_info().currsize == 0

    out = io.StringIO()
    report = Report(out)
    report.production(figures)
    report.summary()
    text = out.getvalue()
    for policy in ("grace", "immediate", "off"):
        f = figures["policies"][policy]
        line = next(x for x in text.splitlines() if x.strip().startswith(policy + " "))
        # policy, handler ms, minimal ms, ratio, AWS calls and minimum, Cekura calls and minimum
        assert line.split()[5:10] == [
            f"{f['ratio']:.2f}",
            str(f["handler"]["aws"]),
            str(f["minimal"]["aws"]),
            str(f["handler"]["cekura"]),
            str(f["minimal"]["cekura"]),
        ]
    assert "25 ms per AWS call, 150 ms per Cekura call" in text
    assert "production-shaped ratio, grace" in text
    assert "<= 1.15" in text


def test_memory_case_runs_a_fresh_process_with_the_case_environment(stand: Stand) -> None:
    case = memory.policy_cases(["immediate"])[0]
    assert case.env == {"REVOCATION_POLICY": "immediate", "BENCH_MINIMAL_POLICY": "immediate"}
    figures = memory.run(stand, coldstart.venv(), [case], repeats=1)
    peak = figures["cases"][0]["handler"]["peak_rss_bytes"]
    assert 10_000_000 < peak < 1_000_000_000
    out = io.StringIO()
    Report(out).memory_cases(figures)
    assert "immediate" in out.getvalue()
    assert "goal: under 90.0 MB" in out.getvalue()


def test_quick_flag_and_latency_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_AWS_LATENCY_MS", "40")
    monkeypatch.setenv("BENCH_CEKURA_LATENCY_MS", "200")
    args = parse_args(["--quick"])
    assert args.skip_build
    assert (args.prod_rotations, args.scale, args.rotations) == (2, [2], 2)
    assert (args.aws_latency_ms, args.cekura_latency_ms) == (40.0, 200.0)
    assert parse_args(["--cekura-latency-ms", "90"]).cekura_latency_ms == 90.0
