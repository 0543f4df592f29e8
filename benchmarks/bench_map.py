"""Streaming N items through a concurrency limit: ``pool.map`` against the alternatives.

Each variant runs in its own process (fresh heap, honest peak RSS) over the same N trivial
``async def`` items with a limit of W, consuming every result:

* ``pool.map`` (this library: retries, timeouts, hooks and stats available, O(W) memory);
* aiometer ``amap`` (needs ``pip install aiometer``; skipped if missing);
* W hand-written worker coroutines on a bounded ``asyncio.Queue``;
* ``asyncio.TaskGroup`` + ``Semaphore``, one task per item (the usual hand-written code).

Run:  python benchmarks/bench_map.py                 (N=1,000,000, W=100)
      python benchmarks/bench_map.py --n 100000 --kind yield

Prints tasks per second, the whole process's peak RSS, and each ratio to ``pool.map``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import resource
import subprocess
import sys
import time
from typing import Any


async def fn_ret(x: int) -> int:
    return x


async def fn_yield(x: int) -> int:
    await asyncio.sleep(0)
    return x


async def pool_map(fn: Any, n: int, w: int) -> int:
    from asynctasklib import WorkerPool

    count = 0
    async with WorkerPool(w, retain_finished=False) as pool:
        async for _ in pool.map(fn, range(n)):
            count += 1
    return count


async def pool_map_unordered(fn: Any, n: int, w: int) -> int:
    from asynctasklib import WorkerPool

    count = 0
    async with WorkerPool(w, retain_finished=False) as pool:
        async for _ in pool.map(fn, range(n), ordered=False):
            count += 1
    return count


async def aiometer_amap(fn: Any, n: int, w: int) -> int:
    import aiometer

    count = 0
    async with aiometer.amap(fn, range(n), max_at_once=w) as results:
        async for _ in results:
            count += 1
    return count


async def queue_workers(fn: Any, n: int, w: int) -> int:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=w)
    results: asyncio.Queue[Any] = asyncio.Queue(maxsize=w)

    async def worker() -> None:
        while True:
            item = await queue.get()
            await results.put(await fn(item))

    async def feed() -> None:
        for i in range(n):
            await queue.put(i)

    workers = [asyncio.create_task(worker()) for _ in range(w)]
    feeder = asyncio.create_task(feed())
    count = 0
    for _ in range(n):
        await results.get()
        count += 1
    await feeder
    for t in workers:
        t.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return count


async def taskgroup_semaphore(fn: Any, n: int, w: int) -> int:
    sem = asyncio.Semaphore(w)

    async def one(i: int) -> Any:
        async with sem:
            return await fn(i)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(i)) for i in range(n)]
    return sum(1 for t in tasks if t.done())


VARIANTS = {
    "pool.map": pool_map,
    "pool.map(ordered=False)": pool_map_unordered,
    "aiometer.amap": aiometer_amap,
    "queue workers": queue_workers,
    "TaskGroup + Semaphore": taskgroup_semaphore,
}
BASELINE = "pool.map"


def child(variant: str, kind: str, n: int, w: int) -> None:
    fn = fn_ret if kind == "ret" else fn_yield
    for module in ("asynctasklib", "aiometer"):  # imported before the clock starts
        with contextlib.suppress(ImportError):
            loaded = importlib.import_module(module)
            # (asynctasklib loads its modules on first use of a name: load them all now)
            for name in getattr(loaded, "__all__", ()):
                getattr(loaded, name)
    start = time.perf_counter()
    count = asyncio.run(VARIANTS[variant](fn, n, w))
    elapsed = time.perf_counter() - start
    assert count == n, (variant, count)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rate": n / elapsed, "rss_mb": rss_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--kind", choices=["ret", "yield", "both"], default="ret")
    parser.add_argument("--only", default="")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, kind, n, w = args.child
        child(variant, kind, int(n), int(w))
        return
    kinds = ["ret", "yield"] if args.kind == "both" else [args.kind]
    print(f"python {sys.version.split()[0]}, N={args.n:,}, W={args.workers}")
    for kind in kinds:
        what = "returns at once" if kind == "ret" else "awaits asyncio.sleep(0) once"
        print(f"\nitem function {what}")
        print(f"  {'variant':26} {'items/s':>10} {'peak RSS':>9} {'vs pool.map':>12}")
        base = None
        for name in VARIANTS:
            if args.only not in name and name != BASELINE:
                continue
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, kind, str(args.n), str(args.workers)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"  {name:26} skipped ({last})")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            base = base or r["rate"]
            ratio = r["rate"] / base
            print(f"  {name:26} {r['rate']:>10,.0f} {r['rss_mb']:>7.0f}MB {ratio:>11.2f}x")


if __name__ == "__main__":
    main()
