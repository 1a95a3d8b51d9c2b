"""`make demo` end to end: it succeeds and prints fingerprints, never a key or a session."""

from __future__ import annotations

import re

import pytest

from infra.local import demo
from infra.local.fake_cekura import KEY_PREFIX, SESSION_PREFIX, FakeCekura


def test_demo_rotates_in_both_worlds_and_in_admin_mode_without_showing_a_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every key the demo's fake Cekura will mint, and every session it issues, remembered
    minted: list[str] = []
    sessions: list[str] = []
    original_stop, original_session = FakeCekura.stop, FakeCekura.issue_session

    def remember(self: FakeCekura) -> None:
        minted.extend(self.minted_secrets())
        original_stop(self)

    def issue_session(
        self: FakeCekura, project_id: int | None = None, *, organization: str | None = None
    ) -> str:
        token = original_session(self, project_id, organization=organization)
        sessions.append(token)
        return token

    monkeypatch.setattr(FakeCekura, "stop", remember)
    monkeypatch.setattr(FakeCekura, "issue_session", issue_session)
    # When the demo runs
    assert demo.main() == 0
    out = capsys.readouterr().out
    # Then it reported three rotations per world and two in admin mode, revocation in both
    # worlds, and no key
    assert out.count("ok in") == 8
    assert "left for manual revocation" in out
    assert "revoked by the rotator: key 1" in out
    assert len(minted) == 8 + 3
    # ... admin mode minted where API keys may not, and recovered a key deleted in the dashboard
    admin = out[out.index("=== Admin mode") :]
    assert "'nocreate' mode" in admin
    assert "-- rotation 1, minted with the admin credential: ok in" in admin
    dead = re.search(
        r"-- key (\d+) deleted in the dashboard .*: Cekura rejects the current key", admin
    )
    assert dead is not None
    assert "-- rotation 2, recovering the dead key: ok in" in admin
    assert "recovered: AWSCURRENT holds a live key again" in admin
    assert f"key id {dead.group(1)} " in admin
    # ... and never a key, or the admin secret's session (a fingerprint of it only)
    assert sessions
    assert not any(secret in out for secret in [*minted, *sessions])
    assert KEY_PREFIX not in out
    assert SESSION_PREFIX not in out
