from __future__ import annotations

import asyncio
from collections import deque
from datetime import timedelta
from types import TracebackType

from ._retry import seconds

__all__ = ["Semaphore"]


class Semaphore:
    """A counting semaphore with ``limit`` slots and first-in, first-out waiters.

    A released slot goes straight to the longest waiter, so a caller of ``try_acquire()``
    never overtakes one that is waiting. A waiter that is cancelled or times out loses
    nothing: if a slot had just been handed to it, it passes the slot on.
    """

    __slots__ = ("_idle", "_limit", "_value", "_waiters")

    def __init__(self, limit: int) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError(f"limit must be an int, got {type(limit).__name__}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit = limit
        self._value = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._idle: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return (
            f"<Semaphore limit={self._limit} acquired={self.acquired} "
            f"waiting={len(self._waiters)}>"
        )

    @property
    def limit(self) -> int:
        """The number of slots."""
        return self._limit

    @property
    def available(self) -> int:
        """Slots free right now."""
        return self._value

    @property
    def acquired(self) -> int:
        """Slots held right now (``limit - available``)."""
        return self._limit - self._value

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting; never waits."""
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return True
        return False

    async def acquire(self, timeout: float | timedelta | None = None) -> None:
        """Wait for a slot, at most ``timeout`` seconds (``TimeoutError`` after that)."""
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return
        limit = None if timeout is None else seconds(timeout, "timeout")
        if limit == 0:
            raise TimeoutError("no slot of the semaphore was free")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            if limit is None:
                await fut
            else:
                try:
                    async with asyncio.timeout(limit):
                        await fut
                except TimeoutError:
                    raise TimeoutError(f"no slot of the semaphore was free within {limit}s") from None
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._hand_back()  # the slot reached us as we gave up: pass it on
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    async def try_acquire_with_timeout(self, timeout: float | timedelta) -> bool:
        """Wait at most ``timeout`` seconds for a slot; True if one was taken."""
        try:
            await self.acquire(timeout)
        except TimeoutError:
            return False
        return True

    def release(self) -> None:
        """Give a slot back; ``ValueError`` if none is held."""
        if self._value >= self._limit:
            raise ValueError("release() called more times than acquire()")
        self._hand_back()

    def _hand_back(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._value += 1
        if self._value == self._limit and self._idle:
            idle, self._idle = self._idle, []
            for fut in idle:
                if not fut.done():
                    fut.set_result(None)

    async def _wait_all_released(self) -> None:
        """Wait until every slot is free (for the pool's ``wait()``)."""
        while self._value < self._limit:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(fut)
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()
                    self._idle.remove(fut)

    def _abort_waiters(self, exc: BaseException) -> None:
        """Fail every waiter with ``exc`` (a pool being stopped)."""
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
