"""Throughput and memory of the pool against what a user would write or pick instead.

Each variant runs in its own process (fresh heap, honest peak RSS). The same N trivial
``async def`` functions run through each, with a concurrency limit of W:

* ``ret``: the function returns at once;
* ``yield``: the function does ``await asyncio.sleep(0)`` once.

Run:  python benchmarks/bench_async.py            (default loop and uvloop, N=100,000)
      python benchmarks/bench_async.py --loop asyncio --n 20000 --only pool
      python benchmarks/bench_async.py --memory     (1,000,000 tasks, peak RSS only)

Needs ``pip install -e '.[bench]'`` for the third-party rows (they are skipped if missing).
Prints tasks per second, peak RSS of the process, and each variant's ratio to
``pool.submit`` with ``retain_finished=False``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import importlib
import json
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

Factory = Callable[[Callable[[Any], Awaitable[Any]], int, int], Awaitable[None]]


async def fn_ret(x: Any) -> None:
    return None


async def fn_yield(x: Any) -> None:
    await asyncio.sleep(0)


# -- the pool ------------------------------------------------------------------------------


async def pool_submit(fn: Any, n: int, w: int, *, retain: bool = False, **options: Any) -> None:
    from asynctasklib import Definition, WorkerPool

    definition = Definition(task_fn=fn, **options)
    pool = WorkerPool(w, retain_finished=retain)
    submit = pool.submit
    for _ in range(n):
        await submit(definition)
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def pool_submit_per_item(fn: Any, n: int, w: int) -> None:
    """A fresh Definition (with an id) per item, as a user passing per-item data would."""
    from asynctasklib import Definition, WorkerPool

    pool = WorkerPool(w, retain_finished=False)
    submit = pool.submit
    for i in range(n):
        await submit(Definition(id=str(i), task_fn=fn))
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def item_ret(item: int) -> int:
    return item


async def item_yield(item: int) -> int:
    await asyncio.sleep(0)
    return item


def item_fn(fn: Any) -> Any:
    """The per-item counterpart of ``fn``: the same work, given the item instead of a Run."""
    return item_yield if fn is fn_yield else item_ret


async def pool_submit_args(fn: Any, n: int, w: int) -> None:
    """``submit(fn, item)``: the item as the function's argument, no Definition per item."""
    from asynctasklib import WorkerPool

    item_fn_ = item_fn(fn)
    pool = WorkerPool(w, retain_finished=False)
    submit = pool.submit
    for i in range(n):
        await submit(item_fn_, i)
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def pool_submit_args_id(fn: Any, n: int, w: int) -> None:
    """``submit(fn, item, id=...)``: per-item arguments and a per-item id."""
    from asynctasklib import WorkerPool

    item_fn_ = item_fn(fn)
    pool = WorkerPool(w, retain_finished=False)
    submit = pool.submit
    for i in range(n):
        await submit(item_fn_, i, id=str(i))
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def pool_submit_args_options(fn: Any, n: int, w: int) -> None:
    """``submit(fn, item, id=..., max_retries=2)``: per-item arguments, an id and options."""
    from asynctasklib import WorkerPool

    item_fn_ = item_fn(fn)
    pool = WorkerPool(w, retain_finished=False)
    submit = pool.submit
    for i in range(n):
        await submit(item_fn_, i, id=str(i), max_retries=2)
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def pool_submit_closure(fn: Any, n: int, w: int, *, keep: bool = False) -> None:
    """A new Definition per item, its task function a closure that calls ``fn(item)``;
    ``keep``: the defaults (``retain_finished=True``), the caller keeping every handle."""
    from asynctasklib import Definition, WorkerPool

    item_fn_ = item_fn(fn)

    def task_for(item: int) -> Any:
        async def task(run: Any) -> Any:
            return await item_fn_(item)

        return task

    pool = WorkerPool(w, retain_finished=keep)
    submit = pool.submit
    tasks: list[Any] = []
    for i in range(n):
        task = await submit(Definition(task_fn=task_for(i)))
        if keep:
            tasks.append(task)
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n
    assert len(tasks) == (n if keep else 0)


async def pool_submit_closure_kept(fn: Any, n: int, w: int) -> None:
    await pool_submit_closure(fn, n, w, keep=True)


async def item_run_ret(item: int, run: Any) -> int:
    return item


async def item_run_yield(item: int, run: Any) -> int:
    await asyncio.sleep(0)
    return item


async def pool_submit_partial(fn: Any, n: int, w: int) -> None:
    """A new Definition per item, its task function ``functools.partial(item_fn, item)``."""
    from asynctasklib import Definition, WorkerPool

    item_run = item_run_yield if fn is fn_yield else item_run_ret
    pool = WorkerPool(w, retain_finished=False)
    submit = pool.submit
    for i in range(n):
        await submit(Definition(task_fn=functools.partial(item_run, i)))
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def pool_submit_args_awaited(fn: Any, n: int, w: int) -> None:
    """``submit(fn, item)``, every result awaited in input order with at most 2W handles
    held: what ``pool.map`` does, by hand."""
    from asynctasklib import WorkerPool

    item_fn_ = item_fn(fn)
    pool = WorkerPool(w, retain_finished=False)
    submit = pool.submit
    held: collections.deque[Any] = collections.deque()
    for i in range(n):
        held.append(await submit(item_fn_, i))
        if len(held) >= 2 * w:
            await held.popleft()
    while held:
        await held.popleft()
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def pool_map_items(fn: Any, n: int, w: int) -> None:
    """``pool.map`` over ``range(N)``, the per-item function, every result consumed."""
    from asynctasklib import WorkerPool

    count = 0
    async with WorkerPool(w, retain_finished=False) as pool:
        async for _ in pool.map(item_fn(fn), range(n)):
            count += 1
    assert count == n


async def pool_submit_kept(fn: Any, n: int, w: int) -> None:
    """The defaults: every handle kept by the pool, and by the caller in a list. The same
    loop as `pool_submit`'s, so that the two differ only in what is kept."""
    from asynctasklib import Definition, WorkerPool

    definition = Definition(task_fn=fn)
    pool = WorkerPool(w)
    submit = pool.submit
    tasks: list[Any] = []
    for _ in range(n):
        tasks.append(await submit(definition))
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n
    assert len(tasks) == n
    assert tasks[-1].is_done()


async def pool_submit_hooks(fn: Any, n: int, w: int) -> None:
    """A pool hook (on_done counting) and retries set (never needed)."""
    from asynctasklib import Definition, StateHooks, WorkerPool

    done = 0

    def on_done(task_id: str, when: Any) -> None:
        nonlocal done
        done += 1

    definition = Definition(task_fn=fn, max_retries=3, backoff=0.01)
    pool = WorkerPool(w, hooks=StateHooks(on_done=on_done), retain_finished=False)
    for _ in range(n):
        await pool.submit(definition)
    await pool.shutdown(cancel=False)
    assert done == n


async def pool_submit_batch(fn: Any, n: int, w: int) -> None:
    from asynctasklib import Definition, WorkerPool

    definition = Definition(task_fn=fn)
    pool = WorkerPool(w, retain_finished=False)
    await pool.submit_batch(definition for _ in range(n))
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


# -- what users write by hand ----------------------------------------------------------------


async def create_task_semaphore(fn: Any, n: int, w: int) -> None:
    sem = asyncio.Semaphore(w)

    async def one(i: int) -> Any:
        async with sem:
            return await fn(i)

    await asyncio.gather(*[asyncio.create_task(one(i)) for i in range(n)])


async def taskgroup_semaphore_inside(fn: Any, n: int, w: int) -> None:
    """The form most examples show: a task per item at once, each one takes the semaphore."""
    sem = asyncio.Semaphore(w)

    async def one(i: int) -> Any:
        async with sem:
            return await fn(i)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(one(i))


async def taskgroup_semaphore(fn: Any, n: int, w: int) -> None:
    """The bounded form: take the semaphore first, then create the task (at most W exist)."""
    sem = asyncio.Semaphore(w)

    async def one(i: int) -> Any:
        try:
            return await fn(i)
        finally:
            sem.release()

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            await sem.acquire()
            tg.create_task(one(i))


async def queue_workers(fn: Any, n: int, w: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=w)

    async def worker() -> None:
        while True:
            i = await queue.get()
            await fn(i)
            queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(w)]
    for i in range(n):
        await queue.put(i)
    await queue.join()
    for t in workers:
        t.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


async def queue_workers_timeout(fn: Any, n: int, w: int) -> None:
    """Queue workers with a per-call timeout and exception capture, as the pool gives."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=w)
    errors: list[BaseException] = []

    async def worker() -> None:
        while True:
            i = await queue.get()
            try:
                async with asyncio.timeout(30):
                    await fn(i)
            except Exception as exc:
                errors.append(exc)
            queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(w)]
    for i in range(n):
        await queue.put(i)
    await queue.join()
    for t in workers:
        t.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


# -- libraries -------------------------------------------------------------------------------


async def aiometer_amap(fn: Any, n: int, w: int) -> None:
    import aiometer

    async with aiometer.amap(fn, range(n), max_at_once=w) as results:
        async for _ in results:
            pass


async def aiojobs_scheduler(fn: Any, n: int, w: int) -> None:
    import aiojobs

    async with aiojobs.Scheduler(limit=w, pending_limit=w) as scheduler:
        for i in range(n):
            await scheduler.spawn(fn(i))
        await scheduler.wait_and_close()


async def asyncio_pool_spawn(fn: Any, n: int, w: int) -> None:
    from asyncio_pool import AioPool

    async with AioPool(size=w) as pool:
        for i in range(n):
            await pool.spawn(fn(i))


VARIANTS: dict[str, Factory] = {
    "pool.submit (retain_finished=False)": pool_submit,
    "pool.submit, Definition per item": pool_submit_per_item,
    "pool.submit, Definition + closure per item": pool_submit_closure,
    "pool.submit, Definition + partial per item": pool_submit_partial,
    "pool.submit(fn, item)": pool_submit_args,
    "pool.submit(fn, item, id=)": pool_submit_args_id,
    "pool.submit(fn, item, id=, max_retries=)": pool_submit_args_options,
    "pool.submit(fn, item), results awaited": pool_submit_args_awaited,
    "pool.map(fn, items)": pool_map_items,
    "pool.submit (defaults, handles kept)": pool_submit_kept,
    "pool.submit + pool hook + retries": pool_submit_hooks,
    "pool.submit_batch": pool_submit_batch,
    "create_task + Semaphore + gather": create_task_semaphore,
    "TaskGroup + Semaphore (bounded)": taskgroup_semaphore,
    "TaskGroup + Semaphore (task per item)": taskgroup_semaphore_inside,
    "queue workers": queue_workers,
    "queue workers + timeout + capture": queue_workers_timeout,
    "aiometer.amap": aiometer_amap,
    "aiojobs.Scheduler": aiojobs_scheduler,
    "asyncio-pool AioPool.spawn": asyncio_pool_spawn,
}
BASELINE = "pool.submit (retain_finished=False)"


def child(variant: str, kind: str, loop: str, n: int, w: int) -> None:
    fn = fn_ret if kind == "ret" else fn_yield
    factory = VARIANTS[variant]
    if loop == "uvloop":
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    else:
        runner = asyncio.Runner()
    # Import every library before the clock starts: the figures are task throughput, and a
    # first import (asynctasklib's takes about 40 ms here) would count against the variant.
    for module in ("asynctasklib", "aiometer", "aiojobs", "asyncio_pool"):
        with contextlib.suppress(ImportError):
            loaded = importlib.import_module(module)
            # (asynctasklib loads its modules on first use of a name: load them all now)
            for name in getattr(loaded, "__all__", ()):
                getattr(loaded, name)
    with runner:
        start = time.perf_counter()
        runner.run(factory(fn, n, w))
        elapsed = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rate": n / elapsed, "rss_mb": rss_mb}))


def run_child(variant: str, kind: str, loop: str, n: int, w: int) -> dict[str, float] | None:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", variant, kind, loop, str(n), str(w)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"    {variant}: skipped ({last})", file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument("--kind", choices=["ret", "yield", "both"], default="both")
    parser.add_argument("--only", default="", help="run variants whose name contains this")
    parser.add_argument("--repeat", type=int, default=1, help="keep the best of R runs")
    parser.add_argument("--memory", action="store_true", help="1,000,000 tasks: peak RSS")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, kind, loop, n, w = args.child
        child(variant, kind, loop, int(n), int(w))
        return
    if args.memory:
        memory(args)
        return
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    kinds = ["ret", "yield"] if args.kind == "both" else [args.kind]
    names = [v for v in VARIANTS if args.only in v]
    if BASELINE not in names:
        names.insert(0, BASELINE)
    print(f"python {sys.version.split()[0]}, N={args.n:,}, W={args.workers}, best of {args.repeat}")
    for loop in loops:
        for kind in kinds:
            what = "returns at once" if kind == "ret" else "awaits asyncio.sleep(0) once"
            print(f"\n[{loop} loop] task function {what}")
            print(f"  {'variant':44} {'tasks/s':>10} {'peak RSS':>9} {'vs pool':>8}")
            # Round by round, every variant once a round: a slow moment of this shared
            # machine then falls on all of them, not on the few measured in it.
            results: dict[str, dict[str, float]] = {}
            for _ in range(args.repeat):
                for name in names:
                    r = run_child(name, kind, loop, args.n, args.workers)
                    if r is not None and r["rate"] > results.get(name, {}).get("rate", 0):
                        results[name] = r
            base = results.get(BASELINE, {}).get("rate")
            for name, r in results.items():
                ratio = f"{r['rate'] / base:.2f}x" if base else "-"
                print(f"  {name:44} {r['rate']:>10,.0f} {r['rss_mb']:>7.0f}MB {ratio:>8}")


def memory(args: argparse.Namespace) -> None:
    n = 1_000_000
    print(f"peak RSS of the whole process, {n:,} tasks, W={args.workers}, default loop")
    names = [BASELINE, "pool.submit, Definition per item", "pool.submit(fn, item)"]
    for name in [*names, "create_task + Semaphore + gather"]:
        r = run_child(name, "ret", "asyncio", n, args.workers)
        if r:
            print(f"  {name:44} {r['rss_mb']:>7.0f}MB  ({r['rate']:,.0f} tasks/s)")


if __name__ == "__main__":
    main()
