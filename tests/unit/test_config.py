"""Environment parsing: defaults, accepted values, and a clear error for each bad one."""

from __future__ import annotations

import pytest

from cekura_rotator.config import Config, RevocationPolicy
from cekura_rotator.errors import ConfigError


def test_defaults_when_nothing_is_set() -> None:
    config = Config.from_env({})
    assert config.cekura_api_url == "https://api.cekura.ai"
    assert config.default_project_id is None
    assert config.revocation_policy is RevocationPolicy.GRACE


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.cekura.ai/", "https://api.cekura.ai"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:9000/", "http://localhost:9000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_accepted_urls(url: str, expected: str) -> None:
    assert Config.from_env({"CEKURA_API_URL": url}).cekura_api_url == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CEKURA_API_URL": "http://api.cekura.ai"}, "must use https"),
        ({"CEKURA_API_URL": "http://10.0.0.5"}, "loopback"),
        ({"CEKURA_API_URL": "ftp://api.cekura.ai"}, "https"),
        ({"CEKURA_API_URL": "api.cekura.ai"}, "absolute URL"),
        ({"CEKURA_API_URL": "https://user:pw@api.cekura.ai"}, "credentials"),
        ({"CEKURA_API_URL": "https://api.cekura.ai/?x=1"}, "query"),
        ({"CEKURA_API_URL": "https://api.cekura.ai:99999"}, "not a valid URL"),
        ({"CEKURA_PROJECT_ID": "abc"}, "CEKURA_PROJECT_ID"),
        ({"CEKURA_PROJECT_ID": "0"}, "positive"),
        ({"REVOCATION_POLICY": "later"}, "grace, immediate, off"),
        ({"CEKURA_READ_TIMEOUT": "soon"}, "CEKURA_READ_TIMEOUT"),
        ({"CEKURA_CONNECT_TIMEOUT": "-1"}, "more than 0"),
        ({"CEKURA_VALIDATE_MAX_WAIT": "nan"}, "more than 0"),
        ({"CEKURA_KEY_NAME_PREFIX": "has space"}, "CEKURA_KEY_NAME_PREFIX"),
    ],
)
def test_bad_values_raise_a_config_error_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)


def test_policy_and_project_are_parsed() -> None:
    config = Config.from_env({"REVOCATION_POLICY": "Immediate", "CEKURA_PROJECT_ID": " 42 "})
    assert config.revocation_policy is RevocationPolicy.IMMEDIATE
    assert config.default_project_id == 42
