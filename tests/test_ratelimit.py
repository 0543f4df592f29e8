"""Rate limits: ``WorkerPool(..., max_per_second=r)`` and ``pool.map(..., max_per_second=r)``.

The limit is GCRA without burst: each attempt start is reserved at least ``1 / r`` after the
previous one. Every test runs on the virtual clock (tests/conftest.py) and records
``loop.time()`` at the start of each call, so start times are asserted exactly. Rates are
powers of two so that sums of intervals are exact binary fractions.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from _helpers import GUARD, now, wait_all_tasks_blocked
from asynctasklib import Definition, State, StateHooks, Task, WorkerPool
from asynctasklib._ratelimit import RateLimiter


class Starts:
    """Task functions that record the loop time at which each call starts, by tag."""

    def __init__(self) -> None:
        self.log: list[tuple[float, Any]] = []

    def times(self, tag: Any = None) -> list[float]:
        return [t for t, g in self.log if tag is None or g == tag]

    def run_fn(self, tag: Any, seconds: float = 0.0) -> Callable[[Any], Awaitable[Any]]:
        async def fn(run: Any) -> Any:
            self.log.append((now(), tag))
            if seconds:
                await asyncio.sleep(seconds)
            return tag

        return fn

    def item_fn(self, seconds: float = 0.0, tag: Any = "map") -> Callable[[Any], Awaitable[Any]]:
        async def fn(item: Any) -> Any:
            self.log.append((now(), tag))
            if seconds:
                await asyncio.sleep(seconds)
            return item

        return fn


def gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [b - a for a, b in itertools.pairwise(ordered)]


def expected_starts(n: int, rate: float, workers: int, seconds: float) -> list[float]:
    """Start i is the later of the rate (previous start + 1/rate) and a free worker (start
    i - workers + its duration), FIFO."""
    out: list[float] = []
    for i in range(n):
        t = 0.0
        if i:
            t = max(t, out[-1] + 1 / rate)
        if i >= workers:
            t = max(t, out[i - workers] + seconds)
        out.append(t)
    return out


# -- the pool's limit -----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 2, 4, 8, 0.5])
async def test_pool_rate_spaces_starts_exactly(rate: float) -> None:
    s = Starts()
    async with WorkerPool(10, max_per_second=rate) as pool:
        await pool.gather([Definition(task_fn=s.run_fn(i)) for i in range(6)])
    assert s.times() == [i / rate for i in range(6)]
    assert [g for _, g in s.log] == list(range(6))  # first come, first served


async def test_pool_rate_not_a_power_of_two() -> None:
    s = Starts()
    async with WorkerPool(10, max_per_second=10) as pool:
        await pool.gather([Definition(task_fn=s.run_fn(i)) for i in range(5)])
    assert s.times() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-12)
    assert min(gaps(s.times())) >= 0.1 - 1e-12


async def test_no_burst_after_an_idle_spell() -> None:
    s = Starts()
    async with WorkerPool(10, max_per_second=4) as pool:
        await pool.gather([Definition(task_fn=s.run_fn(i)) for i in range(2)])
        await asyncio.sleep(10 - now())
        await pool.gather([Definition(task_fn=s.run_fn(i)) for i in range(4)])
    assert s.times() == [0.0, 0.25, 10.0, 10.25, 10.5, 10.75]


async def test_an_idle_spell_shorter_than_the_interval_still_waits() -> None:
    s = Starts()
    async with WorkerPool(10, max_per_second=2) as pool:
        await pool.gather([Definition(task_fn=s.run_fn("a"))])
        await asyncio.sleep(0.125)
        await pool.gather([Definition(task_fn=s.run_fn("b"))])
    assert s.times() == [0.0, 0.5]


async def test_rate_and_concurrency_combine_with_submit() -> None:
    """2 workers, 4/s, calls of 0.625 s: start i = max(start(i-1) + 0.25, start(i-2) + 0.625)."""
    s = Starts()
    async with WorkerPool(2, max_per_second=4) as pool:
        for i in range(8):
            await pool.submit(Definition(task_fn=s.run_fn(i, 0.625)))
    expected = expected_starts(8, 4, 2, 0.625)
    assert expected == [0.0, 0.25, 0.625, 0.875, 1.25, 1.5, 1.875, 2.125]
    assert s.times() == expected


async def test_rate_slower_than_workers_free() -> None:
    """When calls are quick the rate alone decides; when they are slow, the workers do."""
    quick = Starts()
    slow = Starts()
    async with WorkerPool(2, max_per_second=4) as pool:
        for i in range(5):
            await pool.submit(Definition(task_fn=quick.run_fn(i, 0.125)))
        await pool.wait()
    assert quick.times() == [0.0, 0.25, 0.5, 0.75, 1.0]
    base = now()
    assert base == 1.125
    async with WorkerPool(2, max_per_second=4) as pool:
        for i in range(5):
            await pool.submit(Definition(task_fn=slow.run_fn(i, 2.0)))
    assert [t - base for t in slow.times()] == [0.0, 0.25, 2.0, 2.25, 4.0]


async def test_retries_count_as_starts() -> None:
    attempts: list[float] = []

    async def always_fails(run: Any) -> None:
        attempts.append(now())
        raise ConnectionError("down")

    async with WorkerPool(4, max_per_second=4) as pool:
        task = await pool.submit(Definition(task_fn=always_fails, max_retries=3, backoff=0))
        await task.wait()
    assert attempts == [0.0, 0.25, 0.5, 0.75]
    assert task.state is State.FAILED
    assert task.attempts == 4


async def test_retries_share_the_rate_with_other_tasks() -> None:
    """A fails its first attempt after 0.125 s; B reserved the 0.25 turn meanwhile, so A's retry
    gets 0.5."""
    log: list[tuple[float, str]] = []

    async def a(run: Any) -> None:
        log.append((now(), "a"))
        if run.attempt == 0:
            await asyncio.sleep(0.125)
            raise ConnectionError("a")

    async def b(run: Any) -> None:
        log.append((now(), "b"))

    async with WorkerPool(4, max_per_second=4) as pool:
        await pool.gather([Definition(task_fn=a, max_retries=1, backoff=0), Definition(task_fn=b)])
    assert log == [(0.0, "a"), (0.25, "b"), (0.5, "a")]


async def test_backoff_and_rate_combine() -> None:
    """A retry waits its backoff, then its turn: here the backoff (1 s) is the longer."""
    attempts: list[float] = []

    async def fails_twice(run: Any) -> str:
        attempts.append(now())
        if run.attempt < 2:
            raise ConnectionError("down")
        return "ok"

    async with WorkerPool(4, max_per_second=4) as pool:
        task = await pool.submit(Definition(task_fn=fails_twice, max_retries=2, backoff=1))
        assert await task == "ok"
    assert attempts == [0.0, 1.0, 2.0]


async def test_delay_then_turn() -> None:
    s = Starts()
    async with WorkerPool(4, max_per_second=1) as pool:
        await pool.gather([Definition(task_fn=s.run_fn(i), delay=0.5) for i in range(3)])
    assert s.times() == [0.5, 1.5, 2.5]


# -- the map's limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [2, 4, 8])
async def test_map_rate_spaces_starts_exactly(rate: float) -> None:
    s = Starts()
    async with WorkerPool(10) as pool:
        out = [x async for x in pool.map(s.item_fn(), range(6), max_per_second=rate)]
    assert out == list(range(6))
    assert s.times() == [i / rate for i in range(6)]


async def test_map_without_its_own_limit_uses_the_pool_limit() -> None:
    s = Starts()
    async with WorkerPool(10, max_per_second=4) as pool:
        assert [x async for x in pool.map(s.item_fn(), range(4))] == [0, 1, 2, 3]
    assert s.times() == [0.0, 0.25, 0.5, 0.75]


async def test_map_rate_and_concurrency_combine() -> None:
    s = Starts()
    async with WorkerPool(2) as pool:
        out = [x async for x in pool.map(s.item_fn(0.625), range(8), max_per_second=4)]
    assert out == list(range(8))
    assert s.times() == expected_starts(8, 4, 2, 0.625)


async def test_map_rate_no_burst_after_a_slow_consumer() -> None:
    """The consumer stops pulling for a while: afterwards starts are still 1/r apart."""
    s = Starts()
    async with WorkerPool(2) as pool:
        results = pool.map(s.item_fn(), range(6), max_per_second=2, window=2)
        assert [await results.__anext__() for _ in range(2)] == [0, 1]
        await asyncio.sleep(10)
        assert [x async for x in results] == [2, 3, 4, 5]
    times = s.times()
    assert times[:4] == [0.0, 0.5, 1.0, 1.5]  # the window lets 2 more in while we sleep
    assert times[4:] == [10.5, 11.0]


async def test_map_retries_count_as_starts() -> None:
    attempts: dict[int, list[float]] = {}

    async def flaky(x: int) -> int:
        attempts.setdefault(x, []).append(now())
        if len(attempts[x]) == 1 and x == 0:
            await asyncio.sleep(0.125)
            raise ConnectionError(x)
        return x

    async with WorkerPool(4) as pool:
        out = [
            x async for x in pool.map(flaky, range(3), max_per_second=4, max_retries=1, backoff=0)
        ]
    assert out == [0, 1, 2]
    # 0 at 0, 1 at .25, 2 at .5; 0's retry asks at .125 and gets the next turn: .75
    assert attempts == {0: [0.0, 0.75], 1: [0.25], 2: [0.5]}


@pytest.mark.parametrize(("pool_rate", "map_rate"), [(4, 2), (2, 4), (4, 4)])
async def test_pool_and_map_limits_both_apply(pool_rate: float, map_rate: float) -> None:
    s = Starts()
    async with WorkerPool(10, max_per_second=pool_rate) as pool:
        assert [x async for x in pool.map(s.item_fn(), range(5), max_per_second=map_rate)] == [
            0,
            1,
            2,
            3,
            4,
        ]
    step = 1 / min(pool_rate, map_rate)
    assert s.times() == [i * step for i in range(5)]


async def test_two_maps_have_their_own_limits() -> None:
    s = Starts()
    async with WorkerPool(10) as pool:
        a = pool.map(s.item_fn(tag="a"), range(3), max_per_second=2)
        b = pool.map(s.item_fn(tag="b"), range(3), max_per_second=4)

        async def consume(results: Any) -> list[Any]:
            return [x async for x in results]

        assert list(await asyncio.gather(consume(a), consume(b))) == [[0, 1, 2], [0, 1, 2]]
    assert s.times("a") == [0.0, 0.5, 1.0]
    assert s.times("b") == [0.0, 0.25, 0.5]


async def test_two_maps_share_the_pool_limit() -> None:
    s = Starts()
    async with WorkerPool(10, max_per_second=4) as pool:
        a = pool.map(s.item_fn(tag="a"), range(3))
        b = pool.map(s.item_fn(tag="b"), range(3))

        async def consume(results: Any) -> list[Any]:
            return [x async for x in results]

        assert list(await asyncio.gather(consume(a), consume(b))) == [[0, 1, 2], [0, 1, 2]]
    assert sorted(s.times()) == [i * 0.25 for i in range(6)]


async def test_pool_limit_holds_for_all_starts_when_a_map_has_a_slower_own_limit() -> None:
    """Pool 4/s shared by a map limited to 1/s and plain tasks: every start of the pool is still
    at least 0.25 s after the previous one (a server allowing 4/s never sees a fifth)."""
    s = Starts()
    async with WorkerPool(10, max_per_second=4) as pool:
        results = pool.map(s.item_fn(tag="map"), range(2), max_per_second=1)
        first = asyncio.ensure_future(results.__anext__())
        await wait_all_tasks_blocked()  # the map's items have asked for their turns
        plain = [Definition(task_fn=s.run_fn(f"p{i}")) for i in range(4)]
        await pool.gather(plain)
        assert await first == 0
        assert [x async for x in results] == [1]
    assert s.times("map") == [0.0, 1.0]
    assert min(gaps(s.times())) >= 0.25
    # one joint reservation: map item 1 (asking at 0) takes 1.0 on both limits, so the plain
    # tasks asking after it come after it (reservations are first come, first served)
    assert s.log == [
        (0.0, "map"),
        (1.0, "map"),
        (1.25, "p0"),
        (1.5, "p1"),
        (1.75, "p2"),
        (2.0, "p3"),
    ]


async def test_map_limit_does_not_slow_other_pool_tasks() -> None:
    s = Starts()
    async with WorkerPool(10) as pool:
        results = pool.map(s.item_fn(tag="map"), range(3), max_per_second=1)
        consumer = asyncio.ensure_future(_consume(results))
        await asyncio.sleep(0.125)
        await pool.gather([Definition(task_fn=s.run_fn("plain")) for _ in range(3)])
        assert await consumer == [0, 1, 2]
    assert s.times("map") == [0.0, 1.0, 2.0]
    assert s.times("plain") == [0.125, 0.125, 0.125]


async def _consume(results: Any) -> list[Any]:
    return [x async for x in results]


# -- invalid rates --------------------------------------------------------------------------------

BAD_RATES = [
    (0, ValueError),
    (0.0, ValueError),
    (-1, ValueError),
    (-0.5, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    (True, TypeError),
    (False, TypeError),
    ("2", TypeError),
    ([2], TypeError),
]


@pytest.mark.parametrize(("rate", "error"), BAD_RATES)
def test_pool_rejects_bad_rate(rate: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_per_second"):
        WorkerPool(2, max_per_second=rate)


@pytest.mark.parametrize(("rate", "error"), BAD_RATES)
async def test_map_rejects_bad_rate(rate: Any, error: type[Exception]) -> None:
    pulled: list[int] = []

    def items() -> Any:
        for i in range(3):
            pulled.append(i)
            yield i

    async with WorkerPool(2) as pool:
        with pytest.raises(error, match="max_per_second"):
            pool.map(lambda x: x, items(), max_per_second=rate)
        assert pulled == []
        assert pool.stats().total == 0


@pytest.mark.parametrize("rate", [1e-9, 1e9, 3, 0.25])
def test_valid_rates_accepted(rate: float) -> None:
    limiter = RateLimiter(rate)
    assert limiter.per_second == float(rate)
    assert repr(limiter) == f"<RateLimiter per_second={float(rate)}>"
    WorkerPool(1, max_per_second=rate)


async def test_rate_given_as_int_and_float_alike() -> None:
    for rate in (2, 2.0):
        s = Starts()
        base = now()
        async with WorkerPool(4, max_per_second=rate) as pool:
            await pool.gather([Definition(task_fn=s.run_fn(i)) for i in range(3)])
        assert [t - base for t in s.times()] == [0.0, 0.5, 1.0]


# -- cancellation while waiting for a turn -------------------------------------------------------


async def test_task_canceled_while_waiting_for_its_turn() -> None:
    """1/s: A at 0, B's turn at 1, C's at 2. B is canceled at 0.5 while it waits: it ends
    CANCELED without ever starting, its worker is free at once, and C keeps its turn."""
    s = Starts()
    events: list[tuple[float, str, str]] = []
    hooks = StateHooks(
        on_started=lambda i, _w: events.append((now(), i, "started")),
        on_canceled=lambda i, _w: events.append((now(), i, "canceled")),
        on_done=lambda i, _w: events.append((now(), i, "done")),
    )
    async with WorkerPool(3, max_per_second=1, hooks=hooks) as pool:
        a = await pool.submit(Definition(id="a", task_fn=s.run_fn("a")))
        b = await pool.submit(Definition(id="b", task_fn=s.run_fn("b")))
        c = await pool.submit(Definition(id="c", task_fn=s.run_fn("c")))
        await asyncio.sleep(0.5)
        assert b.state is State.PENDING
        assert pool.active_workers == 2  # b and c wait for their turns
        assert b.cancel() is True
        await asyncio.sleep(0)
        assert b.state is State.CANCELED  # type: ignore[comparison-overlap]  # (cancel() moved it)
        assert b.attempts == 0
        assert pool.active_workers == 1
        # the freed worker takes new work at once; it waits for a turn like everyone else.
        # B's unused turn (1.0) is not handed back (documented: "the rate only falls"), so D
        # reserves the turn after C's.
        d = await pool.submit(Definition(id="d", task_fn=s.run_fn("d")))
        assert now() == 0.5
        await pool.wait()
    assert [t.state for t in (a, c, d)] == [State.DONE] * 3
    assert s.log == [(0.0, "a"), (2.0, "c"), (3.0, "d")]
    assert (0.5, "b", "canceled") in events
    assert [e for e in events if e[1] == "b"] == [(0.5, "b", "canceled")]
    assert min(gaps(s.times())) >= 1.0


async def test_many_waiters_canceled_others_unaffected() -> None:
    s = Starts()
    async with WorkerPool(10, max_per_second=4) as pool:
        tasks = [await pool.submit(Definition(id=str(i), task_fn=s.run_fn(i))) for i in range(8)]
        await asyncio.sleep(0.125)
        for t in tasks[1::2]:
            t.cancel()
        await pool.wait()
        assert counts_by_state(tasks) == {State.DONE: 4, State.CANCELED: 4}
        assert all(t.attempts == 0 for t in tasks[1::2])
    # the even ones keep their reserved turns
    assert s.log == [(0.0, 0), (0.5, 2), (1.0, 4), (1.5, 6)]


def counts_by_state(tasks: list[Task[Any]]) -> dict[State, int]:
    out: dict[State, int] = {}
    for t in tasks:
        out[t.state] = out.get(t.state, 0) + 1
    return out


async def test_map_stopped_while_tasks_wait_for_their_turn() -> None:
    """Map at 1/s with 4 workers: after 2 results the consumer leaves; the tasks waiting for a
    turn end CANCELED, never started."""
    s = Starts()
    ended: dict[str, str] = {}
    hooks = StateHooks(
        on_done=lambda i, _w: ended.setdefault(i, "done"),
        on_canceled=lambda i, _w: ended.setdefault(i, "canceled"),
    )
    async with WorkerPool(4) as pool:
        async with pool.map(s.item_fn(), range(100), max_per_second=1, hooks=hooks) as results:
            got = [await results.__anext__() for _ in range(2)]
        assert now() == 1.0
        assert got == [0, 1]
        assert ended == {
            "0": "done",
            "1": "done",
            "2": "canceled",
            "3": "canceled",
            "4": "canceled",
            "5": "canceled",
        }
        await asyncio.sleep(20)
        assert s.times() == [0.0, 1.0]
        assert pool.stats().canceled == 4


async def test_consumer_canceled_while_tasks_wait_for_their_turn() -> None:
    s = Starts()
    async with WorkerPool(3) as pool:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                _consume(pool.map(s.item_fn(), range(100), max_per_second=2)), 1.25
            )
        await pool.wait()
        st = pool.stats()
        assert (st.done, st.canceled, st.pending, st.started) == (3, 3, 0, 0)
        await asyncio.sleep(10)
        assert s.times() == [0.0, 0.5, 1.0]


async def test_total_timeout_also_bounds_the_wait_for_a_rate_limit_turn() -> None:
    starts = Starts()
    pool = WorkerPool(8, max_per_second=2)  # a start every 0.5 s
    tasks = [
        await pool.submit(Definition(id=str(i), task_fn=starts.run_fn(i), total_timeout=1.25))
        for i in range(5)
    ]
    async with asyncio.timeout(GUARD):
        await pool.shutdown(cancel=False)
    assert starts.times() == [0.0, 0.5, 1.0]  # the turns at 1.5 and 2.0 come too late
    assert [t.state for t in tasks] == [State.DONE] * 3 + [State.FAILED] * 2
    assert all(isinstance(t.error, TimeoutError) for t in tasks[3:])
    assert now() == 1.25  # they failed when their budget ran out, not at their turn
