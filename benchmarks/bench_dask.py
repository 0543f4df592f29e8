"""Per-task overhead of the pool on a Dask cluster against Dask used directly.

One LocalCluster (two single-threaded worker processes on loopback, as in the tests) serves
every variant in the same run; each runs the same N trivial functions (``x -> x + 1``), gets
every result back, and must leave the cluster empty before the next starts:

* ``client.map + gather``: one ``client.map(fn, items, pure=False)``, one ``client.gather``;
* ``client.submit + wait``: N ``client.submit(fn, x, pure=False)``, ``distributed.wait``,
  then ``client.gather``;
* ``ClientExecutor.submit``: Dask's own ``client.get_executor(pure=False)``, N ``submit``
  and ``concurrent.futures.wait`` (each call's result fetched on its own, as an executor must);
* ``DaskExecutor.submit``: the same through ``asynctasklib.dask.DaskExecutor``, no pool;
* ``pool.map``: ``WorkerPool(W, executor=DaskExecutor(client)).map(fn, items)``;
* ``pool.submit``: N ``await pool.submit(Definition(task_fn=fn))`` (fn takes the RunInfo),
  then ``pool.wait()``.

Run:  python benchmarks/bench_dask.py               (N=2,000, W=N, best of 3)
      python benchmarks/bench_dask.py --n 5000 --workers 200 --repeat 1

Needs ``pip install -e '.[dask]'``. Prints tasks per second, microseconds per task and each
variant's time per task against ``client.map + gather``. The pool's figure is end to end: the
Dask round trip of every call plus what the pool adds (a task, its hooks and timeout, an
asyncio future chained to the call).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import time
from collections.abc import Callable
from typing import Any


def inc(x: Any) -> Any:
    return x + 1 if isinstance(x, int) else x.attempt + 1


def scheduler_task_count(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def wait_until_empty(client: Any) -> None:
    end = time.monotonic() + 30
    while client.futures or client.run_on_scheduler(scheduler_task_count):
        if time.monotonic() > end:
            raise RuntimeError("the cluster did not empty between variants")
        time.sleep(0.01)


def client_map(client: Any, n: int, w: int) -> None:
    futures = client.map(inc, range(n), pure=False)
    assert client.gather(futures) == list(range(1, n + 1))


def client_submit(client: Any, n: int, w: int) -> None:
    import distributed

    futures = [client.submit(inc, x, pure=False) for x in range(n)]
    distributed.wait(futures)
    assert client.gather(futures) == list(range(1, n + 1))


def cf_executor(executor: cf.Executor, n: int) -> None:
    futures = [executor.submit(inc, x) for x in range(n)]
    cf.wait(futures)
    assert [f.result() for f in futures] == list(range(1, n + 1))


def client_executor(client: Any, n: int, w: int) -> None:
    cf_executor(client.get_executor(pure=False), n)


def dask_executor(client: Any, n: int, w: int) -> None:
    from asynctasklib.dask import DaskExecutor

    cf_executor(DaskExecutor(client), n)


def pool_map(client: Any, n: int, w: int) -> None:
    from asynctasklib import WorkerPool
    from asynctasklib.dask import DaskExecutor

    async def run() -> list[int]:
        async with WorkerPool(w, executor=DaskExecutor(client)) as pool:
            return [r async for r in pool.map(inc, range(n))]

    assert asyncio.run(run()) == list(range(1, n + 1))


def pool_submit(client: Any, n: int, w: int) -> None:
    from asynctasklib import Definition, WorkerPool
    from asynctasklib.dask import DaskExecutor

    async def run() -> None:
        definition = Definition(task_fn=inc)
        pool = WorkerPool(w, executor=DaskExecutor(client), retain_finished=False)
        for _ in range(n):
            await pool.submit(definition)
        await pool.shutdown(cancel=False)
        assert pool.stats().done == n

    asyncio.run(run())


VARIANTS: list[tuple[str, Callable[[Any, int, int], None]]] = [
    ("client.map + gather", client_map),
    ("client.submit + wait", client_submit),
    ("ClientExecutor.submit", client_executor),
    ("DaskExecutor.submit", dask_executor),
    ("pool.map", pool_map),
    ("pool.submit", pool_submit),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=0, help="the pool's W (default: N)")
    parser.add_argument("--repeat", type=int, default=3, help="keep the best of R runs")
    parser.add_argument("--only", default="", help="run variants whose name contains this")
    args = parser.parse_args()
    n, w = args.n, args.workers or args.n

    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        client_map(client, 200, w)  # warm up: workers import, connections open
        wait_until_empty(client)
        print(
            f"N={n} trivial functions, 2 worker processes x 1 thread, pool W={w}, best of "
            f"{args.repeat}"
        )
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            for name, variant in VARIANTS:
                if args.only not in name:
                    continue
                began = time.perf_counter()
                variant(client, n, w)
                took = time.perf_counter() - began
                best[name] = min(best.get(name, took), took)
                wait_until_empty(client)
    base = best.get("client.map + gather")
    print(f"{'variant':<24}{'tasks/s':>10}{'us/task':>10}{'x client.map time':>20}")
    for name, took in best.items():
        ratio = f"{took / base:.2f}" if base else "-"
        print(f"{name:<24}{n / took:>10,.0f}{took / n * 1e6:>10,.0f}{ratio:>20}")


if __name__ == "__main__":
    main()
