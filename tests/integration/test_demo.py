"""`make demo` end to end: it succeeds and prints fingerprints, never a key."""

from __future__ import annotations

import pytest

from infra.local import demo
from infra.local.fake_cekura import FakeCekura


def test_demo_rotates_three_times_in_both_worlds_without_showing_a_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every key the demo's fake Cekura will mint is remembered
    minted: list[str] = []
    original = FakeCekura.stop

    def remember(self: FakeCekura) -> None:
        minted.extend(self.minted_secrets())
        original(self)

    monkeypatch.setattr(FakeCekura, "stop", remember)
    # When the demo runs
    assert demo.main() == 0
    out = capsys.readouterr().out
    # Then it reported three rotations per world, revocation in both worlds, and no key
    assert out.count("ok in") == 6
    assert "left for manual revocation" in out
    assert "revoked by the rotator: key 1" in out
    assert len(minted) == 8
    assert not any(key in out for key in minted)
