"""The direct crew: a blocking pool's plain task functions driven in worker threads, with no
event loop on the way (`asynctasklib._direct`).

The blocking face's own tests (test_blocking, test_threads) run through it too, wherever
their tasks' functions are plain and the pool has no hooks; these are the crew's own cases:
which tasks it takes, timeouts and cancels that leave a thread behind, backoffs, and
invariants under random scenarios.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _helpers import WAIT, library_threads, wait_until
from asynctasklib import (
    Definition,
    Run,
    State,
    StateHooks,
    TaskCanceledError,
    TaskTimeoutError,
    blocking,
)
from asynctasklib._direct import DirectTask


class Boom(Exception):
    pass


def is_direct(task: blocking.Task[Any]) -> bool:
    return isinstance(task._task, DirectTask)


def test_a_plain_function_runs_in_a_thread_of_the_crew_with_no_loop() -> None:
    def where(run: Run) -> tuple[str, bool]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return threading.current_thread().name, False
        return threading.current_thread().name, True

    with blocking.WorkerPool(2) as pool:
        task = pool.submit(Definition(task_fn=where))
        name, in_loop = task.result(WAIT)
        assert is_direct(task)
    assert name.startswith("asynctasklib-pool-direct_")
    assert not in_loop
    assert library_threads() == []


async def _async_fn(run: Run) -> str:
    return "async"


@pytest.mark.parametrize(
    "case", ["async", "definition hooks", "pool hooks", "rate limit", "executor", "delay"]
)
def test_tasks_that_need_the_loop_take_the_loop_path(case: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fn: Any = _async_fn if case == "async" else (lambda run: "async")
    options: dict[str, Any] = {}
    if case == "definition hooks":
        options["hooks"] = StateHooks(on_done=lambda *a: None)
    if case == "delay":
        options["delay"] = 0.001
    pool_options: dict[str, Any] = {}
    if case == "pool hooks":
        pool_options["hooks"] = StateHooks(on_done=lambda *a: None)
    if case == "rate limit":
        pool_options["max_per_second"] = 1000.0
    with ThreadPoolExecutor(2) as executor:
        if case == "executor":
            pool_options["executor"] = executor
        with blocking.WorkerPool(2, **pool_options) as pool:
            task = pool.submit(Definition(task_fn=fn, **options))
            assert task.result(WAIT) == "async"
            assert not is_direct(task)


def test_a_timed_out_attempt_ends_at_once_and_its_thread_leaves_the_crew() -> None:
    """W=1: the task times out while its function ignores the stop; the next task runs in
    a new thread meanwhile, and the retry too."""
    release = threading.Event()
    told: list[bool] = []

    def stubborn(run: Run) -> None:
        release.wait(WAIT)  # ignores run.canceled until the test lets it go
        told.append(run.canceled)

    with blocking.WorkerPool(1, retain_finished=False) as pool:
        slow = pool.submit(
            Definition(task_fn=stubborn, max_duration=0.05, max_retries=1, backoff=0)
        )
        assert slow.wait(WAIT)
        assert slow.is_failed()
        assert isinstance(slow.error, TaskTimeoutError)
        assert slow.attempts == 2
        other = pool.submit(Definition(task_fn=lambda run: "other"))
        assert other.result(WAIT) == "other"  # while both stubborn attempts still run
        assert told == []
        stats = pool.stats()
        assert (stats.failed, stats.done, stats.total) == (1, 1, 2)
        release.set()
        wait_until(lambda: len(told) == 2, what="both attempts to return")
    assert told == [True, True]  # each was told to stop
    wait_until(lambda: library_threads() == [], what="the left-behind threads to end")


def test_cancel_of_a_task_waiting_for_a_thread_ends_it_never_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with blocking.WorkerPool(1) as pool:
        assert pool.submit(Definition(task_fn=lambda run: 0)).result(WAIT) == 0
        direct = pool._direct
        assert direct is not None
        monkeypatch.setattr(direct, "wake_one", lambda: None)  # no thread takes what comes
        task = pool.submit(Definition(task_fn=lambda run: 1))
        assert task.is_pending()
        assert task._task._queue is direct.ready
        assert task.cancel()
        assert task.is_canceled()
        assert task.attempts == 0
        assert pool.available_workers == 1  # its slot back
        monkeypatch.undo()
        assert pool.submit(Definition(task_fn=lambda run: 2)).result(WAIT) == 2
        stats = pool.stats()
    assert (stats.done, stats.canceled, stats.total) == (2, 1, 3)


def test_cancel_of_a_running_task_ends_it_at_once_and_tells_the_function() -> None:
    seen = threading.Event()
    told: list[bool] = []
    started = threading.Event()

    def cooperative(run: Run) -> str:
        started.set()
        told.append(run.wait_canceled(WAIT))
        seen.set()
        return "late"

    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=cooperative, max_duration=None))
        assert started.wait(WAIT)
        assert task.cancel()
        assert task.wait(WAIT)
        assert task.is_canceled()
        assert isinstance(task.error, TaskCanceledError)
        assert not task.cancel()  # ended: nothing to cancel
        assert seen.wait(WAIT)
        assert told == [True]
        after = pool.submit(Definition(task_fn=lambda run: "after"))
        assert after.result(WAIT) == "after"
        stats = pool.stats()
    assert (stats.canceled, stats.done, stats.started, stats.pending) == (1, 1, 0, 0)


def test_a_task_canceling_itself_ends_canceled() -> None:
    def itself(run: Run) -> str:
        run.cancel()
        return "returned"

    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=itself))
        assert task.wait(WAIT)
        assert task.is_canceled()
        assert pool.submit(Definition(task_fn=lambda run: 2)).result(WAIT) == 2
    wait_until(lambda: library_threads() == [], what="the threads to end")


def test_cancel_during_a_backoff_ends_it_without_waiting_the_backoff() -> None:
    failed = threading.Event()

    def fails(run: Run) -> None:
        failed.set()
        raise Boom

    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=fails, max_retries=3, backoff=3600))
        assert failed.wait(WAIT)
        wait_until(task.is_pending, what="the backoff")
        assert task.cancel()
        assert task.cancel()  # (asked already: still in progress, as it ends)
        assert task.wait(WAIT)
        assert task.is_canceled()
        assert task.attempts == 1


def test_retries_with_backoff_in_the_thread() -> None:
    def flaky(run: Run) -> int:
        if run.attempt < 2:
            raise Boom(run.attempt)
        return run.attempt

    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=flaky, max_retries=2, backoff=0.01))
        assert task.result(WAIT) == 2
        assert task.attempts == 3
        failing = pool.submit(Definition(task_fn=flaky, max_retries=1, backoff=0))
        assert failing.wait(WAIT)
        assert isinstance(failing.error, Boom)
        stats = pool.stats()
    assert (stats.done, stats.failed, stats.total) == (1, 1, 2)


def test_a_plain_function_returning_a_coroutine_is_awaited_on_the_loop_in_its_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def later() -> tuple[str, bool]:
        await asyncio.sleep(0)
        return var.get(), threading.current_thread().name == "asynctasklib-portal"

    with blocking.WorkerPool(1) as pool:
        var.set("submitter's")
        task = pool.submit(Definition(task_fn=lambda run: later()))
        assert is_direct(task)
        assert task.result(WAIT) == ("submitter's", True)


def test_context_variables_are_the_submitters_and_do_not_leak() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def reads_then_sets(run: Run) -> str:
        seen = var.get()
        var.set("changed by a task")
        return seen

    with blocking.WorkerPool(1) as pool:
        var.set("one")
        first = pool.submit(Definition(task_fn=reads_then_sets))
        assert first.result(WAIT) == "one"
        var.set("two")
        second = pool.submit(Definition(task_fn=reads_then_sets))
        assert second.result(WAIT) == "two"
    assert var.get() == "two"


def test_done_callbacks_run_on_the_loop_thread() -> None:
    names: list[str] = []
    ran = threading.Event()

    def on_end(task: blocking.Task[Any]) -> None:
        names.append(threading.current_thread().name)
        ran.set()

    gate = threading.Event()
    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=lambda run: gate.wait(WAIT)))
        task.add_done_callback(on_end)
        gate.set()
        assert ran.wait(WAIT)
        task.add_done_callback(on_end)  # ended: at once, on the loop's thread too
        wait_until(lambda: len(names) == 2, what="the second callback")
    assert names == ["asynctasklib-portal", "asynctasklib-portal"]


def test_a_generator_exit_from_a_plain_function_stops_the_pool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad(run: Run) -> None:
        raise GeneratorExit

    pool = blocking.WorkerPool(2)
    try:
        task = pool.submit(Definition(task_fn=bad))
        assert task.wait(WAIT)
        assert task.is_failed()
        assert isinstance(task.error, GeneratorExit)
        wait_until(pool.is_stopped, what="the pool to stop")
    finally:
        pool.shutdown(timeout=WAIT)
    assert "GeneratorExit" in caplog.text


def test_shutdown_with_grace_cancels_what_is_left_after_it() -> None:
    started = threading.Event()

    def slow(run: Run) -> str:
        started.set()
        return "told" if run.wait_canceled(WAIT) else "untold"

    pool = blocking.WorkerPool(2)
    quick = pool.submit(Definition(task_fn=lambda run: "quick"))
    task = pool.submit(Definition(task_fn=slow, max_duration=None))
    assert started.wait(WAIT)
    pool.shutdown(grace=0.05, timeout=WAIT)
    assert quick.result(0) == "quick"
    assert task.is_canceled()
    assert pool.stats().canceled == 1


# -- random scenarios ------------------------------------------------------------------------

KINDS = ["ok", "fail", "flaky", "timeout", "cancel_running", "cancel_soon"]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    workers=st.integers(1, 4),
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=12),
    retain=st.booleans(),
)
def test_random_scenarios_end_every_task_once_and_count_it(
    workers: int, kinds: list[str], retain: bool
) -> None:
    started: dict[int, threading.Event] = {}

    def make(i: int, kind: str) -> Definition[Any]:
        started[i] = threading.Event()

        def fn(run: Run) -> int:
            started[i].set()
            if kind == "fail":
                raise Boom(i)
            if kind == "flaky" and run.attempt == 0:
                raise Boom(i)
            if kind in ("timeout", "cancel_running"):
                run.wait_canceled(WAIT)
            return i

        return Definition(
            task_fn=fn,
            max_duration=0.02 if kind == "timeout" else None,
            max_retries=1 if kind in ("flaky", "timeout") else 0,
            backoff=0,
        )

    with blocking.WorkerPool(workers, retain_finished=retain) as pool:
        tasks = []
        for i, kind in enumerate(kinds):
            task = pool.submit(make(i, kind))
            tasks.append(task)
            if kind == "cancel_soon":
                task.cancel()
            if kind == "cancel_running":
                assert started[i].wait(WAIT)
                assert task.cancel()
            snapshot = pool.stats()
            assert snapshot.total == i + 1
            assert snapshot.active_workers <= workers
        pool.wait(WAIT)
        stats = pool.stats()
        listed = pool.tasks()
    states = [task.state for task in tasks]
    for task, kind in zip(tasks, kinds, strict=True):
        assert task.is_end()
        if kind in ("ok", "flaky"):
            assert task.state is State.DONE
        elif kind == "fail":
            assert task.state is State.FAILED
            assert isinstance(task.error, Boom)
        elif kind == "timeout":
            assert task.state is State.FAILED
            assert isinstance(task.error, TaskTimeoutError)
            assert task.attempts == 2
        elif kind == "cancel_running":
            assert task.state is State.CANCELED
        else:  # canceled right after submit: before its start, or at once as it ran
            assert task.state in (State.CANCELED, State.DONE)
    assert stats.total == len(tasks)
    assert stats.done == states.count(State.DONE)
    assert stats.failed == states.count(State.FAILED)
    assert stats.canceled == states.count(State.CANCELED)
    assert stats.pending == stats.started == stats.active_workers == 0
    assert len(listed) == (len(tasks) if retain else 0)
    assert pool.available_workers == workers


def test_stop_iteration_from_a_plain_function_fails_the_task_with_a_runtime_error() -> None:
    def stops(run: Run) -> None:
        raise StopIteration

    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=stops))
        assert task.wait(WAIT)
        assert is_direct(task)
    assert isinstance(task.error, RuntimeError)
    assert isinstance(task.error.__cause__, StopIteration)


def test_a_coroutine_returned_by_an_attempt_left_behind_is_closed_unawaited() -> None:
    """The suite turns warnings into errors: a "never awaited" one would fail it."""
    release = threading.Event()
    returned = threading.Event()
    made: list[Any] = []

    async def never() -> None:
        raise AssertionError("never awaited")

    def late(run: Run) -> Any:
        release.wait(WAIT)
        made.append(never())
        returned.set()
        return made[-1]

    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=late, max_duration=0.02))
        assert task.wait(WAIT)
        assert isinstance(task.error, TaskTimeoutError)
        release.set()
        assert returned.wait(WAIT)
        wait_until(lambda: made[0].cr_frame is None, what="the coroutine to be closed")


def test_a_timeout_while_the_returned_coroutine_runs_on_the_loop_cancels_it() -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with blocking.WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=lambda run: slow(), max_duration=0.05))
        assert task.wait(WAIT)
        assert isinstance(task.error, TaskTimeoutError)
        assert cancelled.wait(WAIT)
        assert pool.submit(Definition(task_fn=lambda run: 1)).result(WAIT) == 1


@pytest.mark.parametrize("where", ["retry_on, after an error", "backoff, after a timeout"])
def test_a_base_exception_from_the_retry_decision_fails_the_task_and_the_pool_goes_on(
    where: str,
) -> None:
    def refuse(_: Any) -> Any:
        raise KeyboardInterrupt

    def fn(run: Run) -> None:
        if where.startswith("retry_on"):
            raise Boom
        run.wait_canceled(WAIT)

    if where.startswith("retry_on"):
        definition = Definition(task_fn=fn, max_retries=1, retry_on=refuse)
    else:
        definition = Definition(task_fn=fn, max_retries=1, backoff=refuse, max_duration=0.02)
    with blocking.WorkerPool(1) as pool:
        task = pool.submit(definition)
        assert task.wait(WAIT)
        assert task.is_failed()
        assert isinstance(task.error, KeyboardInterrupt)
        assert pool.submit(Definition(task_fn=lambda run: 1)).result(WAIT) == 1
        assert not pool.is_stopped()
