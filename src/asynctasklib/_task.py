"""`Task` and `Run`: one task's lifecycle, the engine every face and executor shares.

The engine is `_Runner.work`, the only place that awaits (the delay, each attempt, each
backoff). It takes a task, starts each attempt and settles a plain success itself (the hot
path, written once, in the loop); the I/O-free decisions after an attempt that raised or
was interrupted are `Task._attempt_ended`'s, and every run ends in `Task._finish`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._definition import Definition
from ._errors import (
    InvalidStateError,
    TaskCanceledError,
    TaskFnNotSetError,
    TaskInProgressError,
    TaskTimeoutError,
)
from ._hooks import Hook, call_hook
from ._retry import retry_wait
from ._state import State
from ._threads import call_on_loop
from ._validate import seconds

if TYPE_CHECKING:
    from ._pool import WorkerPool
    from ._ratelimit import Limiter

__all__ = ["Run", "RunInfo", "Task"]

T = TypeVar("T")

logger = logging.getLogger("asynctasklib")

_CREATED, _PENDING, _STARTED, _DONE, _FAILED, _CANCELED = State
# A pool's counters (WorkerPool._counts) are facts, from which the states are derived (see
# WorkerPool._stats). Indexes: tasks submitted, attempts started, attempts ended otherwise
# than DONE (a retry, or a FAILED or CANCELED end while STARTED), and one per end state
# (DONE, FAILED, CANCELED: their own values); 0 is unused.
_SUBMITTED, _ATTEMPTS, _LEFT = 1, 2, 6
_UTC = UTC
_now = datetime.now
_get_running_loop = asyncio._get_running_loop
_copy_context = contextvars.copy_context
_RUN: Any = object()  # Task._arg meaning "call task_fn with the attempt's Run"
# How a run ended, for its waiters: the state, the result or error, the error's traceback.
_End = tuple[State, Any, TracebackType | None]
_ABSENT: Any = object()
_event_lock = threading.Lock()  # guards Run._event, made on first wait_cancelled()
_standalone: set[asyncio.Task[None]] = set()  # strong references to go()'s asyncio tasks


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a plain task function receives instead of a `Run` when the pool's executor runs
    it in another process or on another machine (``ProcessPoolExecutor``, Dask): the facts,
    picklable, without the line back to the task (no ``cancel()``, ``callback()``,
    ``cancelled`` or waits; a cancelled or timed-out task ends at once, and the function
    runs on until it returns).

    ``deadline`` is wall-clock time (``time.time()``) at which the attempt times out, or None.
    """

    id: str
    attempt: int
    deadline: float | None


class Run:
    """What a task function receives: which task and attempt this is, and a line back to it.

    Every method is safe to call from the worker thread that runs a plain (sync) task
    function.
    """

    __slots__ = ("_attempt", "_cancelled", "_deadline", "_event", "_task")

    _cancelled: bool
    _event: threading.Event
    _task: Task[Any]
    _attempt: int
    _deadline: float | None
    # _cancelled and _event are set on first use: most runs never need them.

    def __init__(self) -> None:
        raise TypeError("a Run is made by the engine for each attempt, and given to task_fn")

    def __repr__(self) -> str:
        return f"<Run id={self.id!r} attempt={self._attempt} cancelled={self.cancelled}>"

    @property
    def id(self) -> str:
        """The task's id."""
        return self._task.id

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
        return getattr(self, "_cancelled", False)

    def cancel(self) -> None:
        """Cancel this run's own task."""
        self._task.cancel()

    def callback(self) -> None:
        """Fire the task's ``on_task_fn`` hook (not once this attempt is over: a function
        still running after its attempt timed out fires nothing after the task's end)."""
        self._task._task_fn_callback(self)

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
            if self.cancelled:
                return True
            event = getattr(self, "_event", None)
            if event is None:
                event = self._event = threading.Event()
        if limit is not None and limit > threading.TIMEOUT_MAX:
            limit = None  # (inf, timedelta.max: as good as forever, which Event.wait refuses)
        return event.wait(limit)

    def _info(self) -> RunInfo:
        deadline = self._deadline
        if deadline is not None:  # loop time means nothing elsewhere: make it wall-clock time
            deadline = time.time() + (deadline - self._task._loop.time())  # type: ignore[union-attr]
        return RunInfo(self.id, self._attempt, deadline)

    def _signal(self) -> None:
        with _event_lock:
            self._cancelled = True
            event = getattr(self, "_event", None)
        if event is not None:
            event.set()


class _Run(Run):
    """The `Run` the engine makes: a class with no Python ``__init__`` is made by the
    interpreter's fast path (``object.__new__(Run)`` takes a slower one)."""

    __slots__ = ()
    __init__ = object.__init__


def no_stop_iteration(error: StopIteration) -> RuntimeError:
    """What a task's error is when its plain function raised StopIteration: a RuntimeError
    from it, as PEP 479 makes of one raised in a coroutine (an asyncio future refuses to hold
    a StopIteration)."""
    wrapped = RuntimeError("task_fn raised StopIteration")
    wrapped.__cause__ = error
    return wrapped


def _call_plain(fn: Callable[[Any], T], arg: Any) -> T:
    try:
        result = fn(arg)
    except StopIteration as exc:
        raise no_stop_iteration(exc) from exc
    if result.__class__ is types.CoroutineType and arg.__class__ is _Run and arg.cancelled:
        # Cancelled or timed out meanwhile: nobody will await it (and a cancelled
        # run_in_executor future drops it unseen); closed, it does not warn that it never
        # was. (A pool also closes one that ends up discarded otherwise: see _pool._discard.)
        result.close()  # type: ignore[attr-defined]
    return result


def _same_variables(a: contextvars.Context, b: contextvars.Context) -> bool:
    """Whether two contexts of as many variables hold the very same objects in them. By
    identity: ``a == b`` would compare distinct values with their own ``__eq__``, which may
    raise (a numpy array's), cost, or take two equal lists for one."""
    return all(b.get(var, _ABSENT) is value for var, value in a.items())


@types.coroutine
def _resume_in(
    context: contextvars.Context, coro: Coroutine[Any, Any, T], step: Any
) -> Generator[Any, Any, T]:
    """Drive ``coro``, which has just yielded ``step``, to its end, every step inside
    ``context`` (as an asyncio task would in its own context)."""
    while True:
        try:
            sent = yield step
        except BaseException as exc:  # thrown in by the driving asyncio task
            try:
                step = context.run(coro.throw, exc)
            except StopIteration as returned:
                return returned.value  # type: ignore[no-any-return]
        else:
            try:
                step = context.run(coro.send, sent)
            except StopIteration as returned:
                return returned.value  # type: ignore[no-any-return]


async def _run_in(context: contextvars.Context, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` with every step of it inside ``context``."""
    try:
        step = context.run(coro.send, None)  # (an async def has run nothing yet)
    except StopIteration as returned:  # done in one step
        return returned.value  # type: ignore[no-any-return]
    return await _resume_in(context, coro, step)


class _Runner:
    """An asyncio task that drives task lifecycles, taking tasks from ``ready`` one by one.

    A pool worker is a runner fed by the pool's queue; a task started with ``go()`` gets a
    runner of its own, fed with that one task. Tasks run inline in the runner's asyncio task:
    no asyncio task per task.

    The runner also keeps the deadline mechanism: one timer per runner, armed lazily and
    re-armed only when it fires, instead of a timer per attempt. An attempt just stores its
    deadline; the timer compares when it fires.
    """

    __slots__ = (
        "atask",
        "budget_end",
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

    def __init__(self, loop: asyncio.AbstractEventLoop, ready: deque[Task[Any]]) -> None:
        self.loop = loop
        self.ready = ready
        self.atask: asyncio.Task[None] | None = None
        self.task: Task[Any] | None = None  # the task taken last (it may have ended)
        # Whether a task whose submitter's context variables are this runner's own may run
        # in the runner's context (see work()).
        self.inline = True
        self.run: Run | None = None  # the attempt running now
        self.deadline: float | None = None  # its deadline
        self.budget_end: float | None = None  # when the current task's total_timeout ends
        self.expired = False  # the deadline passed and the runner was interrupted for it
        self.issued = 0  # cancellations we delivered, to take back with uncancel()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0

    async def work(self) -> None:
        """Drive each task taken from ``ready`` from PENDING to its end, inline.

        The waiting happens here: the delay, each attempt, each backoff. Taking a task,
        starting an attempt (PENDING -> STARTED) and a plain success (the common case,
        settled in one test) are written here, the hot path; the decisions after an attempt
        that raised or was interrupted (time out? retry? how long to wait? which end?) are
        the task's I/O-free ``_attempt_ended``.
        """
        ready = self.ready
        loop = self.loop
        home = _copy_context()  # this runner's context variables, as it starts
        size = len(home)  # (no variables at all is the common case: no comparing)
        inline = self.inline
        task: Task[Any] | None
        run: Run | None
        if self.atask is None:
            # Started eagerly, inside create_task (an eager task factory): the caller has not
            # stored our asyncio task, nor queued the task or fired its first hooks. Start on
            # the loop's next turn, as a task would without such a factory.
            await asyncio.sleep(0)
        assert self.atask is not None
        cancelling = self.atask.cancelling
        self.begin()
        try:
            while True:
                while ready:
                    task = ready.popleft()
                    if task._queue is not ready:
                        continue  # cancelled while it waited
                    try:
                        fn, is_async, delay, max_duration, budget = task._definition._plan
                        arg = task._arg
                        limiter = task._limiter
                        context = task._context
                        if (
                            inline
                            and context is not None
                            and len(context) == size
                            and (not size or _same_variables(context, home))
                        ):
                            # The same variables as this runner's: the task runs in the
                            # runner's own context, with no step through a trampoline. If it
                            # changes them, the runner retires after it (see below).
                            context = task._context = None
                        task._queue = None  # taken
                        task._runner = self
                        self.task = task
                        # The seconds to wait before the first attempt, or None if the run
                        # has ended already.
                        if fn is None:
                            task._finish(
                                _FAILED, TaskFnNotSetError(f"task {task.id!r} has no task_fn")
                            )
                            wait = None
                        elif budget is None:
                            self.budget_end = None
                            wait = delay
                        else:
                            self.budget_end = loop.time() + budget
                            wait = task._within_budget(self, delay, None)
                        while wait is not None:
                            try:
                                if wait or task._attempts:  # a retry always yields, even at 0
                                    await asyncio.sleep(wait)
                                if limiter is not None:
                                    if self.budget_end is None:
                                        await limiter.acquire()
                                    elif not await self.acquire_within_budget(limiter):
                                        task._finish(_FAILED, task._budget_error(None))
                                        break
                            except asyncio.CancelledError:
                                task._finish(_CANCELED, task._canceled_error())
                                if self.settle():
                                    raise
                                break
                            # PENDING -> STARTED: the attempt's Run, its deadline armed.
                            budget_end = self.budget_end
                            if budget_end is not None and loop.time() >= budget_end:
                                # the total_timeout ran out while it waited
                                task._finish(_FAILED, task._budget_error(None))
                                break
                            attempt = task._attempts
                            task._attempts = attempt + 1
                            counts = task._counts
                            if counts is not None:
                                counts[_ATTEMPTS] += 1
                            task._state = _STARTED
                            hooks = task._hooks
                            if hooks is not None and hooks.on_started is not None:
                                call_hook(
                                    hooks.on_started, task.id, _now(_UTC), context=task._context
                                )
                            deadline = budget_end
                            if max_duration is not None:
                                own = loop.time() + max_duration
                                if deadline is None or own < deadline:
                                    deadline = own
                            self.run = run = _Run()
                            run._task = task
                            run._attempt = attempt
                            run._deadline = deadline
                            if task._cancel_requested:  # cancelled from the on_started hook
                                run._signal()
                            if deadline is not None:
                                self.deadline = deadline
                                if self.timer is None or self.timer_when > deadline:
                                    self.arm(deadline)
                            call_with = run if arg is _RUN else arg
                            try:
                                if not is_async:
                                    result = await task._call_sync(self, fn, call_with)
                                elif context is None:  # in the runner's context (see above)
                                    result = await fn(call_with)
                                else:  # in a context of its own: each step entered apart
                                    result = await _run_in(context, fn(call_with))
                            except asyncio.CancelledError as exc:
                                wait = task._attempt_ended(self, None, exc)
                            except Exception as exc:
                                wait = task._attempt_ended(self, exc, None)
                            else:
                                if self.expired or self.issued or task._cancel_requested:
                                    wait = task._attempt_ended(self, None, None)
                                else:  # the common case: a plain success
                                    if cancelling():  # the function's own (see forget())
                                        self.forget()
                                    self.deadline = self.run = None
                                    task._finish(_DONE, result)
                                    break
                    except BaseException as exc:
                        # Not ours (KeyboardInterrupt, SystemExit from the function, a hook,
                        # retry_on or backoff; or this runner cancelled from outside): the
                        # task ends first, then it goes on up, unless the runner keeps going.
                        # (Only a run this runner drives: an end hook may have started a new
                        # run of the task, on a runner of its own.)
                        ours = task._queue is ready or getattr(task, "_runner", None) is self
                        if ours and (task._state is _PENDING or task._state is _STARTED):
                            if isinstance(exc, GeneratorExit):
                                # (also this runner closed by the GC: its loop may be closed,
                                # and waking the task's waiters fail; the task ends anyway)
                                with contextlib.suppress(RuntimeError):
                                    task._abort(exc)
                            else:
                                task._abort(exc)
                        self.deadline = self.run = None
                        if isinstance(exc, GeneratorExit) or not self.keep_going(exc):
                            raise
                    if inline:  # (a runner that never lends its context has nothing to check)
                        current = _copy_context()
                        if len(current) != size or (size and not _same_variables(current, home)):
                            # The task (or a done callback) changed the runner's context
                            # variables: none may leak into the next task run in them, so
                            # another runner takes over.
                            self.retire(home)
                            return
                # Idle, hold nothing of the last task (its result, item, context, function,
                # hooks, rate limit).
                self.task = task = run = call_with = arg = context = result = None
                fn = hooks = limiter = None
                if not await self.idle():
                    return
        finally:
            self.disarm()

    async def acquire_within_budget(self, limiter: Limiter) -> bool:
        """The rate limit's turn, unless the task's total_timeout ends first (False)."""
        try:
            async with asyncio.timeout_at(self.budget_end):
                await limiter.acquire()
        except TimeoutError:
            return False
        return True

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
        cancelled ``run_in_executor`` future by itself)."""

    def arm(self, deadline: float) -> None:
        timer = self.timer
        if timer is not None:
            timer.cancel()
        self.timer_when = deadline
        self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        deadline = self.deadline
        if deadline is None:
            return
        if deadline > self.timer_when:  # a later attempt's deadline
            self.arm(deadline)
            return
        self.expired = True
        if self.run is not None:
            self.run._signal()
        self.interrupt()

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

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
        """Take back our cancellations; True if someone else cancelled the runner as well."""
        atask = self.atask
        assert atask is not None
        for _ in range(self.issued):
            atask.uncancel()
        self.issued = 0
        return atask.cancelling() > 0


class Task(Generic[T]):
    """One run of a `Definition`, with a lifecycle you can watch, wait for and cancel.

    ``Task(definition)`` is CREATED and fires ``on_created``; ``go()`` starts it on the
    running event loop. ``await task`` gives the function's return value or raises its error;
    ``await task.wait()`` only waits. A task that has ended may be started again with ``go()``.
    """

    __slots__ = (
        "__weakref__",
        "_arg",
        "_attempts",
        "_callbacks",
        "_cancel_requested",
        "_context",
        "_counts",
        "_definition",
        "_error_tb",
        "_hooks",
        "_id",
        "_limiter",
        "_loop",
        "_outcome",
        "_queue",
        "_runner",
        "_slot_owner",
        "_state",
    )

    def __init__(self, definition: Definition[T]) -> None:
        if not isinstance(definition, Definition):
            raise TypeError(f"Task takes a Definition, got {type(definition).__name__}")
        self._setup(definition)
        hooks = definition.hooks
        if hooks is not None and hooks.on_created is not None:
            call_hook(hooks.on_created, self.id, _now(_UTC))

    # Set on first use, never read before: _outcome (the result when DONE, the exception when
    # FAILED or CANCELED), _error_tb (its traceback) and _runner (the runner executing it).
    _outcome: Any
    _error_tb: TracebackType | None
    _runner: _Runner | None

    def _setup(
        self,
        definition: Definition[T],
        pool: WorkerPool | None = None,
        context: contextvars.Context | None = None,
        arg: Any = _RUN,
        task_id: str | int | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        """Initialise the task's fields: CREATED, or PENDING for the ``pool`` (its hooks,
        rate limit and counters apply). Nothing else is touched, so any thread may do it;
        the pool counts the task and fires its first hooks when it takes it in.

        ``arg`` is what ``task_fn`` is called with (its Run by default; the item for
        ``pool.map``), ``task_id`` overrides the definition's id (an int is shown as a str),
        ``limiter`` the pool's rate limit. ``context`` is the task's own copy of the
        submitter's context variables, for a task that runs inline in a pool's worker (None:
        the running asyncio task's context).
        """
        self._definition = definition
        self._id = definition.id if task_id is None else task_id
        self._arg = arg
        self._context = context
        self._slot_owner = pool  # the pool whose worker slot it holds
        self._attempts = 0
        self._cancel_requested = False
        # done callbacks, and futures of wait() calls
        self._callbacks: list[Callable[[Task[T]], object] | asyncio.Future[_End]] | None = None
        hooks = definition.hooks
        if pool is None:
            self._hooks = hooks
            self._counts = self._loop = self._queue = self._limiter = None
            self._state = _CREATED
        else:
            self._hooks = pool._hooks if hooks is None else hooks
            self._counts = pool._counts
            self._loop = pool._loop
            self._queue = pool._ready  # where it waits for a runner
            self._limiter = pool._limiter if limiter is None else limiter
            self._state = _PENDING

    def __repr__(self) -> str:
        return f"<Task id={self.id!r} state={self._state.name} attempts={self._attempts}>"

    # -- what it is -----------------------------------------------------------------------

    @property
    def id(self) -> str:
        task_id = self._id
        return task_id if task_id.__class__ is str else str(task_id)

    @property
    def definition(self) -> Definition[T]:
        return self._definition

    @property
    def state(self) -> State:
        return self._state

    @property
    def error(self) -> BaseException | None:
        """None, or the exception the task ended with (a FAILED or CANCELED task)."""
        return self._outcome if self._state >= _FAILED else None

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
        state = self._state
        if state is _PENDING or state is _STARTED:
            raise TaskInProgressError(f"task {self.id!r} is already {state.name}")
        runner = _Runner(loop, deque((self,)))
        atask = loop.create_task(runner.work(), name=f"asynctasklib task {self.id!r}")
        runner.atask = atask
        _standalone.add(atask)
        atask.add_done_callback(_standalone.discard)
        self._queue = runner.ready  # before the hooks: they may cancel it
        self._begin(loop)

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        state = self._state
        if state is _PENDING or state is _STARTED:
            raise TaskInProgressError(f"task {self.id!r} is already {state.name}")
        if state is not _CREATED:
            # The ended run's waiters and callbacks (set when go() is called from its end hook,
            # which its _finish then wakes): the new run has its own.
            self._callbacks = None
        self._loop = loop
        self._context = None  # it runs in its own asyncio task, in go()'s caller's context
        self._outcome = self._error_tb = None
        self._attempts = 0
        self._cancel_requested = False
        # A pool's task run again this way runs on its own: the pool counted its run there
        # (and keeps it in tasks() if it keeps ended tasks); this one is not the pool's.
        self._counts = self._limiter = None
        self._hooks = self._definition.hooks
        self._state = _PENDING
        hooks = self._hooks
        if hooks is not None and hooks.on_pending is not None:
            try:
                call_hook(hooks.on_pending, self.id, _now(_UTC), 0)
            except BaseException as exc:  # not ours (call_hook logs the Exceptions)
                if self._state is _PENDING:
                    self._abort(exc)
                raise

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
        if self._queue is not None:  # still waiting for a runner: it ends here, never started
            self._queue = None
            self._finish(_CANCELED, self._canceled_error())
            return True
        runner = self._runner
        assert runner is not None
        if runner.run is not None:
            runner.run._signal()
        if runner.atask is asyncio.current_task():
            # The task cancels itself from its own code: a CancelledError now would land in
            # whatever the runner awaits next, maybe another task's. Deliver it from the loop.
            runner.loop.call_soon(self._deliver_cancel, runner)
        else:
            runner.interrupt()
        return True

    def _check_started(self) -> None:
        """Waiting for a task never started would wait forever: refuse."""
        if self._state is _CREATED:
            raise InvalidStateError(f"task {self.id!r} was never started: call go() first")

    def _deliver_cancel(self, runner: _Runner) -> None:
        if self._runner is runner:
            runner.interrupt()

    async def wait(self) -> None:
        """Wait until the task has ended; never raises the task's error (Go's ``Await``)."""
        if self._state < _DONE:
            await self._wait_end()

    async def _wait_end(self) -> _End:
        """Wait for the run in progress to end, and return how it ended: the run's own end,
        even if a hook or callback has started the task again since."""
        self._check_started()
        loop = self._loop
        assert loop is not None
        if _get_running_loop() is not loop:
            raise RuntimeError(f"task {self.id!r} runs on another event loop")
        fut: asyncio.Future[_End] = loop.create_future()
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(fut)
        try:
            return await fut
        except BaseException:
            if self._callbacks is not None and fut in self._callbacks:
                self._callbacks.remove(fut)
            raise

    def __await__(self) -> Generator[Any, None, T]:
        if self._state >= _DONE:
            return self.result()
        state, outcome, tb = yield from self._wait_end().__await__()
        if state is _DONE:
            return outcome  # type: ignore[no-any-return]
        raise outcome.with_traceback(tb)

    def result(self) -> T:
        """The function's return value, or raise the task's error; never waits.

        ``InvalidStateError`` if the task has not ended.
        """
        state = self._state
        if state is _DONE:
            return self._outcome  # type: ignore[no-any-return]
        if state is _FAILED or state is _CANCELED:
            raise self._outcome.with_traceback(self._error_tb)
        raise InvalidStateError(f"task {self.id!r} has not ended: it is {state.name}")

    def add_done_callback(self, fn: Callable[[Task[T]], object]) -> None:
        """Call ``fn(task)`` when this run ends (at once if it has ended), on the loop's thread.

        Like hooks, a callback that raises is logged and ignored. Safe from any thread.
        """
        call_on_loop(self._loop, self._add_done_callback, fn)

    def _add_done_callback(self, fn: Callable[[Task[T]], object]) -> None:
        if self._state >= _DONE:
            self._call_callback(fn)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(fn)

    def remove_done_callback(self, fn: Callable[[Task[T]], object]) -> int:
        """Remove every registration of ``fn``; returns how many there were."""
        return call_on_loop(self._loop, self._remove_done_callback, fn)

    def _remove_done_callback(self, fn: Callable[[Task[T]], object]) -> int:
        callbacks = self._callbacks
        if not callbacks:
            return 0
        before = len(callbacks)
        callbacks[:] = [cb for cb in callbacks if cb != fn]  # (in place: see _finish)
        return before - len(callbacks)

    # -- the engine ----------------------------------------------------------------------

    def _within_budget(
        self, runner: _Runner, wait: float, last: BaseException | None
    ) -> float | None:
        """``wait``, or None (and the task FAILED) if the total_timeout ends before it does."""
        end = runner.budget_end
        if end is not None and runner.loop.time() + wait >= end:
            self._finish(_FAILED, self._budget_error(last))
            return None
        return wait

    def _attempt_ended(
        self,
        runner: _Runner,
        error: Exception | None,
        cancelled: asyncio.CancelledError | None,
    ) -> float | None:
        """Decide after an attempt that raised or was interrupted (the runner settles a plain
        success itself): None if the task has ended, else the seconds to wait before the
        retry (the task is PENDING again).

        Raises CancelledError if the runner itself was cancelled from outside.
        """
        deadline = runner.deadline
        run = runner.run
        runner.deadline = runner.run = None
        expired = runner.expired
        runner.expired = False
        if run is not None and (cancelled is not None or self._cancel_requested):
            run._signal()  # a plain function still running in its thread: time to stop
        if cancelled is not None or runner.issued:
            if runner.settle():
                # The runner itself was cancelled from outside (the loop is going away).
                self._finish(_CANCELED, self._canceled_error())
                raise cancelled or asyncio.CancelledError()
        elif runner.atask.cancelling():  # type: ignore[union-attr]
            runner.forget()  # the function's own, left as it raised (see forget())
        if self._cancel_requested:
            # Never retried, even if the function swallowed the cancellation and returned.
            self._finish(_CANCELED, self._canceled_error())
            return None
        if expired:
            if deadline == runner.budget_end:
                self._finish(_FAILED, self._budget_error(error))
                return None
            error = TaskTimeoutError(
                f"task {self.id!r}: attempt {self._attempts - 1} ran longer than "
                f"max_duration={self._definition._plan[3]}s"
            )
        elif cancelled is not None:  # a CancelledError of the function's own: not a failure
            self._finish(_CANCELED, self._canceled_error())
            return None
        # Our interrupts always come with `expired` or `_cancel_requested` set, so an attempt
        # that returned was settled above: what is left is an error.
        assert error is not None

        retry = self._attempts  # attempts so far: the number of the next retry
        definition = self._definition
        if retry > definition.max_retries:
            self._finish(_FAILED, error)
            return None
        try:
            wait = retry_wait(error, retry, definition.retry_on, definition.backoff, expired)
        except Exception:
            logger.exception("retry_on or backoff of task %r raised", self.id)
            wait = None
        if wait is None:
            self._finish(_FAILED, error)
            return None
        if self._within_budget(runner, wait, error) is None:
            return None
        counts = self._counts
        if counts is not None:
            counts[_LEFT] += 1
        self._state = _PENDING
        hooks = self._hooks
        if hooks is not None and hooks.on_pending is not None:
            call_hook(hooks.on_pending, self.id, _now(_UTC), retry, context=self._context)
        return wait

    async def _call_sync(self, runner: _Runner, fn: Callable[[Any], Any], arg: Any) -> Any:
        """Run a plain task function on the runner's executor, off the event loop."""
        if runner.remote:  # another process or machine: only picklable things cross
            if isinstance(arg, Run):
                arg = arg._info()
            call = runner.call_in_executor(fn, arg)
        else:
            # A copy per attempt: an attempt that timed out may still run in its thread.
            context = self._context
            context = contextvars.copy_context() if context is None else context.copy()
            call = runner.call_in_executor(context.run, _call_plain, fn, arg)
        try:
            result = await call
        except asyncio.CancelledError:
            runner.cancel_call(call)
            raise
        if result is not None and inspect.isawaitable(result):  # a lambda around an async def
            context = self._context
            if context is not None and inspect.iscoroutine(result):
                result = await _run_in(context, result)  # (in the task's own context)
            else:
                result = await result
        return result

    def _finish(self, state: State, outcome: Any) -> None:
        """End the run: DONE with the result as ``outcome``, or FAILED/CANCELED with the error."""
        # (a kept handle holds no more than it needs; the hooks still run in the context)
        context = self._context
        self._runner = self._context = None
        self._outcome = outcome
        counts = self._counts
        if state is not _DONE:  # (a DONE run was STARTED, and counted as an attempt started)
            self._error_tb = outcome.__traceback__
            if counts is not None and self._state is _STARTED:
                counts[_LEFT] += 1
        if counts is not None:
            counts[state] += 1
        self._state = state
        pool = self._slot_owner
        if pool is not None:  # its worker slot back
            self._slot_owner = None
            slots = pool._slots
            # Unless a blocking face takes slots from other threads, the pool's slots are
            # only touched on its loop's thread: the hot path skips the semaphore's lock.
            if slots._waiters or slots._idle or pool._threaded:
                with slots._lock:
                    slots._hand_back()
            else:
                slots._value += 1
        callbacks = self._callbacks  # this run's, even if a hook starts a new run (see _begin)
        if callbacks is not None:
            end = (state, outcome, None if state is _DONE else self._error_tb)
        hooks = self._hooks
        try:
            if hooks is not None:
                if state is _DONE:
                    if hooks.on_done is not None:
                        call_hook(hooks.on_done, self.id, _now(_UTC), context=context)
                elif state is _FAILED:
                    if hooks.on_failed is not None:
                        call_hook(
                            hooks.on_failed, self.id, _now(_UTC), outcome, context=context
                        )
                elif hooks.on_canceled is not None:
                    call_hook(hooks.on_canceled, self.id, _now(_UTC), context=context)
        finally:  # (a hook's BaseException goes on up, after the waiters are woken)
            if callbacks is not None:
                if self._callbacks is callbacks:
                    self._callbacks = None
                self._run_callbacks(callbacks, end)

    def _run_callbacks(self, callbacks: list[Any], end: _End) -> None:
        """Wake the waiters with the run's ``end`` and call the done callbacks; a
        BaseException from one (not ours) is raised once all the others have run."""
        raised: BaseException | None = None
        for fn in callbacks:
            if isinstance(fn, asyncio.Future):
                if not fn.done():
                    fn.set_result(end)
                continue
            try:
                self._call_callback(fn)
            except BaseException as exc:
                raised = raised or exc
        if raised is not None:
            raise raised

    def _call_callback(self, fn: Callable[[Task[T]], object]) -> None:
        try:
            fn(self)
        except Exception:
            logger.exception("done callback %r of task %r raised", fn, self.id)

    def _abort(self, error: BaseException) -> None:
        """End the run now, whatever it was doing: something not ours escaped the engine
        (CANCELED for a CancelledError, FAILED with anything else)."""
        self._queue = None
        runner = getattr(self, "_runner", None)  # (None too before a runner took it)
        if runner is not None and runner.run is not None:
            runner.run._signal()  # a plain function still running in its thread: time to stop
        if isinstance(error, asyncio.CancelledError):
            self._finish(_CANCELED, self._canceled_error())
        else:
            self._finish(_FAILED, error)

    def _canceled_error(self) -> TaskCanceledError:
        return TaskCanceledError(f"task {self.id!r} was cancelled")

    def _budget_error(self, last: BaseException | None) -> TaskTimeoutError:
        budget = self._definition._plan[4]
        error = TaskTimeoutError(f"task {self.id!r} spent its total_timeout={budget}s")
        error.__cause__ = last
        return error

    def _task_fn_callback(self, run: Run) -> None:
        hooks = self._hooks
        if hooks is None or hooks.on_task_fn is None:
            return
        when = _now(_UTC)
        loop = self._loop
        if loop is not None and _get_running_loop() is not loop:
            loop.call_soon_threadsafe(self._fire_task_fn, run, hooks.on_task_fn, when)
        else:
            self._fire_task_fn(run, hooks.on_task_fn, when)

    def _fire_task_fn(self, run: Run, hook: Hook, when: datetime) -> None:
        runner = getattr(self, "_runner", None)
        if self._state is _STARTED and runner is not None and runner.run is run:
            call_hook(hook, self.id, when)


class _PoolTask(Task[T]):
    """A pool's `Task`: made without ``Task.__init__`` (the pool sets it up and fires its
    first hooks), by the interpreter's fast path for a class with no Python ``__init__``."""

    __slots__ = ()
    __init__ = object.__init__
