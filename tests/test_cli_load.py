"""``--load`` and ``--memfree`` (``_cli/_load.py``): their values, the readers of
``/proc``, the gate on the virtual clock with fake readers, and whole runs whose readers
are fakes that follow the jobs (files they create), never the machine's real load."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _helpers import GUARD, now, wait_all_tasks_blocked
from asynctasklib._cli import _feeder, _jobslots, _load, _options, main
from asynctasklib._cli._errors import JobFailedError, UsageError
from asynctasklib._cli._job import Job
from asynctasklib._cli._report import Reporter
from cli_helpers import Interrupter, joblog_rows, run, summary

POLL = 0.25  # the gate's poll in the virtual-clock tests


def readings(*values: float) -> Callable[[], float]:
    """A reader that gives ``values`` in turn, then the last one forever."""
    it: Iterator[float] = iter(values)
    last = values[-1]

    def read() -> float:
        nonlocal last
        last = next(it, last)
        return last

    return read


# -- the values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus_times", "plus"),
    [("100%", 1.0, 0), ("50%", 0.5, 0), ("250%", 2.5, 0), ("+2", 1.0, 2), ("-1", 1.0, -1)],
)
def test_load_relative_to_the_cpus(text: str, cpus_times: float, plus: int) -> None:
    cpus = _jobslots.cpu_count()
    expected = max(cpus * cpus_times + plus, 0.01)
    assert _options.parse(["--load", text, "true"]).max_load == pytest.approx(expected)


@pytest.mark.parametrize(("text", "expected"), [("3", 3.0), ("1.5", 1.5), ("0", 0.01)])
def test_load_as_a_number(text: str, expected: float) -> None:
    """GNU parallel's "only difference is 0 which is interpreted as 0.01"."""
    assert _options.parse(["--load", text, "true"]).max_load == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1G", 1 << 30), ("1g", 10**9), ("512M", 512 << 20), ("2K", 2048), ("1.5k", 1500),
        ("3t", 3 * 10**12), ("1T", 1 << 40), ("1P", 1 << 50), ("1p", 10**15), ("4096", 4096),
    ],
)  # fmt: skip
def test_memfree_sizes_with_gnu_parallels_prefixes(text: str, expected: int) -> None:
    assert _options.parse(["--memfree", text, "true"]).memfree == expected


def test_no_limits_by_default_and_memfree_0_is_none() -> None:
    opts = _options.parse(["true"])
    assert (opts.max_load, opts.memfree) == (None, None)
    assert _options.parse(["--memfree", "0", "true"]).memfree is None  # (GNU parallel: off)


@pytest.mark.parametrize(
    ("flag", "bad"),
    [
        ("--load", "abc"), ("--load", "1.5.1"), ("--load", "+1.5"), ("--load", "%"),
        ("--load", "-"), ("--load", ""), ("--memfree", "1Q"), ("--memfree", "-1"),
        ("--memfree", "1M-12"), ("--memfree", "G"), ("--memfree", ""), ("--memfree", "1Gi"),
    ],
)  # fmt: skip
def test_bad_values_name_the_flag(
    flag: str, bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capfd, flag, bad, "touch", "ran", ":::", "a")
    assert (rc, out) == (2, "")
    assert f"error: argument {flag}: expected" in err
    assert not (tmp_path / "ran").exists()


def test_load_file_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "maxload"
    spec.write_text("2\n")
    rc, _, err = run(capfd, "--load", str(spec), "true", ":::", "a")
    assert rc == 2
    assert "GNU parallel's --load FILE is not supported" in err


def test_not_with_a_dask_scheduler() -> None:
    with pytest.raises(UsageError, match="--load and --memfree measure this machine"):
        _options.parse(["--load", "2", "--memfree", "1G", "--scheduler", "tcp://h:1", "true"])


def test_a_machine_without_the_counts_is_told_at_once(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def no_proc(path: str = "") -> int:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(_load, "running_processes", no_proc)
    monkeypatch.setattr(_load, "available_memory", no_proc)
    rc, _, err = run(capfd, "--load", "2", "true", ":::", "a")
    assert rc == 2
    assert "error: --load: cannot read /proc/stat: [Errno 2] No such file or directory" in err
    rc, _, err = run(capfd, "--memfree", "1G", "true", ":::", "a")
    assert rc == 2
    assert "error: --memfree: cannot read /proc/meminfo" in err


# -- the readers ----------------------------------------------------------------------------


def test_running_processes_is_running_plus_blocked_less_the_reader(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  1 2 3 4\nintr 5 6\nctxt 7\nbtime 8\nprocesses 9\n"
        "procs_running 5\nprocs_blocked 2\nsoftirq 1 2\n"
    )
    assert _load.running_processes(str(stat)) == 6
    stat.write_text("procs_running 1\nprocs_blocked 0\n")
    assert _load.running_processes(str(stat)) == 0  # only the reader itself
    stat.write_text("cpu 1 2\n")
    with pytest.raises(ValueError, match="no procs_running"):
        _load.running_processes(str(stat))
    assert _load.running_processes() >= 0  # this machine's


def test_available_memory_is_memavailable_else_gnu_parallels_sum(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:  1000 kB\nMemFree:  100 kB\nMemAvailable:  700 kB\nBuffers:  10 kB\n"
        "Cached:  200 kB\nSwapCached:  5 kB\n"
    )
    assert _load.available_memory(str(meminfo)) == 700 * 1024
    meminfo.write_text("MemFree:  100 kB\nBuffers:  10 kB\nCached:  200 kB\nSwapCached:  5 kB\n")
    assert _load.available_memory(str(meminfo)) == 315 * 1024
    meminfo.write_text("MemTotal:  1000 kB\n")
    with pytest.raises(ValueError, match="no MemAvailable nor MemFree"):
        _load.available_memory(str(meminfo))
    assert _load.available_memory() > 0  # this machine's


def test_show_size() -> None:
    assert [_load.show_size(n) for n in (512, 2048, 3 << 29, 1 << 40)] == [
        "512", "2K", "1.5G", "1T",
    ]  # fmt: skip


# -- the gate, on the virtual clock ---------------------------------------------------------


def _gate(
    max_load: float | None = None,
    memfree: int | None = None,
    load: Callable[[], float] | None = None,
    memory: Callable[[], int] | None = None,
    notices: list[str] | None = None,
) -> _load.StartGate:
    return _load.StartGate(
        max_load, memfree, (notices if notices is not None else []).append,
        read_load=load, read_memory=memory, poll=POLL,
    )  # fmt: skip


async def test_a_job_waits_while_the_load_is_at_or_over_max() -> None:
    calls: list[float] = []
    values = readings(5, 2, 1)

    def load() -> float:
        calls.append(now())
        return values()

    gate = _gate(max_load=2, load=load)
    await asyncio.wait_for(gate.wait(), GUARD)
    # 5 and 2 (at max: held too) each cost a poll; 1 lets it start
    assert calls == [0, POLL, 2 * POLL]
    assert now() == 2 * POLL


async def test_nothing_running_still_waits_for_the_load() -> None:
    """As GNU parallel: no job runs at all, and still none starts while the load is high."""
    gate = _gate(max_load=1, load=readings(3))
    waiter = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(100 * POLL)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_job_that_ends_wakes_the_waiters_at_once() -> None:
    gate = _gate(max_load=2, load=readings(4, 0))
    waiters = [asyncio.ensure_future(gate.wait()) for _ in range(2)]
    await wait_all_tasks_blocked()
    assert not any(w.done() for w in waiters)
    gate.job_ended()  # (the reading is stale: both read again now, not after the poll)
    await asyncio.wait(waiters, timeout=POLL / 10)
    assert all(w.done() for w in waiters)
    assert now() == 0


async def test_jobs_started_since_the_reading_count_as_load() -> None:
    """A job just started may not run yet: it counts until the next reading."""
    calls: list[float] = []

    def load() -> float:
        calls.append(now())
        return 0

    gate = _gate(max_load=2, load=load)
    await gate.wait()
    await gate.wait()  # load 0 + 1 started
    assert (calls, now()) == ([0], 0)
    await asyncio.wait_for(gate.wait(), GUARD)  # 0 + 2: held until the next reading
    assert (calls, now()) == ([0, POLL], POLL)


async def test_the_gate_waits_for_a_free_worker_first() -> None:
    calls: list[float] = []

    def load() -> float:
        calls.append(now())
        return 0

    free = False
    gate = _gate(max_load=5, load=load)
    waiter = asyncio.ensure_future(gate.wait(lambda: free))
    await asyncio.sleep(3 * POLL)
    assert calls == []  # no reading while no worker is free
    free = True
    gate.job_ended()
    await asyncio.wait_for(waiter, GUARD)
    assert calls == [3 * POLL]


async def test_a_job_waits_while_memory_is_under_memfree() -> None:
    calls: list[float] = []
    values = readings(500, 999, 1000)

    def memory() -> int:
        calls.append(now())
        return int(values())

    gate = _gate(memfree=1000, memory=memory)
    await asyncio.wait_for(gate.wait(), GUARD)
    assert calls == [0, POLL, 2 * POLL]  # 1000 available: enough


async def test_a_reading_that_fails_holds_the_job() -> None:
    results: list[float | Exception] = [OSError("gone"), ValueError("garbled"), 0]

    def load() -> float:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    await asyncio.wait_for(_gate(max_load=1, load=load).wait(), GUARD)
    assert now() == 2 * POLL


async def test_load_and_memfree_both_hold() -> None:
    memory_calls: list[float] = []

    def memory() -> int:
        memory_calls.append(now())
        return 100

    gate = _gate(max_load=2, memfree=100, load=readings(5, 0), memory=memory)
    await asyncio.wait_for(gate.wait(), GUARD)
    assert now() == POLL
    assert memory_calls == [POLL]  # (read only once the load lets the job start)
    memory_values = readings(50, 50, 100)
    gate = _gate(max_load=2, memfree=100, load=readings(0), memory=lambda: int(memory_values()))
    start = now()
    await asyncio.wait_for(gate.wait(), GUARD)
    assert now() - start == 2 * POLL


class _Attempt:
    """A fake attempt that runs until canceled, then takes ``dying`` seconds to end."""

    def __init__(self, dying: float = 0.0) -> None:
        self.dying = dying
        self.killed_at: float | None = None

    async def __call__(self) -> None:
        try:
            await asyncio.sleep(GUARD)
        except asyncio.CancelledError:
            self.killed_at = now()
            await asyncio.sleep(self.dying)
            raise


async def _until(t: float) -> None:
    await asyncio.sleep(t - now())


async def test_memfree_kills_the_youngest_one_at_a_time() -> None:
    """Checks every POLL; each attempt takes 2.5 POLL to die once killed."""
    free = 2000
    notices: list[str] = []
    gate = _gate(memfree=1000, memory=lambda: free, notices=notices)
    jobs = [Job(seq, (str(seq),), []) for seq in (1, 3, 2)]
    attempts = {job.seq: _Attempt(dying=2.5 * POLL) for job in jobs}
    runs = {job.seq: asyncio.ensure_future(gate.run(job, attempts[job.seq]())) for job in jobs}
    await _until(2.5 * POLL)
    assert all(a.killed_at is None for a in attempts.values())  # 2000 available
    free = 400  # under half of 1000
    await _until(3.5 * POLL)
    assert attempts[3].killed_at == 3 * POLL  # the youngest: the highest number
    assert notices == ["--memfree: 400 available, under half of 1000: killing job 3, the youngest"]
    await _until(5.4 * POLL)  # (checks at 4 and 5 POLL: one is being killed, no other)
    assert attempts[2].killed_at is None
    with pytest.raises(_load.KilledForMemory) as caught:
        await runs[3]  # (gone at 5.5 POLL)
    assert isinstance(caught.value, JobFailedError)  # (retried as a failed attempt is)
    assert str(caught.value) == "killed: less than half of --memfree 1000 available"
    assert jobs[1].killed == "killed: less than half of --memfree 1000 available"
    await _until(6.5 * POLL)  # the next check: memory still short, 2 is the youngest now
    assert attempts[2].killed_at == 6 * POLL
    assert attempts[1].killed_at is None
    free = 800  # under 1000, but not under half of it: nobody else is killed
    await _until(20 * POLL)
    assert attempts[1].killed_at is None
    assert len(notices) == 2
    with pytest.raises(_load.KilledForMemory):
        await runs[2]
    runs[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await runs[1]  # (a cancel of the attempt's own stays a cancel)
    assert jobs[0].killed is None
    gate.close()


async def test_an_attempt_that_ends_leaves_the_watch() -> None:
    gate = _gate(memfree=1000, memory=lambda: 10)
    job = Job(1, ("1",), [])

    async def quick() -> None:
        await asyncio.sleep(POLL / 2)

    await gate.run(job, quick())  # ends before the first check: not killed
    assert job.killed is None
    await asyncio.sleep(2 * POLL)  # (the check finds nothing running and stops)
    assert gate._timer is None


# -- whole runs, with fake readers ----------------------------------------------------------


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_load, "POLL", 0.01)


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The steps of the run, in order: each job's start is "start N"."""
    steps: list[str] = []
    started = Reporter.started

    def spy(self: Reporter, job: Job, when: object) -> None:
        steps.append(f"start {job.seq}")
        started(self, job, when)  # type: ignore[arg-type]

    monkeypatch.setattr(Reporter, "started", spy)
    return steps


@pytest.mark.usefixtures("fast_poll")
def test_run_holds_a_job_until_the_load_drops(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], starts: list[str]
) -> None:
    """The first reading is the check at start-up; then two high ones hold job 1; with
    -j 1, job 2 is read for once job 1 ended (not while no worker is free)."""
    values = readings(9, 9, 9, 0)

    def load(path: str = "") -> float:
        value = values()
        starts.append(f"load {value:g}")
        return value

    monkeypatch.setattr(_load, "running_processes", load)
    rc, out, err = run(capfd, "-j", "1", "-k", "--load", "2", "echo", ":::", "a", "b")
    assert rc == 0
    assert out.splitlines() == ["a", "b"]
    assert starts == ["load 9", "load 9", "load 9", "load 0", "start 1", "load 0", "start 2"]
    assert "2 jobs: 2 done, 0 failed" in summary(err)


@pytest.mark.usefixtures("fast_poll")
def test_running_jobs_go_on_when_the_load_rises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
    starts: list[str],
) -> None:  # fmt: skip
    """Job 1 starts; the load then reads high until job 1 has ended: job 1 is not touched,
    and job 2 (a worker free, -j 2) waits. Job 1 itself waits for 3 high readings."""
    high = 0

    def load(path: str = "") -> float:
        nonlocal high
        if "start 1" not in starts or (tmp_path / "done.1").exists():
            return 0
        high += 1
        if high == 3:
            (tmp_path / "read3").touch()
        return 9

    monkeypatch.setattr(_load, "running_processes", load)
    script = (
        f'd="{tmp_path}"; [ -e "$d/done.1" ] && touch "$d/after.$0"; '
        f'if [ "$0" = 1 ]; then while [ ! -e "$d/read3" ]; do sleep 0.01; done; fi; '
        'touch "$d/done.$0"'
    )
    # --load 1: job 2 is held at once by job 1, counted as started until the next reading
    rc, _, _ = run(capfd, "-j", "2", "--load", "1", "sh", "-c", script, ":::", "1", "2")
    assert rc == 0
    assert starts == ["start 1", "start 2"]
    assert high >= 3
    assert (tmp_path / "done.2").exists()
    assert (tmp_path / "after.2").exists()  # job 2 started once job 1 was done


@pytest.mark.usefixtures("fast_poll")
def test_run_holds_a_job_until_memory_is_available(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], starts: list[str]
) -> None:
    values = readings(1 << 30, 100, 100 << 20, 2 << 30)  # (the first: the start-up check)

    def memory(path: str = "") -> int:
        value = int(values())
        starts.append(f"free {value}")
        return value

    monkeypatch.setattr(_load, "available_memory", memory)
    rc, out, _ = run(capfd, "--memfree", "1G", "echo", ":::", "a")
    assert (rc, out) == (0, "a\n")
    assert starts[:4] == [f"free {1 << 30}", "free 100", f"free {100 << 20}", f"free {2 << 30}"]
    assert starts[4] == "start 1"


HANGS_FIRST = (
    'echo x >> "{d}/started.$0"; '
    'if [ "$0" = {young} ] && [ "$(wc -l < "{d}/started.$0")" -eq 1 ]; then exec sleep 60; fi; '
    'while [ "$0" != {young} ] && [ ! -e "{d}/started.{young}" ]; do sleep 0.01; done; '
    'while [ "$0" != {young} ] && [ "$(wc -l < "{d}/started.{young}")" -lt 2 ]; do '
    "sleep 0.01; done; echo done $0"
)


def _short_once_started(tmp_path: Path, seq: int) -> Callable[..., int]:
    """A memory reader: 4G, but 100M at the first reading once job ``seq`` has started."""
    short = [True]

    def memory(path: str = "") -> int:
        if short[0] and (tmp_path / f"started.{seq}").exists():
            short[0] = False
            return 100 << 20
        return 4 << 30

    return memory


@pytest.mark.usefixtures("fast_poll")
def test_memfree_kills_the_youngest_and_retries_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Jobs 1 and 2 run; memory falls under half of --memfree: 2, the youngest, is killed,
    and retried once memory is back (--retries); 1 runs on, and waits for 2's retry."""
    monkeypatch.setattr(_load, "available_memory", _short_once_started(tmp_path, 2))
    log = tmp_path / "log"
    script = HANGS_FIRST.format(d=tmp_path, young=2)
    rc, out, err = run(
        capfd, "-j", "2", "--memfree", "1G", "--retries", "2", "--json", "--joblog", str(log),
        "sh", "-c", script, ":::", "1", "2",
    )  # fmt: skip
    assert rc == 0, err
    assert "--memfree: 100M available, under half of 1G: killing job 2, the youngest" in err
    assert (tmp_path / "started.1").read_text() == "x\n"
    assert (tmp_path / "started.2").read_text() == "x\nx\n"
    events = [json.loads(line) for line in out.splitlines()]
    retry = [e for e in events if e["event"] == "pending" and e["attempt"] == 1]
    assert [(e["seq"], e["error"]) for e in retry] == [
        (2, "killed: less than half of --memfree 1G available")
    ]
    assert sorted((row[0], row[6], row[7]) for row in joblog_rows(log)) == [
        ("1", "0", "0"), ("2", "0", "0"),
    ]  # fmt: skip
    assert "2 jobs: 2 done, 0 failed, 0 canceled, 1 retried" in summary(err)


@pytest.mark.usefixtures("fast_poll")
def test_memfree_kill_without_retries_is_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """As GNU parallel: without --retries the killed job is not run again; its joblog row
    has Exitval -1 and Signal 15 (SIGTERM, the first of --term-seq)."""
    monkeypatch.setattr(_load, "available_memory", _short_once_started(tmp_path, 1))
    log = tmp_path / "log"
    script = HANGS_FIRST.format(d=tmp_path, young=1)
    rc, _, err = run(capfd, "--memfree", "1G", "--joblog", str(log), "sh", "-c", script, ":::", "1")
    assert rc == 1
    assert "job 1 failed: killed: less than half of --memfree 1G available (input 1)" in err
    assert [(row[0], row[6], row[7]) for row in joblog_rows(log)] == [("1", "-1", "15")]
    assert (tmp_path / "started.1").read_text() == "x\n"


@pytest.mark.usefixtures("fast_poll")
def test_a_retry_waits_at_the_gate_and_ctrl_c_cancels_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Job 1 fails; its retry waits for the load, which reads high from then on; Ctrl-C
    then starts no more: the retry is canceled unstarted, job 2 (running) finishes. (The
    backoff outlasts the poll: within it, the last reading would still be used.)"""
    high = 0

    def load(path: str = "") -> float:
        nonlocal high
        if not (tmp_path / "failed.1").exists():
            return 0
        high += 1
        if high == 2:
            (tmp_path / "held").touch()
        return 9

    monkeypatch.setattr(_load, "running_processes", load)
    interrupter = Interrupter(monkeypatch)
    interrupter.when([tmp_path / "held"], 1, (tmp_path / "release").touch)
    script = (
        f'd="{tmp_path}"; echo x >> "$d/attempts.$0"; '
        'if [ "$0" = 1 ]; then touch "$d/failed.1"; exit 3; fi; '
        'while [ ! -e "$d/release" ]; do sleep 0.01; done; echo fin $0'
    )
    rc, out, err = run(
        capfd, "-j", "2", "--load", "5", "--retries", "3", "--backoff", "const:0.05",
        "sh", "-c", script, ":::", "1", "2",
    )  # fmt: skip
    interrupter.thread.join()
    assert rc == 130
    assert out == "fin 2\n"
    assert (tmp_path / "attempts.1").read_text() == "x\n"  # the retry never started
    assert "1 done, 0 failed, 1 canceled" in summary(err)


def test_without_the_options_the_plain_feeder_runs(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """No --load nor --memfree: nothing of theirs on the jobs' way (not even a check)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a gated feeder without --load or --memfree")

    monkeypatch.setattr(_feeder.GatedFeeder, "__init__", refuse)
    monkeypatch.setattr(_load.StartGate, "__init__", refuse)
    assert main(["echo", ":::", "a"]) == 0
    assert capfd.readouterr().out == "a\n"
