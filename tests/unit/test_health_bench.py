"""`make bench`'s health figures still work: a tiny fleet, a fresh process, the report's rows.

Not a timed test: what is checked is that the run counts what it should, never how long it took.
"""

from __future__ import annotations

import io
import os

from tools.bench import health
from tools.bench.__main__ import parse_args
from tools.bench.report import Report


def test_health_figures_on_a_tiny_fleet_count_one_read_and_one_validate_per_secret() -> None:
    # Given the stand-ins with three healthy secrets, then five
    with open(os.devnull, "w") as devnull:
        figures = health.run([5, 3], rate=50.0, devnull=devnull)
    # Then each run checked its whole fleet in a fresh process, at one GetSecretValue and one
    # accepted Cekura call per secret, beside one ListSecrets page
    assert [run["secrets"] for run in figures["runs"]] == [3, 5]
    for run in figures["runs"]:
        assert (run["checked"], run["rejected"], run["unfinished"]) == (run["secrets"], 0, 0)
        assert run["aws_calls"] == {"ListSecrets": 1, "GetSecretValue": run["secrets"]}
        assert run["cekura_accepted"] == run["secrets"]
        assert run["cekura_routes"].get("validate 200") == run["secrets"]
        assert 10_000_000 < run["peak_rss_bytes"] < 1_000_000_000
        assert run["ratio"] is None  # within the burst of 50 requests: no bound
    assert not health.failed(figures)
    # ... and the report prints the table and its rows
    out = io.StringIO()
    report = Report(out)
    report.health(figures)
    report.summary()
    text = out.getvalue()
    assert "Health check: one scheduled run over N healthy secrets" in text
    assert "health calls/healthy secret, 5" in text
    assert "1.00 AWS + 1.00 Cekura (+ 1 ListSecrets pages)" in text
    assert "within Cekura's burst" in text


def test_health_sizes_flag() -> None:
    assert parse_args([]).health == [200, 1000]
    assert parse_args(["--quick"]).health == [3]
    assert parse_args(["--health", "50,100"]).health == [50, 100]


def test_health_report_weighs_the_ratio_against_the_goal() -> None:
    run = {
        "secrets": 1000,
        "seconds": 52.5,
        "lower_bound_s": 50.0,
        "ratio": 1.05,
        "checked": 1000,
        "unfinished": 0,
        "aws_per_secret": 1.0,
        "cekura_per_secret": 1.0,
        "cekura_429": 180,
        "list_pages": 10,
        "peak_rss_bytes": 55_000_000,
    }
    slow = {**run, "secrets": 200, "seconds": 13.0, "lower_bound_s": 10.0, "ratio": 1.3}
    out = io.StringIO()
    report = Report(out)
    report.health({"rate": 20.0, "runs": [run, slow]})
    rows = {r.figure: r for r in report.rows}
    assert rows["health check, 1000 secrets"].value.startswith("1.05x bound (52.5 s), 1000/1000")
    assert rows["health check, 1000 secrets"].verdict == "PASS"
    assert rows["health check, 200 secrets"].verdict == "MISS"
    assert rows["peak RSS, health check 1000"].verdict == "PASS"
