"""The blocking face and executors, against the executor used directly, in one run.

1. N trivial plain functions through ``blocking.WorkerPool(W)`` against
   ``ThreadPoolExecutor(W)``, at W = 4, 8, 16 and 100: ``submit`` each, then ``wait()``
   (``concurrent.futures.wait`` for the executor); and ``map`` over a generator. Beside
   them, the executor with the pool's backpressure added by hand (a semaphore of W taken
   before each submit, given back as each call ends), which a user who needs it writes.
   Goal: at least 2.0x the executor's throughput at every W.
2. A CPU-bound function on a ``ProcessPoolExecutor`` (all cores) through the pool against
   the same executor used directly. Goal: within 10%.

Run:  python benchmarks/bench_blocking.py            (N=100,000, 5 rounds)
      python benchmarks/bench_blocking.py --n 20000 --rounds 7 --workers 8 --jobs 0

The variants take turns within each round (the pool, then the executor), so that a noisy
moment on a shared machine falls on both; each ratio is the median of the rounds' own
ratios, and each rate the median of its rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Any

from asynctasklib import Definition, RunInfo, blocking


def trivial(run: Any) -> None:
    return None


def cpu_bound(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def cpu_task(info: RunInfo) -> int:
    return cpu_bound(CPU_N)


CPU_N = 300_000


def threads_pool(n: int, w: int) -> float:
    definition = Definition(task_fn=trivial)
    start = time.perf_counter()
    with blocking.WorkerPool(w, retain_finished=False) as pool:
        for _ in range(n):
            pool.submit(definition)
        pool.wait()
        assert pool.stats().done == n
    return n / (time.perf_counter() - start)


def threads_direct(n: int, w: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(w) as executor:
        futures = [executor.submit(trivial, None) for _ in range(n)]
        wait(futures)
    return n / (time.perf_counter() - start)


def threads_bounded(n: int, w: int) -> float:
    """The executor with the pool's backpressure, as users add it: at most W calls
    submitted and not ended (a semaphore taken before each submit, given back as it ends)."""
    bound = threading.BoundedSemaphore(w)

    def release(_: object) -> None:
        bound.release()

    start = time.perf_counter()
    with ThreadPoolExecutor(w) as executor:
        futures = []
        for _ in range(n):
            bound.acquire()
            future = executor.submit(trivial, None)
            future.add_done_callback(release)
            futures.append(future)
        wait(futures)
    return n / (time.perf_counter() - start)


def threads_map_pool(n: int, w: int) -> float:
    start = time.perf_counter()
    with blocking.WorkerPool(w, retain_finished=False) as pool:
        count = sum(1 for _ in pool.map(trivial, (i for i in range(n))))
    assert count == n
    return n / (time.perf_counter() - start)


def threads_map_direct(n: int, w: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(w) as executor:
        count = sum(1 for _ in executor.map(trivial, (i for i in range(n))))
    assert count == n
    return n / (time.perf_counter() - start)


def processes_pool(executor: ProcessPoolExecutor, jobs: int, w: int) -> float:
    definition = Definition(task_fn=cpu_task, max_duration=None)
    start = time.perf_counter()
    with blocking.WorkerPool(w, executor=executor) as pool:
        tasks = [pool.submit(definition) for _ in range(jobs)]
        results = [t.result() for t in tasks]
    assert len(set(results)) == 1
    return jobs / (time.perf_counter() - start)


def processes_direct(executor: ProcessPoolExecutor, jobs: int, w: int) -> float:
    start = time.perf_counter()
    futures = [executor.submit(cpu_bound, CPU_N) for _ in range(jobs)]
    results = [f.result() for f in futures]
    assert len(set(results)) == 1
    return jobs / (time.perf_counter() - start)


def interleaved(
    rounds: int,
    pool: Callable[[int, int], float],
    direct: Callable[[int, int], float],
    n: int,
    w: int,
) -> tuple[float, float, float]:
    """The median rates of ``pool(n, w)`` and ``direct(n, w)`` run in turn, and the median
    of the rounds' ratios (pool / direct)."""
    pool_rates, direct_rates = [], []
    for _ in range(rounds):
        pool_rates.append(pool(n, w))
        direct_rates.append(direct(n, w))
    ratios = [p / d for p, d in zip(pool_rates, direct_rates, strict=True)]
    return statistics.median(pool_rates), statistics.median(direct_rates), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[4, 8, 16, 100], help="threads, for part 1"
    )
    parser.add_argument("--jobs", type=int, default=200, help="CPU-bound jobs (0: skip)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    n, rounds = args.n, args.rounds
    print(f"python {sys.version.split()[0]}, {cores} cores, medians of {rounds} rounds")

    for w in args.workers:
        print(f"\n{n:,} trivial plain functions, W={w} threads")
        pool, direct, ratio = interleaved(rounds, threads_pool, threads_direct, n, w)
        print(f"  ThreadPoolExecutor.submit + wait   {direct:>10,.0f} tasks/s")
        print(f"  blocking.WorkerPool.submit + wait  {pool:>10,.0f} tasks/s  {ratio:.2f}x")
        pool, bounded, ratio = interleaved(rounds, threads_pool, threads_bounded, n, w)
        print(f"  the executor, at most W submitted  {bounded:>10,.0f} tasks/s")
        print(f"  (the pool against it, same rounds) {pool:>10,.0f} tasks/s  {ratio:.2f}x")
        pool, direct, ratio = interleaved(rounds, threads_map_pool, threads_map_direct, n, w)
        print(f"  ThreadPoolExecutor.map (generator) {direct:>10,.0f} items/s")
        print(f"  blocking.WorkerPool.map (generator){pool:>10,.0f} items/s  {ratio:.2f}x")

    if args.jobs <= 0:
        return
    # The pool bounds the jobs in flight to W: with W = cores a process waits, between two
    # jobs, for the result to come back and the next job to be sent; with W = 2 x cores each
    # process has one more job queued. Both are shown.
    with ProcessPoolExecutor(cores) as executor:
        executor.submit(cpu_bound, 1).result()  # start the processes before timing
        rates: dict[str, list[float]] = {}
        for _ in range(rounds):
            rates.setdefault("direct", []).append(processes_direct(executor, args.jobs, 0))
            for w in (cores, 2 * cores):
                rates.setdefault(f"W={w}", []).append(processes_pool(executor, args.jobs, w))
    directs = rates.pop("direct")
    direct = statistics.median(directs)
    print(f"\n{args.jobs} CPU-bound jobs (sums of {CPU_N:,} squares), ProcessPoolExecutor({cores})")
    print(f"  {'executor used directly':40} {direct:>8,.1f} jobs/s")
    for label, runs in rates.items():
        ratio = statistics.median(r / d for r, d in zip(runs, directs, strict=True))
        name = f"blocking.WorkerPool({label}, executor=)"
        print(f"  {name:40} {statistics.median(runs):>8,.1f} jobs/s  {ratio:.2f}x")


if __name__ == "__main__":
    main()
