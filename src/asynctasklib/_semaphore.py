"""Counting semaphores: one FIFO core, an async face (here) and a blocking face; and a
pool's worker slots, which own a lock-free fast path."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from datetime import timedelta
from types import TracebackType

from ._compat import running_loop as _get_running_loop
from ._public import public_here
from ._validate import at_least, seconds

__all__ = ["Semaphore"]


class _ThreadWaiter:
    """A thread blocked in ``acquire``: a lock it waits on, released when a slot is its."""

    __slots__ = ("error", "granted", "lock")

    def __init__(self) -> None:
        self.granted = False
        self.error: BaseException | None = None  # set instead when the wait is aborted
        self.lock = threading.Lock()
        self.lock.acquire()


def _set_result(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _SemaphoreCore:
    """The slots, their FIFO waiters and the hand-over of a released slot; thread-safe.

    A released slot goes straight to the longest waiter, whether it waits in a coroutine or
    in a thread, so a ``try_acquire()`` never overtakes a waiter. A waiter that gives up
    (canceled, timed out) loses nothing: if the slot reached it as it gave up, it passes
    the slot on. Every change happens under one lock, so any thread may release, try, or
    read the counts at any time.
    """

    __slots__ = ("_idle", "_limit", "_lock", "_value", "_waiters")

    def __init__(self, limit: int) -> None:
        self._limit = at_least(limit, "limit", 1)
        self._value = limit
        self._lock = threading.Lock()
        self._waiters: deque[asyncio.Future[None] | _ThreadWaiter] = deque()
        self._idle: list[asyncio.Future[None]] = []  # waiting for every slot to be free

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} limit={self._limit} acquired={self.acquired} "
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
        """Take a slot if one is free and nobody is waiting; never waits.

        Returns:
            True if a slot was taken, False if none was free (or others wait for one).
        """
        with self._lock:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return True
        return False

    def release(self) -> None:
        """Give a slot back, to the longest waiter if there is one.

        Raises:
            ValueError: No slot is held (more releases than acquires).
        """
        with self._lock:
            if self._value >= self._limit:
                raise ValueError("release() called more times than acquire()")
            self._hand_back()

    def _hand_back(self) -> None:
        """A slot is free: give it to the first waiter that still wants it. Under the lock."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if isinstance(waiter, _ThreadWaiter):
                waiter.granted = True
                waiter.lock.release()
                return
            if waiter.done():  # canceled, timed out, or aborted
                continue
            loop = waiter.get_loop()
            if _get_running_loop() is loop:
                waiter.set_result(None)
            else:  # the slot is reserved now, delivered on the waiter's own loop
                loop.call_soon_threadsafe(self._deliver, waiter)
            return
        self._value += 1
        if self._value == self._limit and self._idle:
            idle, self._idle = self._idle, []
            for fut in idle:
                loop = fut.get_loop()
                if _get_running_loop() is loop:
                    _set_result(fut)
                else:
                    loop.call_soon_threadsafe(_set_result, fut)

    def _deliver(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # it gave up meanwhile: pass the slot on
            with self._lock:
                self._hand_back()
        else:
            waiter.set_result(None)

    def _take_or_queue(self) -> asyncio.Future[None] | None:
        """Take a free slot (None), or queue a future that gets one."""
        with self._lock:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return None
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            return fut

    def _give_up(self, fut: asyncio.Future[None]) -> None:
        """A coroutine stops waiting on ``fut``; if a slot reached it already, pass it on."""
        with self._lock:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._hand_back()
            elif fut in self._waiters:
                self._waiters.remove(fut)

    def _acquire_blocking(self, timeout: float | None) -> bool:
        """Block this thread until a slot is taken (True) or ``timeout`` passes (False)."""
        with self._lock:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return True
            if timeout is not None and timeout <= 0:
                return False
            waiter = _ThreadWaiter()
            self._waiters.append(waiter)
        try:
            got = waiter.lock.acquire(timeout=-1 if timeout is None else timeout)
        except BaseException:  # interrupted (KeyboardInterrupt): give the place up
            with self._lock:
                if waiter.granted:
                    self._hand_back()
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
            raise
        if got:
            if waiter.error is not None:
                raise waiter.error
            return True
        with self._lock:
            if waiter.granted:  # it came as the time ran out: keep it
                return True
            if waiter.error is not None:
                raise waiter.error
            self._waiters.remove(waiter)
            return False

    def _abort_waiters(self, exc: BaseException) -> None:
        """Fail every waiter with ``exc`` (a pool being stopped; on its loop's thread)."""
        with self._lock:
            waiters, self._waiters = self._waiters, deque()
            for waiter in waiters:
                if isinstance(waiter, _ThreadWaiter):
                    waiter.error = exc
                    waiter.lock.release()
                elif not waiter.done():
                    waiter.set_exception(exc)

    async def _wait_all_released(self) -> None:
        """Wait until every slot is free (for the pool's ``wait()``)."""
        loop = asyncio.get_running_loop()
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            with self._lock:  # (checked under the lock: a release in between would be missed)
                if self._value >= self._limit:
                    return
                self._idle.append(fut)
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()
                    with self._lock:
                        if fut in self._idle:
                            self._idle.remove(fut)


class Semaphore(_SemaphoreCore):
    """A counting semaphore with ``limit`` slots and first-in, first-out waiters.

    ``await acquire()`` waits for a slot (cancelable; no slot is lost), ``try_acquire()``
    and ``release()`` never wait and may be called from any thread. A released slot goes
    straight to the longest waiter, so ``try_acquire()`` never overtakes one.
    ``asynctasklib.blocking.Semaphore`` is the same semaphore for threads.

    Args:
        limit: The number of slots; at least 1.

    Raises:
        TypeError: ``limit`` is not an int.
        ValueError: ``limit`` is below 1.
    """

    __slots__ = ()

    async def acquire(self, timeout: float | timedelta | None = None) -> None:
        """Wait for a slot, at most ``timeout`` seconds.

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most; None waits for as long
                as it takes, 0 only takes a free slot.

        Raises:
            TimeoutError: No slot was free within ``timeout``.
        """
        limit = None if timeout is None else seconds(timeout, "timeout")
        if limit == 0:
            if self.try_acquire():
                return
            raise TimeoutError("no slot of the semaphore was free")
        fut = self._take_or_queue()
        if fut is None:
            return
        try:
            if limit is None:
                await fut
            else:
                try:
                    async with asyncio.timeout(limit):
                        await fut
                except TimeoutError:
                    message = f"no slot of the semaphore was free within {limit}s"
                    raise TimeoutError(message) from None
        except BaseException:
            self._give_up(fut)
            raise

    async def try_acquire_with_timeout(self, timeout: float | timedelta) -> bool:
        """Wait at most ``timeout`` seconds for a slot.

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most.

        Returns:
            True if a slot was taken, False if ``timeout`` passed first.
        """
        try:
            await self.acquire(timeout)
        except TimeoutError:
            return False
        return True

    async def __aenter__(self) -> None:
        """``async with``: wait for a slot (as ``acquire()`` with no timeout)."""
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``async with``: give the slot back."""
        self.release()


class _Slots(Semaphore):
    """A pool's worker slots: a `Semaphore` that knows whether other threads use it.

    Until a blocking face takes slots from its callers' threads (``shared``), only the
    loop's thread touches them: then the pool's hot path, one take and one give back per
    task, skips the lock.
    """

    __slots__ = ("shared",)

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.shared = False

    def take_nowait(self) -> bool:
        """Take a slot if one is free and nobody is waiting (``try_acquire``); never waits."""
        if self.shared:
            return self.try_acquire()
        if self._value and not self._waiters:
            self._value -= 1
            return True
        return False

    def can_take(self) -> bool:
        """Whether `take_nowait` would take a slot now (a hint: another thread may be first)."""
        return self._value > 0 and not self._waiters

    def release_held(self) -> None:
        """Give back a slot its holder took: ``release`` without its check (the caller holds
        one), handed to the first waiter if there is one."""
        if self._waiters or self._idle or self.shared:
            with self._lock:
                self._hand_back()
        else:
            self._value += 1


public_here(globals(), ["Semaphore"], "asynctasklib")  # (see `_public`)
