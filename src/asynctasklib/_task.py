"""`Task`: one run of a definition, with a lifecycle you can watch, wait for and cancel.

The engine is in two halves. `_runner._Runner` drives a task from PENDING to its end and
is the only place that awaits; the task keeps its own state and makes the decisions: what
follows an attempt that raised or was interrupted (`Task._attempt_ended`, I/O-free), and
the end of every run (`Task._finish`). Whoever the task runs for (a pool, or the runner
``go()`` starts for it alone) is an `_Owner`: the engine knows nothing else of pools.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
from collections import deque
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._compat import running_loop as _get_running_loop
from ._definition import Definition
from ._errors import (
    InvalidStateError,
    TaskCanceledError,
    TaskInProgressError,
    TaskTimeoutError,
)
from ._hooks import NO_HOOKS, Hook, StateHooks, call_hook
from ._public import public_here
from ._retry import retry_wait
from ._run import _RUN, Run
from ._runner import _Alone, _Decision, _Runner
from ._state import State
from ._threads import call_on_loop

if TYPE_CHECKING:
    from ._ratelimit import Limiter
    from ._semaphore import _Slots
    from ._stats import _Counts

__all__ = ["Task"]

T = TypeVar("T")

logger = logging.getLogger("asynctasklib")

_CREATED, _PENDING, _STARTED, _DONE, _FAILED, _CANCELED = State
_UTC = UTC
_now = datetime.now
# How a run ended, for its waiters: the state, the result or error, the error's traceback.
_End = tuple[State, Any, TracebackType | None]
_standalone: set[asyncio.Task[None]] = set()  # strong references to go()'s asyncio tasks


class _Owner(Protocol):
    """Whoever a task runs for, as the engine sees it: a `WorkerPool`, or the runner that
    ``Task.go()`` starts for the task alone (`_runner._Alone`).

    The engine takes the task from ``_ready``, counts what happens to it in ``_counts``,
    and gives its worker slot back to ``_slots`` as it ends. (Private names: they are the
    pool's own fields, and the pool's public API does not grow for the engine.)
    """

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None: ...  # where its tasks run

    @property
    def _ready(self) -> deque[Any]: ...  # where its tasks wait for a runner

    @property
    def _hooks(self) -> StateHooks: ...  # for tasks whose definition has none (or NO_HOOKS)

    @property
    def _limiter(self) -> Limiter | None: ...  # its rate limit of attempt starts

    @property
    def _counts(self) -> _Counts: ...

    @property
    def _slots(self) -> _Slots | None: ...  # held by each task until it ends; None: none


class Task(Generic[T]):
    """One run of a `Definition`, with a lifecycle you can watch, wait for and cancel.

    ``Task(definition)`` is CREATED and fires ``on_created``; ``go()`` starts it on the
    running event loop. ``await task`` gives the function's return value or raises its error;
    ``await task.wait()`` only waits. A task that has ended may be started again with ``go()``.

    Args:
        definition: What the task runs, and how (timeouts, retries, hooks).

    Raises:
        TypeError: ``definition`` is not a `Definition`.
    """

    __slots__ = (
        "__weakref__",
        "_arg",
        "_attempts",
        "_callbacks",
        "_cancel_requested",
        "_context",
        "_definition",
        "_error_tb",
        "_hooks",
        "_id",
        "_limiter",
        "_loop",
        "_outcome",
        "_owner",
        "_queue",
        "_runner",
        "_state",
    )

    _definition: Definition[T]
    _id: str | int  # (an int is shown as a str: see id)
    _arg: Any  # what task_fn is called with: _RUN for the attempt's Run
    _context: contextvars.Context | None  # its own context variables (see _setup)
    _state: State
    _attempts: int  # attempts started in this run
    _cancel_requested: bool
    # done callbacks, and futures of wait() calls
    _callbacks: list[Callable[[Task[T]], object] | asyncio.Future[_End]] | None
    # From its owner, for this run: the owner itself until the run ends (its counters and
    # worker slot), the loop, the queue it waits in (None once taken or canceled), its
    # hooks (the definition's, else the owner's) and rate limit.
    _owner: _Owner | None
    _loop: asyncio.AbstractEventLoop | None
    _queue: deque[Any] | None
    _hooks: StateHooks  # (NO_HOOKS for none)
    _limiter: Limiter | None
    # Set on first use, never read before: _outcome (the result when DONE, the exception when
    # FAILED or CANCELED), _error_tb (its traceback) and _runner (the runner executing it).
    _outcome: Any
    _error_tb: TracebackType | None
    _runner: _Runner | None

    def __init__(self, definition: Definition[T]) -> None:
        if not isinstance(definition, Definition):
            raise TypeError(f"Task takes a Definition, got {type(definition).__name__}")
        self._setup(definition)
        hooks = definition.hooks
        if hooks is not None and hooks.on_created is not None:
            call_hook(hooks.on_created, self.id, _now(_UTC))

    def _setup(
        self,
        definition: Definition[T],
        owner: _Owner | None = None,
        context: contextvars.Context | None = None,
        arg: Any = _RUN,
        task_id: str | int | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        """Initialise the task's fields: CREATED, or PENDING for ``owner`` (its hooks, rate
        limit and counters apply). Nothing else is touched, so any thread may do it; the
        owner counts the task and fires its first hooks when it takes it in.

        ``arg`` is what ``task_fn`` is called with (its Run by default; the item for
        ``pool.map``), ``task_id`` overrides the definition's id (an int is shown as a str),
        ``limiter`` replaces the owner's rate limit. ``context`` is the task's own copy of the
        submitter's context variables, which every run has as it starts (a runner may lend
        the task its own instead: then None).
        """
        self._definition = definition
        self._id = definition.id if task_id is None else task_id
        self._arg = arg
        self._context = context
        self._owner = owner
        self._attempts = 0
        self._cancel_requested = False
        self._callbacks = None
        hooks = definition.hooks
        if owner is None:
            self._hooks = NO_HOOKS if hooks is None else hooks
            self._loop = self._queue = self._limiter = None
            self._state = _CREATED
        else:
            self._hooks = owner._hooks if hooks is None else hooks
            self._loop = owner._loop
            self._queue = owner._ready  # where it waits for a runner
            self._limiter = owner._limiter if limiter is None else limiter
            self._state = _PENDING

    def __repr__(self) -> str:
        return f"<Task id={self.id!r} state={self._state.name} attempts={self._attempts}>"

    # -- what it is -----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The task's id, from its definition (or given by the pool), as a str."""
        task_id = self._id
        return task_id if task_id.__class__ is str else str(task_id)

    @property
    def definition(self) -> Definition[T]:
        """The `Definition` the task runs."""
        return self._definition

    @property
    def state(self) -> State:
        """Where the task is in its lifecycle: CREATED, PENDING, STARTED, DONE, FAILED or
        CANCELED."""
        return self._state

    @property
    def error(self) -> BaseException | None:
        """None, or the exception the task ended with (a FAILED or CANCELED task)."""
        return self._outcome if self._state >= _FAILED else None

    @property
    def attempts(self) -> int:
        """Attempts started so far in this run."""
        return self._attempts

    # Written here, not taken from `StatePredicates` as the blocking handle does: these read
    # the slot itself, where the mixin's go through the ``state`` property, a call more.
    def is_created(self) -> bool:
        """True if the task is CREATED."""
        return self._state is _CREATED

    def is_pending(self) -> bool:
        """True if the task is PENDING."""
        return self._state is _PENDING

    def is_started(self) -> bool:
        """True if the task is STARTED."""
        return self._state is _STARTED

    def is_done(self) -> bool:
        """True if the task is DONE."""
        return self._state is _DONE

    def is_failed(self) -> bool:
        """True if the task is FAILED."""
        return self._state is _FAILED

    def is_canceled(self) -> bool:
        """True if the task is CANCELED."""
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

        An ended task starts a fresh run (attempts and error reset).

        Raises:
            TaskInProgressError: The task is PENDING or STARTED already.
            RuntimeError: No event loop is running in this thread.
        """
        loop = asyncio.get_running_loop()
        state = self._state
        if state is _PENDING or state is _STARTED:
            raise TaskInProgressError(f"task {self.id!r} is already {state.name}")
        runner = _Alone(loop, self)
        atask = loop.create_task(runner.work(), name=f"asynctasklib task {self.id!r}")
        runner.atask = atask
        _standalone.add(atask)
        atask.add_done_callback(_standalone.discard)
        self._begin(runner)

    def _begin(self, owner: _Owner) -> None:
        """Start a fresh run for ``owner`` (the runner go() starts): PENDING, then the
        ``on_pending`` hook."""
        # The ended run's waiters and callbacks (set when go() is called from its end hook,
        # which its _finish then wakes) are not the new run's; a CREATED task keeps those
        # registered before go().
        callbacks = self._callbacks if self._state is _CREATED else None
        # A pool's task run again this way runs on its own: the pool counted its run there
        # (and keeps it in tasks() if it keeps ended tasks); this one is not the pool's. It
        # runs in go()'s caller's context variables, as its runner does (which then lends
        # it its own).
        self._setup(self._definition, owner, contextvars.copy_context(), self._arg, self._id)
        self._callbacks = callbacks
        self._outcome = self._error_tb = None
        self._announce(created=False)

    def _announce(self, created: bool) -> None:
        """Fire the run's first hooks: ``on_created`` (a pool's new task), then
        ``on_pending`` unless a hook canceled it. A BaseException from one (not ours) ends
        the run, then goes up."""
        hooks = self._hooks
        try:
            if created and hooks.on_created is not None:
                call_hook(hooks.on_created, self.id, _now(_UTC))
            if hooks.on_pending is not None and self._state is _PENDING:
                call_hook(hooks.on_pending, self.id, _now(_UTC), 0)
        except BaseException as exc:  # not ours (call_hook logs the Exceptions)
            if self._state is _PENDING:
                self._abort(exc)
            raise

    def cancel(self) -> bool:
        """Cancel the task, whatever it is doing: waiting its delay or backoff, or running.

        It ends CANCELED and is never retried. Safe to call from any thread.

        Returns:
            True if the task was in progress, False if it had not started or had ended
            already.
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
        runner.cancel_run(self)
        return True

    def _check_started(self) -> None:
        """Waiting for a task never started would wait forever: refuse."""
        if self._state is _CREATED:
            raise InvalidStateError(f"task {self.id!r} was never started: call go() first")

    async def wait(self) -> None:
        """Wait until the task has ended; never raises the task's error (Go's ``Await``).

        Raises:
            InvalidStateError: The task was never started.
            RuntimeError: The task runs on another event loop.
        """
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
        """``await task``: wait for the end, then return the result or raise the error."""
        if self._state >= _DONE:
            return self.result()
        state, outcome, tb = yield from self._wait_end().__await__()
        if state is _DONE:
            return outcome  # type: ignore[no-any-return]
        raise outcome.with_traceback(tb)

    def result(self) -> T:
        """The function's return value, or raise the task's error; never waits.

        Returns:
            What the task function returned, if the task is DONE.

        Raises:
            InvalidStateError: The task has not ended.
            BaseException: The task's own error, if it is FAILED or CANCELED.
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

        Args:
            fn: Called with the task as its one argument.
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
        """Remove every registration of ``fn``.

        Args:
            fn: A callback given to `add_done_callback`.

        Returns:
            How many registrations were removed.
        """
        return call_on_loop(self._loop, self._remove_done_callback, fn)

    def _remove_done_callback(self, fn: Callable[[Task[T]], object]) -> int:
        callbacks = self._callbacks
        if not callbacks:
            return 0
        before = len(callbacks)
        callbacks[:] = [cb for cb in callbacks if cb != fn]  # (in place: see _finish)
        return before - len(callbacks)

    # -- the engine ----------------------------------------------------------------------

    def _attempt_ended(
        self,
        error: Exception | None,
        cancelled: bool,
        expired: bool,
        budget_spent: bool,
        budget_end: float,
    ) -> _Decision:
        """What follows an attempt that raised or was interrupted (the runner settles a plain
        success itself, and its own side first: see `_Runner.attempt_over`). I/O-free: the
        runner acts on the decision.

        ``error`` is what the attempt raised, ``cancelled`` whether it raised CancelledError,
        ``expired`` whether its deadline interrupted it, ``budget_spent`` whether that was
        the total_timeout's, ``budget_end`` when the total_timeout ends (inf: no budget).
        """
        if self._cancel_requested:
            # Never retried, even if the function swallowed the cancellation and returned.
            return _Decision(_CANCELED, self._canceled_error())
        if expired:
            if budget_spent:
                return _Decision(_FAILED, self._budget_error(error))
            error = TaskTimeoutError(
                f"task {self.id!r}: attempt {self._attempts - 1} ran longer than "
                f"max_duration={self._definition.max_duration}s"
            )
        elif cancelled:  # a CancelledError of the function's own: not a failure
            return _Decision(_CANCELED, self._canceled_error())
        # Our interrupts always come with `expired` or `_cancel_requested` set, so an attempt
        # that returned was settled above: what is left is an error.
        assert error is not None

        retry = self._attempts  # attempts so far: the number of the next retry
        definition = self._definition
        if retry > definition.max_retries:
            return _Decision(_FAILED, error)
        try:
            wait = retry_wait(error, retry, definition.retry_on, definition.backoff, expired)
        except Exception:
            logger.exception("retry_on or backoff of task %r raised", self.id)
            wait = None
        if wait is None:
            return _Decision(_FAILED, error)
        if budget_end != math.inf and self._loop.time() + wait >= budget_end:  # type: ignore[union-attr]
            return _Decision(_FAILED, self._budget_error(error))  # it would end in the wait
        return _Decision(_PENDING, wait)

    def _start_attempt(self) -> int:
        """PENDING -> STARTED: the attempt's number (from 0). The runner counts it."""
        attempt = self._attempts
        self._attempts = attempt + 1
        self._state = _STARTED
        return attempt

    def _retry(self) -> None:
        """STARTED -> PENDING: the attempt is over, and a retry due after its wait."""
        owner = self._owner
        assert owner is not None
        owner._counts.left += 1
        self._state = _PENDING
        hooks = self._hooks
        if hooks.on_pending is not None:
            call_hook(hooks.on_pending, self.id, _now(_UTC), self._attempts, context=self._context)

    def _finish(self, state: State, outcome: Any) -> None:
        """End the run: DONE with the result as ``outcome``, or FAILED/CANCELED with the error."""
        # (a kept handle holds no more than it needs; the hooks still run in the context)
        context = self._context
        self._runner = self._context = None
        self._outcome = outcome
        owner = self._owner
        assert owner is not None  # (every run in progress has one)
        self._owner = None
        counts = owner._counts
        if state is _DONE:  # (a DONE run was STARTED, and counted as an attempt started)
            counts.done += 1
        else:
            self._error_tb = outcome.__traceback__
            if self._state is _STARTED:
                counts.left += 1
            if state is _FAILED:
                counts.failed += 1
            else:
                counts.canceled += 1
        self._state = state
        slots = owner._slots
        if slots is not None:  # its worker slot back
            slots.release_held()
        callbacks = self._callbacks  # this run's, even if a hook starts a new run (see _begin)
        if callbacks is not None:
            end = (state, outcome, None if state is _DONE else self._error_tb)
        try:
            if self._hooks is not NO_HOOKS:  # (none: no call)
                self._end_hook(state, outcome, context)
        finally:  # (a hook's BaseException goes on up, after the waiters are woken)
            if callbacks is not None:
                if self._callbacks is callbacks:
                    self._callbacks = None
                self._run_callbacks(callbacks, end)

    def _end_hook(self, state: State, outcome: Any, context: contextvars.Context | None) -> None:
        """Call the hook of the run's end, if the task has one."""
        hooks = self._hooks
        if state is _DONE:
            if hooks.on_done is not None:
                call_hook(hooks.on_done, self.id, _now(_UTC), context=context)
        elif state is _FAILED:
            if hooks.on_failed is not None:
                call_hook(hooks.on_failed, self.id, _now(_UTC), outcome, context=context)
        elif hooks.on_canceled is not None:
            call_hook(hooks.on_canceled, self.id, _now(_UTC), context=context)

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
        if isinstance(error, asyncio.CancelledError):
            self._finish(_CANCELED, self._canceled_error())
        else:
            self._finish(_FAILED, error)

    def _canceled_error(self) -> TaskCanceledError:
        return TaskCanceledError(f"task {self.id!r} was canceled")

    def _budget_error(self, last: BaseException | None) -> TaskTimeoutError:
        budget = self._definition.total_timeout
        error = TaskTimeoutError(f"task {self.id!r} spent its total_timeout={budget}s")
        error.__cause__ = last
        return error

    def _task_fn_callback(self, run: Run) -> None:
        hooks = self._hooks
        if hooks.on_task_fn is None:
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


public_here(globals(), ["Task"], "asynctasklib")  # (see `_public`)
