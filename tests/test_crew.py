"""The pool's workers (`_crew`): a worker taken in as the last one ends still runs its task,
parked workers hold nothing of what they ran and time out their next attempt, a parked
worker canceled from outside is not woken, and a dropped pool's idle workers end with it.

Async tests run on the virtual-clock loop (tests/conftest.py); every wait a bug could turn
into a hang is guarded.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from _helpers import (
    GUARD,
    Probe,
    assert_stats_match,
    forever,
    now,
    only_current_task_left,
    wait_all_tasks_blocked,
)
from asynctasklib import Definition, Run, StateHooks, TaskFnNotSetError, WorkerPool


async def test_a_task_taken_in_as_a_stopped_worker_ends_still_runs() -> None:
    """The blocking face takes in a task whose submitter took its slot before the stop;
    arriving after the last worker ended but before the crew heard of it, it found the
    crew full, and waited forever (a hang seen in CI). Fails before the fix."""

    async def quick(run: Run) -> int:
        return 1

    pool = WorkerPool(1)
    assert await (await pool.submit(Definition(task_fn=quick))) == 1
    crew = pool._crew
    (atask,) = list(crew.workers)
    assert pool._slots.take_nowait()  # a submitter's slot, taken before the stop
    pool.stop()
    for _ in range(100):
        if atask.done() and atask in crew.workers:
            break  # the worker has ended; the crew has not heard of it yet
        await asyncio.sleep(0)
    else:
        raise AssertionError("the worker did not end")
    task = pool._new_task(Definition(task_fn=quick))
    pool._enqueue(task)
    async with asyncio.timeout(GUARD):
        assert await task == 1
    await pool.shutdown()


async def test_a_pool_dropped_without_shutdown_is_freed_with_its_idle_workers() -> None:
    """As a ThreadPoolExecutor's threads end when it is collected: the idle workers of a pool
    nobody refers to any more end with it, without the loop reporting a destroyed task."""
    pool = WorkerPool(3)

    async def fn(run: Run, pool: WorkerPool = pool) -> int:  # a task that refers to its pool
        await asyncio.sleep(0)
        return pool.max_workers

    tasks = [await pool.submit(Definition(task_fn=fn)) for _ in range(6)]
    await pool.wait()
    assert [t.result() for t in tasks] == [3] * 6
    await wait_all_tasks_blocked()  # the workers park
    assert len(asyncio.all_tasks()) == 1 + 3
    alive = weakref.ref(pool)
    del pool, fn, tasks  # (the handles' definitions refer to the pool too)
    gc.collect()
    assert alive() is None
    assert only_current_task_left()


async def test_a_worker_that_parked_times_out_its_next_attempt() -> None:
    """A parked worker disarms its deadline timer; the next attempt arms it again."""
    async with WorkerPool(1) as pool:
        await pool.submit(Definition(task_fn=Probe().fn()))
        await pool.wait()
        await wait_all_tasks_blocked()  # parked
        start = now()
        task = await pool.submit(Definition(task_fn=forever(), max_duration=5))
        await task.wait()
        assert task.is_failed()
        assert isinstance(task.error, TimeoutError)
        assert now() - start == 5


async def test_idle_workers_hold_nothing_of_the_tasks_they_ran() -> None:
    """With retain_finished=False and the handles dropped, an ended task's result is freed:
    the worker that ran it, now idle, keeps no reference to it."""

    class Result:
        pass

    freed: list[weakref.ref[Result]] = []

    async def fn(run: Run) -> Result:
        result = Result()
        freed.append(weakref.ref(result))
        return result

    async with WorkerPool(2, retain_finished=False) as pool:
        for _ in range(4):
            await pool.submit(Definition(task_fn=fn))
        await pool.wait()
        await wait_all_tasks_blocked()  # the workers park
        gc.collect()
        assert len(freed) == 4
        assert [ref() for ref in freed] == [None] * 4


async def test_idle_workers_hold_nothing_of_the_definitions_they_ran() -> None:
    """Nor of its definition: its task_fn, its hooks (and what they refer to), the error of a
    task with no task_fn."""

    class Marker:
        pass

    refs: list[weakref.ref[Marker]] = []

    def definition(with_fn: bool) -> Definition[Any]:
        marker = Marker()
        refs.append(weakref.ref(marker))

        async def fn(run: Run) -> None:
            assert marker

        def on_end(*args: Any) -> None:
            assert marker

        hooks = StateHooks(on_started=on_end, on_done=on_end, on_failed=on_end)
        return Definition(task_fn=fn if with_fn else None, hooks=hooks)

    async with WorkerPool(2, retain_finished=False) as pool:
        for with_fn in (True, False, True, False):
            await pool.submit(definition(with_fn))
        await pool.wait()
        await wait_all_tasks_blocked()  # the workers park
        gc.collect()
        assert [ref() for ref in refs] == [None] * 4
        assert not [o for o in gc.get_objects() if isinstance(o, TaskFnNotSetError)]


async def test_a_worker_canceled_while_parked_is_not_woken() -> None:
    """A parked worker canceled from outside (its parked future canceled with it) stays in
    the idle list until its done callback runs: a submit() in between used to set a result on
    that canceled future (InvalidStateError, raised to the submitter)."""
    pool = WorkerPool(2)
    await pool.gather([Definition(task_fn=Probe().fn(seconds=1)) for _ in range(2)])
    await wait_all_tasks_blocked()  # both workers parked
    workers = list(pool._crew.workers)
    assert len(pool._crew.idle) == 2
    for worker in workers:
        worker.cancel()
    task = await pool.submit(Definition(task_fn=Probe().fn()))  # (before they have ended)
    async with asyncio.timeout(GUARD):
        await task.wait()
    assert task.is_canceled()  # the workers were canceled from outside: the pool stops
    assert pool.is_stopped()
    assert all(worker.cancelled() for worker in workers)
    assert_stats_match(pool)
    await pool.shutdown()
    assert only_current_task_left()
