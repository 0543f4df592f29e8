"""The blocking face and executors, against the executor used directly, in one run.

1. N trivial plain functions through ``blocking.WorkerPool(W)`` (``submit`` each, then
   ``wait()``) against ``ThreadPoolExecutor(W).submit`` + ``concurrent.futures.wait``.
   Goal: at least 0.7x its throughput.
2. A CPU-bound function on a ``ProcessPoolExecutor`` (all cores) through the pool against
   the same executor used directly. Goal: within 10%.

Run:  python benchmarks/bench_blocking.py            (N=100,000, W=16 and W=100)
      python benchmarks/bench_blocking.py --n 20000 --repeat 3 --workers 8

Each figure is the best of ``--repeat`` runs, the variants alternating.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[16, 100], help="threads, for part 1"
    )
    parser.add_argument("--jobs", type=int, default=200, help="CPU-bound jobs (0: skip)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"python {sys.version.split()[0]}, {cores} cores, best of {args.repeat}")

    for w in args.workers:
        pool_rates, direct_rates = [], []
        for _ in range(args.repeat):
            pool_rates.append(threads_pool(args.n, w))
            direct_rates.append(threads_direct(args.n, w))
        pool, direct = max(pool_rates), max(direct_rates)
        print(f"\n{args.n:,} trivial plain functions, W={w} threads")
        print(f"  ThreadPoolExecutor.submit + wait   {direct:>10,.0f} tasks/s")
        print(f"  blocking.WorkerPool.submit + wait  {pool:>10,.0f} tasks/s  {pool / direct:.2f}x")
        pool_rates, direct_rates = [], []
        for _ in range(args.repeat):  # (in turn, as above: noise falls on both)
            pool_rates.append(threads_map_pool(args.n, w))
            direct_rates.append(threads_map_direct(args.n, w))
        pool, direct = max(pool_rates), max(direct_rates)
        print(f"  ThreadPoolExecutor.map (generator) {direct:>10,.0f} items/s")
        print(f"  blocking.WorkerPool.map (generator){pool:>10,.0f} items/s  {pool / direct:.2f}x")

    if args.jobs <= 0:
        return
    # The pool bounds the jobs in flight to W: with W = cores a process waits, between two
    # jobs, for the result to come back and the next job to be sent; with W = 2 x cores each
    # process has one more job queued. Both are shown.
    with ProcessPoolExecutor(cores) as executor:
        executor.submit(cpu_bound, 1).result()  # start the processes before timing
        rates: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            rates.setdefault("direct", []).append(processes_direct(executor, args.jobs, 0))
            for w in (cores, 2 * cores):
                rates.setdefault(f"W={w}", []).append(processes_pool(executor, args.jobs, w))
    direct = max(rates.pop("direct"))
    print(f"\n{args.jobs} CPU-bound jobs (sums of {CPU_N:,} squares), ProcessPoolExecutor({cores})")
    print(f"  {'executor used directly':40} {direct:>8,.1f} jobs/s")
    for label, runs in rates.items():
        best = max(runs)
        name = f"blocking.WorkerPool({label}, executor=)"
        print(f"  {name:40} {best:>8,.1f} jobs/s  {best / direct:.2f}x")


if __name__ == "__main__":
    main()
