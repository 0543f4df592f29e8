"""Test support: async tests on a fresh event loop, by default with a virtual clock.

``async def`` tests run on a `VirtualClockLoop`: time only moves when every task waits, and
then jumps straight to the next timer, so timeouts, delays and backoff are exact and instant
(trio's ``autojump_clock``). Tests that involve threads (sync task functions) must be marked
``@pytest.mark.realtime``: a thread's work takes no virtual time. ``wait_all_tasks_blocked()``
(tests/_helpers.py) returns once nothing on the virtual clock is ready to run.

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
    keep: list[pytest.Item] = []
    skip: list[pytest.Item] = []
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
    """An event loop whose clock jumps to the next timer whenever nothing else can run.

    Before the clock jumps, `wait_all_tasks_blocked` callers wake: the loop knows that
    nothing is ready because it is about to wait for a timer.
    """

    def __init__(self) -> None:
        self._virtual_time = 0.0
        self._blocked_waiters: list[asyncio.Future[None]] = []
        super().__init__(_VirtualClockSelector(self._nothing_ready))

    def time(self) -> float:
        return self._virtual_time

    async def wait_all_tasks_blocked(self) -> None:
        """Return once nothing on this loop is ready to run: every other task waits for a
        timer, a future, an event or I/O. No virtual time passes meanwhile.

        trio.testing's ``wait_all_tasks_blocked()``: "let everything settle" without
        guessing how many loop turns that takes. Every caller waiting at that moment wakes.
        A thread's work is not seen (the tests with threads are ``realtime``), and a task
        that never waits (``while True: await asyncio.sleep(0)``) keeps it from returning.
        """
        waiter = self.create_future()
        self._blocked_waiters.append(waiter)
        await waiter

    def _nothing_ready(self, timeout: float | None) -> bool:
        """No callback is ready and the loop would wait ``timeout`` (None: no timer at all).

        Wake the `wait_all_tasks_blocked` callers if there are any; else jump the clock to
        the next timer. False when only real I/O (another thread) can wake the loop.
        """
        waiters = [w for w in self._blocked_waiters if not w.done()]  # (done: canceled)
        self._blocked_waiters.clear()
        for waiter in waiters:
            waiter.set_result(None)
        if waiters:
            return True
        if timeout is None:
            return False
        self._virtual_time += timeout
        return True


class _VirtualClockSelector(selectors.DefaultSelector):
    """`VirtualClockLoop`'s selector: real I/O is polled without waiting; where the loop
    would wait for a timer, ``nothing_ready`` is told instead (it moves the clock)."""

    def __init__(self, nothing_ready: Callable[[float | None], bool]) -> None:
        super().__init__()
        self._nothing_ready = nothing_ready

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or (timeout is not None and timeout <= 0):
            return events  # something is ready to run
        if self._nothing_ready(timeout):
            return []
        return super().select(None)  # nothing scheduled: wait for real I/O (another thread)


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


class LibraryLog(logging.Handler):
    """The ERROR records of the library's loggers (``asynctasklib`` and below) during a test.

    Only those: pytest's ``caplog`` also takes other loggers' records, such as asyncio's
    "Task was destroyed but it is pending!" for the garbage of an earlier test's loop, which
    the collector may reach in the middle of any later test.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def hook_log() -> Iterator[LibraryLog]:
    """Capture what the library logs (hook and callback errors)."""
    log = LibraryLog()
    logger = logging.getLogger("asynctasklib")
    logger.addHandler(log)
    try:
        yield log
    finally:
        logger.removeHandler(log)


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
