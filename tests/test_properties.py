"""Property-based tests (hypothesis) of the task state machine in a WorkerPool, and of the
Semaphore.

Each example runs on a fresh virtual-clock loop (``run_async`` from tests/conftest.py) inside
a sync ``@given`` test. All of a task's own times (delay, work, backoff, timeout) are whole
seconds and every cancellation comes at a half second, so the outcome of each task can be
computed exactly by a small reference model (`expected`) and compared with what happened.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asynctasklib import (
    Definition,
    Run,
    Semaphore,
    State,
    StateHooks,
    Task,
    TaskCanceledError,
    TaskTimeoutError,
    WorkerPool,
)
from conftest import run_async

MAX_DURATION = 4  # each attempt's timeout; "hang" attempts hit it, others end before it
KINDS = ("ok", "raise", "hang", "flaky", "self_cancel")
TERMINAL_HOOK = {State.DONE: "done", State.FAILED: "failed", State.CANCELED: "canceled"}


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """What one task does.

    ok: works ``duration`` s and returns. raise: works, then raises, every attempt. hang:
    never returns (each attempt times out after MAX_DURATION). flaky: raises on its first
    ``k`` attempts, then returns. self_cancel: raises on its first ``k`` attempts, then calls
    ``run.cancel()`` and keeps sleeping. ``cancel_at``: someone calls ``task.cancel()`` that
    many seconds after the task was submitted (a half second: never tied with its own
    events).
    """

    kind: str
    k: int
    duration: int
    delay: int
    max_retries: int
    backoff: int
    cancel_at: float | None


@dataclass(frozen=True)
class Outcome:
    state: State
    attempts: int
    ended_pending: bool  # it ended while PENDING (in its delay or a backoff)
    cancel_returns: bool | None  # what the outside cancel() returns (None: not called)


def attempt_result(b: Behaviour, i: int) -> tuple[str, int]:
    """(what attempt i does: "ok", "error", "timeout" or "self_cancel"; how long it takes)."""
    if b.kind == "ok":
        return "ok", b.duration
    if b.kind == "raise":
        return "error", b.duration
    if b.kind == "hang":
        return "timeout", MAX_DURATION
    if b.kind == "flaky":
        return ("error" if i < b.k else "ok"), b.duration
    return ("error", b.duration) if i < b.k else ("self_cancel", 0)


def expected(b: Behaviour) -> Outcome:
    """The reference model: the task's lifecycle on its own timeline (0 = submitted)."""
    cancel_at = b.cancel_at if b.cancel_at is not None else float("inf")
    called = b.cancel_at is not None
    t = b.delay
    if cancel_at < t:
        return Outcome(State.CANCELED, 0, True, True)
    for i in range(b.max_retries + 1):
        what, took = attempt_result(b, i)
        end = t + took
        if what == "self_cancel":
            return Outcome(State.CANCELED, i + 1, False, False if called else None)
        if cancel_at < end:
            return Outcome(State.CANCELED, i + 1, False, True)
        if what == "ok":
            return Outcome(State.DONE, i + 1, False, False if called else None)
        if i == b.max_retries:
            return Outcome(State.FAILED, i + 1, False, False if called else None)
        t = end + b.backoff
        if cancel_at < t:
            return Outcome(State.CANCELED, i + 1, True, True)
    raise AssertionError("unreachable")


def expected_hooks(outcome: Outcome) -> list[tuple[Any, ...]]:
    events: list[tuple[Any, ...]] = [("created",), ("pending", 0)]
    for i in range(outcome.attempts):
        events.append(("started",))
        if i < outcome.attempts - 1:
            events.append(("pending", i + 1))
    if outcome.ended_pending and outcome.attempts:
        events.append(("pending", outcome.attempts))
    events.append((TERMINAL_HOOK[outcome.state],))
    return events


behaviours = st.builds(
    Behaviour,
    kind=st.sampled_from(KINDS),
    k=st.integers(0, 4),
    duration=st.integers(0, 3),
    delay=st.integers(0, 2),
    max_retries=st.integers(0, 3),
    backoff=st.integers(0, 2),
    cancel_at=st.one_of(st.none(), st.integers(0, 14).map(lambda n: n + 0.5)),
)


# -- the pool property -------------------------------------------------------------------------


class Recorder:
    """Everything one example records while it runs."""

    def __init__(self, max_workers: int, plan: list[Behaviour]) -> None:
        self.max_workers = max_workers
        self.plan = plan
        self.running = 0
        self.peak = 0
        self.calls: Counter[str] = Counter()
        self.raised: dict[str, BaseException] = {}
        self.events: dict[str, list[tuple[Any, ...]]] = {str(i): [] for i in range(len(plan))}
        self.cancel_returns: dict[str, bool] = {}
        self.problems: list[str] = []
        self.pool: WorkerPool | None = None
        self.armed = 0  # outside cancels scheduled and not yet made

    def check_pool(self, where: str) -> None:
        """stats() is a recount of the tasks' states; limits hold."""
        pool = self.pool
        assert pool is not None
        s = pool.stats()
        tasks = pool.tasks()
        counts = Counter(t.state for t in tasks)
        got = (s.created, s.pending, s.started, s.done, s.failed, s.canceled)
        want = tuple(counts[state] for state in State)
        if got != want or s.total != len(tasks):
            self.problems.append(f"{where}: stats {got} total {s.total}, recount {want}")
        if not s.pending + s.started <= s.active_workers <= self.max_workers:
            self.problems.append(f"{where}: active_workers {s.active_workers}, {s}")
        if self.running > self.max_workers:
            self.problems.append(f"{where}: {self.running} functions running")

    def hooks(self) -> StateHooks:
        def record(name: str) -> Any:
            def hook(task_id: str, when: Any, *args: Any) -> None:
                self.events[task_id].append((name, *args[:1]) if name == "pending" else (name,))
                self.check_pool(f"{name} hook of {task_id}")
                if name == "pending" and args[0] == 0:
                    self.schedule_cancel(task_id)

            return hook

        return StateHooks(
            on_created=record("created"),
            on_pending=record("pending"),
            on_started=record("started"),
            on_done=record("done"),
            on_failed=record("failed"),
            on_canceled=record("canceled"),
        )

    def schedule_cancel(self, task_id: str) -> None:
        """At submission (on_pending(0)), arm the outside cancel of this task."""
        cancel_at = self.plan[int(task_id)].cancel_at
        if cancel_at is not None:
            self.armed += 1
            asyncio.get_running_loop().call_later(cancel_at, self.cancel, task_id)

    def cancel(self, task_id: str) -> None:
        assert self.pool is not None
        (task,) = [t for t in self.pool.tasks() if t.id == task_id]
        self.armed -= 1
        self.cancel_returns[task_id] = task.cancel()
        self.check_pool(f"after cancel of {task_id}")

    def task_fn(self, b: Behaviour) -> Any:
        async def fn(run: Run) -> str:
            self.calls[run.id] += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                what, took = attempt_result(b, run.attempt)
                if what == "timeout":
                    await asyncio.sleep(1000)
                elif what == "self_cancel":
                    run.cancel()
                    await run.sleep(b.duration + 1)  # interrupted by the cancellation
                    return "swallowed"  # not reached; were it, the task is still CANCELED
                if took:
                    await asyncio.sleep(took)
                if what == "error":
                    error = ValueError(f"{run.id}/{run.attempt}")
                    self.raised[run.id] = error
                    raise error
                return f"{run.id}:ok"
            finally:
                self.running -= 1

        return fn

    def definition(self, i: int, b: Behaviour) -> Definition[str]:
        return Definition(
            id=str(i),
            task_fn=self.task_fn(b),
            delay=b.delay,
            max_duration=MAX_DURATION,
            max_retries=b.max_retries,
            backoff=b.backoff,
        )


async def run_plan(rec: Recorder, batch: bool) -> list[Task[str]]:
    pool = WorkerPool(rec.max_workers, hooks=rec.hooks())
    rec.pool = pool
    definitions = [rec.definition(i, b) for i, b in enumerate(rec.plan)]
    async with asyncio.timeout(10_000):
        if batch:
            tasks = await pool.submit_batch(definitions)
        else:
            tasks = []
            for d in definitions:
                tasks.append(await pool.submit(d))
                rec.check_pool(f"after submit of {d.id}")
        await pool.wait()
        rec.check_pool("after wait")
        while rec.armed:  # late cancels (of tasks that have ended) must find them ended
            await asyncio.sleep(0.5)
        await pool.wait()
    await pool.shutdown()
    rec.check_pool("after shutdown")
    assert asyncio.all_tasks() == {asyncio.current_task()}
    return tasks


@settings(max_examples=100, deadline=None)
@given(
    plan=st.lists(behaviours, min_size=1, max_size=16),
    max_workers=st.integers(1, 5),
    batch=st.booleans(),
)
def test_pool_state_machine(plan: list[Behaviour], max_workers: int, batch: bool) -> None:
    rec = Recorder(max_workers, plan)
    tasks = run_async(run_plan(rec, batch))
    assert rec.problems == []
    assert rec.peak <= max_workers
    assert [t.id for t in tasks] == [str(i) for i in range(len(plan))]
    pool = rec.pool
    assert pool is not None
    for task, b in zip(tasks, plan, strict=True):
        want = expected(b)
        where = f"task {task.id} {b}"
        assert task.state is want.state, where
        assert task.is_end(), where
        assert [task.is_done(), task.is_failed(), task.is_canceled()].count(True) == 1, where
        assert task.attempts == want.attempts, where
        assert rec.calls[task.id] == want.attempts, where
        assert rec.events[task.id] == expected_hooks(want), where
        assert rec.cancel_returns.get(task.id) is want.cancel_returns, where
        if want.state is State.DONE:
            assert task.error is None, where
            assert task.result() == f"{task.id}:ok", where
        elif want.state is State.CANCELED:
            assert isinstance(task.error, TaskCanceledError), where
        elif b.kind == "hang":
            assert isinstance(task.error, TaskTimeoutError), where
        else:
            assert task.error is rec.raised[task.id], where
    s = pool.stats()
    final = Counter(expected(b).state for b in plan)
    assert (s.total, s.created, s.pending, s.started) == (len(plan), 0, 0, 0)
    assert (s.done, s.failed, s.canceled) == (
        final[State.DONE],
        final[State.FAILED],
        final[State.CANCELED],
    )
    assert (s.active_workers, s.max_workers, s.stopped) == (0, max_workers, True)


def test_model_sanity() -> None:
    """The reference model itself, on a few hand-checked cases."""
    ok = Behaviour("ok", 0, 2, 1, 0, 0, None)
    assert expected(ok) == Outcome(State.DONE, 1, False, None)
    flaky = Behaviour("flaky", 2, 1, 0, 3, 1, None)
    assert expected(flaky) == Outcome(State.DONE, 3, False, None)
    assert expected_hooks(expected(flaky)) == [
        ("created",),
        ("pending", 0),
        ("started",),
        ("pending", 1),
        ("started",),
        ("pending", 2),
        ("started",),
        ("done",),
    ]
    too_flaky = Behaviour("flaky", 3, 1, 0, 1, 1, None)
    assert expected(too_flaky) == Outcome(State.FAILED, 2, False, None)
    in_backoff = Behaviour("raise", 0, 1, 0, 2, 2, 2.5)  # attempt 0 ends at 1, backoff to 3
    assert expected(in_backoff) == Outcome(State.CANCELED, 1, True, True)
    assert expected_hooks(expected(in_backoff))[-2:] == [("pending", 1), ("canceled",)]
    in_delay = Behaviour("ok", 0, 1, 2, 0, 0, 0.5)
    assert expected(in_delay) == Outcome(State.CANCELED, 0, True, True)
    assert expected_hooks(expected(in_delay)) == [("created",), ("pending", 0), ("canceled",)]
    hang = Behaviour("hang", 0, 0, 0, 1, 0, None)
    assert expected(hang) == Outcome(State.FAILED, 2, False, None)
    late_cancel = Behaviour("ok", 0, 1, 0, 0, 0, 3.5)
    assert expected(late_cancel) == Outcome(State.DONE, 1, False, False)


# -- the semaphore property -------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    start: int  # seconds before it asks for a slot
    mode: str  # "acquire", "timeout", "try", "try_timeout"
    timeout: int
    hold: int  # seconds it holds the slot
    cancel_at: float | None  # canceled from outside at this time (a half second)


actors = st.builds(
    Actor,
    start=st.integers(0, 4),
    mode=st.sampled_from(("acquire", "timeout", "try", "try_timeout")),
    timeout=st.integers(0, 3),
    hold=st.integers(0, 3),
    cancel_at=st.one_of(st.none(), st.integers(0, 10).map(lambda n: n + 0.5)),
)


async def run_semaphore(limit: int, plan: list[Actor]) -> None:
    sem = Semaphore(limit)
    held = [0] * len(plan)
    requested: list[int] = []  # acquirers that had to queue, in the order they asked
    granted: list[int] = []  # ...in the order they resumed with a slot
    problems: list[str] = []
    waiting = 0  # actors inside acquire(): a slot may have been handed to them already

    def check(where: str) -> None:
        total = sum(held)
        if not 0 <= sem.acquired <= limit:
            problems.append(f"{where}: acquired={sem.acquired}")
        if not total <= sem.acquired <= total + waiting:
            problems.append(f"{where}: acquired={sem.acquired} held={total} waiting={waiting}")
        if sem.available != limit - sem.acquired:
            problems.append(f"{where}: available={sem.available}")

    async def take(a: Actor) -> bool:
        nonlocal waiting
        waiting += 1
        try:
            if a.mode == "acquire":
                await sem.acquire()
                return True
            if a.mode == "timeout":
                try:
                    await sem.acquire(a.timeout)
                except TimeoutError:
                    return False
                return True
            return await sem.try_acquire_with_timeout(a.timeout)
        finally:
            waiting -= 1

    async def actor(i: int, a: Actor) -> None:
        await asyncio.sleep(a.start)
        try:
            if a.mode == "try":
                if not sem.try_acquire():
                    check(f"actor {i} try failed")
                    return
            else:
                # Only callers that find no free slot queue (a free slot means no live
                # waiter: released slots go to waiters first); they must be served in order.
                queued = a.mode != "try_timeout" and sem.available == 0
                if queued:
                    requested.append(i)
                if not await take(a):
                    check(f"actor {i} gave up")
                    return
                if queued:
                    granted.append(i)
            held[i] += 1
            check(f"actor {i} acquired")
            await asyncio.sleep(a.hold)
        finally:
            if held[i]:
                held[i] -= 1
                sem.release()
            check(f"actor {i} left")

    tasks = [asyncio.create_task(actor(i, a)) for i, a in enumerate(plan)]
    loop = asyncio.get_running_loop()
    for task, a in zip(tasks, plan, strict=True):
        if a.cancel_at is not None:
            loop.call_later(a.cancel_at, task.cancel)
    async with asyncio.timeout(10_000):
        await asyncio.gather(*tasks, return_exceptions=True)
    check("end")
    assert problems == []
    assert (sem.available, sem.acquired) == (limit, 0)
    # FIFO: blocking acquirers got their slots in the order they asked for them.
    rank = {actor: n for n, actor in enumerate(requested)}
    assert [rank[i] for i in granted] == sorted(rank[i] for i in granted)
    with_nothing_held_release_fails(sem)


def with_nothing_held_release_fails(sem: Semaphore) -> None:
    try:
        sem.release()
    except ValueError:
        return
    raise AssertionError("release() with nothing held did not raise ValueError")


@settings(max_examples=100, deadline=None)
@given(limit=st.integers(1, 4), plan=st.lists(actors, min_size=1, max_size=25))
def test_semaphore_interleavings(limit: int, plan: list[Actor]) -> None:
    run_async(run_semaphore(limit, plan))
