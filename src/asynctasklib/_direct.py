"""The direct crew: a blocking pool's plain task functions, driven in worker threads.

A task of a blocking pool whose function is plain and needs nothing of an event loop (no
hooks, delay, total_timeout or rate limit; the pool's own threads) runs here. A worker
thread takes it, makes its attempts in the thread itself and ends it, with the engine's own
steps (`Task._start_attempt`, `_attempt_ended`, `_retry`, `_finish`): private names of
`_task`, used here so that the decisions stay in one place. On the loop path each
task wakes four threads in a row (submitter, loop, executor thread, loop); here it wakes at
most two: a worker, if none is looking for work, and the submitter, by the slot it frees.

One lock guards these tasks' states and the crew. A watchdog thread ends the attempts that
outlive their ``max_duration``, as the runner's timer does on the loop: it keeps one wake-up
time, and an attempt only writes its deadline, waking the watchdog if it is the earliest.
An attempt that times out or is canceled ends at once, as on the loop; its thread runs on
until the function returns (its `Run` says stop), outside the crew, and a new thread takes
its place. Done callbacks still run on the pool's loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import math
import threading
import time
import types
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from ._compat import register_atexit
from ._hooks import NO_HOOKS
from ._run import _RUN, Run, _Run
from ._runner import no_stop_iteration, signal_stop
from ._state import State
from ._stats import _Counts
from ._task import Task, _PoolTask

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._definition import Definition
    from ._semaphore import _Slots

__all__ = ["DirectCrew", "runs_direct"]

_PENDING, _STARTED, _DONE, _CANCELED = State.PENDING, State.STARTED, State.DONE, State.CANCELED
_INF = math.inf
_monotonic = time.monotonic  # (the clock of asyncio's loop.time(): Run.deadline's)


def runs_direct(definition: Definition[Any]) -> bool:
    """Whether a task of ``definition`` can run in a worker thread, with no event loop: a
    plain task function, started at once (no delay nor total_timeout), with no hooks of its
    own (the pool's are checked by the pool)."""
    _, is_async, _, plain = definition._plan
    return plain and not is_async and definition.hooks is None


class DirectTask(_PoolTask[Any]):
    """A blocking pool's task driven by a `DirectCrew`: its state changes under the crew's
    lock, from whichever thread."""

    __slots__ = ("_crew",)

    _crew: DirectCrew

    def cancel(self) -> bool:
        """Cancel the task (see `Task.cancel`): from any thread, under the crew's lock."""
        with self._crew.lock:
            return super()._cancel()  # (its runner, a _Worker, does the rest: cancel_run)

    _cancel = cancel

    def _add_done_callback(self, fn: Callable[[Task[Any]], object]) -> None:
        with self._crew.lock:
            if self._state < _DONE:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        self._call_callback(fn)  # (on the loop's thread: see Task.add_done_callback)

    def _remove_done_callback(self, fn: Callable[[Task[Any]], object]) -> int:
        with self._crew.lock:
            return super()._remove_done_callback(fn)

    def _run_callbacks(self, callbacks: list[Any], end: Any) -> None:
        # (_finish calls this in a worker thread: threads waiting are woken from here, and
        # the callbacks run on the loop's thread)
        rest = []
        for callback in callbacks:
            if callback.__class__ is threading.Event:
                callback.set()
            else:
                rest.append(callback)
        if not rest:
            return
        try:
            self._crew.loop.call_soon_threadsafe(super()._run_callbacks, rest, end)
        except RuntimeError:  # the loop is closed: nothing else runs there any more
            with contextlib.suppress(RuntimeError):  # (a future of that loop refuses)
                super()._run_callbacks(rest, end)

    def _thread_waiter(self) -> threading.Event | None:
        """An event set as the task ends, for a thread to wait on (None: it has ended):
        woken by the thread that ends the task, with no trip through the loop."""
        with self._crew.lock:
            if self._state >= _DONE:
                return None
            ended = threading.Event()
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(ended)  # type: ignore[arg-type]  # (see _run_callbacks)
            return ended

    def _drop_waiter(self, ended: threading.Event) -> None:
        """A thread stops waiting on ``ended`` (its timeout passed)."""
        with self._crew.lock:
            callbacks: list[Any] | None = self._callbacks
            if callbacks is not None and ended in callbacks:
                callbacks.remove(ended)


class _Worker:
    """A worker thread of the crew, and the task it drives (as the task's ``_runner``)."""

    __slots__ = ("call", "crew", "deadline", "run", "task", "thread", "wake")

    def __init__(self, crew: DirectCrew) -> None:
        self.crew = crew
        self.call: concurrent.futures.Future[Any] | None = None  # see await_on_loop
        self.task: DirectTask | None = None
        self.run: Run | None = None  # the attempt running now; None between attempts
        self.deadline = _INF  # the running attempt's, on the monotonic clock
        self.wake = threading.Condition(crew.lock)  # for its backoff waits
        self.thread = threading.Thread(
            target=self.main, name=f"asynctasklib-pool-direct_{crew.made}", daemon=True
        )

    def main(self) -> None:
        crew = self.crew
        with crew.lock:
            try:
                while (task := crew.take()) is not None:
                    if not self.drive(task):
                        return  # left behind by its task (see DirectCrew.leave)
            finally:
                crew.workers.discard(self)
                crew.behind.discard(self)

    def drive(self, task: DirectTask) -> bool:
        """Run ``task`` from PENDING to its end, under the crew's lock (released while the
        function runs and while a backoff passes). False if the task went on without this
        thread: it timed out or was canceled while its function ran."""
        crew = self.crew
        lock = crew.lock
        counts = crew._counts
        task._queue = None  # taken
        task._runner = self  # type: ignore[assignment]  # (a worker of ours, not a _Runner)
        self.task = task
        fn, _, max_duration, _ = task._definition._plan
        arg = task._arg
        wait = crew.retry_at.pop(task, None)  # a retry after a timeout: its backoff first
        try:
            while True:
                if wait is not None and not self.back_off(task, wait):
                    break  # canceled meanwhile: it has ended
                # -- start: PENDING -> STARTED --
                attempt = task._start_attempt()
                counts.attempts += 1
                self.run = run = _Run()
                run._task, run._attempt = task, attempt
                run._deadline = self.deadline = deadline = _monotonic() + max_duration
                if deadline < crew.watch_until:
                    crew.watch(deadline)
                context = task._context.copy()  # type: ignore[union-attr]  # (per attempt)
                # -- attempt, the lock released --
                lock.release()
                try:
                    result = context.run(_call, fn, run, arg)
                    error: BaseException | None = None
                except BaseException as exc:
                    result, error = None, exc
                finally:
                    lock.acquire()
                if self.run is not run:
                    _drop(result)
                    return False
                if error is None and result is not None and inspect.isawaitable(result):
                    result, error = self.await_on_loop(task, run, result)
                    if self.run is not run:
                        return False
                self.run, self.deadline = None, _INF
                # -- settle --
                if error is None and not task._cancel_requested:
                    task._finish(_DONE, result)
                    break
                if error is not None and not isinstance(error, Exception):
                    task._abort(error)  # a BaseException of the function's: its waiters get it
                    crew.escaped(task, error)
                    break
                state, value = task._attempt_ended(error, False, False, False, _INF)
                if state is not _PENDING:
                    task._finish(state, value)
                    break
                task._retry()
                wait = value
        except BaseException as exc:  # from retry_on or backoff, not ours
            if task._state is _PENDING or task._state is _STARTED:
                task._abort(exc)
            crew.escaped(task, exc)
        finally:
            self.task = None
        return True

    def cancel_run(self, task: DirectTask) -> None:
        """Cancel the run of ``task``, which this worker drives (`Task._cancel` calls this,
        under the crew's lock): an attempt running ends at once, its thread running on."""
        if self.run is not None:
            self.crew.leave(self)
            task._finish(_CANCELED, task._canceled_error())
        else:  # between attempts (a backoff): the worker ends it
            self.wake.notify()

    def back_off(self, task: DirectTask, wait: float) -> bool:
        """Wait out a retry's backoff, the lock released meanwhile; False if the task was
        canceled in it (it ends CANCELED here)."""
        end = _monotonic() + wait
        while not task._cancel_requested:
            left = end - _monotonic()
            if left <= 0:
                return True
            self.wake.wait(left)
        task._finish(_CANCELED, task._canceled_error())
        return False

    def await_on_loop(
        self, task: DirectTask, run: Run, awaitable: Any
    ) -> tuple[Any, BaseException | None]:
        """A plain function returned an awaitable (a lambda around an ``async def``): await
        it on the pool's loop, in the task's context, this thread waiting, the lock
        released. A cancel or timeout meanwhile cancels it there."""

        async def awaited() -> Any:
            return await awaitable

        context = task._context
        assert context is not None
        # (call_soon_threadsafe takes the context it is called in: the task's, for awaited)
        self.call = call = context.run(asyncio.run_coroutine_threadsafe, awaited(), self.crew.loop)
        lock = self.crew.lock
        lock.release()
        try:
            return call.result(), None
        except BaseException as exc:
            return None, exc
        finally:
            lock.acquire()
            self.call = None


def _call(fn: Callable[..., Any], run: Run, arg: Any) -> Any:
    """``fn(run)``, or ``fn(*arg)`` for a task given its arguments."""
    try:
        return fn(run) if arg is _RUN else fn(*arg)
    except StopIteration as exc:
        raise no_stop_iteration(exc) from exc


def _drop(result: Any) -> None:
    """The outcome of an attempt its task left behind: nobody takes it."""
    if result.__class__ is types.CoroutineType:
        result.close()


class DirectCrew:
    """Up to ``size`` worker threads driving a blocking pool's direct tasks, and the
    watchdog of their deadlines. The tasks' `_Owner`: it counts them in counters of its
    own (the pool adds them to its own in ``stats()``)."""

    _hooks = NO_HOOKS
    _limiter = None

    def __init__(
        self,
        size: int,
        slots: _Slots,
        loop: asyncio.AbstractEventLoop,
        on_broken: Callable[[Task[Any] | None, BaseException | None], None],
    ) -> None:
        self.size = size
        self._slots = slots
        self._loop = self.loop = loop
        self._counts = _Counts()
        self.on_broken = weakref.WeakMethod(on_broken)
        self.lock = threading.Lock()
        self.ready: deque[DirectTask] = deque()
        self._ready = self.ready  # (for Task._setup: the queue its tasks wait in)
        self.retry_at: dict[DirectTask, float] = {}  # requeued retries' backoffs
        self.workers: set[_Worker] = set()
        self.behind: set[_Worker] = set()  # threads whose task went on without them
        self.idle = 0  # workers waiting for a task
        self.has_work = threading.Condition(self.lock)
        self.closing = False
        self.made = 0  # threads made, for their names
        # The watchdog: when it wakes next (inf: not until told), and its thread.
        self.watch_until = _INF
        self.watched = threading.Condition(self.lock)
        self.watchdog: threading.Thread | None = None
        _crews.add(self)

    # -- submitting --------------------------------------------------------------------------

    def submit(self, task: DirectTask) -> None:
        """Queue ``task``, made with this crew as its owner, for a worker."""
        with self.lock:
            self.queue(task)

    def queue(self, task: DirectTask) -> None:
        """`submit` under the lock, which the caller holds."""
        self._counts.submitted += 1
        self.ready.append(task)
        self.wake_one()

    def wake_one(self) -> None:
        """Wake an idle worker for the queue, or start one if fewer than ``size`` run."""
        if self.idle:
            self.has_work.notify()
            self.idle -= 1  # (counted as woken now: one notify per task waiting)
        elif len(self.workers) < self.size:
            self.made += 1
            worker = _Worker(self)
            self.workers.add(worker)
            worker.thread.start()

    def take(self) -> DirectTask | None:
        """The next task from the queue (None: the crew is closing); under the lock."""
        ready = self.ready
        while True:
            while ready:
                task = ready.popleft()
                if task._queue is ready:
                    return task
                self.retry_at.pop(task, None)  # (canceled while it waited)
            if self.closing:
                return None
            self.idle += 1  # (wake_one takes it off the count as it notifies)
            self.has_work.wait()

    # -- canceling, deadlines --------------------------------------------------------------

    def leave(self, worker: _Worker) -> None:
        """The task of ``worker`` goes on (or ends) without the attempt running in it: tell
        the function to stop; the thread, once it returns, ends, and another takes its place
        in the crew."""
        signal_stop(worker.run)
        if worker.call is not None:  # awaiting on the loop (see await_on_loop)
            worker.call.cancel()
        worker.run = worker.task = None
        worker.deadline = _INF
        self.workers.discard(worker)
        self.behind.add(worker)
        if self.ready:
            self.wake_one()

    def watch(self, deadline: float) -> None:
        """An attempt's ``deadline`` comes before the watchdog's next wake-up: wake it."""
        self.watch_until = deadline
        if self.watchdog is None:
            self.watchdog = threading.Thread(
                target=self.watch_deadlines, name="asynctasklib-watchdog", daemon=True
            )
            self.watchdog.start()
        else:
            self.watched.notify()

    def watch_deadlines(self) -> None:
        with self.lock:
            while not self.closing:
                now = _monotonic()
                soonest = _INF
                for worker in list(self.workers):
                    deadline = worker.deadline
                    if deadline <= now:
                        self.expire(worker)
                    elif deadline < soonest:
                        soonest = deadline
                self.watch_until = soonest
                self.watched.wait(None if soonest == _INF else soonest - now)

    def expire(self, worker: _Worker) -> None:
        """The attempt ``worker`` runs is over its deadline: it fails, or is retried from the
        queue's head once its backoff has passed, as the task decides."""
        task = worker.task
        assert task is not None
        self.leave(worker)
        try:
            state, value = task._attempt_ended(None, False, True, False, _INF)
            if state is not _PENDING:
                task._finish(state, value)
                return
            task._retry()
        except BaseException as exc:  # from retry_on or backoff, not ours
            if task._state is _PENDING or task._state is _STARTED:
                task._abort(exc)
            self.escaped(task, exc)
            return
        self.retry_at[task] = value
        task._queue = self.ready
        self.ready.appendleft(task)
        self.wake_one()

    def escaped(self, task: DirectTask, error: BaseException) -> None:
        """A BaseException of ``task``'s (it ended with it): as on the loop path, a
        KeyboardInterrupt or SystemExit reaches only the task's waiters; any other stops the
        pool (on its loop)."""
        if isinstance(error, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
            return
        on_broken = self.on_broken()
        if on_broken is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to stop
                self.loop.call_soon_threadsafe(on_broken, task, error)

    # -- what the pool asks ------------------------------------------------------------------

    def in_progress(self) -> list[Task[Any]]:
        """The tasks in progress: those the workers hold, then those queued, in order."""
        with self.lock:
            held: list[Task[Any]] = [w.task for w in self.workers if w.task is not None]
            return held + [task for task in self.ready if task._queue is self.ready]

    def counts_with(self, counts: _Counts) -> _Counts:
        """The crew's counters added to the pool's ``counts``, read consistently."""
        with self.lock:
            return counts.plus(self._counts)

    def cancel_all(self) -> None:
        for task in self.in_progress():
            task._cancel()

    def close(self, wait: bool = True) -> None:
        """End the threads once idle (the pool has no task in progress); with ``wait``,
        wait for them (not for those whose task went on without them: see `leave`)."""
        with self.lock:
            self.closing = True
            self.has_work.notify_all()
            self.watched.notify()
            threads = [worker.thread for worker in self.workers]
        if self.watchdog is not None:
            threads.append(self.watchdog)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def at_exit(self) -> None:
        """The interpreter exits: the tasks in progress end CANCELED, their functions told
        to stop, and every thread is waited for, as concurrent.futures waits for its own."""
        self.cancel_all()
        with self.lock:
            behind = [worker.thread for worker in self.behind]
        self.close()
        for thread in behind:
            thread.join()


_crews: weakref.WeakSet[DirectCrew] = weakref.WeakSet()


def _cancel_at_exit() -> None:
    """At the interpreter's exit, the direct tasks still in progress end CANCELED (their
    functions told to stop), as the loop path's do when the portals close."""
    for crew in list(_crews):
        crew.at_exit()


register_atexit(_cancel_at_exit)
