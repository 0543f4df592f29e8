"""A blocking pool's ``map`` of a plain function, driven by its consumer's thread.

When the direct crew can run the map's tasks (see `runs_direct`; a plain iterable, no rate
limit of the map's own), the thread that iterates the results reads the input itself,
queues each item's task for the crew's workers (in a slot, up to the window) and waits for
the results: no event loop on the way, as for ``submit()`` and ``result()``. The results
are `MapResults`' (`_stream`), written for threads: in input order or as they end; the
first failure raised and the rest canceled (or each failure returned, with
``return_exceptions``); once the pool stops, no more input, and the results of what was
queued, then `PoolStoppedError`.

Its state is under the crew's lock: the workers end its tasks there, and tell it.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import AsyncIterable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ._direct import DirectTask, runs_direct
from ._errors import PoolStoppedError
from ._stream import _TellsItsRun
from ._task import Task
from ._threads import check_not_in_loop

if TYPE_CHECKING:
    from ._definition import Definition
    from ._direct import DirectCrew
    from ._pool import WorkerPool
    from ._portal import Portal
    from ._stream import MapResults

__all__ = ["DirectMap", "map_directly"]

_copy_context = contextvars.copy_context


class _Face(Protocol):
    """What `map_directly` needs of the blocking pool (`blocking.WorkerPool`'s own)."""

    _pool: WorkerPool
    _direct: DirectCrew | None

    def _start_portal(self, what: str) -> Portal: ...


def map_directly(face: _Face, results: MapResults[Any]) -> DirectMap | None:
    """The run of ``results`` (the asynchronous pool's, not begun) as a `DirectMap`, if the
    blocking pool's direct crew can run its tasks; else None (it runs on the loop)."""
    run = results._run
    items = results._items
    if run.limiter is not None or not runs_direct(run.definition):
        return None
    if not isinstance(items, Iterable) or isinstance(items, AsyncIterable):
        return None
    face._start_portal("map()")  # (it makes the direct crew, if the pool has one)
    crew = face._direct
    if crew is None:
        return None
    check_not_in_loop("map()")
    results._abandon()  # (the loop's run never begins: this one takes its place)
    return DirectMap(
        crew, face._pool, run.definition, items, run.ordered, run.return_exceptions, run.window
    )


class _MapTask(_TellsItsRun, DirectTask):
    """A direct map's task: it tells its map of its end (under the crew's lock)."""

    __slots__ = ("_map_outcome", "_map_run")


class DirectMap:
    """One direct ``map`` run: its input, its tasks taken and not yet returned, and what
    its consumer raises next. One consumer thread at a time.

    Args:
        crew: The blocking pool's direct crew, which runs the tasks.
        pool: The asynchronous pool behind it (its slots, and whether it is stopped).
        definition: The definition of each item's task (``map()``'s options).
        items: The input.
        ordered: Results in input order (True) or as they end.
        return_exceptions: Failures returned in place of results, or the first raised.
        window: Items taken and not yet returned, at most.
    """

    __slots__ = (
        "consuming",
        "crew",
        "definition",
        "done",
        "ended_cond",
        "error",
        "exhausted",
        "final_error",
        "index",
        "items",
        "live",
        "ordered",
        "pending",
        "pool",
        "return_exceptions",
        "source",
        "stopped",
        "taken",
        "waiting",
        "window",
    )

    def __init__(
        self,
        crew: DirectCrew,
        pool: WorkerPool,
        definition: Definition[Any],
        items: Iterable[Any],
        ordered: bool,
        return_exceptions: bool,
        window: int,
    ) -> None:
        self.crew = crew
        self.pool = pool
        self.definition = definition
        self.items: Iterable[Any] | None = items
        self.source: Iterator[Any] | None = None
        self.ordered = ordered
        self.return_exceptions = return_exceptions
        self.window = window
        self.ended_cond = threading.Condition(crew.lock)  # a task ended, or the run stopped
        # Ordered: the tasks taken and not yet returned, in input order. Else: the tasks in
        # progress, by input index, and the outcomes not yet returned, in the order they
        # ended.
        self.pending: deque[_MapTask] = deque()
        self.live: dict[int, _MapTask] = {}
        self.done: deque[Any] = deque()
        self.taken = 0  # items taken from the input and not yet returned
        self.index = 0
        self.exhausted = False  # no more input will be read
        self.error: BaseException | None = None  # to raise to the consumer, at once
        self.final_error: BaseException | None = None  # to raise after the last result
        self.stopped = False
        self.waiting = False  # the consumer waits on ended_cond
        self.consuming = False  # a thread is in next()

    # -- the consumer ----------------------------------------------------------------------

    def next(self) -> Any:
        """The next result, blocking until it is ready (see `MapIterator.__next__`)."""
        lock = self.crew.lock
        with lock:
            if self.consuming:
                raise RuntimeError("another thread already waits for this map's next result")
            self.consuming = True
        try:
            while True:
                self.feed()
                with lock:
                    found, outcome = self.take()
                    if found:
                        return outcome
                    if self.can_feed():
                        continue
                    self.waiting = True
                    try:
                        self.ended_cond.wait()
                    finally:
                        self.waiting = False
        except BaseException as exc:
            if not isinstance(exc, StopIteration):  # (interrupted, or the run's own error)
                self.close()
            raise
        finally:
            self.consuming = False

    def take(self) -> tuple[bool, Any]:
        """(True, the next result) if one is ready; raises the run's error, or
        StopIteration at its end; else (False, None). Under the lock."""
        error = self.error
        if error is not None:
            self.error = None
            raise error
        if self.ordered:
            pending = self.pending
            if pending and pending[0]._map_run is None:  # ended, and the run told
                self.taken -= 1
                return True, pending.popleft()._map_outcome
        elif self.done:
            self.taken -= 1
            return True, self.done.popleft()
        if self.stopped or (self.exhausted and not self.taken):
            final, self.final_error = self.final_error, None
            self.stopped = True
            if final is not None:
                raise final
            raise StopIteration
        return False, None

    def can_feed(self) -> bool:
        """More input could be taken now (a slot came free since feed() gave up)."""
        return not self.exhausted and self.taken < self.window and self.pool._slots.can_take()

    # -- the feed: items taken in the consumer's thread, while the window allows ------------

    def feed(self) -> None:
        """Take items while the window allows and a slot is free; wait for a slot only
        when nothing of this run is in progress to wait for instead."""
        # (The pool's slots and stopped flag, and the crew's queue, are read and taken here
        # as the blocking face's submit() does: this is that face's own map.)
        pool = self.pool
        slots = pool._slots
        crew = self.crew
        lock = crew.lock
        definition = self.definition
        while self.taken < self.window and not self.exhausted and not self.stopped:
            if pool._stopped:
                self.end_feed(PoolStoppedError("the pool is stopped"))
                return
            if not slots.take_nowait():
                if self.taken:
                    return  # the consumer waits for a result instead
                try:
                    slots._acquire_blocking(None)
                except PoolStoppedError as exc:  # the pool stopped meanwhile
                    self.end_feed(exc)
                    return
                if pool._stopped:
                    slots.release()
                    continue
            source = self.source
            if source is None:
                items, self.items = self.items, None
                try:
                    self.source = source = iter(items)  # type: ignore[arg-type]
                except BaseException as exc:
                    slots.release()
                    self.fail(exc)
                    return
            try:
                item = next(source)
            except BaseException as exc:
                slots.release()
                if isinstance(exc, StopIteration):
                    self.exhausted = True
                else:  # the input failed
                    self.fail(exc)
                return
            task = _MapTask()
            task._crew = crew
            task._setup(definition, crew, _copy_context(), (item,), self.index)
            task._map_run = self
            with lock:
                if self.stopped:  # closed from another thread meanwhile
                    slots.release()
                    return
                if self.ordered:
                    self.pending.append(task)
                else:
                    self.live[self.index] = task
                self.taken += 1
                self.index += 1
                crew.queue(task)

    def end_feed(self, error: BaseException) -> None:
        """The pool stopped: no more input; the consumer gets the results of what was
        taken, then ``error``."""
        with self.crew.lock:
            self.exhausted = True
            if not self.stopped:
                self.final_error = error

    # -- ends, failures, stopping (under the lock unless said) ------------------------------

    def _task_ended(self, task: _MapTask, done: bool, outcome: Any) -> None:
        """``task`` ended (from `_MapTask._finish`, in whichever thread ended it)."""
        if not self.ordered:
            del self.live[task._id]  # type: ignore[arg-type]
        if self.stopped:
            return
        if not done and not self.return_exceptions:
            self.fail_locked(outcome)
            return
        if not self.ordered:
            self.done.append(outcome)
        if self.waiting:
            self.ended_cond.notify()

    def fail(self, error: BaseException) -> None:
        """Stop the run; the consumer gets ``error`` next."""
        with self.crew.lock:
            self.fail_locked(error)

    def fail_locked(self, error: BaseException) -> None:
        if self.error is None and not self.stopped:
            self.error = error
            self.stop_locked()

    def stop_locked(self) -> None:
        """Cancel what is in progress and take no more input."""
        if self.stopped:
            return
        self.stopped = self.exhausted = True
        tasks = list(self.pending if self.ordered else self.live.values())
        self.pending.clear()
        self.done.clear()
        for task in tasks:
            Task._cancel(task)  # (the lock is held: not DirectTask.cancel; an ended one stays)
        if self.waiting:
            self.ended_cond.notify()

    def close(self) -> None:
        """Stop the run, from any thread: cancel the tasks in progress, read no more input."""
        with self.crew.lock:
            self.stop_locked()

    def dropped(self) -> None:
        """Its iterator was garbage-collected: stop the run. (The collector may run in a
        thread that holds the crew's lock: then the loop's thread stops it.)"""
        lock = self.crew.lock
        if lock.acquire(blocking=False):
            try:
                self.stop_locked()
            finally:
                lock.release()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the pool's tasks ended
            self.crew.loop.call_soon_threadsafe(self.close)
