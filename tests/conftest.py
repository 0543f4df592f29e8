"""Test support: async tests on a fresh event loop, by default with a virtual clock.

``async def`` tests run on a `VirtualClockLoop`: time only moves when every task waits, and
then jumps straight to the next timer, so timeouts, delays and backoff are exact and instant
(trio's ``autojump_clock``). Tests that involve threads (sync task functions) must be marked
``@pytest.mark.realtime``: a thread's work takes no virtual time.

After each async test, no task may be left pending on the loop and the loop's exception
handler must not have been called (an exception nobody retrieved, a callback that raised).

``ASYNCTASKLIB_TEST_LOOP`` (comma-separated; .ci/run sets it) changes every event loop the
tests make: ``eager`` gives each one ``asyncio.eager_task_factory`` (3.12+: a coroutine runs
up to its first suspension inside ``create_task``), the virtual clock's included; ``uvloop``
makes every loop but the virtual clock's a uvloop one (``asyncio.new_event_loop()``,
``asyncio.run()``, the blocking face's), and runs only the tests that can use it: async tests
on the virtual clock are left out, as they would run exactly as without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import selectors
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

LOOP_OPTIONS = frozenset(filter(None, os.environ.get("ASYNCTASKLIB_TEST_LOOP", "").split(",")))
EAGER = "eager" in LOOP_OPTIONS
UVLOOP = "uvloop" in LOOP_OPTIONS
_third_party = False  # see third_party_loops()


@contextlib.contextmanager
def third_party_loops() -> Iterator[None]:
    """Loops made meanwhile (in any thread) are another library's, such as a Dask cluster's
    own: no eager task factory for them (distributed's loop hangs with one)."""
    global _third_party
    _third_party = True
    try:
        yield
    finally:
        _third_party = False


def prepare_loop(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    """Give a loop the tests made the task factory ``ASYNCTASKLIB_TEST_LOOP`` asks for."""
    if EAGER:
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    return loop


def pytest_configure(config: pytest.Config) -> None:
    unknown = LOOP_OPTIONS - {"eager", "uvloop"}
    if unknown:
        raise pytest.UsageError(
            f"ASYNCTASKLIB_TEST_LOOP: unknown {sorted(unknown)} (known: eager, uvloop)"
        )
    if EAGER and not hasattr(asyncio, "eager_task_factory"):
        raise pytest.UsageError("ASYNCTASKLIB_TEST_LOOP=eager needs Python 3.12 or later")
    if EAGER and UVLOOP:  # (uvloop's create_task passes eager_start=, the factory refuses it)
        raise pytest.UsageError("ASYNCTASKLIB_TEST_LOOP: uvloop does not take the eager factory")
    if not LOOP_OPTIONS:
        return
    base: type[asyncio.AbstractEventLoopPolicy] = asyncio.DefaultEventLoopPolicy
    if UVLOOP:
        import uvloop  # (the test extra has it, except on Windows)

        base = uvloop.EventLoopPolicy

    class Policy(base):  # type: ignore[valid-type,misc]
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            return loop if _third_party else prepare_loop(loop)

    asyncio.set_event_loop_policy(Policy())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not UVLOOP:
        return
    # The virtual clock is asyncio's own loop: those tests would run as without uvloop.
    keep, skip = [], []
    for item in items:
        on_virtual_clock = (
            isinstance(item, pytest.Function)
            and inspect.iscoroutinefunction(item.obj)
            and item.get_closest_marker("realtime") is None
        )
        (skip if on_virtual_clock else keep).append(item)
    if skip:
        config.hook.pytest_deselected(items=skip)
        items[:] = keep


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing else can run."""

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self._virtual_time = 0.0
        real_select = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> list[Any]:
            events = real_select(0)
            if events or (timeout is not None and timeout <= 0):
                return events  # type: ignore[no-any-return]
            if timeout is None:  # nothing scheduled: wait for real I/O (another thread)
                return real_select(None)  # type: ignore[no-any-return]
            self._virtual_time += timeout
            return []

        self._selector.select = select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self._virtual_time


def run_async(
    main: Coroutine[Any, Any, Any], *, realtime: bool = False, check_leaks: bool = True
) -> Any:
    """Run ``main`` on a fresh loop; fail on leaked tasks or unhandled loop errors."""
    loop = asyncio.new_event_loop() if realtime else prepare_loop(VirtualClockLoop())
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        result = loop.run_until_complete(main)
        leaked = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if check_leaks and leaked:
            pytest.fail(f"tasks left running after the test: {leaked}")
        return result
    finally:
        loop.run_until_complete(_cancel_all())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        if errors:
            pytest.fail(f"the event loop reported errors: {errors}")


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    fn: Callable[..., Any] = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
    realtime = pyfuncitem.get_closest_marker("realtime") is not None
    run_async(fn(**kwargs), realtime=realtime)
    return True


@pytest.fixture
def hook_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture what the library logs (hook and callback errors)."""
    caplog.set_level(logging.ERROR, logger="asynctasklib")
    return caplog


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Any:
    """No thread started by the library outlives a test."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.name.startswith("asynctasklib") and t.is_alive()
    ]
    for t in leaked:  # give exiting threads a moment to finish exiting
        t.join(timeout=2)
    still = [t for t in leaked if t.is_alive()]
    assert not still, f"library threads left running: {still}"
