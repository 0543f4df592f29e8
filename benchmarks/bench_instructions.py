"""Instructions per task under callgrind: speed figures that hold on a busy machine.

Wall-clock rates (bench_async.py, bench_map.py, bench_blocking.py) swing with whatever else
the machine runs; the count of instructions a process executes hardly does. Each variant
runs in a child process under ``valgrind --tool=callgrind`` twice, for N1 and N2 tasks, and

    instructions per task = (I(N2) - I(N1)) / (N2 - N1)

where I(N) is callgrind's total for the whole process ("Collected", the out file's
``totals:`` line). The difference cancels interpreter start-up, imports and pool set-up.
The variant functions are those of the wall-clock benchmarks (imported from them), so
both modes measure the same code; the few that exist only here are defined below.

Variants (async ones for a task function that returns at once, ``ret``, and one that does
``await asyncio.sleep(0)`` once, ``yield``; W workers, default 100):

* ``pool.submit`` with one shared Definition, ``retain_finished=False`` (the baseline of
  each table: the ratio column is instructions / the baseline's);
* the same with the defaults (``retain_finished=True``, the caller keeps every handle);
* a new Definition per item, its task function a closure over the item;
* a new Definition per item, its task function a ``functools.partial`` of the item;
* ``pool.map`` over ``range(N)`` (ordered, every result consumed);
* by hand: W worker coroutines on an ``asyncio.Queue(maxsize=W)``, and
  ``TaskGroup`` + ``asyncio.Semaphore(W)`` (acquire, then ``create_task``);
* the blocking face, plain functions, at W=8 and W=100: ``blocking.WorkerPool(W)``
  (``submit`` each, then ``result()`` of each; and ``map``) against
  ``ThreadPoolExecutor(W)`` doing the same. Valgrind runs one thread at a time, so these
  counts are the total work of all threads; they vary a little from run to run (how often
  threads wait on one another depends on scheduling), the async ones hardly at all.

Run (from the repository root; valgrind must be installed):

    python benchmarks/bench_instructions.py                      N1=10,000, N2=30,000
    python benchmarks/bench_instructions.py --n1 2000 --n2 6000 --only closure partial
    python benchmarks/bench_instructions.py --python ~/.pyenv/versions/3.12.1/bin/python --eager
    python benchmarks/bench_instructions.py --loop uvloop --kind yield --jobs 2 --json

The children import the library from this repository's ``src/`` (PYTHONPATH), not an
installed copy, unless ``--installed`` is given; the file they imported is printed. With
``--python`` they run on another interpreter: it needs no packages (variants whose
third-party imports are missing, such as uvloop, are skipped). ``--eager`` sets
``asyncio.eager_task_factory`` on the loop (Python 3.12+); it and ``--loop`` concern the
async variants only, so the blocking ones are left out then. Callgrind makes Python about
50 times slower: a default run takes minutes per variant; ``--jobs K`` runs K at once.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The wall-clock benchmarks, next to this file; neither imports anything but the standard
# library at import time (bench_blocking imports asynctasklib, so it is imported only in
# the children that need it).
import bench_async
import bench_map

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
MISSING_MODULE = 3  # a child's exit status when a third-party module is not installed

AsyncVariant = Callable[[Any, int, int], Awaitable[Any]]


# -- variants that exist only here -----------------------------------------------------------


async def pool_submit_closure(fn: Any, n: int, w: int) -> None:
    """A new Definition per item, its task function a closure that calls ``fn(item)``."""
    from asynctasklib import Definition, WorkerPool

    def task_for(item: int) -> Any:
        async def task(run: Any) -> Any:
            return await fn(item)

        return task

    pool = WorkerPool(w, retain_finished=False)
    submit = pool.submit
    for i in range(n):
        await submit(Definition(task_fn=task_for(i)))
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def item_ret(item: int, run: Any) -> int:
    return item


async def item_yield(item: int, run: Any) -> int:
    await asyncio.sleep(0)
    return item


async def pool_submit_partial(fn: Any, n: int, w: int) -> None:
    """A new Definition per item, its task function ``functools.partial(item_fn, item)``."""
    from asynctasklib import Definition, WorkerPool

    item_fn = item_yield if fn is bench_async.fn_yield else item_ret
    pool = WorkerPool(w, retain_finished=False)
    submit = pool.submit
    for i in range(n):
        await submit(Definition(task_fn=functools.partial(item_fn, i)))
    await pool.shutdown(cancel=False)
    assert pool.stats().done == n


async def pool_map(fn: Any, n: int, w: int) -> None:
    """bench_map's ``pool.map``, with bench_map's item functions (they return the item)."""
    item_fn = bench_map.fn_yield if fn is bench_async.fn_yield else bench_map.fn_ret
    assert await bench_map.pool_map(item_fn, n, w) == n


def blocking_submit_result(n: int, w: int) -> None:
    from bench_blocking import trivial

    from asynctasklib import Definition, blocking

    definition = Definition(task_fn=trivial)
    with blocking.WorkerPool(w, retain_finished=False) as pool:
        tasks = [pool.submit(definition) for _ in range(n)]
        for task in tasks:
            task.result()


def executor_submit_result(n: int, w: int) -> None:
    from bench_blocking import trivial

    with ThreadPoolExecutor(w) as executor:
        futures = [executor.submit(trivial, None) for _ in range(n)]
        for future in futures:
            future.result()


def blocking_map(n: int, w: int) -> None:
    import bench_blocking

    bench_blocking.threads_map_pool(n, w)


def executor_map(n: int, w: int) -> None:
    import bench_blocking

    bench_blocking.threads_map_direct(n, w)


ASYNC_BASELINE = "pool.submit (retain_finished=False)"
ASYNC_VARIANTS: dict[str, AsyncVariant] = {
    ASYNC_BASELINE: bench_async.pool_submit,
    "pool.submit (defaults, handles kept)": bench_async.pool_submit_kept,
    "pool.submit, Definition + closure per item": pool_submit_closure,
    "pool.submit, Definition + partial per item": pool_submit_partial,
    "pool.map (ordered)": pool_map,
    "queue workers": bench_async.queue_workers,
    "TaskGroup + Semaphore (bounded)": bench_async.taskgroup_semaphore,
}
BLOCKING_BASELINE = "blocking.WorkerPool submit + result()"
BLOCKING_VARIANTS: dict[str, Callable[[int, int], None]] = {
    BLOCKING_BASELINE: blocking_submit_result,
    "ThreadPoolExecutor submit + result()": executor_submit_result,
    "blocking.WorkerPool.map": blocking_map,
    "ThreadPoolExecutor.map": executor_map,
}
KINDS = {"ret": bench_async.fn_ret, "yield": bench_async.fn_yield}


# -- the child: one variant, N tasks, under valgrind -----------------------------------------


def child(spec: dict[str, Any]) -> None:
    try:
        import asynctasklib

        if spec["face"] == "blocking":
            BLOCKING_VARIANTS[spec["variant"]](spec["n"], spec["w"])
        else:
            run_async(spec)
    except ModuleNotFoundError as exc:
        if exc.name == "asynctasklib" or exc.name in sys.stdlib_module_names:
            raise
        print(f"no module {exc.name}", file=sys.stderr)
        sys.exit(MISSING_MODULE)
    print(json.dumps({"file": asynctasklib.__file__, "python": sys.version.split()[0]}))


def run_async(spec: dict[str, Any]) -> None:
    loop_factory = None
    if spec["loop"] == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    if spec["eager"] and not hasattr(asyncio, "eager_task_factory"):
        sys.exit(f"--eager needs Python 3.12+ (this is {sys.version.split()[0]})")
    variant = ASYNC_VARIANTS[spec["variant"]]
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if spec["eager"]:
            runner.get_loop().set_task_factory(asyncio.eager_task_factory)
        runner.run(variant(KINDS[spec["kind"]], spec["n"], spec["w"]))


# -- the parent: run the children, difference the counts, print the tables -----------------


@dataclass
class Row:
    face: str  # "async" or "blocking"
    variant: str
    kind: str  # "ret", "yield", or "plain" (the blocking face's plain functions)
    w: int
    baseline: bool
    i1: int | None = None  # instructions of the whole process for N1 tasks
    i2: int | None = None
    per_task: float | None = None
    ratio: float | None = None  # per_task / the baseline's of the same face, kind and W
    skipped: str | None = None

    @property
    def group(self) -> tuple[str, str, int]:
        return (self.face, self.kind, self.w)


def callgrind(python: str, spec: dict[str, Any], env: dict[str, str]) -> tuple[int, str]:
    """Run one child under callgrind: (instructions, the child's JSON line)."""
    with tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                python,
                str(Path(__file__).resolve()),
                "--child",
                json.dumps(spec),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode == MISSING_MODULE:
            raise Skipped(_last_line(proc.stderr))
        if proc.returncode != 0:
            raise RuntimeError(f"{spec['variant']} N={spec['n']}: {_last_line(proc.stderr)}")
        totals = re.search(r"^(?:totals|summary):\s*(\d+)", out.read_text(), re.MULTILINE)
        if totals is None:
            raise RuntimeError(f"no totals line in callgrind's output for {spec}")
        return int(totals.group(1)), proc.stdout.strip().splitlines()[-1]


class Skipped(Exception):
    pass


def _last_line(stderr: str) -> str:
    """The child's last line of error, without valgrind's own (``==pid==``) lines."""
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("==")]
    return lines[-1] if lines else "?"


def warm_up(rows: list[Row], args: argparse.Namespace, env: dict[str, str]) -> None:
    """Run every row once without valgrind, for 10 tasks: it fills the bytecode cache, fails
    fast on an error, and marks the rows whose third-party modules are missing."""
    for row in rows:
        spec = {"face": row.face, "variant": row.variant, "kind": row.kind, "n": 10, "w": row.w}
        spec.update(loop=args.loop, eager=args.eager)
        command = [args.python, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if proc.returncode == MISSING_MODULE:
            row.skipped = _last_line(proc.stderr)
        elif proc.returncode != 0:
            sys.exit(f"{row.variant} [{row.kind}, W={row.w}] failed:\n{proc.stderr}")


def measure(rows: list[Row], args: argparse.Namespace, env: dict[str, str]) -> str | None:
    """Fill in each row's counts, running up to ``--jobs`` valgrinds at once; return the
    asynctasklib file the children imported."""
    jobs = [(row, n) for row in rows if not row.skipped for n in (args.n1, args.n2)]
    imported: set[str] = set()

    def one(row: Row, n: int) -> None:
        spec = {"face": row.face, "variant": row.variant, "kind": row.kind, "n": n, "w": row.w}
        spec.update(loop=args.loop, eager=args.eager)
        try:
            count, line = callgrind(args.python, spec, env)
        except Skipped as exc:
            row.skipped = str(exc)
            return
        imported.add(json.loads(line)["file"])
        if n == args.n1:
            row.i1 = count
        else:
            row.i2 = count
        print(f"  {row.variant} [{row.kind}, W={row.w}] N={n:,}: {count:,}", file=sys.stderr)

    with ThreadPoolExecutor(args.jobs) as executor:
        for future in [executor.submit(one, row, n) for row, n in jobs]:
            future.result()
    if len(imported) > 1:
        raise RuntimeError(f"the children imported different copies: {sorted(imported)}")
    for row in rows:
        if row.i1 is not None and row.i2 is not None:
            row.per_task = (row.i2 - row.i1) / (args.n2 - args.n1)
    for row in rows:
        base = next((b for b in rows if b.baseline and b.group == row.group), None)
        if row.per_task is not None and base is not None and base.per_task:
            row.ratio = row.per_task / base.per_task
    return imported.pop() if imported else None


def select(args: argparse.Namespace) -> list[Row]:
    async_ws = args.workers or [100]
    blocking_ws = args.workers or [8, 100]
    kinds = ["ret", "yield"] if args.kind == "both" else [args.kind]
    rows = [
        Row("async", name, kind, w, name == ASYNC_BASELINE)
        for kind in kinds
        for w in async_ws
        for name in ASYNC_VARIANTS
    ]
    if args.eager or args.loop != "asyncio":
        print("(--eager and --loop do not concern the blocking face: left out)", file=sys.stderr)
    else:
        rows += [
            Row("blocking", name, "plain", w, name == BLOCKING_BASELINE)
            for w in blocking_ws
            for name in BLOCKING_VARIANTS
        ]
    # --only keeps the matching variants and, for their ratios, their tables' baselines.
    kept = [row for row in rows if any(s in row.variant for s in args.only)]
    groups = {row.group for row in kept}
    return [row for row in rows if row in kept or (row.baseline and row.group in groups)]


def print_tables(rows: list[Row]) -> None:
    titles = {
        "ret": "task function returns at once",
        "yield": "task function awaits asyncio.sleep(0) once",
        "plain": "blocking face, trivial plain functions",
    }
    groups = list(dict.fromkeys(row.group for row in rows))
    for group in groups:
        _, kind, w = group
        print(f"\n[{titles[kind]}, W={w}]")
        print(f"  {'variant':44} {'instr/task':>11} {'vs pool':>8} {'I(N1)':>14} {'I(N2)':>14}")
        for row in rows:
            if row.group != group:
                continue
            if row.skipped or row.per_task is None:
                print(f"  {row.variant:44} skipped ({row.skipped})")
                continue
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
            print(
                f"  {row.variant:44} {row.per_task:>11,.0f} {ratio:>8} {row.i1:>14,} {row.i2:>14,}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter of the children")
    parser.add_argument("--installed", action="store_true", help="use the installed library")
    parser.add_argument("--eager", action="store_true", help="asyncio.eager_task_factory")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--kind", choices=["ret", "yield", "both"], default="both")
    parser.add_argument("--only", nargs="+", default=[""], help="variants whose name contains one")
    parser.add_argument("--n1", type=int, default=10_000)
    parser.add_argument("--n2", type=int, default=30_000)
    parser.add_argument("--workers", type=int, nargs="+", help="W (default 100; 8 100 blocking)")
    parser.add_argument("--jobs", type=int, default=1, help="valgrinds run at once")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if not 0 < args.n1 < args.n2:
        parser.error("need 0 < --n1 < --n2")
    if args.jobs < 1 or any(w < 1 for w in args.workers or []):
        parser.error("--jobs and --workers must be >= 1")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    args.python = os.path.expanduser(args.python)
    version = probe(args)

    env = dict(os.environ, PYTHONHASHSEED="0")  # the same hashes, so the same work, each run
    if not args.installed:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    # Bytecode cached outside the repository, so that no child (under valgrind, 50 times
    # slower) compiles a module: the compilation would cancel out, but costs minutes.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "asynctasklib-bench-pyc")
    rows = select(args)
    warm_up(rows, args, env)
    print(
        f"python {version} ({args.python}), loop {args.loop}"
        f"{', eager tasks' if args.eager else ''}, N1={args.n1:,}, N2={args.n2:,}",
        file=sys.stderr,
    )
    imported = measure(rows, args, env)
    if args.json:
        header = {"python": version, "interpreter": args.python, "loop": args.loop}
        header.update(eager=args.eager, n1=args.n1, n2=args.n2, asynctasklib=imported)
        print(json.dumps({**header, "rows": [asdict(row) for row in rows]}, indent=1))
        return
    print(f"python {version}, loop {args.loop}{', eager tasks' if args.eager else ''}")
    print(f"instructions per task = (I(N2) - I(N1)) / (N2 - N1), N1={args.n1:,}, N2={args.n2:,}")
    print(f"asynctasklib imported from {imported}")
    print_tables(rows)


def probe(args: argparse.Namespace) -> str:
    """The children's Python version; fail early if ``--eager`` cannot work with it."""
    code = "import asyncio, sys; "
    code += "print(sys.version.split()[0], hasattr(asyncio, 'eager_task_factory'))"
    try:
        out = subprocess.run([args.python, "-c", code], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"cannot run --python {args.python}: {exc}")
    version, has_eager = out.stdout.split()
    if args.eager and has_eager != "True":
        sys.exit(f"--eager needs Python 3.12+; {args.python} is {version}")
    return version


if __name__ == "__main__":
    main()
