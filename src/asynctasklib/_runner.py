"""The runner: the asyncio task that drives task lifecycles, and the only place that awaits.

A pool's workers are runners fed by the pool's queue; a task started with ``go()`` gets a
runner of its own (`_Alone`). Tasks run inline in the runner's asyncio task: no asyncio
task per task. `_Runner.work` takes one task at a time through these phases. The hot ones
are written inline in the loop (a call there costs about 1% per task, measured); the cold
ones are the methods named on the right.

    take      pop a task; skip it if it was canceled while it waited;
              lend it the runner's context if it has the same variables  `same_context`
    first     a task with no task_fn, a delay, a total_timeout or a rate
              limit waits (or ends) first; any other starts at once      `first_turn`
    start     PENDING -> STARTED: count the attempt, make its Run, fire
              on_started, arm its deadline (max_duration's or the
              total_timeout's, the earlier)                              `fire_started`
    attempt   await the function (a plain one runs in the executor)      `call_sync`
    settle    a plain success ends the task DONE. Anything else: settle
              the runner's side, then do what the task decides (I/O-free,
              `Task._attempt_ended`): end the run, or retry once the
              backoff and the rate limit allow (back to start)           `attempt_over`,
                                                                         `turn`
    abandon   a BaseException not ours ends the task, then goes up        `abandon`
    check     a task changed the runner's context variables: retire      `retire`
    idle      no task left: wait for more, or end                        `idle`

The runner also keeps the deadlines: one timer per runner, armed lazily and re-armed only
when it fires, instead of a timer per attempt. An attempt just stores its deadline; the
timer compares when it fires (`_on_timer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import math
import types
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar, cast

from ._context import run_in, same_context
from ._errors import TaskCanceledError, TaskFnNotSetError, TaskTimeoutError
from ._hooks import NO_HOOKS, call_hook
from ._run import _RUN, Run, _Run
from ._state import State
from ._stats import _Counts

if TYPE_CHECKING:
    from ._definition import Definition
    from ._hooks import StateHooks
    from ._ratelimit import Limiter

__all__ = ["no_stop_iteration"]

T = TypeVar("T")

_PENDING, _STARTED, _DONE, _FAILED, _CANCELED = (
    State.PENDING,
    State.STARTED,
    State.DONE,
    State.FAILED,
    State.CANCELED,
)
_INF = math.inf
_UTC = UTC
_now = datetime.now
_copy_context = contextvars.copy_context


class _Decision(NamedTuple):
    """What follows an attempt that raised or was interrupted (`Task._attempt_ended`)."""

    state: State  # PENDING for a retry, else the state the run ends in
    value: Any  # the seconds to wait before the retry, or the end's outcome (its error)


class _Driven(Protocol):
    """A task as the runner drives it. `Task` is one; it imports this module (``go()``
    starts a runner), so the runner names the task by its shape. These are the fields the
    hot path reads and writes, and the task's own steps."""

    @property
    def id(self) -> str: ...

    _queue: deque[Any] | None  # the queue it waits in; None once taken or canceled
    _definition: Definition[Any]
    _arg: Any  # _RUN: task_fn(run) with the attempt's Run; else a tuple: task_fn(*_arg)
    _limiter: Limiter | None
    _context: contextvars.Context | None  # its own context variables; None: the runner's
    _runner: _Runner | None
    _attempts: int
    _state: State
    _hooks: StateHooks
    _cancel_requested: bool

    def _start_attempt(self) -> int: ...

    def _finish(self, state: State, outcome: Any) -> None: ...

    def _attempt_ended(
        self,
        error: Exception | None,
        cancelled: bool,
        expired: bool,
        budget_spent: bool,
        budget_end: float,
    ) -> _Decision: ...

    def _retry(self) -> None: ...

    def _abort(self, error: BaseException) -> None: ...

    def _budget_error(self, last: BaseException | None) -> TaskTimeoutError: ...

    def _canceled_error(self) -> TaskCanceledError: ...


def no_stop_iteration(error: StopIteration) -> RuntimeError:
    """What a task's error is when its plain function raised StopIteration: a RuntimeError
    from it, as PEP 479 makes of one raised in a coroutine (an asyncio future refuses to hold
    a StopIteration)."""
    wrapped = RuntimeError("task_fn raised StopIteration")
    wrapped.__cause__ = error
    return wrapped


def signal_stop(run: Run | None) -> None:
    """Tell the attempt's function it is time to stop: ``run.canceled`` turns True, and a
    plain function in its thread returns from ``run.wait_canceled()``."""
    if run is not None:
        run._signal()  # (the Run's engine side: see Run)


def _call_plain(fn: Callable[..., T], run: Run, args: Any) -> T:
    """``fn(run)``, or ``fn(*args)`` for a task given its arguments, in a worker thread."""
    try:
        result = fn(run) if args is _RUN else fn(*args)
    except StopIteration as exc:
        raise no_stop_iteration(exc) from exc
    if result.__class__ is types.CoroutineType and run.canceled:
        # Cancelled or timed out meanwhile: nobody will await it (and a canceled
        # run_in_executor future drops it unseen); closed, it does not warn that it never
        # was. (A pool also closes one that ends up discarded otherwise: see _executor._discard.)
        result.close()  # type: ignore[attr-defined]
    return result


class _Runner:
    """An asyncio task that drives task lifecycles, taking tasks from ``ready`` one by one
    (see the module's docstring for its phases)."""

    __slots__ = (
        "atask",
        "budget_end",
        "counts",
        "deadline",
        "expired",
        "inline",
        "issued",
        "loop",
        "ready",
        "run",
        "task",
        "timer",
        "timer_when",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, ready: deque[Any], counts: _Counts) -> None:
        self.loop = loop
        self.ready = ready
        self.counts = counts  # its owner's: where the attempts it starts are counted
        self.atask: asyncio.Task[None] | None = None
        self.task: _Driven | None = None  # the task taken last (it may have ended)
        # Whether a task whose submitter's context variables are this runner's own may run
        # in the runner's context (see work()).
        self.inline = True
        self.run: Run | None = None  # the attempt running now
        # Times on the loop's clock, inf for none (so the hot path compares them with no
        # test for None): the attempt's deadline, when the task's total_timeout ends, and
        # when the timer fires.
        self.deadline = _INF
        self.budget_end = _INF
        self.timer_when = _INF
        self.timer: asyncio.TimerHandle | None = None
        self.expired = False  # the deadline passed and the runner was interrupted for it
        self.issued = 0  # cancellations we delivered, to take back with uncancel()

    async def work(self) -> None:
        """Drive each task taken from ``ready`` from PENDING to its end, inline."""
        ready, loop, counts, inline = self.ready, self.loop, self.counts, self.inline
        home = _copy_context()  # this runner's context variables, as it starts
        size = len(home)  # (none at all is the common case: then the checks ask no more)
        cancelling = await self.started()
        task: _Driven | None
        run: Run | None
        try:
            busy = True
            while busy:
                while ready:
                    # -- take (the plan is Definition's, made for this loop: see _plan) --
                    task = ready.popleft()
                    if task._queue is not ready:
                        continue  # canceled while it waited
                    try:
                        fn, is_async, max_duration, plain = task._definition._plan
                        arg, limiter, context = task._arg, task._limiter, task._context
                        if inline and (
                            not context if not size else same_context(context, home, size)  # type: ignore[arg-type]
                        ):
                            context = task._context = None  # lent the runner's (see check)
                        task._queue = None  # taken
                        task._runner, self.task, self.budget_end = self, task, _INF
                        # -- first (the common task starts at once) --
                        again = (plain and limiter is None) or await self.first_turn(task, limiter)
                        while again:
                            # -- start: PENDING -> STARTED --
                            attempt = task._start_attempt()
                            counts.attempts += 1
                            self.run = run = _Run()
                            run._task, run._attempt = task, attempt
                            if task._hooks.on_started is not None:
                                self.fire_started(task, run)
                            deadline = loop.time() + max_duration
                            if self.budget_end < deadline:
                                deadline = self.budget_end
                            run._deadline = self.deadline = deadline
                            if deadline < self.timer_when:
                                self.arm(deadline)
                            # -- attempt: fn(run), or fn(*arg) for a task given its arguments --
                            try:
                                if not is_async:
                                    result = await self.call_sync(task, fn, run, arg)
                                else:  # in the runner's context (see take), or its own
                                    coro = fn(run) if arg is _RUN else fn(*arg)
                                    if context is not None:  # each step entered apart
                                        coro = run_in(context, coro)
                                    result = await coro
                            except (asyncio.CancelledError, Exception) as exc:
                                again = await self.attempt_over(task, exc)
                                continue
                            # -- settle (our timer's interrupt counts in issued too) --
                            if self.issued or task._cancel_requested:
                                again = await self.attempt_over(task, None)
                                continue
                            if cancelling():  # the function's own (see forget())
                                self.forget()
                            self.deadline, self.run = _INF, None
                            task._finish(_DONE, result)  # the common case: a plain success
                            break
                    except BaseException as exc:
                        if not self.abandon(task, exc):
                            raise
                    # -- check (a runner that never lends its context has nothing to check) --
                    if inline:
                        current = _copy_context()
                        if current if not size else not same_context(current, home, size):
                            # Changed by the task or a done callback: retire, or the next
                            # task lent this context would see the change.
                            self.retire(home)
                            return
                # -- idle, holding nothing of the last task (its result, item, context...) --
                self.task = task = run = coro = arg = context = result = fn = limiter = None
                busy = await self.idle()
        finally:
            self.disarm()

    # -- the cold steps ----------------------------------------------------------------------

    async def started(self) -> Callable[[], int]:
        """The runner's asyncio task has started: its ``cancelling``."""
        if self.atask is None:
            # Started eagerly, inside create_task (an eager task factory): the caller has not
            # stored our asyncio task, nor queued the task or fired its first hooks. Start on
            # the loop's next turn, as a task would without such a factory.
            await asyncio.sleep(0)
        assert self.atask is not None
        self.begin()
        return self.atask.cancelling

    async def first_turn(self, task: _Driven, limiter: Limiter | None) -> bool:
        """Before the first attempt of a task with no task_fn, a delay, a total_timeout or a
        rate limit: True to start it, False if the run has ended (FAILED, or CANCELED while
        it waited)."""
        definition = task._definition
        if definition.task_fn is None:
            task._finish(_FAILED, TaskFnNotSetError(f"task {task.id!r} has no task_fn"))
            return False
        # (seconds as floats: Definition normalises its durations as it is made)
        delay = cast("float", definition.delay)
        budget = cast("float | None", definition.total_timeout)
        if budget is not None:
            now = self.loop.time()
            self.budget_end = now + budget
            if now + delay >= self.budget_end:  # the delay alone spends it
                task._finish(_FAILED, task._budget_error(None))
                return False
        if not delay and limiter is None:
            return True
        return await self.turn(task, delay, limiter)

    def fire_started(self, task: _Driven, run: Run) -> None:
        hook = task._hooks.on_started
        assert hook is not None
        call_hook(hook, task.id, _now(_UTC), context=task._context)
        if task._cancel_requested:  # canceled from the hook: the Run says so from the start
            signal_stop(run)

    async def turn(self, task: _Driven, wait: float, limiter: Limiter | None) -> bool:
        """Wait ``wait`` seconds (the delay, or a backoff: a retry yields even at 0), then
        for the rate limit's turn. True to start the attempt; False if the run has ended
        meanwhile: canceled (CANCELED), or out of its total_timeout (FAILED)."""
        try:
            if wait or task._attempts:
                await asyncio.sleep(wait)
            if limiter is not None:
                if self.budget_end == _INF:
                    await limiter.acquire()
                elif not await self.acquire_within_budget(limiter):
                    task._finish(_FAILED, task._budget_error(None))
                    return False
        except asyncio.CancelledError:
            task._finish(_CANCELED, task._canceled_error())
            if self.settle():
                raise
            return False
        if self.budget_end != _INF and self.loop.time() >= self.budget_end:
            task._finish(_FAILED, task._budget_error(None))  # it ran out while it waited
            return False
        return True

    async def acquire_within_budget(self, limiter: Limiter) -> bool:
        """The rate limit's turn, unless the task's total_timeout ends first (False)."""
        try:
            async with asyncio.timeout_at(self.budget_end):
                await limiter.acquire()
        except TimeoutError:
            return False
        return True

    async def attempt_over(
        self, task: _Driven, raised: asyncio.CancelledError | Exception | None
    ) -> bool:
        """After an attempt that raised, was interrupted, or returned with a cancel or a
        timeout on its way: settle the runner's side (the attempt's deadline and Run, our
        cancellations), then do what the task decides. True to start the next attempt (the
        retry, once its wait is over), False if the run has ended.

        Raises CancelledError if the runner itself was canceled from outside.
        """
        if isinstance(raised, asyncio.CancelledError):
            error, cancelled = None, raised
        else:
            error, cancelled = raised, None
        deadline = self.deadline
        run = self.run
        expired = self.expired
        self.deadline = _INF
        self.run = None
        self.expired = False
        if cancelled is not None or task._cancel_requested:
            signal_stop(run)
        if cancelled is not None or self.issued:
            if self.settle():
                # The runner itself was canceled from outside (the loop is going away).
                task._finish(_CANCELED, task._canceled_error())
                raise cancelled or asyncio.CancelledError()
        elif self.atask.cancelling():  # type: ignore[union-attr]
            self.forget()  # the function's own, left as it raised (see forget())
        end = self.budget_end
        state, value = task._attempt_ended(
            error, cancelled is not None, expired, expired and deadline == end, end
        )
        if state is not _PENDING:
            task._finish(state, value)
            return False
        task._retry()
        return await self.turn(task, value, task._limiter)

    def abandon(self, task: _Driven, exc: BaseException) -> bool:
        """A BaseException that is not ours escaped while this runner drove ``task``
        (KeyboardInterrupt, SystemExit from the function, a hook, retry_on or backoff; or
        this runner canceled from outside). The task ends first; then True to go on with
        the next task, False to let the exception go up."""
        # Only a run this runner drives: an end hook may have started a new run of the
        # task, on a runner of its own.
        ours = task._queue is self.ready or getattr(task, "_runner", None) is self
        if ours and (task._state is _PENDING or task._state is _STARTED):
            signal_stop(self.run)
            if isinstance(exc, GeneratorExit):
                # (also this runner closed by the GC: its loop may be closed, and waking the
                # task's waiters fail; the task ends anyway)
                with contextlib.suppress(RuntimeError):
                    task._abort(exc)
            else:
                task._abort(exc)
        self.deadline = _INF
        self.run = None
        return not isinstance(exc, GeneratorExit) and self.keep_going(exc)

    async def call_sync(self, task: _Driven, fn: Callable[..., Any], run: Run, arg: Any) -> Any:
        """Run a plain task function on the runner's executor, off the event loop:
        ``fn(run)``, or ``fn(*arg)`` for a task given its arguments (see `Task._arg`)."""
        if self.remote:  # another process or machine: only picklable things cross
            if arg is _RUN:
                call = self.call_in_executor(fn, run._info())  # (the Run's engine side)
            else:
                call = self.call_in_executor(fn, *arg)
        else:
            # A copy per attempt: an attempt that timed out may still run in its thread.
            context = task._context
            context = contextvars.copy_context() if context is None else context.copy()
            call = self.call_in_executor(context.run, _call_plain, fn, run, arg)
        try:
            result = await call
        except asyncio.CancelledError:
            self.cancel_call(call)
            raise
        if result is not None and inspect.isawaitable(result):  # a lambda around an async def
            context = task._context
            if context is not None and inspect.iscoroutine(result):
                result = await run_in(context, result)  # (in the task's own context)
            else:
                result = await result
        return result

    def cancel_run(self, task: _Driven) -> None:
        """Cancel the run of ``task``, which this runner drives now."""
        signal_stop(self.run)
        if self.atask is asyncio.current_task():
            # The task cancels itself from its own code: a CancelledError now would land in
            # whatever the runner awaits next, maybe another task's. Deliver it from the loop.
            self.loop.call_soon(self._deliver_cancel, task)
        else:
            self.interrupt()

    def _deliver_cancel(self, task: _Driven) -> None:
        if task._runner is self:
            self.interrupt()

    # -- what a pool's worker overrides -------------------------------------------------------

    def begin(self) -> None:
        """The runner's asyncio task has started (a pool worker counts itself awake)."""

    def keep_going(self, exc: BaseException) -> bool:
        """A BaseException ended the current task: True to go on with the next one (a
        blocking face's worker, where there is no application loop for it to go up to; the
        task's waiters get it), False to let it go up."""
        return False

    def retire(self, home: contextvars.Context) -> None:
        """The runner ends before its time, its context variables changed by a task; a
        pool worker leaves a new worker in ``home`` (its variables as it started) to take
        the tasks waiting, one that runs every task in the task's own context."""

    async def idle(self) -> bool:
        """Wait for more tasks; False to end the runner."""
        return False

    remote = False  # True when plain functions run in another process (see RunInfo)

    def call_in_executor(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run a plain function off the event loop (here: the loop's default executor)."""
        return self.loop.run_in_executor(None, fn, *args)

    def cancel_call(self, call: asyncio.Future[Any]) -> None:
        """The runner stopped waiting for ``call`` (the executor's own future follows a
        canceled ``run_in_executor`` future by itself)."""

    # -- deadlines and cancellations ----------------------------------------------------------

    def arm(self, deadline: float) -> None:
        timer = self.timer
        if timer is not None:
            timer.cancel()
        self.timer_when = deadline
        self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        fired = self.timer_when
        self.timer = None
        self.timer_when = _INF
        deadline = self.deadline
        if deadline > fired:  # no attempt with a deadline runs now, or a later one does
            if deadline != _INF:
                self.arm(deadline)
            return
        self.expired = True
        signal_stop(self.run)
        self.interrupt()

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.timer_when = _INF

    def interrupt(self) -> None:
        """Throw a CancelledError into whatever the runner awaits now."""
        assert self.atask is not None
        self.issued += 1
        self.atask.cancel()

    def forget(self) -> None:
        """Take back the cancellation requests an attempt left on the runner's asyncio task
        although it ended by itself (returned, or raised an Exception), with none of ours
        outstanding: the task's own bookkeeping, which must not leak into the next attempt
        or task run by this runner (where ``settle()`` would take it for a cancellation
        from outside). A TaskGroup whose child fails while its body waits in ``__aexit__``
        leaves one on its parent task (CPython 3.11, 3.12), and so does a function that
        swallows ``asyncio.current_task().cancel()``.

        Why not a baseline taken as each attempt starts: this costs one ``cancelling()``
        call per attempt that ends by itself (none per interrupted one), the baseline as
        much plus a store; and, cleared here, the count is 0 whenever an attempt starts, so
        ``settle()`` needs no baseline either. A cancellation from outside that the
        function swallowed is taken back as well (asyncio cannot tell it from the
        function's own); one that reaches the runner as a CancelledError still ends it.
        (On 3.11 and 3.12, a cancellation the function requested and never awaited stays
        pending: ``uncancel()`` cannot take that back there.)"""
        atask = self.atask
        assert atask is not None
        while atask.cancelling():
            atask.uncancel()

    def settle(self) -> bool:
        """Take back our cancellations; True if someone else canceled the runner as well."""
        atask = self.atask
        assert atask is not None
        for _ in range(self.issued):
            atask.uncancel()
        self.issued = 0
        return atask.cancelling() > 0


class _Alone(_Runner):
    """The runner ``Task.go()`` starts for one task, and the `_Owner` of that task's run: no
    pool, no worker slot, counters of its own. It ends with the run."""

    __slots__ = ()

    _hooks = NO_HOOKS  # the definition's hooks apply
    _limiter = None
    _slots = None

    def __init__(self, loop: asyncio.AbstractEventLoop, task: _Driven) -> None:
        super().__init__(loop, deque((task,)), _Counts())

    # As an _Owner, under the names the engine asks for (the pool's):

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    @property
    def _ready(self) -> deque[Any]:
        return self.ready

    @property
    def _counts(self) -> _Counts:
        return self.counts
