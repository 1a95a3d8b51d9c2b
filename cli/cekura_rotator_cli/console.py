"""What the CLI writes: results on stdout, progress and errors on stderr, never a key.

With `--output table` (the default) results and progress are lines for a person on stdout. With
`--output json` stdout holds exactly one JSON document, whatever happens: the result, or on a
failure or Ctrl-C a document saying so; progress then goes to stderr.

Writing never fails a command. A closed stdout (`| head -1`), a terminal that went away, or any
other error on a stream marks that stream as lost: what follows is dropped, and the command
carries on with its changes and exits with the code its work earned. Every line is scrubbed of
the key and credential values the command has seen, as a last line of defence: no code path
hands one to the console, fingerprints are what is shown.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

OutputFormat = Literal["table", "json"]
PROG = "cekura-rotator"


class Console:
    """stdout and stderr, in one output format, with every watched value masked."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, output: OutputFormat = "table"):
        self._stdout = stdout
        self._stderr = stderr
        self.output: OutputFormat = output
        self._secrets: set[str] = set()
        self._lost: set[int] = set()
        self.document_written = False

    @property
    def stderr(self) -> TextIO:
        """Where progress and errors go (for the rotator's own log while its code runs here)."""
        return self._stderr

    def watch(self, *values: str | None) -> None:
        """Mask these values in everything written from now on."""
        self._secrets.update(v for v in values if v)

    def info(self, text: str = "") -> None:
        """A line for the person running the command (progress, notes, next steps)."""
        self._write(self._stderr if self.output == "json" else self._stdout, text)

    def warn(self, text: str) -> None:
        """Something the operator should act on; always on stderr."""
        self._write(self._stderr, f"warning: {text}")

    def result(self, document: Mapping[str, Any], lines: Iterable[str]) -> None:
        """The command's result: `lines` for a person, or `document` as JSON."""
        self.document_written = True
        if self.output == "json":
            self._write(self._stdout, json.dumps(document, indent=2, default=str))
            return
        for line in lines:
            self._write(self._stdout, line)

    def closing_document(self, document: Mapping[str, Any]) -> None:
        """With --output json, the document for a command that ended without a result (an
        error, Ctrl-C), so that stdout still holds one JSON document."""
        if self.output == "json" and not self.document_written:
            self.result(document, ())

    def error(self, command: str, subject: str | None, message: str) -> None:
        """One line on stderr naming the command and the secret; never cut short."""
        where = f"{PROG} {command}" + (f": secret {subject!r}" if subject else "")
        self._write(self._stderr, " ".join(f"{where}: {message}".split()))

    def hang_up(self) -> None:
        """The terminal is gone (SIGHUP): drop what would go to it from now on. A stream sent to
        a file or a pipe is still written."""
        for stream in (self._stdout, self._stderr):
            try:
                terminal = stream.isatty()
            except (OSError, ValueError):
                terminal = True
            if terminal:
                self._lose(stream)

    def _write(self, stream: TextIO, text: str) -> None:
        if id(stream) in self._lost:
            return
        try:
            stream.write(self._scrub(text) + "\n")
            stream.flush()
        except (OSError, ValueError):  # EPIPE, EIO (terminal gone), a closed file
            self._lose(stream)

    def _lose(self, stream: TextIO) -> None:
        self._lost.add(id(stream))
        # Point the descriptor at /dev/null, so that the interpreter's own flush at exit does not
        # fail on what is still buffered (Python would print a traceback and exit 120).
        with contextlib.suppress(AttributeError, OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, stream.fileno())
            finally:
                os.close(devnull)

    def _scrub(self, text: str) -> str:
        # Longest first, so a key that contains another watched value is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text
