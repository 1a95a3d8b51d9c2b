"""What every command is handed: the console, the inputs, AWS, and the clocks (for tests)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from cekura_rotator.cekura import CekuraClient
from cekura_rotator_cli.aws import Aws
from cekura_rotator_cli.console import Console


@dataclass
class Run:
    console: Console
    stdin: TextIO | None
    env: Mapping[str, str]
    aws: Aws
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def cekura(self, base_url: str) -> CekuraClient:
        """A Cekura client; the caller closes it."""
        return CekuraClient(base_url=base_url)
