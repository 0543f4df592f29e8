"""The portal: an event loop running in a thread of its own, for the blocking face.

The blocking face's calls that wait hand a coroutine to this loop and block until it is
done. At the interpreter's exit every portal still running is stopped, and a blocking pool
garbage-collected without ``shutdown()`` has its portal wound down from here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # (before its exit hook is registered: see the end)
import logging
import threading
import warnings
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._compat import register_atexit
from ._errors import PoolStoppedError, TaskCanceledError
from ._threads import check_not_in_loop

if TYPE_CHECKING:
    from ._pool import WorkerPool

__all__ = ["Portal", "describe"]

logger = logging.getLogger("asynctasklib")

T = TypeVar("T")


class Portal:
    """An event loop running in a thread of its own, and calls into it that block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # Calls are handed to the loop under this lock, and close() marks the portal closing
        # under it: no call is handed over behind the loop's stop, so none is left unrun (or
        # waited for forever). Reentrant: a finalizer may run in a thread that holds it.
        self._lock = threading.RLock()
        self._closing = False
        self._winding_down: asyncio.Task[None] | None = None  # see dropped
        self._thread = threading.Thread(target=self._run, name="asynctasklib-portal", daemon=True)
        running = threading.Event()
        self.loop.call_soon(running.set)
        self._thread.start()
        running.wait()  # from here on the loop is running: calls into it go to its thread
        _portals.add(self)

    @property
    def closing(self) -> bool:
        """True once the loop is stopping or stopped."""
        return self._closing

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            while not self._closing:
                try:
                    loop.run_forever()
                except BaseException:  # from a user's hook or callback: the loop goes on
                    logger.exception("a callback on the blocking face's event loop raised")
        finally:  # as asyncio.run ends: nothing may be left running
            # (until none is left: a task may start another as it is canceled)
            while tasks := asyncio.all_tasks(loop):
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    def call(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; block until it is done. Interrupting the caller
        (KeyboardInterrupt) cancels it.

        If the loop stops first (``shutdown()`` from another thread, or the interpreter's
        exit), the call raises ``PoolStoppedError``: this is the one place where a call
        canceled on the loop comes back to its thread.
        """
        try:
            check_not_in_loop(what)
            with self._lock:
                if self._closing:
                    raise PoolStoppedError(f"the pool was shut down before {what} could run")
                future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except BaseException:
            coro.close()
            raise
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # Cancelled on the loop: by its stop (the usual case), or by foreign code there.
            if self._closing:
                raise PoolStoppedError(f"the pool was shut down during {what}") from None
            raise TaskCanceledError(f"{what} was canceled on the pool's event loop") from None
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop (what still runs on it is canceled) and, unless called on the
        loop's thread, wait for its thread to end."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def dropped(self, pool: WorkerPool) -> None:
        """The finalizer of a blocking pool garbage-collected without ``shutdown()``.

        It runs in whichever thread collected the pool, so it only hands the work to the
        loop and never waits: once the tasks in progress have ended, the pool is shut down
        and the loop stopped, which ends the thread and closes the loop's files.
        """
        with self._lock:
            if self._closing:  # (stopped at the interpreter's exit meanwhile)
                return
            self.loop.call_soon_threadsafe(self._wind_down, pool)
        # After the work is handed over: with warnings as errors, this raises.
        warnings.warn(f"unclosed {describe(pool)[1:-1]}", ResourceWarning, stacklevel=1)

    def _wind_down(self, pool: WorkerPool) -> None:
        # Kept here: the loop itself holds only a weak reference to its tasks.
        self._winding_down = self.loop.create_task(self._end_when_idle(pool))

    async def _end_when_idle(self, pool: WorkerPool) -> None:
        try:
            await pool.shutdown(cancel=False)  # (waits for the tasks in progress)
        except Exception:
            logger.exception("shutting down a dropped blocking.WorkerPool failed")
        finally:
            with self._lock:
                stop = not self._closing  # (else it is stopping already: leave it be)
                self._closing = True
            if stop:
                self.loop.stop()


_portals: weakref.WeakSet[Portal] = weakref.WeakSet()


def describe(pool: WorkerPool) -> str:
    """How a blocking pool shows itself: its async pool's repr, named blocking."""
    return "<blocking." + repr(pool)[1:]


def _close_portals() -> None:
    """At interpreter exit, stop every loop still running: no thread is left behind."""
    for portal in list(_portals):
        portal.close()


# Before concurrent.futures joins its threads at exit (threading's exit hooks run in reverse
# order of registration, and concurrent.futures registered when it was imported): closing the
# loops first cancels the pools' tasks, so that a plain task function still running in a
# thread is told to stop (run.canceled) instead of being waited for.
register_atexit(_close_portals)
