"""A pool's workers: long-lived runners fed by one queue, spawned, parked and woken as
tasks come, and told when one of them ends badly.

The pool owns the crew and talks to it through these names only; the workers reach back
through the crew, never through the pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import types
import weakref
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ._compat import log_destroy_pending
from ._compat import running_loop as _get_running_loop
from ._direct import DirectCrew
from ._executor import ExecutorBridge
from ._runner import _Runner
from ._semaphore import _Slots
from ._stats import _Counts
from ._task import Task
from ._threads import call_on_loop

__all__ = ["Crew"]

T = TypeVar("T")

logger = logging.getLogger("asynctasklib")

# The pool's method that hears of a worker broken (a task, or None; the error, or None)
_OnBroken = Callable[[Task[Any] | None, BaseException | None], None]


def log_broken(task: Task[Any] | None, error: BaseException) -> None:
    """Log a BaseException that escaped ``task`` and ended its worker."""
    logger.error(
        "task %r raised %s: the pool stops and cancels its other tasks",
        None if task is None else task.id,
        type(error).__name__,
        exc_info=error,
    )


@types.coroutine
def _yield() -> Generator[None, None, None]:
    """Let every other ready callback run once (``asyncio.sleep(0)`` without its layers)."""
    yield


class Crew:
    """Up to ``size`` workers taking tasks from ``ready``, in the pool's ``counts``."""

    __slots__ = (
        "binding",
        "bridge",
        "counts",
        "direct",
        "idle",
        "inline",
        "loop",
        "on_broken",
        "ready",
        "size",
        "slots",
        "stopped",
        "waking",
        "workers",
    )

    def __init__(
        self,
        size: int,
        counts: _Counts,
        slots: _Slots,
        bridge: ExecutorBridge,
        on_broken: _OnBroken,
    ) -> None:
        self.size = size
        self.counts = counts
        self.slots = slots
        self.bridge = bridge
        # Called when a worker ended with a BaseException of a task's (the task, the error),
        # or was canceled from outside, or broke, while tasks were in progress (None, None).
        # A method of the pool's, held weakly: then nothing of the crew refers back to the
        # pool, and a pool nobody refers to is freed at once by its reference count, with
        # the ended tasks it keeps, rather than at the cyclic GC's next full collection
        # (which walks them all first).
        self.on_broken = weakref.WeakMethod(on_broken)
        self.ready: deque[Task[Any]] = deque()  # submitted, waiting for a worker
        self.workers: dict[asyncio.Task[None], _Worker] = {}
        self.idle: list[_Worker] = []  # parked workers
        self.waking = 0  # workers spawned or woken that have not run yet
        self.inline = True  # new workers may run tasks in their own context (see retire)
        self.stopped = False  # the pool is stopped: the workers end once the queue is empty
        self.loop: asyncio.AbstractEventLoop | None = None
        # Held while the crew binds to a loop, and by a call from another thread that runs
        # where it is because the crew is on no running loop: the two never overlap.
        self.binding = threading.Lock()
        # A blocking face's tasks that run in threads of their own, not in these workers
        # (see _direct): in progress with the workers' own.
        self.direct: DirectCrew | None = None

    def bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, which the crew (with the pool) moves to if it is idle."""
        loop = _get_running_loop()
        if loop is None:
            raise RuntimeError("the pool needs a running event loop")
        if loop is not self.loop:
            if self.loop is not None and self.counts.in_progress:
                self.check_not_orphaned()
                raise RuntimeError("the pool has tasks running on another event loop")
            self.move_to(loop)
        return loop

    def move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        """Spawn workers on ``loop`` from now on (the pool is idle: the old ones are gone)."""
        with self.binding:
            self.loop = self.bridge.loop = loop
            self.workers.clear()
            self.idle.clear()
            self.waking = 0

    def serve_threads(self, loop: asyncio.AbstractEventLoop, plain: bool) -> DirectCrew | None:
        """Move, idle, to the blocking face's loop in a thread (other threads take the slots
        from now on: they lock), with a direct crew for the plain tasks that need no loop if
        ``plain`` (the pool has no hooks nor rate limit) and the executor is the crew's own."""
        self.move_to(loop)
        self.slots.shared = True
        on_broken = self.on_broken()
        if plain and self.bridge.owns_executor and on_broken is not None:
            self.direct = DirectCrew(self.size, self.slots, loop, on_broken)
        return self.direct

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the crew's loop (see call_on_loop), from any thread. While the crew is
        on no running loop it runs here, under the lock that binding takes, so a loop that
        binds the pool meanwhile waits for it rather than changing what it reads."""
        loop = self.loop
        if loop is not None and loop.is_running():
            return call_on_loop(loop, fn)
        with self.binding:
            if self.loop is loop:
                return fn()
        return self.call(fn)  # bound meanwhile: go there

    def check_not_orphaned(self) -> None:
        """asyncio.run() ends every task before it closes its loop; a loop closed otherwise
        with tasks of the pool in progress leaves them unable ever to end: say so."""
        loop = self.loop
        live = self.counts.in_progress
        if live and loop is not None and loop.is_closed():
            raise RuntimeError(
                f"the pool's event loop was closed with {live} of its tasks in "
                "progress (shut the pool down, or use asyncio.run, before closing a loop): "
                "the pool cannot be used any more"
            )

    def in_progress(self) -> list[Task[Any]]:
        """The tasks in progress: those the workers hold (running, or waiting for a delay, a
        backoff or a rate limit), then those waiting for a worker, in their order. No set of
        them is kept, for the hot path: a task is in one of these two places."""
        ready = self.ready
        # (the task's own fields, read as the engine does: its _runner is the worker from
        # when it takes the task until the task ends; _queue, the queue it waits in)
        held = [w.task for w in self.workers.values() if w.task and w.task._runner is w]
        direct = [] if self.direct is None else self.direct.in_progress()
        return held + [task for task in ready if task._queue is ready] + direct

    def wake_one(self) -> None:
        """Unpark a worker for the queue, or spawn one if fewer than ``size`` exist."""
        idle = self.idle
        while idle:
            worker = idle.pop()
            assert worker.parked is not None
            try:
                worker.parked.set_result(None)
            except asyncio.InvalidStateError:  # canceled with its worker: it is ending
                continue
            self.waking += 1
            return
        if len(self.workers) < self.size:
            loop = self.loop
            assert loop is not None
            self.waking += 1
            worker = _Worker(self, loop)
            atask = loop.create_task(worker.work(), name="asynctasklib worker")
            worker.atask = atask
            self.workers[atask] = worker
            atask.add_done_callback(self._exited)

    def stop(self) -> None:
        """The workers end once the queue is empty: wake the parked ones to see it."""
        self.stopped = True
        idle, self.idle = self.idle, []
        for worker in idle:
            assert worker.parked is not None
            if worker.parked.done():  # canceled with its worker (the loop is going away)
                continue
            self.waking += 1
            worker.parked.set_result(None)

    def _exited(self, atask: asyncio.Task[None]) -> None:
        """A worker's asyncio task has ended: by itself (stopped, retired), canceled from
        outside (the event loop is shutting down), or with an exception.

        An exception there is a BaseException (not an Exception, nor a CancelledError) that
        a task's function, hook, ``retry_on`` or ``backoff`` raised: the task ended FAILED
        with it, and it went up through the worker, as a TaskGroup's child's does. asyncio
        itself raises KeyboardInterrupt and SystemExit out of the event loop; anything else
        (a GeneratorExit, a BaseException subclass of the application's) would stay in the
        worker's asyncio task, unseen: the pool hears of it (``broken``).
        """
        worker = self.workers.pop(atask, None)
        if worker is None:
            return  # retired: it took itself out
        if worker in self.idle:
            self.idle.remove(worker)
        error = None if atask.cancelled() else atask.exception()  # (retrieved: not logged)
        if error is None and not atask.cancelled() and self.ready and not self.waking:
            # Stopped, it ended as a task came in (one whose submitter took a slot before
            # the stop): wake_one() then found the crew full. A new worker takes it.
            self.wake_one()
        if error is not None and not isinstance(error, KeyboardInterrupt | SystemExit):
            self.broken(worker.task, error)
        elif (atask.cancelled() or error is not None) and self.counts.in_progress:
            # Cancelled from outside (the event loop is shutting down) or broken: no task of
            # the pool may be left behind without an end.
            self.broken(None, None)

    def broken(self, task: Task[Any] | None, error: BaseException | None) -> None:
        """Tell the pool (``on_broken``), if it is still there."""
        on_broken = self.on_broken()
        if on_broken is not None:
            on_broken(task, error)
        elif error is not None:  # (a pool freed meanwhile has nothing to stop: just say so)
            log_broken(task, error)


class _Worker(_Runner):
    """A long-lived runner of the crew, fed by its queue."""

    __slots__ = ("crew", "parked", "remote")

    task: Task[Any] | None  # (a pool's task)

    def __init__(self, crew: Crew, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, crew.ready, crew.counts)
        self.crew = crew
        self.remote = crew.bridge.remote
        self.parked: asyncio.Future[None] | None = None
        self.inline = crew.inline

    def begin(self) -> None:
        self.woken()  # spawned, and now running

    def woken(self) -> None:
        """Spawned or unparked, and now running. If tasks wait behind the one this worker
        takes, another worker is woken for them, in case this one's task blocks (one wake at
        a time: tasks that end at once are then all run by this worker)."""
        crew = self.crew
        crew.waking -= 1
        if len(self.ready) > 1 and not crew.waking:
            crew.wake_one()

    def keep_going(self, exc: BaseException) -> bool:
        if not self.crew.slots.shared:  # asyncio's way: it goes up, the loop stops
            return False
        # A blocking face's worker: the task's waiters get the exception; go on, unless this
        # worker itself is being canceled (its loop is closing).
        self.expired = False
        return not self.settle()

    def retire(self, home: contextvars.Context) -> None:
        crew = self.crew
        # This pool's tasks set context variables (decimal's arithmetic does, on first use):
        # its workers from now on run each task in its own context, as each would otherwise
        # retire after every such task (a new asyncio task each time).
        crew.inline = False
        assert self.atask is not None
        del crew.workers[self.atask]  # (so _exited leaves the crew as it is)
        # Tasks waiting with no worker on its way: a worker in `idle()`'s yield takes them, so
        # this is only in case; the new worker starts in the variables this one had.
        if self.ready and not crew.waking:
            home.run(crew.wake_one)

    async def idle(self) -> bool:
        crew = self.crew
        if crew.stopped:
            return False
        if crew.slots.available:
            # Free slots: a submitter woken by a task's end may be about to fill them. Let it
            # run, then look again; cheaper than parking and being woken.
            await _yield()
            if self.ready:
                return True
            if crew.stopped:
                return False
        # Parked, nothing outside the pool refers to the worker (its timer is disarmed): a
        # pool dropped without shutdown() is then freed, workers and all, by the cyclic GC,
        # which need not warn of a destroyed pending task (an idle worker loses nothing).
        self.disarm()
        atask = self.atask
        assert atask is not None
        self.parked = parked = self.loop.create_future()
        crew.idle.append(self)
        log_destroy_pending(atask, False)
        await parked
        log_destroy_pending(atask, True)
        self.parked = None
        self.woken()
        return True

    def call_in_executor(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        return self.crew.bridge.call(fn, *args)

    def cancel_call(self, result: asyncio.Future[Any]) -> None:
        self.crew.bridge.cancel(result)
