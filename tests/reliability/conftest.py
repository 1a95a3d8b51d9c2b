"""Fixtures of the reliability suite, and the hook-up of its summary line.

`--reliability-full` (or `RELIABILITY_FULL=1`) selects the full set: every fault-matrix
combination and at least 1,000 random sequences. Without it, `make test` runs a faster subset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import pytest

from cekura_rotator import handler
from cekura_rotator.observability import metrics
from infra.local import stack
from infra.local.fake_cekura import FakeCekura
from tests import conftest as shared_fixtures
from tests.conftest import LogCapture, World
from tests.reliability import summary
from tests.reliability.harness import Rig


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # The summary plugin owns the option and the summary line; `-p tests.reliability.summary`
    # may have registered it already.
    if not pluginmanager.is_registered(summary):
        pluginmanager.register(summary, "reliability-summary")


@dataclass
class Ledger:
    """What one test ran and checked; summed into the run's summary line (see summary.py)."""

    scenarios: int = 0
    sequences: int = 0
    bad_inputs: int = 0
    invariant_violations: int = 0
    invariant_checks: int = 0
    security_checks: int = 0


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    entry = Ledger()
    yield entry
    # Kept even when the test failed: a violation must show in the figures.
    request.node.user_properties.append((summary.PROPERTY, asdict(entry)))


@pytest.fixture
def reliability_full(request: pytest.FixtureRequest) -> bool:
    return summary.is_full(request.config)


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    # Direct Rotator runs add metrics that only the handler flushes; start each test clean.
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def rig(
    make_world: Callable[..., World],
    logs: LogCapture,
    fake: FakeCekura,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Rig]:
    # The rotation function exists in this test's moto once made: registering it again for
    # every world (each sequence makes one) costs two boto3 clients, most of a sequence's time.
    made: list[str] = []

    def create_function_once(endpoint_url: str | None = None) -> str:
        if not made:
            made.append(stack.create_function(endpoint_url))
        return made[0]

    monkeypatch.setattr(shared_fixtures, "create_function", create_function_once)
    # Every call goes through the strict AWS model; invariants 10 and 11 after every step.
    built = Rig(make_world, logs, fake, ledger=ledger)
    # Through the handler, steps run the active harness's rotator: its clients, no real sleeps.
    monkeypatch.setattr(handler, "rotator", lambda: built.active().rotator)
    yield built
    built.cekura.close()
    # How often each rule of the strict model was met, for the run's figures.
    request.node.user_properties.append((summary.RULES_PROPERTY, dict(built.model.counts)))
