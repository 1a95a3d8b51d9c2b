"""Work side by side: on a real network a step, or a health check's secret, mostly waits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from threading import Lock
from typing import TypeVar, cast

_T = TypeVar("_T")
_U = TypeVar("_U")
_R = TypeVar("_R")


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


def begun_in_order(
    items: Sequence[_T],
    work: Callable[[_T], _R],
    stop: Callable[[], bool],
    *,
    workers: int,
    thread_name_prefix: str,
) -> list[_R | None]:
    """`work` on each item, begun in order (side by side with `workers` > 1), none begun
    once `stop()`; the results in order, None for items never begun."""
    results: list[_R | None] = [None] * len(items)
    if workers == 1 or len(items) <= 1:
        for i, item in enumerate(items):
            if stop():
                break
            results[i] = work(item)
        return results
    lock = Lock()
    begun = 0
    stopped = False

    def worker() -> None:
        nonlocal begun, stopped
        while True:
            with lock:
                i = begun
                if stopped or i >= len(items):
                    return
                if stop():
                    stopped = True
                    return
                begun += 1
            results[i] = work(items[i])

    threads = min(workers, len(items))
    with ThreadPoolExecutor(threads, thread_name_prefix) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
    for future in futures:
        future.result()
    return results
