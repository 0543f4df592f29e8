"""The portal (`_portal`): the blocking face's calls that wait on its event loop, and how
they end when that loop stops under them (``shutdown()`` from another thread, the
interpreter's exit) or when other code cancels them there.

Plain (sync) tests on blocking pools; every wait is bounded (``WAIT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest

from _helpers import WAIT, InThread, agated, library_threads, ok
from asynctasklib import Definition, PoolStoppedError, TaskCanceledError
from asynctasklib.blocking import WorkerPool


class StalledMapResults:
    """Stands in for a map's results: every call into it waits on the loop for ever."""

    def __init__(self, real: Any, stuck: Callable[..., Any]) -> None:
        self._run = real._run
        self._items = None  # (taken as begun: the run stays on the loop, not _direct_map's)
        self._next_batch = stuck
        self.aclose = stuck
        self._abandon = real._abandon


def stalled_call(
    pool: WorkerPool, call: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Callable[[], Any], threading.Event, list[asyncio.Task[Any]]]:
    """``call`` on ``pool``, made to wait on the pool's loop until that stops (the async
    pool's method replaced by one that never ends); an event set once it waits there, and
    the asyncio task it waits in."""
    entered = threading.Event()
    running: list[asyncio.Task[Any]] = []

    async def stuck(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        running.append(task)
        entered.set()
        await asyncio.get_running_loop().create_future()  # nothing ever sets it

    if call in ("gather", "submit_with_err_group", "wait"):
        monkeypatch.setattr(pool._pool, call, stuck)
    calls: dict[str, Callable[[], Any]] = {
        "gather": lambda: pool.gather([Definition(task_fn=ok())]),
        "submit_with_err_group": lambda: pool.submit_with_err_group([Definition(task_fn=ok())]),
        "wait": lambda: pool.wait(WAIT),
    }
    if call.startswith("map"):
        results = pool.map(str, [1, 2])
        results._results = StalledMapResults(results._results, stuck)
        calls["map"] = lambda: next(results)
        calls["map().close()"] = results.close
    return calls[call], entered, running


CALLS_ON_THE_LOOP = ["gather", "submit_with_err_group", "map", "map().close()", "wait"]


@pytest.mark.parametrize("call", CALLS_ON_THE_LOOP)
def test_a_blocking_call_waiting_on_the_loop_when_shutdown_stops_it(
    call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = WorkerPool(2)
    try:
        pool.submit(Definition(task_fn=ok())).wait(WAIT)
        fn, entered, _ = stalled_call(pool, call, monkeypatch)
        caller = InThread(fn)
        assert entered.wait(WAIT)  # it waits on the loop: shutdown() stops the loop under it
    finally:
        pool.shutdown()
    if call in ("wait", "map().close()"):
        assert caller.join() is None  # every task has ended / the run has stopped: done
    else:
        with pytest.raises(PoolStoppedError, match="shut down during"):
            caller.join()
    assert library_threads() == []


@pytest.mark.parametrize("call", CALLS_ON_THE_LOOP)
def test_a_blocking_call_stopped_on_the_loop_at_interpreter_exit(
    call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As at the interpreter's exit: the loop stops, no shutdown() first."""
    gate = threading.Event()
    pool = WorkerPool(2)
    task = pool.submit(Definition(task_fn=agated(gate), max_duration=None))
    fn, entered, _ = stalled_call(pool, call, monkeypatch)
    caller = InThread(fn)
    assert entered.wait(WAIT)
    assert pool._portal is not None
    pool._portal.close()  # what _close_portals does
    if call == "map().close()":
        assert caller.join() is None
    elif call == "wait":  # None if the task had ended by the time it looked
        with contextlib.suppress(PoolStoppedError):
            assert caller.join() is None
    else:
        with pytest.raises(PoolStoppedError, match="shut down during"):
            caller.join()
    assert task.wait(WAIT)
    assert task.is_canceled()
    pool.shutdown()


def test_a_blocking_call_canceled_on_the_loop_by_other_code_is_task_canceled_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with WorkerPool(2) as pool:
        fn, entered, running = stalled_call(pool, "gather", monkeypatch)
        caller = InThread(fn)
        assert entered.wait(WAIT)
        assert pool._portal is not None
        pool._portal.loop.call_soon_threadsafe(running[0].cancel)
        with pytest.raises(TaskCanceledError, match="gather"):
            caller.join()
        assert pool.submit(Definition(task_fn=ok(3))).result(WAIT) == 3  # the pool goes on


def test_a_blocking_call_reaching_a_loop_already_stopped_is_pool_stopped_error() -> None:
    pool = WorkerPool(2)
    pool.submit(Definition(task_fn=ok())).wait(WAIT)
    results = pool.map(str, [1, 2])
    portal = pool._portal
    pool.shutdown()
    # As a thread sees the pool that read its portal just before shutdown() cleared it:
    pool._portal = portal
    try:
        with pytest.raises(PoolStoppedError, match="before gather"):
            pool.gather([Definition(task_fn=ok())])
        with pytest.raises(PoolStoppedError):
            pool.submit_with_err_group([Definition(task_fn=ok())])
        with pytest.raises(PoolStoppedError):
            next(results)
        results.close()  # the run ended with the loop: nothing to stop
        pool.wait()  # every task has ended
    finally:
        pool._portal = None
    assert pool.stats().total == 1
