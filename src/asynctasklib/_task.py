"""`Task` and `Run`: one task's lifecycle. `Task._execute` is the engine every face shares."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ._definition import Definition
from ._errors import (
    InvalidStateError,
    TaskCanceledError,
    TaskFnNotSetError,
    TaskInProgressError,
    TaskTimeoutError,
)
from ._hooks import StateHooks, call_hook
from ._retry import retry_wait, seconds
from ._state import State

if TYPE_CHECKING:
    from ._pool import WorkerPool

__all__ = ["Run", "Task"]

T = TypeVar("T")

logger = logging.getLogger("asynctasklib")

_CREATED, _PENDING, _STARTED, _DONE, _FAILED, _CANCELED = State
_UTC = UTC
_now = datetime.now
_get_running_loop = asyncio._get_running_loop
_event_lock = threading.Lock()  # guards Run._event, made on first wait_cancelled()
_standalone: set[asyncio.Task[None]] = set()  # strong references to go()'s asyncio tasks


class Run:
    """What a task function receives: which task and attempt this is, and a line back to it.

    Every method is safe to call from the worker thread that runs a plain (sync) task
    function.
    """

    __slots__ = ("_attempt", "_cancelled", "_deadline", "_event", "_task")

    def __init__(self, task: Task[Any], attempt: int, deadline: float | None) -> None:
        self._task = task
        self._attempt = attempt
        self._deadline = deadline
        self._cancelled = False
        self._event: threading.Event | None = None

    def __repr__(self) -> str:
        return f"<Run id={self.id!r} attempt={self._attempt} cancelled={self._cancelled}>"

    @property
    def id(self) -> str:
        """The task's id."""
        return self._task._id

    @property
    def attempt(self) -> int:
        """0 for the first attempt, n for retry n."""
        return self._attempt

    @property
    def deadline(self) -> float | None:
        """The event loop time (``loop.time()``) at which this attempt times out, or None."""
        return self._deadline

    @property
    def cancelled(self) -> bool:
        """True once this attempt was cancelled or timed out: time to stop."""
        return self._cancelled

    def cancel(self) -> None:
        """Cancel this run's own task."""
        self._task.cancel()

    def callback(self) -> None:
        """Fire the task's ``on_task_fn`` hook."""
        self._task._task_fn_callback()

    async def sleep(self, delay: float | timedelta) -> None:
        """Sleep; a cancel or timeout of the task interrupts it (for ``async def`` functions)."""
        await asyncio.sleep(seconds(delay, "delay"))

    def wait_cancelled(self, timeout: float | timedelta | None = None) -> bool:
        """Block up to ``timeout`` seconds until this attempt is cancelled or times out.

        Returns True if it was, False when the timeout passed first. For plain functions
        running in a worker thread; an ``async def`` function uses ``await run.sleep()``.
        """
        limit = None if timeout is None else seconds(timeout, "timeout")
        loop = self._task._loop
        if loop is not None and _get_running_loop() is loop:
            raise RuntimeError(
                "wait_cancelled() blocks the thread; in an async task_fn use await run.sleep()"
            )
        with _event_lock:
            if self._cancelled:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(limit)

    def _signal(self) -> None:
        with _event_lock:
            self._cancelled = True
            event = self._event
        if event is not None:
            event.set()


class _Runner:
    """The asyncio task that drives task lifecycles: a pool worker, or a standalone task's own.

    It keeps the cheap deadline mechanism: one timer per runner, armed lazily and re-armed
    only when it fires, instead of a timer per attempt. An attempt only stores its deadline;
    the timer compares when it fires.
    """

    __slots__ = (
        "_timer",
        "_timer_when",
        "atask",
        "current",
        "deadline",
        "expired",
        "issued",
        "loop",
        "run",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.atask: asyncio.Task[None] | None = None
        self.current: Task[Any] | None = None  # the task being executed
        self.run: Run | None = None  # its current attempt
        self.deadline: float | None = None  # that attempt's deadline
        self.expired = False  # the deadline passed and the runner was interrupted for it
        self.issued = 0  # cancellations we delivered, to take back with uncancel()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    def call_in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run a plain function off the event loop (here: the loop's default executor)."""
        return self.loop.run_in_executor(None, fn, *args)

    def arm(self, deadline: float) -> None:
        self.deadline = deadline
        timer = self._timer
        if timer is None or self._timer_when > deadline:
            if timer is not None:
                timer.cancel()
            self._timer_when = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self.deadline
        if deadline is None:
            return
        if deadline > self._timer_when:  # a later attempt's deadline
            self.arm(deadline)
            return
        self.expired = True
        if self.run is not None:
            self.run._signal()
        self.interrupt()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def interrupt(self) -> None:
        """Throw a CancelledError into whatever the runner awaits now."""
        assert self.atask is not None
        self.issued += 1
        self.atask.cancel()

    def settle(self) -> bool:
        """Take back our cancellations; True if someone else cancelled the runner as well."""
        atask = self.atask
        assert atask is not None
        for _ in range(self.issued):
            atask.uncancel()
        self.issued = 0
        return atask.cancelling() > 0

    async def run_one(self, task: Task[Any]) -> None:
        try:
            if task._runner is self and task._state is _PENDING:
                await task._execute(self)
        finally:
            self.disarm()


class Task(Generic[T]):
    """One run of a `Definition`, with a lifecycle you can watch, wait for and cancel.

    ``Task(definition)`` is CREATED and fires ``on_created``; ``go()`` starts it on the
    running event loop. ``await task`` gives the function's return value or raises its error;
    ``await task.wait()`` only waits. A task that has ended may be started again with ``go()``.
    """

    __slots__ = (
        "__weakref__",
        "_attempts",
        "_callbacks",
        "_cancel_requested",
        "_counts",
        "_definition",
        "_error",
        "_error_tb",
        "_hooks",
        "_id",
        "_loop",
        "_result",
        "_runner",
        "_slot_owner",
        "_state",
        "_waiters",
    )

    def __init__(self, definition: Definition[T]) -> None:
        if not isinstance(definition, Definition):
            raise TypeError(f"Task takes a Definition, got {type(definition).__name__}")
        self._setup(definition, definition.hooks, None)

    def _setup(
        self, definition: Definition[T], hooks: StateHooks | None, counts: list[int] | None
    ) -> None:
        self._definition = definition
        self._id = definition.id
        self._hooks = hooks
        self._counts = counts
        self._state = _CREATED
        self._error: BaseException | None = None
        self._error_tb: TracebackType | None = None
        self._result: T | None = None
        self._attempts = 0
        self._cancel_requested = False
        self._runner: _Runner | None = None
        self._slot_owner: WorkerPool | None = None  # the pool whose worker slot it holds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] | None = None
        self._callbacks: list[Callable[[Task[T]], object]] | None = None
        if hooks is not None and hooks.on_created is not None:
            call_hook(hooks.on_created, self._id, _now(_UTC))

    def __repr__(self) -> str:
        return f"<Task id={self._id!r} state={self._state.name} attempts={self._attempts}>"

    # -- what it is -----------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def definition(self) -> Definition[T]:
        return self._definition

    @property
    def state(self) -> State:
        return self._state

    @property
    def error(self) -> BaseException | None:
        """None, or the exception the task ended with (a FAILED or CANCELED task)."""
        return self._error

    @property
    def attempts(self) -> int:
        """Attempts started so far in this run."""
        return self._attempts

    def is_created(self) -> bool:
        return self._state is _CREATED

    def is_pending(self) -> bool:
        return self._state is _PENDING

    def is_started(self) -> bool:
        return self._state is _STARTED

    def is_done(self) -> bool:
        return self._state is _DONE

    def is_failed(self) -> bool:
        return self._state is _FAILED

    def is_canceled(self) -> bool:
        return self._state is _CANCELED

    def is_end(self) -> bool:
        """DONE, FAILED or CANCELED."""
        return self._state >= _DONE

    def is_in_progress(self) -> bool:
        """PENDING or STARTED."""
        return self._state is _PENDING or self._state is _STARTED

    # -- starting, stopping, waiting -------------------------------------------------------

    def go(self) -> None:
        """Start the task on the running event loop; it is PENDING when this returns.

        Raises ``TaskInProgressError`` if it is PENDING or STARTED already; an ended task
        starts a fresh run (attempts and error reset).
        """
        loop = asyncio.get_running_loop()
        self._begin(loop)
        runner = _Runner(loop)
        self._runner = runner
        atask = loop.create_task(runner.run_one(self), name=f"asynctasklib task {self._id!r}")
        runner.atask = atask
        _standalone.add(atask)
        atask.add_done_callback(_standalone.discard)

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        state = self._state
        if state is _PENDING or state is _STARTED:
            raise TaskInProgressError(f"task {self._id!r} is already {state.name}")
        self._loop = loop
        self._error = self._result = None
        self._attempts = 0
        self._cancel_requested = False
        self._move(_PENDING)
        hooks = self._hooks
        if hooks is not None and hooks.on_pending is not None:
            call_hook(hooks.on_pending, self._id, _now(_UTC), 0)

    def cancel(self) -> bool:
        """Cancel the task, whatever it is doing: waiting its delay or backoff, or running.

        Returns True if the task was in progress (it ends CANCELED, never retried), False if
        it had not started or had ended already. Safe to call from any thread.
        """
        loop = self._loop
        if loop is not None and _get_running_loop() is not loop:
            if self._state is not _PENDING and self._state is not _STARTED:
                return False
            try:
                loop.call_soon_threadsafe(self._cancel)
            except RuntimeError:  # the loop is closed: nothing runs the task any more
                return False
            return True
        return self._cancel()

    def _cancel(self) -> bool:
        state = self._state
        if state is not _PENDING and state is not _STARTED:
            return False
        if self._cancel_requested:
            return True
        self._cancel_requested = True
        runner = self._runner
        if runner is None or runner.current is not self:  # queued, or go() just called
            self._finish(_CANCELED, self._canceled_error())
            return True
        if runner.run is not None:
            runner.run._signal()
        if runner.atask is asyncio.current_task():
            # The task cancels itself from its own code: a CancelledError now would land in
            # whatever the runner awaits next, maybe another task's. Deliver it from the loop.
            runner.loop.call_soon(self._deliver_cancel, runner)
        else:
            runner.interrupt()
        return True

    def _deliver_cancel(self, runner: _Runner) -> None:
        if runner.current is self:
            runner.interrupt()

    async def wait(self) -> None:
        """Wait until the task has ended; never raises the task's error (Go's ``Await``)."""
        if self._state >= _DONE:
            return
        if self._state is _CREATED:
            raise InvalidStateError(f"task {self._id!r} was never started: call go() first")
        loop = self._loop
        assert loop is not None
        if _get_running_loop() is not loop:
            raise RuntimeError(f"task {self._id!r} runs on another event loop")
        fut: asyncio.Future[None] = loop.create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if self._waiters is not None and fut in self._waiters:
                self._waiters.remove(fut)
            raise

    def __await__(self) -> Generator[Any, None, T]:
        yield from self.wait().__await__()
        return self.result()

    def result(self) -> T:
        """The function's return value, or raise the task's error; never waits.

        ``InvalidStateError`` if the task has not ended.
        """
        state = self._state
        if state is _DONE:
            return self._result  # type: ignore[return-value]
        if state is _FAILED or state is _CANCELED:
            error = self._error
            assert error is not None
            raise error.with_traceback(self._error_tb)
        raise InvalidStateError(f"task {self._id!r} has not ended: it is {state.name}")

    def add_done_callback(self, fn: Callable[[Task[T]], object]) -> None:
        """Call ``fn(task)`` when this run ends (at once if it has ended), on the loop's thread.

        Like hooks, a callback that raises is logged and ignored.
        """
        if self._state >= _DONE:
            self._call_callback(fn)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(fn)

    def remove_done_callback(self, fn: Callable[[Task[T]], object]) -> int:
        """Remove every registration of ``fn``; returns how many there were."""
        if not self._callbacks:
            return 0
        before = len(self._callbacks)
        self._callbacks = [cb for cb in self._callbacks if cb != fn]
        return before - len(self._callbacks)

    # -- the engine ----------------------------------------------------------------------

    async def _execute(self, runner: _Runner) -> None:
        """Drive this run from PENDING to its end inside ``runner``'s asyncio task.

        The one place where delay, attempts, timeouts, retries, backoff and cancellation are
        decided, whichever face or executor started the task.
        """
        runner.current = self
        definition = self._definition
        fn = definition.task_fn
        if fn is None:
            self._finish(_FAILED, TaskFnNotSetError(f"task {self._id!r} has no task_fn"))
            return
        loop = runner.loop
        # Durations are floats once Definition has validated them.
        max_duration = cast("float | None", definition.max_duration)
        budget = cast("float | None", definition.total_timeout)
        budget_end = None if budget is None else loop.time() + budget
        hooks = self._hooks
        wait = cast("float", definition.delay)
        error: BaseException | None = None
        attempt = 0
        while True:
            if budget_end is not None and loop.time() + wait >= budget_end:
                self._finish(_FAILED, self._budget_error(budget, error))
                return
            if wait:
                try:
                    await asyncio.sleep(wait)
                except asyncio.CancelledError:
                    self._finish(_CANCELED, self._canceled_error())
                    if runner.settle():
                        raise
                    return

            self._attempts = attempt + 1
            self._move(_STARTED)
            if hooks is not None and hooks.on_started is not None:
                call_hook(hooks.on_started, self._id, _now(_UTC))
            if max_duration is None:
                deadline = budget_end
            else:
                deadline = loop.time() + max_duration
                if budget_end is not None and budget_end < deadline:
                    deadline = budget_end
            run = Run(self, attempt, deadline)
            runner.run = run
            if deadline is not None:
                runner.arm(deadline)
            error = None
            cancelled: asyncio.CancelledError | None = None
            try:
                if definition._is_async:
                    result = await fn(run)  # type: ignore[misc]
                else:
                    result = await self._call_sync(runner, fn, run)
            except asyncio.CancelledError as exc:
                cancelled = exc
                run._signal()
            except Exception as exc:
                error = exc
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: not ours to keep
                runner.deadline = runner.run = None
                self._finish(_FAILED, exc)
                raise
            runner.deadline = runner.run = None
            expired = runner.expired
            if expired:
                runner.expired = False
            if (cancelled is not None or runner.issued) and runner.settle():
                # The runner itself was cancelled from outside (the loop is going away).
                self._finish(_CANCELED, self._canceled_error())
                raise cancelled or asyncio.CancelledError()
            if self._cancel_requested:
                self._finish(_CANCELED, self._canceled_error())
                return
            if expired:
                if deadline == budget_end:
                    self._finish(_FAILED, self._budget_error(budget, None))
                    return
                error = TaskTimeoutError(
                    f"task {self._id!r}: attempt {attempt} ran longer than "
                    f"max_duration={max_duration}s"
                )
            elif cancelled is not None:  # a CancelledError of the function's own: never a failure
                self._finish(_CANCELED, self._canceled_error())
                return
            elif error is None:
                self._finish(_DONE, None, result)
                return

            attempt += 1
            if attempt > definition.max_retries:
                self._finish(_FAILED, error)
                return
            try:
                next_wait = retry_wait(error, attempt, definition.retry_on, definition.backoff)
            except Exception:
                logger.exception("retry_on or backoff of task %r raised", self._id)
                next_wait = None
            if next_wait is None:
                self._finish(_FAILED, error)
                return
            wait = next_wait
            self._move(_PENDING)
            if hooks is not None and hooks.on_pending is not None:
                call_hook(hooks.on_pending, self._id, _now(_UTC), attempt)

    async def _call_sync(self, runner: _Runner, fn: Callable[[Run], Any], run: Run) -> Any:
        context = contextvars.copy_context()
        result = await runner.call_in_thread(context.run, fn, run)
        if inspect.isawaitable(result):  # a lambda wrapping a coroutine function
            result = await result
        return result

    def _move(self, state: State) -> None:
        counts = self._counts
        if counts is not None:
            counts[self._state] -= 1
            counts[state] += 1
        self._state = state

    def _finish(self, state: State, error: BaseException | None, result: Any = None) -> None:
        runner = self._runner
        if runner is not None:
            self._runner = None
            if runner.current is self:
                runner.current = None
        self._result = result
        self._error = error
        if error is not None:
            self._error_tb = error.__traceback__
        self._move(state)
        pool = self._slot_owner
        if pool is not None:
            self._slot_owner = None
            pool._task_ended(self)
        hooks = self._hooks
        if hooks is not None:
            if state is _DONE:
                if hooks.on_done is not None:
                    call_hook(hooks.on_done, self._id, _now(_UTC))
            elif state is _FAILED:
                if hooks.on_failed is not None:
                    call_hook(hooks.on_failed, self._id, _now(_UTC), error)
            elif hooks.on_canceled is not None:
                call_hook(hooks.on_canceled, self._id, _now(_UTC))
        waiters = self._waiters
        if waiters is not None:
            self._waiters = None
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        callbacks = self._callbacks
        if callbacks is not None:
            self._callbacks = None
            for fn in callbacks:
                self._call_callback(fn)

    def _call_callback(self, fn: Callable[[Task[T]], object]) -> None:
        try:
            fn(self)
        except Exception:
            logger.exception("done callback %r of task %r raised", fn, self._id)

    def _canceled_error(self) -> TaskCanceledError:
        return TaskCanceledError(f"task {self._id!r} was cancelled")

    def _budget_error(self, budget: float | None, last: BaseException | None) -> TaskTimeoutError:
        error = TaskTimeoutError(f"task {self._id!r} spent its total_timeout={budget}s")
        error.__cause__ = last
        return error

    def _task_fn_callback(self) -> None:
        hooks = self._hooks
        if hooks is None or hooks.on_task_fn is None:
            return
        when = _now(_UTC)
        loop = self._loop
        if loop is not None and _get_running_loop() is not loop:
            loop.call_soon_threadsafe(call_hook, hooks.on_task_fn, self._id, when)
        else:
            call_hook(hooks.on_task_fn, self._id, when)
