"""The test helpers themselves: `wait_all_tasks_blocked` on the virtual-clock loop, and
`yield_turns`, its stand-in on real-time loops.

A helper that returned too early would let the tests that use it pass without having seen
what they claim to check, so each property is shown with more steps than any fixed number
of ``sleep(0)`` rounds would have covered.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from _helpers import now, wait_all_tasks_blocked, yield_turns
from asynctasklib import Definition, Run, WorkerPool

STEPS = 1000  # far more loop turns than any "settle" count the tests used to guess


class Busy:
    """A task body that takes ``STEPS`` turns of the loop, counting them."""

    def __init__(self) -> None:
        self.steps = 0

    async def run(self) -> None:
        for _ in range(STEPS):
            self.steps += 1
            await asyncio.sleep(0)


async def test_returns_only_once_a_long_chain_of_steps_has_run() -> None:
    busy = Busy()
    task = asyncio.create_task(busy.run())
    await wait_all_tasks_blocked()
    assert busy.steps == STEPS
    assert task.done()
    assert now() == 0.0


async def test_plain_callbacks_count_as_ready_too() -> None:
    loop = asyncio.get_running_loop()
    calls: list[int] = []

    def step(n: int) -> None:
        calls.append(n)
        if n:
            loop.call_soon(step, n - 1)

    loop.call_soon(step, STEPS)
    await wait_all_tasks_blocked()
    assert calls == list(range(STEPS, -1, -1))


async def test_no_virtual_time_passes_and_timers_still_wait() -> None:
    woke: list[float] = []

    async def sleeper() -> None:
        await asyncio.sleep(5)
        woke.append(now())

    task = asyncio.create_task(sleeper())
    await wait_all_tasks_blocked()
    assert now() == 0.0
    assert woke == []
    await task
    assert woke == [5.0]


async def test_a_task_waiting_on_an_event_counts_as_blocked() -> None:
    event = asyncio.Event()
    seen: list[str] = []

    async def waiter() -> None:
        seen.append("waiting")
        await event.wait()
        seen.append("woke")

    task = asyncio.create_task(waiter())
    await wait_all_tasks_blocked()
    assert seen == ["waiting"]
    assert not task.done()
    event.set()
    await wait_all_tasks_blocked()
    assert seen == ["waiting", "woke"]
    assert task.done()


async def test_returns_at_once_when_nothing_else_runs() -> None:
    await wait_all_tasks_blocked()
    await wait_all_tasks_blocked()
    assert now() == 0.0


async def test_every_caller_waiting_wakes_at_the_same_moment() -> None:
    async def other() -> None:
        await wait_all_tasks_blocked()

    others = [asyncio.create_task(other()) for _ in range(2)]
    await wait_all_tasks_blocked()
    await asyncio.sleep(0)  # one turn: the others were woken with this task, so they ended
    assert all(t.done() for t in others)
    assert now() == 0.0


async def test_a_canceled_wait_leaves_nothing_behind() -> None:
    waiting = asyncio.create_task(wait_all_tasks_blocked())
    await asyncio.sleep(0)  # it waits now
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await wait_all_tasks_blocked()
    assert now() == 0.0
    await asyncio.sleep(3)  # and the clock still jumps to the next timer
    assert now() == 3.0


async def test_pool_tasks_run_to_their_end_before_it_returns() -> None:
    ended: list[str] = []

    async def fn(run: Run) -> None:
        for _ in range(int(run.id)):
            await asyncio.sleep(0)
        ended.append(run.id)

    async with WorkerPool(3) as pool:
        tasks = [await pool.submit(Definition(id=str(n), task_fn=fn)) for n in (50, 5, 500)]
        await wait_all_tasks_blocked()
        assert sorted(ended, key=int) == ["5", "50", "500"]
        assert all(t.is_done() for t in tasks)
    assert now() == 0.0


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12+")
async def test_works_under_an_eager_task_factory() -> None:
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    busy = Busy()
    task = asyncio.create_task(busy.run())
    assert busy.steps == 1  # (eager: its first step ran inside create_task)
    await wait_all_tasks_blocked()
    assert busy.steps == STEPS
    assert task.done()
    assert now() == 0.0


@pytest.mark.realtime
async def test_needs_the_virtual_clock() -> None:
    with pytest.raises(TypeError, match="needs the virtual-clock loop"):
        await wait_all_tasks_blocked()


@pytest.mark.realtime
async def test_yield_turns_runs_the_loop_that_many_times_on_a_real_time_loop() -> None:
    loop = asyncio.get_running_loop()
    calls: list[int] = []

    def step(n: int) -> None:  # one step a turn of the loop, 100 in all
        calls.append(n)
        if n < 100:
            loop.call_soon(step, n + 1)

    loop.call_soon(step, 1)
    await yield_turns(5)
    assert calls == [1, 2, 3, 4, 5]


async def test_yield_turns_is_refused_on_the_virtual_clock() -> None:
    with pytest.raises(TypeError, match="use wait_all_tasks_blocked"):
        await yield_turns()
