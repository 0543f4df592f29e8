"""``pool.map``: a function over any iterable or async iterable, through the pool, streamed."""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._compat import running_loop as _get_running_loop
from ._definition import Definition
from ._errors import PoolStoppedError
from ._public import public_here
from ._ratelimit import Limiter, RateLimiter, _Both
from ._state import State
from ._task import Task, _PoolTask
from ._validate import at_least, flag

if TYPE_CHECKING:
    import weakref

    from ._crew import Crew
    from ._semaphore import _Slots

__all__ = ["MapResults"]

R = TypeVar("R")

_DONE = State.DONE
_copy_context = contextvars.copy_context


def new_map(
    pool: _Intake,
    fn: Callable[[Any], Any],
    items: Iterable[Any] | AsyncIterable[Any],
    ordered: bool,
    return_exceptions: bool,
    window: int | None,
    max_per_second: float | None,
    options: dict[str, Any],
) -> MapResults[Any]:
    """``pool.map(...)``, its arguments checked (see `WorkerPool.map`)."""
    flag(ordered, "ordered")
    flag(return_exceptions, "return_exceptions")
    for name in ("id", "task_fn"):
        if name in options:
            raise TypeError(f"map() sets {name} itself; it cannot be given")
    definition: Definition[Any] = Definition(task_fn=fn, **options)
    if pool._remote:
        pool._check_picklable(definition)
    if window is None:
        window = 2 * pool._max_workers
    else:
        at_least(window, "window", 1)
    limiter: Limiter | None = None
    if max_per_second is not None:
        limiter = RateLimiter(max_per_second)
        if pool._limiter is not None:
            limiter = _Both(pool._limiter, limiter)
    if not isinstance(items, Iterable | AsyncIterable):
        raise TypeError(f"items must be an iterable or async iterable, got {items!r}")
    run = _MapRun(pool, definition, ordered, return_exceptions, window, limiter)
    pool._maps.add(run)  # (stop() ends its feed)
    return MapResults(run, items)


class _Intake(Protocol):
    """What a map run needs of its pool: take a worker slot, take in a task made for it.
    (A `WorkerPool` is one, and the `_Owner` of the run's tasks; the names are its own
    private ones: its public API does not grow for the map.)"""

    @property
    def _crew(self) -> Crew: ...  # (its ``stopped``: the pool's)

    @property
    def _slots(self) -> _Slots: ...

    async def _take_slot(self) -> None: ...

    def _use_loop(self) -> asyncio.AbstractEventLoop: ...

    def _enqueue(self, task: Task[Any], keep: bool = ...) -> None: ...

    # and, for new_map(): its size, rate limit, executor's kind, and runs in progress
    _max_workers: int
    _limiter: RateLimiter | None
    _remote: bool
    _maps: weakref.WeakSet[_MapRun]

    def _check_picklable(self, definition: Definition[Any], args: Any = ...) -> None: ...


class _EndTold(Protocol):
    """A map run, told of each of its tasks' ends (the loop's `_MapRun`, or `DirectMap`)."""

    def _task_ended(self, task: Any, done: bool, outcome: Any) -> None: ...


class _TellsItsRun:
    """A map run's task, whichever driver runs it: it tells its run of its end itself,
    after its end hooks and done callbacks (no done callback of the run's own per task), and
    keeps its outcome for an ordered run's consumer."""

    __slots__ = ()  # (each task class has the two below: one layout per class)

    _map_run: _EndTold | None  # None once the run was told of the end
    _map_outcome: Any  # the result, or the error, once ended

    def _finish(self, state: State, outcome: Any) -> None:
        try:
            Task._finish(self, state, outcome)  # type: ignore[arg-type]  # (a Task, mixed in)
        finally:
            run = self._map_run
            if run is not None:  # (once: a run started again by go() is not the map's)
                self._map_outcome = outcome
                self._map_run = None  # type: ignore[misc]  # (a slot of each task class)
                run._task_ended(self, state is _DONE, outcome)


class _MapTask(_TellsItsRun, _PoolTask[Any]):
    """A map run's task on the loop."""

    __slots__ = ("_map_outcome", "_map_run")


class _MapRun:
    """What one ``map`` run shares between its feeder, its tasks' callbacks and the consumer.

    It holds no reference to the `MapResults` the consumer iterates, so dropping that (a
    ``break`` out of ``async for``) stops the run.
    """

    __slots__ = (
        "__weakref__",
        "consumer",
        "definition",
        "error",
        "exhausted",
        "feeder",
        "feeder_wait",
        "final_error",
        "limiter",
        "live",
        "loop",
        "ordered",
        "pending",
        "pool",
        "pool_stopped",
        "queue",
        "return_exceptions",
        "stopped",
        "taken",
        "window",
    )

    def __init__(
        self,
        pool: _Intake,
        definition: Definition[Any],
        ordered: bool,
        return_exceptions: bool,
        window: int,
        limiter: Limiter | None,
    ) -> None:
        self.pool: _Intake = pool
        self.definition: Definition[Any] = definition
        self.ordered: bool = ordered
        self.return_exceptions: bool = return_exceptions
        self.window: int = window
        self.limiter: Limiter | None = limiter
        self.loop: asyncio.AbstractEventLoop | None = None
        self.feeder: asyncio.Task[None] | None = None
        # Ordered: the tasks taken and not yet yielded, in input order (the consumer takes
        # the first once it has ended). Else: the tasks in progress, by input index, and
        # the outcomes not yet yielded, in the order they ended.
        self.pending: deque[_MapTask] = deque()
        self.live: dict[int, Task[Any]] = {}
        self.queue: deque[Any] = deque()
        self.taken: int = 0  # items taken from the input and not yet yielded
        self.exhausted: bool = False  # the feeder has taken its last item
        self.error: BaseException | None = None  # to raise to the consumer, at once
        self.final_error: BaseException | None = None  # to raise after the last result
        self.stopped: bool = False
        self.pool_stopped: bool = False
        self.consumer: asyncio.Future[None] | None = None  # the consumer, waiting
        self.feeder_wait: asyncio.Future[None] | None = None  # the feeder, waiting on the window

    # -- the feeder: takes items while the window and the pool allow ---------------------

    async def feed(self, items: Iterable[Any] | AsyncIterable[Any]) -> None:
        """The feeder: read ``items`` one at a time, each once a worker slot is free and the
        window has room, and submit a task for it; end the feed on the input's end, a stop,
        or an error (which the consumer then gets)."""
        pool = self.pool
        crew = pool._crew
        slots = pool._slots
        loop = self.loop
        assert loop is not None
        definition = self.definition
        limiter = self.limiter
        live = self.live
        pending = self.pending
        ordered = self.ordered
        source: Any
        index = 0
        try:
            if isinstance(items, AsyncIterable):
                source = aiter(items)
                is_async = True
            else:
                source = iter(items)
                is_async = False
            while not self.stopped:
                if self.taken >= self.window:
                    self.feeder_wait = loop.create_future()
                    await self.feeder_wait
                    continue
                if crew.stopped:
                    raise PoolStoppedError("the pool is stopped")
                # The next item is read only once a worker is free: its slot is held while
                # an async input waits for it (stop() ends that wait: see end_feed()).
                if not slots.take_nowait():
                    await pool._take_slot()
                try:
                    item = await anext(source) if is_async else next(source)
                except BaseException as exc:
                    slots.release()
                    if not isinstance(exc, StopIteration | StopAsyncIteration):
                        raise
                    return
                if self.stopped:
                    slots.release()
                    return
                # The task, called with its item, its index as id, kept out of tasks() once
                # ended (WorkerPool._new_task, inline); the run's before its first hooks run.
                task = _MapTask()
                task._setup(definition, pool, _copy_context(), (item,), index, limiter)
                task._map_run = self
                if ordered:
                    pending.append(task)
                else:
                    live[index] = task
                self.taken += 1
                index += 1
                pool._enqueue(task, False)
        except asyncio.CancelledError:
            if self.pool_stopped and not self.stopped:  # the pool's stop() ended the feed
                self.final_error = PoolStoppedError("the pool is stopped")
                return
            raise
        except PoolStoppedError as exc:
            # What was submitted still runs (stop() semantics): the consumer gets those
            # results, then this error, for the input that could not be run.
            self.final_error = exc
        except BaseException as exc:  # the input failed
            self.fail(exc)
        finally:
            self.exhausted = True
            self._wake_consumer()

    def _task_ended(self, task: _MapTask, done: bool, outcome: Any) -> None:
        if not self.ordered:
            # (keyed by the raw id, the item's int index: the public id is its str)
            del self.live[task._id]  # type: ignore[arg-type]
        if self.stopped:
            return
        if not done and not self.return_exceptions:
            self.fail(outcome)
        elif not self.ordered:
            self.queue.append(outcome)
            self._wake_consumer()
        elif self.consumer is not None and self.pending[0] is task:  # (it waits for it)
            self._wake_consumer()

    def in_progress(self) -> bool:
        """Tasks are in progress, or (ordered) ended and not yet yielded."""
        return bool(self.pending if self.ordered else self.live)

    def ready(self) -> bool:
        """A result (or failure) waits for the consumer."""
        if self.ordered:
            return bool(self.pending) and self.pending[0]._map_run is None
        return bool(self.queue)

    # -- stopping --------------------------------------------------------------------------

    def fail(self, error: BaseException) -> None:
        """Stop the run; the consumer gets ``error`` next."""
        if self.error is None and not self.stopped:
            self.error = error
            self.stop()
            self._wake_consumer()

    def stop(self) -> None:
        """Cancel what is in progress and take no more input."""
        if self.stopped:
            return
        self.stopped = True
        if self.feeder is not None and self.feeder is not asyncio.current_task():
            self.feeder.cancel()
        for task in list(self.pending if self.ordered else self.live.values()):
            task.cancel()  # (an ended one stays as it is)
        self.pending.clear()
        self.queue.clear()
        self._wake_consumer()  # (it ends: the input may have been read whole already)

    def end_feed(self) -> None:
        """The pool stopped: read no more input (what was submitted still runs); the
        consumer gets the results, then ``PoolStoppedError`` if input was left unread."""
        self.pool_stopped = True
        feeder = self.feeder
        if feeder is not None and not feeder.done() and feeder is not asyncio.current_task():
            feeder.cancel()

    def feeder_ended(self, feeder: asyncio.Task[None]) -> None:
        """The feeder's done callback. A feeder canceled before its first step (stop() or
        shutdown() landing between the consumer's first ``__anext__`` and the feeder's
        start) never runs ``feed()``, nor its ``finally``: end the feed here, or the
        consumer would wait forever."""
        if self.exhausted:
            return
        self.exhausted = True
        if self.pool_stopped and not self.stopped:
            self.final_error = PoolStoppedError("the pool is stopped")
        self._wake_consumer()

    def _wake_consumer(self) -> None:
        fut = self.consumer
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_feeder(self) -> None:
        fut = self.feeder_wait
        self.feeder_wait = None  # (woken once: the consumer asks no more, item by item)
        if fut is not None and not fut.done():
            fut.set_result(None)


class MapResults(Generic[R]):
    """The results of ``pool.map``: iterate with ``async for``.

    Also an async context manager: leaving ``async with pool.map(...) as results:`` stops the
    run for sure (in-flight tasks canceled, no more input read). Breaking out of a bare
    ``async for`` does the same as soon as the object is dropped, and ``await aclose()`` does
    it explicitly.

    `WorkerPool.map` makes it; nothing runs until the first ``__anext__``.

    Args:
        run: The run's shared state, made by `WorkerPool.map`.
        items: The input: an iterable or an async iterable.
    """

    __slots__ = ("_items", "_run")

    def __init__(
        self,
        run: _MapRun,
        items: Iterable[Any] | AsyncIterable[Any],
    ) -> None:
        self._run = run
        self._items: Iterable[Any] | AsyncIterable[Any] | None = items

    def __aiter__(self) -> AsyncIterator[R]:
        """``async for``: the results themselves."""
        return self

    async def __anext__(self) -> R:
        """The next result (the run starts on the first call); the first failure is raised
        instead, and ``StopAsyncIteration`` once every result has been yielded."""
        run = self._run
        if self._items is not None:
            self._begin()
        while True:
            error = run.error
            if error is not None:
                run.error = None
                run.exhausted = True
                if isinstance(error, StopAsyncIteration):  # it would end `async for` quietly
                    wrapped = RuntimeError("the mapped function raised StopAsyncIteration")
                    raise wrapped from error
                raise error
            if run.ordered:
                pending = run.pending
                if pending and pending[0]._map_run is None:  # ended, and the run told
                    outcome = pending.popleft()._map_outcome
                    break
            elif run.queue:
                outcome = run.queue.popleft()
                break
            if run.stopped or (run.exhausted and not run.in_progress()):
                final, run.final_error = run.final_error, None
                if final is not None and not run.stopped:
                    run.stopped = True
                    raise final
                raise StopAsyncIteration
            if run.consumer is not None:
                raise RuntimeError("another coroutine already waits for this map's next result")
            run.consumer = fut = run.loop.create_future()  # type: ignore[union-attr]
            try:
                await fut
            except BaseException:
                run.stop()
                raise
            finally:
                run.consumer = None
        run.taken -= 1
        if run.feeder_wait is not None:
            run._wake_feeder()
        return outcome  # type: ignore[no-any-return]

    async def _next_batch(self, limit: int) -> list[R]:
        """The next result, waited for, and those ready behind it (up to ``limit`` in all):
        for a consumer in another thread, one hop for many results."""
        run = self._run
        batch = [await self.__anext__()]
        while len(batch) < limit and run.error is None:
            if not run.ready():
                break
            batch.append(await self.__anext__())  # (ready: it does not wait)
        return batch

    def _begin(self) -> None:
        run = self._run
        items = self._items
        assert items is not None
        self._items = None
        pool = run.pool
        run.loop = loop = pool._use_loop()
        run.feeder = loop.create_task(run.feed(items), name="asynctasklib map feeder")
        run.feeder.add_done_callback(run.feeder_ended)

    def _abandon(self) -> None:
        """End a run that has not begun (nothing runs, so any thread may)."""
        self._items = None
        self._run.stop()

    async def aclose(self) -> None:
        """Stop the run: cancel the tasks in progress, read no more input."""
        run = self._run
        self._items = None
        run.stop()
        if run.feeder is not None and not run.feeder.done():
            await asyncio.wait([run.feeder])

    async def __aenter__(self) -> MapResults[R]:
        """``async with``: the results themselves."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``async with``: stop the run, as ``aclose()`` does."""
        await self.aclose()

    def __del__(self) -> None:
        run = self._run
        if run.stopped or run.loop is None or (run.exhausted and not run.in_progress()):
            return
        if _get_running_loop() is run.loop:
            run.stop()
        elif not run.loop.is_closed():
            run.loop.call_soon_threadsafe(run.stop)


public_here(globals(), ["MapResults"], "asynctasklib")  # (see `_public`)
