"""A task's `Run` (``_run.py``): its engine side."""

from __future__ import annotations

import threading

from asynctasklib import _run


def test_signal_from_inside_the_event_lock_does_not_deadlock() -> None:
    # The garbage collector may run inside `_signal` or `wait_canceled` (they allocate
    # while they hold the lock) and close another worker's suspended coroutine there,
    # whose cleanup signals its own Run on the same thread: the lock is taken again.
    first, second = _run._Run(), _run._Run()
    done = threading.Event()

    def signal_both() -> None:
        with _run._event_lock:  # (as the outer `_signal` holds it)
            first._signal()
            second._signal()
        done.set()

    threading.Thread(target=signal_both, daemon=True).start()
    assert done.wait(10), "a Run's _signal blocked on the lock its own thread holds"
    assert first.canceled
    assert second.canceled
