"""Crossing from other threads into an event loop's thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._compat import running_loop as _get_running_loop

__all__ = ["call_on_loop", "check_not_in_loop", "thread_limit"]

T = TypeVar("T")


def call_on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on ``loop``'s thread, and its result.

    Runs it at once when called on that thread, or when the loop is not running (nothing
    else touches the objects then); otherwise hands it to the loop and blocks until done. If
    the loop stops before it gets to it, it runs here after all.
    """
    if loop is None or _get_running_loop() is loop or not loop.is_running():
        return fn(*args)
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return  # the caller gave up waiting and ran it itself
        try:
            done.set_result(fn(*args))
        except BaseException as exc:
            done.set_exception(exc)

    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError:  # closed meanwhile
        return fn(*args)
    while True:
        try:
            return done.result(timeout=0.05)
        except concurrent.futures.TimeoutError:
            if loop.is_running() or not done.cancel():
                continue
            return fn(*args)  # the loop stopped without running it: nothing else runs now


def check_not_in_loop(what: str) -> None:
    """A blocking call made from a running event loop would stall it (or deadlock): refuse."""
    if _get_running_loop() is not None:
        raise RuntimeError(
            f"{what} blocks, so it cannot be called from a running event loop; "
            "use the async API (asynctasklib.WorkerPool, asynctasklib.Semaphore) there"
        )


def thread_limit(limit: float | None) -> float | None:
    """A timeout in seconds for threading's waits, which refuse any above
    ``threading.TIMEOUT_MAX`` (about 292 years on Linux; ``inf``, ``timedelta.max``): one
    that long means no limit, as on the async face."""
    return None if limit is None or limit > threading.TIMEOUT_MAX else limit
