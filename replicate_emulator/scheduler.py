"""A timer heap feeding a thread pool: thousands of predictions can wait out their latency without a
thread each, so the emulator never caps how many predictions are in flight (Replicate does not either).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("replicate_emulator.scheduler")


class Scheduler:
    """Runs callables at (monotonic) times on a pool; the pool only ever does real work."""

    def __init__(self, workers: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emu-work")
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="emu-scheduler", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._order), func, args))
            self._cond.notify()

    def call_at(self, when: float, func: Callable[..., Any], *args: Any) -> None:
        self.call_later(when - time.monotonic(), func, *args)

    def _loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, func, args = heapq.heappop(self._heap)
                    try:
                        self._pool.submit(func, *args)
                    except RuntimeError:  # pool shut down under us
                        return
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
