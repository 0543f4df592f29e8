"""The blocking face's semaphore (`_blocking_semaphore`, `asynctasklib.blocking.Semaphore`):
counts, ``acquire``/``try_acquire_with_timeout`` and their timeouts (none, huge, interrupted),
``with``, FIFO order among waiting threads, and the Go README's examples on plain threads.

Plain (sync) tests on plain threads; every wait is bounded (``WAIT``). (Many threads
hammering one semaphore is test_threads.py's; the async semaphore's core, test_semaphore.py's.)
"""

from __future__ import annotations

import functools
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from _helpers import HUGE_TIMEOUTS, WAIT, InThread, interrupt_main_when, wait_until
from asynctasklib import blocking
from asynctasklib.blocking import Semaphore


def test_semaphore_construction_and_counts() -> None:
    with pytest.raises(ValueError, match="limit"):
        Semaphore(0)
    with pytest.raises(TypeError, match="limit"):
        Semaphore(1.0)  # type: ignore[arg-type]
    sem = Semaphore(3)
    assert (sem.limit, sem.available, sem.acquired) == (3, 3, 0)
    sem.acquire()
    assert (sem.limit, sem.available, sem.acquired) == (3, 2, 1)
    sem.release()
    assert sem.available == 3


def test_go_readme_semaphore_example_on_plain_threads() -> None:
    # sem := workflow.NewSemaphore(3); 10 goroutines: Acquire(); defer Release(); work.
    sem = blocking.Semaphore(3)
    lock = threading.Condition()
    inside = peak = entered = 0
    processed: list[int] = []

    def worker(worker_id: int) -> None:
        nonlocal inside, peak, entered
        sem.acquire()
        try:
            with lock:
                inside += 1
                entered += 1
                peak = max(peak, inside)
                processed.append(worker_id)  # "Worker %d processing"
                lock.notify_all()
                # "work": stay until the semaphore is full (or nobody else is left)
                assert lock.wait_for(lambda: inside == 3 or entered == 10, timeout=WAIT)
                inside -= 1
        finally:
            sem.release()

    workers = [InThread(functools.partial(worker, i)) for i in range(10)]  # wg.Add / go func
    for w in workers:  # wg.Wait()
        w.join()
    assert sorted(processed) == list(range(10))
    assert peak == 3
    assert sem.available == 3


def test_go_readme_acquire_with_timeout_example() -> None:
    # sem := workflow.NewSemaphore(5); ctx with a 2 s timeout; AcquireWithContext(ctx)
    sem = blocking.Semaphore(5)
    sem.acquire(timeout=2)  # free: succeeds at once
    sem.release()
    for _ in range(5):
        sem.acquire()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="semaphore"):  # all held: "Failed to acquire"
        sem.acquire(timeout=0.05)
    assert time.monotonic() - t0 >= 0.05
    assert sem.available == 0
    assert sem.acquired == 5
    for _ in range(5):
        sem.release()


def test_semaphore_acquire_timeouts() -> None:
    sem = Semaphore(1)
    sem.acquire()
    with pytest.raises(TimeoutError):
        sem.acquire(timeout=0)
    with pytest.raises(TimeoutError):
        sem.acquire(timeout=timedelta(milliseconds=20))
    with pytest.raises(ValueError, match="timeout"):
        sem.acquire(timeout=-1)
    assert sem.available == 0
    released = InThread(lambda: sem.release())
    released.join()
    sem.acquire(timeout=WAIT)
    sem.release()
    assert sem.available == 1


def test_semaphore_blocked_acquire_gets_a_slot_released_by_another_thread() -> None:
    sem = Semaphore(1)
    sem.acquire()
    got = InThread(lambda: sem.acquire(timeout=WAIT))
    wait_until(lambda: len(sem._waiters) == 1, what="waiter queued")
    assert not got.finished.is_set()
    sem.release()
    got.join()
    assert sem.available == 0
    sem.release()


def test_try_acquire_and_try_acquire_with_timeout() -> None:
    sem = Semaphore(2)
    assert sem.try_acquire() is True
    assert sem.try_acquire_with_timeout(0.01) is True
    assert sem.try_acquire() is False
    t0 = time.monotonic()
    assert sem.try_acquire_with_timeout(0.05) is False
    assert time.monotonic() - t0 >= 0.05
    assert sem.try_acquire_with_timeout(0) is False
    helper = InThread(lambda: sem.try_acquire_with_timeout(WAIT))
    wait_until(lambda: len(sem._waiters) == 1, what="waiter queued")
    sem.release()
    assert helper.join() is True
    assert sem.available == 0


def test_try_acquire_never_overtakes_a_waiting_thread() -> None:
    sem = Semaphore(1)
    sem.acquire()
    waiter = InThread(lambda: sem.acquire(timeout=WAIT))
    wait_until(lambda: len(sem._waiters) == 1, what="waiter queued")
    sem.release()  # handed straight to the waiter
    assert sem.try_acquire() is False
    waiter.join()
    sem.release()
    assert sem.try_acquire() is True
    sem.release()


def test_release_without_acquire_is_value_error() -> None:
    sem = Semaphore(2)
    with pytest.raises(ValueError, match="release"):
        sem.release()
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError, match="release"):
        sem.release()
    assert sem.available == 2


def test_with_semaphore_releases_even_on_error() -> None:
    sem = Semaphore(1)
    with sem:
        assert sem.available == 0
    assert sem.available == 1
    with pytest.raises(KeyError), sem:
        raise KeyError
    assert sem.available == 1


def test_thread_waiters_are_served_in_fifo_order() -> None:
    sem = Semaphore(1)
    sem.acquire()
    order: list[int] = []

    def waiter(i: int) -> None:
        sem.acquire(timeout=WAIT)
        order.append(i)
        sem.release()

    def queued(n: int) -> bool:
        return len(sem._waiters) == n

    threads = []
    for i in range(6):
        threads.append(InThread(functools.partial(waiter, i)))
        wait_until(functools.partial(queued, i + 1), what="waiter queued")
    sem.release()
    for t in threads:
        t.join()
    assert order == list(range(6))
    assert sem.available == 1


def test_a_waiter_that_times_out_keeps_its_place_in_nobodys_way() -> None:
    sem = Semaphore(1)
    sem.acquire()
    quitter = InThread(lambda: sem.try_acquire_with_timeout(0.05))
    wait_until(lambda: len(sem._waiters) == 1, what="waiter queued")
    stayer = InThread(lambda: sem.acquire(timeout=WAIT))
    wait_until(lambda: len(sem._waiters) == 2, what="second waiter queued")
    assert quitter.join() is False
    sem.release()
    stayer.join()  # the slot went past the quitter to the one still waiting
    assert sem.available == 0
    sem.release()
    assert sem.available == 1


def test_semaphore_repr() -> None:
    sem = Semaphore(2)
    sem.acquire()
    assert "limit=2" in repr(sem)
    assert "acquired=1" in repr(sem)


def test_interrupting_a_blocked_semaphore_acquire_loses_no_slot() -> None:
    sem = Semaphore(1)
    sem.acquire()
    with interrupt_main_when(lambda: len(sem._waiters) == 1), pytest.raises(KeyboardInterrupt):
        sem.acquire()
    sem.release()
    assert sem.available == 1
    assert sem.try_acquire()


def waiting_or_done(sem: Semaphore, done: threading.Event) -> bool:
    return bool(sem._waiters) or done.is_set()


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=repr)
def test_semaphore_acquire_with_a_huge_timeout_waits_without_limit(timeout: Any) -> None:
    sem = Semaphore(1)
    sem.acquire(timeout)  # free: taken at once
    for acquire in (sem.acquire, sem.try_acquire_with_timeout):
        waiter = InThread(functools.partial(acquire, timeout))
        wait_until(functools.partial(waiting_or_done, sem, waiter.finished), what="the waiter")
        sem.release()
        assert waiter.join() in (None, True)  # acquire returns None, the other True
        assert sem.available == 0
    sem.release()
    assert sem.available == 1
