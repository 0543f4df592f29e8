"""The blocking face: the same pool, tasks and semaphore for code without an event loop.

A blocking `WorkerPool` owns an asynchronous one and an event loop that runs it in a
background thread (a *portal*, as anyio calls it). Every method that waits hands a coroutine
to that loop and blocks the calling thread until it is done; everything else is the
asynchronous pool's own thread-safe methods. So the lifecycle, retries, hooks, timeouts and
counters are those of the one engine; this module moves calls between threads, and hands
the plain tasks that need no loop to the pool's direct crew (`_direct`), which drives them
in threads with the same engine's steps.

It uses private names of the asynchronous pool, its tasks and map runs (`_what_to_run`,
`_new_task`, `_enqueue`, `_slots`, `_next_batch`...): it is the same pool seen from
threads, and needs its intake split in steps (a slot taken in the caller's thread, the task
taken in on the loop) that the asynchronous API has no reason to show its users.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import weakref
from collections import deque
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from concurrent.futures import Executor
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, TypeVarTuple, Unpack, overload

from ._blocking_task import Task
from ._definition import Definition, TaskOptions, check_id
from ._direct import DirectCrew, DirectTask, runs_direct
from ._direct_map import DirectMap, map_directly
from ._errors import PoolStoppedError
from ._group import as_completed_in_thread
from ._hooks import StateHooks
from ._pool import PoolStats
from ._pool import WorkerPool as _AsyncPool
from ._portal import Portal, describe
from ._task import Task as _AsyncTask
from ._threads import check_not_in_loop
from ._validate import flag, shutdown_limits

__all__ = ["MapIterator", "WorkerPool"]

logger = logging.getLogger("asynctasklib")

T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X")
Ts = TypeVarTuple("Ts")


class WorkerPool:
    """`asynctasklib.WorkerPool` for plain threads: the methods that wait block instead.

    The pool runs on an event loop in a background thread, started on first use and stopped
    by ``shutdown()``, on leaving ``with``, or at interpreter exit. Task functions may be
    plain functions (run in the pool's threads, or on the executor given) or ``async def``
    (run on that loop). A plain function's task that needs nothing of the loop (no hooks,
    rate limit or executor given; no delay or total_timeout) runs whole in one of those
    threads, the loop not involved; hooks and done callbacks run on the loop's thread.
    Calling a blocking method from a running event loop raises RuntimeError.

    A blocking call waiting on that loop when another thread's ``shutdown()`` stops it
    raises ``PoolStoppedError`` (``wait()`` returns, as every task has ended then).

    A pool garbage-collected without ``shutdown()`` warns (``ResourceWarning: unclosed
    blocking.WorkerPool ...``, as an unclosed file does); its tasks in progress run to their
    end, then its thread, event loop and executor are freed.

    Args:
        max_workers: How many tasks may be in progress at once; at least 1.
        hooks: State hooks for tasks whose definition has none.
        retain_finished: Keep ended tasks in ``tasks()`` (True) or forget them (False).
        max_per_second: A rate limit on attempts started per second, or None for none.
        executor: Where plain (sync) task functions run; None for the loop's default
            thread pool.

    Raises:
        TypeError: ``max_workers`` is not an int, ``hooks`` not a `StateHooks`, or
            ``retain_finished`` not a bool.
        ValueError: ``max_workers`` is below 1.
    """

    # This face is the async pool's other half, not a client: it takes slots in the calling
    # threads, makes tasks there and has the loop take them in by the batch, so it calls
    # the pool's private steps (_new_task, _enqueue, _check_all, _stop...) by design.

    def __init__(
        self,
        max_workers: int,
        *,
        hooks: StateHooks | None = None,
        retain_finished: bool = True,
        max_per_second: float | None = None,
        executor: Executor | None = None,
    ) -> None:
        self._pool = _AsyncPool(
            max_workers,
            hooks=hooks,
            retain_finished=retain_finished,
            max_per_second=max_per_second,
            executor=executor,
        )
        self._portal: Portal | None = None
        self._lock = threading.Lock()
        # Tasks submitted from threads, waiting for the loop to take them in; the loop is
        # woken once per batch, not once per task.
        self._incoming: deque[_AsyncTask[Any]] = deque()
        self._draining = False
        self._shutdown_lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, Any] | None = None  # set with the portal
        # Where plain functions that need no event loop run, from the portal's start: in
        # threads of their own, not through the loop (see _direct). None if the pool has
        # hooks, a rate limit or an executor given.
        self._direct: DirectCrew | None = None

    def __repr__(self) -> str:
        return describe(self._pool)

    def _call(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        try:
            portal = self._start_portal(what)
        except BaseException:
            coro.close()
            raise
        return portal.call(what, coro)

    def _start_portal(self, what: str) -> Portal:
        portal = self._portal
        if portal is not None:
            return portal
        if self._pool.is_stopped():  # shut down (or stopped before any use): no loop to start
            raise PoolStoppedError("the pool is stopped")
        check_not_in_loop(what)
        with self._lock:
            portal = self._portal
            if portal is None:
                portal = Portal()
                # Bound before it is published: a thread that finds the portal (without the
                # lock, above) makes tasks of the pool on its loop at once.
                pool = self._pool
                self._direct = pool._serve_threads(portal.loop)  # (idle: nothing submitted yet)
                self._portal = portal
                # Dropped without shutdown(): free the portal (it, and its thread, hold no
                # reference to this object, only to the async pool).
                self._finalizer = weakref.finalize(self, _dropped, portal, pool)
                self._finalizer.atexit = False  # (at exit, _close_portals does it, silently)
        return portal

    # -- submitting ------------------------------------------------------------------------

    @overload
    def submit(self, definition: Definition[T], /, *, id: str = ...) -> Task[T]: ...

    @overload
    def submit(
        self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, **options: Unpack[TaskOptions]
    ) -> Task[T]: ...

    @overload
    def submit(
        self, fn: Callable[[*Ts], T], /, *args: *Ts, **options: Unpack[TaskOptions]
    ) -> Task[T]: ...

    # (mypy wrongly finds that this does not take every call the *Ts overloads allow)
    def submit(  # type: ignore[misc]
        self, definition: Any, /, *args: Any, id: str | None = None, **options: Any
    ) -> Task[Any]:
        """Start a task once a worker is free, and return it: for ``definition``, or to call
        ``fn(*args)`` with a `Definition`'s options (see
        `asynctasklib.WorkerPool.submit`).

        Blocks the calling thread while all workers are busy (first in, first out with
        every other caller).

        Args:
            definition: What the task runs; or ``fn``, the function to call.
            *args: ``fn``'s positional arguments (none with a definition).
            id: The task's own id, in place of the definition's.
            **options: With ``fn``: a `Definition`'s fields but ``id`` and ``task_fn``.

        Returns:
            The new task.

        Raises:
            PoolStoppedError: The pool is stopped, or stopped while the caller waited.
            TypeError: ``definition`` is neither a `Definition` nor callable, or the
                arguments or options are refused (see `asynctasklib.WorkerPool.submit`).
            ValueError: An option is out of range, as `Definition` says.
            RuntimeError: Called from a running event loop.
        """
        pool = self._pool
        check_id(id)
        definition, arg = pool._what_to_run(definition, args, options)
        if pool._stopped:
            raise PoolStoppedError("the pool is stopped")
        portal = self._start_portal("submit()")
        check_not_in_loop("submit()")
        # The slot is taken here, in this thread (FIFO with every other waiter); the loop
        # only has to take the task in.
        pool._slots._acquire_blocking(None)
        if pool._stopped:
            pool._slots.release()
            raise PoolStoppedError("the pool is stopped")
        direct = self._direct
        if direct is not None and runs_direct(definition):
            return Task(self._submit_direct(direct, definition, arg, id))
        task = pool._new_task(definition, arg, id)
        with self._lock:
            self._incoming.append(task)
            wake = not self._draining
            self._draining = True
        if wake:
            portal.loop.call_soon_threadsafe(self._drain)
        return Task(task)

    def _submit_direct(
        self, direct: DirectCrew, definition: Definition[Any], arg: Any, task_id: str | None
    ) -> DirectTask:
        """A task for the direct crew's threads (in a slot taken for it)."""
        pool = self._pool
        task: DirectTask = DirectTask()
        task._crew = direct
        task._setup(definition, direct, contextvars.copy_context(), arg, task_id)
        if pool._retain:
            pool._all.append(task)
        direct.submit(task)
        if pool._canceled_all:  # submitted as shutdown(cancel=True) began: cancel it
            task._cancel()
        return task

    def _drain(self) -> None:
        """Take in the tasks submitted from threads (on the loop's thread)."""
        while True:
            with self._lock:
                if not self._incoming:
                    self._draining = False
                    return
                batch = list(self._incoming)
                self._incoming.clear()
            pool = self._pool
            for task in batch:
                try:
                    pool._enqueue(task)
                except BaseException:  # from a hook, not ours: the task ended FAILED with it
                    logger.exception("a hook of task %r raised", task.id)
                if pool._canceled_all:  # submitted as shutdown(cancel=True) began: cancel it
                    task._cancel()

    def submit_batch(self, definitions: Iterable[Definition[Any]]) -> list[Task[Any]]:
        """Submit each definition in order, blocking for workers as ``submit`` does.

        Args:
            definitions: The definitions to submit; all are checked before any is.

        Returns:
            The new tasks, in the order of ``definitions``.

        Raises:
            TypeError: An item of ``definitions`` is not a `Definition` (nothing is
                submitted).
        """
        return [self.submit(definition) for definition in self._pool._check_all(definitions)]

    def submit_with_err_group(self, definitions: Iterable[Definition[Any]]) -> None:
        """Run the definitions as a group; the first failure cancels the rest and is raised
        once all have ended (see `asynctasklib.WorkerPool.submit_with_err_group`).

        Blocks the calling thread until every task of the group has ended; returns None
        when every task succeeds.

        Args:
            definitions: The definitions of the group's tasks.

        Raises:
            PoolStoppedError: The pool is stopped, or stopped before the group was submitted
                whole.
            RuntimeError: Called from a running event loop.
        """
        self._call("submit_with_err_group()", self._pool.submit_with_err_group(definitions))

    @overload
    def gather(
        self,
        items: Iterable[Definition[T] | Task[T]],
        *,
        return_exceptions: Literal[False] = ...,
    ) -> list[T]: ...

    @overload
    def gather(
        self, items: Iterable[Definition[T] | Task[T]], *, return_exceptions: bool
    ) -> list[T | BaseException]: ...

    @overload
    def gather(
        self, items: Iterable[Definition[Any] | Task[Any]], *, return_exceptions: bool = ...
    ) -> list[Any]: ...

    def gather(
        self, items: Iterable[Definition[Any] | Task[Any]], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Run the definitions (and wait for the tasks); their results in order (see
        `asynctasklib.WorkerPool.gather`).

        Blocks the calling thread until every task has ended. By default the first failure
        cancels the rest and, once all have ended, is raised: the task's own exception.

        Args:
            items: Definitions to submit, in order, each once a worker is free, and tasks
                of this pool already started, to wait for.
            return_exceptions: Put each failure in the list in place of its result (True),
                or raise the first (False).

        Returns:
            The results (or, with ``return_exceptions``, the exceptions), in the order of
            ``items``.

        Raises:
            TypeError: An item is neither a `Definition` nor a `Task`, or
                ``return_exceptions`` is not a bool.
            PoolStoppedError: The pool is stopped, or stopped before every definition was
                submitted (raised once those submitted have ended).
            RuntimeError: Called from a running event loop.
        """
        flag(return_exceptions, "return_exceptions")  # (before the loop starts)
        unwrapped = [item._task if isinstance(item, Task) else item for item in items]
        return self._call(
            "gather()", self._pool.gather(unwrapped, return_exceptions=return_exceptions)
        )

    # With return_exceptions=True a failure is yielded in place of its result.
    @overload
    def map(
        self,
        fn: Callable[[X], Awaitable[R]],
        items: Iterable[X] | AsyncIterable[X],
        *,
        ordered: bool = ...,
        return_exceptions: Literal[False] = ...,
        window: int | None = ...,
        max_per_second: float | None = ...,
        **options: Any,
    ) -> MapIterator[R]: ...

    @overload
    def map(
        self,
        fn: Callable[[X], R],
        items: Iterable[X] | AsyncIterable[X],
        *,
        ordered: bool = ...,
        return_exceptions: Literal[False] = ...,
        window: int | None = ...,
        max_per_second: float | None = ...,
        **options: Any,
    ) -> MapIterator[R]: ...

    @overload
    def map(
        self,
        fn: Callable[[X], Awaitable[R]],
        items: Iterable[X] | AsyncIterable[X],
        *,
        ordered: bool = ...,
        return_exceptions: bool,
        window: int | None = ...,
        max_per_second: float | None = ...,
        **options: Any,
    ) -> MapIterator[R | BaseException]: ...

    @overload
    def map(
        self,
        fn: Callable[[X], R],
        items: Iterable[X] | AsyncIterable[X],
        *,
        ordered: bool = ...,
        return_exceptions: bool,
        window: int | None = ...,
        max_per_second: float | None = ...,
        **options: Any,
    ) -> MapIterator[R | BaseException]: ...

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool = True,
        return_exceptions: bool = False,
        window: int | None = None,
        max_per_second: float | None = None,
        **options: Any,
    ) -> MapIterator[Any]:
        """``fn(item)`` for each item through the pool, results as a plain iterator (see
        `asynctasklib.WorkerPool.map`). Use it in a ``with`` block, or call ``close()``, to
        stop the run early.

        Each ``next()`` blocks the calling thread until the next result is ready.

        Args:
            fn: The function to call with each item; a plain function or ``async def``.
            items: The input: any iterable or async iterable.
            ordered: Return the results in input order (True) or as they finish (False).
            return_exceptions: Return each failure in place of its result (True), or raise
                the first and cancel the rest (False).
            window: At most this many items in progress or finished but not yet returned;
                at least 1. None for twice ``max_workers``.
            max_per_second: A rate limit on this run's attempt starts, or None for none.
            **options: Options of a `Definition` for each task (not ``id`` nor ``task_fn``,
                which the map sets itself).

        Returns:
            The results, a plain iterator (also a context manager). Nothing runs until the
            first ``next()``.

        Raises:
            TypeError: ``items`` is not an iterable or async iterable, ``ordered`` or
                ``return_exceptions`` is not a bool, ``window`` is not an int, or
                ``options`` name ``id`` or ``task_fn``.
            ValueError: ``window`` is below 1.
        """
        results = self._pool.map(
            fn,
            items,
            ordered=ordered,
            return_exceptions=return_exceptions,
            window=window,
            max_per_second=max_per_second,
            **options,
        )
        return MapIterator(self, results)

    def as_completed(
        self, tasks: Iterable[Task[T]], *, timeout: float | timedelta | None = None
    ) -> Iterator[Task[T]]:
        """Yield the tasks as they end; ``TimeoutError`` if ``timeout`` seconds pass first
        (see `asynctasklib.WorkerPool.as_completed`).

        Each ``next()`` blocks the calling thread until another task has ended; nothing is
        canceled.

        Args:
            tasks: The tasks (blocking `Task` handles) to wait for.
            timeout: Seconds (or a ``timedelta``) for all of them to end; None, or one above
                ``threading.TIMEOUT_MAX``, for no limit.

        Returns:
            An iterator of the tasks, each as it ends.

        Raises:
            TimeoutError: ``timeout`` passed before every task had ended (raised by
                ``next()``).
            RuntimeError: Iterated from a running event loop.
        """
        return as_completed_in_thread(tasks, Task, lambda task: task._task, timeout)

    # -- waiting and stopping --------------------------------------------------------------

    def wait(self, timeout: float | timedelta | None = None) -> None:
        """Block until every submitted task has ended; ``TimeoutError`` after ``timeout``.

        Returns at once after ``shutdown()``, and when another thread's ``shutdown()`` stops
        the pool's loop during the wait (every task has ended then).

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most, or None for no limit.

        Raises:
            TimeoutError: ``timeout`` passed first; nothing is canceled, the tasks keep
                going.
            PoolStoppedError: The pool's loop stopped otherwise (the interpreter's exit)
                with tasks in progress.
            RuntimeError: Called from a running event loop.
        """
        if self._portal is None:
            return
        try:
            self._call("wait()", self._pool.wait(timeout))
        except PoolStoppedError:
            # The loop stopped under the wait: a shutdown() ends every task before that, so
            # the wait is over; only a loop stopped otherwise (the interpreter's exit) can
            # leave tasks behind.
            if self._pool.active_workers:
                raise

    def stop(self) -> None:
        """Stop accepting tasks; those submitted still run."""
        self._pool.stop()

    def shutdown(
        self,
        *,
        cancel: bool = True,
        timeout: float | timedelta | None = None,
        grace: float | timedelta | None = None,
    ) -> None:
        """Stop, cancel the tasks in progress when ``cancel`` (after ``grace`` seconds to end
        by themselves, if given), wait for them, and stop the background loop and its thread.
        ``TimeoutError`` after ``timeout`` (then the loop keeps running; call again to
        finish).

        Blocks the calling thread; one call at a time (a second one finds it done).

        Args:
            cancel: Cancel the tasks in progress (True), or wait for them to end (False).
            timeout: Seconds (or a ``timedelta``) to wait at most, grace included, or None
                for no limit.
            grace: Seconds (or a ``timedelta``) the tasks get to end by themselves before
                they are canceled; needs ``cancel``, and no longer than ``timeout``.

        Raises:
            TimeoutError: ``timeout`` passed first; the pool is stopped, its loop keeps
                running (call again to finish).
            TypeError: ``cancel`` is not a bool, or ``timeout`` or ``grace`` not a number of
                seconds or a ``timedelta``.
            ValueError: ``grace`` without ``cancel``, longer than ``timeout``, or a negative
                ``timeout`` or ``grace``.
            RuntimeError: Called from a running event loop.
        """
        shutdown_limits(cancel, timeout, grace)  # bad arguments fail here, loop or not
        check_not_in_loop("shutdown()")
        with self._shutdown_lock:  # one at a time: the second finds it done
            portal = self._portal
            if portal is None:
                self._pool.stop()
                return
            try:
                self._call(
                    "shutdown()", self._pool.shutdown(cancel=cancel, timeout=timeout, grace=grace)
                )
            except PoolStoppedError:
                # The loop stopped under this call, or before it (the interpreter's exit):
                # it ended every task of the pool as it stopped. Finish here, once the
                # loop's thread is gone (nothing else touches the pool then).
                portal.close()
                self._pool._stop()
                self._pool._bridge.close()
                if self._direct is not None:
                    self._direct.cancel_all()
                    self._direct.close()
            with self._lock:
                self._portal = None
            portal.close()
            if self._finalizer is not None:
                self._finalizer.detach()  # shut down: nothing for it to free, or warn of

    def __enter__(self) -> WorkerPool:
        """``with``: the pool itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``with``: shut down, waiting for every task (canceling them first if the
        body raised)."""
        self.shutdown(cancel=exc_type is not None)

    # -- introspection ---------------------------------------------------------------------

    @property
    def max_workers(self) -> int:
        """How many tasks may be in progress at once."""
        return self._pool.max_workers

    @property
    def active_workers(self) -> int:
        """Worker slots in use: tasks submitted and not yet ended."""
        return self._pool.active_workers

    @property
    def available_workers(self) -> int:
        """Worker slots free right now."""
        return self._pool.available_workers

    def is_stopped(self) -> bool:
        """True once the pool is stopped: it takes no more tasks."""
        return self._pool.is_stopped()

    def stats(self) -> PoolStats:
        """The counters, O(1); read on the pool's loop while it runs, so they are a
        consistent snapshot.

        Returns:
            A `PoolStats` that counts every submitted task in exactly one state.
        """
        return self._pool.stats()

    def tasks(self) -> list[Task[Any]]:
        """Handles of the pool's tasks: all submitted, or only those in progress when the
        pool was made with ``retain_finished=False`` (see `asynctasklib.WorkerPool.tasks`).

        Returns:
            A new list of blocking `Task` handles.
        """
        return [Task(task) for task in self._pool.tasks()]


def _dropped(portal: Portal, pool: _AsyncPool) -> None:
    """A blocking pool garbage-collected without ``shutdown()``: wind it down (its loop ends
    the direct crew as it shuts the pool down; a loop stopped already cannot)."""
    portal.dropped(pool)
    direct = pool._crew.direct
    if direct is not None and portal.closing:
        direct.close(wait=False)


class MapIterator(Generic[R]):
    """The results of a blocking ``pool.map``, one per ``next()``.

    `WorkerPool.map` makes it; nothing runs until the first ``next()``. Leaving
    ``with pool.map(...) as results:``, or ``close()``, stops the run.

    Args:
        pool: The blocking pool the run goes through.
        results: The asynchronous pool's `MapResults` for the run.
    """

    __slots__ = ("_direct", "_pool", "_ready", "_results")

    def __init__(self, pool: WorkerPool, results: Any) -> None:
        self._pool = pool
        self._results = results
        self._ready: deque[R] = deque()  # results fetched, not yet returned
        self._direct: DirectMap | None = None  # a run in this thread (see _direct_map)

    def __iter__(self) -> Iterator[R]:
        """``for``: the iterator itself."""
        return self

    def __next__(self) -> R:
        """The next result, blocking the calling thread until it is ready; the first failure
        is raised instead, and ``StopIteration`` once every result has been returned."""
        direct = self._direct
        if direct is not None:
            return direct.next()  # type: ignore[no-any-return]
        ready = self._ready
        if not ready:
            results = self._results
            if results._items is not None:  # the first next(): maybe a run in this thread
                self._direct = direct = map_directly(self._pool, results)
                if direct is not None:
                    return direct.next()  # type: ignore[no-any-return]
            # One trip to the loop for every result ready by then (at most a window's worth:
            # the memory stays bounded), not one per result.
            limit = self._results._run.window
            try:
                ready.extend(self._pool._call("map()", self._results._next_batch(limit)))
            except StopAsyncIteration:
                raise StopIteration from None
        return ready.popleft()

    def close(self) -> None:
        """Stop the run: cancel the tasks in progress, read no more input."""
        self._ready.clear()
        if self._direct is not None:
            self._direct.close()
            return
        if self._pool._portal is None:  # nothing has run yet (or ever will): just end it
            self._results._abandon()
            return
        # (if the pool's loop stops meanwhile, the run stops with it: nothing left to stop)
        with contextlib.suppress(PoolStoppedError):
            self._pool._call("map().close()", self._results.aclose())

    def __del__(self) -> None:
        direct = self._direct
        if direct is not None and not direct.stopped:  # (the loop path's: MapResults')
            direct.dropped()

    def __enter__(self) -> MapIterator[R]:
        """``with``: the iterator itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``with``: stop the run, as ``close()`` does."""
        self.close()
