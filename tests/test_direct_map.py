"""A blocking pool's ``map`` of a plain function, driven by its consumer's thread and the direct
crew (`asynctasklib._direct_map`).

Most cases run twice, ``path="direct"`` (a pool with no hooks: the run is a `DirectMap`) and
``path="loop"`` (the same pool given a hook: the run is the loop's, `_stream`): both must give
the same results, order, errors and ends.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _helpers import WAIT, wait_until
from asynctasklib import (
    PoolStoppedError,
    StateHooks,
    TaskCanceledError,
    TaskTimeoutError,
    blocking,
)
from asynctasklib._direct_map import DirectMap
from conftest import EAGER

PATHS = ["direct", "loop"]


class Boom(Exception):
    pass


def make_pool(path: str, workers: int = 2) -> blocking.WorkerPool:
    """A blocking pool whose plain maps take ``path``: a hook keeps them on the loop."""
    hooks = StateHooks(on_done=lambda *args: None) if path == "loop" else None
    return blocking.WorkerPool(workers, hooks=hooks)


def check_path(results: blocking.MapIterator[Any], path: str) -> None:
    assert isinstance(results._direct, DirectMap) is (path == "direct")


def ended_once(pool: blocking.WorkerPool) -> None:
    """Every task the pool took has ended, in exactly one state."""
    stats = pool.stats()
    assert (stats.pending, stats.started) == (0, 0)
    assert stats.done + stats.failed + stats.canceled == stats.total


class Counted:
    """An input that counts the items read from it."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.read = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            if i == self.fail_at:
                raise Boom("the input failed")
            self.read += 1
            yield i


class Consumer:
    """``next(results)`` in a thread of its own."""

    def __init__(self, results: blocking.MapIterator[Any]) -> None:
        self.outcome: list[Any] = []
        self.thread = threading.Thread(target=self.run, args=(results,), name="test-consumer")
        self.thread.start()

    def run(self, results: blocking.MapIterator[Any]) -> None:
        try:
            self.outcome.append(next(results))
        except BaseException as exc:
            self.outcome.append(exc)

    def join(self) -> Any:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        return self.outcome[0]


def test_a_plain_functions_map_runs_in_the_crews_threads_with_no_loop() -> None:
    def where(x: int) -> tuple[int, str, bool]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return x, threading.current_thread().name, False
        return x, threading.current_thread().name, True

    with blocking.WorkerPool(3) as pool:
        results = pool.map(where, range(50))
        out = list(results)
        check_path(results, "direct")
    assert [x for x, _, _ in out] == list(range(50))
    assert all(name.startswith("asynctasklib-pool-direct_") for _, name, _ in out)
    assert not any(in_loop for _, _, in_loop in out)
    assert pool.stats().done == 50


async def _double(x: int) -> int:
    return 2 * x


async def _aitems() -> AsyncIterator[int]:
    for i in range(3):
        yield i


@pytest.mark.parametrize("case", ["async", "pool hooks", "definition hooks", "rate", "aiter"])
def test_maps_that_need_the_loop_take_the_loop_path(case: str) -> None:
    fn: Callable[[int], Any] = _double if case == "async" else (lambda x: 2 * x)
    options: dict[str, Any] = {}
    if case == "definition hooks":
        options["hooks"] = StateHooks(on_done=lambda *args: None)
    if case == "rate":
        options["max_per_second"] = 10_000.0
    items: Any = _aitems() if case == "aiter" else range(3)
    with make_pool("loop" if case == "pool hooks" else "direct") as pool:
        results = pool.map(fn, items, **options)
        assert list(results) == [0, 2, 4]
        check_path(results, "loop")


@pytest.mark.parametrize("path", PATHS)
def test_ordered_results_come_in_input_order_when_later_ones_end_first(path: str) -> None:
    first_may_end = threading.Event()
    ended: list[int] = []

    def fn(x: int) -> int:
        if x == 0:
            assert first_may_end.wait(WAIT)
        else:
            first_may_end.set()  # (item 1 ends first)
        ended.append(x)
        return x

    with make_pool(path) as pool:
        results = pool.map(fn, range(2))
        assert list(results) == [0, 1]
        check_path(results, path)
    assert ended == [1, 0]


@pytest.mark.parametrize("path", PATHS)
def test_unordered_results_come_as_they_end(path: str) -> None:
    gate = threading.Event()

    def fn(x: int) -> int:
        if x == 0:
            assert gate.wait(WAIT)
        return x

    with make_pool(path) as pool:
        results = pool.map(fn, range(2), ordered=False)
        assert next(results) == 1  # item 0 still runs
        gate.set()
        assert next(results) == 0
        with pytest.raises(StopIteration):
            next(results)
        check_path(results, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("ordered", [True, False])
def test_the_first_failure_is_raised_and_the_rest_canceled(path: str, ordered: bool) -> None:
    gate, second_started = threading.Event(), threading.Event()
    items = Counted(100)

    def fn(x: int) -> int:
        if x == 0:
            assert second_started.wait(WAIT)  # (item 1 is in progress as item 0 fails)
            raise Boom(x)
        second_started.set()
        gate.wait(WAIT)
        return x

    pool = make_pool(path)
    try:
        results = pool.map(fn, items, ordered=ordered)
        with pytest.raises(Boom):
            next(results)
        check_path(results, path)
        with pytest.raises(StopIteration):  # the run has ended
            next(results)
        read = items.read
        assert read <= 2 * 2 + 1  # the window (2 x max_workers), and no more after the failure
        wait_until(lambda: pool.stats().pending + pool.stats().started == 0, what="the ends")
        stats = pool.stats()
        assert (stats.failed, stats.done + stats.canceled) == (1, stats.total - 1)
        assert stats.canceled >= 1  # item 1 at least was in progress
        assert items.read == read
    finally:
        gate.set()
        pool.shutdown()
    ended_once(pool)


@pytest.mark.parametrize("path", PATHS)
def test_return_exceptions_returns_each_failure_in_its_place(path: str) -> None:
    def fn(x: int) -> int:
        if x % 3 == 1:
            raise Boom(x)
        return x

    with make_pool(path) as pool:
        results = pool.map(fn, range(30), return_exceptions=True)
        out = list(results)
        check_path(results, path)
    assert [type(r) for r in out] == [Boom if x % 3 == 1 else int for x in range(30)]
    assert [r.args[0] if isinstance(r, Boom) else r for r in out] == list(range(30))
    assert pool.stats().failed == 10


@pytest.mark.parametrize("path", PATHS)
def test_the_input_is_read_lazily_within_the_window(path: str) -> None:
    items = Counted(200)
    with make_pool(path) as pool:
        results = pool.map(lambda x: x, items, window=5)
        # Those returned, and at most a window more (the loop's run reads up to a window
        # further: a batch of results crosses to this thread while the window refills).
        ahead = 5 if path == "direct" else 10
        for i, value in enumerate(results):
            assert value == i
            assert items.read <= i + 1 + ahead
        check_path(results, path)
    assert items.read == 200


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("how", ["close", "with", "drop"])
def test_stopping_the_run_cancels_what_runs_and_reads_no_more_input(path: str, how: str) -> None:
    gate = threading.Event()
    items = Counted(100)

    def fn(x: int) -> int:
        if x > 0:
            gate.wait(WAIT)
        return x

    pool = make_pool(path)
    try:
        results = pool.map(fn, items)
        if how == "with":
            with results:
                assert next(results) == 0
                check_path(results, path)
        else:
            assert next(results) == 0
            check_path(results, path)
            if how == "close":
                results.close()
                with pytest.raises(StopIteration):
                    next(results)
            else:
                del results
                gc.collect()
        wait_until(lambda: pool.stats().pending + pool.stats().started == 0, what="the cancels")
        read = items.read
        assert pool.stats().canceled >= 1
        assert pool.stats().total == read
    finally:
        gate.set()
        pool.shutdown()
    assert items.read == read
    ended_once(pool)


@pytest.mark.parametrize("path", PATHS)
def test_a_failing_input_is_raised_and_the_run_stops(path: str) -> None:
    items = Counted(10, fail_at=3)
    with make_pool(path) as pool:
        results = pool.map(lambda x: x, items)
        got: list[int] = []

        def consume() -> None:
            for value in results:
                got.append(value)

        with pytest.raises(Boom, match="the input failed"):
            consume()
        check_path(results, path)
    assert got == list(range(len(got)))
    assert len(got) <= 3
    ended_once(pool)


@pytest.mark.parametrize("path", PATHS)
def test_a_stop_mid_run_gives_the_results_taken_then_pool_stopped_error(path: str) -> None:
    with make_pool(path) as pool:
        results = pool.map(lambda x: x, range(1000))
        assert next(results) == 0
        check_path(results, path)
        pool.stop()
        got = [0]

        def consume() -> None:
            for value in results:
                got.append(value)

        with pytest.raises(PoolStoppedError):
            consume()
        with pytest.raises(StopIteration):
            next(results)
    assert got == list(range(len(got)))
    assert pool.stats().total == len(got) < 1000
    ended_once(pool)


@pytest.mark.parametrize("path", PATHS)
def test_a_map_of_a_stopped_pool_raises_pool_stopped_error(path: str) -> None:
    pool = make_pool(path)
    pool.submit(lambda: None).wait(WAIT)  # (the pool's loop, and its crew, started)
    pool.stop()
    results = pool.map(lambda x: x, range(3))
    with pytest.raises(PoolStoppedError):
        next(results)
    pool.shutdown()
    assert pool.stats().total == 1


@pytest.mark.parametrize("path", PATHS)
def test_shutdown_while_the_consumer_waits_ends_it_with_the_cancel(path: str) -> None:
    started, gate = threading.Event(), threading.Event()

    def fn(x: int) -> int:
        started.set()
        gate.wait(WAIT)
        return x

    pool = make_pool(path, workers=1)
    results = pool.map(fn, range(3))
    consumer = Consumer(results)
    try:
        assert started.wait(WAIT)
        pool.shutdown(cancel=True)
        outcome = consumer.join()
    finally:
        gate.set()
    assert isinstance(outcome, TaskCanceledError)
    ended_once(pool)


@pytest.mark.parametrize("path", PATHS)
def test_a_second_thread_in_next_at_once_is_refused(path: str) -> None:
    started, gate = threading.Event(), threading.Event()

    def fn(x: int) -> int:
        started.set()
        gate.wait(WAIT)
        return x

    with make_pool(path) as pool:
        results = pool.map(fn, range(1))
        consumer = Consumer(results)
        assert started.wait(WAIT)
        wait_until(lambda: results._direct is not None or path == "loop", what="the run")
        with pytest.raises(RuntimeError, match="already waits for this map's next result"):
            next(results)
        gate.set()
        assert consumer.join() == 0


@pytest.mark.parametrize("path", PATHS)
def test_timeouts_and_retries_apply_to_each_item(path: str) -> None:
    attempts: dict[int, int] = {}
    release = threading.Event()

    def fn(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 0 and attempts[x] == 1:
            raise Boom(x)  # retried
        if x == 1:
            release.wait(WAIT)  # times out, each attempt
        return x

    with make_pool(path) as pool:
        try:
            results = pool.map(
                fn,
                range(3),
                return_exceptions=True,
                max_retries=1,
                max_duration=0.05,
                retry_on=(Boom,),
            )
            out = list(results)
        finally:
            release.set()
        check_path(results, path)
    assert out[0] == 0
    assert out[2] == 2
    assert isinstance(out[1], TaskTimeoutError)
    assert attempts[0] == 2
    assert attempts[1] == 2


@pytest.mark.parametrize("path", PATHS)
def test_a_keyboard_interrupt_from_the_input_reaches_the_consumer(path: str) -> None:
    if path == "loop" and EAGER:
        # An eager task factory on the portal's own loop (only this test mode puts one
        # there) starts the call's task inside run_coroutine_threadsafe, and a
        # KeyboardInterrupt in its first step escapes before the future is chained.
        pytest.skip("a KeyboardInterrupt in an eager first step is lost by asyncio")

    def items() -> Iterator[int]:
        yield 0
        raise KeyboardInterrupt

    with make_pool(path) as pool:
        results = pool.map(lambda x: x, items())
        with pytest.raises(KeyboardInterrupt):
            list(results)
    ended_once(pool)


def test_tasks_and_stats_include_the_map_tasks_in_progress() -> None:
    gate = threading.Event()
    started = threading.Barrier(3)

    def fn(x: int) -> int:
        started.wait(WAIT)
        gate.wait(WAIT)
        return x

    with blocking.WorkerPool(2) as pool:
        results = pool.map(fn, range(2))
        consumer = Consumer(results)
        started.wait(WAIT)
        assert sorted(task.id for task in pool.tasks()) == ["0", "1"]
        assert pool.stats().started == 2
        gate.set()
        assert consumer.join() == 0
        assert list(results) == [1]
    assert pool.tasks() == []  # (a map's ended tasks are not kept)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    outcomes=st.lists(st.sampled_from(["ok", "boom"]), min_size=0, max_size=30),
    workers=st.integers(1, 4),
    window=st.integers(1, 6),
    ordered=st.booleans(),
    return_exceptions=st.booleans(),
    stop_after=st.one_of(st.none(), st.integers(0, 30)),
    how=st.sampled_from(["stop", "close", "shutdown"]),
)
def test_random_maps_end_every_task_once_with_the_results_of_their_items(
    outcomes: list[str],
    workers: int,
    window: int,
    ordered: bool,
    return_exceptions: bool,
    stop_after: int | None,
    how: str,
) -> None:
    def fn(x: int) -> int:
        if outcomes[x] == "boom":
            raise Boom(x)
        return x

    pool = blocking.WorkerPool(workers)
    got: list[Any] = []
    error: BaseException | None = None
    results = pool.map(
        fn,
        range(len(outcomes)),
        ordered=ordered,
        return_exceptions=return_exceptions,
        window=window,
    )
    try:
        for value in results:
            got.append(value)
            if stop_after is not None and len(got) == stop_after:
                if how == "stop":
                    pool.stop()
                elif how == "close":
                    results.close()
                else:
                    pool.shutdown()
    except (Boom, PoolStoppedError, TaskCanceledError) as exc:
        error = exc
    pool.shutdown()
    ended_once(pool)
    canceled = [r for r in got if isinstance(r, TaskCanceledError)]
    if canceled or isinstance(error, TaskCanceledError):  # only shutdown() cancels
        assert how == "shutdown"
        assert stop_after is not None
    if ordered:  # (a canceled task's result is in its item's place)
        got = [Boom(i) if isinstance(r, TaskCanceledError) else r for i, r in enumerate(got)]
        outcomes = [*outcomes]
        for i, r in enumerate(got):
            if isinstance(r, Boom):
                outcomes[i] = "boom"
    else:
        got = [r for r in got if not isinstance(r, TaskCanceledError)]
    indexes = [r.args[0] if isinstance(r, Boom) else r for r in got]
    assert len(set(indexes)) == len(indexes)  # each item's result once
    for index, value in zip(indexes, got, strict=True):
        assert (outcomes[index] == "boom") is isinstance(value, Boom)
    if ordered:
        assert indexes == list(range(len(indexes)))
    stopped = stop_after is not None and stop_after < len(outcomes)
    if isinstance(error, Boom):
        assert not return_exceptions
        assert outcomes[error.args[0]] == "boom"
    elif isinstance(error, PoolStoppedError):
        # (a stop after the last item was read, but before the input's end was seen, is a
        # stop with input left unread, as on the loop)
        assert stop_after is not None
        assert how != "close"
    elif error is None and not stopped:  # nothing failed or stopped it: every item's result
        assert sorted(indexes) == list(range(len(outcomes)))
        assert return_exceptions or "boom" not in outcomes
    assert pool.stats().total <= len(outcomes)


@pytest.mark.parametrize("how", ["stop", "shutdown", "shutdown(cancel=False)"])
@pytest.mark.parametrize("after", [0, 1, 2, 5, 9])
def test_a_stop_from_another_thread_at_any_point_ends_the_consumer(how: str, after: int) -> None:
    """The consumer's thread is in next() or between two calls, another thread stops the
    pool: the consumer ends (no hang), with the results of its items in order, then
    nothing or a documented error; every task the pool took ends once."""
    reached = threading.Event()
    got: list[int] = []
    outcome: list[BaseException | None] = []
    pool = blocking.WorkerPool(3)

    def consume() -> None:
        try:
            for value in pool.map(lambda x: x, range(60), window=4):
                got.append(value)
                if len(got) == after + 1:
                    reached.set()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            reached.set()

    consumer = threading.Thread(target=consume, name="test-consumer")
    consumer.start()
    assert reached.wait(WAIT)
    if how == "stop":
        pool.stop()
    else:
        pool.shutdown(cancel=how == "shutdown")
    consumer.join(WAIT)
    assert not consumer.is_alive()
    pool.shutdown()
    ended_once(pool)
    assert got == list(range(len(got)))
    [error] = outcome
    assert error is None or isinstance(error, PoolStoppedError | TaskCanceledError), error
    if error is None:
        assert got == list(range(60))
    assert pool.stats().total >= len(got)
