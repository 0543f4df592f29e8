"""`WorkerPool`: a bounded set of long-lived workers that run tasks' lifecycles inline.

The private names of `_task` and `_semaphore` used here are their steps and fields for an owner
(`_setup`, `_cancel`, `_check_started`, `_outcome`; `_wait_all_released`, `_abort_waiters`): kept
private so that the public `Task` and `Semaphore` do not offer them to users.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import Executor
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar, TypeVarTuple, Unpack, overload

from ._compat import running_loop as _get_running_loop
from ._crew import Crew, log_broken
from ._definition import Definition, TaskOptions, _Recipes, check_id
from ._direct import DirectCrew
from ._errors import PoolStoppedError
from ._executor import ExecutorBridge
from ._group import Group, as_completed
from ._hooks import NO_HOOKS, StateHooks
from ._public import public_here
from ._ratelimit import RateLimiter
from ._run import _RUN
from ._semaphore import _Slots
from ._state import State
from ._stats import PoolStats, _Counts
from ._stream import MapResults, _MapRun, new_map
from ._task import Task, _PoolTask
from ._validate import at_least, flag, optional_seconds, shutdown_limits

__all__ = ["PoolStats", "WorkerPool"]

T = TypeVar("T")
R = TypeVar("R")
X = TypeVar("X")
Ts = TypeVarTuple("Ts")

_PENDING, _DONE, _FAILED, _CANCELED = State.PENDING, State.DONE, State.FAILED, State.CANCELED
_copy_context = contextvars.copy_context


class WorkerPool:
    """Run tasks with at most ``max_workers`` at once; ``submit`` waits for a free worker.

    The pool binds to the event loop it is first used on. Its workers are long-lived asyncio
    tasks that run each task's lifecycle inline (no asyncio task per task). Hooks given here
    apply to tasks whose definition has none. With ``retain_finished=False`` the pool forgets
    tasks once they end (``tasks()`` lists only those in progress); the counters in
    ``stats()`` stay exact either way.

    ``async with WorkerPool(n) as pool:`` waits for every task on exit, then stops the
    workers; if the body raises, the tasks are canceled first.

    A BaseException that is not an Exception, raised by a task's function, hooks,
    ``retry_on`` or ``backoff``, ends that task FAILED with it and, as asyncio.TaskGroup
    does with a child's, stops the pool and cancels its other tasks. KeyboardInterrupt and
    SystemExit go up out of the event loop (asyncio's way); any other (GeneratorExit, one
    of the application's) is logged with its traceback and raised, once, from the pool's
    next ``submit()``, ``wait()`` or ``shutdown()`` (``async with``'s exit included, unless
    it is the exception already on its way out of the block).

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

    def __init__(
        self,
        max_workers: int,
        *,
        hooks: StateHooks | None = None,
        retain_finished: bool = True,
        max_per_second: float | None = None,
        executor: Executor | None = None,
    ) -> None:
        at_least(max_workers, "max_workers", 1)
        if hooks is not None and not isinstance(hooks, StateHooks):
            raise TypeError(f"hooks must be a StateHooks, got {type(hooks).__name__}")
        self._max_workers = max_workers
        self._hooks = NO_HOOKS if hooks is None else hooks
        self._limiter = None if max_per_second is None else RateLimiter(max_per_second)
        self._retain = flag(retain_finished, "retain_finished")
        self._slots = _Slots(max_workers)  # held by each task from submit to its end
        self._counts = _Counts()  # facts the engine counts, from which stats() derives
        self._all: list[Task[Any]] = []  # every task, when retain_finished
        self._canceled_all = False
        # A BaseException that escaped a task and ended its worker, for the application
        # (see _broken and _raise_error)
        self._error: BaseException | None = None
        self._propagating: BaseException | None = None  # what __aexit__ was called with
        self._maps: weakref.WeakSet[_MapRun] = weakref.WeakSet()  # map runs, for stop()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bridge = bridge = ExecutorBridge(executor, max_workers)  # plain functions
        self._crew = crew = Crew(max_workers, self._counts, self._slots, bridge, self._broken)
        self._ready = crew.ready  # (for the engine: see _Owner)
        # Taken from it for the paths that use them once per task (submit(), the workers):
        self._remote = bridge.remote
        self._call_in_executor = bridge.call
        self._cancel_call = bridge.cancel
        self._check_picklable = bridge.check_picklable
        # What submit(definition) or submit(fn, *args, **options) runs (see _Recipes)
        recipes = _Recipes(self._check_picklable if self._remote else None)
        self._what_to_run = recipes.what_to_run
        self._made = recipes.made  # (read by submit(), the hot path)

    def __repr__(self) -> str:
        return (
            f"<WorkerPool max_workers={self._max_workers} active={self.active_workers} "
            f"total={self._counts.submitted} stopped={self._stopped}>"
        )

    # -- introspection ---------------------------------------------------------------------

    @property
    def max_workers(self) -> int:
        """How many tasks may be in progress at once."""
        return self._max_workers

    @property
    def active_workers(self) -> int:
        """Worker slots in use: tasks submitted and not yet ended."""
        return self._slots.acquired

    @property
    def available_workers(self) -> int:
        """Worker slots free right now."""
        return self._slots.available

    def is_stopped(self) -> bool:
        """True once the pool is stopped: it takes no more tasks."""
        return self._crew.stopped

    @property
    def _stopped(self) -> bool:
        return self._crew.stopped  # (one flag: the workers read it too)

    def stats(self) -> PoolStats:
        """The counters, O(1). From another thread it is read on the pool's loop, so the
        counters are a consistent snapshot.

        Returns:
            The counters and the pool's size, `PoolStats`."""
        return self._crew.call(self._stats)

    def _stats(self) -> PoolStats:
        direct = self._crew.direct
        counts = self._counts if direct is None else direct.counts_with(self._counts)
        return counts.snapshot(self._max_workers, self._slots.acquired, self._stopped)

    def tasks(self) -> list[Task[Any]]:
        """A copy of the pool's tasks: all submitted, or only those in progress when the
        pool was made with ``retain_finished=False``.

        Returns:
            The tasks, a new list."""
        return self._crew.call(self._tasks)

    def _tasks(self) -> list[Task[Any]]:
        in_progress = self._crew.in_progress()
        if not self._retain:
            return in_progress
        # every task kept, and the tasks of map() runs in progress (never kept: see map),
        # told by their id: their item's index, an int (every other task's is a str)
        return [*self._all, *(task for task in in_progress if task._id.__class__ is int)]

    # -- submitting --------------------------------------------------------------------------

    @overload
    async def submit(self, definition: Definition[T], /, *, id: str = ...) -> Task[T]: ...

    @overload
    async def submit(
        self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, **options: Unpack[TaskOptions]
    ) -> Task[T]: ...

    @overload
    async def submit(
        self, fn: Callable[[*Ts], T], /, *args: *Ts, **options: Unpack[TaskOptions]
    ) -> Task[T]: ...

    # (mypy wrongly finds that this does not take every call the *Ts overloads allow)
    async def submit(  # type: ignore[misc]
        self, definition: Any, /, *args: Any, id: str | None = None, **options: Any
    ) -> Task[Any]:
        """Start a task once a worker is free, and return it: for ``definition`` (its
        ``task_fn`` called with each attempt's `Run`), or, as ``Executor.submit``, to call
        ``fn(*args)`` at each attempt (retries too; no `Run`) with a `Definition`'s options.

        Waits while all workers are busy. If the caller is canceled while it waits, nothing
        is left behind. The definition of ``fn`` and its options is made once and kept for
        the next call, so a task per item costs about what a shared definition does.

        Args:
            definition: What the task runs; or ``fn``, the function to call.
            *args: ``fn``'s positional arguments (none with a definition).
            id: The task's own id, in place of the definition's.
            **options: With ``fn``: a `Definition`'s fields but ``id`` and ``task_fn``, as
                `Definition` checks them.

        Returns:
            The new task, PENDING.

        Raises:
            PoolStoppedError: The pool is stopped (first, once, the BaseException that
                stopped it, if one did).
            TypeError: ``definition`` is neither a `Definition` nor callable, or has
                arguments or options; ``fn`` cannot take ``len(args)`` positional arguments,
                or needs a keyword one; ``id`` is not a str; an option is unknown or of the
                wrong type.
            ValueError: An option is out of range.
        """
        if self._crew.stopped:  # (the _stopped property, inline: the hot path)
            self._raise_error()
            raise PoolStoppedError("the pool is stopped")
        if id is not None and id.__class__ is not str:
            check_id(id)  # (raises)
        arg: Any
        if options or self._remote:
            definition, arg = self._what_to_run(definition, args, options)
        elif definition.__class__ is Definition and not args:  # its task_fn(run)
            arg = _RUN
        else:  # fn(*args): the definition made at its first call (_what_to_run, inline)
            try:
                made = self._made.get(definition)
            except TypeError:  # unhashable: _what_to_run copes
                made = None
            if made is not None and made[0] is definition and made[2] <= len(args) <= made[3]:
                definition, arg = made[1], args
            else:
                definition, arg = self._what_to_run(definition, args, options)
        loop = self._loop
        if loop is None or loop is not _get_running_loop():  # _use_loop(), inline
            self._loop = self._crew.bind()
        if not self._slots.take_nowait():
            await self._take_slot()
        task: Task[Any] = _PoolTask()  # _new_task(), inline: the hot path
        task._setup(definition, self, _copy_context(), arg, id)  # (for its _Owner)
        self._enqueue(task)
        return task

    async def _take_slot(self) -> None:
        """Wait for a worker slot (FIFO among callers); PoolStoppedError if stopped."""
        if self._stopped:
            raise PoolStoppedError("the pool is stopped")
        await self._slots.acquire()
        if self._stopped:
            self._slots.release()
            raise PoolStoppedError("the pool is stopped")

    async def submit_batch(self, definitions: Iterable[Definition[Any]]) -> list[Task[Any]]:
        """Submit each definition in order, waiting for workers as ``submit`` does.

        Args:
            definitions: The definitions to submit.

        Returns:
            The new tasks, in the order of ``definitions``.

        Raises:
            TypeError: An item of ``definitions`` is not a `Definition`.
            PoolStoppedError: The pool is stopped, or stopped while this waited.
        """
        batch = self._check_all(definitions)
        return [await self.submit(d) for d in batch]

    async def submit_with_err_group(self, definitions: Iterable[Definition[Any]]) -> None:
        """Run the definitions as a group: the first failure cancels the rest.

        Tasks of the group not started never start, definitions not yet submitted never
        are, and once every task of the group has ended the first failure is raised: the
        task's own exception (``TaskCanceledError`` for a task canceled from outside). If
        the caller is canceled, the group's tasks are canceled too.

        Args:
            definitions: The definitions of the group's tasks.

        Raises:
            TypeError: An item of ``definitions`` is not a `Definition`.
            PoolStoppedError: The pool stopped before every definition was submitted.
        """
        await self.gather(self._check_all(definitions))

    # Typed by the items' result type T; items of several types that share no T (such as
    # tasks of different types: Task is invariant) fall back to list[Any].
    @overload
    async def gather(
        self,
        items: Iterable[Definition[T] | Task[T]],
        *,
        return_exceptions: Literal[False] = ...,
    ) -> list[T]: ...

    @overload
    async def gather(
        self, items: Iterable[Definition[T] | Task[T]], *, return_exceptions: bool
    ) -> list[T | BaseException]: ...

    @overload
    async def gather(
        self, items: Iterable[Definition[Any] | Task[Any]], *, return_exceptions: bool = ...
    ) -> list[Any]: ...

    async def gather(
        self,
        items: Iterable[Definition[Any] | Task[Any]],
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run definitions through the pool (and wait for tasks given as they are); return the
        results in order.

        By default the first failure cancels the rest (those not started never start, and
        no more definitions are submitted) and, once all have ended, is raised: the task's
        own exception. With ``return_exceptions=True`` nothing is canceled and each failure
        takes its place in the list (a ``TaskCanceledError`` for a canceled task), as with
        ``asyncio.gather``. If the caller is canceled, the tasks are canceled too.

        Args:
            items: Definitions to submit, in order, each once a worker is free, and tasks
                already started, to wait for.
            return_exceptions: Put each failure in the list in place of its result (True),
                or raise the first (False).

        Returns:
            The results (or, with ``return_exceptions``, the exceptions), in the order of
            ``items``.

        Raises:
            TypeError: An item is neither a `Definition` nor a `Task`, or
                ``return_exceptions`` is not a bool.
            InvalidStateError: A task given was never started.
            PoolStoppedError: The pool stopped before every definition was submitted (raised
                once those submitted have ended).
        """
        flag(return_exceptions, "return_exceptions")
        batch = self._check_all(items, tasks_too=True)
        group = Group(fail_fast=not return_exceptions)
        tasks: list[Task[Any]] = []
        stopped: PoolStoppedError | None = None
        try:
            for item in batch:
                if isinstance(item, Definition):
                    if group.failed is not None:
                        break
                    self._use_loop()
                    try:
                        await self._take_slot()
                    except PoolStoppedError as exc:
                        stopped = exc  # those submitted still run (stop()): wait for them
                        break
                    if group.failed is not None:  # it failed while we waited: submit no more
                        self._slots.release()
                        break
                    item = self._new_task(item)
                    self._enqueue(item)
                group.add(item)
                tasks.append(item)
            await group.wait()
        except BaseException:
            group.cancel()
            raise
        if group.failed is not None:
            group.failed.result()  # raises the task's own exception
        if stopped is not None:
            raise stopped  # the group could not be run whole
        return [task._outcome for task in tasks]

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
    ) -> MapResults[R]: ...

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
    ) -> MapResults[R]: ...

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
    ) -> MapResults[R | BaseException]: ...

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
    ) -> MapResults[R | BaseException]: ...

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
    ) -> MapResults[Any]:
        """Call ``fn(item)`` for each item, each call a task of the pool; stream the results.

        ``items`` may be any iterable or async iterable, endless too. The next item is read
        only when a worker is free and fewer than ``window`` items (default: twice
        ``max_workers``) are in progress or finished but not yet yielded, so memory stays
        bounded whatever the input. Results come in input order (``ordered=True``) or as
        they finish. The first failure (after its retries) cancels the rest and is raised,
        the task's own exception; with ``return_exceptions=True`` failures are yielded in
        place of results and the run goes on.

        ``options`` are those of a `Definition` (``max_duration``, ``max_retries``,
        ``backoff``, ``retry_on``, ``total_timeout``, ``delay``, ``hooks``); each task's id is
        its item's index. ``max_per_second`` limits attempt starts of this run (on top of the
        pool's own limit). Leaving the loop early, or the consumer being canceled, cancels
        the tasks in progress and reads no more input.

        Args:
            fn: The function to call with each item; a plain function or ``async def``.
            items: The input: any iterable or async iterable.
            ordered: Yield the results in input order (True) or as they finish (False).
            return_exceptions: Yield each failure in place of its result (True), or raise
                the first and cancel the rest (False).
            window: At most this many items in progress or finished but not yet yielded;
                at least 1. None for twice ``max_workers``.
            max_per_second: A rate limit on this run's attempt starts, or None for none.
            **options: Options of a `Definition` for each task (not ``id`` nor ``task_fn``,
                which the map sets itself).

        Returns:
            The results, to iterate with ``async for`` (also an async context manager).
            Nothing runs until the first result is asked for.

        Raises:
            TypeError: ``items`` is not an iterable or async iterable, ``ordered`` or
                ``return_exceptions`` is not a bool, ``window`` is not an int, or
                ``options`` name ``id`` or ``task_fn``.
            ValueError: ``window`` is below 1.
        """
        return new_map(self, fn, items, ordered, return_exceptions, window, max_per_second, options)

    def as_completed(
        self, tasks: Iterable[Task[T]], *, timeout: float | timedelta | None = None
    ) -> AsyncIterator[Task[T]]:
        """Yield the tasks as they end (whatever their end), like ``asyncio.as_completed``.

        ``TimeoutError`` if ``timeout`` seconds pass before all have ended (nothing is
        canceled).

        Args:
            tasks: The tasks to wait for.
            timeout: Seconds (or a ``timedelta``) for all of them to end, or None for no
                limit.

        Returns:
            An async iterator of the tasks, each as it ends.

        Raises:
            TimeoutError: ``timeout`` passed before every task had ended.
        """
        return as_completed(tasks, timeout)

    def _check_all(self, items: Iterable[Any], tasks_too: bool = False) -> list[Any]:
        """All the definitions (and for gather, tasks started), checked before any is run."""
        batch, what = list(items), "a Definition or Task" if tasks_too else "a Definition"
        for i, item in enumerate(batch):
            if tasks_too and isinstance(item, Task):
                item._check_started()
            elif not isinstance(item, Definition):
                name = "items" if tasks_too else "definitions"
                raise TypeError(f"{name}[{i}] is a {type(item).__name__}, not {what}")
            elif self._remote:
                self._check_picklable(item)
        return batch

    def _use_loop(self) -> asyncio.AbstractEventLoop:
        """The pool's loop: the running one (the pool moves to it if it is idle)."""
        loop = self._loop
        if loop is None or loop is not _get_running_loop():
            loop = self._loop = self._crew.bind()
        return loop

    def _serve_threads(self, loop: asyncio.AbstractEventLoop) -> DirectCrew | None:
        """Bind the pool, idle, to the blocking face's loop in a thread (Crew.serve_threads)."""
        self._loop = loop
        return self._crew.serve_threads(loop, self._hooks is NO_HOOKS and self._limiter is None)

    def _new_task(
        self, definition: Definition[T], arg: Any = _RUN, task_id: str | None = None
    ) -> Task[T]:
        """A task of this pool, PENDING but not yet taken in (see `_enqueue`); any thread
        may make one. It runs in a copy of the caller's context variables, as an asyncio
        task would. ``arg`` and ``task_id`` are `Task._setup`'s."""
        task: Task[T] = _PoolTask()
        task._setup(definition, self, _copy_context(), arg, task_id)  # (for an _Owner)
        return task

    def _enqueue(self, task: Task[Any], keep: bool = True) -> None:
        """Take in a new task (in a slot taken for it): count it, fire its first hooks, and
        queue it for a worker. On the loop's thread."""
        self._counts.submitted += 1
        if self._retain and keep:
            self._all.append(task)
        crew = self._crew
        crew.ready.append(task)  # (no worker takes it before the hooks below have run)
        if not crew.waking:
            crew.wake_one()
        # (Task's own, for its owner; its hooks read here: no call for a task with none)
        if task._hooks is not NO_HOOKS:
            task._announce(created=True)

    def _broken(self, task: Task[Any] | None, error: BaseException | None) -> None:
        """A worker ended with ``error``, a BaseException that ``task``'s function, hook,
        ``retry_on`` or ``backoff`` raised (the task ended FAILED with it), or (both None)
        was canceled from outside or broke with tasks in progress. As asyncio.TaskGroup does
        with a child's BaseException, the pool stops and cancels its other tasks; the error
        is logged with its traceback and raised, once, from the pool's next ``submit()``,
        ``wait()`` or ``shutdown()`` (``async with``'s exit included)."""
        if error is not None:
            log_broken(task, error)
            # (The blocking face has no application loop to raise it in: its waiters got it.)
            if self._error is None and not self._slots.shared:
                self._error = error
        self._stop()
        self._cancel_all()

    def _raise_error(self) -> None:
        """Raise the BaseException that stopped the pool, if there is one not yet raised."""
        error = self._error
        if error is not None:
            self._error = None
            if error is not self._propagating:  # (already on its way up through __aexit__)
                raise error

    # -- waiting and stopping --------------------------------------------------------------

    async def wait(self, timeout: float | timedelta | None = None) -> None:
        """Wait until every submitted task has ended and its worker slot is free.

        ``TimeoutError`` after ``timeout`` seconds; nothing is canceled.

        Args:
            timeout: Seconds (or a ``timedelta``) to wait at most, or None for no limit.

        Raises:
            TimeoutError: ``timeout`` passed first; the tasks keep going.
            RuntimeError: The pool's event loop was closed with tasks in progress.
        """
        limit = optional_seconds(timeout, "timeout", allow_zero=True)
        self._crew.check_not_orphaned()
        if limit is None:
            await self._slots._wait_all_released()
        else:
            async with asyncio.timeout(limit):
                await self._slots._wait_all_released()
        self._raise_error()

    def stop(self) -> None:
        """Stop accepting tasks; those submitted still run. Callers waiting in ``submit``
        get ``PoolStoppedError``. Safe from any thread."""
        self._crew.call(self._stop)

    def _stop(self) -> None:
        if self._crew.stopped:
            return
        self._crew.stop()
        self._slots._abort_waiters(PoolStoppedError("the pool is stopped"))
        for run in list(self._maps):
            run.end_feed()

    async def shutdown(
        self,
        *,
        cancel: bool = True,
        timeout: float | timedelta | None = None,
        grace: float | timedelta | None = None,
    ) -> None:
        """Stop, cancel the tasks in progress when ``cancel``, and wait for the workers.

        With ``grace`` seconds (and ``cancel``), the tasks get that long to end by themselves
        before what is left is canceled: drain, then cancel, in one call. ``TimeoutError``
        after ``timeout`` seconds, grace included (the workers keep going).

        Args:
            cancel: Cancel the tasks in progress (True), or wait for them to end (False).
            timeout: Seconds (or a ``timedelta``) to wait at most, grace included, or None
                for no limit.
            grace: Seconds (or a ``timedelta``) the tasks get to end by themselves before
                they are canceled; needs ``cancel``, and no longer than ``timeout``.

        Raises:
            TimeoutError: ``timeout`` passed first; the pool is stopped, the workers keep
                going.
            TypeError: ``cancel`` is not a bool, or ``timeout`` or ``grace`` not a number of
                seconds or a ``timedelta``.
            ValueError: ``grace`` without ``cancel``, longer than ``timeout``, or a negative
                ``timeout`` or ``grace``.
            RuntimeError: The pool's event loop was closed with tasks in progress.
        """
        limit, drain = shutdown_limits(cancel, timeout, grace)
        self._crew.check_not_orphaned()
        self._stop()
        async with asyncio.timeout(limit):
            if cancel:
                if drain:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(drain):
                            await self._slots._wait_all_released()
                self._cancel_all()
            await self._slots._wait_all_released()
            # The map runs' feeders, stopped, end within a turn or two: their consumers are
            # then told (results, then PoolStoppedError) before this returns, and before the
            # blocking face closes its loop under them.
            feeders = [run.feeder for run in self._maps if run.feeder and not run.feeder.done()]
            if feeders:
                await asyncio.wait(feeders)
        # Every task has ended and the pool is stopped: the workers end within a turn of the
        # loop (a timeout of 0 on an idle pool is not a reason to leave them behind).
        workers = self._crew.workers
        if workers:
            await asyncio.wait(list(workers))
        self._bridge.close()
        if self._crew.direct is not None:
            self._crew.direct.close()
        self._raise_error()

    def _cancel_all(self) -> None:
        self._canceled_all = True  # (the blocking face cancels what it hands over later)
        for task in self._crew.in_progress():
            task._cancel()

    async def __aenter__(self) -> WorkerPool:
        """``async with``: the pool itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``async with``: shut down, waiting for every task (canceling them first if
        the body raised)."""
        self._propagating = exc  # (not raised again over itself: see _raise_error)
        try:
            await self.shutdown(cancel=exc_type is not None)
        except BaseException:
            self._cancel_all()
            raise
        finally:
            self._propagating = None


public_here(globals(), ["WorkerPool"], "asynctasklib")  # (see `_public`)
