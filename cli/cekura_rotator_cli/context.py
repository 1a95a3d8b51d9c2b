"""What every command is handed: the console, the inputs, AWS, Cekura, and the clocks (for tests).

`Run.changes()` marks the stretch of a command that changes something (create a secret, then
attach rotation; attach a record, then take AWSPENDING off): Ctrl-C there is held until the
stretch ends, so no command stops between two of its changes. Output never stops one either
(see `console`).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO, TypeVar

from cekura_rotator.cekura import CekuraClient
from cekura_rotator.errors import CekuraProtocolError, CekuraTransientError, OrphanKeyError
from cekura_rotator_cli.aws import Aws
from cekura_rotator_cli.console import PROG, Console

_T = TypeVar("_T")


@dataclass
class Run:
    console: Console
    stdin: TextIO | None
    env: Mapping[str, str]
    aws: Aws
    # The AWS options as given (--profile, --region, --endpoint-url), repeated in every hint.
    aws_options: tuple[str, ...] = ()
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # What a command interrupted or failed half-way tells: merged into the JSON document, and
    # `aftermath` into the message (say, "the rotation goes on in Secrets Manager").
    partial: dict[str, Any] = field(default_factory=dict)
    aftermath: str | None = None
    changed: list[str] = field(default_factory=list)

    def cekura(self, base_url: str) -> CekuraClient:
        """A Cekura client whose connection errors name the host; the caller closes it."""
        return _NamedCekura(base_url=base_url)

    def command(self, *words: str) -> str:
        """A command line to suggest, with the AWS options of this run (`cekura-rotator
        --region R status --secret-id X`)."""
        return shlex.join([PROG, *self.aws_options, *words])

    def cancel_command(self, secret_arn: str) -> str:
        """The command that unsticks the secret's stuck rotation."""
        return self.command("rotate", "--cancel", "--secret-id", secret_arn)

    def store_key_command(self, secret_name: str) -> str:
        """The command that stores a good key as the secret's AWSCURRENT (its other options
        left to the operator)."""
        return self.command("bootstrap", "--update", "--secret-name", secret_name, "...")

    @contextlib.contextmanager
    def rotator_logs(self) -> Iterator[None]:
        """While the rotator's own code runs here (Revoker, HealthCheck), its log goes to the
        operator's stderr, warnings and worse only, and so does anything it prints (metrics):
        never into stdout, which may hold the one JSON document."""
        from cekura_rotator.observability import logger

        handler = logger.registered_handler
        level = logger.log_level
        stream = None
        if isinstance(handler, logging.StreamHandler):
            stream = handler.setStream(self.console.stderr)
        logger.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(self.console.stderr):
                yield
        finally:
            logger.setLevel(level)
            if stream is not None and isinstance(handler, logging.StreamHandler):
                handler.setStream(stream)

    @contextlib.contextmanager
    def changes(self) -> Iterator[None]:
        """A stretch of changes Ctrl-C must not cut in two: an interrupt is held until its end."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        held: list[int] = []

        def hold(signum: int, frame: FrameType | None) -> None:
            held.append(signum)

        previous = signal.signal(signal.SIGINT, hold)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        if held:
            raise KeyboardInterrupt


class _NamedCekura(CekuraClient):
    """The rotator's Cekura client, whose failures to reach Cekura say which host was tried."""

    def __init__(self, *, base_url: str):
        super().__init__(base_url=base_url)
        self.base_url = base_url

    def create_key(self, *args: Any, **kwargs: Any) -> Any:
        return self._named(lambda: super(_NamedCekura, self).create_key(*args, **kwargs))

    def validate(self, *args: Any, **kwargs: Any) -> None:
        self._named(lambda: super(_NamedCekura, self).validate(*args, **kwargs))

    def delete_key(self, *args: Any, **kwargs: Any) -> Any:
        return self._named(lambda: super(_NamedCekura, self).delete_key(*args, **kwargs))

    def list_keys(self, *args: Any, **kwargs: Any) -> Any:
        return self._named(lambda: super(_NamedCekura, self).list_keys(*args, **kwargs))

    def _named(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except (CekuraTransientError, CekuraProtocolError) as e:
            if not isinstance(e, OrphanKeyError):
                e.message = f"{e.message} (Cekura API at {self.base_url})"
                e.args = (e.message,)
            raise
