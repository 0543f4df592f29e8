"""The standard library's private names the library relies on (asynctasklib._compat): each
still does what it is used for, so a Python release that changes one fails here first."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from asynctasklib import _compat


def test_running_loop_is_none_outside_a_loop_and_the_loop_inside() -> None:
    assert _compat.running_loop() is None

    async def main() -> asyncio.AbstractEventLoop | None:
        return _compat.running_loop()

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(main()) is loop
    finally:
        loop.close()


def test_register_atexit_takes_a_hook_of_threading() -> None:
    hooks: list[object] = threading._threading_atexits  # type: ignore[attr-defined]
    before = list(hooks)
    _compat.register_atexit(print)
    try:
        assert len(hooks) == len(before) + 1
    finally:
        hooks[:] = before


async def test_log_destroy_pending_turns_asyncio_s_warning_off_and_on() -> None:
    task = asyncio.ensure_future(asyncio.sleep(0))
    _compat.log_destroy_pending(task, False)
    assert task._log_destroy_pending is False  # type: ignore[attr-defined]
    _compat.log_destroy_pending(task, True)
    assert task._log_destroy_pending is True  # type: ignore[attr-defined]
    await task


def test_future_fields_of_each_end() -> None:
    done: Future[int] = Future()
    done.set_result(3)
    assert _compat.future_fields(done) == (_compat.FINISHED, None, 3)
    failed: Future[int] = Future()
    error = ValueError("x")
    failed.set_exception(error)
    assert _compat.future_fields(failed) == (_compat.FINISHED, error, None)
    cancelled: Future[int] = Future()
    cancelled.cancel()
    assert _compat.future_fields(cancelled)[0] != _compat.FINISHED
    cancelled.set_running_or_notify_cancel()  # (CANCELLED_AND_NOTIFIED)
    assert _compat.future_fields(cancelled)[0] != _compat.FINISHED


@pytest.mark.parametrize("threads", [1, 4])
def test_add_thread_lets_one_more_thread_start(threads: int) -> None:
    executor = ThreadPoolExecutor(threads)
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> None:
        started.release()
        gate.wait(10)

    try:
        _compat.add_thread(executor)
        for _ in range(threads + 1):
            executor.submit(blocked)
        for _ in range(threads + 1):  # all at once: one thread more than it was made with
            assert started.acquire(timeout=10)
    finally:
        gate.set()
        executor.shutdown()
