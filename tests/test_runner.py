"""`_runner`: the engine's seams. The task's decision after an attempt that raised or was
interrupted (`Task._attempt_ended`) is I/O-free: it returns what follows and changes
nothing, the runner acts on it. Whoever a task runs for is an `_Owner`; a task started with
``go()`` is owned by its own runner (`_Alone`).

The lifecycle itself (retries, timeouts, budgets, cancellation) is tested through the
public API in test_task.py, test_retry.py and test_pool.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import TYPE_CHECKING, Any

from asynctasklib import (
    Definition,
    Run,
    State,
    Task,
    TaskCanceledError,
    TaskTimeoutError,
)
from asynctasklib._hooks import NO_HOOKS
from asynctasklib._runner import _Alone, _Decision
from asynctasklib._stats import _Counts
from asynctasklib._task import _PoolTask

if TYPE_CHECKING:
    import pytest

INF = math.inf


class Owner:
    """The least an `_Owner` is: a loop, a queue, counters; no hooks, rate limit or slots."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready: deque[Any] = deque()
        self._hooks = NO_HOOKS
        self._limiter = None
        self._counts = _Counts()
        self._slots = None


async def noop(run: Run) -> None:
    pass


def started(attempts: int = 1, **options: Any) -> Task[Any]:
    """A task of an `Owner`, as the runner leaves it when its attempt ``attempts - 1`` ends."""
    task: Task[Any] = _PoolTask()
    task._setup(Definition(id="t", task_fn=noop, **options), Owner(asyncio.get_running_loop()))
    task._attempts = attempts
    task._state = State.STARTED
    return task


def decide(task: Task[Any], error: Exception | None = None, **facts: Any) -> _Decision:
    """Ask the task; then check that asking changed nothing."""
    counts = task._owner._counts  # type: ignore[union-attr]

    def facts_now() -> tuple[Any, ...]:
        tallies = (counts.attempts, counts.left, counts.done, counts.failed, counts.canceled)
        return (task._state, task._attempts, task._owner, *tallies)

    before = facts_now()
    args: dict[str, Any] = {
        "cancelled": False,
        "expired": False,
        "budget_spent": False,
        "budget_end": INF,
    }
    args.update(facts)
    decision = task._attempt_ended(error, **args)
    assert facts_now() == before
    return decision


async def test_an_error_with_retries_left_is_retried_after_the_backoff() -> None:
    task = started(max_retries=2, backoff=1.5)
    assert decide(task, ValueError("x")) == (State.PENDING, 1.5)


async def test_an_error_with_no_retry_left_fails_with_that_error() -> None:
    error = ValueError("x")
    assert decide(started(max_retries=0), error) == (State.FAILED, error)
    assert decide(started(attempts=3, max_retries=2), error) == (State.FAILED, error)


async def test_an_error_retry_on_refuses_fails() -> None:
    error = ValueError("x")
    task = started(max_retries=5, retry_on=KeyError)
    assert decide(task, error) == (State.FAILED, error)


async def test_retry_on_that_raises_is_logged_and_fails(caplog: pytest.LogCaptureFixture) -> None:
    def retry_on(error: BaseException) -> bool:
        raise RuntimeError("bad predicate")

    error = ValueError("x")
    with caplog.at_level(logging.ERROR, logger="asynctasklib"):
        assert decide(started(max_retries=5, retry_on=retry_on), error) == (State.FAILED, error)
    assert "retry_on or backoff of task 't' raised" in caplog.text


async def test_a_cancel_requested_ends_it_canceled_whatever_the_attempt_did() -> None:
    task = started(max_retries=5)
    task._cancel_requested = True
    for facts in ({}, {"cancelled": True}, {"expired": True}):
        state, error = decide(task, ValueError("x") if not facts else None, **facts)
        assert state is State.CANCELED
        assert isinstance(error, TaskCanceledError)


async def test_a_cancellation_of_the_function_own_ends_it_canceled_not_retried() -> None:
    state, error = decide(started(max_retries=5), cancelled=True)
    assert state is State.CANCELED
    assert isinstance(error, TaskCanceledError)


async def test_an_attempt_past_its_max_duration_is_retried_as_a_timeout() -> None:
    """Whatever retry_on says (it refuses everything here): the error is a timeout."""
    seen: list[BaseException] = []

    def backoff(retry: int) -> float:
        return 2.0

    def retry_on(error: BaseException) -> bool:
        seen.append(error)
        return False

    task = started(max_retries=1, max_duration=3, backoff=backoff, retry_on=retry_on)
    assert decide(task, cancelled=True, expired=True) == (State.PENDING, 2.0)
    assert seen == []  # (a timeout is retried without asking)


async def test_an_attempt_past_its_max_duration_with_no_retry_left_fails_timed_out() -> None:
    state, error = decide(started(max_duration=3), cancelled=True, expired=True)
    assert state is State.FAILED
    assert isinstance(error, TaskTimeoutError)
    assert "attempt 0 ran longer than max_duration=3.0s" in str(error)


async def test_an_attempt_cut_by_the_total_timeout_fails_with_it() -> None:
    state, error = decide(
        started(max_retries=5, total_timeout=2), cancelled=True, expired=True, budget_spent=True
    )
    assert state is State.FAILED
    assert isinstance(error, TaskTimeoutError)
    assert "spent its total_timeout=2.0s" in str(error)


async def test_a_backoff_that_would_outlast_the_total_timeout_fails_now() -> None:
    error = ValueError("x")
    now = asyncio.get_running_loop().time()
    task = started(max_retries=5, backoff=1.0, total_timeout=10)
    assert decide(task, error, budget_end=now + 1.5) == (State.PENDING, 1.0)
    state, failed = decide(task, error, budget_end=now + 1.0)  # (it would end as it waits)
    assert state is State.FAILED
    assert isinstance(failed, TaskTimeoutError)
    assert failed.__cause__ is error


async def test_go_gives_the_task_a_runner_of_its_own_that_owns_its_run() -> None:
    seen: list[Any] = []

    async def fn(run: Run) -> int:
        owner = task._owner
        assert isinstance(owner, _Alone)
        assert owner is task._runner  # the runner that drives it
        seen.append((owner._slots, owner._limiter, owner._hooks is NO_HOOKS, owner._counts))
        return 1

    task = Task(Definition(task_fn=fn))
    task.go()
    assert await task == 1
    [(slots, limiter, no_hooks, counts)] = seen
    assert (slots, limiter, no_hooks) == (None, None, True)  # no slot to give back
    assert (counts.attempts, counts.done) == (1, 1)  # its own counters
    assert task._owner is None  # a kept handle holds no more than it needs


async def test_a_run_with_no_deadline_says_none() -> None:
    """Inside the engine "no deadline" is inf; a Run says None."""
    deadlines: list[Any] = []

    async def fn(run: Run) -> None:
        deadlines.append(run.deadline)

    task = Task(Definition(task_fn=fn, max_duration=None))
    task.go()
    await task
    loop = asyncio.get_running_loop()
    task = Task(Definition(task_fn=fn, max_duration=None, total_timeout=4))
    task.go()
    await task
    assert deadlines == [None, loop.time() + 4]
