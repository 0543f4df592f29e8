"""Rate limits: a smooth start rate (GCRA), so concurrency and rate combine."""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

from ._validate import number

__all__ = ["Limiter", "RateLimiter"]


class Limiter(Protocol):
    """What the engine awaits before each attempt starts."""

    async def acquire(self) -> None:
        """Return once the attempt may start."""


class RateLimiter:
    """Let at most ``per_second`` attempts start per second, evenly spaced, first come first
    served.

    This is GCRA without burst: each caller reserves the next start time, at least
    ``1 / per_second`` after the previous one, and sleeps until it. There is no burst after
    an idle spell (a token bucket would let a backlog of starts through at once): a server
    that allows N requests per second never sees N + 1 within a second. A caller canceled
    while it waits gives up its place (the rate only falls).
    """

    __slots__ = ("_interval", "_next", "per_second")

    def __init__(self, per_second: float) -> None:
        number(per_second, "max_per_second")
        if not per_second > 0 or math.isinf(per_second):
            raise ValueError(f"max_per_second must be a finite number > 0, got {per_second!r}")
        self.per_second = float(per_second)
        self._interval = 1.0 / per_second
        self._next = -math.inf  # loop time at which the next start may happen

    def __repr__(self) -> str:
        return f"<RateLimiter per_second={self.per_second}>"

    async def acquire(self) -> None:
        """Wait for this attempt's start time: the earliest the limit allows."""
        await _start_at(asyncio.get_running_loop(), (self,))


class _Both:
    """Two limits at once (a pool's and one ``map`` call's): one start time that keeps the
    spacing of both."""

    __slots__ = ("_limiters",)

    def __init__(self, first: RateLimiter, second: RateLimiter) -> None:
        self._limiters = (first, second)

    async def acquire(self) -> None:
        await _start_at(asyncio.get_running_loop(), self._limiters)


async def _start_at(loop: asyncio.AbstractEventLoop, limiters: tuple[RateLimiter, ...]) -> None:
    """Reserve the earliest start every limiter allows, and sleep until it."""
    now = loop.time()
    start = max(now, *(limiter._next for limiter in limiters))
    for limiter in limiters:
        limiter._next = start + limiter._interval
    if start > now:
        await asyncio.sleep(start - now)
