"""The jobs' output (``_cli/_output.py``): each job's whole, in input order with ``-k``,
kept in memory then in one file, and a closed standard output.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from asynctasklib._cli import _feeder, _output, main
from cli_helpers import TIMEOUT, cli, run, summary, wait_for

if TYPE_CHECKING:
    import pytest

    from asynctasklib._cli._job import Job
    from asynctasklib.task import Task

CHUNKY = 'for i in 1 2 3 4; do echo "$0 out $i"; echo "$0 err $i" >&2; sleep 0.02; done'


def test_output_of_each_job_is_whole(capfd: pytest.CaptureFixture[str]) -> None:
    """Jobs that write in chunks, all at once: each job's lines stay together."""
    names = [f"job{i}" for i in range(8)]
    rc, out, err = run(capfd, "-j", "8", "--", "sh", "-c", CHUNKY, ":::", *names)
    assert rc == 0
    for stream, kind in ((out, "out"), (err, "err")):
        lines = [line for line in stream.splitlines() if line.startswith("job")]
        assert len(lines) == 32
        for start in range(0, 32, 4):
            block = lines[start : start + 4]
            name = block[0].split()[0]
            assert block == [f"{name} {kind} {i}" for i in range(1, 5)], stream


def _finish_in_reverse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> threading.Thread:
    """Release jobs n, n-1, ..., 1, each once the run has seen the previous one end."""
    ended: list[int] = []
    job_ended = _feeder.Feeder._ended

    def spy(feeder: _feeder.Feeder, job: Job, task: Task[None]) -> None:
        job_ended(feeder, job, task)  # (its output is written, or waits for its turn)
        ended.append(job.seq)

    monkeypatch.setattr(_feeder.Feeder, "_ended", spy)

    def release() -> None:
        for k in range(n, 0, -1):
            (tmp_path / f"release.{k}").touch()
            wait_for(lambda k=k: k in ended, f"job {k} to end")  # type: ignore[misc]

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_keep_order_against_finish_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Jobs finish in reverse order: output in input order only with -k."""
    n = 5
    script = f'while [ ! -e "{tmp_path}/release.$0" ]; do sleep 0.005; done; echo "$0"'
    inputs = [str(i) for i in range(1, n + 1)]
    for keep_order in (False, True):
        for f in tmp_path.glob("release.*"):
            f.unlink()
        releaser = _finish_in_reverse(tmp_path, monkeypatch, n)
        flags = ["-k"] if keep_order else []
        rc, out, _ = run(capfd, "-j", str(n), *flags, "--", "sh", "-c", script, ":::", *inputs)
        releaser.join()
        monkeypatch.undo()
        assert rc == 0
        assert out.splitlines() == (inputs if keep_order else inputs[::-1])


def test_stdout_has_only_job_output(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capfd, "--", "sh", "-c", "echo o$0; echo e$0 >&2", ":::", "1")
    assert (rc, out) == (0, "o1\n")
    assert err.splitlines()[0] == "e1"
    assert "1 jobs: 1 done" in summary(err)
    assert "jobs/s" in summary(err)


def test_closed_stdout_stops_the_run() -> None:
    """Like ``| head -1``: the reader goes away; the run stops quietly with 141."""
    with subprocess.Popen(
        cli("-j", "2", "--", "echo"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdin.write("first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "first\n"
        proc.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write("".join(f"{i}\n" for i in range(1000)))
            proc.stdin.flush()
        err = proc.stderr.read()
        assert proc.wait(timeout=TIMEOUT) == 141, err
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    assert "Traceback" not in err
    assert "Exception ignored" not in err


class _ClosedStdout(io.StringIO):
    """A stdout whose reader went away."""

    def write(self, s: str) -> int:
        raise BrokenPipeError

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


def test_closed_stdout_in_process(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedStdout())
    rc, _, err = run(capfd, "-j", "1", "--", "echo", ":::", *map(str, range(20)))
    assert rc == 141
    assert "Traceback" not in err
    assert "20 jobs" not in summary(err)  # the rest was canceled
    rc = main(["--dry-run", "--", "echo", ":::", "a"])
    assert rc == 141


def test_output_to_a_stream_without_a_buffer(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    fake = io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake)
    rc, _, _ = run(capfd, "--", "echo", ":::", "plain")
    assert (rc, fake.getvalue()) == (0, "plain\n")


def test_ordered_output_flushes_what_never_got_its_turn(
    capfd: pytest.CaptureFixture[str],
) -> None:
    ordered = _output.Ordered(_output.Sink())
    ordered.put(3, b"three\n", b"")
    ordered.put(1, b"one\n", b"err one\n")
    ordered.flush()  # job 2 never ran
    out, err = capfd.readouterr()
    assert (out, err) == ("one\nthree\n", "err one\n")


def test_output_beyond_the_memory_budget_waits_in_one_file() -> None:
    size = 2 * _output._BLOCK  # chunks this big are kept as they come, not gathered
    a, b, c = (bytes([n]) * size for n in b"abc")
    store = _output.Store(budget=2 * _output._cost(a) + 100)
    small, big = _output.Spool(store, a), _output.Spool(store)
    assert store.in_memory == _output._cost(a)
    big.append(b)
    big.append(c)  # over the budget: big's parts go to the file, small stays
    assert store.in_memory == _output._cost(a)
    assert (small.getvalue(), big.getvalue()) == (a, b + c)
    assert big._parts == [(0, 2 * size)]  # (written one after the other: one extent)
    small.append(b"678")
    assert store.in_memory == _output._cost(a) + _output._cost(bytearray(b"678"))
    assert list(small.chunks()) == [a, b"678"]
    assert store.in_file == 2 * size
    big.release()
    small.release()
    assert store.in_memory == 0
    assert store.in_file == 0
    assert not big
    assert not small
    # nothing waits in the file any more: it is emptied, not left to grow with the run
    assert store._file is not None
    assert os.fstat(store._file.fileno()).st_size == 0
    again = _output.Spool(store, b"x" * store.budget)
    assert again.getvalue() == b"x" * store.budget
    assert os.fstat(store._file.fileno()).st_size == store.budget
    store.close()


def test_keep_order_output_spilled_to_a_file_comes_out_whole_and_in_order(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """With --keep-order, the outputs of jobs that finished early wait for their turn;
    beyond the run's memory budget they wait in a file, and come out the same."""
    monkeypatch.setattr(_output.Store, "BUDGET", 3000)
    spilled: list[int] = []
    spill = _output.Store.spill

    def counting_spill(store: _output.Store, data: bytes) -> tuple[int, int]:
        spilled.append(len(data))
        return spill(store, data)

    monkeypatch.setattr(_output.Store, "spill", counting_spill)
    files = {"a": 500, "b": 4000, "c": 2500, "d": 1200}  # more than the budget in all
    script = (
        "import sys; n, c = sys.argv[1].split(); "
        "sys.stdout.write(c * int(n) + '\\n'); sys.stderr.write('err ' + c + '\\n')"
    )
    argv = [f"{n} {name}" for name, n in files.items()]
    rc, out, err = run(
        capfd, "-j", "4", "--keep-order", "--", sys.executable, "-c", script, ":::", *argv
    )
    assert rc == 0
    assert sum(spilled) >= 4001  # at least b's output went through the file
    assert out == "".join(name * n + "\n" for name, n in files.items())
    assert [line for line in err.splitlines() if line.startswith("err")] == [
        f"err {name}" for name in files
    ]
