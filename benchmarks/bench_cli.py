"""``asynctasklib run`` against ``xargs -P`` and GNU parallel, on the same inputs, in one run.

Workloads, all at 8 jobs at once: 2,000 jobs of ``true`` and 200 jobs of ``sleep 0.05``
(the floor for those is 200 * 0.05 / 8 = 1.25 s, 160 jobs/s); and the start-up,
``asynctasklib run --help`` with ``PYTHONDONTWRITEBYTECODE=1`` (no byte-code cache of ours
read or written, as a fresh checkout starts), beside ``parallel --will-cite --help`` and
``python -c pass`` (the interpreter alone: the floor). Each tool reads its inputs from the
same file on standard input and appends each line to the command. The time is the whole
command's wall time, start-up included.

The tools run interleaved, round by round (the order rotating), so that the load of a
shared machine hits all alike; each round gives each tool's time and the ratios of the
round (xargs's time / ours: above 1 means faster than xargs). The medians over the rounds
are what counts.

    python benchmarks/bench_cli.py [--rounds 5] [--jobs 8] [--true-jobs 2000] [--sleep-jobs 200]
                                   [--baseline SRC] [--startup-rounds 21] [--startup-only]

``--baseline SRC`` adds another ``asynctasklib run``, with ``PYTHONPATH=SRC`` (a checkout's
``src``), to compare two versions in the same run. GNU parallel is skipped, with a message,
if it is not installed (Debian: ``parallel``). ``--startup-only`` measures the start-up
alone, in ``--startup-rounds`` interleaved rounds.
Goals: ``true`` at least as fast as ``xargs -P``; ``sleep 0.05`` within 5% of its floor;
start-up under 150 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OURS = "asynctasklib run"
BASE = "asynctasklib (baseline)"
XARGS = "xargs -P"
PARALLEL = "GNU parallel"


def tools(jobs: int, command: list[str], baseline: str | None) -> dict[str, list[str]]:
    ours = [sys.executable, "-m", "asynctasklib", "run", "-j", str(jobs), "--", *command]
    found = {OURS: ours, XARGS: ["xargs", "-P", str(jobs), "-n", "1", *command]}
    parallel = shutil.which("parallel")
    if parallel is not None:
        found[PARALLEL] = [parallel, "--will-cite", "-j", str(jobs), *command]
    if baseline is not None:
        found[BASE] = ["env", f"PYTHONPATH={baseline}", *ours]
    return found


def timed(argv: list[str], inputs: Path | None) -> float:
    with (inputs or Path(os.devnull)).open("rb") as stdin:
        started = time.perf_counter()
        proc = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed


def rounds(runners: dict[str, list[str]], inputs: Path | None, n: int) -> dict[str, list[float]]:
    """Each tool's time in each of ``n`` rounds, interleaved, the order rotating."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(timed(runners[name], inputs))
    return times


def report(title: str, times: dict[str, list[float]], jobs: int) -> dict[str, float]:
    """Print each tool's median time and rate, and the median over the rounds of each
    round's ratio of its time to ours; return those median ratios."""
    print(f"\n{title}")
    ours = times[OURS]
    ratios = {}
    for name, tool_times in times.items():
        median = statistics.median(tool_times)
        ratio = statistics.median(t / o for t, o in zip(tool_times, ours, strict=True))
        ratios[name] = ratio
        rate = f"{jobs / median:8.1f} jobs/s" if jobs else ""
        print(f"  {name:<24} median {median:7.3f} s {rate}  this/ours = {ratio:5.2f}x"
              f"   rounds: {' '.join(f'{t:.3f}' for t in tool_times)}")  # fmt: skip
    return ratios


def startup(rounds_: int, baseline: str | None) -> float:
    """``run --help`` with no byte-code cache, beside GNU parallel's ``--help`` and the
    bare interpreter, interleaved: print them, return our median (seconds)."""
    start = {OURS: [sys.executable, "-m", "asynctasklib", "run", "--help"],
             "python -c pass (floor)": [sys.executable, "-c", "pass"]}  # fmt: skip
    parallel = shutil.which("parallel")
    if parallel is not None:
        start[PARALLEL] = [parallel, "--will-cite", "--help"]
    if baseline is not None:
        start[BASE] = ["env", f"PYTHONPATH={baseline}", *start[OURS]]
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # (and none is written for ours)
    start_times = rounds(start, None, rounds_)
    title = f"start-up, {rounds_} rounds: run --help, PYTHONDONTWRITEBYTECODE=1 (no cache)"
    report(title, start_times, 0)
    return statistics.median(start_times[OURS])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--true-jobs", type=int, default=2000)
    parser.add_argument("--sleep-jobs", type=int, default=200)
    parser.add_argument("--baseline", metavar="SRC", help="another version's src, to compare")
    parser.add_argument("--startup-rounds", type=int, default=21)
    parser.add_argument("--startup-only", action="store_true", help="only the start-up")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, -j {args.jobs}, "
          f"medians of {args.rounds} interleaved rounds")  # fmt: skip
    if shutil.which("parallel") is None:
        print("GNU parallel is not installed (apt-get install -y parallel): skipped")
    if args.startup_only:
        started = startup(args.startup_rounds, args.baseline)
        print(f"\ngoal: start-up under 150 ms: {started * 1000:.0f} ms "
              f"({'met' if started < 0.150 else 'NOT met'})")  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.write_text("".join(f"{i}\n" for i in range(args.true_jobs)))
        runners = tools(args.jobs, ["true"], args.baseline)
        true = report(f"{args.true_jobs} x true", rounds(runners, inputs, args.rounds),
                      args.true_jobs)  # fmt: skip
        inputs.write_text("0.05\n" * args.sleep_jobs)
        runners = tools(args.jobs, ["sleep"], args.baseline)
        times = rounds(runners, inputs, args.rounds)
        report(f"{args.sleep_jobs} x sleep 0.05", times, args.sleep_jobs)
    floor = args.sleep_jobs * 0.05 / args.jobs
    sleep = statistics.median(times[OURS])
    started = startup(args.startup_rounds, args.baseline)

    print("\ngoals:")
    print(f"  true, at least xargs's speed: {true[XARGS]:.2f}x "
          f"({'met' if true[XARGS] >= 1 else 'NOT met'})")  # fmt: skip
    if PARALLEL in true:
        print(f"  true, against GNU parallel: {true[PARALLEL]:.2f}x")
    print(
        f"  sleep, within 5% of the floor ({floor:.3f} s): {sleep:.3f} s, "
        f"{sleep / floor - 1:+.1%} ({'met' if sleep <= floor * 1.05 else 'NOT met'})"
    )
    print(f"  start-up under 150 ms: {started * 1000:.0f} ms "
          f"({'met' if started < 0.150 else 'NOT met'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
