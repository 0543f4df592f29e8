"""`WorkerPool`: construction, backpressure, limits, stop/shutdown/wait, error groups, stats,
tasks(), hooks, sync functions in threads, leaks, loops, and cancellation from every side.

Async tests run on the virtual-clock loop (tests/conftest.py): sleeps are instant and
``loop.time()`` differences exact. Ordering is proved with events and recorded logs; a
virtual-time ``asyncio.timeout`` guards every wait that a bug could turn into a hang, so a
bug fails the test instead of hanging it. Tests with threads are ``realtime`` and use a
barrier with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import gc
import logging
import threading
import warnings
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from _helpers import (
    GUARD,
    REAL_GUARD,
    Probe,
    assert_stats_match,
    counters,
    forever,
    library_threads,
    now,
    only_current_task_left,
    recount,
    wait_all_tasks_blocked,
    yield_turns,
)
from asynctasklib import (
    Definition,
    InvalidStateError,
    PoolStats,
    PoolStoppedError,
    Run,
    State,
    StateHooks,
    Task,
    TaskCanceledError,
    TaskFnNotSetError,
    TaskTimeoutError,
    WorkerPool,
)
from asynctasklib.workflow import PoolStats as WorkflowPoolStats
from asynctasklib.workflow import PoolStoppedError as WorkflowPoolStoppedError
from asynctasklib.workflow import WorkerPool as WorkflowWorkerPool
from conftest import LibraryLog, run_async

# -- construction -----------------------------------------------------------------------------


def test_same_classes_from_both_namespaces() -> None:
    assert WorkflowWorkerPool is WorkerPool
    assert WorkflowPoolStats is PoolStats
    assert WorkflowPoolStoppedError is PoolStoppedError


@pytest.mark.parametrize("n", [0, -1, -10])
def test_max_workers_below_one_is_value_error(n: int) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        WorkerPool(n)


@pytest.mark.parametrize("n", [1.0, 2.5, "3", None, True])
def test_max_workers_not_an_int_is_type_error(n: object) -> None:
    with pytest.raises(TypeError, match="max_workers"):
        WorkerPool(n)  # type: ignore[arg-type]


@pytest.mark.parametrize("hooks", [{"on_done": print}, print, "hooks", 1])
def test_hooks_not_state_hooks_is_type_error(hooks: object) -> None:
    with pytest.raises(TypeError, match="hooks"):
        WorkerPool(2, hooks=hooks)  # type: ignore[arg-type]


def test_constructible_without_event_loop() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    pool = WorkerPool(3, hooks=StateHooks(), retain_finished=False)
    assert pool.max_workers == 3
    assert pool.active_workers == 0
    assert pool.available_workers == 3
    assert pool.is_stopped() is False
    assert pool.stats() == PoolStats(
        total=0,
        created=0,
        pending=0,
        started=0,
        done=0,
        failed=0,
        canceled=0,
        max_workers=3,
        active_workers=0,
        stopped=False,
    )
    assert pool.tasks() == []

    async def use() -> Any:
        async with pool:
            task = await pool.submit(Definition(id="t", task_fn=Probe().fn(result=42)))
        return await task

    assert run_async(use()) == 42
    assert pool.stats().done == 1


def test_pool_stats_is_a_frozen_dataclass_with_the_contract_fields() -> None:
    assert dataclasses.is_dataclass(PoolStats)
    assert [f.name for f in dataclasses.fields(PoolStats)] == [
        "total",
        "created",
        "pending",
        "started",
        "done",
        "failed",
        "canceled",
        "max_workers",
        "active_workers",
        "stopped",
    ]
    stats = WorkerPool(2).stats()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.done = 5  # type: ignore[misc]
    assert stats == dataclasses.replace(stats)


async def test_shutdown_of_a_pool_never_used() -> None:
    pool = WorkerPool(2)
    await pool.shutdown()
    assert pool.is_stopped()
    assert pool.stats().stopped is True
    with pytest.raises(PoolStoppedError):
        await pool.submit(Definition(task_fn=Probe().fn()))
    assert pool.stats().total == 0


# -- submit and backpressure -------------------------------------------------------------------


async def test_submit_returns_a_pending_task_that_runs() -> None:
    pool = WorkerPool(2)
    probe = Probe()
    task = await pool.submit(Definition(id="job", task_fn=probe.fn(result="r")))
    assert isinstance(task, Task)
    assert task.id == "job"
    assert task.state is State.PENDING
    assert task.is_in_progress()
    assert pool.active_workers == 1
    assert await task == "r"
    assert task.is_done()
    assert task.attempts == 1
    assert probe.calls == ["job"]
    await pool.wait()
    assert pool.active_workers == 0
    await pool.shutdown()


@pytest.mark.parametrize("bad", [None, "def", {"task_fn": None}, lambda run: None])
async def test_submit_non_definition_is_type_error_and_counts_nothing(bad: object) -> None:
    pool = WorkerPool(2)
    with pytest.raises(TypeError, match="Definition"):
        await pool.submit(bad)  # type: ignore[call-overload]
    assert counters(pool) == (0, 0, 0, 0, 0, 0, 0)
    assert pool.available_workers == 2
    await pool.shutdown()


async def test_submit_waits_while_all_workers_are_busy() -> None:
    pool = WorkerPool(2)
    log: list[str] = []
    gates = {name: asyncio.Event() for name in ("a", "b", "c")}

    def gated(name: str) -> Definition[None]:
        async def task_fn(run: Run) -> None:
            log.append(f"{name} started")
            await gates[name].wait()
            log.append(f"{name} ends")

        return Definition(id=name, task_fn=task_fn)

    a = await pool.submit(gated("a"))
    b = await pool.submit(gated("b"))
    assert (pool.active_workers, pool.available_workers) == (2, 0)

    async def third() -> Task[Any]:
        task = await pool.submit(gated("c"))
        log.append("c submitted")
        return task

    submitter = asyncio.create_task(third())
    await wait_all_tasks_blocked()
    assert log == ["a started", "b started"]
    assert not submitter.done()
    assert pool.stats().total == 2
    assert (pool.active_workers, pool.available_workers) == (2, 0)

    gates["b"].set()  # one task ends: its slot goes to the waiting submit
    async with asyncio.timeout(GUARD):
        c = await submitter
    assert log[:4] == ["a started", "b started", "b ends", "c submitted"]
    assert b.is_done()
    assert a.is_started()
    assert c.is_in_progress()
    assert (pool.active_workers, pool.available_workers) == (2, 0)
    assert now() == 0  # nothing waited on time: only on the events
    gates["a"].set()
    gates["c"].set()
    await pool.wait()
    assert [t.state for t in (a, b, c)] == [State.DONE] * 3
    assert (pool.active_workers, pool.available_workers) == (0, 2)
    await pool.shutdown()


async def test_blocked_submitters_are_served_in_fifo_order() -> None:
    pool = WorkerPool(1)
    gate = asyncio.Event()
    await pool.submit(Definition(id="first", task_fn=Probe().fn(gate=gate)))
    order: list[int] = []

    async def submitter(i: int) -> None:
        await pool.submit(Definition(id=str(i), task_fn=Probe().fn()))
        order.append(i)

    submitters = []
    for i in range(6):
        submitters.append(asyncio.create_task(submitter(i)))
        await wait_all_tasks_blocked()  # queued in this order
    await wait_all_tasks_blocked()
    assert order == []
    gate.set()
    async with asyncio.timeout(GUARD):
        await asyncio.gather(*submitters)
    assert order == list(range(6))
    assert [t.id for t in pool.tasks()] == ["first", "0", "1", "2", "3", "4", "5"]
    await pool.shutdown(cancel=False)
    assert [t.state for t in pool.tasks()] == [State.DONE] * 7


async def test_worker_counts_follow_the_tasks() -> None:
    pool = WorkerPool(3)
    gates = [asyncio.Event() for _ in range(3)]
    assert (pool.max_workers, pool.active_workers, pool.available_workers) == (3, 0, 3)
    tasks = []
    for i, gate in enumerate(gates):
        tasks.append(await pool.submit(Definition(id=str(i), task_fn=Probe().fn(gate=gate))))
        assert (pool.active_workers, pool.available_workers) == (i + 1, 2 - i)
    await wait_all_tasks_blocked()
    assert pool.stats().started == 3
    for i, gate in enumerate(gates):
        gate.set()
        await tasks[i].wait()
        assert (pool.active_workers, pool.available_workers) == (2 - i, i + 1)
        assert pool.stats().active_workers == 2 - i
    assert pool.max_workers == 3
    await pool.shutdown()


@pytest.mark.parametrize(("max_workers", "n"), [(1, 10), (3, 40), (8, 60)])
async def test_never_more_than_max_workers_run_at_once(max_workers: int, n: int) -> None:
    pool = WorkerPool(max_workers)
    probe = Probe()
    flaky_left: dict[str, int] = {}

    def definition(i: int) -> Definition[Any]:
        if i % 5 == 0:  # fails twice, then succeeds: retries hold the slot too
            flaky_left[str(i)] = 2

            async def flaky(run: Run) -> None:
                await probe.fn(seconds=0.5)(run)
                if flaky_left[run.id]:
                    flaky_left[run.id] -= 1
                    raise ValueError(run.id)

            return Definition(id=str(i), task_fn=flaky, max_retries=2, backoff=0.25)
        return Definition(id=str(i), task_fn=probe.fn(seconds=1 + i % 3), delay=(i % 4) * 0.5)

    async def watch() -> None:
        while True:
            assert probe.running <= max_workers
            assert pool.active_workers <= max_workers
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    tasks = [await pool.submit(definition(i)) for i in range(n)]
    await pool.wait()
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):  # not an AssertionError of the watcher
        await watcher
    assert probe.peak == max_workers
    assert all(t.is_done() for t in tasks)
    assert sum(t.attempts for t in tasks) == n + 2 * len(flaky_left)
    assert_stats_match(pool)
    await pool.shutdown()


# -- cancelling a caller blocked in submit ------------------------------------------------------


async def test_canceled_submitter_leaves_nothing_behind() -> None:
    pool = WorkerPool(2)
    gate = asyncio.Event()
    probe = Probe()
    for i in (0, 1):
        await pool.submit(Definition(id=f"b{i}", task_fn=probe.fn(gate=gate)))
    submitter = asyncio.create_task(pool.submit(Definition(id="never", task_fn=probe.fn())))
    await wait_all_tasks_blocked()
    submitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await submitter
    assert pool.stats().total == 2
    assert [t.id for t in pool.tasks()] == ["b0", "b1"]
    gate.set()
    await pool.wait()
    assert "never" not in probe.calls
    assert (pool.active_workers, pool.available_workers) == (0, 2)
    assert counters(pool) == (2, 0, 0, 0, 2, 0, 0)

    # No slot was lost: max_workers submits proceed at once (no waiting at all).
    hold = asyncio.Event()
    start = now()
    async with asyncio.timeout(GUARD):
        again = [
            await pool.submit(Definition(id=f"x{i}", task_fn=probe.fn(gate=hold))) for i in (0, 1)
        ]
    assert now() == start
    assert all(t.is_in_progress() for t in again)
    assert pool.available_workers == 0
    hold.set()
    await pool.shutdown(cancel=False)
    assert counters(pool) == (4, 0, 0, 0, 4, 0, 0)


async def test_submitter_canceled_just_after_being_handed_a_slot_loses_nothing() -> None:
    """The slot of an ending task reaches a blocked submit, which is canceled before it
    resumes (here: from the ending task's on_done hook). Nothing is created, no slot is lost,
    and the next submitter in line gets the slot."""
    submitters: dict[str, asyncio.Task[Any]] = {}

    def on_done(task_id: str, when: object) -> None:
        if task_id == "first":
            submitters["canceled"].cancel()

    pool = WorkerPool(1, hooks=StateHooks(on_done=on_done))
    gate = asyncio.Event()
    probe = Probe()
    await pool.submit(Definition(id="first", task_fn=probe.fn(gate=gate)))
    submitters["canceled"] = asyncio.create_task(
        pool.submit(Definition(id="canceled", task_fn=probe.fn()))
    )
    await wait_all_tasks_blocked()
    submitters["next"] = asyncio.create_task(pool.submit(Definition(id="next", task_fn=probe.fn())))
    await wait_all_tasks_blocked()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await submitters["canceled"]
    async with asyncio.timeout(GUARD):
        nxt = await submitters["next"]
    await nxt.wait()
    await pool.wait()
    assert probe.calls == ["first", "next"]
    assert [t.id for t in pool.tasks()] == ["first", "next"]
    assert (pool.active_workers, pool.available_workers) == (0, 1)
    await pool.shutdown()


# -- stop -------------------------------------------------------------------------------------


async def test_stop_refuses_new_tasks_and_lets_submitted_ones_run() -> None:
    pool = WorkerPool(2)
    gate = asyncio.Event()
    probe = Probe()
    a = await pool.submit(Definition(id="a", task_fn=probe.fn(gate=gate, result=1)))
    b = await pool.submit(Definition(id="b", task_fn=probe.fn(seconds=3, result=2), delay=1))
    pool.stop()
    assert pool.is_stopped()
    assert pool.stats().stopped is True
    pool.stop()  # idempotent
    with pytest.raises(PoolStoppedError):
        await pool.submit(Definition(id="c", task_fn=probe.fn()))
    with pytest.raises(PoolStoppedError):
        await pool.submit_batch([Definition(id="d", task_fn=probe.fn())])
    assert pool.stats().total == 2
    gate.set()
    assert await a == 1
    assert await b == 2
    assert now() == 4.0  # b's delay and work, uncancelled
    await pool.wait()
    assert probe.calls == ["a", "b"]
    assert counters(pool) == (2, 0, 0, 0, 2, 0, 0)
    await pool.shutdown()


async def test_stop_fails_callers_blocked_in_submit() -> None:
    pool = WorkerPool(1)
    gate = asyncio.Event()
    probe = Probe()
    running = await pool.submit(Definition(id="run", task_fn=probe.fn(gate=gate)))
    blocked = [
        asyncio.create_task(pool.submit(Definition(id=f"w{i}", task_fn=probe.fn())))
        for i in range(3)
    ]
    await wait_all_tasks_blocked()
    assert not any(t.done() for t in blocked)
    pool.stop()
    for submitter in blocked:
        with pytest.raises(PoolStoppedError):
            async with asyncio.timeout(GUARD):
                await submitter
    assert running.is_started()  # stop() cancels nothing
    gate.set()
    await running.wait()
    assert running.is_done()
    await pool.wait()
    assert probe.calls == ["run"]
    assert counters(pool) == (1, 0, 0, 0, 1, 0, 0)
    assert pool.available_workers == 1
    await pool.shutdown()


async def test_err_group_on_stopped_pool_with_free_workers() -> None:
    pool = WorkerPool(2)
    probe = Probe()
    pool.stop()
    with pytest.raises(PoolStoppedError):
        await pool.submit_with_err_group([Definition(id="x", task_fn=probe.fn())])
    assert probe.calls == []
    assert pool.stats().total == 0
    assert pool.available_workers == 2
    await pool.shutdown()


async def test_err_group_on_stopped_busy_pool_raises_at_once() -> None:
    pool = WorkerPool(1)
    await pool.submit(Definition(id="busy", task_fn=forever(), max_duration=None))
    pool.stop()
    try:
        with pytest.raises(PoolStoppedError):
            async with asyncio.timeout(5):
                await pool.submit_with_err_group([Definition(id="x", task_fn=Probe().fn())])
    finally:
        await pool.shutdown()


# -- submit_batch -----------------------------------------------------------------------------


async def test_submit_batch_submits_in_order_and_returns_the_tasks() -> None:
    pool = WorkerPool(2)
    probe = Probe()
    definitions = [Definition(id=f"t{i}", task_fn=probe.fn(seconds=1, result=i)) for i in range(5)]
    tasks = await pool.submit_batch(definitions)
    assert [t.id for t in tasks] == [f"t{i}" for i in range(5)]
    assert all(isinstance(t, Task) for t in tasks)
    assert [t.definition for t in tasks] == definitions
    assert pool.tasks() == tasks
    # With 2 workers, the batch returned once the last one could be submitted.
    assert now() == 2.0
    assert [t.state for t in tasks[:2]] == [State.DONE] * 2
    await pool.wait()
    assert [await t for t in tasks] == [0, 1, 2, 3, 4]
    assert probe.calls == [f"t{i}" for i in range(5)]
    assert now() == 3.0
    await pool.shutdown()


async def test_submit_batch_accepts_any_iterable_and_empty() -> None:
    pool = WorkerPool(3)
    assert await pool.submit_batch([]) == []
    tasks = await pool.submit_batch(Definition(id=str(i), task_fn=Probe().fn()) for i in range(3))
    assert [t.id for t in tasks] == ["0", "1", "2"]
    await pool.shutdown(cancel=False)
    assert all(t.is_done() for t in tasks)


async def test_submit_batch_type_error_before_anything_is_submitted() -> None:
    pool = WorkerPool(2)
    probe = Probe()
    batch: list[Any] = [
        Definition(id="a", task_fn=probe.fn()),
        Definition(id="b", task_fn=probe.fn()),
        "not a definition",
        Definition(id="c", task_fn=probe.fn()),
    ]
    with pytest.raises(TypeError, match=r"\[2\]"):
        await pool.submit_batch(batch)
    await wait_all_tasks_blocked()
    assert pool.stats().total == 0
    assert pool.tasks() == []
    assert probe.calls == []
    await pool.shutdown()


# -- submit_with_err_group ---------------------------------------------------------------------


async def test_err_group_all_succeed_returns_none_after_all_ended() -> None:
    pool = WorkerPool(2)
    probe = Probe()
    definitions = [Definition(id=f"t{i}", task_fn=probe.fn(seconds=i + 1)) for i in range(4)]
    assert await pool.submit_with_err_group(definitions) is None  # type: ignore[func-returns-value]
    assert now() == 6.0  # 1 and 2 at once, then 3 (from 1) and 4 (from 2): ends at 2 + 4
    assert sorted(probe.calls) == ["t0", "t1", "t2", "t3"]
    assert all(t.is_done() for t in pool.tasks())
    assert pool.active_workers == 0
    await pool.shutdown()


async def test_err_group_retried_failures_that_succeed_are_not_failures() -> None:
    pool = WorkerPool(2)
    tries = {"flaky": 0}

    async def flaky(run: Run) -> None:
        tries["flaky"] += 1
        if run.attempt < 2:
            raise OSError("transient")

    await pool.submit_with_err_group(
        [
            Definition(id="flaky", task_fn=flaky, max_retries=2, backoff=1),
            Definition(id="ok", task_fn=Probe().fn(seconds=1)),
        ]
    )
    assert tries["flaky"] == 3
    assert all(t.is_done() for t in pool.tasks())
    await pool.shutdown()


async def test_err_group_raises_the_first_failure_itself_and_cancels_the_rest() -> None:
    pool = WorkerPool(4)
    probe = Probe()
    err = ValueError("simulated error")
    later = RuntimeError("second failure, after the first")
    definitions = [
        Definition(id="ok", task_fn=probe.fn(seconds=0.5)),
        Definition(id="fails", task_fn=probe.fn(seconds=1, error=err)),
        Definition(id="long", task_fn=probe.fn(seconds=100)),
        Definition(id="fails-later", task_fn=probe.fn(seconds=2, error=later)),
    ]
    with pytest.raises(ValueError, match="simulated error") as info:
        await pool.submit_with_err_group(definitions)
    assert info.value is err
    assert now() == 1.0
    by_id = {t.id: t for t in pool.tasks()}
    assert by_id["ok"].is_done()
    assert by_id["fails"].is_failed()
    assert by_id["fails"].error is err
    assert by_id["long"].is_canceled()
    assert isinstance(by_id["long"].error, TaskCanceledError)
    assert by_id["fails-later"].is_canceled()
    assert sorted(probe.calls) == ["fails", "fails-later", "long", "ok"]
    assert pool.active_workers == 0
    assert counters(pool) == (4, 0, 0, 0, 1, 1, 2)
    await pool.shutdown()


async def test_err_group_tasks_not_yet_started_never_start() -> None:
    pool = WorkerPool(4)
    probe = Probe()
    err = KeyError("boom")

    async def fails_fast(run: Run) -> None:
        probe.calls.append(run.id)
        raise OSError("retry me")

    definitions = [
        Definition(id="fails", task_fn=probe.fn(seconds=2, error=err)),
        Definition(id="delayed", task_fn=probe.fn(), delay=5),
        Definition(id="in-backoff", task_fn=fails_fast, max_retries=3, backoff=10),
        Definition(id="running", task_fn=probe.fn(seconds=50)),
    ]
    with pytest.raises(KeyError) as info:
        await pool.submit_with_err_group(definitions)
    assert info.value is err
    assert now() == 2.0
    by_id = {t.id: t for t in pool.tasks()}
    assert by_id["delayed"].is_canceled()
    assert by_id["delayed"].attempts == 0
    assert by_id["in-backoff"].is_canceled()
    assert by_id["in-backoff"].attempts == 1  # canceled in its backoff: never retried
    assert by_id["running"].is_canceled()
    await asyncio.sleep(20)  # nothing canceled wakes up later
    assert probe.calls.count("delayed") == 0
    assert probe.calls.count("in-backoff") == 1
    assert sorted(set(probe.calls)) == ["fails", "in-backoff", "running"]
    await pool.shutdown()


async def test_err_group_definitions_after_the_failure_are_never_submitted() -> None:
    pool = WorkerPool(1)
    probe = Probe()
    err = OSError("first fails")
    definitions = [
        Definition(id="long-fails", task_fn=probe.fn(seconds=10, error=err)),
        Definition(id="b", task_fn=probe.fn()),
        Definition(id="c", task_fn=probe.fn()),
    ]
    with pytest.raises(OSError, match="first fails") as info:
        await pool.submit_with_err_group(definitions)
    assert info.value is err
    assert now() == 10.0
    assert pool.stats().total == 1
    assert [t.id for t in pool.tasks()] == ["long-fails"]
    assert probe.calls == ["long-fails"]
    assert (pool.active_workers, pool.available_workers) == (0, 1)
    await pool.shutdown()


async def test_err_group_failure_while_caller_waits_for_a_slot_stops_submitting() -> None:
    pool = WorkerPool(2)
    probe = Probe()
    err = ValueError("x")
    definitions = [
        Definition(id="fails", task_fn=probe.fn(seconds=1, error=err)),
        Definition(id="blocks", task_fn=forever(), max_duration=None),
        Definition(id="never1", task_fn=probe.fn()),
        Definition(id="never2", task_fn=probe.fn()),
    ]
    with pytest.raises(ValueError, match="x") as info:
        async with asyncio.timeout(GUARD):
            await pool.submit_with_err_group(definitions)
    assert info.value is err
    assert now() == 1.0
    assert [(t.id, t.state) for t in pool.tasks()] == [
        ("fails", State.FAILED),
        ("blocks", State.CANCELED),
    ]
    assert probe.calls == ["fails"]
    assert pool.available_workers == 2
    await pool.shutdown()


async def test_err_group_task_with_no_task_fn_is_a_failure() -> None:
    pool = WorkerPool(2)
    with pytest.raises(TaskFnNotSetError):
        await pool.submit_with_err_group(
            [Definition(id="none"), Definition(id="long", task_fn=Probe().fn(seconds=5))]
        )
    assert now() == 0
    assert [t.state for t in pool.tasks()] == [State.FAILED, State.CANCELED]
    await pool.shutdown()


async def test_err_group_task_canceled_from_outside_raises_its_cancel_error() -> None:
    pool = WorkerPool(3)
    probe = Probe()

    async def run_group() -> None:
        await pool.submit_with_err_group(
            [Definition(id=f"t{i}", task_fn=probe.fn(seconds=10)) for i in range(3)]
        )

    group = asyncio.create_task(run_group())
    await asyncio.sleep(1)
    victim = pool.tasks()[1]
    assert victim.cancel() is True
    with pytest.raises(TaskCanceledError) as info:
        await group
    assert info.value is victim.error
    assert now() == 1.0
    assert [t.state for t in pool.tasks()] == [State.CANCELED] * 3
    await pool.shutdown()


async def test_err_group_raises_only_once_every_task_has_ended() -> None:
    """A task that swallows its cancellation and keeps working for 3 s more: the group's
    error comes when it has ended, not before."""
    pool = WorkerPool(2)
    err = ValueError("fail")

    async def stubborn(run: Run) -> str:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            await asyncio.sleep(3)
        return "returned anyway"

    definitions = [
        Definition(id="fails", task_fn=Probe().fn(seconds=1, error=err)),
        Definition(id="stubborn", task_fn=stubborn),
    ]
    with pytest.raises(ValueError, match="fail"):
        await pool.submit_with_err_group(definitions)
    stubborn_task = pool.tasks()[1]
    assert stubborn_task.is_end()
    assert stubborn_task.is_canceled()  # swallowing the cancellation does not make it DONE
    assert now() == 4.0
    await pool.shutdown()


async def test_err_group_caller_canceled_cancels_the_group() -> None:
    pool = WorkerPool(3)
    probe = Probe()
    await pool.submit(Definition(id="outside", task_fn=probe.fn(seconds=5)))
    group = asyncio.create_task(
        pool.submit_with_err_group(
            [
                Definition(id="g-run", task_fn=probe.fn(seconds=100)),
                Definition(id="g-delay", task_fn=probe.fn(), delay=50),
            ]
        )
    )
    await asyncio.sleep(1)
    group.cancel()
    with pytest.raises(asyncio.CancelledError):
        await group
    await pool.wait()
    by_id = {t.id: t for t in pool.tasks()}
    assert by_id["g-run"].is_canceled()
    assert by_id["g-delay"].is_canceled()
    assert by_id["outside"].is_done()  # not of the group: untouched
    assert now() == 5.0
    assert "g-delay" not in probe.calls
    await pool.shutdown()


async def test_err_group_caller_canceled_while_waiting_for_a_slot() -> None:
    pool = WorkerPool(1)
    probe = Probe()
    group = asyncio.create_task(
        pool.submit_with_err_group(
            [
                Definition(id="first", task_fn=probe.fn(seconds=100)),
                Definition(id="second", task_fn=probe.fn()),
            ]
        )
    )
    await asyncio.sleep(1)
    assert pool.stats().total == 1
    group.cancel()
    with pytest.raises(asyncio.CancelledError):
        await group
    await pool.wait()
    assert [(t.id, t.state) for t in pool.tasks()] == [("first", State.CANCELED)]
    assert probe.calls == ["first"]
    assert pool.available_workers == 1
    assert now() == 1.0
    await pool.shutdown()


async def test_err_group_type_error_before_anything_is_submitted() -> None:
    pool = WorkerPool(2)
    probe = Probe()
    with pytest.raises(TypeError, match=r"\[1\]"):
        await pool.submit_with_err_group(
            [Definition(id="a", task_fn=probe.fn()), object()]  # type: ignore[list-item]
        )
    await wait_all_tasks_blocked()
    assert pool.stats().total == 0
    assert probe.calls == []
    await pool.shutdown()


async def test_err_group_empty_returns_none() -> None:
    pool = WorkerPool(1)
    assert await pool.submit_with_err_group([]) is None  # type: ignore[func-returns-value]
    assert pool.stats().total == 0
    await pool.shutdown()


# -- wait ---------------------------------------------------------------------------------------


async def test_wait_returns_when_every_task_has_ended() -> None:
    pool = WorkerPool(3)
    probe = Probe()
    tasks = [
        await pool.submit(Definition(id=str(i), task_fn=probe.fn(seconds=s)))
        for i, s in enumerate([2, 5, 1])
    ]
    await pool.wait()
    assert now() == 5.0
    assert all(t.is_end() for t in tasks)
    assert pool.active_workers == 0
    assert pool.available_workers == 3
    await pool.wait()  # nothing left to wait for: at once
    assert now() == 5.0
    await pool.shutdown()


async def test_wait_on_an_empty_pool_returns_at_once() -> None:
    pool = WorkerPool(2)
    await pool.wait()
    await pool.wait(timeout=1)
    assert now() == 0
    await pool.shutdown()


async def test_wait_covers_tasks_whose_submitters_were_waiting() -> None:
    pool = WorkerPool(1)
    probe = Probe()
    await pool.submit(Definition(id="a", task_fn=probe.fn(seconds=1)))
    submitter = asyncio.create_task(pool.submit(Definition(id="b", task_fn=probe.fn(seconds=2))))
    await wait_all_tasks_blocked()
    await pool.wait()
    assert submitter.done()
    assert now() == 3.0
    assert [t.state for t in pool.tasks()] == [State.DONE, State.DONE]
    await pool.shutdown()


async def test_several_waiters_all_return() -> None:
    pool = WorkerPool(2)
    await pool.submit(Definition(id="a", task_fn=Probe().fn(seconds=4)))
    waiters = [asyncio.create_task(pool.wait()) for _ in range(3)]
    async with asyncio.timeout(GUARD):
        await asyncio.gather(*waiters)
    assert now() == 4.0
    await pool.shutdown()


@pytest.mark.parametrize("timeout", [2.5, timedelta(seconds=2.5)])
async def test_wait_timeout_raises_and_cancels_nothing(timeout: float | timedelta) -> None:
    pool = WorkerPool(2)
    probe = Probe()
    tasks = [
        await pool.submit(Definition(id=str(i), task_fn=probe.fn(seconds=s, result=s)))
        for i, s in enumerate([1, 10])
    ]
    with pytest.raises(TimeoutError):
        await pool.wait(timeout)
    assert now() == 2.5
    assert tasks[0].is_done()
    assert tasks[1].is_started()
    assert pool.active_workers == 1
    await pool.wait()
    assert now() == 10.0
    assert tasks[1].is_done()
    assert await tasks[1] == 10
    await pool.shutdown()


async def test_wait_negative_timeout_is_value_error() -> None:
    pool = WorkerPool(1)
    with pytest.raises(ValueError, match="timeout"):
        await pool.wait(-1)
    await pool.shutdown()


async def test_canceled_wait_leaves_the_pool_working() -> None:
    pool = WorkerPool(1)
    task = await pool.submit(Definition(id="a", task_fn=Probe().fn(seconds=3)))
    waiter = asyncio.create_task(pool.wait())
    await asyncio.sleep(1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert task.is_started()
    await pool.wait()
    assert task.is_done()
    assert now() == 3.0
    await pool.shutdown()


# -- shutdown and async with ---------------------------------------------------------------------


async def test_shutdown_cancels_tasks_in_progress_by_default() -> None:
    pool = WorkerPool(3)
    probe = Probe()
    running = await pool.submit(Definition(id="running", task_fn=probe.fn(seconds=100)))
    delayed = await pool.submit(Definition(id="delayed", task_fn=probe.fn(), delay=100))
    done = await pool.submit(Definition(id="done", task_fn=probe.fn()))
    await asyncio.sleep(1)
    assert done.is_done()
    await pool.shutdown()
    assert now() == 1.0
    assert running.is_canceled()
    assert delayed.is_canceled()
    assert done.is_done()
    assert "delayed" not in probe.calls
    assert pool.is_stopped()
    assert pool.active_workers == 0
    assert_stats_match(pool)
    assert only_current_task_left()
    with pytest.raises(PoolStoppedError):
        await pool.submit(Definition(task_fn=probe.fn()))
    await pool.shutdown()  # twice: nothing to do
    assert only_current_task_left()


async def test_shutdown_without_cancel_waits_for_the_tasks() -> None:
    pool = WorkerPool(2)
    tasks = [
        await pool.submit(Definition(id=str(i), task_fn=Probe().fn(seconds=s)))
        for i, s in enumerate([3, 7])
    ]
    await pool.shutdown(cancel=False)
    assert now() == 7.0
    assert all(t.is_done() for t in tasks)
    assert only_current_task_left()


async def test_shutdown_timeout_raises_and_leaves_tasks_running() -> None:
    pool = WorkerPool(2)
    task = await pool.submit(Definition(id="long", task_fn=Probe().fn(seconds=10)))
    with pytest.raises(TimeoutError):
        await pool.shutdown(cancel=False, timeout=timedelta(seconds=2))
    assert now() == 2.0
    assert pool.is_stopped()
    assert task.is_started()
    await pool.shutdown(cancel=False, timeout=100)
    assert now() == 10.0
    assert task.is_done()
    assert only_current_task_left()


async def test_shutdown_with_grace_drains_then_cancels_what_is_left() -> None:
    pool = WorkerPool(4)
    tasks = [
        await pool.submit(Definition(id=str(s), task_fn=Probe().fn(seconds=s))) for s in (1, 4, 9)
    ]
    waiting = await pool.submit(Definition(id="delayed", task_fn=Probe().fn(), delay=20))
    await pool.shutdown(grace=timedelta(seconds=5))
    assert now() == 5.0  # the grace, then the cancel: the rest end at once
    assert [t.state for t in tasks] == [State.DONE, State.DONE, State.CANCELED]
    assert waiting.is_canceled()
    assert pool.is_stopped()
    assert assert_stats_match(pool).canceled == 2
    assert only_current_task_left()


async def test_shutdown_with_grace_returns_when_the_last_task_ends_first() -> None:
    pool = WorkerPool(2)
    tasks = [await pool.submit(Definition(task_fn=Probe().fn(seconds=s))) for s in (2, 3)]
    await pool.shutdown(grace=60, timeout=60)
    assert now() == 3.0
    assert all(t.is_done() for t in tasks)
    assert only_current_task_left()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grace": -1}, "grace"),
        ({"grace": "5"}, "grace"),
        ({"grace": 5, "cancel": False}, "grace needs cancel=True"),
        ({"grace": 5, "timeout": 2}, r"grace \(5.0s\) must not be longer than timeout"),
    ],
)
async def test_shutdown_bad_grace_fails_before_stopping_anything(
    kwargs: dict[str, Any], match: str
) -> None:
    pool = WorkerPool(1)
    task = await pool.submit(Definition(task_fn=Probe().fn(seconds=1)))
    with pytest.raises((ValueError, TypeError), match=match):
        await pool.shutdown(**kwargs)
    assert not pool.is_stopped()
    assert task.is_in_progress()
    await pool.shutdown(cancel=False)
    assert task.is_done()


async def test_async_with_waits_on_normal_exit() -> None:
    probe = Probe()
    async with WorkerPool(2) as pool:
        assert isinstance(pool, WorkerPool)
        tasks = [
            await pool.submit(Definition(id=str(i), task_fn=probe.fn(seconds=i + 1)))
            for i in range(4)
        ]
        assert now() == 2.0  # the 3rd submit waited for the 1st task
    assert now() == 6.0
    assert all(t.is_done() for t in tasks)
    assert pool.is_stopped()
    assert counters(pool) == (4, 0, 0, 0, 4, 0, 0)
    assert only_current_task_left()


async def test_async_with_cancels_and_reraises_on_exception() -> None:
    probe = Probe()
    err = LookupError("body failed")
    tasks: list[Task[Any]] = []
    pool = WorkerPool(2)

    async def body() -> None:
        async with pool as entered:
            assert entered is pool
            tasks.append(
                await pool.submit(Definition(id="r", task_fn=forever(), max_duration=None))
            )
            tasks.append(await pool.submit(Definition(id="d", task_fn=probe.fn(), delay=10)))
            await asyncio.sleep(1)
            raise err

    with pytest.raises(LookupError) as info:
        await body()
    assert info.value is err
    running, delayed = tasks
    assert now() == 1.0
    assert running.is_canceled()
    assert delayed.is_canceled()
    assert probe.calls == []
    assert pool.is_stopped()
    assert only_current_task_left()


async def test_async_with_caller_canceled_while_exiting_cancels_the_tasks() -> None:
    pool = WorkerPool(2)
    tasks: list[Task[Any]] = []

    async def body() -> None:
        async with pool:
            tasks.append(await pool.submit(Definition(id="a", task_fn=Probe().fn(seconds=50))))

    outer = asyncio.create_task(body())
    await asyncio.sleep(1)  # the body has ended; __aexit__ waits for "a"
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    await pool.wait()
    assert tasks[0].is_canceled()
    assert now() == 1.0
    await pool.shutdown()


# -- stats and tasks() --------------------------------------------------------------------------


async def test_stats_equal_a_recount_at_several_moments() -> None:
    pool = WorkerPool(4)
    gate = asyncio.Event()
    probe = Probe()
    assert counters(pool) == (0, 0, 0, 0, 0, 0, 0)
    running = await pool.submit(Definition(id="running", task_fn=probe.fn(gate=gate)))
    delayed = await pool.submit(Definition(id="delayed", task_fn=probe.fn(), delay=3))
    failing = await pool.submit(Definition(id="failing", task_fn=probe.fn(error=ValueError())))
    quick = await pool.submit(Definition(id="quick", task_fn=probe.fn(seconds=1)))
    assert counters(pool) == (4, 0, 4, 0, 0, 0, 0)  # all PENDING before any worker ran
    assert_stats_match(pool)
    await wait_all_tasks_blocked()
    assert counters(pool) == (4, 0, 1, 2, 0, 1, 0)
    assert_stats_match(pool)
    await asyncio.sleep(1.5)
    assert counters(pool) == (4, 0, 1, 1, 1, 1, 0)
    assert_stats_match(pool)
    assert delayed.cancel() is True
    await delayed.wait()
    assert counters(pool) == (4, 0, 0, 1, 1, 1, 1)
    assert_stats_match(pool)
    gate.set()
    await pool.wait()
    assert counters(pool) == (4, 0, 0, 0, 2, 1, 1)
    s = assert_stats_match(pool)
    assert (s.active_workers, s.max_workers, s.stopped) == (0, 4, False)
    assert [running.state, quick.state, failing.state] == [State.DONE, State.DONE, State.FAILED]
    await pool.shutdown()
    assert assert_stats_match(pool).stopped is True


async def test_stats_is_a_snapshot() -> None:
    pool = WorkerPool(1)
    before = pool.stats()
    await pool.submit(Definition(task_fn=Probe().fn()))
    await pool.wait()
    assert before.total == 0
    assert before.done == 0
    assert pool.stats().done == 1
    await pool.shutdown()


async def test_tasks_returns_a_copy_of_every_task_by_default() -> None:
    pool = WorkerPool(2)
    probe = Probe()
    first = await pool.submit(Definition(id="a", task_fn=probe.fn()))
    second = await pool.submit(Definition(id="b", task_fn=probe.fn(error=OSError())))
    listed = pool.tasks()
    assert listed == [first, second]
    listed.clear()
    listed.append("junk")  # type: ignore[arg-type]
    assert pool.tasks() == [first, second]
    assert pool.tasks() is not pool.tasks()
    await pool.wait()
    assert pool.tasks() == [first, second]  # finished tasks are kept
    assert [t.state for t in pool.tasks()] == [State.DONE, State.FAILED]
    await pool.shutdown()


async def test_a_task_is_no_longer_in_progress_when_its_end_hooks_run() -> None:
    """With retain_finished=False, tasks() seen from a task's on_done hook or done callback
    lists the others in progress, not the task that just ended."""
    seen: list[list[str]] = []
    pool: WorkerPool

    def listed(*_: Any) -> None:
        seen.append(sorted(t.id for t in pool.tasks()))

    pool = WorkerPool(2, hooks=StateHooks(on_done=listed), retain_finished=False)
    gate = asyncio.Event()
    probe = Probe()
    async with pool:
        await pool.submit(Definition(id="held", task_fn=probe.fn(gate=gate)))
        quick = await pool.submit(Definition(id="quick", task_fn=probe.fn()))
        quick.add_done_callback(listed)
        await wait_all_tasks_blocked()
        gate.set()
    assert seen == [["held"], ["held"], []]


async def test_retain_finished_false_lists_only_tasks_in_progress() -> None:
    pool = WorkerPool(3, retain_finished=False)
    gate = asyncio.Event()
    probe = Probe()
    quick = await pool.submit(Definition(id="quick", task_fn=probe.fn()))
    failing = await pool.submit(Definition(id="failing", task_fn=probe.fn(error=ValueError())))
    held = await pool.submit(Definition(id="held", task_fn=probe.fn(gate=gate)))
    assert pool.tasks() == [quick, failing, held]
    await wait_all_tasks_blocked()
    assert pool.tasks() == [held]
    assert counters(pool) == (3, 0, 0, 1, 1, 1, 0)
    later = await pool.submit(Definition(id="later", task_fn=probe.fn(), delay=5))
    assert pool.tasks() == [held, later]
    later.cancel()
    assert pool.tasks() == [held]
    gate.set()
    await pool.wait()
    assert pool.tasks() == []
    assert counters(pool) == (4, 0, 0, 0, 2, 1, 1)
    assert pool.stats().active_workers == 0
    await pool.shutdown()


async def test_stats_match_tasks_inside_creation_hooks() -> None:
    mismatches: list[str] = []
    pool: WorkerPool

    def check(name: str) -> Callable[..., None]:
        def hook(task_id: str, *args: Any) -> None:
            s = pool.stats()
            tasks = pool.tasks()
            if s.total != len(tasks) or (s.pending, s.started) != recount(tasks)[1:3]:
                mismatches.append(f"{name}({task_id}): total={s.total} listed={len(tasks)}")

        return hook

    pool = WorkerPool(2, hooks=StateHooks(on_created=check("created"), on_pending=check("pending")))
    await pool.submit(Definition(id="a", task_fn=Probe().fn()))
    await pool.wait()
    await pool.shutdown()
    assert mismatches == []


# -- hooks ----------------------------------------------------------------------------------------


async def test_pool_hooks_apply_to_tasks_without_their_own() -> None:
    pool_events: list[tuple[Any, ...]] = []
    own_events: list[tuple[Any, ...]] = []

    def recorder(log: list[tuple[Any, ...]], name: str) -> Callable[..., None]:
        def hook(task_id: str, when: Any, *args: Any) -> None:
            log.append((task_id, name, *args))

        return hook

    def hooks_for(log: list[tuple[Any, ...]]) -> StateHooks:
        return StateHooks(
            **{
                f"on_{name}": recorder(log, name)
                for name in ("created", "pending", "started", "done", "failed", "canceled")
            }
        )

    err = ValueError("x")
    pool = WorkerPool(2, hooks=hooks_for(pool_events))
    await pool.submit(Definition(id="plain", task_fn=Probe().fn()))
    await pool.submit(Definition(id="own", task_fn=Probe().fn(), hooks=hooks_for(own_events)))
    await pool.submit(Definition(id="failing", task_fn=Probe().fn(error=err)))
    await pool.wait()
    await pool.submit(
        Definition(id="retried", task_fn=Probe().fn(error=err), max_retries=1, backoff=1)
    )
    cancelled = await pool.submit(Definition(id="canceled", task_fn=Probe().fn(seconds=9)))
    await wait_all_tasks_blocked()
    cancelled.cancel()
    await pool.wait()
    await pool.shutdown()
    assert own_events == [
        ("own", "created"),
        ("own", "pending", 0),
        ("own", "started"),
        ("own", "done"),
    ]
    per_task: dict[str, list[tuple[Any, ...]]] = {}
    for event in pool_events:
        per_task.setdefault(event[0], []).append(event[1:])
    assert "own" not in per_task
    assert per_task["plain"] == [("created",), ("pending", 0), ("started",), ("done",)]
    assert per_task["failing"] == [("created",), ("pending", 0), ("started",), ("failed", err)]
    assert per_task["retried"] == [
        ("created",),
        ("pending", 0),
        ("started",),
        ("pending", 1),
        ("started",),
        ("failed", err),
    ]
    assert per_task["canceled"] == [("created",), ("pending", 0), ("started",), ("canceled",)]


async def test_a_raising_pool_hook_changes_nothing(hook_log: LibraryLog) -> None:
    def bad(task_id: str, when: Any) -> None:
        raise RuntimeError("hook broke")

    pool = WorkerPool(1, hooks=StateHooks(on_started=bad, on_done=bad))
    task = await pool.submit(Definition(id="t", task_fn=Probe().fn(result=5)))
    assert await task == 5
    await pool.wait()
    assert counters(pool) == (1, 0, 0, 0, 1, 0, 0)
    assert pool.available_workers == 1
    await pool.shutdown()
    assert (
        sum("hook broke" in r.getMessage() or "hook" in r.getMessage() for r in hook_log.records)
        >= 2
    )


# -- failures inside the pool -------------------------------------------------------------------


async def test_failures_do_not_disturb_the_pool() -> None:
    pool = WorkerPool(2)
    err = ZeroDivisionError("bad")
    failing = await pool.submit(Definition(id="f", task_fn=Probe().fn(error=err)))
    missing = await pool.submit(Definition(id="none"))
    timed_out = await pool.submit(Definition(id="slow", task_fn=forever(), max_duration=2))
    ok = await pool.submit(Definition(id="ok", task_fn=Probe().fn(result="fine")))
    await pool.wait()
    assert failing.error is err
    assert isinstance(missing.error, TaskFnNotSetError)
    assert isinstance(timed_out.error, TimeoutError)
    assert await ok == "fine"
    assert now() == 2.0
    assert counters(pool) == (4, 0, 0, 0, 1, 3, 0)
    await pool.shutdown()


# -- canceled while queued ----------------------------------------------------------------------


async def test_tasks_canceled_while_queued_end_without_running() -> None:
    events: list[tuple[str, str]] = []

    def hook(name: str) -> Callable[..., None]:
        return lambda task_id, when, *args: events.append((task_id, name))

    pool = WorkerPool(
        3,
        hooks=StateHooks(
            on_pending=hook("pending"), on_started=hook("started"), on_canceled=hook("canceled")
        ),
    )
    probe = Probe()
    # submit() on free workers does not suspend: no worker has picked these yet.
    a = await pool.submit(Definition(id="a", task_fn=probe.fn()))
    b = await pool.submit(Definition(id="b", task_fn=probe.fn()))
    c = await pool.submit(Definition(id="c", task_fn=probe.fn()))
    assert [t.state for t in (a, b, c)] == [State.PENDING] * 3
    assert a.cancel() is True
    assert c.cancel() is True
    assert a.is_canceled()  # ended at once: it was only queued
    assert isinstance(a.error, TaskCanceledError)
    assert pool.available_workers == 2
    assert a.cancel() is False  # idempotent: already ended
    await pool.wait()
    assert probe.calls == ["b"]
    assert (a.attempts, b.attempts, c.attempts) == (0, 1, 0)
    assert [t.state for t in (a, b, c)] == [State.CANCELED, State.DONE, State.CANCELED]
    assert ("a", "started") not in events
    assert ("c", "started") not in events
    assert events.count(("a", "canceled")) == 1
    assert counters(pool) == (3, 0, 0, 0, 1, 0, 2)
    # The pool is still fully usable: every slot came back.
    more = [await pool.submit(Definition(id=f"m{i}", task_fn=probe.fn())) for i in range(3)]
    await pool.wait()
    assert all(t.is_done() for t in more)
    await pool.shutdown()


async def test_task_canceled_during_its_delay_never_calls_its_function() -> None:
    pool = WorkerPool(1)
    probe = Probe()
    task = await pool.submit(Definition(id="d", task_fn=probe.fn(), delay=10))
    await asyncio.sleep(4)
    assert task.is_pending()
    assert task.cancel() is True
    await task.wait()
    assert task.is_canceled()
    assert now() == 4.0
    await asyncio.sleep(10)
    assert probe.calls == []
    assert task.attempts == 0
    await pool.shutdown()


# -- no leaks -------------------------------------------------------------------------------------


async def test_no_asyncio_task_left_after_async_with() -> None:
    async with WorkerPool(4) as pool:
        for i in range(20):
            await pool.submit(Definition(id=str(i), task_fn=Probe().fn(seconds=i % 3)))
    assert only_current_task_left()


async def test_no_asyncio_task_left_after_shutdown_with_tasks_everywhere() -> None:
    pool = WorkerPool(4)

    async def flaky(run: Run) -> None:
        raise OSError

    done = await pool.submit(Definition(id="done", task_fn=Probe().fn()))
    await done.wait()
    await pool.submit(Definition(id="running", task_fn=forever(), max_duration=None))
    await pool.submit(Definition(id="delayed", task_fn=Probe().fn(), delay=100))
    await pool.submit(Definition(id="backoff", task_fn=flaky, max_retries=5, backoff=100))
    await pool.submit(Definition(id="timed", task_fn=forever(), max_duration=50))
    blocked = asyncio.create_task(pool.submit(Definition(id="blocked", task_fn=Probe().fn())))
    await asyncio.sleep(1)
    assert not blocked.done()
    await pool.shutdown()
    with pytest.raises(PoolStoppedError):
        await blocked
    assert now() == 1.0
    assert only_current_task_left()
    assert [(t.id, t.state) for t in pool.tasks()] == [
        ("done", State.DONE),
        ("running", State.CANCELED),
        ("delayed", State.CANCELED),
        ("backoff", State.CANCELED),
        ("timed", State.CANCELED),
    ]
    assert_stats_match(pool)


# -- sync task functions in threads ---------------------------------------------------------------


@pytest.mark.realtime
async def test_sync_functions_run_max_workers_at_once_in_threads() -> None:
    max_workers = 4
    barrier = threading.Barrier(max_workers, timeout=10)
    lock = threading.Lock()
    running = 0
    peak = 0
    threads: set[str] = set()
    loop_thread = threading.current_thread()

    def task_fn(run: Run) -> str:
        nonlocal running, peak
        assert threading.current_thread() is not loop_thread
        with lock:
            running += 1
            peak = max(peak, running)
            threads.add(threading.current_thread().name)
        try:
            barrier.wait()  # breaks (and the task fails) unless max_workers run at once
            return run.id
        finally:
            with lock:
                running -= 1

    async with WorkerPool(max_workers) as pool:
        tasks = await pool.submit_batch(
            [
                Definition(id=f"s{i}", task_fn=task_fn, max_duration=30)
                for i in range(2 * max_workers)
            ]
        )
    assert [t.state for t in tasks] == [State.DONE] * (2 * max_workers), [t.error for t in tasks]
    assert [t.result() for t in tasks] == [f"s{i}" for i in range(2 * max_workers)]
    assert peak == max_workers
    assert all(name.startswith("asynctasklib") for name in threads)
    assert library_threads() == []  # the pool's threads are gone after async with
    assert only_current_task_left()


@pytest.mark.realtime
async def test_no_thread_left_after_shutdown_of_sync_tasks() -> None:
    pool = WorkerPool(2)
    started = threading.Event()

    def waits_for_cancel(run: Run) -> bool:
        started.set()
        return run.wait_canceled(10)

    task = await pool.submit(Definition(id="w", task_fn=waits_for_cancel, max_duration=None))
    ok = await pool.submit(Definition(id="ok", task_fn=lambda run: 7))
    assert await ok == 7
    assert await asyncio.to_thread(started.wait, 10)
    await pool.shutdown()
    assert task.is_canceled()
    for thread in library_threads():
        thread.join(5)
    assert library_threads() == []
    assert only_current_task_left()


@pytest.mark.realtime
async def test_a_plain_function_raising_stop_iteration_fails_its_task_only() -> None:
    """An asyncio future cannot hold a StopIteration: the task fails with a RuntimeError from
    it (as PEP 479 makes of one raised in a coroutine), and the calls that ended in the same
    batch are delivered all the same."""
    stop = StopIteration("no more")

    def raises(run: Run) -> None:
        raise stop

    async with WorkerPool(4) as pool:
        tasks: list[Task[Any]] = [await pool.submit(Definition(task_fn=raises, max_duration=30))]
        tasks += [
            await pool.submit(Definition(task_fn=lambda run: run.id, max_duration=30))
            for _ in range(3)
        ]
    assert [t.state for t in tasks] == [State.FAILED] + [State.DONE] * 3
    error = tasks[0].error
    assert isinstance(error, RuntimeError)
    assert error.__cause__ is stop
    alone = Task(Definition(task_fn=raises, max_duration=30))  # go(): the same
    alone.go()
    await alone.wait()
    assert isinstance(alone.error, RuntimeError)
    assert alone.error.__cause__ is stop


@pytest.mark.realtime
async def test_shutdown_does_not_wait_on_the_loop_for_a_function_that_runs_on() -> None:
    """A plain function that timed out still runs in its thread: shutdown() returns without
    joining that thread (which would block the event loop, or deadlock if the function calls
    into the pool)."""
    release = threading.Event()
    watchdog = threading.Timer(20, release.set)  # (so that a bug fails rather than hangs)
    watchdog.start()
    entered = threading.Event()

    def runs_on(run: Run) -> int:
        entered.set()
        release.wait()
        return pool.stats().total  # into the pool, from the thread: needs the loop

    pool = WorkerPool(2)
    task = await pool.submit(Definition(task_fn=runs_on, max_duration=0.05))
    await task.wait()
    assert isinstance(task.error, TimeoutError)
    assert await asyncio.to_thread(entered.wait, 10)
    await pool.shutdown()
    assert not release.is_set()  # shutdown returned while the function still ran
    release.set()
    watchdog.cancel()
    for thread in library_threads():
        await asyncio.to_thread(thread.join, 10)
    assert library_threads() == []


def test_a_pool_moved_to_a_new_loop_gets_its_plain_functions_results() -> None:
    """A call that ends after its loop closed must not keep later results from the next
    loop the pool moves to."""
    pool = WorkerPool(2)
    release = threading.Event()
    ended = threading.Event()

    def slow(run: Run) -> str:
        release.wait(10)
        ended.set()
        return "slow"

    async def first() -> None:
        task = await pool.submit(Definition(task_fn=slow, max_duration=0.01))
        await task.wait()
        assert isinstance(task.error, TimeoutError)

    async def second() -> object:
        task = await pool.submit(Definition(task_fn=lambda run: "quick", max_duration=10))
        await task.wait()
        await pool.shutdown()
        return task.result()

    asyncio.run(first())
    release.set()  # the timed-out call ends now, its loop closed
    assert ended.wait(10)
    assert asyncio.run(asyncio.wait_for(second(), 10)) == "quick"


@pytest.mark.realtime
async def test_sync_functions_still_running_after_a_timeout_do_not_starve_new_tasks() -> None:
    release = threading.Event()
    barrier = threading.Barrier(2, timeout=1)

    def ignores_stop(run: Run) -> None:
        release.wait(10)  # does not look at run.canceled: cannot be interrupted

    def meet(run: Run) -> str:
        barrier.wait()
        return run.id

    pool = WorkerPool(2)
    try:
        slow = await pool.submit(Definition(id="slow", task_fn=ignores_stop, max_duration=0.05))
        await slow.wait()
        assert isinstance(slow.error, TimeoutError)
        assert pool.available_workers == 2  # its slot is free again...
        tasks = [await pool.submit(Definition(id=i, task_fn=meet)) for i in ("b", "c")]
        await pool.wait()
        # ...so two sync functions should be able to run at once.
        assert [t.state for t in tasks] == [State.DONE, State.DONE], [t.error for t in tasks]
    finally:
        release.set()
        await pool.shutdown()


def test_keyboard_interrupt_in_a_pool_task_is_neither_retried_nor_swallowed() -> None:
    pool = WorkerPool(2)
    tasks: list[Task[Any]] = []
    calls = Counter[str]()

    async def interrupted(run: Run) -> None:
        calls[run.id] += 1
        raise KeyboardInterrupt

    async def main() -> None:
        tasks.append(
            await pool.submit(Definition(id="other", task_fn=forever(), max_duration=None))
        )
        tasks.append(await pool.submit(Definition(id="kbd", task_fn=interrupted, max_retries=3)))
        await pool.wait()

    with pytest.raises(KeyboardInterrupt):
        run_async(main())
    other, kbd = tasks
    assert kbd.is_failed()
    assert isinstance(kbd.error, KeyboardInterrupt)
    assert calls["kbd"] == 1  # not retried
    assert other.is_canceled()  # nothing is left without an end
    assert counters(pool) == (2, 0, 0, 0, 0, 1, 1)
    assert pool.active_workers == 0


# -- event loops ---------------------------------------------------------------------------------


def test_one_pool_on_two_successive_event_loops() -> None:
    pool = WorkerPool(2)
    probe = Probe()

    async def first_loop() -> list[Task[Any]]:
        tasks = [
            await pool.submit(Definition(id=f"a{i}", task_fn=probe.fn(seconds=1))) for i in range(3)
        ]
        await pool.wait()
        return tasks

    async def second_loop() -> list[Task[Any]]:
        async with pool:
            tasks = [
                await pool.submit(Definition(id=f"b{i}", task_fn=probe.fn(seconds=1)))
                for i in range(3)
            ]
        assert only_current_task_left()
        return tasks

    # The pool is not shut down on the first loop: its idle workers are left for the loop's
    # teardown to cancel (as asyncio.run does), hence no leak check there.
    first = run_async(first_loop(), check_leaks=False)
    assert all(t.is_done() for t in first)
    second = run_async(second_loop())
    assert all(t.is_done() for t in second)
    assert probe.calls == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert probe.peak == 2
    assert pool.stats().done == 6
    assert pool.is_stopped()


def test_pool_busy_on_one_loop_refuses_another_loop() -> None:
    pool = WorkerPool(2)
    first = asyncio.new_event_loop()
    try:

        async def start() -> Task[Any]:
            return await pool.submit(Definition(id="a", task_fn=forever(), max_duration=None))

        held = first.run_until_complete(start())

        async def elsewhere() -> None:
            with pytest.raises(RuntimeError, match="another event loop"):
                await pool.submit(Definition(id="b", task_fn=Probe().fn()))

        run_async(elsewhere())
    finally:
        first.run_until_complete(pool.shutdown())
        first.close()
    assert held.is_canceled()


@pytest.mark.parametrize("submitter_blocked", [False, True])
async def test_external_cancellation_of_the_loops_tasks_ends_every_task(
    submitter_blocked: bool,
) -> None:
    """What asyncio.run does at teardown: cancel every other task. Every submitted task still
    reaches a terminal state, none is left PENDING or STARTED, and the counters agree."""
    pool = WorkerPool(5)

    async def flaky(run: Run) -> None:
        raise OSError

    tasks = [await pool.submit(Definition(id="done", task_fn=Probe().fn()))]
    await tasks[0].wait()
    tasks += [
        await pool.submit(Definition(id="running", task_fn=forever(), max_duration=None)),
        await pool.submit(Definition(id="delayed", task_fn=Probe().fn(), delay=100)),
        await pool.submit(Definition(id="backoff", task_fn=flaky, max_retries=5, backoff=100)),
        await pool.submit(Definition(id="timed", task_fn=forever(), max_duration=50)),
    ]
    await asyncio.sleep(1)
    # Not picked by a worker yet when the cancellation comes (unless we let the loop run).
    tasks.append(await pool.submit(Definition(id="queued", task_fn=forever())))
    submitter = asyncio.create_task(pool.submit(Definition(id="late", task_fn=forever())))
    if submitter_blocked:
        await wait_all_tasks_blocked()
        assert tasks[-1].is_started()
        assert not submitter.done()

    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert len(others) >= 6  # the pool's workers and the submitter
    for other in others:
        other.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    assert submitter.cancelled()
    assert [t.id for t in pool.tasks()] == [t.id for t in tasks]
    assert [t.state for t in tasks] == [State.DONE] + [State.CANCELED] * 5
    assert [t.attempts for t in tasks] == [1, 1, 0, 1, 1, 1 if submitter_blocked else 0]
    s = assert_stats_match(pool)
    assert s.pending == s.started == 0
    assert s.active_workers == 0
    assert only_current_task_left()


def test_asyncio_run_teardown_ends_every_task() -> None:
    pool = WorkerPool(3)
    tasks: list[Task[Any]] = []

    async def flaky(run: Run) -> None:
        raise OSError

    async def main() -> None:
        tasks.append(await pool.submit(Definition(id="run", task_fn=forever(), max_duration=None)))
        tasks.append(await pool.submit(Definition(id="delay", task_fn=Probe().fn(), delay=3600)))
        tasks.append(
            await pool.submit(Definition(id="backoff", task_fn=flaky, max_retries=3, backoff=3600))
        )
        await yield_turns()
        # returns with all three in progress; asyncio.run cancels the pool's workers

    asyncio.run(main())
    assert [t.state for t in tasks] == [State.CANCELED] * 3
    assert [t.attempts for t in tasks] == [1, 0, 1]
    assert counters(pool) == (3, 0, 0, 0, 0, 0, 3)
    assert pool.active_workers == 0


# -- context variables -------------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


async def test_a_pool_task_runs_in_a_copy_of_its_submitters_context() -> None:
    """As an asyncio task would: it sees the submitter's values at submit time, its own
    changes last across its awaits and stay its own, whichever worker runs it."""
    pool = WorkerPool(1)  # one worker runs every task: a leak from one to the next would show
    seen: list[tuple[str, str, str]] = []

    async def fn(run: Run) -> None:
        before = request_id.get()
        request_id.set(f"set by {run.id}")
        await asyncio.sleep(0)  # a later step of the same task still sees its own value
        seen.append((run.id, before, request_id.get()))

    async with pool:
        for name in ("a", "b", "c"):
            request_id.set(f"submitted {name}")
            await pool.submit(Definition(id=name, task_fn=fn))
    assert request_id.get() == "submitted c"  # the tasks' changes stayed in the tasks
    assert seen == [
        ("a", "submitted a", "set by a"),
        ("b", "submitted b", "set by b"),
        ("c", "submitted c", "set by c"),
    ]


async def test_a_task_from_another_context_runs_in_its_own_on_the_same_worker() -> None:
    """A worker runs a task in its own context when the submitter's variables are the same
    as the worker's; a task from another context runs in that context instead (each step
    entered apart), and what it sets still stays its own."""
    pool = WorkerPool(1)
    seen: list[tuple[str, str, str, asyncio.Task[Any] | None]] = []

    async def fn(run: Run) -> None:
        before = request_id.get()
        request_id.set(f"set by {run.id}")
        await asyncio.sleep(0)
        seen.append((run.id, before, request_id.get(), asyncio.current_task()))
        if run.id != "b":  # leave the worker's own context as it was
            request_id.set(before)

    async with pool:
        request_id.set("first")
        await pool.submit(Definition(id="a", task_fn=fn))  # the worker starts in "first"
        await pool.wait()
        request_id.set("second")
        await pool.submit(Definition(id="b", task_fn=fn))
        await pool.wait()
        request_id.set("first")
        await pool.submit(Definition(id="c", task_fn=fn))
    assert [s[:3] for s in seen] == [
        ("a", "first", "set by a"),
        ("b", "second", "set by b"),
        ("c", "first", "set by c"),
    ]
    assert len({s[3] for s in seen}) == 1  # one worker ran all three


async def test_a_task_that_changes_its_workers_context_hands_over_to_a_fresh_worker() -> None:
    """A task run in its worker's own context that leaves a variable changed ends that
    worker: the next task, on a new worker, sees the submitter's value, not the change. From
    then on the pool runs each task in its own context: no worker retires again."""
    pool = WorkerPool(1)
    seen: list[tuple[str, str, asyncio.Task[Any] | None]] = []

    async def fn(run: Run) -> None:
        seen.append((run.id, request_id.get(), asyncio.current_task()))
        request_id.set(f"set by {run.id}")
        await asyncio.sleep(0)

    request_id.set("submitter")
    async with pool:
        for name in ("a", "b", "c", "d"):
            await pool.submit(Definition(id=name, task_fn=fn))
            await pool.wait()
            assert len(asyncio.all_tasks()) <= 2  # the retired worker has ended
    assert [s[:2] for s in seen] == [(name, "submitter") for name in "abcd"]
    workers = [s[2] for s in seen]
    assert workers[0] not in workers[1:]  # a's worker retired after it
    assert len(set(workers[1:])) == 1  # and the next one stayed
    assert request_id.get() == "submitter"
    assert only_current_task_left()
    assert pool.stats().done == 4


async def test_tasks_that_all_set_a_variable_retire_no_more_workers_than_the_pool_has() -> None:
    """Items that each set a context variable (as decimal's arithmetic does on first use in a
    context): each worker retires at most once, not once an item (a new asyncio task each
    time), and every item still sees only its submitter's value."""
    started: set[asyncio.Task[Any] | None] = set()

    async def fn(x: int) -> str:
        started.add(asyncio.current_task())
        seen = request_id.get()
        request_id.set(f"item {x}")
        await asyncio.sleep(0)
        return seen

    request_id.set("mapper")
    async with WorkerPool(3) as pool:
        results = [r async for r in pool.map(fn, range(200))]
    assert results == ["mapper"] * 200
    assert len(started) <= 2 * 3  # each first worker, and at most one replacement each


log_var: contextvars.ContextVar[Any] = contextvars.ContextVar("log")


class Touchy:
    """A value whose == refuses to be asked (a numpy array's truth value raises alike)."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("Touchy values are not compared")

    __hash__ = object.__hash__


async def test_a_task_sees_its_submitters_very_objects_not_equal_ones() -> None:
    """Two submitters' lists are equal (both empty) but not the same: each task appends to
    its own submitter's list, whichever worker runs it."""
    pool = WorkerPool(1)

    async def fn(run: Run) -> None:
        log_var.get().append(run.id)

    async def request(name: str) -> list[str]:
        mine: list[str] = []
        log_var.set(mine)
        await (await pool.submit(Definition(id=name, task_fn=fn)))
        return mine

    started: list[str] = []  # equal to each request's list, but another list
    log_var.set(started)
    async with pool:
        await pool.submit(Definition(id="first", task_fn=lambda run: None))  # the worker starts
        await pool.wait()
        assert await asyncio.create_task(request("a")) == ["a"]
        assert await asyncio.create_task(request("b")) == ["b"]
    assert started == []


async def test_context_values_are_never_compared_with_their_own_eq() -> None:
    """Values whose == raises, in the submitter's context and set by the task itself, change
    nothing: every task runs and the pool goes on."""
    pool = WorkerPool(2)

    async def fn(run: Run) -> int:
        if run.id == "sets":
            log_var.set(Touchy())  # replaces the value the worker started with
        await asyncio.sleep(0)
        return run.attempt

    async def request(name: str) -> Task[int]:
        log_var.set(Touchy())  # another object than the worker's
        return await pool.submit(Definition(id=name, task_fn=fn))

    log_var.set(Touchy())
    async with pool:
        tasks = [await pool.submit(Definition(id=i, task_fn=fn)) for i in ("sets", "then")]
        await pool.wait()
        tasks.append(await asyncio.create_task(request("other")))
        tasks.append(await pool.submit(Definition(id="last", task_fn=fn)))
    assert [t.state for t in tasks] == [State.DONE] * 4
    assert pool.stats().done == 4


async def test_context_variables_a_hook_sets_reach_no_task() -> None:
    """Hooks run in a copy of the context they are fired from: an on_started hook's value is
    seen by no task, whichever context the task came from."""
    span: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="none")

    def on_started(task_id: str, when: Any) -> None:
        span.set(f"hook:{task_id}")

    async def fn(run: Run) -> str:
        return span.get()

    async def other() -> Task[str]:
        span.set("other")
        return await pool.submit(Definition(id="b", task_fn=fn))

    pool = WorkerPool(1, hooks=StateHooks(on_started=on_started))
    async with pool:
        a = await pool.submit(Definition(id="a", task_fn=fn))
        await pool.wait()
        b = await asyncio.create_task(other())
    assert (a.result(), b.result()) == ("none", "other")


async def test_hooks_fired_for_a_task_see_that_tasks_context_variables() -> None:
    """on_started, a retry's on_pending and the end hooks see the task's variables (its
    submitter's, and what the task itself set), whichever worker runs it and however."""
    seen: list[tuple[str, str, str]] = []

    def hook(name: str) -> Callable[..., None]:
        def record(task_id: str, *_: Any) -> None:
            seen.append((task_id, name, request_id.get()))

        return record

    hooks = StateHooks(on_started=hook("started"), on_pending=hook("pending"), on_done=hook("done"))

    async def fn(run: Run) -> None:
        request_id.set(f"{request_id.get()}+{run.attempt}")
        await asyncio.sleep(0)
        if run.attempt == 0:
            raise ValueError("once more")

    async def request(name: str) -> None:
        request_id.set(name)
        await pool.submit(Definition(id=name, task_fn=fn, max_retries=1, backoff=0))

    pool = WorkerPool(1, hooks=hooks)
    async with pool:
        await asyncio.create_task(request("a"))  # the worker starts in a's variables
        await pool.wait()
        await asyncio.create_task(request("b"))  # so b runs in a context of its own
    for name in ("a", "b"):
        assert [(hook, value) for task_id, hook, value in seen if task_id == name] == [
            ("pending", name),
            ("started", name),
            ("pending", f"{name}+0"),
            ("started", f"{name}+0"),
            ("done", f"{name}+0+1"),
        ]


@pytest.mark.realtime
async def test_a_plain_function_returning_a_coroutine_runs_it_in_the_tasks_context() -> None:
    """A lambda around an async def, submitted from another context than its worker's: the
    coroutine sees its submitter's variables, and what it sets stays its own."""

    async def body(run: Run) -> str:
        seen = request_id.get()
        if run.id != "a":  # (a leaves its worker as it was)
            request_id.set(f"set by {run.id}")
        await asyncio.sleep(0)
        return seen

    async def request(name: str) -> str:
        request_id.set(name)
        task: Task[str] = await pool.submit(Definition(id=name, task_fn=lambda run: body(run)))
        return await task

    pool = WorkerPool(1)
    async with pool:
        assert await asyncio.create_task(request("a")) == "a"  # the worker starts in a's
        assert await asyncio.create_task(request("b")) == "b"  # in a context of its own
        assert await asyncio.create_task(request("c")) == "c"
    assert request_id.get() == "unset"


async def test_a_task_in_a_context_of_its_own_is_canceled_and_timed_out_in_it() -> None:
    """A task run through the trampoline (its submitter's variables are not its worker's)
    gets the cancellation, and the timeout, inside its own context, and ends as it should."""
    seen: list[tuple[str, str]] = []
    pool = WorkerPool(2)

    async def fn(run: Run) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append((run.id, request_id.get()))
            raise

    async def request(name: str, **options: Any) -> Task[None]:
        request_id.set(name)
        return await pool.submit(Definition(id=name, task_fn=fn, **options))

    async with pool:
        request_id.set("worker")
        await pool.submit(Definition(task_fn=lambda run: None))  # the workers start here
        await pool.wait()
        cancelled = await asyncio.create_task(request("canceled"))
        timed_out = await asyncio.create_task(request("timed out", max_duration=5))
        await wait_all_tasks_blocked()
        cancelled.cancel()
        await pool.wait()
    assert cancelled.state is State.CANCELED
    assert timed_out.state is State.FAILED
    assert isinstance(timed_out.error, TimeoutError)
    assert sorted(seen) == [("canceled", "canceled"), ("timed out", "timed out")]


async def test_a_worker_retiring_while_a_task_waits_leaves_it_to_another_worker() -> None:
    """The task submitted between the end of one task and the end of another, whose worker
    retires (its context changed), still runs, and sees the submitter's value."""
    pool = WorkerPool(2)
    gate = asyncio.Event()
    seen: dict[str, str] = {}

    async def fn(run: Run) -> None:
        seen[run.id] = request_id.get()
        if run.id != "third":
            await gate.wait()
        if run.id == "first":
            request_id.set("leaked")

    async def submit_third() -> Task[None]:
        await gate.wait()  # woken after "second" ends, before "first" does
        return await pool.submit(Definition(id="third", task_fn=fn))

    request_id.set("submitter")
    async with pool:
        await pool.submit(Definition(id="second", task_fn=fn))
        await pool.submit(Definition(id="first", task_fn=fn))
        await wait_all_tasks_blocked()  # both wait for the gate, "second" first
        third = asyncio.create_task(submit_third())
        await wait_all_tasks_blocked()
        gate.set()  # wakes "second", then submit_third, then "first"
        task = await third
    assert task.is_done()
    assert seen == {"first": "submitter", "second": "submitter", "third": "submitter"}
    assert only_current_task_left()


@pytest.mark.parametrize("workers", [1, 2, 5])
async def test_tasks_that_change_the_context_never_leak_into_others(workers: int) -> None:
    """Many tasks, some changing a variable, from submitters in different contexts, through
    submit and map: each task sees its submitter's value when it starts, every task ends,
    and no worker is left behind."""
    pool = WorkerPool(workers)
    seen: dict[str, str] = {}

    async def fn(run: Run) -> None:
        seen[run.id] = request_id.get()
        if run.attempt == 0 and int(run.id[1:]) % 3 == 0:
            request_id.set("leaked")
        for _ in range(int(run.id[1:]) % 2):
            await asyncio.sleep(0)

    async def submitter(name: str) -> None:
        request_id.set(name)
        for i in range(30):
            await pool.submit(Definition(id=f"{name}{i}", task_fn=fn))

    async def mapped(i: int) -> str:
        value = request_id.get()
        if i % 4 == 0:
            request_id.set("leaked")
        await asyncio.sleep(0)
        return value

    async with pool:
        await asyncio.gather(submitter("x"), submitter("y"), submitter("z"))
        request_id.set("m")
        assert [v async for v in pool.map(mapped, range(40))] == ["m"] * 40
    assert len(seen) == 90
    assert all(value == task_id[0] for task_id, value in seen.items())
    assert pool.stats().done == 90 + 40
    assert only_current_task_left()


async def test_a_kept_handle_lets_go_of_the_context_once_its_task_ended() -> None:
    class Payload:
        pass

    payload = Payload()
    alive = weakref.ref(payload)
    var: contextvars.ContextVar[Payload | None] = contextvars.ContextVar("payload")

    async def fn(run: Run) -> bool:
        return isinstance(var.get(None), Payload)

    async with WorkerPool(2) as pool:
        token = var.set(payload)
        task = await pool.submit(Definition(task_fn=fn))
        var.reset(token)
    assert task.result() is True  # it ran with the payload in its context
    assert pool.tasks() == [task]
    del payload
    gc.collect()
    assert alive() is None  # neither the handle nor the pool holds the submitter's context


async def test_a_dropped_pool_frees_the_tasks_it_kept_by_their_reference_counts() -> None:
    """Nothing of the pool's workers refers back to it: a pool nobody refers to any more is
    freed at once, with the ended tasks it keeps, not at the cyclic GC's next full
    collection (which would walk every one of them first)."""
    pool = WorkerPool(2)
    tasks = [await pool.submit(Definition(task_fn=Probe().fn(result=i))) for i in range(3)]
    await pool.shutdown()
    assert pool.tasks() == tasks
    alive = [weakref.ref(task) for task in tasks]
    gc.disable()
    try:
        del pool, tasks
        assert [ref() for ref in alive] == [None] * 3
    finally:
        gc.enable()


async def test_a_base_exception_of_a_task_of_a_pool_dropped_meanwhile_is_logged(
    hook_log: LibraryLog,
) -> None:
    """The pool is freed as its last task ends (nothing else refers to it): the
    BaseException that task raised has no pool left to stop, and is logged all the same."""

    async def fn(run: Run) -> None:
        await asyncio.sleep(0)
        raise Fatal("from the task")

    pool = WorkerPool(1)
    alive = weakref.ref(pool)
    task = await pool.submit(Definition(id="bad", task_fn=fn))
    del pool  # (the task in progress holds it until it ends)
    await task.wait()
    await wait_all_tasks_blocked()
    assert alive() is None
    assert task.is_failed()
    assert isinstance(task.error, Fatal)
    [record] = hook_log.records
    assert "task 'bad' raised Fatal" in record.getMessage()
    assert only_current_task_left()


def test_a_pool_task_run_again_with_go_runs_on_its_own() -> None:
    """An ended pool task started again with go() is no longer the pool's: the pool's counters
    and its move to a new event loop are not affected by it, nor are its hooks fired."""
    done: list[str] = []
    pool = WorkerPool(2, hooks=StateHooks(on_done=lambda task_id, when: done.append(task_id)))

    async def fn(run: Run) -> str:
        await asyncio.sleep(0)
        return run.id

    async def first() -> Task[str]:
        task = await pool.submit(Definition(id="t", task_fn=fn))
        await pool.wait()
        return task

    async def second(task: Task[str]) -> tuple[str, str]:
        task.go()
        other = await pool.submit(Definition(id="u", task_fn=fn))  # the pool moves loops
        results = await other, await task
        await pool.shutdown()
        return results

    task = run_async(first(), check_leaks=False)  # (the pool's idle workers, left behind)
    assert run_async(second(task)) == ("u", "t")
    assert counters(pool) == (2, 0, 0, 0, 2, 0, 0)
    assert done == ["t", "u"]  # the pool's hooks are for its own runs


def test_deadlines_follow_the_loops_clock_even_when_patched_on_the_loop() -> None:
    """A loop whose time() is replaced on the instance (a test's fake clock, far ahead of
    time.monotonic): deadlines are still taken on the loop's clock."""

    async def fn(run: Run) -> str:
        await asyncio.sleep(0.001)
        return "ok"

    async def main() -> list[State]:
        loop = asyncio.get_running_loop()
        real = loop.time
        loop.time = lambda: real() + 1000.0  # type: ignore[method-assign]
        async with WorkerPool(2) as pool:
            a = await pool.submit(Definition(task_fn=fn, max_duration=5))
            b = await pool.submit(Definition(task_fn=fn, total_timeout=5))
        alone = Task(Definition(task_fn=fn, max_duration=5))
        alone.go()
        await alone.wait()
        return [a.state, b.state, alone.state]

    assert run_async(main(), realtime=True) == [State.DONE] * 3


# -- exceptions that are not ours ----------------------------------------------------------------


class Fatal(BaseException):
    """Not an Exception (as KeyboardInterrupt or SystemExit): never swallowed, never retried."""


def raise_fatal(*args: Any) -> Any:
    raise Fatal(args)


@pytest.mark.parametrize("where", ["on_created", "on_pending"])
async def test_a_base_exception_from_a_hook_at_submit_ends_the_task_and_reaches_the_caller(
    where: str,
) -> None:
    pool = WorkerPool(2)
    with pytest.raises(Fatal):
        await pool.submit(
            Definition(id="bad", task_fn=Probe().fn(), hooks=StateHooks(**{where: raise_fatal}))
        )
    [bad] = pool.tasks()
    assert bad.is_failed()
    assert isinstance(bad.error, Fatal)
    assert bad.attempts == 0
    ok = await pool.submit(Definition(task_fn=Probe().fn()))  # the pool goes on
    await pool.shutdown(cancel=False)
    assert ok.is_done()
    assert_stats_match(pool)
    assert only_current_task_left()


async def test_a_hook_that_cancels_its_task_at_creation_gets_no_pending_hook() -> None:
    seen: list[str] = []

    def on_created(task_id: str, when: Any) -> None:
        seen.append("created")
        [task] = pool.tasks()
        assert task.cancel()

    hooks = StateHooks(
        on_created=on_created,
        on_pending=lambda *a: seen.append("pending"),
        on_canceled=lambda *a: seen.append("canceled"),
    )
    pool = WorkerPool(1, hooks=hooks)
    task = await pool.submit(Definition(task_fn=Probe().fn()))
    await pool.shutdown()
    assert task.is_canceled()
    assert task.attempts == 0
    assert seen == ["created", "canceled"]


@pytest.mark.parametrize("where", ["on_started", "on_done", "retry_on", "backoff"])
async def test_a_base_exception_in_a_worker_ends_its_task_then_stops_the_pool(
    where: str, hook_log: LibraryLog
) -> None:
    """asyncio's way: it goes up, and the worker with it; the pool then stops and cancels
    what is left, logs it and raises it from its next wait(). Every task still ends, in
    exactly one state, and nothing hangs."""
    options: dict[str, Any] = {"task_fn": Probe().fn()}
    if where in ("on_started", "on_done"):
        options["hooks"] = StateHooks(**{where: raise_fatal})
    else:
        options.update(task_fn=Probe().fn(error=OSError("flaky")), max_retries=2)
        options[where] = raise_fatal
    pool = WorkerPool(2)
    other = await pool.submit(Definition(id="other", task_fn=forever(), max_duration=None))
    bad = await pool.submit(Definition(id="bad", **options))
    async with asyncio.timeout(GUARD):
        with pytest.raises(Fatal):
            await pool.wait()
        await pool.wait()  # raised once
    [record] = hook_log.records
    assert "task 'bad' raised Fatal" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Fatal)
    if where == "on_done":
        assert bad.is_done()  # it had ended when the hook raised
    else:
        assert bad.is_failed()
        assert isinstance(bad.error, Fatal)
    assert other.is_canceled()
    assert pool.is_stopped()
    assert_stats_match(pool)
    await pool.shutdown()
    assert only_current_task_left()


async def test_gather_and_as_completed_refuse_a_task_never_started() -> None:
    never = Task(Definition(id="never", task_fn=Probe().fn()))
    async with WorkerPool(1) as pool:
        with pytest.raises(InvalidStateError, match="never started"):
            await pool.gather([never])
        with pytest.raises(InvalidStateError, match="never started"):
            async for _ in pool.as_completed([never]):
                pass
        assert pool.tasks() == []


async def test_gather_waits_once_for_a_task_given_twice(caplog: pytest.LogCaptureFixture) -> None:
    async with WorkerPool(1) as pool:
        task = await pool.submit(Definition(id="twice", task_fn=Probe().fn(result=7)))
        assert await pool.gather([task, task]) == [7, 7]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_shutdown_with_timeout_zero_on_an_idle_pool_ends_its_workers() -> None:
    pool = WorkerPool(2)
    await pool.submit(Definition(task_fn=Probe().fn()))
    await pool.wait()
    await wait_all_tasks_blocked()  # the workers park
    await pool.shutdown(timeout=0)
    assert only_current_task_left()


def test_a_pool_whose_loop_was_closed_under_its_tasks_says_so() -> None:
    """asyncio.run() ends every task before closing its loop; a loop closed otherwise leaves
    the pool's tasks unable ever to end. The pool says so instead of hanging."""
    pool = WorkerPool(1)
    old = asyncio.new_event_loop()
    task = old.run_until_complete(pool.submit(Definition(task_fn=forever(), max_duration=None)))
    old.run_until_complete(asyncio.sleep(0))
    old.close()  # without ending the pool's task
    assert task.is_started()

    async def on_a_new_loop(call: Callable[[], Awaitable[Any]]) -> None:
        with pytest.raises(RuntimeError, match="closed with 1 of its tasks in progress"):
            await call()

    asyncio.run(on_a_new_loop(lambda: pool.submit(Definition(task_fn=Probe().fn()))))
    asyncio.run(on_a_new_loop(pool.wait))
    asyncio.run(on_a_new_loop(pool.shutdown))


async def test_a_function_raising_generator_exit_fails_its_task() -> None:
    async def fn(run: Run) -> None:
        raise GeneratorExit("not the GC")

    pool = WorkerPool(2)
    other = await pool.submit(Definition(task_fn=forever(), max_duration=None))
    task = await pool.submit(Definition(task_fn=fn))
    async with asyncio.timeout(GUARD):
        with pytest.raises(GeneratorExit, match="not the GC"):
            await pool.wait()
    assert task.is_failed()
    assert isinstance(task.error, GeneratorExit)
    assert other.is_canceled()
    assert pool.is_stopped()
    assert_stats_match(pool)
    await pool.shutdown()
    assert only_current_task_left()


# -- a task's own cancellation bookkeeping stays its own ---------------------------------------


async def task_group_child_fails(run: Run) -> None:
    """A TaskGroup whose child fails while the body waits in ``__aexit__``: CPython 3.11 and
    3.12 leave the parent task's ``cancelling()`` at 1 (the parent is the pool's worker)."""

    async def boom() -> None:
        await asyncio.sleep(0)  # (fails while the body waits in __aexit__, eager factory too)
        raise ValueError("child")

    async with asyncio.TaskGroup() as group:
        group.create_task(boom())


async def swallows_its_own_cancel(run: Run) -> str:
    current = asyncio.current_task()
    assert current is not None
    current.cancel()
    with contextlib.suppress(asyncio.CancelledError):  # swallowed, never uncancel()ed:
        await asyncio.sleep(0)  # the count stays at 1
    return "swallowed"


LEAKERS = {"task_group": task_group_child_fails, "self_cancel": swallows_its_own_cancel}


def check_leaker(task: Task[Any], leaker: str) -> None:
    if leaker == "task_group":
        assert task.is_failed()
        assert isinstance(task.error, ExceptionGroup)
    else:
        assert task.result() == "swallowed"


@pytest.mark.parametrize("leaker", list(LEAKERS))
async def test_a_tasks_leftover_cancellation_does_not_poison_the_next_task_on_its_worker(
    leaker: str,
) -> None:
    """The next task on that worker that timed out used to end CANCELED, taken for a
    cancellation from outside: the pool then stopped and canceled everything."""
    pool = WorkerPool(1)  # one worker: the tasks run one after the other on it
    first = await pool.submit(Definition(id="first", task_fn=LEAKERS[leaker]))
    await first.wait()
    check_leaker(first, leaker)
    worker = next(iter(pool._crew.workers))
    assert worker.cancelling() == 0  # what the task left was taken back
    timed_out = await pool.submit(Definition(id="slow", task_fn=forever(), max_duration=5))
    async with asyncio.timeout(GUARD):
        await timed_out.wait()
    assert timed_out.is_failed()
    assert isinstance(timed_out.error, TaskTimeoutError)
    assert not pool.is_stopped()
    after = await pool.submit(Definition(id="after", task_fn=Probe().fn(result=3)))
    assert await after == 3
    assert next(iter(pool._crew.workers)) is worker  # the same worker all along
    assert_stats_match(pool)
    await pool.shutdown()


@pytest.mark.parametrize("leaker", list(LEAKERS))
async def test_a_leftover_cancellation_does_not_poison_the_next_attempt(leaker: str) -> None:
    """Within a task too: the attempt after a leaking one times out as a timeout."""
    attempts: list[int] = []

    async def fn(run: Run) -> None:
        attempts.append(run.attempt)
        if run.attempt == 0:
            await LEAKERS[leaker](run)
            raise OSError("retry me")  # (the self-cancel one returned: make it fail)
        await asyncio.Event().wait()

    pool = WorkerPool(1)
    task = await pool.submit(Definition(task_fn=fn, max_retries=1, max_duration=5))
    async with asyncio.timeout(GUARD):
        await task.wait()
    assert attempts == [0, 1]
    assert task.is_failed()
    assert isinstance(task.error, TaskTimeoutError)
    assert not pool.is_stopped()
    assert_stats_match(pool)
    await pool.shutdown()


@pytest.mark.realtime
@pytest.mark.parametrize("leaker", list(LEAKERS))
def test_blocking_pool_a_leftover_cancellation_does_not_poison_the_next_task(
    leaker: str,
) -> None:
    from asynctasklib import blocking

    with blocking.WorkerPool(1) as pool:
        first = pool.submit(Definition(id="first", task_fn=LEAKERS[leaker]))
        first.wait()
        if leaker == "task_group":
            assert first.is_failed()
            assert isinstance(first.error, ExceptionGroup)
        else:
            assert first.result() == "swallowed"
        timed_out = pool.submit(Definition(id="slow", task_fn=forever(), max_duration=0.01))
        timed_out.wait(timeout=REAL_GUARD)
        assert timed_out.is_failed()
        assert isinstance(timed_out.error, TaskTimeoutError)
        assert not pool.is_stopped()
        assert pool.submit(Definition(task_fn=Probe().fn(result=3))).result(REAL_GUARD) == 3


# -- a BaseException from a task reaches the application -------------------------------------


async def raises_now(error: BaseException) -> None:
    await asyncio.sleep(1)
    raise error


async def next_call(pool: WorkerPool, where: str) -> None:
    if where == "submit":
        await pool.submit(Definition(task_fn=Probe().fn()))
    elif where == "wait":
        await pool.wait()
    elif where == "shutdown":
        await pool.shutdown()
    else:
        async with pool:
            pass


@pytest.mark.parametrize("kind", [Fatal, GeneratorExit])
@pytest.mark.parametrize("where", ["submit", "wait", "shutdown", "async_with"])
async def test_a_base_exception_from_a_task_function_is_logged_and_raised_by_the_pool(
    kind: type[BaseException], where: str, hook_log: LibraryLog
) -> None:
    """It used to stop the pool and cancel the rest silently: the worker's done callback
    retrieved it and dropped it. Now, as asyncio.TaskGroup does with a child's BaseException,
    the pool stops, cancels its other tasks, logs it, and raises it from its next call."""
    error = kind("from the task")

    async def fn(run: Run) -> None:
        await raises_now(error)

    pool = WorkerPool(3)
    others = [
        await pool.submit(Definition(id=f"other{i}", task_fn=forever(), max_duration=None))
        for i in range(2)
    ]
    queued = await pool.submit(Definition(id="bad", task_fn=fn))
    async with asyncio.timeout(GUARD):
        while not pool.is_stopped():
            await asyncio.sleep(1)
        with pytest.raises(kind) as raised:
            await next_call(pool, where)
        assert raised.value is error
        await pool.shutdown()  # raised once: now the pool is only stopped
        with pytest.raises(PoolStoppedError):
            await pool.submit(Definition(task_fn=Probe().fn()))
    assert queued.is_failed()
    assert queued.error is error
    assert all(task.is_canceled() for task in others)
    s = assert_stats_match(pool)
    assert (s.failed, s.canceled) == (1, 2)
    [record] = hook_log.records
    assert f"task 'bad' raised {kind.__name__}" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert only_current_task_left()


async def test_a_base_exception_already_raised_through_async_with_is_not_raised_again(
    hook_log: LibraryLog,
) -> None:
    error = Fatal("once")

    async def fn(run: Run) -> None:
        await raises_now(error)

    pool = WorkerPool(2)
    other = await pool.submit(Definition(task_fn=forever(), max_duration=None))

    async def body() -> None:
        async with pool:
            await pool.gather([Definition(id="bad", task_fn=fn)])

    with pytest.raises(Fatal) as raised:
        await body()
    assert raised.value is error
    frames = [tb.name for tb in raised.traceback]
    assert "_raise_error" not in frames  # not raised a second time over itself
    await pool.shutdown()  # delivered already
    assert other.is_canceled()
    assert len(hook_log.records) == 1


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_with_parked_workers_stops_the_pool_quietly(
    kind: type[BaseException],
) -> None:
    """asyncio raises these out of the loop itself. The worker's done callback then stopped
    the pool by setting a result on the parked workers' futures, canceled with them as the
    loop shut down: "Exception in callback WorkerPool._worker_exited: InvalidStateError", and
    the rest of the stop was skipped."""
    errors: list[dict[str, Any]] = []
    pool = WorkerPool(4)
    tasks: list[Task[Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        for _ in range(4):  # four workers, idle
            await pool.submit(Definition(task_fn=Probe().fn()))
        await pool.wait()
        tasks.append(await pool.submit(Definition(id="long", task_fn=forever())))
        bad = Probe().fn(seconds=0.001, error=kind())  # (raised once the others have parked)
        tasks.append(await pool.submit(Definition(id="bad", task_fn=bad)))
        await asyncio.Event().wait()

    with asyncio.Runner() as runner, pytest.raises(kind):
        runner.run(main())
    assert errors == []
    long, bad = tasks
    assert bad.is_failed()
    assert isinstance(bad.error, kind)
    assert long.is_canceled()
    assert pool.is_stopped()
    assert_stats_match(pool)


# -- a coroutine returned by a plain function whose result is discarded --------------------------


async def later() -> None:
    """Never meant to run: what the plain functions below return."""


def returns_a_coroutine_once_told_to_stop(run: Run) -> Any:
    run.wait_canceled(REAL_GUARD)
    return later()  # a lambda around an async def, say: nobody will await this one


async def calls_taken_back(pool: WorkerPool) -> None:
    """Until the executor's calls have ended and the loop has taken their outcomes."""
    async with asyncio.timeout(REAL_GUARD):
        while pool._bridge.calls or pool._bridge.ended_scheduled:
            await asyncio.sleep(0.001)


@pytest.mark.realtime
@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_coroutine_returned_by_a_canceled_plain_function_is_closed(how: str) -> None:
    """It used to warn 'coroutine ... was never awaited' when collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = WorkerPool(1)
        duration = 0.01 if how == "timeout" else None
        task = await pool.submit(
            Definition(task_fn=returns_a_coroutine_once_told_to_stop, max_duration=duration)
        )
        if how == "cancel":
            while not task.is_started():
                await asyncio.sleep(0.001)
            task.cancel()
        await task.wait()
        await calls_taken_back(pool)
        await pool.shutdown()
        gc.collect()
    assert task.is_canceled() if how == "cancel" else task.is_failed()
    assert [str(w.message) for w in caught] == []


@pytest.mark.realtime
async def test_a_coroutine_from_a_plain_mapped_function_whose_result_is_dropped_is_closed() -> None:
    """A mapped function gets its item, not a Run: the pool closes the coroutine it
    returns once it sees nobody takes it."""
    release = threading.Event()
    running = threading.Event()

    def fn(item: int) -> Any:
        running.set()
        release.wait(REAL_GUARD)
        return later()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = WorkerPool(1)
        results = pool.map(fn, [1])
        consumer = asyncio.create_task(results.__anext__())
        while not running.is_set():
            await asyncio.sleep(0.001)
        consumer.cancel()  # the consumer leaves: the task is canceled, its result dropped
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await results.aclose()
        release.set()
        await calls_taken_back(pool)
        await pool.shutdown()
        del results, consumer
        gc.collect()
    assert [str(w.message) for w in caught] == []


@pytest.mark.realtime
def test_blocking_pool_a_generator_exit_from_a_task_is_logged_and_stops_the_pool(
    hook_log: LibraryLog,
) -> None:
    """The blocking face has no application loop to raise it in: the task's waiters get
    it, it is logged, and the pool stops and cancels the rest."""
    from asynctasklib import blocking

    async def fn(run: Run) -> None:
        raise GeneratorExit("from the task")

    pool = blocking.WorkerPool(2)
    other = pool.submit(Definition(id="other", task_fn=forever(), max_duration=None))
    bad = pool.submit(Definition(id="bad", task_fn=fn))
    with pytest.raises(GeneratorExit):
        bad.result(REAL_GUARD)
    assert other.wait(REAL_GUARD)
    assert other.is_canceled()
    assert pool.is_stopped()
    pool.shutdown()  # (not raised again: it reached the task's waiters)
    [record] = hook_log.records
    assert "task 'bad' raised GeneratorExit" in record.getMessage()
