"""Thread-safety: many threads hammering one pool and one semaphore at once.

The Go suite's "concurrent access" and "stress with mixed operations" cases, for both faces:
a blocking `WorkerPool` and `Semaphore` used from many plain threads, and the asynchronous
pool and semaphore, running on an event loop in a thread of their own, touched from other
threads through their non-waiting methods (cancel, add_done_callback, stop, stats,
try_acquire, release). Randomness is seeded; each thread records what it saw and any
exception, and the end state is checked exactly: no exception, no lost slot, counters equal
to a recount, every task in exactly one terminal state.

All tests are plain functions: the event loops they need run in threads they start and stop
themselves. Every wait is bounded, so a deadlock fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

import pytest

from asynctasklib import (
    Definition,
    PoolStats,
    PoolStoppedError,
    Run,
    Semaphore,
    State,
    StateHooks,
    Task,
    TaskCanceledError,
    TaskTimeoutError,
    WorkerPool,
    blocking,
)

T = TypeVar("T")

WAIT = 20.0  # seconds: the bound on any wait a bug could turn into a hang
SEED = 20240611
THREADS = 16

TERMINAL = (State.DONE, State.FAILED, State.CANCELED)


@pytest.fixture(autouse=True)
def _switch_threads_often() -> Iterator[None]:
    """Let the interpreter switch threads every few microseconds instead of every 5 ms, so
    the threads interleave inside the library's methods, not only at their blocking calls."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


# -- helpers ----------------------------------------------------------------------------------


class LoopThread:
    """An event loop running in a thread started and stopped by the test."""

    def __init__(self, name: str = "test-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        running = threading.Event()
        self.loop.call_soon_threadsafe(running.set)
        assert running.wait(WAIT), "the loop did not start"  # is_running() is True from here
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
        """Run ``coro`` on the loop; block until it is done."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        async def cancel_all() -> list[asyncio.Task[Any]]:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return tasks

        leftover = self.call(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()
        if exc_type is None:
            assert leftover == [], f"tasks left running on the loop: {leftover}"
            assert self.errors == [], f"the loop reported errors: {self.errors}"


def hammer(n: int, body: Callable[[int, random.Random], None], timeout: float = WAIT) -> None:
    """Run ``body(i, rng)`` in ``n`` threads released together; re-raise the first exception
    any of them raised (with every thread's failure listed)."""
    start = threading.Barrier(n, timeout=WAIT)
    errors: list[tuple[int, BaseException]] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        rng = random.Random(SEED * 1000 + i)
        try:
            start.wait()
            body(i, rng)
        except BaseException as exc:
            with lock:
                errors.append((i, exc))

    threads = [threading.Thread(target=run, args=(i,), name=f"hammer-{i}") for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running after {timeout}s (deadlock?): {stuck}"
    if errors:
        i, first = errors[0]
        raise AssertionError(f"{len(errors)} thread(s) raised; thread {i}: {first!r}") from first


def check_snapshot(stats: PoolStats, max_workers: int) -> None:
    """What holds for any snapshot of a pool's counters."""
    states = (stats.created, stats.pending, stats.started, stats.done, stats.failed)
    assert stats.total == sum(states) + stats.canceled, stats
    assert min((*states, stats.canceled)) >= 0, stats
    assert stats.max_workers == max_workers
    # a task taken in holds a slot until it ends; a slot may also be held by a submitter
    # whose task the loop has not taken in yet
    assert stats.pending + stats.started <= stats.active_workers <= max_workers, stats


def check_end(stats: PoolStats, states: list[State], max_workers: int) -> None:
    """The end of a run: every task ended, counters equal to a recount, every slot free."""
    counts = Counter(states)
    assert set(counts) <= set(TERMINAL), counts
    assert stats.total == len(states)
    assert stats.done + stats.failed + stats.canceled == stats.total
    assert (stats.created, stats.pending, stats.started) == (0, 0, 0)
    assert (stats.done, stats.failed, stats.canceled) == (
        counts[State.DONE],
        counts[State.FAILED],
        counts[State.CANCELED],
    )
    assert stats.active_workers == 0
    assert stats.max_workers == max_workers


def exactly_one_terminal_state(task: Any) -> bool:
    flags = [task.is_done(), task.is_failed(), task.is_canceled()]
    return task.is_end() and not task.is_in_progress() and flags.count(True) == 1


# -- the blocking pool, hammered --------------------------------------------------------------


class Boom(Exception):
    """What the failing task functions raise."""


def make_definition(task_id: str, kind: str) -> Definition[Any]:
    """A definition of one of several kinds, each with a known outcome when not canceled."""
    if kind == "async_ok":

        async def async_ok(run: Run) -> str:
            await asyncio.sleep(0)
            return run.id

        return Definition(id=task_id, task_fn=async_ok)
    if kind == "async_sleep":

        async def async_sleep(run: Run) -> str:
            await asyncio.sleep(0.002)
            return run.id

        return Definition(id=task_id, task_fn=async_sleep)
    if kind == "async_fail":

        async def async_fail(run: Run) -> None:
            raise Boom(run.id)

        return Definition(id=task_id, task_fn=async_fail)
    if kind == "sync_ok":
        return Definition(id=task_id, task_fn=lambda run: run.id)
    if kind == "sync_fail":

        def sync_fail(run: Run) -> None:
            raise Boom(run.id)

        return Definition(id=task_id, task_fn=sync_fail)
    if kind == "sync_cooperative":

        def sync_cooperative(run: Run) -> str:
            run.wait_canceled(0.002)
            return run.id

        return Definition(id=task_id, task_fn=sync_cooperative)
    if kind == "flaky":

        def flaky(run: Run) -> str:
            if run.attempt == 0:
                raise Boom(run.id)
            return run.id

        return Definition(id=task_id, task_fn=flaky, max_retries=1, backoff=0)
    if kind == "timeout":

        async def too_slow(run: Run) -> None:
            await asyncio.sleep(WAIT)

        return Definition(id=task_id, task_fn=too_slow, max_duration=0.003)
    if kind == "sync_timeout":  # (ends at its deadline; its thread runs on until told)

        def too_slow_plain(run: Run) -> None:
            run.wait_canceled(WAIT)

        return Definition(id=task_id, task_fn=too_slow_plain, max_duration=0.003)
    raise AssertionError(kind)


KINDS = [
    "async_ok",
    "async_sleep",
    "async_fail",
    "sync_ok",
    "sync_fail",
    "sync_cooperative",
    "flaky",
    "timeout",
    "sync_timeout",
]


def check_outcome(task: Any, kind: str) -> None:
    """The outcome of a task that nobody canceled."""
    if kind in ("async_ok", "async_sleep", "sync_ok", "sync_cooperative", "flaky"):
        assert task.state is State.DONE, (task, kind, task.error)
        assert task.result(0) == task.id
        assert task.attempts == (2 if kind == "flaky" else 1)
    elif kind in ("async_fail", "sync_fail"):
        assert task.state is State.FAILED, (task, kind)
        assert isinstance(task.error, Boom)
        assert task.error.args == (task.id,)
    else:
        assert task.state is State.FAILED, (task, kind)
        assert isinstance(task.error, TaskTimeoutError)


@pytest.mark.parametrize("hooked", [True, False], ids=["hooks", "no-hooks"])
@pytest.mark.parametrize("retain_finished", [True, False])
def test_stress_blocking_pool_with_mixed_operations(retain_finished: bool, hooked: bool) -> None:
    """Without pool hooks, the plain kinds run in the direct crew's threads (see _direct)
    and the async ones on the loop, in one pool."""
    max_workers = 4
    ops_per_thread = 120
    lock = threading.Lock()
    tasks: list[blocking.Task[Any]] = []
    kinds: dict[str, str] = {}
    cancel_called: set[str] = set()
    callbacks_expected: Counter[str] = Counter()
    callbacks_fired: Counter[str] = Counter()
    callback_threads: set[str] = set()
    hook_events: Counter[tuple[str, str]] = Counter()
    hook_threads: set[str] = set()

    def hook(event: str) -> Callable[..., None]:
        def record(task_id: str, *args: Any) -> None:
            with lock:
                hook_events[(task_id, event)] += 1
                hook_threads.add(threading.current_thread().name)

        return record

    hooks = StateHooks(on_done=hook("done"), on_failed=hook("failed"), on_canceled=hook("canceled"))

    def on_done(task: blocking.Task[Any]) -> None:
        with lock:
            callbacks_fired[task.id] += 1
            callback_threads.add(threading.current_thread().name)

    pool = blocking.WorkerPool(
        max_workers, hooks=hooks if hooked else None, retain_finished=retain_finished
    )

    def body(i: int, rng: random.Random) -> None:
        last: PoolStats | None = None
        listed = 0
        for j in range(ops_per_thread):
            op = rng.random()
            if op < 0.45:
                task_id = f"{i}-{j}"
                kind = rng.choice(KINDS)
                with lock:
                    kinds[task_id] = kind
                task = pool.submit(make_definition(task_id, kind))
                assert isinstance(task, blocking.Task)
                assert task.id == task_id
                with lock:
                    tasks.append(task)
            elif op < 0.6:
                stats = pool.stats()
                check_snapshot(stats, max_workers)
                if last is not None:  # snapshots taken one after another never go back
                    assert stats.total >= last.total
                    assert stats.done >= last.done
                    assert stats.failed >= last.failed
                    assert stats.canceled >= last.canceled
                last = stats
            elif op < 0.7:
                now = pool.tasks()
                if retain_finished:
                    assert len(now) >= listed  # every task is kept: the list only grows
                    listed = len(now)
                else:  # only tasks in progress, each holding a worker slot
                    assert len(now) <= max_workers
                assert all(t.state in State for t in now)
            elif op < 0.82:
                with lock:
                    victim = rng.choice(tasks) if tasks else None
                    if victim is not None:
                        cancel_called.add(victim.id)
                if victim is not None:
                    victim.cancel()
            elif op < 0.9:
                with lock:
                    target = rng.choice(tasks) if tasks else None
                    if target is not None:
                        callbacks_expected[target.id] += 1
                if target is not None:
                    target.add_done_callback(on_done)
            elif op < 0.95:
                with lock:
                    target = rng.choice(tasks) if tasks else None
                if target is not None and target.wait(0.01):
                    assert target.is_end()
            else:
                active = pool.active_workers
                available = pool.available_workers
                assert 0 <= active <= max_workers
                assert 0 <= available <= max_workers
                assert pool.max_workers == max_workers
                assert not pool.is_stopped()

    try:
        hammer(THREADS, body)
        pool.wait(WAIT)
        stats = pool.stats()
        listed_tasks = pool.tasks()
    finally:
        pool.shutdown(timeout=WAIT)

    assert len(tasks) == len(kinds) > 0
    assert pool.available_workers == max_workers  # no lost slot
    check_end(stats, [t.state for t in tasks], max_workers)  # a recount of every handle
    assert stats.total == len(tasks)  # every submitted task counted, once
    if retain_finished:
        assert sorted(t.id for t in listed_tasks) == sorted(t.id for t in tasks)
    else:
        assert listed_tasks == []
    for task in tasks:
        assert exactly_one_terminal_state(task), task
        if task.id not in cancel_called:
            check_outcome(task, kinds[task.id])
        elif task.is_canceled():
            assert isinstance(task.error, TaskCanceledError)
        if hooked:  # exactly one terminal hook, the one of its state
            event = {State.DONE: "done", State.FAILED: "failed", State.CANCELED: "canceled"}
            ends = {e: hook_events[(task.id, e)] for e in ("done", "failed", "canceled")}
            assert ends == {e: int(e == event[task.state]) for e in ends}, (task, ends)
    assert callbacks_fired == callbacks_expected  # each callback exactly once
    assert hook_threads == ({"asynctasklib-portal"} if hooked else set())
    assert callback_threads <= {"asynctasklib-portal"}


def test_stress_blocking_pool_stopped_while_threads_submit() -> None:
    max_workers = 3
    pool = blocking.WorkerPool(max_workers)
    lock = threading.Lock()
    returned: list[blocking.Task[Any]] = []
    refused = Counter[int]()
    enough = threading.Event()

    async def short(run: Run) -> None:
        await asyncio.sleep(0.001)

    def body(i: int, rng: random.Random) -> None:
        for j in range(10_000):
            kind = rng.choice(["async_ok", "sync_ok", "sync_cooperative"])
            try:
                task = pool.submit(make_definition(f"{i}-{j}", kind))
            except PoolStoppedError:
                with lock:
                    refused[i] += 1
                return
            with lock:
                returned.append(task)
                if len(returned) >= 200:
                    enough.set()
        raise AssertionError("the pool was never stopped")

    stopper_errors: list[BaseException] = []

    def stopper() -> None:
        try:
            assert enough.wait(WAIT)
            pool.stop()  # from yet another thread, while submitters are blocked
        except BaseException as exc:
            stopper_errors.append(exc)

    stop_thread = threading.Thread(target=stopper, name="stopper")
    stop_thread.start()
    try:
        hammer(THREADS, body)
        stop_thread.join(WAIT)
        assert not stopper_errors
        assert pool.is_stopped()
        pool.wait(WAIT)
        stats = pool.stats()
        states = [t.state for t in pool.tasks()]
    finally:
        pool.shutdown(timeout=WAIT)
    assert sum(refused.values()) == THREADS  # every thread was refused, once
    assert stats.stopped
    check_end(stats, states, max_workers)
    assert stats.total == len(returned)  # no task was taken in behind the refusal
    assert stats.done == len(returned)
    assert pool.available_workers == max_workers


def test_threads_blocked_in_submit_all_get_pool_stopped_error() -> None:
    pool = blocking.WorkerPool(1)
    try:
        first = pool.submit(Definition(task_fn=lambda run: run.wait_canceled(WAIT)))
        blocked = threading.Barrier(THREADS + 1, timeout=WAIT)
        results: list[BaseException | None] = [None] * THREADS

        def body(i: int, rng: random.Random) -> None:
            blocked.wait()
            try:
                pool.submit(Definition(task_fn=lambda run: None))
            except PoolStoppedError as exc:
                results[i] = exc

        runner = threading.Thread(target=hammer, args=(THREADS, body), name="submitters")
        runner.start()
        blocked.wait()
        deadline = time.monotonic() + WAIT
        while len(pool._pool._slots._waiters) < THREADS:  # every submitter is blocked
            assert time.monotonic() < deadline
            time.sleep(0.001)
        pool.stop()
        runner.join(WAIT)
        assert not runner.is_alive()
        assert all(isinstance(r, PoolStoppedError) for r in results)
        first.cancel()
        pool.wait(WAIT)
        assert pool.stats().total == 1
        assert pool.available_workers == 1
    finally:
        pool.shutdown(timeout=WAIT)


def test_stats_and_tasks_from_threads_while_the_pool_shuts_down_never_hang() -> None:
    hung: list[str] = []
    errors: list[BaseException] = []
    for attempt in range(150):
        pool = blocking.WorkerPool(2)
        pool.submit(Definition(task_fn=lambda run: None)).wait(WAIT)
        stop = threading.Event()

        def reader(pool: blocking.WorkerPool = pool, stop: threading.Event = stop) -> None:
            try:
                while not stop.is_set():
                    check_snapshot(pool.stats(), 2)
                    assert len(pool.tasks()) == 1  # before, during and after
            except BaseException as exc:
                errors.append(exc)

        # daemon: a reader that hangs in the library cannot be freed by the test
        readers = [
            threading.Thread(target=reader, name=f"reader-{attempt}-{k}", daemon=True)
            for k in range(3)
        ]
        for r in readers:
            r.start()
        pool.shutdown()
        stop.set()
        deadline = time.monotonic() + 2.0
        for r in readers:
            r.join(max(0.0, deadline - time.monotonic()))
        hung += [r.name for r in readers if r.is_alive()]
        if hung or errors:
            break
    assert not errors
    assert not hung, f"threads stuck in stats()/tasks() after shutdown: {hung}"


# -- semaphores, hammered ---------------------------------------------------------------------


class Occupancy:
    """Counts holders (between a successful acquire and the release) and the peak."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0
        self.entries: Counter[str] = Counter()

    def enter(self, who: str) -> None:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            self.entries[who] += 1
            assert self.inside <= self.limit, f"{self.inside} holders of {self.limit} slots"

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def test_blocking_semaphore_hammered_by_threads() -> None:
    limit = 3
    sem = blocking.Semaphore(limit)
    occ = Occupancy(limit)

    def body(i: int, rng: random.Random) -> None:
        for _ in range(1000):
            op = rng.randrange(5)
            got = True
            if op == 0:
                sem.acquire()
            elif op == 1:
                try:
                    sem.acquire(timeout=rng.choice([0, 0.0005, 0.005]))
                except TimeoutError:
                    got = False
            elif op == 2:
                got = sem.try_acquire()
            elif op == 3:
                got = sem.try_acquire_with_timeout(rng.choice([0, 0.001]))
            else:
                with sem:
                    occ.enter("with")
                    assert 0 <= sem.available <= limit - 1
                    occ.leave()
                continue
            if got:
                occ.enter(f"op{op}")
                assert sem.acquired >= 1
                if rng.random() < 0.3:
                    time.sleep(0)
                occ.leave()
                sem.release()

    hammer(THREADS, body)
    assert occ.inside == 0
    assert occ.peak <= limit
    assert sem.available == limit  # no lost slot
    assert sem.acquired == 0
    assert len(sem._waiters) == 0
    assert sum(occ.entries.values()) > 0
    with pytest.raises(ValueError, match="release"):
        sem.release()


def test_async_semaphore_shared_by_coroutines_on_two_loops_and_threads() -> None:
    """Coroutines on two event loops (each in its own thread) acquire and release the one
    async `Semaphore` while plain threads use its thread-safe ``try_acquire``/``release``:
    slots handed over between threads and loops are never lost nor doubled."""
    limit = 3
    sem = Semaphore(limit)
    occ = Occupancy(limit)
    coroutines_done = threading.Event()
    per_loop, rounds = 6, 200

    async def coroutine_user(name: str, rng: random.Random) -> int:
        got_count = 0
        for _ in range(rounds):
            op = rng.randrange(5)
            if op == 4:
                async with sem:
                    got_count += 1
                    occ.enter(name)
                    await asyncio.sleep(0)
                    occ.leave()
                continue
            try:
                if op == 0:
                    await sem.acquire()
                elif op == 1:
                    await sem.acquire(timeout=rng.choice([0, 0.0005, 0.002]))
                elif op == 2:
                    if not await sem.try_acquire_with_timeout(0.001):
                        continue
                elif not sem.try_acquire():
                    await asyncio.sleep(0)
                    continue
            except TimeoutError:
                continue
            got_count += 1
            occ.enter(name)
            await asyncio.sleep(0)
            occ.leave()
            sem.release()
        return got_count

    async def many(tag: str, seed: int) -> list[int]:
        rng = random.Random(seed)
        return await asyncio.gather(
            *(coroutine_user(f"{tag}{k}", random.Random(rng.random())) for k in range(per_loop))
        )

    results: dict[str, list[int]] = {}

    def run_loop(tag: str, seed: int) -> None:
        with LoopThread(f"test-loop-{tag}") as lt:
            results[tag] = lt.call(many(tag, seed), WAIT)

    def body(i: int, rng: random.Random) -> None:
        if i < 2:  # two of the threads drive the event loops
            run_loop("ab"[i], SEED + i)
            return
        mine = 0
        deadline = time.monotonic() + WAIT
        while not (coroutines_done.is_set() and mine >= 5):
            assert time.monotonic() < deadline, "a thread never got a slot"
            if sem.try_acquire():
                mine += 1
                occ.enter(f"thread{i}")
                time.sleep(0)
                occ.leave()
                sem.release()
            else:
                time.sleep(0)

    def all_coroutines_done() -> None:
        deadline = time.monotonic() + WAIT
        while len(results) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        coroutines_done.set()

    watcher = threading.Thread(target=all_coroutines_done, name="watcher")
    watcher.start()
    hammer(10, body)
    watcher.join(WAIT)
    assert sorted(results) == ["a", "b"]
    assert all(sum(counts) > 0 for counts in results.values())
    assert occ.inside == 0
    assert occ.peak <= limit
    assert sem.available == limit  # no lost slot
    assert sem.acquired == 0
    assert len(sem._waiters) == 0
    assert any(who.startswith("thread") for who in occ.entries)
    assert any(who[0] in "ab" for who in occ.entries)


def test_release_from_a_thread_hands_the_slot_to_a_waiting_coroutine() -> None:
    sem = Semaphore(1)
    assert sem.try_acquire()
    with LoopThread() as lt:

        async def waiter() -> str:
            await sem.acquire(timeout=WAIT)
            try:
                return threading.current_thread().name
            finally:
                sem.release()

        fut = asyncio.run_coroutine_threadsafe(waiter(), lt.loop)
        deadline = time.monotonic() + WAIT
        while not sem._waiters:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert sem.try_acquire() is False  # a coroutine waits: no overtaking
        sem.release()  # from this thread, not the loop's
        assert fut.result(WAIT) == "test-loop"
    assert sem.available == 1


# -- handing calls to a loop's thread ----------------------------------------------------------


def test_call_on_loop_runs_on_the_loops_thread_and_returns_or_raises() -> None:
    from asynctasklib._threads import call_on_loop

    def where(x: int) -> tuple[int, str]:
        return x, threading.current_thread().name

    def boom() -> None:
        raise Boom("on the loop")

    with LoopThread() as lt:
        assert call_on_loop(lt.loop, where, 3) == (3, "test-loop")
        with pytest.raises(Boom, match="on the loop"):
            call_on_loop(lt.loop, boom)
    # a loop that is not running (here: closed): the call runs in the caller
    assert call_on_loop(lt.loop, where, 4) == (4, threading.current_thread().name)
    assert call_on_loop(None, where, 5)[0] == 5


def test_call_on_loop_runs_in_the_caller_when_the_loop_stops_first() -> None:
    """A call handed to a loop that stops before it gets to it runs in the caller instead of
    waiting forever, and only once (the loop, if restarted, skips it).

    A wrapper around the real loop holds ``call_on_loop``'s first look at it (running) until
    the loop has stopped, so the call is handed to a stopped loop. That works the same on
    asyncio's loop and on uvloop (whose ``stop()`` is a queued callback, so a call queued just
    after it may still run on the loop)."""
    from asynctasklib._threads import call_on_loop

    loop = asyncio.new_event_loop()
    ran: list[str] = []
    checked = threading.Event()

    class StopsAfterTheCheck:
        """The real loop; the first is_running() answer is held until the loop has stopped."""

        def is_running(self) -> bool:
            running = loop.is_running()
            if not checked.is_set():
                checked.set()
                thread.join(WAIT)
                assert not thread.is_alive()
            return running

        def call_soon_threadsafe(self, callback: Callable[[], None]) -> object:
            return loop.call_soon_threadsafe(callback)

    def stop_after_the_check() -> None:  # on the loop
        assert checked.wait(WAIT)
        loop.stop()

    loop.call_soon(stop_after_the_check)
    thread = threading.Thread(target=loop.run_forever, name="test-loop")
    thread.start()
    try:
        proxy: Any = StopsAfterTheCheck()

        def record() -> int:
            ran.append(threading.current_thread().name)
            return 7

        result = call_on_loop(proxy, record)
        assert result == 7
        assert ran == [threading.current_thread().name]
        thread.join(WAIT)
        assert not thread.is_alive()
        loop.run_until_complete(asyncio.sleep(0))  # the queued call now runs: it is skipped
        assert ran == [threading.current_thread().name]
    finally:
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()


def test_call_on_loop_runs_in_the_caller_when_the_loop_closes_meanwhile() -> None:
    from asynctasklib._threads import call_on_loop

    class ClosingLoop:
        """Looks running when checked, is closed when the call is handed over."""

        def is_running(self) -> bool:
            return True

        def call_soon_threadsafe(self, *args: Any) -> None:
            raise RuntimeError("Event loop is closed")

    assert call_on_loop(ClosingLoop(), lambda: "here") == "here"  # type: ignore[arg-type]


# -- the async pool, touched from other threads -----------------------------------------------


def test_cancel_and_add_done_callback_from_threads_on_an_async_pool() -> None:
    n_tasks = 48
    lock = threading.Lock()
    fired: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    fired_threads: set[str] = set()
    cancel_results: dict[str, list[bool]] = {}

    def callback(task: Task[Any]) -> None:
        with lock:
            fired[task.id] += 1
            fired_threads.add(threading.current_thread().name)

    with LoopThread() as lt:
        pool = WorkerPool(n_tasks)
        gates: list[asyncio.Event] = []

        async def start() -> list[Task[Any]]:
            gates.append(asyncio.Event())

            async def fn(run: Run) -> str:
                await gates[0].wait()
                return run.id

            return [await pool.submit(Definition(id=str(k), task_fn=fn)) for k in range(n_tasks)]

        tasks = lt.call(start())

        def body(i: int, rng: random.Random) -> None:
            for _ in range(30):
                task = rng.choice(tasks)
                if rng.random() < 0.25:
                    result = task.cancel()
                    with lock:
                        cancel_results.setdefault(task.id, []).append(result)
                else:
                    with lock:
                        expected[task.id] += 1
                    task.add_done_callback(callback)
                if rng.random() < 0.1:
                    check_snapshot(pool.stats(), n_tasks)

        hammer(THREADS, body)
        lt.loop.call_soon_threadsafe(gates[0].set)

        async def finish() -> tuple[PoolStats, list[State]]:
            await pool.wait(WAIT)
            stats = pool.stats()
            states = [t.state for t in pool.tasks()]
            await pool.shutdown()
            return stats, states

        stats, states = lt.call(finish())

        # callbacks added from threads once the tasks have ended run at once, on the loop
        def late(i: int, rng: random.Random) -> None:
            for task in rng.sample(tasks, 5):
                with lock:
                    expected[task.id] += 1
                task.add_done_callback(callback)

        hammer(8, late)
        deadline = time.monotonic() + WAIT
        while fired != expected and time.monotonic() < deadline:
            time.sleep(0.001)

    check_end(stats, states, n_tasks)
    for task in tasks:
        assert exactly_one_terminal_state(task)
        if task.id in cancel_results:
            # canceled before the gate opened: in progress then, so the first call (at
            # least) saw it in progress; later calls may see it CANCELED already
            assert True in cancel_results[task.id]
            assert task.is_canceled()
            assert isinstance(task.error, TaskCanceledError)
        else:
            assert task.is_done()
            assert task.result() == task.id
        assert task.cancel() is False  # ended: nothing to cancel, from any thread
    assert stats.canceled == len(cancel_results) > 0
    assert fired == expected
    assert fired_threads == {"test-loop"}


def test_stop_and_stats_from_another_thread_while_the_loop_runs() -> None:
    max_workers = 3
    with LoopThread() as lt:
        pool = WorkerPool(max_workers)
        submitted: list[Task[Any]] = []
        enough = threading.Event()

        async def submitter() -> BaseException:
            async def fn(run: Run) -> str:
                await asyncio.sleep(0.001)
                return run.id

            k = 0
            while True:
                try:
                    task = await pool.submit(Definition(id=str(k), task_fn=fn))
                except PoolStoppedError as exc:
                    return exc
                submitted.append(task)
                k += 1
                if k == 50:
                    enough.set()
                if k > 100_000:
                    raise AssertionError("never stopped")

        async def run_submitters() -> list[BaseException]:
            return await asyncio.gather(*(submitter() for _ in range(4)))

        outcome = asyncio.run_coroutine_threadsafe(run_submitters(), lt.loop)
        snapshots: list[PoolStats] = []

        def reader(i: int, rng: random.Random) -> None:
            previous: PoolStats | None = None
            while not enough.is_set() or len(snapshots) < 50:
                stats = pool.stats()
                check_snapshot(stats, max_workers)
                if previous is not None:
                    assert stats.total >= previous.total
                    assert stats.done >= previous.done
                previous = stats
                snapshots.append(stats)
                assert 0 <= pool.active_workers <= max_workers
                listed = len(pool.tasks())  # every task is kept: between two snapshots
                assert stats.total <= listed <= pool.stats().total

        hammer(4, reader)
        pool.stop()  # from this thread, while submitters wait for slots on the loop
        errors = outcome.result(WAIT)
        assert all(isinstance(e, PoolStoppedError) for e in errors)
        assert pool.is_stopped()
        with pytest.raises(PoolStoppedError):
            lt.call(pool.submit(Definition(task_fn=lambda run: None)))

        async def finish() -> tuple[PoolStats, list[State]]:
            await pool.wait(WAIT)
            stats, states = pool.stats(), [t.state for t in pool.tasks()]
            await pool.shutdown()
            return stats, states

        stats, states = lt.call(finish())
        # from another thread, once the loop is idle again
        assert pool.stats() == stats
    assert stats.stopped
    check_end(stats, states, max_workers)
    assert stats.total == len(submitted) == stats.done
    assert snapshots
    assert not any(s.stopped for s in snapshots)  # all taken before stop()


def test_async_pool_stats_and_tasks_from_a_thread_are_consistent_snapshots() -> None:
    """``stats()`` from another thread is read on the loop: it equals a recount of
    ``tasks()`` read in the same loop iteration, at any moment of a busy run."""
    with LoopThread() as lt:
        pool = WorkerPool(5)
        running = threading.Event()

        async def load() -> None:
            async def fn(run: Run) -> None:
                await asyncio.sleep(0.0005)
                if int(run.id) % 5 == 0:
                    raise Boom(run.id)

            async with pool:
                for k in range(400):
                    await pool.submit(Definition(id=str(k), task_fn=fn))
                    running.set()

        done = asyncio.run_coroutine_threadsafe(load(), lt.loop)
        assert running.wait(WAIT)
        mismatches: list[Any] = []

        async def snapshot() -> tuple[PoolStats, Counter[State]]:
            return pool.stats(), Counter(t.state for t in pool.tasks())

        while not done.done():
            stats, counts = lt.call(snapshot())
            check_snapshot(stats, 5)
            if (stats.pending, stats.started, stats.done, stats.failed) != (
                counts[State.PENDING],
                counts[State.STARTED],
                counts[State.DONE],
                counts[State.FAILED],
            ):
                mismatches.append((stats, counts))
            check_snapshot(pool.stats(), 5)  # and straight from this thread
        done.result(WAIT)
        final = pool.stats()
    assert mismatches == []
    assert (final.total, final.done, final.failed) == (400, 320, 80)


def test_a_read_from_a_thread_before_a_loop_binds_the_pool_is_not_overtaken_by_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asynctasklib._crew import Crew

    """Before a loop binds the pool, ``tasks()`` from another thread runs in that thread. A
    loop binding the pool meanwhile (its first ``submit``) waits for the read to end, so the
    read never sees the pool's queues change under it ("deque mutated during iteration")."""
    pool = WorkerPool(2)
    binding = threading.Event()
    reading = threading.Event()
    seen: list[object] = []
    real_tasks, real_move_to = pool._tasks, Crew.move_to

    def move_to(crew: Crew, loop: asyncio.AbstractEventLoop) -> None:
        binding.set()
        real_move_to(crew, loop)

    def tasks() -> list[Task[Any]]:
        reading.set()
        assert binding.wait(WAIT)
        # the loop is binding now; it must not finish while this read runs: wait for the
        # thing that must not happen, briefly
        deadline = time.monotonic() + 0.5
        while pool._crew.loop is None and time.monotonic() < deadline:
            time.sleep(0.005)
        seen.append(pool._crew.loop)
        return real_tasks()

    monkeypatch.setattr(Crew, "move_to", move_to)
    monkeypatch.setattr(pool, "_tasks", tasks)
    listed: list[list[Task[Any]]] = []
    reader = threading.Thread(target=lambda: listed.append(pool.tasks()))
    reader.start()
    assert reading.wait(WAIT)
    with LoopThread() as lt:

        async def ok(run: Run) -> str:
            return "ok"

        async def first() -> str:
            return await (await pool.submit(Definition(task_fn=ok)))

        assert lt.call(first()) == "ok"
        reader.join(WAIT)
        lt.call(pool.shutdown())
    assert seen == [None]  # the read ended before the loop bound the pool
    assert listed == [[]]


def test_a_thread_that_finds_the_portal_started_finds_the_pool_bound_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first ``submit`` of a blocking pool starts its portal and binds the async pool to
    the portal's loop. Another thread that sees the portal must see the binding too: a task
    made before it has no loop, so its cancel() and hooks would run in the caller's thread."""
    binding = threading.Event()
    second_done = threading.Event()
    real = WorkerPool._serve_threads

    def serve_threads(pool: WorkerPool, loop: asyncio.AbstractEventLoop) -> None:
        binding.set()
        second_done.wait(0.5)  # the second submit must not get through meanwhile
        real(pool, loop)

    monkeypatch.setattr(WorkerPool, "_serve_threads", serve_threads)
    seen: list[object] = []
    with blocking.WorkerPool(2) as pool:

        def second() -> None:
            task = pool.submit(Definition(task_fn=lambda run: None))
            seen.append(task._task._loop)
            second_done.set()

        first = threading.Thread(target=lambda: pool.submit(Definition(task_fn=lambda run: None)))
        first.start()
        assert binding.wait(WAIT)
        other = threading.Thread(target=second)
        other.start()
        first.join(WAIT)
        other.join(WAIT)
        assert pool._portal is not None
        assert seen == [pool._portal.loop]
