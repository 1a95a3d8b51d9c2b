"""`make demo` end to end: it succeeds and prints fingerprints, never a key or a session; the
health check keeps and then clears a manual debt, and finds and heals a dead key."""

from __future__ import annotations

import re

import pytest

from infra.local import demo
from infra.local.fake_cekura import KEY_PREFIX, SESSION_PREFIX, FakeCekura


def test_demo_rotates_checks_and_heals_without_showing_a_key(
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
    # Then it reported three rotations per world, one in admin mode and the one the health
    # check started; revocation in both worlds
    assert out.count("ok in") == 8
    assert "left for manual revocation" in out
    assert "revoked by the rotator: key 1" in out
    assert len(minted) == 8 + 3
    # ... in 'spec', the health check kept the manual debt while its key was live, and cleared
    # it once the key was deleted in the dashboard
    spec = out[: out.index("=== Cekura in 'permissive' mode")]
    deleted = re.search(r"-- key (\d+) deleted in the Cekura dashboard, as its manual record", spec)
    assert deleted is not None
    key = deleted.group(1)
    before, after = spec.split(deleted.group(0))
    assert f"manual debt key {key}: Cekura still accepts it, so the record is kept" in before
    assert '"manual_cleared": 0' in before
    assert f"manual debt key {key}: Cekura no longer knows it, so the record is cleared" in after
    assert '"manual_cleared": 1' in after
    assert "the deleted key's record cleared itself" in after
    # ... admin mode minted where API keys may not, and the health check found a key deleted in
    # the dashboard and healed it with a rotation
    admin = out[out.index("=== Admin mode") :]
    assert "'nocreate' mode" in admin
    assert "-- rotation 1, minted with the admin credential: ok in" in admin
    dead = re.search(
        r"-- key (\d+) deleted in the dashboard .*: Cekura rejects the current key", admin
    )
    assert dead is not None
    assert f"found: Cekura rejects the current key {dead.group(1)} (HTTP 401)" in admin
    assert "healed: RotateSecret started" in admin
    assert "metrics: HealthSecretsChecked 1, CurrentKeyRejected 1, HealsStarted 1" in admin
    assert "-- the rotation the health check started, minted with the admin credential: ok" in admin
    assert "recovered: AWSCURRENT holds a live key again" in admin
    assert f"key id {dead.group(1)} " in admin
    # ... and never a key, or the admin secret's session (a fingerprint of it only)
    assert sessions
    assert not any(secret in out for secret in [*minted, *sessions])
    assert KEY_PREFIX not in out
    assert SESSION_PREFIX not in out
