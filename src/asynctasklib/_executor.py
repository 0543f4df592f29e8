"""The executor bridge: a pool's plain task functions run on a concurrent.futures Executor.

Each call goes out from the loop's thread and comes back as a future of the loop. The ends
come back in batches: one wake-up of the loop for all the calls that end while it is busy,
instead of one each. The bridge also cancels calls (and gives its own thread pool a thread
for each call that runs on regardless), checks up front that a function can be pickled for
an executor in other processes, and shuts its own thread pool down with the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import pickle
import threading
import types
import weakref
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._compat import FINISHED, add_thread, future_fields
from ._hooks import is_async_callable
from ._runner import no_stop_iteration

if TYPE_CHECKING:
    from ._definition import Definition

__all__ = ["ExecutorBridge"]

logger = logging.getLogger("asynctasklib")


class ExecutorBridge:
    """The executor of one pool, and its calls in progress."""

    __slots__ = (
        "_ended_calls",
        "_ended_lock",
        "_picklable",
        "_pickle_lock",
        "calls",
        "ended_scheduled",
        "executor",
        "loop",
        "max_workers",
        "owns_executor",
        "remote",
    )

    def __init__(self, executor: Executor | None, max_workers: int) -> None:
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
            )
        # Plain task functions run here: a thread pool of the pool's own by default (made
        # on first use, shut down with the pool), or the one given (left running).
        self.executor: Executor | None = executor
        self.owns_executor = executor is None
        self.max_workers = max_workers  # the threads of its own pool
        # Anything but threads is another process (or machine): functions get a RunInfo.
        self.remote = executor is not None and not isinstance(executor, ThreadPoolExecutor)
        # The pool's event loop, where the calls' outcomes go (the pool sets it as it binds).
        self.loop: asyncio.AbstractEventLoop | None = None
        self._picklable: weakref.WeakSet[Any] = weakref.WeakSet()  # functions fit to go
        self._pickle_lock = threading.Lock()
        self.calls: dict[asyncio.Future[Any], Future[Any]] = {}  # executor calls running
        # calls that ended, for the loop to take in one batch (see call)
        self._ended_calls: deque[tuple[asyncio.Future[Any], Future[Any]]] = deque()
        self._ended_lock = threading.Lock()
        self.ended_scheduled = False

    def call(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` on the executor, as a future of the loop.

        Like ``asyncio.wrap_future`` (cancelling the result cancels the executor's future),
        but the outcomes come back to the loop in batches: one wake-up of the loop for all
        the calls that end while it is busy, instead of one each.
        """
        executor = self.executor
        if executor is None:
            executor = self.executor = ThreadPoolExecutor(
                self.max_workers, thread_name_prefix="asynctasklib-pool"
            )
        loop = self.loop
        assert loop is not None
        result = loop.create_future()
        call = executor.submit(fn, *args)
        self.calls[result] = call
        call.add_done_callback(functools.partial(self._call_ended, result))
        return result

    def cancel(self, result: asyncio.Future[Any]) -> None:
        """The caller stopped waiting for ``result``: cancel the executor's call too (which
        stops it if it has not started, and cancels a Dask future)."""
        # (It stays in calls until it ends: close() must not wait on a call that runs on.)
        call = self.calls.get(result)
        if call is not None and not call.cancel() and self.owns_executor:
            # It runs on in a thread of ours (a thread cannot be stopped; its Run says
            # stop): give the executor one more thread, so that max_workers functions can
            # still run at once meanwhile. (Threads are only made when needed, and reused.)
            executor = self.executor
            assert isinstance(executor, ThreadPoolExecutor)  # (the pool's own)
            add_thread(executor)

    def _call_ended(self, result: asyncio.Future[Any], call: Future[Any]) -> None:
        """An executor's call has ended (in the executor's thread, usually)."""
        self.calls.pop(result, None)
        with self._ended_lock:
            self._ended_calls.append((result, call))
            if self.ended_scheduled:
                return
            self.ended_scheduled = True
        loop = self.loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(self._deliver_ended_calls)
        except RuntimeError:  # the loop is closed: nobody waits any more
            with self._ended_lock:
                for _, dropped in self._ended_calls:
                    _discard(dropped)
                self._ended_calls.clear()
                self.ended_scheduled = False  # (the pool may move to another loop)

    def _deliver_ended_calls(self) -> None:
        with self._ended_lock:
            batch = list(self._ended_calls)
            self._ended_calls.clear()
            self.ended_scheduled = False
        for result, call in batch:
            if result.done():  # canceled meanwhile
                _discard(call)
                continue
            state, error, value = future_fields(call)
            if state != FINISHED:  # canceled
                result.cancel()
            elif error is None:
                result.set_result(value)
            elif isinstance(error, StopIteration):  # (from another process)
                result.set_exception(no_stop_iteration(error))
            else:
                result.set_exception(error)

    def check_picklable(self, definition: Definition[Any], args: Any = None) -> None:
        """For an executor in other processes: fail now, not later, on a function, or
        arguments for it (a tuple, from ``submit(fn, *args)``), that cannot get there."""
        fn = definition.task_fn
        if fn is None:
            return
        _, is_async, _, _ = definition._plan  # (unpacked, as everywhere: see Definition._plan)
        if args and not is_async:  # (an async def runs on the loop: never sent)
            try:
                pickle.dumps(args)
            except Exception as exc:
                raise TypeError(
                    f"the arguments of {fn!r} cannot be pickled, so it cannot run on "
                    f"{type(self.executor).__name__}: {exc}"
                ) from exc
        with self._pickle_lock:  # (the blocking face checks in its callers' threads)
            if fn in self._picklable:  # (checked once: is_async_callable is not cheap)
                return
            if not is_async_callable(fn):
                try:
                    pickle.dumps(fn)
                except Exception as exc:
                    raise TypeError(
                        f"task_fn {fn!r} cannot be pickled, so it cannot run on "
                        f"{type(self.executor).__name__}: {exc}"
                    ) from exc
            with contextlib.suppress(TypeError):  # not weakly referenceable: check each time
                self._picklable.add(fn)

    def close(self) -> None:
        """Shut the executor down if it is the pool's own, without waiting for calls that
        run on after their tasks ended."""
        executor: Executor | None = self.executor
        if executor is None or not self.owns_executor:
            return
        self.executor = None
        running = sum(not f.done() for f in list(self.calls.values()))
        if running:
            logger.warning(
                "%d task function(s) still run in threads after their tasks ended; they were "
                "told to stop (run.canceled) and the pool does not wait for them",
                running,
            )
        executor.shutdown(wait=not running, cancel_futures=True)


def _discard(call: Future[Any]) -> None:
    """An executor call's outcome nobody takes: a coroutine it returned (a plain function
    returning ``some_async_def()``) is closed, not left to warn that it was never awaited."""
    state, error, value = future_fields(call)
    if state == FINISHED and error is None and isinstance(value, types.CoroutineType):
        value.close()
