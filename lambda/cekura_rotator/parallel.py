"""Independent calls of one step, side by side: on a real network a step mostly waits."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar, cast

_T = TypeVar("_T")
_U = TypeVar("_U")


class Calls:
    """Runs independent calls side by side.

    With one worker the calls run in the order given, which keeps fault injection by call
    count deterministic in tests. A failure is raised once every call has ended.
    """

    def __init__(self, workers: int = 1):
        self._pool = ThreadPoolExecutor(workers, "rotator") if workers > 1 else None

    def run(self, *calls: Callable[[], object]) -> list[object]:
        """Every call's result, in the order given. A failure (the first in that order) is
        raised only once every call has ended: none may run on into a later invocation."""
        if self._pool is None:
            return [call() for call in calls]
        futures = [self._pool.submit(call) for call in calls]
        wait(futures)
        return [future.result() for future in futures]

    def pair(self, first: Callable[[], _T], second: Callable[[], _U]) -> tuple[_T, _U]:
        """Both results."""
        one, two = self.run(first, second)
        return cast(_T, one), cast(_U, two)
