"""`_stats`: the facts a pool counts (`_Counts`) and the `PoolStats` derived from them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asynctasklib import Definition, PoolStats, Run, WorkerPool
from asynctasklib._stats import _Counts


def test_counts_start_at_zero() -> None:
    counts = _Counts()
    facts = (counts.submitted, counts.attempts, counts.left)
    ends = (counts.done, counts.failed, counts.canceled)
    assert (*facts, *ends) == (0,) * 6
    assert counts.in_progress == 0
    assert counts.snapshot(4, 0, False) == PoolStats(
        total=0,
        created=0,
        pending=0,
        started=0,
        done=0,
        failed=0,
        canceled=0,
        max_workers=4,
        active_workers=0,
        stopped=False,
    )


def test_counts_are_slotted_named_fields() -> None:
    counts = _Counts()
    with pytest.raises(AttributeError):
        counts.other = 1  # type: ignore[attr-defined]


def test_the_snapshot_derives_each_state_from_the_facts() -> None:
    # 7 taken in; 6 attempts started: 2 DONE, 1 retried, 1 FAILED while STARTED, so 2 still
    # run; 1 CANCELED before it started. In progress: 7 - 2 - 1 - 1 = 3, of which 2 STARTED.
    counts = _Counts()
    counts.submitted, counts.attempts, counts.left = 7, 6, 2
    counts.done, counts.failed, counts.canceled = 2, 1, 1
    stats = counts.snapshot(max_workers=5, active_workers=3, stopped=True)
    assert counts.in_progress == 3
    assert (stats.total, stats.created, stats.pending, stats.started) == (7, 0, 1, 2)
    assert (stats.done, stats.failed, stats.canceled) == (2, 1, 1)
    assert (stats.max_workers, stats.active_workers, stats.stopped) == (5, 3, True)


async def test_a_pool_counts_each_fact_once() -> None:
    """Two retries then a success, a failure, a task canceled as it runs, one canceled
    while it waits for a worker: the counters hold the facts, stats() what they add up to."""
    tries: list[int] = []

    async def flaky(run: Run) -> str:
        tries.append(run.attempt)
        if run.attempt < 2:
            raise ValueError("again")
        return "ok"

    async def broken(run: Run) -> Any:
        raise KeyError("no")

    async def slow(run: Run) -> None:
        await asyncio.sleep(10)

    pool = WorkerPool(4, retain_finished=False)
    first = await pool.submit(Definition(task_fn=flaky, max_retries=2, backoff=0.1))
    second = await pool.submit(Definition(task_fn=broken))
    third = await pool.submit(Definition(task_fn=slow))
    queued = await pool.submit(Definition(task_fn=slow))
    queued.cancel()  # no worker has taken it yet: it never starts
    await first.wait()
    await second.wait()
    assert third.is_started()
    third.cancel()
    await pool.shutdown()
    counts = pool._counts
    assert tries == [0, 1, 2]
    assert (counts.submitted, counts.attempts, counts.left) == (4, 5, 4)
    assert (counts.done, counts.failed, counts.canceled) == (1, 1, 2)
    stats = pool.stats()
    assert (stats.total, stats.pending, stats.started) == (4, 0, 0)
    assert (stats.done, stats.failed, stats.canceled) == (1, 1, 2)
