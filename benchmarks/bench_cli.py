"""``asynctasklib run`` against ``xargs -P`` and GNU parallel, on the same inputs, in one run.

Workloads, all at 8 jobs at once: 2,000 jobs of ``true`` and 200 jobs of ``sleep 0.05``
(the floor for those is 200 * 0.05 / 8 = 1.25 s, 160 jobs/s). Each tool reads its inputs
from the same file on standard input and appends each line to the command. The time is
the whole command's wall time, start-up included; the best of ``--repeat`` runs counts.

    python benchmarks/bench_cli.py [--repeat 3] [--jobs 8] [--true-jobs 2000] [--sleep-jobs 200]

GNU parallel is skipped, with a message, if it is not installed (Debian: ``parallel``).
Goal for ``true``: faster than GNU parallel and within 2x of xargs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tools(jobs: int, command: list[str]) -> dict[str, list[str] | None]:
    parallel = shutil.which("parallel")
    return {
        "asynctasklib run": [sys.executable, "-m", "asynctasklib", "run", "-j", str(jobs), "--",
                             *command],
        "xargs -P": ["xargs", "-P", str(jobs), "-n", "1", *command],
        "GNU parallel": None if parallel is None else [parallel, "--will-cite", "-j", str(jobs),
                                                       *command],
    }  # fmt: skip


def timed(argv: list[str], inputs: Path) -> float:
    with inputs.open("rb") as stdin:
        started = time.perf_counter()
        proc = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--true-jobs", type=int, default=2000)
    parser.add_argument("--sleep-jobs", type=int, default=200)
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, -j {args.jobs}, "
          f"best of {args.repeat}")  # fmt: skip
    if shutil.which("parallel") is None:
        print("GNU parallel is not installed (apt-get install -y parallel): skipped")
    workloads = [
        (f"{args.true_jobs} x true", ["true"], [str(i) for i in range(args.true_jobs)]),
        (f"{args.sleep_jobs} x sleep 0.05", ["sleep"], ["0.05"] * args.sleep_jobs),
    ]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, command, lines in workloads:
            inputs = Path(tmp) / "inputs"
            inputs.write_text("".join(f"{line}\n" for line in lines))
            runners = tools(args.jobs, command)
            best: dict[str, float] = {}
            for _ in range(args.repeat):  # interleaved, so that drifting load hits all alike
                for tool, argv in runners.items():
                    if argv is not None:
                        elapsed = timed(argv, inputs)
                        best[tool] = min(best.get(tool, elapsed), elapsed)
            results[name] = {tool: len(lines) / t for tool, t in best.items()}
            print(f"\n{name}")
            ours = results[name]["asynctasklib run"]
            for tool, rate in results[name].items():
                print(f"  {tool:<18} {len(lines) / rate:7.3f} s  {rate:8.1f} jobs/s"
                      f"  asynctasklib/this = {ours / rate:5.2f}x")  # fmt: skip

    rates = results[workloads[0][0]]
    ours = rates["asynctasklib run"]
    print("\ngoals for true:")
    print(f"  within 2x of xargs: {ours / rates['xargs -P']:.2f}x of its rate "
          f"({'met' if ours * 2 >= rates['xargs -P'] else 'NOT met'})")  # fmt: skip
    if "GNU parallel" in rates:
        print(f"  faster than GNU parallel: {ours / rates['GNU parallel']:.2f}x "
              f"({'met' if ours > rates['GNU parallel'] else 'NOT met'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
