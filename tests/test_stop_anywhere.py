"""stop(), shutdown() and shutdown(cancel=True) landed at every step of a map and of a run of
submits: every consumer and submitter ends, and every task submitted ends in exactly one
terminal state, with the pool's stats matching a recount.

Exhaustive over the steps: the stopper counts turns of the event loop (``sleep(0)``) before
it stops the pool, for every count from 0 until the scenario had ended before it stopped.
The task functions only take turns of the loop (no virtual time passes while the stopper
counts), so each count lands the stop at a different point of the run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from _helpers import GUARD
from asynctasklib import (
    Definition,
    PoolStoppedError,
    Run,
    State,
    StateHooks,
    TaskCanceledError,
    WorkerPool,
)
from conftest import run_async

MAX_STEPS = 400  # far more turns than any scenario below takes to end by itself
ITEMS = 7
STOPS = ["stop", "shutdown", "shutdown_cancel"]


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def work(x: int) -> int:
    await turns(x % 3)  # 0, 1 or 2 turns of the loop: tasks end in varying orders
    return x * 10


class Ends:
    """Hooks that record each task's terminal state (map tasks are not kept in tasks())."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.ended: dict[str, list[State]] = {}

    def hooks(self) -> StateHooks:
        def end(state: State) -> Callable[..., None]:
            return lambda task_id, *_: self.ended.setdefault(task_id, []).append(state)

        return StateHooks(
            on_created=lambda task_id, *_: self.created.append(task_id),
            on_done=end(State.DONE),
            on_failed=end(State.FAILED),
            on_canceled=end(State.CANCELED),
        )

    def check(self, pool: WorkerPool) -> None:
        assert sorted(self.ended) == sorted(self.created)  # every task ended...
        assert all(len(states) == 1 for states in self.ended.values())  # ...once
        recount = Counter(states[0] for states in self.ended.values())
        s = pool.stats()
        assert s.total == len(self.created)
        assert (s.pending, s.started, s.active_workers) == (0, 0, 0)
        assert (s.done, s.failed, s.canceled) == (
            recount[State.DONE],
            recount[State.FAILED],
            recount[State.CANCELED],
        )


async def stop_after(pool: WorkerPool, steps: int, how: str) -> None:
    await turns(steps)
    if how == "stop":
        pool.stop()
    await pool.shutdown(cancel=how == "shutdown_cancel")


async def scenario(
    steps: int, how: str, run: Callable[[WorkerPool, Ends], Awaitable[bool]]
) -> bool:
    """Run ``run`` with the pool stopped after ``steps`` turns; True if ``run`` had ended
    before the stop landed."""
    ends = Ends()
    pool = WorkerPool(2, hooks=ends.hooks())
    stopper = asyncio.create_task(stop_after(pool, steps, how))
    async with asyncio.timeout(GUARD):  # every consumer and submitter ends
        finished_first = await run(pool, ends)
        await stopper
    await pool.shutdown()
    ends.check(pool)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    return finished_first and not pool.stats().canceled


def every_step(how: str, run: Callable[[WorkerPool, Ends], Awaitable[bool]]) -> int:
    for steps in range(MAX_STEPS):
        if run_async(scenario(steps, how, run)):
            return steps  # stopped after the run had ended: later steps add nothing
    pytest.fail(f"the scenario did not end within {MAX_STEPS} turns of the loop")


async def consume_map(pool: WorkerPool, ends: Ends, *, ordered: bool, window: int) -> bool:
    got: list[int] = []
    try:
        async for result in pool.map(work, range(ITEMS), ordered=ordered, window=window):
            got.append(result)
    except PoolStoppedError:
        outcome = "stopped"
    except TaskCanceledError:
        outcome = "canceled"
    else:
        outcome = "all"
    expected = [x * 10 for x in range(ITEMS)]
    if ordered:
        assert got == expected[: len(got)]  # in order, a prefix of the input's
    else:
        assert sorted(got) == sorted(set(got))
        assert set(got) <= set(expected)
    if outcome == "all":
        assert sorted(got) == expected
    # Every result yielded is a task that ended DONE.
    assert len(got) <= sum(states == [State.DONE] for states in ends.ended.values())
    return outcome == "all"


@pytest.mark.parametrize("how", STOPS)
@pytest.mark.parametrize(("ordered", "window"), [(True, 4), (False, 4), (True, 1)])
def test_a_stop_at_every_step_of_a_map_ends_its_consumer(
    how: str, ordered: bool, window: int
) -> None:
    steps = every_step(
        how, lambda pool, ends: consume_map(pool, ends, ordered=ordered, window=window)
    )
    assert steps > 5  # the stop did land inside the run, at many points


async def submit_all(pool: WorkerPool, ends: Ends) -> bool:
    async def fn(run: Run) -> int:
        await turns(int(run.id) % 3)
        return int(run.id)

    submitted = []
    try:
        for i in range(ITEMS):
            submitted.append(await pool.submit(Definition(id=str(i), task_fn=fn)))
    except PoolStoppedError:
        pass
    await asyncio.gather(*(task.wait() for task in submitted))
    assert [task.id for task in submitted] == ends.created
    assert pool.tasks() == submitted
    for task in submitted:  # each ended in one state, its outcome to match
        assert task.is_end()
        if task.is_done():
            assert task.result() == int(task.id)
        else:
            assert task.is_canceled()
            assert isinstance(task.error, TaskCanceledError)
    return len(submitted) == ITEMS and all(task.is_done() for task in submitted)


@pytest.mark.parametrize("how", STOPS)
def test_a_stop_at_every_step_of_a_run_of_submits_leaves_no_task_behind(how: str) -> None:
    steps = every_step(how, submit_all)
    assert steps > 5
