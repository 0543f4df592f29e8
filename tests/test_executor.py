"""The executor bridge (asynctasklib._executor): plain task functions on an Executor."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest

from _helpers import Inline
from asynctasklib import Definition, WorkerPool
from asynctasklib._executor import ExecutorBridge

GUARD = 10.0  # seconds: only a hang takes this long


class Threads(ThreadPoolExecutor):
    pass


@pytest.mark.parametrize(
    ("executor", "remote"),
    [(None, False), (ThreadPoolExecutor(1), False), (Threads(1), False), (Inline(), True)],
    ids=["own", "threads", "threads-subclass", "other"],
)
def test_anything_but_threads_counts_as_another_process(
    executor: Executor | None, remote: bool
) -> None:
    assert ExecutorBridge(executor, 1).remote is remote
    assert WorkerPool(1, executor=executor)._remote is remote
    if executor is not None:
        executor.shutdown()


def test_an_executor_that_is_not_one_is_refused() -> None:
    with pytest.raises(TypeError, match=r"^executor must be a concurrent.futures.Executor"):
        ExecutorBridge(object(), 1)  # type: ignore[arg-type]


async def nothing(run: object) -> None:
    pass


def test_only_plain_functions_are_checked_for_pickling() -> None:
    bridge = ExecutorBridge(Inline(), 1)
    bridge.check_picklable(Definition())  # no function: nothing to check
    bridge.check_picklable(Definition(task_fn=nothing))  # an async def runs on the loop
    bridge.check_picklable(Definition(task_fn=print))
    with pytest.raises(TypeError, match=r"cannot be pickled, so it cannot run on Inline"):
        bridge.check_picklable(Definition(task_fn=lambda run: None))


@pytest.mark.realtime
async def test_calls_that_end_while_the_loop_is_busy_come_back_in_one_batch() -> None:
    loop = asyncio.get_running_loop()
    bridge = ExecutorBridge(None, 3)
    bridge.loop = loop
    wakes = 0
    post = loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any) -> Any:
        nonlocal wakes
        wakes += 1
        return post(callback, *args)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
    try:
        gate = threading.Event()
        calls = [bridge.call(lambda i=i: gate.wait(GUARD) and i) for i in range(3)]
        gate.set()
        deadline = time.monotonic() + GUARD
        # every call ends and is queued while the loop is busy here
        while len(bridge._ended_calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)  # noqa: ASYNC251 (blocking the loop is the point)
        assert await asyncio.gather(*calls) == [0, 1, 2]
    finally:
        del loop.call_soon_threadsafe
        bridge.close()
    assert wakes == 1
    assert not bridge.calls
    assert not bridge.ended_scheduled


@pytest.mark.realtime
async def test_a_call_of_its_own_that_runs_on_after_its_cancel_gets_a_thread_added() -> None:
    bridge = ExecutorBridge(None, 1)
    bridge.loop = asyncio.get_running_loop()
    gate = threading.Event()
    running = threading.Event()

    def blocked() -> None:
        running.set()
        gate.wait(GUARD)

    call = bridge.call(blocked)
    assert running.wait(GUARD)
    executor = bridge.executor
    assert isinstance(executor, ThreadPoolExecutor)
    before = executor._max_workers
    call.cancel()
    bridge.cancel(call)  # it runs on: a thread cannot be stopped
    assert executor._max_workers == before + 1
    assert len(bridge.calls) == 1  # (until it ends)
    gate.set()
    bridge.close()  # the pool's own is shut down; waits for the call that ended
    assert bridge.executor is None


def test_a_given_executor_is_left_running() -> None:
    given = ProcessPoolExecutor(1)
    bridge = ExecutorBridge(given, 1)
    bridge.close()
    assert bridge.executor is given
    given.shutdown()


class Raising(Executor):
    """Calls run at once, and a StopIteration is kept as the future's exception, as a
    process pool sends one back (a thread pool's call_soon would refuse it)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def stops() -> None:
    raise StopIteration("done")


async def test_a_stop_iteration_from_the_executor_comes_back_as_a_runtime_error() -> None:
    bridge = ExecutorBridge(Raising(), 1)
    bridge.loop = asyncio.get_running_loop()
    with pytest.raises(RuntimeError) as caught:
        await bridge.call(stops)
    assert isinstance(caught.value.__cause__, StopIteration)


@pytest.mark.realtime
async def test_a_call_the_executor_itself_cancels_is_canceled_here_too() -> None:
    given = ThreadPoolExecutor(1)
    bridge = ExecutorBridge(given, 1)
    bridge.loop = asyncio.get_running_loop()
    gate = threading.Event()
    first = bridge.call(gate.wait, GUARD)
    second = bridge.call(print)  # queued behind the first
    given.shutdown(wait=False, cancel_futures=True)  # its owner shuts it down
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await first is True
