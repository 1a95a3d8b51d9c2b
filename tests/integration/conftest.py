"""Fixtures of the integration tests (their helpers are in modules of their own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from infra.local.fake_cekura import FakeCekura
from tests.conftest import World
from tests.integration.health_fleet import Fleet

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


@pytest.fixture
def fleet(
    sm: SecretsManagerClient,
    fake: FakeCekura,
    make_world: Callable[..., World],
    monkeypatch: pytest.MonkeyPatch,
) -> Fleet:
    """Secrets rotated by the function, the fake Cekura, and a health check over them."""
    return Fleet(sm, fake, make_world, monkeypatch)
