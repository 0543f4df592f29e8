"""Streaming many items through the pool: ``pool.map``, ``pool.gather``, ``pool.as_completed``,
``total_timeout`` and Retry-After predicates inside ``map``.

Async tests run on the virtual-clock loop (tests/conftest.py): sleeps are instant and
``loop.time()`` differences exact, so every timing below is asserted exactly. Inputs are
generators that record what was pulled from them, so "read no further than the window" is an
exact count. Hooks record every start and every end by task id (the item's index). Tests with
sync task functions run in threads and are ``realtime``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from _helpers import GUARD, REAL_GUARD, now, wait_all_tasks_blocked, yield_turns
from asynctasklib import (
    Definition,
    MapResults,
    PoolStoppedError,
    State,
    StateHooks,
    Task,
    TaskCanceledError,
    TaskTimeoutError,
    WorkerPool,
)
from conftest import EAGER

FEEDER = "asynctasklib map feeder"
# With an eager task factory the feeder takes its first step inside create_task.
NO_MOMENT_BEFORE_THE_FEEDER = "an eager factory starts the feeder at once"


# -- helpers ----------------------------------------------------------------------------------


async def drain(results: AsyncIterator[Any], into: list[Any], *, stamp: bool = False) -> None:
    """Consume ``results`` into ``into`` (with the loop time of each when ``stamp``)."""
    async for x in results:
        into.append((now(), x) if stamp else x)


def feeders_running() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == FEEDER and not t.done()]


class Source:
    """Inputs of every kind that record each item pulled from them."""

    def __init__(self) -> None:
        self.pulled: list[int] = []
        self._agen: Any = None

    def gen(self, n: int | None = None) -> Iterator[int]:
        for i in itertools.count() if n is None else range(n):
            self.pulled.append(i)
            yield i

    async def agen(self, n: int | None = None) -> AsyncIterator[int]:
        for i in itertools.count() if n is None else range(n):
            self.pulled.append(i)
            yield i

    def make(self, kind: str) -> Any:
        if kind == "list":
            return list(range(100))
        if kind == "gen":
            return self.gen(100)
        if kind == "endless_gen":
            return self.gen()
        if kind == "agen":
            self._agen = self.agen(100)
            return self._agen
        assert kind == "endless_agen"
        self._agen = self.agen()
        return self._agen

    async def close(self) -> None:
        if self._agen is not None:
            await self._agen.aclose()


KINDS = ["list", "gen", "endless_gen", "agen", "endless_agen"]


class Ends:
    """Hooks that record, by task id, starts (in order) and the one end of each task."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ends: dict[str, list[str]] = {}
        self.order: list[str] = []  # ids in the order they ended
        self.hooks = StateHooks(
            on_started=lambda i, _w: self.started.append(i),
            on_done=lambda i, _w: self._end(i, "done"),
            on_failed=lambda i, _w, _e: self._end(i, "failed"),
            on_canceled=lambda i, _w: self._end(i, "canceled"),
        )

    def _end(self, task_id: str, how: str) -> None:
        self.ends.setdefault(task_id, []).append(how)
        self.order.append(task_id)

    def by_end(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for task_id, hows in self.ends.items():
            assert len(hows) == 1, f"task {task_id} ended {hows}"
            out.setdefault(hows[0], set()).add(task_id)
        return out


def ids(*indexes: int | range) -> set[str]:
    out: set[str] = set()
    for x in indexes:
        out.update(str(i) for i in (x if isinstance(x, range) else [x]))
    return out


def sleeper(seconds: float = 1.0, factor: int = 10) -> Callable[[int], Awaitable[int]]:
    async def fn(item: int) -> int:
        await asyncio.sleep(seconds)
        return item * factor

    return fn


def counts(pool: WorkerPool) -> tuple[int, int, int, int, int, int, int]:
    s = pool.stats()
    return (s.total, s.pending, s.started, s.done, s.failed, s.canceled, s.active_workers)


# -- taking the first N results, then stopping ----------------------------------------------------
#
# max_workers=3, window=5, every call sleeps 1 s, N=4 results then 0.5 s more, then stop.
# t=0 reads 0,1,2; t=1 they end, 0,1,2 yielded, reads 3,4,5; t=2 they end, 3 yielded (N=4):
# 4,5 are finished-but-unyielded, so the window (5) lets 3 more in: 6,7,8 (the workers allow
# 3). Read: N + window = 9. At t=2.5 the run stops: 6,7,8 in flight are CANCELED.


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stop", ["break", "async_with", "aclose"])
async def test_take_first_n_then_stop(kind: str, stop: str) -> None:
    src = Source()
    ends = Ends()
    got: list[int] = []
    async with WorkerPool(3) as pool:
        items = src.make(kind)
        if stop == "break":
            async for x in pool.map(sleeper(), items, window=5, hooks=ends.hooks):
                got.append(x)
                if len(got) == 4:
                    await asyncio.sleep(0.5)
                    break
            assert now() == 2.5
            async with asyncio.timeout(GUARD):
                await pool.wait()
            await wait_all_tasks_blocked()
        elif stop == "async_with":
            async with pool.map(sleeper(), items, window=5, hooks=ends.hooks) as results:
                assert isinstance(results, MapResults)
                async for x in results:
                    got.append(x)
                    if len(got) == 4:
                        await asyncio.sleep(0.5)
                        break
            # leaving the block stopped the run for sure: every task has ended already
        else:
            results = pool.map(sleeper(), items, window=5, hooks=ends.hooks)
            async for x in results:
                got.append(x)
                if len(got) == 4:
                    await asyncio.sleep(0.5)
                    break
            await results.aclose()
        assert now() == 2.5
        assert got == [0, 10, 20, 30]
        if kind != "list":
            assert src.pulled == list(range(9))
        assert ends.started == [str(i) for i in range(9)]
        assert ends.by_end() == {"done": ids(range(6)), "canceled": ids(6, 7, 8)}
        assert counts(pool) == (9, 0, 0, 6, 0, 3, 0)
        assert feeders_running() == []
        # nothing more is read or started later
        await asyncio.sleep(100)
        if kind != "list":
            assert src.pulled == list(range(9))
        assert counts(pool) == (9, 0, 0, 6, 0, 3, 0)
        assert len(ends.started) == 9
        await src.close()


async def test_aclose_before_iterating_reads_nothing() -> None:
    src = Source()
    async with WorkerPool(2) as pool:
        results = pool.map(sleeper(), src.gen())
        await results.aclose()
        await wait_all_tasks_blocked()
        assert src.pulled == []
        assert counts(pool) == (0, 0, 0, 0, 0, 0, 0)
        with pytest.raises(StopAsyncIteration):
            await results.__anext__()


async def test_aclose_twice_and_after_exhaustion_is_harmless() -> None:
    async with WorkerPool(2) as pool:
        results = pool.map(sleeper(), [1, 2, 3])
        assert [x async for x in results] == [10, 20, 30]
        await results.aclose()
        await results.aclose()
        assert counts(pool) == (3, 0, 0, 3, 0, 0, 0)


@pytest.mark.parametrize("ordered", [True, False])
async def test_after_aclose_finished_unyielded_results_are_dropped(ordered: bool) -> None:
    async with WorkerPool(4) as pool:
        results = pool.map(sleeper(), range(4), ordered=ordered)
        assert await results.__anext__() == 0  # all four ended at t=1; three are held
        await results.aclose()
        with pytest.raises(StopAsyncIteration):
            await results.__anext__()
        assert counts(pool) == (4, 0, 0, 4, 0, 0, 0)


async def test_after_the_failure_is_raised_the_run_is_over() -> None:
    boom = ValueError("boom")

    async def fn(x: int) -> int:
        await asyncio.sleep(1 if x else 2)
        if x == 0:
            raise boom
        return x

    async with WorkerPool(4) as pool:
        results = pool.map(fn, range(4), ordered=False)
        assert [await results.__anext__() for _ in range(2)] == [1, 2]
        await asyncio.sleep(1.5)  # 3 ended with them at t=1, unyielded; 0 failed at t=2
        with pytest.raises(ValueError, match="boom"):
            await results.__anext__()  # the failure comes first; 3 is dropped
        with pytest.raises(StopAsyncIteration):
            await results.__anext__()
        assert now() == 2.5


async def test_raw_itertools_count_take_and_break() -> None:
    async def double(x: int) -> int:
        return 2 * x

    async with WorkerPool(4) as pool:
        got = []
        async for x in pool.map(double, itertools.count()):
            got.append(x)
            if len(got) == 50:
                break
        async with asyncio.timeout(GUARD):
            await pool.wait()
        await wait_all_tasks_blocked()
        assert got == [2 * i for i in range(50)]
        s = pool.stats()
        # read at most 50 + window (8); every task read has ended
        assert 50 <= s.total <= 58
        assert s.pending == s.started == s.active_workers == 0
        assert s.done + s.canceled == s.total
        assert feeders_running() == []


# -- static typing of map results ----------------------------------------------------------------


MAP_TYPING_SNIPPET = """
from asynctasklib import WorkerPool


async def fetch(x: int) -> str:
    return str(x)


def square(x: int) -> int:
    return x * x


async def main(pool: WorkerPool) -> None:
    async for y in pool.map(fetch, [1, 2]):
        reveal_type(y)
    async for z in pool.map(square, [1, 2]):
        reveal_type(z)
"""


def test_map_result_type_is_inferred_for_async_and_sync_functions(tmp_path: Any) -> None:
    """The package ships py.typed: a user's ``pool.map(fetch, items)`` with ``async def
    fetch(x: int) -> str`` must type-check and yield ``str``."""
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "user.py"
    snippet.write_text(MAP_TYPING_SNIPPET)
    out, _err, _status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", os.devnull, str(snippet)]
    )
    revealed = [
        line.split('"')[1].removeprefix("builtins.")
        for line in out.splitlines()
        if "Revealed type" in line
    ]
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert errors == []
    assert revealed == ["str", "int"]


# -- the window: exact bounds on what is read ------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "window"), [(1, 1), (2, 1), (2, 4), (4, 2), (3, 3), (1, 5), (3, None)]
)
@pytest.mark.parametrize("kind", ["endless_gen", "endless_agen"])
@pytest.mark.parametrize("ordered", [True, False])
async def test_window_bounds_input_read_exactly_with_quick_calls(
    workers: int, window: int | None, kind: str, ordered: bool
) -> None:
    """Quick calls end at once, so the slow consumer's window fills: read = yielded + window
    (default window: 2 * max_workers)."""
    src = Source()
    k = 2 * workers if window is None else window

    async def quick(x: int) -> int:
        return x

    async with WorkerPool(workers) as pool:
        results = pool.map(quick, src.make(kind), window=window, ordered=ordered)
        got = []
        async for x in results:
            got.append(x)
            await asyncio.sleep(1)  # everything settles: the feeder fills the window
            assert len(src.pulled) == len(got) + k
            assert counts(pool)[6] == 0  # every call has ended: only the window holds them
            if len(got) == 3:
                break
        await results.aclose()
        assert sorted(got) == [0, 1, 2]
        if ordered:
            assert got == [0, 1, 2]
        await asyncio.sleep(10)
        assert len(src.pulled) == 3 + k
        await src.close()


@pytest.mark.parametrize(("workers", "window"), [(2, 4), (4, 2), (3, 3), (2, None)])
@pytest.mark.parametrize("ordered", [True, False])
async def test_window_and_workers_both_bound_reading_with_slow_calls(
    workers: int, window: int | None, ordered: bool
) -> None:
    """Calls that do not end hold workers: read = yielded + min(window, max_workers)."""
    src = Source()
    k = 2 * workers if window is None else window

    async def fn(x: int) -> int:
        if x >= 2:
            await asyncio.sleep(100)
        return x

    async with WorkerPool(workers) as pool:
        async with pool.map(fn, src.gen(), window=window, ordered=ordered) as results:
            got = []
            async for x in results:
                got.append(x)
                if len(got) == 2:
                    break
            await asyncio.sleep(10)
            assert len(src.pulled) == 2 + min(k, workers)
            assert counts(pool)[2] == min(k, workers)  # started, in flight
        assert got == [0, 1]
        assert counts(pool)[5] == min(k, workers)  # all CANCELED on leaving


async def test_ordered_head_of_line_fills_the_window() -> None:
    """Ordered: a slow first item holds the window; later results wait, input is not read."""
    src = Source()

    async def fn(x: int) -> int:
        await asyncio.sleep(10 if x == 0 else 1)
        return x

    async with WorkerPool(4) as pool:
        results = pool.map(fn, src.gen(), window=4)
        first = asyncio.ensure_future(results.__anext__())
        await asyncio.sleep(5)
        assert src.pulled == [0, 1, 2, 3]  # 1,2,3 finished but unyielded behind 0
        assert counts(pool)[2] == 1  # only item 0 still runs
        assert await first == 0
        assert now() == 10
        assert [await results.__anext__() for _ in range(3)] == [1, 2, 3]
        await results.aclose()


# -- order ----------------------------------------------------------------------------------------

DELAYS = [5.0, 1.0, 4.0, 2.0, 3.0]


@pytest.mark.parametrize("kind", ["list", "gen", "agen"])
async def test_ordered_output_in_input_order_though_later_items_finish_first(kind: str) -> None:
    async def fn(i: int) -> str:
        await asyncio.sleep(DELAYS[i])
        return f"r{i}"

    src = Source()
    items: Any = list(range(5)) if kind == "list" else src.gen(5) if kind == "gen" else src.agen(5)
    async with WorkerPool(5) as pool:
        out = [(now(), x) async for x in pool.map(fn, items, window=10)]
    assert out == [(5.0, "r0"), (5.0, "r1"), (5.0, "r2"), (5.0, "r3"), (5.0, "r4")]


@pytest.mark.parametrize("kind", ["list", "gen", "agen"])
async def test_unordered_output_in_finish_order(kind: str) -> None:
    async def fn(i: int) -> str:
        await asyncio.sleep(DELAYS[i])
        return f"r{i}"

    src = Source()
    items: Any = list(range(5)) if kind == "list" else src.gen(5) if kind == "gen" else src.agen(5)
    async with WorkerPool(5) as pool:
        out = [(now(), x) async for x in pool.map(fn, items, ordered=False)]
    assert out == [(1.0, "r1"), (2.0, "r3"), (3.0, "r4"), (4.0, "r2"), (5.0, "r0")]


async def test_unordered_with_fewer_workers_exact_schedule() -> None:
    """Two workers: item i starts when a worker frees; yields follow the end times."""

    async def fn(i: int) -> int:
        await asyncio.sleep(DELAYS[i])
        return i

    async with WorkerPool(2) as pool:
        out = [(now(), x) async for x in pool.map(fn, range(5), ordered=False)]
    # w1: 0 [0,5]; w2: 1 [0,1], 2 [1,5], ...; at 5 both free: 3 [5,7], 4 [5,8]
    assert out == [(1.0, 1), (5.0, 0), (5.0, 2), (7.0, 3), (8.0, 4)]


async def test_empty_input_yields_nothing() -> None:
    async with WorkerPool(2) as pool:
        assert [x async for x in pool.map(sleeper(), [])] == []
        src = Source()
        assert [x async for x in pool.map(sleeper(), src.agen(0))] == []
        assert counts(pool)[0] == 0


async def test_map_is_iterable_and_a_new_map_is_a_new_run() -> None:
    async with WorkerPool(2) as pool:
        results = pool.map(sleeper(1, 1), range(3))
        assert results.__aiter__() is results
        assert [x async for x in results] == [0, 1, 2]
        with pytest.raises(StopAsyncIteration):
            await results.__anext__()
        assert [x async for x in pool.map(sleeper(1, 1), range(3))] == [0, 1, 2]
        assert counts(pool) == (6, 0, 0, 6, 0, 0, 0)


# -- sync and async functions --------------------------------------------------------------------


@pytest.mark.realtime
@pytest.mark.parametrize("ordered", [True, False])
async def test_sync_function_runs_in_threads(ordered: bool) -> None:
    threads: set[str] = set()
    main = threading.current_thread()

    def square(x: int) -> int:
        assert threading.current_thread() is not main
        threads.add(threading.current_thread().name)
        return x * x

    ends = Ends()
    async with WorkerPool(4) as pool:
        got = [x async for x in pool.map(square, range(40), ordered=ordered, hooks=ends.hooks)]
    if ordered:
        assert got == [x * x for x in range(40)]
    else:
        assert sorted(got) == [x * x for x in range(40)]
    assert threads
    assert all(name.startswith("asynctasklib") for name in threads)
    assert ends.by_end() == {"done": ids(range(40))}


@pytest.mark.realtime
async def test_sync_function_endless_input_break() -> None:
    src = Source()

    def ident(x: int) -> int:
        return x

    async with WorkerPool(3) as pool:
        got = []
        async for x in pool.map(ident, src.gen(), window=4):
            got.append(x)
            if len(got) == 10:
                break
        async with asyncio.timeout(5):
            await pool.wait()
        await yield_turns()
        assert got == list(range(10))
        assert 10 <= len(src.pulled) <= 14
        s = pool.stats()
        assert s.total == len(src.pulled)
        assert s.done + s.canceled == s.total
        assert feeders_running() == []


@pytest.mark.realtime
async def test_sync_function_failure_is_raised_fail_fast() -> None:
    boom = KeyError("boom")

    def fn(x: int) -> int:
        if x == 5:
            raise boom
        return x

    async with WorkerPool(2) as pool:
        got: list[int] = []
        with pytest.raises(KeyError) as info:
            await drain(pool.map(fn, range(1000)), got)
        assert info.value is boom
        assert got == list(range(len(got)))
        assert len(got) <= 5
        async with asyncio.timeout(5):
            await pool.wait()
        assert pool.stats().total <= 5 + 1 + 4  # yielded + the failure + the window


async def test_async_function_gets_the_item_not_a_run() -> None:
    seen: list[Any] = []

    async def fn(item: Any) -> Any:
        seen.append(item)
        return item

    items = ["a", None, 3, ("t",)]
    async with WorkerPool(1) as pool:
        assert [x async for x in pool.map(fn, items)] == items
    assert seen == items


# -- task ids -------------------------------------------------------------------------------------


async def test_task_ids_are_the_item_index() -> None:
    done: list[str] = []
    pending: list[tuple[str, int]] = []
    hooks = StateHooks(
        on_done=lambda i, _w: done.append(i),
        on_pending=lambda i, _w, attempt: pending.append((i, attempt)),
    )
    async with WorkerPool(1) as pool:
        got = [x async for x in pool.map(sleeper(1, 1), range(100, 105), hooks=hooks)]
    assert got == [100, 101, 102, 103, 104]
    assert done == ["0", "1", "2", "3", "4"]
    assert all(isinstance(i, str) for i in done)
    assert pending == [(str(i), 0) for i in range(5)]


async def test_pool_hooks_see_item_indexes_and_task_ids_are_strings() -> None:
    done: list[str] = []
    seen_tasks: list[Task[Any]] = []
    pool = WorkerPool(
        3, hooks=StateHooks(on_done=lambda i, _w: done.append(i)), retain_finished=False
    )

    async def fn(x: str) -> str:
        seen_tasks.extend(pool.tasks())
        await asyncio.sleep({"a": 3, "b": 1, "c": 2}[x])
        return x.upper()

    async with pool:
        got = [x async for x in pool.map(fn, ["a", "b", "c"], ordered=False)]
    assert got == ["B", "C", "A"]
    assert done == ["1", "2", "0"]
    assert {t.id for t in seen_tasks} == {"0", "1", "2"}


# -- definition options pass through -------------------------------------------------------------


async def test_max_retries_and_constant_backoff_inside_map() -> None:
    attempts: dict[int, list[float]] = {}

    async def flaky(x: int) -> int:
        attempts.setdefault(x, []).append(now())
        if x % 2 and len(attempts[x]) == 1:
            raise ConnectionError(f"first attempt of {x}")
        return x * 10

    async with WorkerPool(10) as pool:
        got = [x async for x in pool.map(flaky, range(6), max_retries=1, backoff=0.5)]
    assert got == [0, 10, 20, 30, 40, 50]
    assert attempts == {0: [0.0], 1: [0.0, 0.5], 2: [0.0], 3: [0.0, 0.5], 4: [0.0], 5: [0.0, 0.5]}
    assert now() == 0.5


async def test_backoff_callable_and_retries_exhausted_inside_map() -> None:
    attempts: list[float] = []
    errors: list[BaseException] = []

    async def always(x: int) -> int:
        attempts.append(now())
        errors.append(ValueError(len(attempts)))
        raise errors[-1]

    async with WorkerPool(2) as pool:
        out = [
            x
            async for x in pool.map(
                always,
                [7],
                max_retries=2,
                backoff=lambda n: n * 0.25,
                return_exceptions=True,
            )
        ]
    assert attempts == [0.0, 0.25, 0.75]
    assert len(out) == 1
    assert out[0] is errors[-1]


async def test_max_duration_times_out_each_call_inside_map() -> None:
    async def fn(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async with WorkerPool(4) as pool:
        out = [
            (now(), x)
            async for x in pool.map(
                fn, [1.0, 2.0, 3.0, 4.0], max_duration=2.5, return_exceptions=True
            )
        ]
    assert [t for t, _ in out] == [1.0, 2.0, 2.5, 2.5]
    assert [x for _, x in out[:2]] == [1.0, 2.0]
    assert isinstance(out[2][1], TaskTimeoutError)
    assert isinstance(out[3][1], TaskTimeoutError)


async def test_max_duration_with_retries_inside_map() -> None:
    starts: list[float] = []

    async def slow_then_quick(x: int) -> int:
        starts.append(now())
        await asyncio.sleep(5 if len(starts) == 1 else 0.5)
        return x

    async with WorkerPool(1) as pool:
        assert [
            x
            async for x in pool.map(
                slow_then_quick, [9], max_duration=1, max_retries=1, backoff=0.25
            )
        ] == [9]
    assert starts == [0.0, 1.25]
    assert now() == 1.75


async def test_delay_option_inside_map() -> None:
    starts: list[float] = []

    async def fn(x: int) -> int:
        starts.append(now())
        return x

    async with WorkerPool(2) as pool:
        assert [x async for x in pool.map(fn, [1, 2], delay=1.5)] == [1, 2]
    assert starts == [1.5, 1.5]


@pytest.mark.parametrize("name", ["id", "task_fn"])
async def test_id_and_task_fn_options_are_refused(name: str) -> None:
    async with WorkerPool(2) as pool:
        options: dict[str, Any] = {name: "x" if name == "id" else sleeper()}
        with pytest.raises(TypeError, match=name):
            pool.map(sleeper(), [1], **options)
        assert counts(pool)[0] == 0


async def test_bad_definition_option_is_refused_at_call() -> None:
    async with WorkerPool(2) as pool:
        with pytest.raises(ValueError, match="max_retries"):
            pool.map(sleeper(), [1], max_retries=-1)
        with pytest.raises(TypeError):
            pool.map(sleeper(), [1], no_such_option=1)


@pytest.mark.parametrize(
    ("window", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)],
)
async def test_bad_window(window: Any, error: type[Exception]) -> None:
    src = Source()
    async with WorkerPool(2) as pool:
        with pytest.raises(error, match="window"):
            pool.map(sleeper(), src.gen(), window=window)
        assert src.pulled == []


@pytest.mark.parametrize("items", [5, None, object(), 3.5])
async def test_non_iterable_items(items: Any) -> None:
    async with WorkerPool(2) as pool:
        with pytest.raises(TypeError, match="iterable"):
            pool.map(sleeper(), items)


# -- failures: fail-fast and collect-all ---------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", ["endless_gen", "endless_agen"])
async def test_fail_fast_cancels_in_flight_stops_reading_and_raises_own_exception(
    ordered: bool, kind: str
) -> None:
    """3 workers, calls take 1 s, item 4 fails after 0.5 s. t=0 reads 0,1,2; t=1 reads 3,4,5;
    t=1.5 item 4 fails: 3 and 5 in flight are CANCELED, nothing more is read."""
    boom = RuntimeError("item 4")
    src = Source()
    ends = Ends()

    async def fn(x: int) -> int:
        if x == 4:
            await asyncio.sleep(0.5)
            raise boom
        await asyncio.sleep(1)
        return x

    async with WorkerPool(3) as pool:
        got: list[int] = []
        with pytest.raises(RuntimeError) as info:
            await drain(
                pool.map(fn, src.make(kind), window=6, ordered=ordered, hooks=ends.hooks), got
            )
        assert info.value is boom
        assert now() == 1.5
        assert sorted(got) == [0, 1, 2]
        assert src.pulled == [0, 1, 2, 3, 4, 5]
        async with asyncio.timeout(GUARD):
            await pool.wait()
        assert ends.by_end() == {"done": ids(0, 1, 2), "failed": ids(4), "canceled": ids(3, 5)}
        await asyncio.sleep(50)
        assert src.pulled == [0, 1, 2, 3, 4, 5]
        assert counts(pool) == (6, 0, 0, 3, 1, 2, 0)
        assert feeders_running() == []
        await src.close()


async def test_fail_fast_after_retries() -> None:
    """The failure is raised only after its retries: item 4 fails three times (0.5 s each,
    0.125 s backoff): attempts at 1, 1.625, 2.25, raised at 2.75. Meanwhile 3 and 5 end at 2
    and 6, 7 start then; they are CANCELED at 2.75."""
    boom: list[BaseException] = []
    attempts: list[float] = []
    src = Source()
    ends = Ends()

    async def fn(x: int) -> int:
        if x == 4:
            attempts.append(now())
            await asyncio.sleep(0.5)
            boom.append(OSError(len(attempts)))
            raise boom[-1]
        await asyncio.sleep(1)
        return x

    async with WorkerPool(3) as pool:
        got: list[int] = []
        results = pool.map(fn, src.gen(), window=6, hooks=ends.hooks, max_retries=2, backoff=0.125)
        with pytest.raises(OSError) as info:  # noqa: PT011 - identity is checked below
            await drain(results, got)
        assert now() == 2.75
        assert len(boom) == 3
        assert info.value is boom[-1]
        assert attempts == [1.0, 1.625, 2.25]
        assert got == [0, 1, 2, 3]
        assert src.pulled == list(range(8))
        async with asyncio.timeout(GUARD):
            await pool.wait()
        assert ends.by_end() == {
            "done": ids(0, 1, 2, 3, 5),
            "failed": ids(4),
            "canceled": ids(6, 7),
        }


async def test_fail_fast_timeout_raises_task_timeout_error() -> None:
    async def fn(x: int) -> int:
        await asyncio.sleep(x)
        return x

    async with WorkerPool(3) as pool:
        got: list[int] = []
        with pytest.raises(TaskTimeoutError, match="max_duration=3"):
            await drain(pool.map(fn, [1, 5, 2, 1], max_duration=3), got)
        assert now() == 3.0
        assert got == [1]
        async with asyncio.timeout(GUARD):
            await pool.wait()
        assert counts(pool) == (4, 0, 0, 3, 1, 0, 0)


@pytest.mark.parametrize("ordered", [True, False])
async def test_return_exceptions_yields_failures_in_place_and_goes_on(ordered: bool) -> None:
    raised: dict[int, BaseException] = {}

    async def fn(x: int) -> int:
        await asyncio.sleep(10 - x)
        if x % 3 == 0:
            raised[x] = ValueError(x)
            raise raised[x]
        return x * 10

    ends = Ends()
    async with WorkerPool(4) as pool:
        out = [
            x
            async for x in pool.map(
                fn, range(10), return_exceptions=True, ordered=ordered, hooks=ends.hooks
            )
        ]
        assert counts(pool) == (10, 0, 0, 6, 4, 0, 0)
    assert len(out) == 10
    expected = [raised[x] if x % 3 == 0 else x * 10 for x in range(10)]
    if ordered:
        assert len(out) == len(expected)
        assert all(
            a is b if isinstance(b, BaseException) else a == b
            for a, b in zip(out, expected, strict=True)
        )
    else:
        values = [x for x in out if not isinstance(x, BaseException)]
        errors = [x for x in out if isinstance(x, BaseException)]
        assert sorted(values) == [10, 20, 40, 50, 70, 80]
        assert {id(e) for e in errors} == {id(e) for e in raised.values()}
    assert ends.by_end() == {"done": ids(1, 2, 4, 5, 7, 8), "failed": ids(0, 3, 6, 9)}


async def test_return_exceptions_with_endless_input_then_break() -> None:
    async def fn(x: int) -> int:
        if x % 2:
            raise LookupError(x)
        return x

    src = Source()
    async with WorkerPool(2) as pool:
        out: list[Any] = []
        async for x in pool.map(fn, src.gen(), return_exceptions=True, window=3):
            out.append(x)
            if len(out) == 6:
                break
        assert [x if not isinstance(x, BaseException) else x.args[0] for x in out] == list(range(6))
        assert all(isinstance(x, LookupError) for x in out[1::2])
        async with asyncio.timeout(GUARD):
            await pool.wait()
        assert len(src.pulled) <= 6 + 3


# -- the consumer canceled -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["wait_for", "task_cancel"])
@pytest.mark.parametrize("kind", ["endless_gen", "endless_agen"])
async def test_consumer_canceled_mid_stream(how: str, kind: str) -> None:
    """3 workers, 1 s calls, a quick consumer: reads 0-2 at t=0, 3-5 at t=1, 6-8 at t=2.
    Cancelled at 2.5: 6,7,8 CANCELED, nothing more read."""
    src = Source()
    ends = Ends()
    got: list[int] = []

    async with WorkerPool(3) as pool:

        async def consume() -> None:
            async for x in pool.map(sleeper(), src.make(kind), window=5, hooks=ends.hooks):
                got.append(x)

        if how == "wait_for":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(consume(), 2.5)
        else:
            consumer = asyncio.ensure_future(consume())
            await asyncio.sleep(2.5)
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
        assert now() == 2.5
        assert got == [0, 10, 20, 30, 40, 50]
        assert src.pulled == list(range(9))
        async with asyncio.timeout(GUARD):
            await pool.wait()
        assert now() == 2.5
        await wait_all_tasks_blocked()
        assert feeders_running() == []
        assert ends.by_end() == {"done": ids(range(6)), "canceled": ids(6, 7, 8)}
        await asyncio.sleep(100)
        assert src.pulled == list(range(9))
        assert counts(pool) == (9, 0, 0, 6, 0, 3, 0)
        await src.close()


# -- the input failing ----------------------------------------------------------------------------


async def test_async_input_raising_midway_is_raised_to_the_consumer() -> None:
    bad = ValueError("input broke")

    async def items() -> AsyncIterator[int]:
        for i in range(3):
            await asyncio.sleep(1)
            yield i
        await asyncio.sleep(1)
        raise bad

    async with WorkerPool(2) as pool:
        got: list[tuple[float, int]] = []
        with pytest.raises(ValueError, match="input broke") as info:
            await drain(pool.map(sleeper(0.5), items()), got, stamp=True)
        assert info.value is bad
        assert got == [(1.5, 0), (2.5, 10), (3.5, 20)]
        assert now() == 4.0
        await wait_all_tasks_blocked()
        assert feeders_running() == []
        assert counts(pool) == (3, 0, 0, 3, 0, 0, 0)


async def test_sync_input_raising_midway_is_raised_and_in_flight_canceled() -> None:
    bad = ArithmeticError("input broke")
    ends = Ends()

    def items() -> Iterator[int]:
        yield 0
        yield 1
        yield 2
        raise bad

    async with WorkerPool(4) as pool:
        got: list[int] = []
        with pytest.raises(ArithmeticError) as info:
            await drain(pool.map(sleeper(), items(), hooks=ends.hooks), got)
        assert info.value is bad
        assert got == [0, 10, 20][: len(got)]
        async with asyncio.timeout(GUARD):
            await pool.wait()
        await wait_all_tasks_blocked()
        assert feeders_running() == []
        s = pool.stats()
        assert s.total == 3
        assert s.pending == s.started == 0
        assert set(ends.ends) == ids(0, 1, 2)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_input_raising_on_iter_is_raised_to_the_consumer(kind: str) -> None:
    class BadIterable:
        def __iter__(self) -> Iterator[int]:
            raise OSError("cannot open")

    class BadAsyncIterable:
        def __aiter__(self) -> AsyncIterator[int]:
            raise OSError("cannot open")

    items = BadIterable() if kind == "sync" else BadAsyncIterable()
    async with WorkerPool(2) as pool:
        got: list[Any] = []
        with pytest.raises(OSError, match="cannot open"):
            # a hang fails (TimeoutError) instead of blocking
            await asyncio.wait_for(drain(pool.map(sleeper(), items), got), GUARD)
        await wait_all_tasks_blocked()
        assert feeders_running() == []


# -- the source waiting, tasks canceled from outside, the pool stopped ----------------------------


async def test_break_while_the_async_source_waits_on_a_queue() -> None:
    """An async iterator fed by a queue: the feeder waits inside it when the consumer leaves;
    it is canceled there, and nothing is left waiting."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    finalized: list[str] = []

    async def from_queue() -> AsyncIterator[int]:
        try:
            while True:
                yield await queue.get()
        finally:
            finalized.append("closed")

    for i in range(3):
        queue.put_nowait(i)
    async with WorkerPool(2) as pool:
        got = []
        async for x in pool.map(sleeper(), from_queue()):
            got.append(x)
            if len(got) == 3:
                break
        await wait_all_tasks_blocked()
        assert got == [0, 10, 20]
        assert feeders_running() == []
        assert finalized == ["closed"]  # the CancelledError went through the generator
        queue.put_nowait(99)
        await asyncio.sleep(10)
        assert queue.qsize() == 1  # nothing reads the queue any more
        assert counts(pool) == (3, 0, 0, 3, 0, 0, 0)


@pytest.mark.parametrize("return_exceptions", [True, False])
async def test_mapped_task_canceled_from_outside(return_exceptions: bool) -> None:
    pool = WorkerPool(2, retain_finished=False)
    async with pool:
        results = pool.map(sleeper(), range(4), return_exceptions=return_exceptions)
        first = asyncio.ensure_future(results.__anext__())
        await asyncio.sleep(0.5)
        in_flight = {t.id: t for t in pool.tasks()}
        assert sorted(in_flight) == ["0", "1"]
        assert in_flight["1"].cancel() is True
        if return_exceptions:
            assert await first == 0
            rest = [x async for x in results]
            assert isinstance(rest[0], TaskCanceledError)
            assert rest[0] is in_flight["1"].error
            assert rest[1:] == [20, 30]
            assert counts(pool) == (4, 0, 0, 3, 0, 1, 0)
        else:
            # the first failure (at 0.5) is raised at once; item 0 in flight is canceled
            with pytest.raises(TaskCanceledError) as info:
                await first
            assert info.value is in_flight["1"].error
            assert now() == 0.5
            async with asyncio.timeout(GUARD):
                await pool.wait()
            assert now() == 0.5
            assert counts(pool) == (2, 0, 0, 0, 0, 2, 0)  # nothing more read after it


async def test_source_that_ignores_cancellation_gets_no_more_items_started() -> None:
    """The consumer leaves while the feeder waits inside the source; the source swallows the
    cancellation and yields one more item anyway: that item is not started."""
    pulled: list[int] = []
    swallowed: list[float] = []

    async def stubborn() -> AsyncGenerator[int, None]:
        for i in range(100):
            if i == 3:
                try:
                    await asyncio.sleep(50)
                except asyncio.CancelledError:
                    swallowed.append(now())
            pulled.append(i)
            yield i

    src = stubborn()
    async with WorkerPool(2) as pool:
        async with pool.map(sleeper(), src, window=10) as results:
            got = [await results.__anext__() for _ in range(2)]
        assert now() == 1.0
        assert got == [0, 10]
        assert swallowed == [1.0]
        assert pulled == [0, 1, 2, 3]  # 3 was read after the stop, and dropped
        # 0, 1 done; 2 (started at 1.0) canceled in flight; 3 never started
        assert counts(pool) == (3, 0, 0, 2, 0, 1, 0)
        await asyncio.sleep(100)
        assert pulled == [0, 1, 2, 3]
        assert pool.active_workers == 0
    await src.aclose()


async def test_map_on_a_stopped_pool_raises_pool_stopped_error() -> None:
    async with WorkerPool(2) as pool:
        pool.stop()
        got: list[Any] = []
        with pytest.raises(PoolStoppedError):
            await asyncio.wait_for(drain(pool.map(sleeper(), range(3)), got), GUARD)
        assert got == []


async def test_map_on_a_stopped_pool_creates_no_task() -> None:
    created: list[str] = []
    async with WorkerPool(2) as pool:
        pool.stop()
        with pytest.raises(PoolStoppedError):
            await asyncio.wait_for(
                drain(
                    pool.map(
                        sleeper(),
                        range(3),
                        hooks=StateHooks(on_created=lambda i, _w: created.append(i)),
                    ),
                    [],
                ),
                GUARD,
            )
        assert created == []
        assert pool.stats().total == 0


async def test_pool_stopped_mid_stream_finishes_what_runs_then_raises() -> None:
    """stop() lets the tasks already submitted run (as for submit): the stream yields their
    results, then raises PoolStoppedError for the input it could not run; nothing hangs."""
    src = Source()
    pool = WorkerPool(2)
    got: list[Any] = []
    consumer = asyncio.ensure_future(drain(pool.map(sleeper(), src.gen()), got))
    await asyncio.sleep(2.5)
    pool.stop()
    with pytest.raises(PoolStoppedError):
        await asyncio.wait_for(consumer, GUARD)
    assert now() == 3.0  # items 4 and 5 ran to their end
    assert got == [0, 10, 20, 30, 40, 50]
    await pool.shutdown()
    s = pool.stats()
    assert s.total == len(src.pulled) == 6
    assert s.done == 6
    assert s.pending == s.started == s.active_workers == 0


async def test_pool_shut_down_mid_stream_cancels_and_raises_the_cancellation() -> None:
    """shutdown(cancel=True) cancels the tasks in progress: for the stream that is a task
    canceled from outside, the first failure, raised at once (fail-fast)."""
    src = Source()
    pool = WorkerPool(2)
    got: list[Any] = []
    consumer = asyncio.ensure_future(drain(pool.map(sleeper(), src.gen()), got))
    await asyncio.sleep(2.5)
    await pool.shutdown()
    with pytest.raises(TaskCanceledError):
        await asyncio.wait_for(consumer, GUARD)
    assert now() == 2.5
    assert got == [0, 10, 20, 30]
    s = pool.stats()
    assert s.total == len(src.pulled) == 6
    assert (s.done, s.canceled) == (4, 2)
    assert s.pending == s.started == s.active_workers == 0


async def test_concurrent_anext_on_one_map_does_not_hang() -> None:
    """Like an async generator, a second concurrent __anext__ must raise RuntimeError, or each
    caller must get its own result; it must not wait forever."""
    async with WorkerPool(2) as pool:
        results = pool.map(sleeper(), range(4))
        a = asyncio.ensure_future(results.__anext__())
        b = asyncio.ensure_future(results.__anext__())
        done, _ = await asyncio.wait([a, b], timeout=100)
        for f in (a, b):
            f.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
        await results.aclose()
        assert done == {a, b}
        outcomes = [f.exception() or f.result() for f in (a, b)]
        values = [o for o in outcomes if not isinstance(o, RuntimeError)]
        assert values  # at least one caller got a result
        assert len(set(values)) == len(values)  # none delivered twice
        assert set(values) <= {0, 10}


# -- memory: O(window), not O(items) ------------------------------------------------------------


async def test_mapped_tasks_are_not_retained_but_counted() -> None:
    pool = WorkerPool(4, retain_finished=True)
    async with pool:
        assert [x async for x in pool.map(sleeper(1, 1), range(100))] == list(range(100))
        assert pool.tasks() == []
        assert counts(pool) == (100, 0, 0, 100, 0, 0, 0)
        # a plain submit in the same pool is still retained
        task = await pool.submit(Definition(task_fn=lambda run: 1))
        await task.wait()
        assert pool.tasks() == [task]
        assert pool.stats().total == 101


async def test_mapped_tasks_in_progress_are_listed_by_tasks() -> None:
    """tasks() lists every task of the pool (issue 2); streams drop them only once ended."""
    pool = WorkerPool(2, retain_finished=True)
    async with pool:
        results = pool.map(sleeper(), range(10))
        fut = asyncio.ensure_future(results.__anext__())
        await asyncio.sleep(0.5)
        assert sorted(t.id for t in pool.tasks()) == ["0", "1"]
        assert await fut == 0
        await results.aclose()


@pytest.mark.parametrize("retain", [True, False])
async def test_ten_thousand_items_keep_bounded_tasks_and_window(retain: bool) -> None:
    src = Source()
    peak_in_progress = 0
    peak_listed = 0
    pool = WorkerPool(10, retain_finished=retain)

    def on_started(_id: str, _when: object) -> None:
        nonlocal peak_in_progress, peak_listed
        s = pool.stats()
        peak_in_progress = max(peak_in_progress, s.pending + s.started)
        peak_listed = max(peak_listed, len(pool.tasks()))

    async def fn(x: int) -> int:
        await asyncio.sleep(0)
        return x

    peak_window = 0
    n = 0
    async with pool:
        async for x in pool.map(fn, src.gen(10_000), hooks=StateHooks(on_started=on_started)):
            assert x == n
            n += 1
            peak_window = max(peak_window, len(src.pulled) - n)
        assert n == 10_000
        assert counts(pool) == (10_000, 0, 0, 10_000, 0, 0, 0)
        assert pool.tasks() == []
    assert peak_in_progress == 10  # bounded by max_workers (< window = 20)
    assert peak_window <= 20
    assert peak_listed == 10  # in progress: listed by tasks() either way


# -- total_timeout and Retry-After inside map -------------------------------------------------


async def test_total_timeout_spent_by_failures_and_backoff_inside_map() -> None:
    """Fails at once, backoff 0.25: attempts at 0, .25, .5, .75; the next retry would start at
    1.0, past the 0.9 s budget: TaskTimeoutError, not retried again."""
    attempts: list[float] = []
    last: list[BaseException] = []

    async def fn(x: int) -> int:
        attempts.append(now())
        last.append(ConnectionResetError(len(attempts)))
        raise last[-1]

    async with WorkerPool(2) as pool:
        with pytest.raises(TaskTimeoutError) as info:
            async for _ in pool.map(fn, [1], max_retries=100, backoff=0.25, total_timeout=0.9):
                pass
        assert attempts == [0.0, 0.25, 0.5, 0.75]
        assert info.value.__cause__ is last[-1]
        await asyncio.sleep(10)
        assert len(attempts) == 4
        assert counts(pool) == (1, 0, 0, 0, 1, 0, 0)


async def test_total_timeout_cuts_a_running_attempt_inside_map() -> None:
    attempts: list[float] = []

    async def fn(x: int) -> int:
        attempts.append(now())
        await asyncio.sleep(0.75)
        raise ConnectionError("again")

    async with WorkerPool(2) as pool:
        out = [
            (now(), x)
            async for x in pool.map(
                fn, [1], max_retries=10, backoff=0, total_timeout=1.0, return_exceptions=True
            )
        ]
    assert attempts == [0.0, 0.75]
    assert len(out) == 1
    assert out[0][0] == 1.0
    assert isinstance(out[0][1], TaskTimeoutError)


async def test_total_timeout_per_item_not_per_map() -> None:
    """Each mapped task has its own budget, counted from its own start."""

    async def fn(x: int) -> int:
        await asyncio.sleep(0.75)
        return x

    async with WorkerPool(1) as pool:
        out = [x async for x in pool.map(fn, range(4), total_timeout=1.0)]
    assert out == [0, 1, 2, 3]
    assert now() == 3.0


class RetryAfter(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


async def test_retry_on_predicate_seconds_is_the_exact_wait_inside_map() -> None:
    attempts: dict[int, list[float]] = {}

    async def fn(x: int) -> int:
        a = attempts.setdefault(x, [])
        a.append(now())
        if len(a) == 1:
            raise RetryAfter(x * 1.25)
        return x

    def retry_on(exc: BaseException) -> bool | float:
        return exc.seconds if isinstance(exc, RetryAfter) else False

    async with WorkerPool(4) as pool:
        got = [
            x async for x in pool.map(fn, [1, 2, 3], max_retries=1, backoff=100, retry_on=retry_on)
        ]
    assert got == [1, 2, 3]
    assert attempts == {1: [0.0, 1.25], 2: [0.0, 2.5], 3: [0.0, 3.75]}


async def test_retry_on_predicate_true_false_inside_map() -> None:
    attempts: dict[int, list[float]] = {}
    errors: dict[int, BaseException] = {}

    async def fn(x: int) -> int:
        attempts.setdefault(x, []).append(now())
        if len(attempts[x]) == 1:
            errors[x] = (KeyError if x == 1 else IndexError)(x)
            raise errors[x]
        return x

    async with WorkerPool(4) as pool:
        out = [
            x
            async for x in pool.map(
                fn,
                [1, 2],
                max_retries=3,
                backoff=0.5,
                retry_on=lambda e: isinstance(e, KeyError),
                return_exceptions=True,
            )
        ]
    assert out[0] == 1
    assert out[1] is errors[2]
    assert attempts == {1: [0.0, 0.5], 2: [0.0]}


async def test_retry_after_longer_than_total_timeout_fails_at_once() -> None:
    attempts: list[float] = []

    async def fn(x: int) -> int:
        attempts.append(now())
        raise RetryAfter(5)

    async with WorkerPool(2) as pool:
        out = [
            x
            async for x in pool.map(
                fn,
                [1],
                max_retries=3,
                retry_on=lambda e: e.seconds,
                total_timeout=2,
                return_exceptions=True,
            )
        ]
    assert attempts == [0.0]
    assert isinstance(out[0], TaskTimeoutError)
    assert isinstance(out[0].__cause__, RetryAfter)
    assert now() == 0.0


# -- gather ---------------------------------------------------------------------------------------


def job(seconds: float, result: Any = None, error: BaseException | None = None) -> Definition[Any]:
    async def fn(run: Any) -> Any:
        await asyncio.sleep(seconds)
        if error is not None:
            raise error
        return result

    return Definition(task_fn=fn, id=f"job{seconds}")


async def test_gather_definitions_and_tasks_mixed_results_in_order() -> None:
    async with WorkerPool(4) as pool:
        early = await pool.submit(job(3, "early"))
        standalone: Task[Any] = Task(job(1, "standalone"))
        standalone.go()
        out = await pool.gather([job(4, "a"), early, job(2, "b"), standalone, job(1, "c")])
        assert out == ["a", "early", "b", "standalone", "c"]
        assert now() == 4.0
        assert pool.stats().total == 4  # 3 definitions + the submitted task


async def test_gather_empty() -> None:
    async with WorkerPool(2) as pool:
        assert await pool.gather([]) == []
        assert pool.stats().total == 0


async def test_gather_waits_for_workers() -> None:
    async with WorkerPool(2) as pool:
        out = await pool.gather([job(1, i) for i in range(5)])
        assert out == [0, 1, 2, 3, 4]
        assert now() == 3.0


async def test_gather_fail_fast() -> None:
    """3 workers: a submitted task (10 s), a failing definition (1 s), a long one (10 s) and
    one more that waits for a worker. The failure at t=1 cancels the others; the last is never
    submitted; the failure itself is raised."""
    boom = RuntimeError("boom")
    async with WorkerPool(3) as pool:
        running = await pool.submit(job(10, "r"))
        with pytest.raises(RuntimeError) as info:
            await pool.gather([running, job(1, error=boom), job(10, "long"), job(0.5, "never")])
        assert info.value is boom
        assert now() == 1.0
        tasks = pool.tasks()
        assert [t.state for t in tasks] == [State.CANCELED, State.FAILED, State.CANCELED]
        assert [t.id for t in tasks] == ["job10", "job1", "job10"]
        assert counts(pool) == (3, 0, 0, 0, 1, 2, 0)


async def test_gather_fail_fast_stops_submitting_after_failure() -> None:
    boom = ValueError("first")
    async with WorkerPool(1) as pool:
        with pytest.raises(ValueError, match="first") as info:
            await pool.gather([job(1, error=boom), job(1, "x"), job(1, "y")])
        assert info.value is boom
        assert counts(pool) == (1, 0, 0, 0, 1, 0, 0)


async def test_gather_first_failure_wins() -> None:
    first = ValueError("first")
    second = ValueError("second")
    async with WorkerPool(3) as pool:
        with pytest.raises(ValueError, match="first") as info:
            await pool.gather([job(2, error=second), job(1, error=first), job(3, "z")])
        assert info.value is first
        assert [t.state for t in pool.tasks()] == [State.CANCELED, State.FAILED, State.CANCELED]


async def test_gather_return_exceptions_in_place() -> None:
    e1 = KeyError("k")
    e2 = OSError("o")
    async with WorkerPool(3) as pool:
        cancelled = await pool.submit(job(5, "never"))
        out_fut = asyncio.ensure_future(
            pool.gather(
                [job(1, error=e1), job(3, "b"), cancelled, job(2, error=e2), job(4, "d")],
                return_exceptions=True,
            )
        )
        await asyncio.sleep(0.5)
        cancelled.cancel()
        out = await out_fut
        assert now() == 5.0  # 3 workers: e2 starts at 0.5 (the canceled slot), d at 1 (e1 ended)
        assert out[0] is e1
        assert out[3] is e2
        assert [out[1], out[4]] == ["b", "d"]
        assert isinstance(out[2], TaskCanceledError)
        assert counts(pool) == (5, 0, 0, 2, 2, 1, 0)


async def test_gather_caller_canceled_cancels_the_tasks() -> None:
    async with WorkerPool(2) as pool:
        submitted = await pool.submit(job(10, "s"))
        caller = asyncio.ensure_future(pool.gather([submitted, job(10, "a"), job(10, "b")]))
        await asyncio.sleep(1)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        async with asyncio.timeout(GUARD):
            await pool.wait()
        assert now() == 1.0
        # "b" waited for a worker and was never submitted
        assert [t.state for t in pool.tasks()] == [State.CANCELED, State.CANCELED]
        assert counts(pool) == (2, 0, 0, 0, 0, 2, 0)


async def test_gather_with_an_already_failed_task_submits_nothing_after_it() -> None:
    boom = ValueError("already")
    async with WorkerPool(2) as pool:
        failed = await pool.submit(job(0.5, error=boom))
        await failed.wait()
        with pytest.raises(ValueError, match="already") as info:
            await pool.gather([job(1, "before"), failed, job(1, "after")])
        assert info.value is boom
        assert now() == 0.5  # raised at once: "before" is canceled, "after" never submitted
        assert [t.state for t in pool.tasks()] == [State.FAILED, State.CANCELED]
        assert counts(pool) == (2, 0, 0, 0, 1, 1, 0)


async def test_gather_return_exceptions_with_ended_tasks() -> None:
    boom = ValueError("already")
    async with WorkerPool(2) as pool:
        failed = await pool.submit(job(0.5, error=boom))
        ok = await pool.submit(job(0.5, "ok"))
        await pool.wait()
        out = await pool.gather([failed, job(1, "new"), ok], return_exceptions=True)
        assert out[0] is boom
        assert out[1:] == ["new", "ok"]
        assert now() == 1.5


@pytest.mark.parametrize("bad", [5, "def", None, lambda run: 1])
async def test_gather_type_error_for_other_items_submits_nothing(bad: Any) -> None:
    async with WorkerPool(2) as pool:
        with pytest.raises(TypeError, match=r"items\[1\]"):
            await pool.gather([job(1, "a"), bad])
        assert counts(pool) == (0, 0, 0, 0, 0, 0, 0)


# -- as_completed --------------------------------------------------------------------------------


async def test_as_completed_end_order_whatever_the_end() -> None:
    async with WorkerPool(5) as pool:
        done3 = await pool.submit(job(3, "d3"))
        fail1 = await pool.submit(job(1, error=ValueError("f")))
        cancel2 = await pool.submit(job(10, "c"))
        done4 = await pool.submit(job(4, "d4"))
        done05 = await pool.submit(job(0.5, "d05"))
        asyncio.get_running_loop().call_at(2.0, cancel2.cancel)
        out = [(now(), t) async for t in pool.as_completed([done3, fail1, cancel2, done4, done05])]
    assert [t for _, t in out] == [done05, fail1, cancel2, done3, done4]
    assert [when for when, _ in out] == [0.5, 1.0, 2.0, 3.0, 4.0]
    assert [t.state for _, t in out] == [
        State.DONE,
        State.FAILED,
        State.CANCELED,
        State.DONE,
        State.DONE,
    ]


async def test_as_completed_already_ended_come_first_each_once() -> None:
    async with WorkerPool(3) as pool:
        a = await pool.submit(job(1, "a"))
        b = await pool.submit(job(2, "b"))
        await a.wait()
        c = await pool.submit(job(0.5, "c"))
        out = [t async for t in pool.as_completed([b, a, c, a])]
        # the same task twice is yielded twice (once per entry), like asyncio.as_completed
        assert out[:2] == [a, a]
        assert out[2:] == [c, b]
        assert now() == 2.0


async def test_as_completed_empty_and_standalone_tasks() -> None:
    async with WorkerPool(1) as pool:
        none: list[Task[Any]] = []
        assert [t async for t in pool.as_completed(none)] == []
        t1: Task[Any] = Task(job(2, 2))
        t2: Task[Any] = Task(job(1, 1))
        t1.go()
        t2.go()
        assert [t.result() async for t in pool.as_completed([t1, t2])] == [1, 2]


async def test_as_completed_timeout_cancels_nothing() -> None:
    async with WorkerPool(3) as pool:
        quick = await pool.submit(job(1, "q"))
        slow = await pool.submit(job(5, "s"))
        got: list[Task[Any]] = []
        with pytest.raises(TimeoutError):
            await drain(pool.as_completed([quick, slow], timeout=2), got)
        assert now() == 2.0
        assert got == [quick]
        assert slow.state is State.STARTED
        await slow.wait()
        assert slow.result() == "s"
        assert now() == 5.0


async def test_as_completed_bad_timeout() -> None:
    async with WorkerPool(1) as pool:
        t = await pool.submit(job(1, 1))
        with pytest.raises(ValueError, match="timeout"):
            async for _ in pool.as_completed([t], timeout=-1):
                pass
        await t.wait()


@pytest.mark.parametrize("bad", [5, "task", job(1)])
async def test_as_completed_type_error_for_non_tasks(bad: Any) -> None:
    async with WorkerPool(2) as pool:
        t = await pool.submit(job(1, 1))
        with pytest.raises(TypeError, match=r"tasks\[1\]"):
            async for _ in pool.as_completed([t, bad]):
                pass
        assert t.is_in_progress()  # nothing canceled
        await t.wait()


# -- found in review ------------------------------------------------------------------------


async def test_shutdown_while_a_map_waits_for_its_async_input() -> None:
    """stop()/shutdown() end the feed: the slot it held for the next item is freed, the
    consumer gets what ran, then PoolStoppedError, and no item is started afterwards."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in (1, 2):
        queue.put_nowait(i)

    async def source() -> AsyncIterator[int]:
        while True:
            yield await queue.get()

    async def double(x: int) -> int:
        return 2 * x

    pool = WorkerPool(2)
    results = pool.map(double, source())
    got = [await anext(results), await anext(results)]
    await wait_all_tasks_blocked()  # the feeder waits for the queue, holding a slot for the item
    async with asyncio.timeout(GUARD):
        await pool.shutdown()
    assert feeders_running() == []
    queue.put_nowait(99)  # too late: the feed has ended
    with pytest.raises(PoolStoppedError):
        await anext(results)
    assert got == [2, 4]
    assert pool.stats().total == 2


async def test_aclose_from_another_task_ends_a_waiting_consumer() -> None:
    async with WorkerPool(2) as pool:
        results = pool.map(sleeper(seconds=100), range(3))  # the input is read whole at once
        got: list[Any] = []
        consumer = asyncio.create_task(drain(results, got))
        await wait_all_tasks_blocked()
        await results.aclose()
        async with asyncio.timeout(GUARD):
            await consumer  # it ends, without results
        assert got == []


async def test_a_mapped_function_raising_stop_async_iteration_fails_the_run() -> None:
    """It must not end `async for` quietly, as if the input were done."""

    async def empty() -> AsyncIterator[int]:
        return
        yield  # (an async generator that yields nothing)

    async def fn(x: int) -> int:
        if x == 3:
            await anext(empty())  # raises StopAsyncIteration
        return x

    async with WorkerPool(1) as pool:
        got: list[Any] = []
        with pytest.raises(RuntimeError, match="StopAsyncIteration") as info:
            await drain(pool.map(fn, range(10)), got)
        assert isinstance(info.value.__cause__, StopAsyncIteration)
        assert got == [0, 1, 2]


async def test_a_full_window_left_unread_does_not_outlive_the_pool() -> None:
    async with WorkerPool(2) as pool:
        results = pool.map(sleeper(seconds=0), itertools.count(), window=4)
        assert await anext(results) == 0
        await wait_all_tasks_blocked()  # the window is full again: the feeder waits for room
    assert feeders_running() == []
    with pytest.raises(PoolStoppedError):
        async for _ in results:
            pass


# -- a stop landing before the feeder has started -------------------------------------------


@pytest.mark.skipif(EAGER, reason=NO_MOMENT_BEFORE_THE_FEEDER)
@pytest.mark.parametrize("how", ["stop", "shutdown", "shutdown_cancel"])
async def test_a_stop_between_the_consumers_first_step_and_the_feeders_start_ends_it(
    how: str,
) -> None:
    """The consumer's first ``__anext__`` makes the feeder task and waits; a stop landing
    before the feeder's first step cancels a task that never runs ``feed()`` (nor its
    ``finally``). The consumer used to wait forever."""
    pool = WorkerPool(2)
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(5):
            pulled.append(i)
            yield i

    got: list[int] = []
    consumer = asyncio.create_task(drain(pool.map(lambda x: asyncio.sleep(0, x), items()), got))
    await asyncio.sleep(0)  # the consumer's first step: the feeder made, not yet started
    [feeder] = feeders_running()
    if how == "stop":
        pool.stop()
    else:
        await pool.shutdown(cancel=how == "shutdown_cancel")
    async with asyncio.timeout(GUARD):
        with pytest.raises(PoolStoppedError):
            await consumer
    assert feeder.cancelled()
    assert got == []
    assert pulled == []
    await pool.shutdown()
    assert pool.stats().total == 0


@pytest.mark.skipif(EAGER, reason=NO_MOMENT_BEFORE_THE_FEEDER)
@pytest.mark.realtime
@pytest.mark.parametrize("how", ["stop", "shutdown"])
def test_blocking_map_ends_when_stopped_before_its_feeder_starts(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same point through the blocking face: the stop lands on the portal's loop right
    after the consumer's first step has made the feeder (a ``stop()`` from another thread
    lands at any point; here at that one, deterministically)."""
    from asynctasklib import blocking

    pool = blocking.WorkerPool(2)
    begin = MapResults._begin

    def begin_then_stop(self: MapResults[Any]) -> None:
        begin(self)
        [feeder] = feeders_running()
        assert not feeder.done()
        pool._pool.stop()  # (on the loop's thread: at once, before the feeder's first step)

    monkeypatch.setattr(MapResults, "_begin", begin_then_stop)

    async def double(x: int) -> int:  # (async: its run is the loop's, with a feeder)
        return 2 * x

    results = pool.map(double, range(5))
    with pytest.raises(PoolStoppedError):
        next(results)
    if how == "stop":
        pool.stop()
    pool.shutdown()
    assert pool.stats().total == 0


@pytest.mark.skipif(EAGER, reason=NO_MOMENT_BEFORE_THE_FEEDER)
async def test_shutdown_returns_once_the_stopped_feeders_have_ended() -> None:
    """shutdown() used to return with a stopped feeder not yet ended, its consumer not yet
    told; the blocking face closes its loop right then, and a consumer thread waiting in
    ``next()`` got a CancelledError instead of PoolStoppedError."""
    pool = WorkerPool(2)
    consumer = asyncio.create_task(drain(pool.map(lambda x: asyncio.sleep(0, x), range(5)), []))
    await asyncio.sleep(0)  # the consumer's first step: the feeder made, not yet started
    [feeder] = feeders_running()
    await pool.shutdown()
    assert feeder.done()  # (no turn of the loop between shutdown()'s end and this)
    async with asyncio.timeout(GUARD):
        with pytest.raises(PoolStoppedError):
            await consumer


@pytest.mark.realtime
def test_a_blocking_call_in_flight_when_the_pool_shuts_down_gets_pool_stopped() -> None:
    """A consumer's ``next()`` that reaches the loop as ``shutdown()`` closes it is
    canceled with the loop: it gets PoolStoppedError, as one arriving after it would, not
    a bare CancelledError."""
    from asynctasklib import blocking

    pool = blocking.WorkerPool(1)
    arrived = threading.Event()
    errors: list[BaseException] = []

    async def waits_for_ever() -> None:
        arrived.set()
        await asyncio.Event().wait()

    def caller() -> None:
        try:
            pool._call("map()", waits_for_ever())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert arrived.wait(REAL_GUARD)
    pool.shutdown()  # closes the loop under the call
    thread.join(REAL_GUARD)
    [error] = errors
    assert isinstance(error, PoolStoppedError)
