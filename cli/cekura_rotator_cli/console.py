"""What the CLI writes: results on stdout, progress and errors on stderr, never a key.

With `--output table` (the default) results and progress are lines for a person on stdout. With
`--output json` stdout holds exactly one JSON document (the result), so progress goes to stderr.
Every line is scrubbed of the key and credential values the command has seen, as a last line
of defence: no code path hands one to the console, fingerprints are what is shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

OutputFormat = Literal["table", "json"]
PROG = "cekura-rotator"
_LINE_CHARS = 1000


class Console:
    """stdout and stderr, in one output format, with every watched value masked."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, output: OutputFormat = "table"):
        self._stdout = stdout
        self._stderr = stderr
        self.output: OutputFormat = output
        self._secrets: set[str] = set()

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
        if self.output == "json":
            self._write(self._stdout, json.dumps(document, indent=2, default=str))
            return
        for line in lines:
            self._write(self._stdout, line)

    def error(self, command: str, subject: str | None, message: str) -> None:
        """One line on stderr naming the command and the secret."""
        where = f"{PROG} {command}" + (f": secret {subject!r}" if subject else "")
        line = " ".join(f"{where}: {message}".split())
        self._stderr.write(self._scrub(line)[:_LINE_CHARS] + "\n")
        self._stderr.flush()

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(self._scrub(text) + "\n")
        stream.flush()

    def _scrub(self, text: str) -> str:
        # Longest first, so a key that contains another watched value is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text
