"""`Task` and `Run`: the lifecycle of one task started with ``go()``.

``async def`` tests run on the virtual clock of conftest (``loop.time()`` differences are
exact); tests with sync task functions use real threads and are marked ``realtime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from _helpers import LONG, REAL_TIMEOUT, now, wait_all_tasks_blocked
from asynctasklib import (
    Definition,
    InvalidStateError,
    Run,
    State,
    StateHooks,
    Task,
    TaskCanceledError,
    TaskError,
    TaskFnNotSetError,
    TaskInProgressError,
    TaskTimeoutError,
    WorkerPool,
)
from conftest import LibraryLog

T = TypeVar("T")

FLAGS = ("created", "pending", "started", "done", "failed", "canceled", "end", "in_progress")


def flags(task: Task[Any]) -> set[str]:
    """The names of the ``is_*()`` predicates that are true."""
    return {name for name in FLAGS if getattr(task, f"is_{name}")()}


EXPECTED_FLAGS = {
    State.CREATED: {"created"},
    State.PENDING: {"pending", "in_progress"},
    State.STARTED: {"started", "in_progress"},
    State.DONE: {"done", "end"},
    State.FAILED: {"failed", "end"},
    State.CANCELED: {"canceled", "end"},
}


def check_state(task: Task[Any], state: State) -> None:
    assert task.state is state
    assert flags(task) == EXPECTED_FLAGS[state]


async def hang(run: Run) -> None:
    await asyncio.sleep(LONG)


def started(fn: Callable[[Run], Awaitable[T]], *, delay: float = 0, **kw: Any) -> Task[T]:
    task = Task(Definition(id="t", task_fn=fn, delay=delay, **kw))
    task.go()
    return task


# -- basics ----------------------------------------------------------------------------------


def test_states_and_errors() -> None:
    assert [(s.name, int(s)) for s in State] == [
        ("CREATED", 0),
        ("PENDING", 1),
        ("STARTED", 2),
        ("DONE", 3),
        ("FAILED", 4),
        ("CANCELED", 5),
    ]
    for cls in (
        TaskCanceledError,
        TaskTimeoutError,
        TaskInProgressError,
        TaskFnNotSetError,
        InvalidStateError,
    ):
        assert issubclass(cls, TaskError)
        assert issubclass(cls, Exception)
    assert issubclass(TaskTimeoutError, TimeoutError)


def test_task_constructed_without_a_loop() -> None:
    d = Definition(id="offline", task_fn=hang)
    task = Task(d)
    check_state(task, State.CREATED)
    assert task.id == "offline"
    assert task.definition is d
    assert task.attempts == 0
    assert task.error is None
    assert task.cancel() is False
    check_state(task, State.CREATED)
    with pytest.raises(InvalidStateError):
        task.result()


def test_go_needs_a_running_loop() -> None:
    task = Task(Definition(task_fn=hang))
    with pytest.raises(RuntimeError):
        task.go()
    check_state(task, State.CREATED)
    assert task.attempts == 0


@pytest.mark.parametrize("bad", [None, "def", {"task_fn": hang}, object()])
def test_task_takes_a_definition(bad: Any) -> None:
    with pytest.raises(TypeError, match="Definition"):
        Task(bad)


async def test_lifecycle_phases() -> None:
    async def fn(run: Run) -> int:
        await asyncio.sleep(4)
        if run.attempt == 0:
            raise ValueError("first")
        return 42

    task = Task(Definition(task_fn=fn, delay=4, max_retries=1, backoff=4))
    check_state(task, State.CREATED)
    assert task.go() is None  # type: ignore[func-returns-value]
    check_state(task, State.PENDING)  # already PENDING when go() returns
    assert task.attempts == 0
    await asyncio.sleep(2)  # t=2: in the delay
    check_state(task, State.PENDING)
    assert task.attempts == 0
    await asyncio.sleep(4)  # t=6: first attempt runs
    check_state(task, State.STARTED)
    assert task.attempts == 1
    assert task.error is None
    with pytest.raises(InvalidStateError):
        task.result()
    await asyncio.sleep(4)  # t=10: backoff after the first failure
    check_state(task, State.PENDING)
    assert task.attempts == 1
    assert task.error is None
    with pytest.raises(InvalidStateError):
        task.result()
    await asyncio.sleep(4)  # t=14: the retry runs
    check_state(task, State.STARTED)
    assert task.attempts == 2
    await task.wait()
    assert now() == 16.0
    check_state(task, State.DONE)
    assert task.result() == 42
    assert task.error is None
    assert task.attempts == 2


@pytest.mark.parametrize("phase", ["delay", "running", "backoff"])
async def test_go_while_in_progress_raises(phase: str) -> None:
    async def fn(run: Run) -> None:
        if run.attempt == 0 and phase == "backoff":
            raise ValueError("x")
        await asyncio.sleep(10)

    delay = 10 if phase == "delay" else 0
    task = started(fn, delay=delay, max_retries=1, backoff=10)
    await asyncio.sleep(5)
    state_before = task.state
    with pytest.raises(TaskInProgressError):
        task.go()
    assert task.state is state_before
    assert task.is_in_progress()
    await task.wait()
    check_state(task, State.DONE)
    assert now() == (20.0 if phase != "running" else 10.0)


async def test_go_twice_at_once_raises() -> None:
    task = Task(Definition(task_fn=hang))
    task.go()
    with pytest.raises(TaskInProgressError):
        task.go()
    task.cancel()
    await task.wait()
    check_state(task, State.CANCELED)


@pytest.mark.parametrize("first_end", [State.DONE, State.FAILED, State.CANCELED])
async def test_rerun_after_end_is_a_fresh_run(first_end: State) -> None:
    runs = 0
    first_error = ValueError("first run")

    async def fn(run: Run) -> str:
        nonlocal runs
        runs += 1
        if runs == 1 and first_end is State.FAILED:
            raise first_error
        if runs <= 3 and first_end is State.CANCELED:
            await asyncio.sleep(LONG)
        if runs > 1 and run.attempt < 2:
            raise KeyError("retry me")
        return f"run {runs}"

    task = Task(Definition(task_fn=fn, max_retries=2, retry_on=KeyError, backoff=1))
    task.go()
    if first_end is State.CANCELED:
        await asyncio.sleep(1)
        task.cancel()
    await task.wait()
    check_state(task, first_end)
    assert task.attempts == 1
    if first_end is State.FAILED:
        assert task.error is first_error

    task.go()
    check_state(task, State.PENDING)
    assert task.attempts == 0
    assert task.error is None
    with pytest.raises(InvalidStateError):
        task.result()
    if first_end is State.CANCELED:  # the second run is canceled and re-run as well
        await asyncio.sleep(1)
        task.cancel()
        await task.wait()
        check_state(task, State.CANCELED)
        task.go()
    assert await task == f"run {runs}"
    check_state(task, State.DONE)
    assert task.attempts == 3
    assert task.error is None


async def test_rerun_from_a_done_callback() -> None:
    count = 0

    async def fn(run: Run) -> int:
        nonlocal count
        count += 1
        return count

    task = Task(Definition(task_fn=fn))
    ends: list[int] = []

    def again(t: Task[int]) -> None:
        ends.append(t.result())
        if len(ends) < 3:
            t.go()
            t.add_done_callback(again)

    task.add_done_callback(again)
    task.go()
    await wait_all_tasks_blocked()
    assert ends == [1, 2, 3]
    check_state(task, State.DONE)


@pytest.mark.parametrize("first_end", [State.DONE, State.FAILED])
async def test_rerun_from_an_end_hook_leaves_the_ended_run_to_its_waiters(
    first_end: State,
) -> None:
    """Waiters of a run get that run's end, even when its own end hook started the task again:
    ``await task`` returns its result or raises its error, ``wait()`` returns; waiters that
    come after wait for the new run."""
    runs = 0
    boom = ValueError("first run")
    waiting = asyncio.Event()
    second_started = asyncio.Event()
    release = asyncio.Event()

    async def fn(run: Run) -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            await waiting.wait()
            if first_end is State.FAILED:
                raise boom
            return "run 1"
        second_started.set()
        await release.wait()
        return "run 2"

    task: Task[str]

    def again(task_id: str, when: Any, *error: Any) -> None:
        if runs == 1:
            task.go()  # from the end hook of the first run
            waiter_of_the_second_run.append(asyncio.ensure_future(task))

    waiter_of_the_second_run: list[asyncio.Future[str]] = []
    hooks = StateHooks(on_done=again, on_failed=again)
    task = Task(Definition(task_fn=fn, hooks=hooks, max_duration=None))
    task.go()
    awaited = asyncio.ensure_future(task)
    waited = asyncio.ensure_future(task.wait())
    await wait_all_tasks_blocked()  # (both wait for the first run now)
    waiting.set()
    await second_started.wait()
    check_state(task, State.STARTED)
    if first_end is State.DONE:
        assert await awaited == "run 1"
    else:
        with pytest.raises(ValueError, match="first run") as caught:
            await awaited
        assert caught.value is boom
        assert caught.value.__traceback__ is not None
    assert await waited is None  # type: ignore[func-returns-value]
    (later,) = waiter_of_the_second_run
    assert not later.done()
    release.set()
    assert await later == "run 2"
    check_state(task, State.DONE)


# -- delay, attempts, errors, timeouts ------------------------------------------------------


@pytest.mark.parametrize("delay", [5, 5.0, timedelta(seconds=5)], ids=repr)
async def test_delay_waited_once_before_first_attempt(delay: Any) -> None:
    starts: list[float] = []

    async def fn(run: Run) -> None:
        starts.append(now())
        raise ValueError("x")

    task = Task(Definition(task_fn=fn, delay=delay, max_retries=2, backoff=1))
    task.go()
    await task.wait()
    assert starts == [5.0, 6.0, 7.0]
    check_state(task, State.FAILED)


async def test_attempts_and_last_error_identity() -> None:
    raised: list[Exception] = []
    seen: list[int] = []
    runs: list[Run] = []

    async def fn(run: Run) -> None:
        seen.append(run.attempt)
        runs.append(run)
        raised.append(ValueError(f"attempt {run.attempt}"))
        raise raised[-1]

    task = started(fn, max_retries=3, backoff=0)
    await task.wait()
    assert seen == [0, 1, 2, 3]
    assert len({id(r) for r in runs}) == 4  # a new Run per attempt
    assert task.attempts == 4
    check_state(task, State.FAILED)
    assert task.error is raised[-1]
    with pytest.raises(ValueError, match="attempt 3") as info:
        task.result()
    assert info.value is raised[-1]
    with pytest.raises(ValueError, match="attempt 3") as info2:
        await task
    assert info2.value is raised[-1]


async def test_no_retries_by_default() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)
        raise OSError("once")

    task = started(fn)
    await task.wait()
    assert calls == [0]
    assert task.attempts == 1
    assert isinstance(task.error, OSError)


@pytest.mark.parametrize("max_duration", [2, 2.0, timedelta(seconds=2)], ids=repr)
async def test_timeout(max_duration: Any) -> None:
    task = started(hang, max_duration=max_duration)
    await task.wait()
    assert now() == 2.0
    check_state(task, State.FAILED)
    assert isinstance(task.error, TaskTimeoutError)
    assert isinstance(task.error, TimeoutError)
    assert not isinstance(task.error, asyncio.CancelledError)
    with pytest.raises(TaskTimeoutError):
        await task
    with pytest.raises(TimeoutError):
        task.result()


async def test_default_timeout_is_30_seconds() -> None:
    task = started(hang)
    await task.wait()
    assert now() == 30.0
    assert isinstance(task.error, TaskTimeoutError)


async def test_no_timeout_with_max_duration_none() -> None:
    async def fn(run: Run) -> str:
        await asyncio.sleep(LONG)
        return "slow"

    task = started(fn, max_duration=None)
    assert await task == "slow"
    assert now() == LONG


async def test_attempt_that_ends_just_in_time_is_done() -> None:
    async def fn(run: Run) -> str:
        await asyncio.sleep(1.5)
        return "in time"

    task = started(fn, max_duration=2)
    assert await task == "in time"
    assert now() == 1.5


async def test_timeout_swallowed_by_the_function_is_still_a_timeout() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> str:
        calls.append(run.attempt)
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            return "swallowed"
        return "never"

    task = started(fn, max_duration=2, max_retries=1, backoff=1)
    await task.wait()
    check_state(task, State.FAILED)
    assert isinstance(task.error, TaskTimeoutError)
    assert calls == [0, 1]
    assert now() == 5.0


async def test_no_task_fn_fails_with_task_fn_not_set() -> None:
    task = Task(Definition(id="empty", max_retries=3))
    task.go()
    await task.wait()
    check_state(task, State.FAILED)
    assert isinstance(task.error, TaskFnNotSetError)
    assert task.attempts == 0
    with pytest.raises(TaskFnNotSetError):
        await task


async def test_tasks_run_concurrently() -> None:
    async def fn(run: Run) -> float:
        await asyncio.sleep(5)
        return now()

    tasks = [started(fn) for _ in range(20)]
    assert [await t for t in tasks] == [5.0] * 20
    assert now() == 5.0


async def test_keeps_running_without_references() -> None:
    ran: list[float] = []

    async def fn(run: Run) -> None:
        await asyncio.sleep(1)
        gc.collect()
        await asyncio.sleep(1)
        ran.append(now())

    Task(Definition(task_fn=fn)).go()  # neither the Task nor its asyncio task is kept
    gc.collect()
    await asyncio.sleep(3)
    assert ran == [2.0]


# -- cancel --------------------------------------------------------------------------------


async def test_cancel_during_delay() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)

    task = started(fn, delay=10)
    await asyncio.sleep(3)
    assert task.cancel() is True
    await task.wait()
    assert now() == 3.0
    check_state(task, State.CANCELED)
    assert isinstance(task.error, TaskCanceledError)
    assert task.attempts == 0
    assert calls == []
    await asyncio.sleep(20)
    assert calls == []


async def test_cancel_right_after_go() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)

    task = started(fn)
    assert task.cancel() is True
    await task.wait()
    check_state(task, State.CANCELED)
    assert task.attempts == 0
    assert calls == []


async def test_cancel_during_backoff() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)
        raise ValueError("x")

    task = started(fn, max_retries=3, backoff=10)
    await asyncio.sleep(4)
    check_state(task, State.PENDING)
    assert task.cancel() is True
    await task.wait()
    assert now() == 4.0
    check_state(task, State.CANCELED)
    assert isinstance(task.error, TaskCanceledError)
    assert task.attempts == 1
    await asyncio.sleep(20)
    assert calls == [0]


async def test_cancel_during_attempt() -> None:
    cleanup: list[float] = []

    async def fn(run: Run) -> None:
        try:
            await asyncio.sleep(LONG)
        finally:
            cleanup.append(now())

    task = started(fn, max_retries=3, backoff=0, retry_on=BaseException)
    await asyncio.sleep(2)
    assert task.cancel() is True
    await task.wait()
    assert now() == 2.0
    assert cleanup == [2.0]
    check_state(task, State.CANCELED)
    assert isinstance(task.error, TaskCanceledError)
    assert task.attempts == 1
    with pytest.raises(TaskCanceledError):
        task.result()
    with pytest.raises(TaskCanceledError):
        await task


@pytest.mark.parametrize("more_work", [0, 3])
async def test_cancel_swallowed_by_the_function(more_work: float) -> None:
    calls: list[int] = []

    async def fn(run: Run) -> str:
        calls.append(run.attempt)
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            if more_work:
                await asyncio.sleep(more_work)
            return "swallowed"
        return "never"

    task = started(fn, max_retries=3, backoff=0, retry_on=BaseException)
    await asyncio.sleep(1)
    assert task.cancel() is True
    await task.wait()
    check_state(task, State.CANCELED)
    assert isinstance(task.error, TaskCanceledError)
    assert calls == [0]
    assert task.attempts == 1
    assert now() == 1.0 + more_work


async def test_cancel_return_values() -> None:
    task = Task(Definition(task_fn=hang))
    assert task.cancel() is False  # CREATED: left as it is
    check_state(task, State.CREATED)
    task.go()
    await asyncio.sleep(1)
    assert task.cancel() is True
    assert task.cancel() is True  # still in progress: idempotent
    await task.wait()
    error = task.error
    assert task.cancel() is False  # ended
    check_state(task, State.CANCELED)
    assert task.error is error


@pytest.mark.parametrize("end", [State.DONE, State.FAILED])
async def test_cancel_after_end_changes_nothing(end: State) -> None:
    problem = ValueError("x")

    async def fn(run: Run) -> int:
        if end is State.FAILED:
            raise problem
        return 7

    task = started(fn)
    await task.wait()
    assert task.cancel() is False
    check_state(task, end)
    if end is State.DONE:
        assert task.result() == 7
    else:
        assert task.error is problem


async def test_cancel_fires_on_canceled_once() -> None:
    events: list[str] = []
    hooks = StateHooks(
        on_canceled=lambda i, w: events.append("canceled"),
        on_failed=lambda i, w, e: events.append("failed"),
    )
    task = Task(Definition(task_fn=hang, hooks=hooks))
    task.go()
    await asyncio.sleep(1)
    task.cancel()
    task.cancel()
    await task.wait()
    task.cancel()
    assert events == ["canceled"]


@pytest.mark.parametrize("then", ["return", "await"])
async def test_task_cancels_itself(then: str) -> None:
    seen: list[bool] = []

    async def fn(run: Run) -> str:
        await asyncio.sleep(1)
        run.cancel()
        seen.append(run.canceled)
        if then == "await":
            await asyncio.sleep(LONG)
        return "returned"

    task = started(fn, max_retries=3, backoff=0, retry_on=BaseException)
    await task.wait()
    assert now() == 1.0
    check_state(task, State.CANCELED)
    assert isinstance(task.error, TaskCanceledError)
    assert task.attempts == 1
    assert seen == [True]
    # a stray cancellation must not hit the awaiting code afterwards
    await asyncio.sleep(1)
    assert now() == 2.0


async def test_self_cancel_does_not_hit_the_next_task_in_line() -> None:
    async def cancels_itself(run: Run) -> str:
        run.cancel()
        return "x"

    async def slow(run: Run) -> str:
        await asyncio.sleep(1)
        return "slow ok"

    # one worker runs both tasks inline, one after the other
    async with WorkerPool(1) as pool:
        a = await pool.submit(Definition(task_fn=cancels_itself))
        b = await pool.submit(Definition(task_fn=slow))
        await a.wait()
        assert await b == "slow ok"
    check_state(a, State.CANCELED)
    check_state(b, State.DONE)
    assert now() == 1.0


# -- waiting and results ---------------------------------------------------------------------


async def test_await_task_returns_the_result() -> None:
    value = object()

    async def fn(run: Run) -> object:
        return value

    task = started(fn)
    assert await task is value
    assert task.result() is value
    assert await task is value  # again, after the end


@pytest.mark.parametrize(
    ("fn", "error_type"),
    [
        (hang, TaskTimeoutError),
        (None, TaskFnNotSetError),
    ],
)
async def test_wait_never_raises(fn: Any, error_type: type[BaseException]) -> None:
    task = Task(Definition(task_fn=fn, max_duration=1))
    task.go()
    assert await task.wait() is None  # type: ignore[func-returns-value]
    assert isinstance(task.error, error_type)
    assert await task.wait() is None  # type: ignore[func-returns-value]  # after the end, at once


async def test_wait_never_raises_when_failed_or_canceled() -> None:
    async def fails(run: Run) -> None:
        raise ZeroDivisionError

    a = started(fails)
    b = started(hang)
    await asyncio.sleep(1)
    b.cancel()
    assert await a.wait() is None  # type: ignore[func-returns-value]
    assert await b.wait() is None  # type: ignore[func-returns-value]
    check_state(a, State.FAILED)
    check_state(b, State.CANCELED)


async def test_many_waiters() -> None:
    async def fn(run: Run) -> str:
        await asyncio.sleep(3)
        return "r"

    task = started(fn)

    async def waiter() -> tuple[str, float]:
        return await task, now()

    results = await asyncio.gather(*(waiter() for _ in range(5)), task.wait())
    assert results == [("r", 3.0)] * 5 + [None]


async def test_result_before_end_raises_invalid_state() -> None:
    task = Task(Definition(task_fn=hang, delay=1))
    with pytest.raises(InvalidStateError):
        task.result()
    task.go()
    with pytest.raises(InvalidStateError):
        task.result()  # PENDING
    await asyncio.sleep(2)
    with pytest.raises(InvalidStateError):
        task.result()  # STARTED
    task.cancel()
    await task.wait()


async def test_wait_on_created_task_raises_invalid_state() -> None:
    task = Task(Definition(task_fn=hang))
    with pytest.raises(InvalidStateError):
        await task.wait()
    with pytest.raises(InvalidStateError):
        await task
    check_state(task, State.CREATED)


async def test_external_cancellation_of_the_waiter_does_not_affect_the_task() -> None:
    async def fn(run: Run) -> str:
        await asyncio.sleep(5)
        return "done"

    task = started(fn)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task.wait(), 0.1)
    assert now() == pytest.approx(0.1)
    check_state(task, State.STARTED)

    async def awaiter() -> str:
        return await task

    waiter = asyncio.ensure_future(awaiter())
    await asyncio.sleep(1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    check_state(task, State.STARTED)
    assert await task == "done"
    assert now() == 5.0


# -- done callbacks ------------------------------------------------------------------------


@pytest.mark.parametrize("end", [State.DONE, State.FAILED, State.CANCELED])
async def test_done_callbacks(end: State) -> None:
    async def fn(run: Run) -> None:
        await asyncio.sleep(2)
        if end is State.FAILED:
            raise ValueError("x")
        if end is State.CANCELED:
            run.cancel()

    task = Task(Definition(task_fn=fn))
    calls: list[tuple[str, Task[Any], State, float]] = []

    def first(t: Task[Any]) -> None:
        calls.append(("first", t, t.state, now()))

    def second(t: Task[Any]) -> None:
        calls.append(("second", t, t.state, now()))

    task.add_done_callback(first)  # before go(): kept for the run
    task.go()
    task.add_done_callback(second)
    await task.wait()
    assert calls == [("first", task, end, 2.0), ("second", task, end, 2.0)]
    # added after the end: called at once
    task.add_done_callback(first)
    assert calls[-1] == ("first", task, end, 2.0)
    assert len(calls) == 3


async def test_remove_done_callback() -> None:
    calls: list[str] = []

    def a(t: Task[Any]) -> None:
        calls.append("a")

    def b(t: Task[Any]) -> None:
        calls.append("b")

    task = started(hang, max_duration=1)
    assert task.remove_done_callback(a) == 0
    task.add_done_callback(a)
    task.add_done_callback(b)
    task.add_done_callback(a)
    assert task.remove_done_callback(a) == 2
    assert task.remove_done_callback(a) == 0
    await task.wait()
    assert calls == ["b"]


async def test_a_base_exception_from_an_end_hook_that_started_a_new_run_leaves_it_alone() -> None:
    """The exception goes up from the ended run's runner; the run the hook started (on a
    runner of its own) is not that runner's to end."""

    class Stop(BaseException):
        pass

    runs = 0
    go_on = asyncio.Event()

    async def fn(run: Run) -> str:
        nonlocal runs
        runs += 1
        await go_on.wait()
        return f"run {runs}"

    def on_done(task_id: str, when: Any) -> None:
        if runs == 1:
            task.go()
            raise Stop

    task: Task[str] = Task(Definition(task_fn=fn, hooks=StateHooks(on_done=on_done)))
    task.go()
    first = asyncio.ensure_future(task)
    await wait_all_tasks_blocked()  # (it waits for the first run now)
    go_on.set()
    assert await first == "run 1"
    await wait_all_tasks_blocked()
    check_state(task, State.DONE)
    assert task.result() == "run 2"


async def test_remove_done_callback_from_an_end_hook() -> None:
    """The end hooks run before the done callbacks: one they remove is not called."""
    calls: list[str] = []

    def a(t: Task[Any]) -> None:
        calls.append("a")

    def on_done(task_id: str, when: Any) -> None:
        calls.append(f"removed {task.remove_done_callback(a)}")

    async def fn(run: Run) -> None:
        pass

    task = Task(Definition(task_fn=fn, hooks=StateHooks(on_done=on_done)))
    task.add_done_callback(a)
    task.go()
    await task.wait()
    assert calls == ["removed 1"]


async def test_done_callbacks_are_for_one_run() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> None:
        pass

    task = started(fn)
    task.add_done_callback(lambda t: calls.append(1))
    await task.wait()
    task.go()
    await task.wait()
    assert calls == [1]


async def test_raising_done_callback_is_logged_and_ignored(
    hook_log: LibraryLog,
) -> None:
    oops = RuntimeError("callback broke")
    calls: list[str] = []

    def bad(t: Task[Any]) -> None:
        raise oops

    async def fn(run: Run) -> int:
        return 5

    task = Task(Definition(id="cb", task_fn=fn))
    task.add_done_callback(bad)
    task.add_done_callback(lambda t: calls.append("after"))
    task.go()
    assert await task == 5
    assert calls == ["after"]
    check_state(task, State.DONE)
    records = [r for r in hook_log.records if r.name == "asynctasklib"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is oops
    # added after the end: logged too, and add_done_callback does not raise
    task.add_done_callback(bad)
    assert len([r for r in hook_log.records if r.name == "asynctasklib"]) == 2


# -- Run -------------------------------------------------------------------------------------


async def test_run_id_attempt_and_deadline() -> None:
    seen: list[tuple[str, int, float, float | None]] = []

    async def fn(run: Run) -> None:
        seen.append((run.id, run.attempt, now(), run.deadline))
        await asyncio.sleep(1)
        raise ValueError("x")

    task = Task(Definition(id="r", task_fn=fn, delay=3, max_duration=7, max_retries=2, backoff=2))
    task.go()
    await task.wait()
    assert seen == [("r", 0, 3.0, 10.0), ("r", 1, 6.0, 13.0), ("r", 2, 9.0, 16.0)]


def test_a_run_is_made_by_the_engine_only() -> None:
    with pytest.raises(TypeError, match="made by the engine"):
        Run()


async def test_run_deadline_none_without_limit() -> None:
    deadlines: list[float | None] = []

    async def fn(run: Run) -> None:
        deadlines.append(run.deadline)

    await started(fn, max_duration=None).wait()
    assert deadlines == [None]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_run_canceled_flips(how: str) -> None:
    seen: list[tuple[str, bool]] = []

    async def fn(run: Run) -> None:
        seen.append(("before", run.canceled))
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            seen.append(("after", run.canceled))
            raise

    task = started(fn, max_duration=5)
    if how == "cancel":
        await asyncio.sleep(2)
        task.cancel()
    await task.wait()
    assert seen == [("before", False), ("after", True)]
    assert now() == (2.0 if how == "cancel" else 5.0)


async def test_run_canceled_is_per_attempt() -> None:
    seen: list[bool] = []

    async def fn(run: Run) -> None:
        seen.append(run.canceled)
        await asyncio.sleep(LONG)

    task = started(fn, max_duration=1, max_retries=1, backoff=0)
    await task.wait()
    assert seen == [False, False]  # the timeout of attempt 0 does not mark attempt 1


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_run_sleep_interrupted(how: str) -> None:
    after: list[float] = []

    async def fn(run: Run) -> None:
        try:
            await run.sleep(LONG)
        finally:
            after.append(now())

    task = started(fn, max_duration=4)
    if how == "cancel":
        await asyncio.sleep(1)
        task.cancel()
    await task.wait()
    expected = 1.0 if how == "cancel" else 4.0
    assert after == [expected]
    assert task.state is (State.CANCELED if how == "cancel" else State.FAILED)


@pytest.mark.parametrize("seconds", [2, 2.5, timedelta(milliseconds=2500), 0], ids=repr)
async def test_run_sleep_sleeps(seconds: Any) -> None:
    async def fn(run: Run) -> float:
        await run.sleep(seconds)
        return now()

    expected = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
    assert await started(fn) == expected


async def test_run_sleep_rejects_bad_values() -> None:
    async def fn(run: Run) -> None:
        await run.sleep(-1)

    task = started(fn)
    await task.wait()
    assert isinstance(task.error, ValueError)


async def test_run_callback_fires_on_task_fn() -> None:
    calls: list[tuple[str, float]] = []

    async def fn(run: Run) -> None:
        run.callback()
        await asyncio.sleep(1)
        run.callback()

    hooks = StateHooks(on_task_fn=lambda task_id, when: calls.append((task_id, now())))
    task = Task(Definition(id="cb", task_fn=fn, hooks=hooks))
    task.go()
    await task.wait()
    assert calls == [("cb", 0.0), ("cb", 1.0)]


async def test_run_callback_without_hooks_is_harmless() -> None:
    async def fn(run: Run) -> str:
        run.callback()
        return "fine"

    assert await started(fn) == "fine"


async def test_wait_canceled_on_the_loop_thread_raises() -> None:
    errors: list[BaseException] = []

    async def fn(run: Run) -> None:
        try:
            run.wait_canceled(0.01)
        except RuntimeError as e:
            errors.append(e)

    task = started(fn)
    await task.wait()
    assert len(errors) == 1
    check_state(task, State.DONE)


# -- errors never leak into the loop; contextvars ------------------------------------------------


async def test_task_fn_errors_never_reach_the_loop() -> None:
    async def fails(run: Run) -> None:
        raise ValueError("nobody looks at me")

    # tasks that fail, that nobody awaits, and that are dropped: the conftest fails this
    # test if the event loop reports anything
    for _ in range(3):
        started(fails, max_retries=1, backoff=0)
    Task(Definition(task_fn=None)).go()
    Task(Definition(task_fn=hang, max_duration=1)).go()
    await asyncio.sleep(2)
    gc.collect()
    await wait_all_tasks_blocked()


var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def test_contextvars_in_async_task_fn() -> None:
    seen: list[str] = []

    async def fn(run: Run) -> None:
        seen.append(var.get())
        var.set("changed inside")

    token = var.set("outside")
    try:
        task = started(fn)
        await task.wait()
        assert seen == ["outside"]
        assert var.get() == "outside"  # the task's changes stay in the task
    finally:
        var.reset(token)


async def test_an_ended_task_kept_holds_its_outcome_and_definition_not_its_runs() -> None:
    """A handle kept after its end still gives its state, result, attempts and definition
    (and may run again), but it lets go of what only a run needs: the context variables it
    ran in, its attempts' Runs, the runner that drove it, the errors it retried."""

    class Payload:
        pass

    payload = Payload()
    freed = weakref.WeakSet[Any]([payload])
    payload_var: contextvars.ContextVar[Payload | None] = contextvars.ContextVar("payload")

    seen: list[bool] = []  # whether each attempt ran with the payload in its context

    async def fn(run: Run) -> int:
        seen.append(payload_var.get(None) is not None)
        freed.add(asyncio.current_task())  # the runner's
        if run.attempt == 0:
            error = OSError("flaky")
            freed.add(error)
            raise error
        return run.attempt

    definition = Definition(id="kept", task_fn=fn, max_retries=1, backoff=0)
    task = Task(definition)
    token = payload_var.set(payload)
    task.go()
    payload_var.reset(token)
    assert await task == 1
    del payload
    await wait_all_tasks_blocked()  # (the runner's asyncio task ends)
    gc.collect()
    assert list(freed) == []  # the payload, the error retried, the runner's asyncio task
    assert not [o for o in gc.get_objects() if isinstance(o, Run) and o._task is task]
    assert (task.state, task.result(), task.attempts, task.error) == (State.DONE, 1, 2, None)
    assert task.definition is definition
    task.go()  # and it may run again (in go()'s caller's context)
    assert await task == 1
    assert seen == [True, True, False, False]


# -- sync task functions (real threads) ------------------------------------------------------


class ThreadProbe:
    """What a sync task function saw, reported from its thread."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.values: dict[str, Any] = {}

    async def wait(self, event: threading.Event) -> None:
        assert await asyncio.to_thread(event.wait, REAL_TIMEOUT), "the thread did not report"


@pytest.mark.realtime
async def test_sync_fn_runs_in_a_thread() -> None:
    loop_thread = threading.get_ident()
    probe = ThreadProbe()

    def fn(run: Run) -> int:
        probe.values["thread"] = threading.get_ident()
        probe.values["attempt"] = run.attempt
        probe.values["id"] = run.id
        return 99

    task = Task(Definition(id="sync", task_fn=fn))
    task.go()
    assert await asyncio.wait_for(task, REAL_TIMEOUT) == 99
    assert probe.values["thread"] != loop_thread
    assert probe.values["attempt"] == 0
    assert probe.values["id"] == "sync"
    check_state(task, State.DONE)


@pytest.mark.realtime
async def test_sync_fn_error_identity_and_retries() -> None:
    raised: list[Exception] = []

    def fn(run: Run) -> None:
        raised.append(KeyError(run.attempt))
        raise raised[-1]

    task = Task(Definition(task_fn=fn, max_retries=2, backoff=0))
    task.go()
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    check_state(task, State.FAILED)
    assert task.attempts == 3
    assert task.error is raised[-1]
    assert len(raised) == 3


@pytest.mark.realtime
async def test_sync_fn_cancel_ends_at_once_and_tells_the_function() -> None:
    probe = ThreadProbe()

    def fn(run: Run) -> None:
        probe.values["before"] = run.canceled
        probe.started.set()
        probe.release.wait(REAL_TIMEOUT)  # does not look at run: cannot be interrupted
        probe.values["after"] = run.canceled
        probe.finished.set()

    task = Task(Definition(task_fn=fn, max_retries=2, retry_on=BaseException))
    task.go()
    await probe.wait(probe.started)
    assert task.cancel() is True
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    check_state(task, State.CANCELED)  # ended while the function still runs
    assert not probe.finished.is_set()
    assert isinstance(task.error, TaskCanceledError)
    probe.release.set()
    await probe.wait(probe.finished)
    assert probe.values == {"before": False, "after": True}
    assert task.attempts == 1


@pytest.mark.realtime
async def test_sync_fn_timeout_ends_at_once() -> None:
    probe = ThreadProbe()

    def fn(run: Run) -> None:
        probe.release.wait(REAL_TIMEOUT)
        probe.values["canceled"] = run.canceled
        probe.finished.set()

    task = Task(Definition(task_fn=fn, max_duration=0.05))
    task.go()
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    check_state(task, State.FAILED)
    assert isinstance(task.error, TaskTimeoutError)
    assert not probe.finished.is_set()
    probe.release.set()
    await probe.wait(probe.finished)
    assert probe.values == {"canceled": True}


@pytest.mark.realtime
@pytest.mark.parametrize("how", ["cancel", "timeout", "self"])
async def test_wait_canceled_returns_true_promptly(how: str) -> None:
    probe = ThreadProbe()

    def fn(run: Run) -> None:
        probe.started.set()
        if how == "self":
            run.cancel()
        t0 = time.monotonic()
        probe.values["first"] = run.wait_canceled(REAL_TIMEOUT)
        probe.values["elapsed"] = time.monotonic() - t0
        probe.values["again"] = run.wait_canceled(0)  # already canceled: at once
        probe.finished.set()

    task = Task(Definition(task_fn=fn, max_duration=0.05 if how == "timeout" else None))
    task.go()
    await probe.wait(probe.started)
    if how == "cancel":
        task.cancel()
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    await probe.wait(probe.finished)
    assert probe.values["first"] is True
    assert probe.values["again"] is True
    assert probe.values["elapsed"] < REAL_TIMEOUT / 2
    assert task.state is (State.FAILED if how == "timeout" else State.CANCELED)


@pytest.mark.realtime
@pytest.mark.parametrize("timeout", [0, 0.02, timedelta(milliseconds=20)], ids=repr)
async def test_wait_canceled_returns_false_when_its_timeout_passes(timeout: Any) -> None:
    def fn(run: Run) -> tuple[bool, bool, bool]:
        return run.wait_canceled(timeout), run.wait_canceled(timeout), run.canceled

    task = Task(Definition(task_fn=fn))
    task.go()
    assert await asyncio.wait_for(task, REAL_TIMEOUT) == (False, False, False)


@pytest.mark.realtime
async def test_sync_fn_returning_an_awaitable_is_awaited_on_the_loop() -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    async def body(run: Run) -> str:
        threads["coroutine"] = threading.get_ident()
        await asyncio.sleep(0)
        return f"awaited {run.attempt}"

    def wrapper(run: Run) -> Awaitable[str]:
        threads["wrapper"] = threading.get_ident()
        return body(run)

    task = Task(Definition(task_fn=wrapper))
    task.go()
    assert await asyncio.wait_for(task, REAL_TIMEOUT) == "awaited 0"
    assert threads["coroutine"] == loop_thread
    assert threads["wrapper"] != loop_thread

    lambda_task = Task(Definition(task_fn=lambda run: body(run)))
    lambda_task.go()
    assert await asyncio.wait_for(lambda_task, REAL_TIMEOUT) == "awaited 0"


@pytest.mark.realtime
async def test_async_callable_object_runs_on_the_loop() -> None:
    loop_thread = threading.get_ident()

    class Fn:
        async def __call__(self, run: Run) -> int:
            return threading.get_ident()

    task = Task(Definition(task_fn=Fn()))
    task.go()
    assert await asyncio.wait_for(task, REAL_TIMEOUT) == loop_thread


@pytest.mark.realtime
async def test_contextvars_in_sync_task_fn() -> None:
    def fn(run: Run) -> str:
        value = var.get()
        var.set("changed in thread")
        return value

    token = var.set("outside")
    try:
        task = Task(Definition(task_fn=fn))
        task.go()
        assert await asyncio.wait_for(task, REAL_TIMEOUT) == "outside"
        assert var.get() == "outside"
    finally:
        var.reset(token)


@pytest.mark.realtime
async def test_sync_fn_cancel_from_another_thread() -> None:
    probe = ThreadProbe()

    def fn(run: Run) -> None:
        probe.started.set()
        probe.values["woke"] = run.wait_canceled(REAL_TIMEOUT)
        probe.finished.set()

    task = Task(Definition(task_fn=fn))
    task.go()
    await probe.wait(probe.started)
    result = await asyncio.to_thread(task.cancel)  # cancel() is safe from any thread
    assert result is True
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    await probe.wait(probe.finished)
    check_state(task, State.CANCELED)
    assert probe.values["woke"] is True


# -- edges: other loops and threads, the runner canceled, one worker's deadlines --------------


async def test_run_repr() -> None:
    reprs: list[str] = []

    async def fn(run: Run) -> None:
        reprs.append(repr(run))

    await started(fn).wait()
    assert "'t'" in reprs[0]
    assert "attempt=0" in reprs[0]
    assert "canceled=False" in reprs[0]


@pytest.mark.realtime
async def test_cancel_from_another_thread_after_the_end_is_false() -> None:
    async def fn(run: Run) -> int:
        return 1

    task = started(fn)
    await task.wait()
    assert await asyncio.to_thread(task.cancel) is False
    check_state(task, State.DONE)


def test_wait_from_another_loop_raises() -> None:
    loop1 = asyncio.new_event_loop()
    loop2 = asyncio.new_event_loop()
    try:
        task = Task(Definition(task_fn=hang))

        async def start() -> None:
            task.go()

        loop1.run_until_complete(start())
        with pytest.raises(RuntimeError, match="another event loop"):
            loop2.run_until_complete(task.wait())
        assert task.is_in_progress()

        async def finish() -> None:
            task.cancel()
            await task.wait()

        loop1.run_until_complete(finish())
        check_state(task, State.CANCELED)
    finally:
        loop1.close()
        loop2.close()


def test_cancel_after_its_loop_closed_is_false() -> None:
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # "task was destroyed"
    task = Task(Definition(task_fn=hang))

    async def start() -> None:
        task.go()

    loop.run_until_complete(start())
    loop.close()
    assert task.cancel() is False


async def test_runner_canceled_from_outside_ends_the_task_canceled() -> None:
    drivers: list[asyncio.Task[Any] | None] = []

    async def fn(run: Run) -> None:
        drivers.append(asyncio.current_task())
        await asyncio.sleep(LONG)

    task = started(fn, max_retries=3, retry_on=BaseException)
    await asyncio.sleep(1)
    driver = drivers[0]
    assert driver is not None
    driver.cancel()  # what happens to every task when the event loop shuts down
    await asyncio.wait([driver])
    assert driver.cancelled()
    check_state(task, State.CANCELED)
    assert isinstance(task.error, TaskCanceledError)
    assert task.attempts == 1


async def test_runner_canceled_from_outside_during_the_delay() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)

    task = Task(Definition(id="delayed", task_fn=fn, delay=10))
    before = asyncio.all_tasks()
    task.go()
    (driver,) = asyncio.all_tasks() - before  # the asyncio task that go() started
    await asyncio.sleep(1)
    driver.cancel()
    await asyncio.wait([driver])
    assert driver.cancelled()
    check_state(task, State.CANCELED)
    assert task.attempts == 0
    assert calls == []
    assert now() == 1.0


async def test_task_repr() -> None:
    task = Task(Definition(id="shown", task_fn=hang, max_duration=1))
    assert repr(task) == "<Task id='shown' state=CREATED attempts=0>"
    task.go()
    await task.wait()
    assert repr(task) == "<Task id='shown' state=FAILED attempts=1>"


async def test_one_worker_times_each_task_by_its_own_max_duration() -> None:
    ends: dict[str, float] = {}

    def make(name: str, work: float) -> Callable[[Run], Awaitable[None]]:
        async def fn(run: Run) -> None:
            try:
                await asyncio.sleep(work)
            finally:
                ends[name] = now()

        return fn

    async with WorkerPool(1) as pool:  # one worker runs them one after the other
        a = await pool.submit(Definition(task_fn=make("a", 1), max_duration=100))
        b = await pool.submit(Definition(task_fn=make("b", LONG), max_duration=2))
        c = await pool.submit(Definition(task_fn=make("c", 10), max_duration=50))
        d = await pool.submit(Definition(task_fn=make("d", LONG), max_duration=60))
    assert ends == {"a": 1.0, "b": 3.0, "c": 13.0, "d": 73.0}
    check_state(a, State.DONE)
    check_state(b, State.FAILED)
    check_state(c, State.DONE)
    check_state(d, State.FAILED)
    assert isinstance(b.error, TaskTimeoutError)
    assert isinstance(d.error, TaskTimeoutError)


@pytest.mark.realtime
async def test_done_callbacks_added_and_removed_from_another_thread() -> None:
    loop_thread = threading.get_ident()
    holder: list[Task[Any]] = []
    calls: list[tuple[str, int]] = []

    def keep(t: Task[Any]) -> None:
        calls.append(("keep", threading.get_ident()))

    def drop(t: Task[Any]) -> None:
        calls.append(("drop", threading.get_ident()))

    def fn(run: Run) -> int:  # runs in a worker thread
        task = holder[0]
        task.add_done_callback(keep)
        task.add_done_callback(drop)
        return task.remove_done_callback(drop)

    task = Task(Definition(task_fn=fn))
    holder.append(task)
    task.go()
    assert await asyncio.wait_for(task, REAL_TIMEOUT) == 1
    assert calls == [("keep", loop_thread)]


# -- regressions of bugs these tests found (fixed in 12dddac) -----------------------------


async def test_cancel_from_on_started_hook_marks_the_run() -> None:
    holder: list[Task[Any]] = []
    seen: list[bool] = []

    async def fn(run: Run) -> None:
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            seen.append(run.canceled)
            raise

    hooks = StateHooks(on_started=lambda task_id, when: holder[0].cancel())
    task = Task(Definition(task_fn=fn, hooks=hooks))
    holder.append(task)
    task.go()
    await task.wait()
    check_state(task, State.CANCELED)
    assert now() == 0.0
    assert seen == [True]


@pytest.mark.realtime
async def test_cancel_from_on_started_hook_wakes_a_sync_function() -> None:
    holder: list[Task[Any]] = []
    probe = ThreadProbe()

    def fn(run: Run) -> None:
        t0 = time.monotonic()
        probe.values["woke"] = run.wait_canceled(0.5)
        probe.values["elapsed"] = time.monotonic() - t0
        probe.finished.set()

    hooks = StateHooks(on_started=lambda task_id, when: holder[0].cancel())
    task = Task(Definition(task_fn=fn, hooks=hooks))
    holder.append(task)
    task.go()
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    check_state(task, State.CANCELED)
    await probe.wait(probe.finished)
    assert probe.values["woke"] is True
    assert probe.values["elapsed"] < 0.25


async def test_cancel_from_on_pending_hook_at_go(hook_log: LibraryLog) -> None:
    holder: list[Task[Any]] = []
    returned: list[bool] = []
    calls: list[int] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)

    def on_pending(task_id: str, when: Any, attempt: int) -> None:
        returned.append(holder[0].cancel())

    task = Task(Definition(task_fn=fn, delay=5, hooks=StateHooks(on_pending=on_pending)))
    holder.append(task)
    task.go()
    await task.wait()
    assert hook_log.records == []
    assert returned == [True]
    check_state(task, State.CANCELED)
    assert calls == []
    assert task.attempts == 0
    assert now() == 0.0


# -- found in review ------------------------------------------------------------------------------


@pytest.mark.realtime
async def test_wait_canceled_accepts_an_endless_timeout() -> None:
    """inf and timedelta.max mean "until canceled" (threading.Event.wait refuses them)."""
    for endless in (float("inf"), timedelta.max):

        def fn(run: Run, endless: Any = endless) -> bool:
            return run.wait_canceled(endless)

        task = Task(Definition(task_fn=fn, max_duration=0.05))
        task.go()
        await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
        assert isinstance(task.error, TaskTimeoutError)


@pytest.mark.realtime
async def test_a_function_running_on_after_its_timeout_fires_no_hook_after_the_end() -> None:
    seen: list[str] = []
    ended, called = threading.Event(), threading.Event()

    def fn(run: Run) -> None:
        ended.wait(REAL_TIMEOUT)
        run.callback()  # too late: the task has ended
        called.set()

    hooks = StateHooks(
        on_started=lambda *a: seen.append("started"),
        on_failed=lambda *a: seen.append("failed"),
        on_task_fn=lambda *a: seen.append("on_task_fn"),
    )
    task = Task(Definition(task_fn=fn, hooks=hooks, max_duration=0.05))
    task.go()
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    ended.set()
    # A hook handed to the loop by callback() is queued before `called` is set, so before
    # to_thread hands its result back (in the same FIFO): it has run when this returns.
    assert await asyncio.to_thread(called.wait, REAL_TIMEOUT)
    assert seen == ["started", "failed"]


@pytest.mark.realtime
async def test_a_class_is_a_plain_task_fn_even_with_an_async_call() -> None:
    class Job:
        def __init__(self, run: Run) -> None:
            self.attempt = run.attempt

        async def __call__(self) -> str:
            return "never called"

    task = Task(Definition(task_fn=Job))
    task.go()
    job = await asyncio.wait_for(task, REAL_TIMEOUT)
    assert isinstance(job, Job)
    assert job.attempt == 0


async def test_a_base_exception_from_on_pending_at_go_ends_the_task_and_goes_up() -> None:
    class Fatal(BaseException):
        pass

    def on_pending(*args: Any) -> None:
        raise Fatal

    task = Task(Definition(task_fn=lambda run: None, hooks=StateHooks(on_pending=on_pending)))
    with pytest.raises(Fatal):
        task.go()
    await asyncio.sleep(0)
    assert task.is_failed()
    assert isinstance(task.error, Fatal)
    assert task.attempts == 0


# -- a task's own cancellation bookkeeping stays its own ---------------------------------------


@pytest.mark.parametrize("leaker", ["task_group", "self_cancel"])
async def test_go_a_leftover_cancellation_does_not_turn_the_next_timeout_into_a_cancel(
    leaker: str,
) -> None:
    """Attempt 0 leaves its runner's ``cancelling()`` at 1 (a TaskGroup whose child fails
    while the body waits in ``__aexit__``, on CPython 3.11/3.12; or a swallowed
    ``current_task().cancel()``); attempt 1 then times out. It used to end CANCELED, the
    timeout taken for a cancellation from outside."""

    async def boom() -> None:
        await asyncio.sleep(0)  # (fails while the body waits in __aexit__, eager factory too)
        raise ValueError("child")

    async def fn(run: Run) -> None:
        if run.attempt == 0:
            if leaker == "task_group":
                async with asyncio.TaskGroup() as group:  # (raises an ExceptionGroup)
                    group.create_task(boom())
            current = asyncio.current_task()
            assert current is not None
            current.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
            raise OSError("retry me")
        await asyncio.sleep(LONG)

    task = started(fn, max_retries=1, max_duration=5)
    await task.wait()
    assert task.attempts == 2
    assert task.is_failed()
    assert isinstance(task.error, TaskTimeoutError)


@pytest.mark.realtime
async def test_go_a_coroutine_returned_by_a_canceled_plain_function_is_closed() -> None:
    """It used to warn 'coroutine ... was never awaited' when collected: a canceled
    ``run_in_executor`` future drops the result unseen."""

    async def later() -> None:
        """Never meant to run."""

    returned = threading.Event()

    def fn(run: Run) -> Any:
        run.wait_canceled(REAL_TIMEOUT)
        coro = later()
        returned.set()
        return coro

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = Task(Definition(task_fn=fn))
        task.go()
        while not task.is_started():
            await asyncio.sleep(0.001)
        task.cancel()
        await task.wait()
        # The thread's call ends (the executor's threads joined), its result dropped.
        await asyncio.get_running_loop().shutdown_default_executor()
        assert returned.is_set()
        gc.collect()
    assert task.is_canceled()
    assert [str(w.message) for w in caught] == []


@pytest.mark.realtime
async def test_the_deprecated_cancelled_spellings_warn_and_still_work() -> None:
    """``Run.cancelled`` and ``Run.wait_cancelled()`` are aliases of ``canceled`` and
    ``wait_canceled()``: they give the same answers, with a DeprecationWarning that names
    the caller's line."""
    seen: dict[str, Any] = {}

    def fn(run: Run) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seen["before"] = run.cancelled
            seen["waited"] = run.wait_cancelled(0)
        seen["warnings"] = [(w.category, w.filename, str(w.message)) for w in caught]

    task = Task(Definition(task_fn=fn))
    task.go()
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    assert task.is_done(), task.error
    assert seen["before"] is False
    assert seen["waited"] is False
    assert seen["warnings"] == [
        (DeprecationWarning, __file__, "Run.cancelled is deprecated; use Run.canceled"),
        (
            DeprecationWarning,
            __file__,
            "Run.wait_cancelled() is deprecated; use Run.wait_canceled()",
        ),
    ]


@pytest.mark.realtime
async def test_the_deprecated_cancelled_spellings_see_a_cancel() -> None:
    """Once the attempt is canceled, the old names say so, as the new ones do."""
    probe = ThreadProbe()

    def fn(run: Run) -> None:
        probe.started.set()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            probe.values["woke"] = run.wait_cancelled(REAL_TIMEOUT)
            probe.values["cancelled"] = run.cancelled
        probe.values["canceled"] = run.canceled
        probe.finished.set()

    task = Task(Definition(task_fn=fn))
    task.go()
    await probe.wait(probe.started)
    task.cancel()
    await asyncio.wait_for(task.wait(), REAL_TIMEOUT)
    await probe.wait(probe.finished)
    assert task.is_canceled()
    assert probe.values == {"woke": True, "cancelled": True, "canceled": True}
