"""``--timeout N%``: an attempt is killed once it runs longer than N% of the median run
time of the jobs that succeeded so far, as GNU parallel's ``TimeoutQueue`` does. Before a
first job succeeds there is no limit. The limit moves as jobs succeed, for the attempts
already running too.

GNU parallel keeps a remedian of the last 999 run times, sorted as strings: for fewer than
1000 jobs whose run times have as many digits before the point, that is the lower median.
Here it is the lower median of them all.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Awaitable

from ..task import TaskTimeoutError


class MedianTimeout:
    """The limit of ``--timeout N%``, and the attempts it watches."""

    def __init__(self, pct: float) -> None:
        self.pct = pct  # as a fraction
        self.limit: float | None = None  # seconds, once a job succeeded
        self._low: list[float] = []  # the lower half of the run times, negated (a max-heap)
        self._high: list[float] = []  # the upper half (a min-heap)
        self._running: dict[asyncio.Timeout, float] = {}  # each attempt's limit, its start

    def succeeded(self, runtime: float) -> None:
        """A job succeeded, its last attempt in ``runtime`` seconds: the limit moves."""
        runtime = math.trunc(runtime * 1000) / 1000  # (as GNU parallel's JobRuntime)
        low, high = self._low, self._high
        if low and runtime > -low[0]:
            heapq.heappush(high, runtime)
        else:
            heapq.heappush(low, -runtime)
        # keep len(low) == len(high) or one more: the lower median is then -low[0]
        if len(low) > len(high) + 1:
            heapq.heappush(high, -heapq.heappop(low))
        elif len(high) > len(low):
            heapq.heappush(low, -heapq.heappop(high))
        self.limit = self.pct * -low[0]
        for timeout, start in self._running.items():
            timeout.reschedule(start + self.limit)

    async def run(self, attempt: Awaitable[None]) -> None:
        """Run ``attempt``, killed (canceled) if it runs over the limit: then
        `TaskTimeoutError`, which the pool retries as a timeout of its own."""
        start = asyncio.get_running_loop().time()
        timeout = asyncio.timeout_at(None if self.limit is None else start + self.limit)
        try:
            async with timeout:
                self._running[timeout] = start
                try:
                    await attempt
                finally:
                    del self._running[timeout]
        except TimeoutError:
            if not timeout.expired():  # (the attempt's own)
                raise
            assert self.limit is not None
            raise TaskTimeoutError(
                f"ran longer than {self.limit:.3f} s, {self.pct * 100:g}% of the median run "
                "time of the jobs that succeeded"
            ) from None
