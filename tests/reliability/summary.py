"""The reliability run's figures, summed from what actually ran, printed as one line.

Tests record what they did in `item.user_properties` under `PROPERTY` (see `conftest.Ledger`);
pytest copies those into every report, and pytest-xdist ships reports from its workers to the
controller, so summing the teardown reports here counts every worker's tests exactly once.

Registered by `tests/reliability/conftest.py` when pytest loads it at start-up (`pytest
tests/reliability ...`). A run that only finds this package during collection (`pytest` with
xdist from the repository root) can load it up front with `-p tests.reliability.summary`.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest

PROPERTY = "reliability"
# How often each rule of the strict AWS model (tests/strict_aws.py) was met.
RULES_PROPERTY = "strict-aws-rules"
# The order of the summary line; the first four are the figures the issue asks for.
FIGURES = (
    "scenarios",
    "sequences",
    "bad_inputs",
    "invariant_violations",
    "invariant_checks",
    "security_checks",
)
FULL_ENV = "RELIABILITY_FULL"

_tally: Counter[str] = Counter()
_rules: Counter[str] = Counter()
_reports = 0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("reliability").addoption(
        "--reliability-full",
        action="store_true",
        default=False,
        help=f"run the full reliability set (also: {FULL_ENV}=1)",
    )


def is_full(config: pytest.Config) -> bool:
    """Whether the full set was asked for, by option or by environment."""
    return bool(config.getoption("reliability_full", default=False)) or os.environ.get(
        FULL_ENV, ""
    ).strip().lower() in {"1", "true", "yes"}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _reports  # noqa: PLW0603  # one tally per process, like the terminal reporter's
    if report.when != "teardown":
        return
    for name, value in report.user_properties:
        if name == PROPERTY and isinstance(value, dict):
            _reports += 1
            _tally.update({k: int(v) for k, v in value.items() if k in FIGURES})
        elif name == RULES_PROPERTY and isinstance(value, dict):
            _rules.update({str(k): int(v) for k, v in value.items()})


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not _reports:
        return
    figures = " ".join(f"{name}={_tally[name]}" for name in FIGURES)
    terminalreporter.write_line(f"reliability: {figures}")
    from tests.strict_aws import RULES

    met = " ".join(f"{name}={_rules[name]}" for name in RULES)
    terminalreporter.write_line(f"strict AWS model, rules met: {met}")
