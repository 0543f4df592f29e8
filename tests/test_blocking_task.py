"""The blocking face's task handle (`_blocking_task`, `asynctasklib.blocking.Task`): its
state and predicates, ``wait()`` and ``result()`` with and without timeouts (none, huge,
interrupted), ``cancel()``, ``add_done_callback()``, and handles of one task being equal.

Plain (sync) tests, on a blocking pool; every wait is bounded (``WAIT``).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from _helpers import (
    HUGE_TIMEOUTS,
    WAIT,
    fail,
    gated,
    gated_task_with_a_waiter,
    interrupt_main_when,
    ok,
    wait_until,
)
from asynctasklib import Definition, State, TaskCanceledError, TaskTimeoutError
from asynctasklib.blocking import Task, WorkerPool


def test_task_states_while_running_and_after() -> None:
    gate, started = threading.Event(), threading.Event()
    with WorkerPool(1) as pool:
        task = pool.submit(Definition(id="t", task_fn=gated(gate, started, value=7)))
        assert started.wait(WAIT)
        assert task.state is State.STARTED
        assert task.is_started()
        assert task.is_in_progress()
        assert not task.is_end()
        assert not task.is_pending()
        assert not task.is_created()
        assert task.attempts == 1
        assert task.error is None
        gate.set()
        assert task.result(WAIT) == 7
        assert task.is_done()


def test_handle_wait_returns_false_when_the_timeout_passes_first() -> None:
    gate = threading.Event()
    with WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=gated(gate)))
        t0 = time.monotonic()
        assert task.wait(0.05) is False
        assert time.monotonic() - t0 >= 0.05
        assert task.wait(0) is False
        assert task.wait(timedelta(milliseconds=10)) is False
        assert task.is_in_progress()  # waiting canceled nothing
        gate.set()
        assert task.wait() is True
        assert task.wait(0) is True


def test_handle_result_timeout_is_timeout_error_and_cancels_nothing() -> None:
    gate = threading.Event()
    with WorkerPool(1) as pool:
        task = pool.submit(Definition(id="slow", task_fn=gated(gate, value="v")))
        with pytest.raises(TimeoutError, match="slow") as info:
            task.result(0.05)
        assert not isinstance(info.value, TaskTimeoutError)
        assert task.is_in_progress()
        gate.set()
        assert task.result(WAIT) == "v"


def test_handle_result_raises_the_tasks_own_error() -> None:
    error = KeyError("boom")
    with WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=fail(error)))
        with pytest.raises(KeyError) as info:
            task.result(WAIT)
        assert info.value is error
        assert task.wait(WAIT) is True  # wait never raises the task's error
        assert task.error is error
        assert task.state is State.FAILED
        assert task.is_failed()


def test_cancel_a_running_task_from_the_calling_thread() -> None:
    gate, started = threading.Event(), threading.Event()
    with WorkerPool(1) as pool:
        task = pool.submit(Definition(id="c", task_fn=gated(gate, started)))
        assert started.wait(WAIT)
        assert task.cancel() is True
        assert task.wait(WAIT) is True
        assert task.state is State.CANCELED
        assert task.is_canceled()
        assert isinstance(task.error, TaskCanceledError)
        with pytest.raises(TaskCanceledError):
            task.result(WAIT)
        assert task.cancel() is False  # already ended
        assert pool.stats().canceled == 1


def test_add_done_callback_gets_the_blocking_handle_on_the_loop_thread() -> None:
    seen: list[tuple[Task[Any], str]] = []
    done = threading.Event()
    gate = threading.Event()
    with WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=gated(gate)))

        def callback(t: Task[Any]) -> None:
            seen.append((t, threading.current_thread().name))
            done.set()

        task.add_done_callback(callback)
        gate.set()
        assert done.wait(WAIT)
        # once ended, a new callback runs at once
        late: list[Task[Any]] = []
        task.add_done_callback(late.append)
        wait_until(lambda: len(late) == 1)
    assert len(seen) == 1
    assert isinstance(seen[0][0], Task)
    assert seen[0][0]._task is task._task
    assert seen[0][1] == "asynctasklib-portal"


def test_interrupting_a_blocking_task_wait_changes_nothing() -> None:
    gate = threading.Event()
    with WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=gated(gate, value=3)))
        with interrupt_main_when(lambda: True), pytest.raises(KeyboardInterrupt):
            task.wait()
        gate.set()
        assert task.result(WAIT) == 3


def test_handles_of_one_task_are_equal_wherever_they_come_from() -> None:
    gate = threading.Event()
    with WorkerPool(2) as pool:
        first = pool.submit(Definition(id="a", task_fn=ok(1)))
        second = pool.submit(Definition(id="b", task_fn=gated(gate)))
        assert first.wait(WAIT)
        listed = pool.tasks()
        assert first in listed
        assert second in listed
        assert listed.index(second) == 1
        assert listed == [first, second]
        assert pool.tasks() == pool.tasks()  # and each call's handles equal the last's
        assert {*listed, first, second} == {first, second}  # they hash alike too
        assert {first: "x"}[listed[0]] == "x"
        assert first != second
        assert listed[0] != listed[1]
        assert first != first._task  # a blocking handle is not the async task it wraps
        assert first != "a"
        seen: list[Task[Any]] = []
        got = threading.Event()

        def on_done(task: Task[Any]) -> None:
            seen.append(task)
            got.set()

        pool.tasks()[1].add_done_callback(on_done)  # registered through a listed handle
        gate.set()
        assert got.wait(WAIT)
        assert seen == [second]
        assert hash(seen[0]) == hash(second)
        # as_completed yields the very handles it was given
        ended = list(pool.as_completed([first, second], timeout=WAIT))
        assert sorted(map(id, ended)) == sorted([id(first), id(second)])


def test_handles_listed_while_a_pool_with_retain_finished_false_runs_equal_the_submitted() -> None:
    gate = threading.Event()
    with WorkerPool(2, retain_finished=False) as pool:
        running = pool.submit(Definition(task_fn=gated(gate)))
        assert pool.tasks() == [running]
        assert running in pool.tasks()
        gate.set()
        assert running.wait(WAIT)
        assert running not in pool.tasks()


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=repr)
def test_task_wait_and_result_with_a_huge_timeout_wait_without_limit(timeout: Any) -> None:
    with WorkerPool(2) as pool:
        gate, task, waiter = gated_task_with_a_waiter(pool, lambda t: t.wait(timeout))
        gate.set()
        assert waiter.join() is True
        gate, task, waiter = gated_task_with_a_waiter(pool, lambda t: t.result(timeout))
        gate.set()
        assert waiter.join() == "v"
        assert task.result(timeout) == "v"  # ended: no wait at all
