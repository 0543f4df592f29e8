"""``python -m asynctasklib demo``: a few thousand flaky simulated I/O calls through a pool.

Each task is an ``async def`` that waits a random latency and then, at random, succeeds,
fails with a transient error (retried), fails with a permanent error (not retried), or hangs
past its ``max_duration`` (timed out, and retried). Pool-level hooks count what happens and
log the tasks that fail for good; at the end the pool's stats are printed.

The outcome of every attempt is drawn from ``(seed, task id, attempt)``, so the same seed
gives the same failures and retries whatever the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime

from .task import (
    Definition,
    ExponentialBackoff,
    Run,
    StateHooks,
    TaskTimeoutError,
    when_done,
    when_failed,
    when_pending,
    when_started,
)
from .workflow import PoolStats, WorkerPool

__all__ = ["main"]

# The simulated service, per attempt.
LATENCY = (0.005, 0.050)  # seconds, uniform
TRANSIENT_RATE = 0.20  # fails with TransientError: retried
HANG_RATE = 0.02  # hangs past max_duration: timed out, retried
PERMANENT_RATE = 0.005  # fails with PermanentError: not retried
HANG = 10.0  # how long a hanging call would take

# The policy under test.
MAX_DURATION = 0.2  # per attempt; four times the slowest healthy call
MAX_RETRIES = 3
BACKOFF = ExponentialBackoff(initial=0.005, multiplier=2.0, max_delay=0.05, jitter=0.5)

SHOW_FAILURES = 10  # failures logged one by one; the rest are only counted


class TransientError(ConnectionError):
    """A failure worth retrying (a reset connection, a 503)."""


class PermanentError(ValueError):
    """A failure no retry will fix (a 404, a bad request)."""


@dataclass
class Tally:
    """What the pool's hooks saw."""

    attempts: int = 0
    retries: int = 0
    done: int = 0
    retried_tasks: set[str] = field(default_factory=set)
    failures: Counter[str] = field(default_factory=Counter)
    hung: int = 0  # attempts that hung (each ends in a timeout)


def make_call(seed: int, tally: Tally) -> Definition[int]:
    """The definition template: a flaky call to a simulated service."""

    async def call(run: Run) -> int:
        rng = random.Random(f"{seed}:{run.id}:{run.attempt}")
        await run.sleep(rng.uniform(*LATENCY))
        roll = rng.random()
        if roll < HANG_RATE:
            tally.hung += 1
            await run.sleep(HANG)  # interrupted at max_duration: TaskTimeoutError
        elif roll < HANG_RATE + PERMANENT_RATE:
            raise PermanentError("404 not found")
        elif roll < HANG_RATE + PERMANENT_RATE + TRANSIENT_RATE:
            raise TransientError("connection reset by peer")
        return rng.randrange(1 << 16)  # the "response"

    return Definition(
        task_fn=call,
        max_duration=MAX_DURATION,
        max_retries=MAX_RETRIES,
        backoff=BACKOFF,
        retry_on=TransientError,  # timeouts are retried whatever retry_on says
    )


def make_hooks(tally: Tally, log: logging.Logger) -> StateHooks:
    def on_pending(task_id: str, when: datetime, attempt: int) -> None:
        if attempt:
            tally.retries += 1
            tally.retried_tasks.add(task_id)

    def on_started(task_id: str, when: datetime) -> None:
        tally.attempts += 1

    def on_done(task_id: str, when: datetime) -> None:
        tally.done += 1

    def on_failed(task_id: str, when: datetime, error: BaseException) -> None:
        cause = "timeout" if isinstance(error, TaskTimeoutError) else type(error).__name__
        tally.failures[cause] += 1
        failed = sum(tally.failures.values())
        if failed <= SHOW_FAILURES:
            log.warning("FAILED %s: %s: %s", task_id, type(error).__name__, error)
        elif failed == SHOW_FAILURES + 1:
            log.warning("(further failures are counted, not logged)")

    return StateHooks(
        when_pending(on_pending),
        when_started(on_started),
        when_done(on_done),
        when_failed(on_failed),
    )


async def run_workload(n_tasks: int, workers: int, seed: int, log: logging.Logger) -> int:
    tally = Tally()
    template = make_call(seed, tally)
    pool = WorkerPool(workers, hooks=make_hooks(tally, log), retain_finished=False)
    start = time.perf_counter()
    async with pool:
        for i in range(n_tasks):
            await pool.submit(replace(template, id=f"call-{i:05d}"))
    wall = time.perf_counter() - start
    print_report(pool.stats(), tally, n_tasks, wall)
    stats = pool.stats()
    ok = stats.total == n_tasks == stats.done + stats.failed + stats.canceled
    return 0 if ok and tally.done == stats.done else 1


def print_report(stats: PoolStats, tally: Tally, n_tasks: int, wall: float) -> None:
    print()
    print(
        f"pool stats: total={stats.total} done={stats.done} failed={stats.failed} "
        f"canceled={stats.canceled} created={stats.created} pending={stats.pending} "
        f"started={stats.started} max_workers={stats.max_workers} "
        f"active_workers={stats.active_workers} stopped={stats.stopped}"
    )
    causes = ", ".join(f"{n} {cause}" for cause, n in tally.failures.most_common()) or "none"
    print(
        f"attempts: {tally.attempts} ({tally.retries} retries, {tally.hung} timed out); "
        f"tasks that needed retries: {len(tally.retried_tasks)} "
        f"({len(tally.retried_tasks) / max(n_tasks, 1):.1%})"
    )
    print(f"failed for good: {stats.failed} ({causes})")
    print(f"wall time: {wall:.2f} s, {n_tasks / wall:,.0f} tasks/s")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m asynctasklib demo",
        description="Run a few thousand simulated flaky I/O calls through a WorkerPool with "
        "retries, per-attempt timeouts and hooks, then print the pool's stats.",
    )
    parser.add_argument("--tasks", type=positive, default=3000, help="tasks to run (3000)")
    parser.add_argument("--workers", type=positive, default=50, help="pool size (50)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    args = parser.parse_args(argv)
    seed: int = random.randrange(1 << 32) if args.seed is None else args.seed

    log = logging.getLogger("asynctasklib.demo")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        print(
            f"asynctasklib demo: {args.tasks} flaky I/O tasks, {args.workers} workers, "
            f"seed {seed}\n"
            f"  each attempt: {LATENCY[0] * 1e3:.0f}-{LATENCY[1] * 1e3:.0f} ms latency, "
            f"{TRANSIENT_RATE:.0%} transient errors (retried), "
            f"{HANG_RATE:.0%} hang past max_duration={MAX_DURATION}s (retried), "
            f"{PERMANENT_RATE:.1%} permanent errors (not retried)\n"
            f"  retries: max_retries={MAX_RETRIES}, backoff={BACKOFF}"
        )
        return asyncio.run(run_workload(args.tasks, args.workers, seed, log))
    finally:
        log.removeHandler(handler)
