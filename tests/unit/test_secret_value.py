"""The secret format: parsing, validation, rendering, and that the key never shows."""

from __future__ import annotations

import json

import pytest

from cekura_rotator.errors import SecretFormatError
from cekura_rotator.secret_value import MintedKey, SecretValue, fingerprint

KEY = "ck_live_" + "a" * 40
MINTED = MintedKey(
    id=7,
    name="rotator-x-12345678",
    project=3,
    key="ck_new_" + "b" * 40,
    created_at="2026-11-26T00:00:00Z",
)


def test_json_value_round_trips_with_extra_fields_kept() -> None:
    # Given a JSON secret with a field the rotator does not own
    raw = json.dumps({"api_key": KEY, "project_id": 3, "env": "prod", "nested": {"a": [1, "é"]}})
    # When it is parsed and rotated
    value = SecretValue.parse(raw, default_project_id=None)
    rendered = json.loads(value.rotated(MINTED).render())
    # Then the new key and its metadata replace the old, and everything else is unchanged
    assert rendered == {
        "api_key": MINTED.key,
        "project_id": 3,
        "key_id": 7,
        "key_name": "rotator-x-12345678",
        "created_at": "2026-11-26T00:00:00Z",
        "env": "prod",
        "nested": {"a": [1, "é"]},
    }


def test_plain_value_stays_plain_and_takes_the_default_project() -> None:
    value = SecretValue.parse(KEY, default_project_id=9)
    assert value.plain
    assert value.project_id == 9
    assert value.rotated(MINTED).render() == MINTED.key


def test_project_from_config_fills_a_json_secret_without_one() -> None:
    assert SecretValue.parse(json.dumps({"api_key": KEY}), default_project_id=5).project_id == 5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x01", "SecretBinary"),
        ("", "empty"),
        ("   ", "empty"),
        ("[1, 2]", "JSON array"),
        ('["ck_x"]', "JSON array"),
        ("{broken", "does not parse"),
        ("{}", "no 'api_key'"),
        ('{"api_key": ""}', "empty"),
        ('{"api_key": 12345678}', "must be a string"),
        ('{"api_key": null}', "must be a string"),
        ('{"api_key": "ck_ok_12345", "project_id": "3"}', "positive integer"),
        ('{"api_key": "ck_ok_12345", "project_id": true}', "positive integer"),
        ('{"api_key": "ck_ok_12345", "key_id": 1.5}', "positive integer"),
        ('{"api_key": "ck_ok_12345", "key_name": 5}', "must be a string"),
        ('{"api_key": "clé-non-ascii"}', "visible ASCII"),
        ('{"api_key": "two words"}', "visible ASCII"),
        ("key with\nnewline", "visible ASCII"),
        ("x" * 70_000, "larger than"),
    ],
)
def test_bad_values_raise_without_quoting_the_value(raw: str | bytes, message: str) -> None:
    with pytest.raises(SecretFormatError, match=message) as caught:
        SecretValue.parse(raw, default_project_id=None)
    assert "ck_ok_12345" not in str(caught.value)
    assert "clé" not in str(caught.value)


def test_value_too_close_to_the_size_limit_is_refused_before_minting() -> None:
    raw = json.dumps({"api_key": KEY, "project_id": 1, "blob": "x" * 65_000})
    value = SecretValue.parse(raw, default_project_id=None)
    with pytest.raises(SecretFormatError, match="limit"):
        value.check_room_for_rotation()


def test_repr_and_fingerprint_never_show_the_key() -> None:
    value = SecretValue.parse(
        json.dumps({"api_key": KEY, "secret_note": "n"}), default_project_id=1
    )
    assert KEY not in repr(value)
    assert KEY[:6] not in fingerprint(KEY)
    assert fingerprint(KEY) != fingerprint(MINTED.key)
    assert MINTED.key not in repr(MINTED)
