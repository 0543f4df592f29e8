"""The blocking face's semaphore: ``acquire`` blocks the calling thread."""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType

from ._semaphore import _SemaphoreCore
from ._threads import check_not_in_loop, thread_limit
from ._validate import seconds

__all__ = ["Semaphore"]


class Semaphore(_SemaphoreCore):
    """`asynctasklib.Semaphore` for threads: ``acquire`` blocks the calling thread.

    The same FIFO core as the async one: a released slot goes to the longest waiter, a
    waiter that times out loses nothing, and every method is thread-safe.

    Args:
        limit: The number of slots; at least 1.

    Raises:
        TypeError: ``limit`` is not an int.
        ValueError: ``limit`` is below 1.
    """

    __slots__ = ()

    def acquire(self, timeout: float | timedelta | None = None) -> None:
        """Block the calling thread until a slot is free, at most ``timeout`` seconds.

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most; None, or one above
                ``threading.TIMEOUT_MAX`` (``inf``, ``timedelta.max``), waits for as long as
                it takes; 0 only takes a free slot.

        Raises:
            TimeoutError: No slot was free within ``timeout``.
            RuntimeError: Called from a running event loop when it would have to wait.
        """
        limit = None if timeout is None else thread_limit(seconds(timeout, "timeout"))
        if (self._value <= 0 or self._waiters) and limit != 0:
            check_not_in_loop("Semaphore.acquire()")
        if not self._acquire_blocking(limit):
            raise TimeoutError(f"no slot of the semaphore was free within {limit}s")

    def try_acquire_with_timeout(self, timeout: float | timedelta) -> bool:
        """Block the calling thread at most ``timeout`` seconds for a slot.

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most; one above
                ``threading.TIMEOUT_MAX`` means no limit; 0 only takes a free slot.

        Returns:
            True if a slot was taken, False if ``timeout`` passed first.

        Raises:
            RuntimeError: Called from a running event loop when it would have to wait.
        """
        limit = thread_limit(seconds(timeout, "timeout"))
        if (self._value <= 0 or self._waiters) and limit != 0:
            check_not_in_loop("Semaphore.try_acquire_with_timeout()")
        return self._acquire_blocking(limit)

    def __enter__(self) -> None:
        """``with``: wait for a slot (as ``acquire()`` with no timeout)."""
        self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``with``: give the slot back."""
        self.release()
