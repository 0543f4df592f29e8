"""`Semaphore`: limits, acquire/release/try_acquire, timeouts, FIFO fairness, cancellation.

Async tests run on the virtual-clock loop (tests/conftest.py): timeouts are instant and the
elapsed ``loop.time()`` is exact, so timeouts are checked to the exact value.
"""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import timedelta

import pytest

from _helpers import now, wait_all_tasks_blocked, yield_turns
from asynctasklib import Semaphore
from asynctasklib._semaphore import _Slots
from asynctasklib.workflow import Semaphore as WorkflowSemaphore
from conftest import run_async

# -- construction ---------------------------------------------------------------------------


def test_same_class_from_both_namespaces() -> None:
    assert WorkflowSemaphore is Semaphore


@pytest.mark.parametrize("limit", [0, -1, -100])
def test_limit_below_one_is_value_error(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        Semaphore(limit)


@pytest.mark.parametrize("limit", [1.0, 2.5, "3", None, True, False])
def test_limit_not_an_int_is_type_error(limit: object) -> None:
    with pytest.raises(TypeError, match="limit"):
        Semaphore(limit)  # type: ignore[arg-type]


def test_constructible_without_event_loop_then_used_on_one() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    sem = Semaphore(2)
    assert (sem.limit, sem.available, sem.acquired) == (2, 2, 0)
    assert sem.try_acquire()  # no loop needed for the non-waiting path
    assert sem.available == 1
    sem.release()

    async def use() -> int:
        await sem.acquire()
        await sem.acquire()
        held = sem.acquired
        sem.release()
        sem.release()
        return held

    assert run_async(use()) == 2
    assert sem.available == 2


def test_initial_properties() -> None:
    sem = Semaphore(7)
    assert sem.limit == 7
    assert sem.available == 7
    assert sem.acquired == 0


# -- acquire / release / try_acquire --------------------------------------------------------


async def test_acquire_and_release_update_counts() -> None:
    sem = Semaphore(3)
    start = now()
    for i in range(1, 4):
        await sem.acquire()
        assert (sem.available, sem.acquired) == (3 - i, i)
    assert now() == start  # none of them waited
    for i in range(2, -1, -1):
        sem.release()
        assert (sem.available, sem.acquired) == (3 - i, i)
    assert sem.limit == 3


def test_release_with_nothing_held_is_value_error() -> None:
    sem = Semaphore(2)
    with pytest.raises(ValueError, match="release"):
        sem.release()
    assert (sem.available, sem.acquired) == (2, 0)
    assert sem.try_acquire()
    sem.release()
    with pytest.raises(ValueError, match="release"):
        sem.release()
    assert (sem.available, sem.acquired) == (2, 0)


def test_try_acquire_until_full() -> None:
    sem = Semaphore(2)
    assert sem.try_acquire() is True
    assert sem.try_acquire() is True
    assert sem.try_acquire() is False
    assert sem.try_acquire() is False
    assert (sem.available, sem.acquired) == (0, 2)
    sem.release()
    assert sem.try_acquire() is True
    assert sem.acquired == 2


async def test_acquire_waits_for_release() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    got_it = asyncio.Event()

    async def waiter() -> None:
        await sem.acquire()
        got_it.set()

    task = asyncio.create_task(waiter())
    await wait_all_tasks_blocked()
    assert not got_it.is_set()
    assert (sem.available, sem.acquired) == (0, 1)
    sem.release()
    # The slot goes straight to the waiter: it is never seen as available.
    assert (sem.available, sem.acquired) == (0, 1)
    await task
    assert got_it.is_set()
    sem.release()
    assert sem.available == 1


# -- timeouts ---------------------------------------------------------------------------------


async def test_acquire_timeout_is_timeout_error_after_exactly_timeout() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    start = now()
    with pytest.raises(TimeoutError):
        await sem.acquire(timeout=2.5)
    assert now() - start == 2.5
    assert (sem.available, sem.acquired) == (0, 1)
    sem.release()
    # The timed-out waiter left the queue: the released slot is free, not handed to it.
    assert sem.available == 1
    assert sem.try_acquire()


async def test_acquire_timedelta_timeout() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    start = now()
    with pytest.raises(TimeoutError):
        await sem.acquire(timeout=timedelta(milliseconds=1500))
    assert now() - start == 1.5
    assert sem.acquired == 1


async def test_acquire_timeout_unused_when_a_slot_is_free() -> None:
    sem = Semaphore(2)
    start = now()
    await sem.acquire(timeout=3)
    await sem.acquire(timeout=timedelta(seconds=3))
    assert now() == start
    assert sem.acquired == 2


async def test_acquire_timeout_zero_fails_at_once_when_full() -> None:
    sem = Semaphore(1)
    await sem.acquire(timeout=0)  # free: taken
    start = now()
    with pytest.raises(TimeoutError):
        await sem.acquire(timeout=0)
    assert now() == start
    assert sem.acquired == 1


async def test_acquire_succeeds_when_released_before_timeout() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    start = now()
    asyncio.get_running_loop().call_later(1.25, sem.release)
    await sem.acquire(timeout=5)
    assert now() - start == 1.25
    assert sem.acquired == 1


@pytest.mark.parametrize("timeout", [-1, -0.5, timedelta(seconds=-1)])
async def test_acquire_negative_timeout_is_value_error(timeout: object) -> None:
    sem = Semaphore(1)
    await sem.acquire()
    with pytest.raises(ValueError, match="timeout"):
        await sem.acquire(timeout=timeout)  # type: ignore[arg-type]
    assert sem.acquired == 1


@pytest.mark.parametrize("timeout", ["1", object()])
async def test_acquire_bad_timeout_type_is_type_error(timeout: object) -> None:
    sem = Semaphore(1)
    await sem.acquire()
    with pytest.raises(TypeError, match="timeout"):
        await sem.acquire(timeout=timeout)  # type: ignore[arg-type]
    assert sem.acquired == 1


async def test_try_acquire_with_timeout() -> None:
    sem = Semaphore(1)
    start = now()
    assert await sem.try_acquire_with_timeout(1) is True
    assert now() == start
    assert await sem.try_acquire_with_timeout(0.75) is False
    assert now() - start == 0.75
    assert await sem.try_acquire_with_timeout(timedelta(seconds=2)) is False
    assert now() - start == 2.75
    assert sem.acquired == 1
    asyncio.get_running_loop().call_later(0.5, sem.release)
    assert await sem.try_acquire_with_timeout(10) is True
    assert now() - start == 3.25
    assert sem.acquired == 1


async def test_try_acquire_with_timeout_zero() -> None:
    sem = Semaphore(1)
    assert await sem.try_acquire_with_timeout(0) is True
    assert await sem.try_acquire_with_timeout(0) is False
    assert sem.acquired == 1


async def test_cancelling_a_timed_acquire_raises_cancelled_not_timeout() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    task = asyncio.create_task(sem.acquire(timeout=10))
    await wait_all_tasks_blocked()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert now() == 0
    sem.release()
    assert sem.available == 1


# -- fairness -----------------------------------------------------------------------------


async def test_waiters_get_slots_in_fifo_order() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await sem.acquire()
        order.append(i)
        await asyncio.sleep(0)  # hold it across a loop iteration
        sem.release()

    tasks = []
    for i in range(12):
        tasks.append(asyncio.create_task(waiter(i)))
        await wait_all_tasks_blocked()  # queued in this order
    await wait_all_tasks_blocked()
    assert order == []
    sem.release()
    await asyncio.gather(*tasks)
    assert order == list(range(12))
    assert sem.available == 1


async def test_fifo_with_several_slots_and_late_arrivals() -> None:
    sem = Semaphore(3)
    order: list[str] = []
    gates = {}

    async def user(name: str) -> None:
        await sem.acquire()
        order.append(name)
        gates[name] = asyncio.Event()
        await gates[name].wait()
        sem.release()

    first = [asyncio.create_task(user(f"a{i}")) for i in range(3)]
    await wait_all_tasks_blocked()
    assert order == ["a0", "a1", "a2"]
    waiting = []
    for i in range(5):
        waiting.append(asyncio.create_task(user(f"w{i}")))
        await wait_all_tasks_blocked()
    await wait_all_tasks_blocked()
    assert order == ["a0", "a1", "a2"]
    gates["a1"].set()
    await wait_all_tasks_blocked()
    assert order[3:] == ["w0"]
    # A newcomer arrives now: it queues behind w1..w4, even as slots are released.
    late = asyncio.create_task(user("late"))
    await wait_all_tasks_blocked()
    gates["a0"].set()
    gates["a2"].set()
    await wait_all_tasks_blocked()
    assert order[3:] == ["w0", "w1", "w2"]
    for name in ("w0", "w1", "w2"):
        gates[name].set()
    await wait_all_tasks_blocked()
    assert order[3:] == ["w0", "w1", "w2", "w3", "w4", "late"]
    for name in ("w3", "w4", "late"):
        gates[name].set()
    await asyncio.gather(*first, *waiting, late)
    assert sem.available == 3


async def test_try_acquire_does_not_overtake_a_waiter() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    got: list[str] = []

    async def waiter() -> None:
        await sem.acquire()
        got.append("waiter")

    task = asyncio.create_task(waiter())
    await wait_all_tasks_blocked()
    sem.release()
    # Released, but the waiter has not run yet: the slot is its, not try_acquire's.
    assert sem.try_acquire() is False
    assert sem.available == 0
    await task
    assert got == ["waiter"]
    assert sem.try_acquire() is False
    sem.release()
    assert sem.try_acquire() is True


async def test_try_acquire_fails_while_waiters_queue_even_with_timeout_zero() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    task = asyncio.create_task(sem.acquire())
    await wait_all_tasks_blocked()
    sem.release()
    assert await sem.try_acquire_with_timeout(0) is False
    await task
    assert sem.acquired == 1


# -- cancellation ---------------------------------------------------------------------------


async def test_waiter_canceled_while_waiting_loses_nothing() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    cancelled = asyncio.create_task(sem.acquire())
    after: list[str] = []

    async def next_in_line() -> None:
        await sem.acquire()
        after.append("next")

    second = asyncio.create_task(next_in_line())
    await wait_all_tasks_blocked()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (sem.available, sem.acquired) == (0, 1)
    sem.release()  # goes to the second waiter, not to the canceled one
    await second
    assert after == ["next"]
    assert sem.acquired == 1
    sem.release()
    assert (sem.available, sem.acquired) == (1, 0)


async def test_only_waiter_canceled_then_release_frees_the_slot() -> None:
    sem = Semaphore(2)
    await sem.acquire()
    await sem.acquire()
    task = asyncio.create_task(sem.acquire())
    await wait_all_tasks_blocked()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sem.release()
    assert sem.available == 1
    assert sem.try_acquire() is True


async def test_waiter_canceled_just_after_being_handed_a_slot_passes_it_on() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    first = asyncio.create_task(sem.acquire())
    got: list[str] = []

    async def second_waiter() -> None:
        await sem.acquire()
        got.append("second")

    second = asyncio.create_task(second_waiter())
    await wait_all_tasks_blocked()
    sem.release()  # handed to `first`, which has not resumed yet
    first.cancel()  # ...and is canceled before it does
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert got == ["second"]
    assert sem.acquired == 1
    sem.release()
    assert (sem.available, sem.acquired) == (1, 0)


async def test_lone_waiter_canceled_after_handoff_returns_the_slot() -> None:
    sem = Semaphore(3)
    for _ in range(3):
        await sem.acquire()
    task = asyncio.create_task(sem.acquire())
    await wait_all_tasks_blocked()
    sem.release()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (sem.available, sem.acquired) == (1, 2)
    sem.release()
    sem.release()
    assert sem.available == 3


async def test_timeout_firing_as_the_slot_arrives_loses_nothing() -> None:
    """The release and the waiter's timeout happen at the same instant: whichever wins, the
    waiter either holds the slot or raised TimeoutError and passed it on."""
    for release_first in (True, False):
        sem = Semaphore(1)
        await sem.acquire()
        loop = asyncio.get_running_loop()
        outcome: list[str] = []

        async def waiter(sem: Semaphore = sem, outcome: list[str] = outcome) -> None:
            try:
                await sem.acquire(timeout=1)
            except TimeoutError:
                outcome.append("timeout")
            else:
                outcome.append("acquired")
                sem.release()

        if release_first:
            loop.call_at(now() + 1, sem.release)
            task = asyncio.create_task(waiter())
        else:
            task = asyncio.create_task(waiter())
            await wait_all_tasks_blocked()  # its timeout is armed first
            loop.call_at(now() + 1, sem.release)
        await task
        assert len(outcome) == 1
        assert (sem.available, sem.acquired) == (1, 0), outcome


# -- async with -----------------------------------------------------------------------------


async def test_async_with_holds_a_slot_inside() -> None:
    sem = Semaphore(2)
    async with sem:
        assert sem.acquired == 1
        async with sem:
            assert sem.acquired == 2
            assert sem.try_acquire() is False
        assert sem.acquired == 1
    assert sem.available == 2


async def test_async_with_releases_on_exception() -> None:
    sem = Semaphore(1)
    err = KeyError("x")
    with pytest.raises(KeyError) as info:
        async with sem:
            raise err
    assert info.value is err
    assert sem.available == 1


async def test_async_with_waits_for_a_slot() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    entered = asyncio.Event()

    async def user() -> None:
        async with sem:
            entered.set()

    task = asyncio.create_task(user())
    await wait_all_tasks_blocked()
    assert not entered.is_set()
    sem.release()
    await task
    assert entered.is_set()
    assert sem.available == 1


# -- the Go README's examples ----------------------------------------------------------------


async def test_go_readme_ten_workers_three_slots() -> None:
    """10 workers, a semaphore of 3, each holding it 1 s: never more than 3 inside."""
    sem = Semaphore(3)
    inside = 0
    peak = 0
    processed: list[int] = []

    async def worker(i: int) -> None:
        nonlocal inside, peak
        await sem.acquire()
        try:
            inside += 1
            peak = max(peak, inside)
            assert inside <= sem.acquired <= 3  # slots handed to waiters not yet running
            processed.append(i)
            await asyncio.sleep(1)
        finally:
            inside -= 1
            sem.release()

    start = now()
    await asyncio.gather(*(worker(i) for i in range(10)))
    assert peak == 3
    assert sorted(processed) == list(range(10))
    assert processed == list(range(10))  # FIFO: started in the order they queued
    assert now() - start == 4.0  # ceil(10 / 3) rounds of 1 s
    assert sem.available == 3


async def test_go_readme_acquire_with_timeout_fails_when_all_held() -> None:
    sem = Semaphore(5)
    for _ in range(5):
        await sem.acquire()
    start = now()
    with pytest.raises(TimeoutError):
        await sem.acquire(timeout=2)
    assert now() - start == 2.0
    assert await sem.try_acquire_with_timeout(timedelta(seconds=2)) is False
    assert now() - start == 4.0
    assert sem.acquired == 5
    for _ in range(5):
        sem.release()
    await sem.acquire(timeout=2)  # now it succeeds at once
    assert now() - start == 4.0
    sem.release()


# -- other threads (the contract is silent; the semaphore documents it as thread-safe) --------


@pytest.mark.realtime
async def test_release_from_another_thread_hands_the_slot_to_an_async_waiter() -> None:
    sem = Semaphore(1)
    await sem.acquire()
    waiter = asyncio.create_task(sem.acquire())
    await yield_turns()
    releaser = threading.Thread(target=sem.release, name="test-releaser")
    releaser.start()
    await asyncio.to_thread(releaser.join, 5)
    async with asyncio.timeout(5):
        await waiter
    assert (sem.available, sem.acquired) == (0, 1)
    got = await asyncio.to_thread(sem.try_acquire)  # from a thread: no overtaking either
    assert got is False
    sem.release()
    assert sem.available == 1


# -- concurrent access and stress ------------------------------------------------------------


async def test_concurrent_try_acquire_never_exceeds_limit() -> None:
    sem = Semaphore(4)
    holders = 0
    peak = 0
    wins = 0

    async def contender(i: int) -> None:
        nonlocal holders, peak, wins
        for _ in range(20):
            if sem.try_acquire():
                wins += 1
                holders += 1
                peak = max(peak, holders)
                assert holders <= 4
                await asyncio.sleep(0)
                holders -= 1
                sem.release()
            else:
                await asyncio.sleep(0)

    await asyncio.gather(*(contender(i) for i in range(16)))
    assert peak == 4
    assert wins > 0
    assert sem.available == 4


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_stress_mixed_operations(seed: int) -> None:
    """Many tasks acquire, try_acquire, time out, release and get canceled in a seeded random
    order; at every step the slots held (plus those handed to waiters not yet resumed) add up
    to ``acquired``, within the limit, and all slots are free at the end."""
    rng = random.Random(seed)
    limit = rng.randint(1, 6)
    sem = Semaphore(limit)
    held: dict[int, int] = {}  # actor -> slots it holds now
    waiting = 0  # actors inside an acquire call: a slot may be theirs before they resume
    stats = {"acquired": 0, "timeouts": 0, "canceled": 0, "try_fail": 0, "checks": 0}
    problems: list[str] = []  # an assert inside an actor would be lost in gather()

    def check(where: str) -> None:
        stats["checks"] += 1
        total = sum(held.values())
        if not 0 <= sem.acquired <= limit:
            problems.append(f"{where}: acquired={sem.acquired}")
        if not total <= sem.acquired <= total + waiting:
            problems.append(f"{where}: acquired={sem.acquired} held={total} waiting={waiting}")
        if sem.available != limit - sem.acquired:
            problems.append(f"{where}: available={sem.available} acquired={sem.acquired}")

    async def wait_for_slot(timeout: float | None) -> bool:
        nonlocal waiting
        waiting += 1
        try:
            if timeout is None:
                await sem.acquire()
                return True
            if rng.random() < 0.5:
                return await sem.try_acquire_with_timeout(timeout)
            try:
                await sem.acquire(timeout=timeout)
            except TimeoutError:
                return False
            return True
        finally:
            waiting -= 1

    async def actor(i: int) -> None:
        held[i] = 0
        try:
            for step in range(rng.randint(1, 8)):
                op = rng.random()
                if op < 0.35 and not held[i]:
                    # Blocking acquire only with nothing held: a holder that waited without a
                    # limit could deadlock with the others (a test bug, not the semaphore's).
                    await wait_for_slot(None)
                    held[i] += 1
                    stats["acquired"] += 1
                elif op < 0.55:
                    if sem.try_acquire():
                        held[i] += 1
                    else:
                        stats["try_fail"] += 1
                elif op < 0.85:
                    if await wait_for_slot(rng.choice([0, 0.25, 0.5, 1, 2.5])):
                        held[i] += 1
                    else:
                        stats["timeouts"] += 1
                check(f"actor {i} step {step} took")
                await asyncio.sleep(rng.choice([0, 0, 0.5, 1, 1.5]))
                check(f"actor {i} step {step} slept")
                if held[i] and rng.random() < 0.7:
                    sem.release()
                    held[i] -= 1
                    check(f"actor {i} step {step} released")
        except asyncio.CancelledError:
            stats["canceled"] += 1
            raise
        finally:
            while held[i]:
                sem.release()
                held[i] -= 1
            check(f"actor {i} left")

    actors = [asyncio.create_task(actor(i)) for i in range(150)]

    async def canceller() -> None:
        for _ in range(30):
            await asyncio.sleep(rng.choice([0, 0.25, 0.5, 1]))
            victim = rng.choice(actors)
            victim.cancel()
            check("after a cancel")

    results = await asyncio.gather(canceller(), *actors, return_exceptions=True)
    unexpected = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, asyncio.CancelledError) for r in unexpected), unexpected
    check("end")
    assert problems == []
    assert waiting == 0
    assert (sem.available, sem.acquired) == (limit, 0)
    assert stats["acquired"] > 0
    assert stats["timeouts"] + stats["try_fail"] > 0
    assert stats["canceled"] > 0
    assert stats["checks"] > 500


# -- a pool's worker slots: the semaphore's own fast path ------------------------------------


@pytest.mark.parametrize("shared", [False, True])
async def test_slots_take_nowait_takes_only_a_free_slot(shared: bool) -> None:
    slots = _Slots(2)
    slots.shared = shared  # (shared: the same, under the lock)
    assert slots.take_nowait()
    assert slots.take_nowait()
    assert not slots.take_nowait()
    assert (slots.available, slots.acquired) == (0, 2)
    slots.release_held()
    assert (slots.available, slots.acquired) == (1, 1)
    assert slots.take_nowait()


@pytest.mark.parametrize("shared", [False, True])
async def test_slots_given_back_go_to_the_first_waiter_not_to_take_nowait(shared: bool) -> None:
    slots = _Slots(1)
    slots.shared = shared
    assert slots.take_nowait()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await slots.acquire()
        order.append(name)

    first = asyncio.create_task(waiter("first"))
    await wait_all_tasks_blocked()
    assert not slots.take_nowait()  # the slot is taken, and a waiter is queued
    slots.release_held()  # straight to the waiter
    assert not slots.take_nowait()
    await first
    assert order == ["first"]
    slots.release_held()
    assert (slots.available, slots.acquired) == (1, 0)


async def test_slots_given_back_wake_whoever_waits_for_all_of_them() -> None:
    slots = _Slots(2)
    assert slots.take_nowait()
    idle = asyncio.create_task(slots._wait_all_released())
    await wait_all_tasks_blocked()
    assert not idle.done()
    slots.release_held()
    await asyncio.wait_for(idle, 1)


def test_slots_shared_with_threads_stay_consistent() -> None:
    """Once shared, takes and gives from many threads lose no slot (under the lock)."""
    slots = _Slots(3)
    slots.shared = True
    taken = [0] * 8

    def churn(i: int) -> None:
        for _ in range(2000):
            if slots.take_nowait():
                taken[i] += 1
                slots.release_held()

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(taken) > 0
    assert (slots.available, slots.acquired) == (3, 0)
