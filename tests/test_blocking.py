"""The blocking face, `asynctasklib.blocking`, used from plain threads with no event loop.

Every test here is a plain (sync) function. Ordering is proved with threading events,
barriers and recorded logs; every wait is bounded (``WAIT``), so a bug fails a test instead
of hanging it. Where a test must show that something does *not* happen (a submit that must
stay blocked), it gives it ``QUIET`` seconds to happen, then proves the positive side
exactly (the submit returns only once a task has ended).

The task handle, the semaphore and the portal's calls into its loop have files of their own:
test_blocking_task.py, test_blocking_semaphore.py, test_portal.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

from _helpers import (
    HUGE_TIMEOUTS,
    WAIT,
    InThread,
    agated,
    fail,
    gated,
    gated_task_with_a_waiter,
    interrupt_main_when,
    library_threads,
    ok,
    run_info_fn,
    wait_until,
)
from asynctasklib import (
    Definition,
    PoolStats,
    PoolStoppedError,
    Run,
    RunInfo,
    State,
    StateHooks,
    TaskCanceledError,
    TaskTimeoutError,
    blocking,
)
from asynctasklib.blocking import MapIterator, Semaphore, Task, WorkerPool

QUIET = 0.1  # seconds given to something that must not happen, before checking it did not


# -- helpers ----------------------------------------------------------------------------------


def recount(tasks: list[Task[Any]]) -> dict[State, int]:
    counts = dict.fromkeys(State, 0)
    for task in tasks:
        counts[task.state] += 1
    return counts


def pid_of(info: RunInfo) -> tuple[int, str, int]:
    """Module level, so a process pool can run it."""
    return os.getpid(), info.id, info.attempt


# -- the module -------------------------------------------------------------------------------


def test_blocking_module_exports_the_contract_names() -> None:
    assert blocking.WorkerPool is WorkerPool
    assert blocking.Task is Task
    assert blocking.Semaphore is Semaphore
    assert blocking.MapIterator is MapIterator
    assert set(blocking.__all__) >= {"WorkerPool", "Task", "Semaphore"}


def test_constructing_a_pool_starts_no_thread() -> None:
    before = library_threads()
    pool = WorkerPool(3)
    assert library_threads() == before
    assert pool.max_workers == 3
    assert pool.active_workers == 0
    assert pool.available_workers == 3
    assert not pool.is_stopped()
    assert pool.tasks() == []
    pool.wait()  # nothing submitted: returns at once
    pool.shutdown()
    assert pool.is_stopped()
    assert library_threads() == before


@pytest.mark.parametrize("n", [0, -1])
def test_max_workers_below_one_is_value_error(n: int) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        WorkerPool(n)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="max_workers"):
        WorkerPool(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="hooks"):
        WorkerPool(1, hooks=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="executor"):
        WorkerPool(1, executor=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_per_second"):
        WorkerPool(1, max_per_second=0)
    with WorkerPool(1) as pool, pytest.raises(TypeError, match="Definition"):
        pool.submit(lambda run: None)  # type: ignore[call-arg, misc, arg-type]
    assert pool.stats().total == 0


# -- submit and the handles -------------------------------------------------------------------


def test_submit_returns_a_blocking_task_with_the_functions_value() -> None:
    with WorkerPool(2) as pool:
        task = pool.submit(Definition(id="sync", task_fn=lambda run: run.id * 2))
        assert isinstance(task, Task)
        assert task.id == "sync"
        assert task.definition.id == "sync"
        assert task.result(WAIT) == "syncsync"
        assert task.wait(WAIT) is True
        assert task.state is State.DONE
        assert task.is_done()
        assert task.is_end()
        assert not task.is_failed()
        assert not task.is_canceled()
        assert not task.is_in_progress()
        assert task.error is None
        assert task.attempts == 1
        assert "sync" in repr(task)


def test_async_task_fn_runs_on_the_portal_loop() -> None:
    async def fn(run: Run) -> tuple[str, bool]:
        await asyncio.sleep(0)
        return threading.current_thread().name, asyncio.get_running_loop().is_running()

    with WorkerPool(2) as pool:
        task = pool.submit(Definition(task_fn=fn))
        assert task.result(WAIT) == ("asynctasklib-portal", True)


def test_sync_task_fn_runs_in_a_pool_thread_never_on_the_loop() -> None:
    with WorkerPool(2) as pool:
        task = pool.submit(Definition(task_fn=lambda run: threading.current_thread().name))
        name = task.result(WAIT)
    assert name.startswith("asynctasklib-pool")


def test_result_of_a_timed_out_task_is_its_task_timeout_error() -> None:
    with WorkerPool(1) as pool:
        task = pool.submit(
            Definition(task_fn=lambda run: run.wait_canceled(WAIT), max_duration=0.02)
        )
        with pytest.raises(TaskTimeoutError):
            task.result(WAIT)
        assert task.is_failed()


def test_retries_count_attempts() -> None:
    calls: list[int] = []

    def flaky(run: Run) -> str:
        calls.append(run.attempt)
        if run.attempt < 2:
            raise OSError("flaky")
        return "ok"

    with WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=flaky, max_retries=3, backoff=0))
        assert task.result(WAIT) == "ok"
        assert task.attempts == 3
        assert calls == [0, 1, 2]


def test_cancel_a_running_async_task_and_one_in_its_delay() -> None:
    gate, started = threading.Event(), threading.Event()
    calls: list[str] = []
    with WorkerPool(2) as pool:
        running = pool.submit(Definition(task_fn=agated(gate, started)))
        delayed = pool.submit(Definition(task_fn=lambda run: calls.append("delayed"), delay=WAIT))
        assert started.wait(WAIT)
        assert delayed.cancel() is True
        assert running.cancel() is True
        assert delayed.wait(WAIT)
        assert running.wait(WAIT)
        assert delayed.is_canceled()
        assert running.is_canceled()
    assert calls == []


def test_submit_blocks_while_the_pool_is_full() -> None:
    n = 3
    gates = [threading.Event() for _ in range(n)]
    starts = [threading.Event() for _ in range(n)]
    with WorkerPool(n) as pool:
        tasks = [
            pool.submit(Definition(task_fn=gated(g, s))) for g, s in zip(gates, starts, strict=True)
        ]
        for s in starts:
            assert s.wait(WAIT)
        assert pool.active_workers == n
        assert pool.available_workers == 0

        def submit_one() -> tuple[Task[Any], list[bool]]:
            task = pool.submit(Definition(id="extra", task_fn=ok("extra")))
            # the slot was handed over by a task that had ended already
            return task, [t.is_end() for t in tasks]

        extra = InThread(submit_one)
        assert extra.started.wait(WAIT)
        assert not extra.finished.wait(QUIET), "submit returned while every worker was busy"
        gates[1].set()
        task, ended = extra.join()
        assert ended == [False, True, False]
        assert task.result(WAIT) == "extra"
        gates[0].set()
        gates[2].set()


def test_blocked_submitters_from_threads_are_served_in_fifo_order() -> None:
    gate = threading.Event()
    order: list[int] = []
    with WorkerPool(1) as pool:
        first = pool.submit(Definition(task_fn=gated(gate)))
        waiters = []

        def submit(i: int) -> Task[None]:
            return pool.submit(Definition(task_fn=lambda run: order.append(i)))

        def queued(n: int) -> bool:
            return len(pool._pool._slots._waiters) == n

        for i in range(4):
            waiters.append(InThread(functools.partial(submit, i)))
            # the i-th submitter is queued before the next one starts
            wait_until(functools.partial(queued, i + 1), what="queued submitter")
        gate.set()
        for w in waiters:
            w.join().wait(WAIT)
        assert first.is_done()
    assert order == [0, 1, 2, 3]


def test_never_more_than_max_workers_run_at_once() -> None:
    max_workers = 3
    lock = threading.Lock()
    running = peak = 0
    barrier = threading.Barrier(max_workers, timeout=WAIT)

    def fn(run: Run) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            if run.attempt == 0 and int(run.id) < max_workers:
                barrier.wait()  # the first wave all run at once: max_workers threads exist
        finally:
            with lock:
                running -= 1

    with WorkerPool(max_workers) as pool:
        tasks = pool.submit_batch(Definition(id=str(i), task_fn=fn) for i in range(12))
        pool.wait(WAIT)
        assert all(t.is_done() for t in tasks)
    assert peak == max_workers


def test_submit_batch_returns_tasks_in_order_and_blocks_for_workers() -> None:
    with WorkerPool(2) as pool:
        tasks = pool.submit_batch(
            [Definition(id=str(i), task_fn=lambda run: int(run.id)) for i in range(7)]
        )
        assert [t.id for t in tasks] == [str(i) for i in range(7)]
        assert [t.result(WAIT) for t in tasks] == list(range(7))
        assert pool.submit_batch([]) == []
        with pytest.raises(TypeError, match=r"definitions\[1\]"):
            pool.submit_batch([Definition(task_fn=ok()), "nope"])  # type: ignore[list-item]
        assert pool.stats().total == 7  # nothing of the bad batch was submitted


# -- error group, gather, map, as_completed ---------------------------------------------------


def test_err_group_all_succeed_returns_none() -> None:
    with WorkerPool(2) as pool:
        definitions = [Definition(task_fn=ok(i)) for i in range(5)]
        assert pool.submit_with_err_group(definitions) is None  # type: ignore[func-returns-value]
        assert pool.stats().done == 5


def test_err_group_raises_the_first_failure_itself_and_cancels_the_rest() -> None:
    error = ValueError("first failure")
    gate = threading.Event()
    started = threading.Event()
    calls: list[str] = []

    def failing(run: Run) -> None:
        assert started.wait(WAIT)  # the sibling runs when this one fails
        raise error

    with WorkerPool(2) as pool:
        group = [
            Definition(id="sibling", task_fn=gated(gate, started)),
            Definition(id="fails", task_fn=failing),
            Definition(id="never", task_fn=lambda run: calls.append("never")),
        ]
        with pytest.raises(ValueError, match="first failure") as info:
            pool.submit_with_err_group(group)
        assert info.value is error
        by_id = {t.id: t for t in pool.tasks()}
        assert by_id["fails"].is_failed()
        assert by_id["sibling"].is_canceled()
        assert "never" not in by_id or by_id["never"].is_canceled()
        assert pool.active_workers == 0
    assert calls == []


def test_err_group_stopped_while_submitting_lets_submitted_tasks_run_then_raises() -> None:
    gate, started = threading.Event(), threading.Event()
    calls: list[str] = []
    with WorkerPool(1) as pool:
        group = [
            Definition(id="first", task_fn=gated(gate, started, value="ran")),
            Definition(id="second", task_fn=lambda run: calls.append("second")),
        ]
        runner = InThread(lambda: pool.submit_with_err_group(group))
        assert started.wait(WAIT)
        wait_until(lambda: len(pool._pool._slots._waiters) == 1, what="group waiting for a slot")
        pool.stop()
        assert not runner.finished.wait(QUIET)  # the submitted task still runs
        gate.set()
        with pytest.raises(PoolStoppedError):
            runner.join()
        (first,) = pool.tasks()
        assert first.id == "first"
        assert first.result(0) == "ran"
    assert calls == []


def test_gather_results_in_order_and_tasks_too() -> None:
    with WorkerPool(2) as pool:
        first = pool.submit(Definition(task_fn=ok("a")))
        results = pool.gather(
            [first, Definition(task_fn=ok("b")), Definition(task_fn=lambda run: "c")]
        )
        assert results == ["a", "b", "c"]


def test_gather_return_exceptions() -> None:
    error = RuntimeError("x")
    with WorkerPool(2) as pool:
        results = pool.gather(
            [Definition(task_fn=ok(1)), Definition(task_fn=fail(error)), Definition(task_fn=ok(3))],
            return_exceptions=True,
        )
    assert results == [1, error, 3]
    assert results[1] is error


def test_gather_raises_the_first_failure() -> None:
    error = LookupError("gone")
    with WorkerPool(2) as pool, pytest.raises(LookupError) as info:
        pool.gather([Definition(task_fn=ok(1)), Definition(task_fn=fail(error))])
    assert info.value is error


@pytest.mark.parametrize("ordered", [True, False])
def test_map_sync_and_async_functions(ordered: bool) -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    with WorkerPool(3) as pool:
        out = list(pool.map(lambda x: x + 1, range(20), ordered=ordered))
        out_async = list(pool.map(double, range(20), ordered=ordered))
    if ordered:
        assert out == list(range(1, 21))
        assert out_async == [2 * x for x in range(20)]
    else:
        assert sorted(out) == list(range(1, 21))
        assert sorted(out_async) == [2 * x for x in range(20)]


def test_map_is_a_plain_iterator() -> None:
    with WorkerPool(2) as pool:
        results = pool.map(str, [1, 2])
        assert isinstance(results, MapIterator)
        assert iter(results) is results
        assert next(results) == "1"
        assert next(results) == "2"
        with pytest.raises(StopIteration):
            next(results)


def test_map_failure_is_raised_and_return_exceptions_yields_it() -> None:
    error = ArithmeticError("bad item")

    def fn(x: int) -> int:
        if x == 3:
            raise error
        return x

    with WorkerPool(2) as pool:
        with pytest.raises(ArithmeticError) as info:
            list(pool.map(fn, range(6)))
        assert info.value is error
        assert list(pool.map(fn, range(6), return_exceptions=True)) == [0, 1, 2, error, 4, 5]


@pytest.mark.parametrize("how", ["with", "close"])
def test_map_stops_an_endless_input_early(how: str) -> None:
    read = 0
    lock = threading.Lock()
    running = 0
    started = 0

    def endless() -> Iterator[int]:
        nonlocal read
        i = 0
        while True:
            read += 1
            yield i
            i += 1

    async def fn(x: int) -> int:
        nonlocal running, started
        with lock:
            running += 1
            started += 1
        try:
            if x >= 5:
                await asyncio.sleep(WAIT)  # still running when the consumer stops
            return x
        finally:
            with lock:
                running -= 1

    window = 4
    with WorkerPool(3) as pool:
        if how == "with":
            with pool.map(fn, endless(), window=window) as results:
                got = [next(results) for _ in range(5)]
        else:
            results = pool.map(fn, endless(), window=window)
            got = [next(results) for _ in range(5)]
            results.close()
        read_at_close = read
        assert got == [0, 1, 2, 3, 4]
        assert read_at_close <= len(got) + window
        pool.wait(WAIT)  # every task of the run has ended: nothing left running
        assert running == 0
        assert pool.active_workers == 0
        assert read == read_at_close  # the input is read no further
        assert started <= read
        # the pool still works
        assert pool.submit(Definition(task_fn=ok("after"))).result(WAIT) == "after"


def test_map_closed_with_results_fetched_but_not_returned_ends_there() -> None:
    """The iterator fetches every result ready in one trip to the loop; closing it drops
    those not yet returned, and it ends."""
    with WorkerPool(4) as pool:
        results = pool.map(lambda x: x * 2, range(100), window=50)
        assert next(results) == 0
        results.close()
        assert list(results) == []
        assert list(pool.map(lambda x: x * 2, range(100), window=50)) == [x * 2 for x in range(100)]


def test_as_completed_left_early_leaves_no_callback_on_the_tasks() -> None:
    gate = threading.Event()
    with WorkerPool(1) as pool:
        task = pool.submit(Definition(task_fn=gated(gate)))
        with pytest.raises(TimeoutError):
            for _ in pool.as_completed([task], timeout=0.01):
                pass
        assert not task._task._callbacks
        gate.set()


def test_map_stopped_midstream_yields_what_was_submitted_then_raises() -> None:
    read = 0

    def endless() -> Iterator[int]:
        nonlocal read
        while True:
            yield read
            read += 1

    window = 3
    with WorkerPool(2) as pool:
        results = pool.map(lambda x: x, endless(), window=window)
        assert [next(results), next(results)] == [0, 1]
        InThread(pool.stop, name="stopper").join()  # from another thread
        rest: list[int] = []
        with pytest.raises(PoolStoppedError):
            rest.extend(results)
        assert rest == list(range(2, 2 + len(rest)))  # in order, none lost
        # a window in flight, and up to a window fetched by the iterator, not yet returned
        assert len(rest) <= 2 * window
        with pytest.raises(StopIteration):
            next(results)
        pool.wait(WAIT)
        assert pool.stats().done == 2 + len(rest)
        assert read <= 2 + len(rest) + 1  # read no further than what ran (+ the one refused)


def test_map_dropped_iterator_stops_the_run() -> None:
    read = 0

    def endless() -> Iterator[int]:
        nonlocal read
        while True:
            read += 1
            yield read

    async def fn(x: int) -> int:
        if x > 2:
            await asyncio.sleep(WAIT)
        return x

    with WorkerPool(2) as pool:
        for value in pool.map(fn, endless(), window=3):
            assert value == 1
            break
        gc.collect()
        pool.wait(WAIT)
        assert pool.active_workers == 0
        seen = read
        assert pool.submit(Definition(task_fn=ok())).wait(WAIT)
        assert read == seen


def test_map_close_before_iterating_on_a_pool_in_use() -> None:
    with WorkerPool(2) as pool:
        pool.submit(Definition(task_fn=ok())).wait(WAIT)
        results = pool.map(str, range(3))
        results.close()
        assert list(results) == []


def test_map_close_before_iterating_on_a_fresh_pool() -> None:
    with WorkerPool(2) as pool:
        results = pool.map(str, range(3))
        results.close()
        assert list(results) == []


def test_as_completed_yields_in_the_order_tasks_end() -> None:
    gates = [threading.Event() for _ in range(3)]
    with WorkerPool(3) as pool:
        tasks = [pool.submit(Definition(id=str(i), task_fn=gated(g))) for i, g in enumerate(gates)]
        it = pool.as_completed(tasks, timeout=WAIT)
        gates[2].set()
        first = next(it)
        assert first.id == "2"
        gates[0].set()
        assert next(it).id == "0"
        gates[1].set()
        assert next(it).id == "1"
        with pytest.raises(StopIteration):
            next(it)


def test_as_completed_timeout_is_timeout_error_and_cancels_nothing() -> None:
    gate = threading.Event()
    with WorkerPool(2) as pool:
        tasks = [
            pool.submit(Definition(id="fast", task_fn=ok())),
            pool.submit(Definition(id="slow", task_fn=gated(gate))),
        ]
        it = pool.as_completed(tasks, timeout=0.1)
        assert next(it).id == "fast"
        with pytest.raises(TimeoutError):
            next(it)
        assert tasks[1].is_in_progress()
        gate.set()


# -- wait, stop, shutdown, with ---------------------------------------------------------------


def test_wait_blocks_until_every_task_has_ended() -> None:
    with WorkerPool(2) as pool:
        tasks = [pool.submit(Definition(task_fn=lambda run: time.sleep(0.01))) for _ in range(5)]
        pool.wait()
        assert all(t.is_done() for t in tasks)
        assert pool.active_workers == 0


def test_wait_timeout_raises_and_cancels_nothing() -> None:
    gate = threading.Event()
    with WorkerPool(2) as pool:
        task = pool.submit(Definition(task_fn=gated(gate)))
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            pool.wait(timeout=0.05)
        assert time.monotonic() - t0 >= 0.05
        assert task.is_in_progress()
        assert not pool.is_stopped()
        gate.set()
        pool.wait(WAIT)
        assert task.is_done()


def test_stop_refuses_new_tasks_and_lets_submitted_ones_run() -> None:
    gate = threading.Event()
    with WorkerPool(2) as pool:
        task = pool.submit(Definition(task_fn=gated(gate, value="ran")))
        pool.stop()
        assert pool.is_stopped()
        assert pool.stats().stopped
        with pytest.raises(PoolStoppedError):
            pool.submit(Definition(task_fn=ok()))
        with pytest.raises(PoolStoppedError):
            pool.submit_batch([Definition(task_fn=ok())])
        gate.set()
        assert task.result(WAIT) == "ran"
    assert pool.stats().total == 1


def test_stop_before_first_use() -> None:
    pool = WorkerPool(1)
    pool.stop()
    with pytest.raises(PoolStoppedError):
        pool.submit(Definition(task_fn=ok()))
    assert library_threads() == []
    pool.shutdown()


def test_stop_fails_a_thread_blocked_in_submit() -> None:
    gate = threading.Event()
    with WorkerPool(1) as pool:
        first = pool.submit(Definition(task_fn=gated(gate)))
        blocked = InThread(lambda: pool.submit(Definition(task_fn=ok())))
        wait_until(lambda: len(pool._pool._slots._waiters) == 1, what="submitter queued")
        pool.stop()
        with pytest.raises(PoolStoppedError):
            blocked.join()
        gate.set()
        assert first.result(WAIT) is None
    stats = pool.stats()
    assert stats.total == 1
    assert stats.active_workers == 0
    assert pool.available_workers == 1


def test_shutdown_cancels_tasks_in_progress_by_default() -> None:
    gate, started = threading.Event(), threading.Event()
    pool = WorkerPool(2)
    task = pool.submit(Definition(task_fn=agated(gate, started)))
    assert started.wait(WAIT)
    pool.shutdown()
    assert task.is_canceled()
    assert pool.is_stopped()
    assert library_threads() == []


def test_shutdown_without_cancel_waits_for_the_tasks() -> None:
    pool = WorkerPool(2)

    def fn(run: Run) -> str:
        time.sleep(0.02)
        return "x"

    tasks = [pool.submit(Definition(task_fn=fn)) for _ in range(3)]
    pool.shutdown(cancel=False)
    assert [t.result(0) for t in tasks] == ["x"] * 3
    assert library_threads() == []


def test_shutdown_timeout_raises_and_a_second_call_finishes() -> None:
    gate = threading.Event()
    pool = WorkerPool(1)
    task = pool.submit(Definition(task_fn=gated(gate, value=1)))
    with pytest.raises(TimeoutError):
        pool.shutdown(cancel=False, timeout=0.05)
    assert task.is_in_progress()
    assert pool.is_stopped()
    gate.set()
    pool.shutdown(cancel=False, timeout=WAIT)
    assert task.result(0) == 1
    assert library_threads() == []
    pool.shutdown()  # again: nothing to do


def test_shutdown_with_grace_lets_tasks_end_then_cancels_the_rest() -> None:
    gate, started = threading.Event(), threading.Event()
    pool = WorkerPool(2)
    quick = pool.submit(Definition(task_fn=lambda run: "quick"))
    stuck = pool.submit(Definition(task_fn=agated(gate, started)))
    assert started.wait(WAIT)
    assert quick.result(WAIT) == "quick"
    begun = time.monotonic()
    pool.shutdown(grace=0.05)
    assert time.monotonic() - begun >= 0.05  # it waited the grace before cancelling
    assert stuck.is_canceled()
    assert quick.is_done()
    assert library_threads() == []


def test_shutdown_bad_grace_fails_even_before_the_pool_was_used() -> None:
    pool = WorkerPool(1)
    with pytest.raises(ValueError, match="grace needs cancel=True"):
        pool.shutdown(cancel=False, grace=1)
    assert not pool.is_stopped()
    pool.shutdown()


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_task_raising_system_exit_fails_alone_and_the_pool_goes_on(kind: str) -> None:
    """As in a ThreadPoolExecutor: the task fails with it and its waiter gets it; the other
    tasks and the pool go on (the pool's event loop must not die of it)."""

    def plain(run: Run) -> None:
        sys.exit(3)

    async def in_loop(run: Run) -> None:
        sys.exit(3)

    gate, started = threading.Event(), threading.Event()
    with WorkerPool(2) as pool:
        other = pool.submit(Definition(task_fn=gated(gate, started, value="other")))
        assert started.wait(WAIT)
        bad = pool.submit(Definition(task_fn=plain if kind == "plain" else in_loop))
        assert bad.wait(WAIT)
        assert bad.is_failed()
        with pytest.raises(SystemExit):
            bad.result()
        gate.set()
        assert other.result(WAIT) == "other"
        assert pool.submit(Definition(task_fn=lambda run: 5)).result(WAIT) == 5
    assert pool.stats().failed == 1
    assert library_threads() == []


def test_with_waits_for_every_task_on_exit() -> None:
    def fn(run: Run) -> str:
        time.sleep(0.01)
        return run.id

    with WorkerPool(2) as pool:
        tasks = [pool.submit(Definition(task_fn=fn)) for _ in range(4)]
        loop = pool._portal.loop  # type: ignore[union-attr]
    assert all(t.is_done() for t in tasks)
    assert pool.is_stopped()
    assert loop.is_closed()
    assert library_threads() == []


def test_with_cancels_and_reraises_on_exception() -> None:
    gate, started = threading.Event(), threading.Event()
    tasks: list[Task[Any]] = []

    def body() -> None:
        with WorkerPool(2) as pool:
            tasks.append(pool.submit(Definition(task_fn=agated(gate, started))))
            assert started.wait(WAIT)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        body()
    assert tasks[0].is_canceled()
    assert library_threads() == []


def test_with_exception_stops_cooperative_sync_functions_and_their_threads() -> None:
    started = threading.Barrier(3, timeout=WAIT)
    stopped: list[bool] = []
    tasks: list[Task[Any]] = []

    def cooperative(run: Run) -> None:
        started.wait()
        stopped.append(run.wait_canceled(WAIT))

    def body() -> None:
        with WorkerPool(2) as pool:
            tasks.extend(pool.submit(Definition(task_fn=cooperative)) for _ in range(2))
            started.wait()
            raise KeyError("body failed")

    with pytest.raises(KeyError):
        body()
    assert [t.state for t in tasks] == [State.CANCELED, State.CANCELED]
    wait_until(lambda: library_threads() == [], what="the pool's threads to end")
    assert stopped == [True, True]  # each was told to stop, and did


def test_tasks_and_stats_after_with_exits() -> None:
    with WorkerPool(2) as pool:
        for i in range(3):
            pool.submit(Definition(id=str(i), task_fn=ok()))
    stats = pool.stats()
    assert stats.total == 3
    assert stats.done == 3
    assert stats.stopped


def test_tasks_still_lists_every_task_after_shutdown() -> None:
    with WorkerPool(2) as pool:
        for i in range(3):
            pool.submit(Definition(id=str(i), task_fn=ok()))
    assert sorted(t.id for t in pool.tasks()) == ["0", "1", "2"]


@pytest.mark.parametrize("call", ["gather", "submit_with_err_group", "map"])
def test_calls_after_shutdown_raise_and_start_no_thread(call: str) -> None:
    pool = WorkerPool(2)
    pool.submit(Definition(task_fn=ok())).wait(WAIT)
    pool.shutdown()
    assert library_threads() == []
    try:
        calls: dict[str, Callable[[], Any]] = {
            "gather": lambda: pool.gather([Definition(task_fn=ok())]),
            "submit_with_err_group": lambda: pool.submit_with_err_group([Definition(task_fn=ok())]),
            "map": lambda: list(pool.map(str, [1, 2])),
        }
        with pytest.raises(PoolStoppedError):
            calls[call]()
        left = library_threads()
    finally:
        pool.shutdown()  # closes whatever was started, so the next tests start clean
    assert left == []
    assert pool.stats().total == 1


def test_map_on_a_stopped_pool_raises_pool_stopped_error() -> None:
    with WorkerPool(2) as pool:
        pool.submit(Definition(task_fn=ok())).wait(WAIT)
        pool.stop()
        with pytest.raises(PoolStoppedError):
            list(pool.map(str, [1, 2]))
        assert pool.stats().total == 1


def test_handles_and_a_begun_map_after_shutdown() -> None:
    async def fn(x: int) -> int:
        if x >= 2:
            await asyncio.sleep(WAIT)
        return x

    pool = WorkerPool(3)
    tasks = [pool.submit(Definition(id=str(i), task_fn=ok(i))) for i in range(3)]
    assert all(t.wait(WAIT) for t in tasks)
    results = pool.map(fn, range(10))
    assert [next(results), next(results)] == [0, 1]
    pool.shutdown()  # cancels the map's tasks still running
    assert library_threads() == []
    with pytest.raises(PoolStoppedError):
        next(results)
    results.close()  # nothing left to stop
    # the handles still answer, with no loop running
    assert [t.result(0) for t in tasks] == [0, 1, 2]
    assert all(t.wait() for t in tasks)
    assert sorted(t.id for t in pool.as_completed(tasks, timeout=WAIT)) == ["0", "1", "2"]
    seen: list[Task[Any]] = []
    tasks[0].add_done_callback(seen.append)
    assert len(seen) == 1
    assert tasks[1].cancel() is False
    pool.wait()
    stats = pool.stats()
    assert stats.done >= 5
    assert stats.done + stats.canceled == stats.total
    assert stats.active_workers == 0
    assert library_threads() == []


# -- stats, tasks, introspection --------------------------------------------------------------


def test_stats_and_worker_counts_follow_the_tasks() -> None:
    gates = [threading.Event() for _ in range(2)]
    starts = [threading.Event() for _ in range(2)]
    with WorkerPool(3) as pool:
        tasks = [
            pool.submit(Definition(task_fn=gated(g, s))) for g, s in zip(gates, starts, strict=True)
        ]
        tasks.append(pool.submit(Definition(task_fn=fail(ValueError()))))
        tasks[2].wait(WAIT)
        for s in starts:
            assert s.wait(WAIT)
        stats = pool.stats()
        assert isinstance(stats, PoolStats)
        assert stats == PoolStats(
            total=3, created=0, pending=0, started=2, done=0, failed=1, canceled=0,
            max_workers=3, active_workers=2, stopped=False,
        )  # fmt: skip
        assert pool.active_workers == 2
        assert pool.available_workers == 1
        tasks[0].cancel()
        gates[1].set()
        pool.wait(WAIT)
        stats = pool.stats()
        assert (stats.done, stats.failed, stats.canceled, stats.active_workers) == (1, 1, 1, 0)
        counts = recount(pool.tasks())
        assert (counts[State.DONE], counts[State.FAILED], counts[State.CANCELED]) == (1, 1, 1)


def test_tasks_returns_blocking_handles_of_every_task() -> None:
    with WorkerPool(2) as pool:
        submitted = [pool.submit(Definition(id=str(i), task_fn=ok(i))) for i in range(4)]
        pool.wait(WAIT)
        listed = pool.tasks()
        assert all(isinstance(t, Task) for t in listed)
        assert [t.id for t in listed] == [t.id for t in submitted]
        assert [t._task for t in listed] == [t._task for t in submitted]
        listed.clear()
        assert len(pool.tasks()) == 4  # a copy


def test_retain_finished_false_lists_only_tasks_in_progress() -> None:
    gate = threading.Event()
    with WorkerPool(2, retain_finished=False) as pool:
        running = pool.submit(Definition(id="running", task_fn=gated(gate)))
        pool.submit(Definition(id="done", task_fn=ok())).wait(WAIT)
        assert [t.id for t in pool.tasks()] == ["running"]
        gate.set()
        running.wait(WAIT)
        assert pool.tasks() == []
        assert pool.stats().done == 2


def test_repr_of_a_blocking_pool() -> None:
    pool = WorkerPool(2)
    text = repr(pool)
    assert text.startswith("<blocking.WorkerPool ")
    assert text.count("<") == text.count(">") == 1
    assert "max_workers=2" in text


# -- hooks, executors, rate limits ------------------------------------------------------------


def test_pool_hooks_fire_in_order_on_the_loop_thread() -> None:
    log: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def record(event: str) -> Callable[..., None]:
        def hook(task_id: str, *args: Any) -> None:
            with lock:
                log.append((event, task_id, threading.current_thread().name))

        return hook

    hooks = StateHooks(
        on_created=record("created"),
        on_pending=record("pending"),
        on_started=record("started"),
        on_done=record("done"),
        on_failed=record("failed"),
        on_canceled=record("canceled"),
    )
    with WorkerPool(1, hooks=hooks) as pool:
        pool.submit(Definition(id="ok", task_fn=ok())).wait(WAIT)
        pool.submit(Definition(id="bad", task_fn=fail(OSError()))).wait(WAIT)
    events = [(e, i) for e, i, _ in log]
    assert events == [
        ("created", "ok"), ("pending", "ok"), ("started", "ok"), ("done", "ok"),
        ("created", "bad"), ("pending", "bad"), ("started", "bad"), ("failed", "bad"),
    ]  # fmt: skip
    assert {name for _, _, name in log} == {"asynctasklib-portal"}


def test_a_given_executor_runs_sync_functions_and_is_left_running() -> None:
    executor = ThreadPoolExecutor(2, thread_name_prefix="given")
    try:
        with WorkerPool(2, executor=executor) as pool:
            task = pool.submit(Definition(task_fn=lambda run: threading.current_thread().name))
            assert task.result(WAIT).startswith("given")
        assert executor.submit(lambda: 5).result(WAIT) == 5  # not shut down by the pool
    finally:
        executor.shutdown()


def test_a_process_pool_executor_runs_functions_in_other_processes() -> None:
    import multiprocessing

    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    try:
        with WorkerPool(1, executor=executor) as pool:
            task = pool.submit(Definition(id="p", task_fn=run_info_fn(pid_of)))
            pid, task_id, attempt = task.result(WAIT)
            assert pid != os.getpid()
            assert (task_id, attempt) == ("p", 0)
            with pytest.raises(TypeError, match="pickled"):
                pool.submit(Definition(task_fn=lambda info: None))
            assert pool.stats().total == 1
            good = Definition(id="good", task_fn=run_info_fn(pid_of))
            with pytest.raises(TypeError, match="pickled"):  # checked whole, before any runs
                pool.submit_batch([good, Definition(task_fn=lambda info: None)])
            assert pool.stats().total == 1
    finally:
        executor.shutdown()


def test_shutdown_from_many_threads_at_once_is_done_once() -> None:
    errors: list[BaseException] = []
    for _ in range(20):
        pool = WorkerPool(2)
        pool.submit(Definition(task_fn=ok()))
        barrier = threading.Barrier(4, timeout=WAIT)

        def shut(pool: WorkerPool = pool, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                pool.shutdown()
            except BaseException as exc:  # (a CancelledError was seen here)
                errors.append(exc)

        threads = [threading.Thread(target=shut) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert errors == []
        assert pool.is_stopped()
    assert library_threads() == []


def test_max_per_second_spaces_the_starts() -> None:
    starts: list[float] = []
    rate, n = 40.0, 5

    async def fn(run: Run) -> None:
        starts.append(time.monotonic())

    t0 = time.monotonic()
    with WorkerPool(n, max_per_second=rate) as pool:
        for _ in range(n):
            pool.submit(Definition(task_fn=fn))
    assert len(starts) == n
    assert starts[-1] - t0 >= (n - 1) / rate - 0.002


# -- calling from a running event loop --------------------------------------------------------


def test_blocking_calls_inside_a_running_loop_raise_runtime_error() -> None:
    gate = threading.Event()
    sem = Semaphore(1)
    sem.acquire()
    pool = WorkerPool(1)
    task = pool.submit(Definition(task_fn=gated(gate)))
    calls: dict[str, Callable[[], Any]] = {
        "submit": lambda: pool.submit(Definition(task_fn=ok())),
        "submit_batch": lambda: pool.submit_batch([Definition(task_fn=ok())]),
        "submit_with_err_group": lambda: pool.submit_with_err_group([Definition(task_fn=ok())]),
        "gather": lambda: pool.gather([Definition(task_fn=ok())]),
        "wait": lambda: pool.wait(),
        "shutdown": lambda: pool.shutdown(),
        "task.wait": lambda: task.wait(),
        "task.result": lambda: task.result(),
        "map": lambda: next(pool.map(str, [1])),
        "as_completed": lambda: next(pool.as_completed([task])),
        "sem.acquire": lambda: sem.acquire(),
        "sem.try_acquire_with_timeout": lambda: sem.try_acquire_with_timeout(1),
        "with sem": lambda: sem.__enter__(),
    }
    outcomes: dict[str, str] = {}

    async def main() -> None:
        for name, call in calls.items():
            try:
                call()
            except RuntimeError as exc:
                outcomes[name] = str(exc)
            else:
                outcomes[name] = "no error"

    asyncio.run(asyncio.wait_for(main(), WAIT))
    try:
        for name, message in outcomes.items():
            assert "running event loop" in message, (name, message)
        # the message names what was called and points to the async API
        for name, said in {
            "submit": "submit()",
            "wait": "wait()",
            "shutdown": "shutdown()",
            "task.wait": "wait()",
            "map": "map()",
            "sem.acquire": "acquire()",
            "gather": "gather()",
        }.items():
            assert said in outcomes[name], (name, outcomes[name])
            assert "async API" in outcomes[name]
        assert task.is_in_progress()  # nothing was disturbed
        assert pool.stats().total == 1
        assert not pool.is_stopped()

        # calls that do not block still work inside a loop
        async def non_blocking() -> None:
            assert pool.stats().total == 1
            assert pool.active_workers == 1
            assert len(pool.tasks()) == 1
            assert sem.try_acquire() is False
            sem.release()
            sem.acquire()  # a slot is free: it does not block

        asyncio.run(asyncio.wait_for(non_blocking(), WAIT))
    finally:
        gate.set()
        pool.shutdown()


def test_first_blocking_call_inside_a_loop_starts_no_portal() -> None:
    pool = WorkerPool(1)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="running event loop"):
            pool.submit(Definition(task_fn=ok()))
        with pytest.raises(RuntimeError, match="running event loop"):
            pool.gather([Definition(task_fn=ok())])

    asyncio.run(main())
    assert library_threads() == []
    assert pool.stats().total == 0
    pool.shutdown()


def test_blocking_calls_from_the_portal_thread_raise_instead_of_deadlocking() -> None:
    gate = threading.Event()
    errors: list[BaseException] = []
    done = threading.Event()
    with WorkerPool(2) as pool:
        other = pool.submit(Definition(id="other", task_fn=gated(gate)))

        def callback(task: Task[Any]) -> None:  # runs on the portal's loop thread
            for call in (
                lambda: other.wait(),
                lambda: pool.submit(Definition(task_fn=ok())),
                lambda: pool.wait(),
            ):
                try:
                    call()
                except RuntimeError as exc:
                    errors.append(exc)
            done.set()

        pool.submit(Definition(task_fn=ok())).add_done_callback(callback)
        assert done.wait(WAIT)
        gate.set()
    assert len(errors) == 3
    assert all("running event loop" in str(e) for e in errors)


# -- interruption (KeyboardInterrupt) ---------------------------------------------------------


def test_interrupting_gather_cancels_its_tasks() -> None:
    started = [threading.Event() for _ in range(2)]
    gate = threading.Event()
    with WorkerPool(2) as pool:
        defs = [Definition(id=str(i), task_fn=agated(gate, s)) for i, s in enumerate(started)]
        with (
            interrupt_main_when(lambda: all(s.is_set() for s in started)),
            pytest.raises(KeyboardInterrupt),
        ):
            pool.gather(defs)
        pool.wait(WAIT)
        assert [t.state for t in pool.tasks()] == [State.CANCELED, State.CANCELED]
        assert pool.available_workers == 2


def test_interrupting_map_iteration_stops_the_run() -> None:
    started = threading.Event()
    gate = threading.Event()
    read = 0

    def items() -> Iterator[int]:
        nonlocal read
        while True:
            read += 1
            yield read

    async def fn(x: int) -> int:
        started.set()
        while not gate.is_set():
            await asyncio.sleep(0.002)
        return x

    with WorkerPool(2) as pool:
        results = pool.map(fn, items(), window=3)
        with interrupt_main_when(started.is_set), pytest.raises(KeyboardInterrupt):
            next(results)
        pool.wait(WAIT)  # the run's tasks were canceled: none is left running
        assert pool.active_workers == 0
        seen = read
        assert seen <= 3
        gate.set()
        assert pool.submit(Definition(task_fn=ok(1))).result(WAIT) == 1
        assert read == seen


def test_interrupting_a_blocked_submit_loses_no_slot() -> None:
    gate = threading.Event()
    with WorkerPool(1) as pool:
        first = pool.submit(Definition(task_fn=gated(gate)))
        with (
            interrupt_main_when(lambda: len(pool._pool._slots._waiters) == 1),
            pytest.raises(KeyboardInterrupt),
        ):
            pool.submit(Definition(task_fn=ok()))
        gate.set()
        first.wait(WAIT)
        with contextlib.suppress(TimeoutError):
            pool.wait(1.0)
        available = pool.available_workers
        if available == 0:  # the slot went to the interrupted submit: free it to clean up
            pool._pool._slots.release()
        assert available == 1
        assert pool.stats().total == 1  # the interrupted submit made no task
        assert pool.submit(Definition(task_fn=ok("again"))).result(WAIT) == "again"


# -- timeouts without limit -------------------------------------------------------------------


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=repr)
def test_as_completed_with_a_huge_timeout_waits_without_limit(timeout: Any) -> None:
    with WorkerPool(2) as pool:
        gate, task, waiter = gated_task_with_a_waiter(
            pool, lambda t: list(pool.as_completed([t], timeout=timeout))
        )
        gate.set()
        assert waiter.join() == [task]


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=repr)
def test_pool_wait_and_shutdown_with_a_huge_timeout(timeout: Any) -> None:
    gate = threading.Event()
    pool = WorkerPool(2)
    try:
        task = pool.submit(Definition(task_fn=gated(gate)))
        waiter = InThread(lambda: pool.wait(timeout))
        slots = pool._pool._slots
        wait_until(lambda: bool(slots._idle) or waiter.finished.is_set(), what="the waiter")
        gate.set()
        waiter.join()
        assert task.is_done()
    finally:
        pool.shutdown(timeout=timeout, grace=timeout)
    assert pool.is_stopped()


# -- blocking calls racing shutdown() ---------------------------------------------------------


def test_calls_blocked_in_threads_when_shutdown_cancels_get_the_documented_ends() -> None:
    """The blocking calls that wait in their own thread, not on the loop: each blocked when
    shutdown() begins, each ends as documented."""
    started = threading.Event()
    pool = WorkerPool(1)
    try:
        task = pool.submit(Definition(task_fn=gated(threading.Event(), started)))
        assert started.wait(WAIT)
        result = InThread(task.result)
        ended = InThread(lambda: list(pool.as_completed([task], timeout=WAIT)))
        submit = InThread(lambda: pool.submit(Definition(task_fn=ok())))
        wait_until(
            lambda: len(task._task._callbacks or ()) == 2 and len(pool._pool._slots._waiters) == 1,
            what="every call to block",
        )
    finally:
        pool.shutdown()
    with pytest.raises(TaskCanceledError):
        result.join()
    assert ended.join() == [task]
    with pytest.raises(PoolStoppedError):
        submit.join()
    assert task.is_canceled()


def test_hammer_blocking_calls_racing_shutdown_raise_only_documented_errors() -> None:
    """Threads call every blocking method before, during and after another thread shuts the
    pool down: each call returns its right answer or raises PoolStoppedError (or, for a
    task that shutdown canceled, TaskCanceledError); none hangs."""
    n_threads = 30

    async def twice(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def twice_fn(run: Run) -> int:
        return await twice(run.attempt + 1)

    def one_call(pool: WorkerPool, op: int, j: int) -> None:
        if op == 0:
            assert list(pool.map(twice, range(4))) == [0, 2, 4, 6]
        elif op == 1:
            assert pool.gather([Definition(task_fn=ok(j)), Definition(task_fn=twice_fn)]) == [j, 2]
        elif op == 2:
            pool.wait(WAIT)
        elif op == 3:
            assert pool.submit_with_err_group([Definition(task_fn=twice_fn)]) is None  # type: ignore[func-returns-value]
        elif op == 4:
            assert pool.submit(Definition(task_fn=ok(j))).result(WAIT) == j
        elif op == 5:
            with pool.map(lambda x: x, range(100), window=2) as it:
                assert next(it) == 0
        else:
            tasks = [pool.submit(Definition(task_fn=ok(i))) for i in range(2)]
            ended = pool.as_completed(tasks, timeout=WAIT)
            assert sorted(t.result() for t in ended) == [0, 1]

    def body(pool: WorkerPool, k: int, progress: threading.Semaphore, over: threading.Event) -> int:
        refused = 0
        for j in range(100_000):  # (bounded, in case `over` is never set)
            if over.is_set():
                return refused
            try:
                one_call(pool, (k + j) % 7, j)
            except (PoolStoppedError, TaskCanceledError):
                assert pool.is_stopped()  # (only a shutdown makes these here)
                refused += 1
            progress.release()
        raise AssertionError("the test never ended")

    for _ in range(3):
        pool = WorkerPool(4)
        progress = threading.Semaphore(0)
        over = threading.Event()
        callers = [
            InThread(functools.partial(body, pool, k, progress, over), name=f"caller-{k}")
            for k in range(n_threads)
        ]
        try:
            for _ in range(2 * n_threads):  # the calls are under way
                assert progress.acquire(timeout=WAIT)
        finally:
            pool.shutdown(timeout=WAIT)
            for _ in range(2 * n_threads):  # calls go on after it, too
                assert progress.acquire(timeout=WAIT)
            over.set()
        refused = [caller.join() for caller in callers]  # no error but the documented ones
        assert sum(refused) > 0
        assert library_threads() == []
        assert pool.active_workers == 0


# -- a pool dropped without shutdown() --------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def drop(objects: list[Any]) -> None:
    """Drop the last references to ``objects``, and collect what is left of them."""
    objects.clear()
    gc.collect()


def join_library_threads() -> None:
    for thread in library_threads():
        thread.join(WAIT)
    assert library_threads() == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_dropped_pools_warn_and_free_their_threads_loops_and_files() -> None:
    join_library_threads()
    threads_before = threading.active_count()
    fds_before = open_fds()

    async def aone(run: Run) -> int:
        return 1

    pools = [WorkerPool(2) for _ in range(20)]
    for pool in pools:
        assert pool.submit(Definition(task_fn=ok(1))).result(WAIT) == 1  # a thread of its own
        assert pool.submit(Definition(task_fn=aone)).result(WAIT) == 1  # on the loop
    assert len(library_threads()) >= 40
    assert open_fds() >= fds_before + 60
    refs = [weakref.ref(pool) for pool in pools]
    del pool
    with pytest.warns(ResourceWarning, match=r"^unclosed blocking\.WorkerPool ") as warned:
        drop(pools)
    assert len(warned) == 20
    assert all(ref() is None for ref in refs)
    join_library_threads()
    wait_until(lambda: open_fds() <= fds_before, what="the loops' files to close")
    assert threading.active_count() <= threads_before


def test_a_dropped_pool_runs_its_tasks_in_progress_to_their_end_then_frees_its_thread() -> None:
    join_library_threads()
    gate = threading.Event()
    started = threading.Event()
    pool = WorkerPool(2)
    plain = pool.submit(Definition(task_fn=gated(gate, started, "plain")))
    in_loop = pool.submit(Definition(task_fn=agated(gate, value="async")))
    assert started.wait(WAIT)
    pools = [pool]
    del pool
    with pytest.warns(ResourceWarning, match="unclosed blocking.WorkerPool"):
        drop(pools)
    # still running, not canceled; the loop is still there for them
    assert plain.is_started()
    assert not in_loop.is_end()
    assert any(t.name == "asynctasklib-portal" for t in library_threads())
    gate.set()
    assert plain.result(WAIT) == "plain"
    assert in_loop.result(WAIT) == "async"
    join_library_threads()
    assert plain.is_done()  # the handles still answer
    assert in_loop.wait(0)


def test_a_dropped_pool_whose_loop_stops_first_cancels_its_tasks_in_progress() -> None:
    """As at the interpreter's exit, after the pool was dropped with a task in progress."""
    join_library_threads()
    gate = threading.Event()
    started = threading.Event()
    pool = WorkerPool(2)
    task = pool.submit(Definition(task_fn=agated(gate, started), max_duration=None))
    assert started.wait(WAIT)  # (taken in by the loop: nothing there refers to the pool now)
    portal = pool._portal
    assert portal is not None
    pools = [pool]
    del pool
    with pytest.warns(ResourceWarning, match="unclosed blocking.WorkerPool"):
        drop(pools)
    assert not task.is_end()  # waited for, not canceled
    portal.close()  # what _close_portals does at exit
    assert task.wait(WAIT)
    assert task.is_canceled()
    join_library_threads()


def test_a_pool_dropped_after_its_loop_stopped_at_exit_is_dropped_silently() -> None:
    pool = WorkerPool(2)
    pool.submit(Definition(task_fn=ok())).wait(WAIT)
    portal = pool._portal
    assert portal is not None
    portal.close()  # what _close_portals does at exit: nothing left to free, or warn of
    pools = [pool]
    del pool
    drop(pools)  # (a warning would fail the test: the suite's warnings are errors)
    join_library_threads()  # (the executor's threads end once it is collected)


def test_pools_shut_down_or_never_used_are_dropped_silently() -> None:
    with WorkerPool(2) as used:
        used.submit(Definition(task_fn=ok())).wait(WAIT)
    stopped = WorkerPool(2)
    stopped.submit(Definition(task_fn=ok())).wait(WAIT)
    stopped.shutdown()
    never = WorkerPool(2)
    refs = [weakref.ref(p) for p in (used, stopped, never)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (and the suite's filter makes any warning an error)
        del used, stopped, never
        gc.collect()
    assert all(ref() is None for ref in refs)
    assert library_threads() == []


def test_a_pool_dropped_in_its_loop_thread_is_freed_too() -> None:
    """The finalizer may run in the portal's own thread (its garbage collected there)."""
    join_library_threads()
    pool = WorkerPool(2)
    pool.submit(Definition(task_fn=ok())).wait(WAIT)
    portal = pool._portal
    assert portal is not None
    pools = [pool]
    del pool
    ran = threading.Event()
    warned: list[warnings.WarningMessage] = []

    def collect_there() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            drop(pools)  # the last reference goes on the loop's thread
        warned.extend(caught)
        ran.set()

    portal.loop.call_soon_threadsafe(collect_there)
    assert ran.wait(WAIT)
    assert [w.category for w in warned] == [ResourceWarning]
    join_library_threads()
    assert portal.loop.is_closed()


# -- nothing left behind at interpreter exit --------------------------------------------------


def run_child(code: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return proc, time.monotonic() - t0


def test_interpreter_exit_without_shutdown_leaves_nothing_behind() -> None:
    proc, elapsed = run_child(
        """
        import asyncio, threading
        from asynctasklib import Definition, blocking

        pool = blocking.WorkerPool(4)
        done = [pool.submit(Definition(task_fn=lambda run: run.attempt)) for _ in range(20)]
        assert [t.result(10) for t in done] == [0] * 20
        started = threading.Event()

        async def forever(run):
            started.set()
            await asyncio.sleep(3600)

        pool.submit(Definition(task_fn=forever, max_duration=None))
        assert started.wait(10)
        leftover = blocking.WorkerPool(2)  # another one, used once
        leftover.submit(Definition(task_fn=lambda run: None)).wait(10)
        print("bye", flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "bye\n"
    assert proc.stderr == ""
    assert elapsed < 10


def test_interpreter_exit_tells_running_sync_functions_to_stop() -> None:
    proc, _ = run_child(
        """
        import os, threading
        from asynctasklib import Definition, blocking

        pool = blocking.WorkerPool(2)
        started = threading.Barrier(3, timeout=10)

        def cooperative(run):
            started.wait()
            # A function that stops as soon as it is told to; untold, it gives up after 30 s
            # and prints nothing.
            if run.wait_canceled(30):
                os.write(1, b"told\\n")  # (one write: the two threads' lines do not mix)

        for _ in range(2):
            pool.submit(Definition(task_fn=cooperative, max_duration=None))
        started.wait()
        print("bye", flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "bye\ntold\ntold\n"


def test_a_hook_raising_a_base_exception_at_submit_fails_its_task_and_the_pool_goes_on() -> None:
    class Fatal(BaseException):
        pass

    def on_created(*args: Any) -> None:
        raise Fatal

    with WorkerPool(2) as pool:
        bad = pool.submit(Definition(task_fn=ok(), hooks=StateHooks(on_created=on_created)))
        assert bad.wait(WAIT)
        assert bad.is_failed()
        with pytest.raises(Fatal):
            bad.result()
        assert pool.submit(Definition(task_fn=ok("fine"))).result(WAIT) == "fine"


def test_a_terminal_hook_raising_system_exit_still_wakes_the_waiters() -> None:
    def on_done(*args: Any) -> None:
        sys.exit(4)

    with WorkerPool(2) as pool:
        task = pool.submit(Definition(task_fn=ok("x"), hooks=StateHooks(on_done=on_done)))
        assert task.wait(WAIT)
        assert task.result() == "x"  # it had ended: the hook's exit changes nothing of it
        results = pool.map(lambda x: x, [1, 2, 3], hooks=StateHooks(on_done=on_done))
        assert list(results) == [1, 2, 3]
        assert pool.submit(Definition(task_fn=ok("after"))).result(WAIT) == "after"
