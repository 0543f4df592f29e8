"""``asynctasklib run``: the resources a run holds and leaves behind.

Memory that must stay bounded by bytes (the jobs' output, the input read-ahead, an overlong
input line), zombies of processes the jobs orphan, and signals that arrive before the run
is fully under way. Peak memory is measured on the CLI run as a subprocess (its own
``ru_maxrss`` from ``wait4``), against the same CLI's peak on a trivial run, so that the
bound does not depend on the interpreter's size.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asynctasklib._cli import _capture, _errors, _inputs, _orchestrator, _output, _records
from cli_helpers import PY, TIMEOUT, pid_gone, run, summary, wait_for
from conftest import UVLOOP

# -- signals before the feeder exists ----------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "handler", "code"),
    [(signal.SIGINT, "_on_sigint", 130), (signal.SIGTERM, "_on_sigterm", 143)],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_before_the_feeder_starts_stops_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    sig: signal.Signals,
    handler: str,
    code: int,
) -> None:
    """The signal arrives while the inputs are being opened, once the run's handlers are in
    place but before the feeder exists: no job may start."""
    handled: list[asyncio.Future[None]] = []
    original: Callable[..., None] = getattr(_orchestrator.Orchestrator, handler)

    def spy(runner: _orchestrator.Orchestrator, *args: Any) -> None:
        original(runner, *args)
        for future in handled:
            if not future.done():
                future.set_result(None)

    monkeypatch.setattr(_orchestrator.Orchestrator, handler, spy)
    open_inputs = _inputs.open_inputs  # (what _orchestrator imported by name, patched there)

    async def lines_after_a_signal(source: _inputs.OpenSources) -> Any:
        handled.append(asyncio.get_running_loop().create_future())
        os.kill(os.getpid(), sig)
        await handled[0]  # the run's own handler has run
        return await open_inputs(source)

    monkeypatch.setattr(_orchestrator, "open_inputs", lines_after_a_signal)
    marker = tmp_path / "ran"
    rc, _, err = run(capfd, "--", "sh", "-c", f'echo "$0" >> "{marker}"', ":::", "a", "b")
    assert rc == code
    assert not marker.exists()
    assert "0 jobs: 0 done, 0 failed, 0 canceled" in summary(err)


# -- peak memory of a run ----------------------------------------------------------------


# The CLI, reporting its peak RSS (VmHWM: that of its own memory since it started, which a
# fork's copy of this test process does not inflate as it would ``ru_maxrss``).
_PROBE = """
import sys
import threading
import tracemalloc
from asynctasklib._cli import main
try:
    rc = main(sys.argv[2:])
finally:
    with open("/proc/self/status") as status, open(sys.argv[1], "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
sys.exit(rc)
"""


# (run in another directory: the asynctasklib under test, wherever it is imported from)
_SRC = str(Path(_errors.__file__).resolve().parents[2])
_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([_SRC, os.environ.get("PYTHONPATH", "")])}


def measured(cwd: Path, *argv: str, stdin: Any = subprocess.DEVNULL) -> tuple[int, str, str, int]:
    """Run the CLI as a subprocess: its exit status, stdout, stderr and peak RSS in KiB."""
    peak = cwd / "cli.peak"
    proc = subprocess.run(
        [PY, "-c", _PROBE, str(peak), *argv],
        stdin=stdin, capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT, env=_ENV,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr, int(peak.read_text())


@pytest.fixture(scope="module")
def baseline_kib(tmp_path_factory: pytest.TempPathFactory) -> int:
    """The CLI's peak RSS on a trivial run: what the interpreter and the library take."""
    rc, _, err, peak = measured(tmp_path_factory.mktemp("baseline"), "--", "true", ":::", "a")
    assert rc == 0, err
    return peak


MIB = 1024  # in KiB, as ru_maxrss counts


# -- input read-ahead ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["arg-file", "pipe"])
def test_a_line_too_long_for_an_argument_is_refused_before_it_is_read_whole(
    tmp_path: Path, baseline_kib: int, how: str
) -> None:
    """24 MB without a newline: refused once it is longer than an argument can be, with
    the source and line number; the rest is never read (it used to be read whole, and
    then run as one argument, taking several times its size in memory)."""
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.write(b"ok\n")
        for _ in range(24):
            f.write(b"x" * (1 << 20))
    if how == "arg-file":
        rc, out, err, peak = measured(tmp_path, "-a", str(big), "--", "echo")
        name = str(big)
    else:
        with subprocess.Popen(["cat", str(big)], stdout=subprocess.PIPE) as cat:
            rc, out, err, peak = measured(tmp_path, "--", "echo", stdin=cat.stdout)
            assert cat.stdout is not None
            cat.stdout.close()
            cat.kill()
        name = "standard input"
    assert rc == 255, err  # (GNU parallel's status for it: test_cli_oracle_everyday.py)
    assert out == "ok\n"  # the line before it ran
    assert f"error: {name}: line 2 is longer than {_records.MAX_LINE} bytes" in err
    assert "1 jobs: 1 done" in summary(err)
    assert peak < baseline_kib + 4 * MIB, (peak, baseline_kib)


def test_pipe_read_ahead_is_bounded_in_bytes(tmp_path: Path, baseline_kib: int) -> None:
    """Long lines from a pipe: the read-ahead stops at about a megabyte, not at thousands
    of lines (160 lines of 120 KB were all read at once, 19 MB)."""
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"".join(b"%d" % i + b"y" * 120_000 + b"\n" for i in range(160)))
    with subprocess.Popen(["cat", str(lines)], stdout=subprocess.PIPE) as cat:
        rc, _, err, peak = measured(tmp_path, "-j", "1", "--", "true", stdin=cat.stdout)
    assert rc == 0, err
    assert "160 jobs: 160 done" in summary(err)
    assert peak < baseline_kib + 4 * MIB, (peak, baseline_kib)


class _Transport(asyncio.ReadTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = self.closed = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True


def test_pipe_lines_pause_on_bytes_and_refuse_an_overlong_line() -> None:
    loop = asyncio.new_event_loop()
    try:
        lines = _records.PipeLines(loop, "the pipe")
        transport = _Transport()
        lines.connection_made(transport)
        line = b"z" * 60_000 + b"\n"
        sent = 0
        while not transport.paused:
            lines.data_received(line * 4)
            sent += 4
        assert sent * len(line) <= lines._HIGH_BYTES + 4 * len(line)  # not 4096 lines
        while transport.paused:
            assert lines.get_nowait() == "z" * 60_000
            sent -= 1
        assert sent * len(line) <= lines._HIGH_BYTES // 2  # resumed at half
        for _ in range(sent):
            lines.get_nowait()
        # an overlong line in one piece, after a good one: that one is given, then the error
        lines.data_received(b"good\n" + b"w" * (_records.MAX_LINE + 1) + b"\nnever\n")
        assert transport.closed
        assert lines.get_nowait() == "good"
        assert lines.get_nowait() is _records.NOT_YET  # (ready raises: a batch so far still runs)
        with pytest.raises(_errors.InputError, match=r"the pipe: line \d+ is longer"):
            loop.run_until_complete(lines.ready())
        lines.data_received(b"late\n")  # (what was in flight) is dropped
        lines.connection_lost(None)
        with pytest.raises(_errors.InputError):
            loop.run_until_complete(lines.ready())
        # a line just at the limit is taken; one byte more, split over reads, is not
        lines = _records.PipeLines(loop)
        lines.connection_made(_Transport())
        lines.data_received(b"v" * _records.MAX_LINE + b"\nu")
        assert lines.get_nowait() == "v" * _records.MAX_LINE
        lines.data_received(b"u" * (_records.MAX_LINE - 1))
        assert lines.get_nowait() is _records.NOT_YET
        lines.data_received(b"uu\n")  # the line ends one byte too long
        with pytest.raises(_errors.InputError, match="standard input: line 2 "):
            loop.run_until_complete(lines.ready())
        lines = _records.PipeLines(loop)
        lines.data_received(b"t" * (_records.MAX_LINE + 1))  # no newline at all
        with pytest.raises(_errors.InputError, match="line 1 "):
            loop.run_until_complete(lines.ready())
        lines = _records.PipeLines(loop)
        lines.data_received(b"a\n" + b"s" * (_records.MAX_LINE + 1))  # the tail of a read
        assert lines.get_nowait() == "a"
        with pytest.raises(_errors.InputError, match="line 2 "):
            loop.run_until_complete(lines.ready())
    finally:
        loop.close()


def test_overlong_lines_from_files_and_text_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    limit = _records.MAX_LINE
    args = tmp_path / "args"
    args.write_bytes(b"a\n" + b"q" * limit + b"\n" + b"q" * (limit + 1) + b"\nb\n")
    rc, out, err = run(capfd, "--dry-run", "-a", str(args), "--", "echo")
    assert rc == 255
    assert out.splitlines()[0] == "echo a"
    assert f"error: {args}: line 3 is longer than {limit} bytes" in err
    rc, out, err = run(capfd, "-k", "-a", str(args), "--", "sh", "-c", 'echo "${#0}"')
    assert (rc, out) == (255, f"1\n{limit}\n")
    assert "line 3 is longer" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("c\n" + "r" * (limit + 1)))
    rc, out, err = run(capfd, "--", "echo")
    assert (rc, out) == (255, "c\n")
    assert "error: standard input: line 2 is longer" in err
    # with --halt-on-error too, the inputs before the bad line run
    args.write_bytes(b"a\nb\n" + b"q" * (limit + 1) + b"\nc\n")
    rc, out, err = run(capfd, "-k", "-j", "4", "--halt-on-error", "-a", str(args), "--", "echo")
    assert (rc, out) == (255, "a\nb\n")
    assert "line 3 is longer" in err
    args.write_bytes(b"p" * limit)  # the last line, without a newline, at the limit
    rc, out, _ = run(capfd, "--dry-run", "-a", str(args), "--", "echo")
    assert (rc, len(out)) == (0, len("echo ") + limit + 1)


# -- output held in memory -----------------------------------------------------------------


def test_memory_grows_with_the_bytes_of_output_not_the_number_of_writes() -> None:
    """40,000 writes of 2 bytes (80 KB) used to be 40,000 parts: 2.3 MB. Now they are
    gathered in blocks, and the store counts what they really take."""
    loop = asyncio.new_event_loop()
    store = _output.Store()
    readers = _capture.Readers(loop)
    tracemalloc.start()
    try:
        capture = _capture.Capture(readers, store)
        for i in range(40_000):
            capture.pipe_data_received(1, b"%d\n" % (i % 10))  # (a new object each, as read)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        readers.close()
        loop.close()
    assert isinstance(capture.out, _output.Spool)  # (grouped output: the default)
    assert capture.out.getvalue() == b"".join(b"%d\n" % (i % 10) for i in range(40_000))
    assert peak < 400_000, peak
    # the count is honest: what is held, its overhead included (and a little more)
    assert held - 2_000 <= store.in_memory <= held + 20_000, (held, store.in_memory)
    capture.out.release()
    assert store.in_memory == 0


def test_over_the_budget_small_writes_go_to_the_file_in_blocks() -> None:
    """Two jobs writing tiny chunks, in turns, once the memory budget is used up: each
    write used to become a part of its own (a tuple per write) and a write to the file."""
    store = _output.Store(budget=64 * 1024)
    waiting = _output.Spool(store, b"w" * 60_000)  # (an earlier job's, waiting its turn)
    spools = [_output.Spool(store), _output.Spool(store)]
    writes: list[int] = []
    spill = store.spill

    def counting_spill(data: bytes | bytearray) -> tuple[int, int]:
        writes.append(len(data))
        return spill(data)

    store.spill = counting_spill  # type: ignore[method-assign]
    tracemalloc.start()
    try:
        for i in range(20_000):
            spools[i % 2].append(b"%d" % (i % 2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000, peak
    assert len(writes) < 30, len(writes)
    assert all(len(s._parts) < 15 for s in spools)
    assert store.in_memory <= store.budget + 2 * (_output._SPILL_BLOCK + 1024)
    for spool in spools:
        spool.seal()  # the output is complete: what it kept goes to the file if need be
    assert store.in_memory <= store.budget
    assert [s.getvalue() for s in spools] == [b"0" * 10_000, b"1" * 10_000]
    for spool in (*spools, waiting):
        spool.release()
    assert (store.in_memory, store.in_file) == (0, 0)
    store.close()


# -- processes orphaned by the jobs ----------------------------------------------------------

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("setsid") is None,
    reason="a child subreaper (Linux), and setsid(1)",
)


def proc_stat(pid: int) -> tuple[bytes, int] | None:
    """A process's state and parent pid, from /proc (None: gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def zombie_children(pid: int) -> list[int]:
    """The zombies whose parent is ``pid``, from /proc."""
    found = []
    for name in os.listdir("/proc"):
        stat = proc_stat(int(name)) if name.isdigit() else None
        if stat is not None and stat[1] == pid and stat[0] == b"Z":
            found.append(int(name))
    return found


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.skipif(UVLOOP, reason="asyncio's loop is the one patched")
def test_the_run_takes_no_sigchld_handler(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orphans are reaped by a timer, not on SIGCHLD: asyncio's removal of a SIGCHLD
    handler at the end of a run races with a child's end (CPython then reports "Signal 17
    ignored due to race condition"), and uvloop keeps SIGCHLD to itself."""
    loop_class: Any = asyncio.SelectorEventLoop
    add = loop_class.add_signal_handler
    taken: list[int] = []

    def add_signal_handler(self: Any, sig: int, *args: Any) -> None:
        taken.append(sig)
        add(self, sig, *args)

    monkeypatch.setattr(loop_class, "add_signal_handler", add_signal_handler)
    rc, _, err = run(capfd, "true", ":::", "1", "2")
    assert rc == 0, err
    assert signal.SIGINT in taken
    assert signal.SIGCHLD not in taken
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL


@linux_only
def test_processes_a_job_orphans_in_a_session_of_their_own_are_reaped_during_the_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Each of 6 jobs leaves a process that calls setsid (so no group kill reaches it) and
    exits later, while a last job still runs: they were zombies for the rest of the run
    (they are reaped every so often)."""
    orphan = (
        "setsid sh -c 'echo $$ > gc.$0.tmp && mv gc.$0.tmp gc.$0; "
        'while [ ! -e go ]; do sleep 0.01; done\' "$0" > /dev/null 2>&1 & '
        # (the job ends once its orphan is out of its group, not to have it killed first)
        "while [ ! -e gc.$0 ]; do sleep 0.01; done;"
    )
    script = f'cd "{tmp_path}"; if [ "$0" = last ]; then touch started.last; '
    script += "while [ ! -e release ]; do sleep 0.01; done; else " + orphan + " fi"
    names = [str(n) for n in range(1, 7)]
    me = os.getpid()
    seen: dict[str, Any] = {}

    def control() -> None:
        try:
            pids = [tmp_path / f"gc.{n}" for n in names]
            wait_for(lambda: all(read_pid(p) for p in pids), "the orphans to start")
            orphans = [read_pid(p) or 0 for p in pids]

            def adopted() -> bool:  # their jobs have ended: they are ours now
                return all((proc_stat(pid) or (b"", 0))[1] == me for pid in orphans)

            wait_for(adopted, "the orphans to be adopted")
            wait_for((tmp_path / "started.last").exists, "the last job to start")
            (tmp_path / "go").touch()  # the orphans exit now, while the last job runs

            def exited() -> bool:
                return all((proc_stat(pid) or (b"Z",))[0] == b"Z" for pid in orphans)

            wait_for(exited, "the orphans to exit")
            # (only they: this process may have zombies of its own, not the run's to reap)
            wait_for(lambda: not set(zombie_children(me)) & set(orphans), "the orphans' reaping")
            seen["reaped"] = True
        finally:
            (tmp_path / "go").touch()  # (the orphans end even when a wait above failed)
            (tmp_path / "release").touch()

    thread = threading.Thread(target=control)
    thread.start()
    rc, _, err = run(capfd, "-j", "3", "--", "sh", "-c", script, ":::", *names, "last")
    thread.join()
    assert rc == 0, err
    assert seen.get("reaped"), "zombies were left while the run went on"


@linux_only
def test_a_process_that_leaves_the_job_group_but_not_its_session_is_killed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """setpgid takes a process out of its job's group (which the runner kills), not out of
    its session: once the job's leader exits, it is killed like the rest of the job."""
    job = (
        "import os, sys, time\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.setpgid(0, 0)\n"
        f"    open({str(tmp_path / 'stray')!r}, 'w').write(str(os.getpid()))\n"
        "    os.write(w, b'x')\n"
        "    os.closerange(0, 3)\n"
        "    time.sleep(60)\n"
        "os.read(r, 1)\n"
    )
    rc, _, err = run(capfd, "--grace", "5", "--", PY, "-c", job, ":::", "a")
    assert rc == 0, err
    stray = read_pid(tmp_path / "stray")
    assert stray is not None
    assert pid_gone(stray)
