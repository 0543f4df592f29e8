"""The jobs' output (``_cli/_output.py``, ``_cli/_results.py``): each job's whole, in
input order with ``-k``, kept in memory then in one file, and a closed standard output;
--tag, --line-buffer, -u, --results and --files (see test_cli_oracle_output.py for the
same against GNU parallel).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asynctasklib._cli import _feeder, _options, _output, _output_options, _results, main
from cli_helpers import TIMEOUT, cli, joblog_rows, run, summary, wait_for

if TYPE_CHECKING:
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


# -- --tag, --line-buffer, -u --------------------------------------------------------------


def test_tag_starts_each_line_whatever_the_chunks() -> None:
    """After each \\n or \\r that more output follows, and at the start; the tag taken
    literally (re.sub would read a backslash in it)."""
    tag = b"t\\1\t"

    def tagged(*chunks: bytes) -> bytes:
        return b"".join(_output.tagged(chunks, tag))

    assert tagged(b"a\n", b"b", b"\rc\n", b"", b"d") == b"t\\1\ta\nt\\1\tb\rt\\1\tc\nt\\1\td"
    assert tagged(b"a\nb\n") == tagged(b"a", b"\n", b"b\n") == b"t\\1\ta\nt\\1\tb\n"
    assert tagged(b"\n\n") == b"t\\1\t\nt\\1\t\n"
    assert tagged() == tagged(b"") == b""
    assert b"".join(_output.tagged([b"a\nb"], b"")) == b"a\nb"


def test_line_stream_waits_for_its_turn_then_writes_whole_lines(
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    store = _output.Store()
    stream = _output.LineStream(_output.Sink(), store, err=False, tag=b"T\t")
    stream.append(b"a\nb")
    stream.append(b"c")
    assert capfdbinary.readouterr().out == b""  # not its turn yet
    stream.go_live()
    assert capfdbinary.readouterr().out == b"T\ta\n"  # the lines; "bc" waits for its end
    stream.append(b"d\re")  # a \r ends a line where no \n does
    assert capfdbinary.readouterr().out == b"T\tbcd\r"
    # Up to the last \n, tagged; as GNU parallel, then on to a \r after it, untagged.
    stream.append(b"f\ng\ri\rh")
    assert capfdbinary.readouterr().out == b"T\tef\ng\ri\r"
    stream.append(b"\rj")  # (the half line kept goes after the tag as it is)
    assert capfdbinary.readouterr().out == b"T\th\r"
    assert stream.done().getvalue() == b""
    assert capfdbinary.readouterr().out == b"T\tj"  # the last half line, at the end
    assert (store.in_memory, store.in_file) == (0, 0)


def test_ordered_turn_goes_to_the_first_job_in_order(
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    ordered = _output.Ordered(_output.Sink())
    calls: list[int] = []
    ordered.turn(2, lambda: calls.append(2))
    ordered.turn(1, lambda: calls.append(1))  # the first in order: at once
    assert calls == [1]
    ordered.put(1, b"one\n", b"", b"T\t")
    assert calls == [1, 2]  # job 1 ended: job 2's turn
    ordered.turn(3, lambda: calls.append(3))
    ordered.turn(3, None)  # its attempt ended before its turn
    ordered.put(2, b"", b"")
    assert calls == [1, 2]
    assert not ordered._turns
    assert capfdbinary.readouterr().out == b"T\tone\n"


def test_line_buffer_keep_order_with_a_job_that_cannot_start(
    capfd: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = run(capfd, "--lb", "-k", "-j", "2", "--", "{}", ":::", "/nonexistent", "echo")
    assert (rc, out) == (1, "\n")
    assert "/nonexistent: No such file or directory" in err


def test_line_stream_half_line_beyond_the_budget_waits_in_the_file(
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    """A long line with no end yet takes the run's file, not memory, past the budget; and
    it is written from there a block at a time, never read whole into memory."""
    store = _output.Store(budget=16 * 1024)
    stream = _output.LineStream(_output.Sink(), store, err=False, tag=b"T\t")
    stream.go_live()
    size = 8 << 20
    for _ in range(size // 1024):
        stream.append(b"x" * 1024)
    assert store.in_file >= size - 16 * 1024
    assert store.in_memory <= store.budget
    tracemalloc.start()
    try:
        stream.append(b"y\nz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 3, peak  # (a block or two of 1 MiB)
    assert capfdbinary.readouterr().out == b"T\t" + b"x" * size + b"y\n"
    assert (store.in_file, stream.rest.getvalue()) == (0, b"z")
    stream.done()
    assert capfdbinary.readouterr().out == b"T\tz"
    assert store.in_memory == 0
    store.close()


def _released_when(proc: subprocess.Popen[bytes], release: Path, wanted: bytes) -> bytes:
    """Read ``proc``'s stdout until ``wanted`` came, then create ``release``; the rest
    of its output. (If ``wanted`` never comes before the jobs end, a timer releases them
    after TIMEOUT, and the test fails on what it read.)"""
    assert proc.stdout is not None
    timer = threading.Timer(TIMEOUT, release.touch)
    timer.start()
    try:
        read = b""
        while wanted not in read:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            read += chunk
        early = read
        release.touch()
        read += proc.stdout.read()
    finally:
        timer.cancel()
    assert proc.wait(timeout=TIMEOUT) == 0
    assert early.startswith(wanted), (early, read)
    return read


def _wait(path: Path) -> str:
    return f'while [ ! -e "{path}" ]; do sleep 0.005; done'


def test_line_buffer_writes_each_line_as_it_comes(tmp_path: Path) -> None:
    """Job 1's first line is out while it runs (it waits until then); its half line
    only with the rest of the line."""
    release = tmp_path / "release"
    script = f'printf "$0 first\\n$0 half"; {_wait(release)}; echo " line"'
    with subprocess.Popen(
        cli("--lb", "--", "sh", "-c", script, ":::", "1"), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        out = _released_when(proc, release, b"1 first\n")
    assert out == b"1 first\n1 half line\n"


def test_line_buffer_with_keep_order_holds_each_job_until_its_turn(tmp_path: Path) -> None:
    """Job 2 ends first, job 1 then writes a line and waits: that line comes first (job
    1 is live), job 2's output only after job 1's end."""
    release, two_done = tmp_path / "release", tmp_path / "two-done"
    script = (
        f'if [ "$0" = 2 ]; then echo "2 all"; touch "{two_done}"; exit 0; fi; '
        f'{_wait(two_done)}; echo "1 first"; {_wait(release)}; echo "1 last"'
    )
    with subprocess.Popen(
        cli("--lb", "-k", "-j", "2", "--", "sh", "-c", script, ":::", "1", "2"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        out = _released_when(proc, release, b"1 first\n")
    assert out == b"1 first\n1 last\n2 all\n"


def test_ungroup_passes_output_straight_through(tmp_path: Path) -> None:
    """Even half a line is out while the job runs: the job writes to our stdout itself."""
    release = tmp_path / "release"
    script = f'printf "$0 half"; {_wait(release)}; echo " line"'
    with subprocess.Popen(
        cli("-u", "--", "sh", "-c", script, ":::", "1"), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        out = _released_when(proc, release, b"1 half")
    assert out == b"1 half line\n"


def test_a_failed_job_s_line_is_tagged_with_its_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capfd, "--tag", "--", "sh", "-c", "echo o; echo e >&2; exit 3", ":::", "a")
    assert (rc, out) == (1, "a\to\n")
    assert err.splitlines()[:2] == ["a\te", "a\tasynctasklib: job 1 failed: exit code 3 (input a)"]


def test_ungroup_failure_line_and_a_job_that_cannot_start(
    capfd: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = run(capfd, "-u", "--", "sh", "-c", "echo o$0; exit 3", ":::", "a")
    assert (rc, out) == (1, "oa\n")
    assert "asynctasklib: job 1 failed: exit code 3 (input a)" in err
    rc, out, err = run(capfd, "-u", "--", "{}", ":::", "/nonexistent/cmd")
    assert (rc, out) == (1, "")
    assert "/nonexistent/cmd: No such file or directory" in err


# -- --results, --files --------------------------------------------------------------------


def test_results_hold_the_last_attempt_and_the_failure_line_is_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    count = tmp_path / "count"
    script = f'echo x >> {count}; n=$(wc -l < {count}); echo "out $n"; echo "err $n" >&2; exit 4'
    rc, out, err = run(
        capfd, "--results", "res", "--retries", "2", "--backoff", "none", "--",
        "sh", "-c", script, ":::", "a",
    )  # fmt: skip
    assert (rc, out) == (1, "")
    job = tmp_path / "res" / "1" / "a"
    assert {p.name: p.read_text() for p in job.iterdir()} == {
        "seq": "1", "stdout": "out 2\n", "stderr": "err 2\n",
    }  # fmt: skip
    assert "asynctasklib: job 1 failed after 2 attempts: exit code 4 (input a)" in err


def test_results_files_that_cannot_be_made_fail_the_job_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The empty input writes res/1/seq, a file; the input "seq" needs a directory there:
    that job fails (not retried), the others run."""
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "log"
    rc, out, err = run(
        capfd, "-j1", "--results", "res", "--retries", "3", "--joblog", str(log), "--",
        "echo", ":::", "", "seq", "b",
    )  # fmt: skip
    assert (rc, out) == (1, "")
    assert "asynctasklib: --results: cannot write res/1/seq: File exists" in err
    assert [row[6] for row in joblog_rows(log)] == ["0", "126", "0"]  # Exitval
    assert "attempts" not in err  # (a retried job's failure says "after N attempts")
    assert (tmp_path / "res" / "1" / "b" / "stdout").read_text() == "b\n"


def test_results_file_that_cannot_be_opened_fails_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "res" / "1" / "a" / "stderr").mkdir(parents=True)
    rc, _, err = run(capfd, "--results", "res", "--", "echo", ":::", "a")
    assert rc == 1
    assert "asynctasklib: --results: cannot write res/1/a/stderr: Is a directory" in err
    assert (tmp_path / "res" / "1" / "a" / "seq").read_text() == "1"


def test_results_name_too_long_even_cut_fails_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "pathconf", lambda path, name: 10_000)  # (a wrong limit)
    rc, _, err = run(capfd, "--results", "res", "--", "echo", ":::", "L" * 300)
    assert rc == 1
    assert "asynctasklib: --results: cannot write res/1/LLL" in err


def test_files_hold_the_last_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    count = tmp_path / "count"
    script = f'echo x >> {count}; n=$(wc -l < {count}); echo "out $n"; [ $n = 2 ]'
    rc, out, err = run(
        capfd, "--files", "--retries", "2", "--backoff", "none", "--", "sh", "-c", script,
        ":::", "a",
    )  # fmt: skip
    assert rc == 0, err
    [name] = out.splitlines()
    assert os.listdir(tmp_path / "tmp") == [os.path.basename(name)]
    assert Path(name).read_text() == "out 2\n"
    assert os.path.basename(name).startswith("par")
    assert name.endswith(".par")


def test_files_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setenv("TMPDIR", str(where))
    real_mkstemp = tempfile.mkstemp

    def gone(*, prefix: str, suffix: str, dir: str) -> tuple[int, str]:
        where.rmdir()  # (gone since the run started)
        return real_mkstemp(prefix=prefix, suffix=suffix, dir=dir)

    monkeypatch.setattr(tempfile, "mkstemp", gone)
    rc, out, err = run(capfd, "--files", "--", "echo", ":::", "a")
    assert (rc, out) == (1, "")
    assert f"asynctasklib: --files: cannot write {where}: No such file or directory" in err


def test_output_directories_that_cannot_be_used_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").touch()
    rc, _, err = run(capfd, "--results", str(tmp_path / "file" / "d"), "--", "echo", ":::", "a")
    assert rc == 2
    assert f"error: --results: cannot create {tmp_path}/file/d: Not a directory" in err
    for tmpdir in (tmp_path / "missing", tmp_path / "file"):
        monkeypatch.setenv("TMPDIR", str(tmpdir))
        rc, _, err = run(capfd, "--files", "--", "echo", ":::", "a")
        assert rc == 2
        assert f"error: --files: the temporary directory '{tmpdir}' is not writable" in err
    monkeypatch.delenv("TMPDIR")
    assert _results.tmpdir() == "/tmp"  # as GNU parallel, whatever tempfile would pick
    assert os.listdir(tmp_path) == ["file"]


# -- the options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--json", "--tag"], "--json cannot be combined with --tag"),
        (["--json", "--tagstring", "x"], "--json cannot be combined with --tagstring"),
        (["--json", "--lb"], "--json cannot be combined with --line-buffer"),
        (["--json", "-u"], "--json cannot be combined with -u"),
        (["--json", "--results", "d"], "--json cannot be combined with --results"),
        (["--json", "--files"], "--json cannot be combined with --files"),
        (["--lb", "--results", "d"], "--results cannot be combined with --line-buffer"),
        (["-u", "--files"], "--files cannot be combined with -u"),
        (["--dry-run", "--files"], "--files cannot be combined with --dry-run"),
        (["-u", "--progress"], "--progress cannot be combined with -u"),
        (["--results", "out_{}"], "--results out_{}: a name with replacement strings is not"),
        (["--results", "o{#}/"], "--results o{#}/: a name with replacement strings"),
        (["--results", "o{.}"], "--results o{.}: a name with replacement strings"),
        (["--tagstring", "{=1=}"], "--tagstring: the replacement string {=1=} is not supported"),
        (["--group", "--lb"], "argument --line-buffer/--lb: not allowed with argument --group"),
        (["--lb", "-u"], "argument -u/--ungroup: not allowed with argument --line-buffer/--lb"),
        (["--results", ":::"], "--results/--res: expected a value, got ':::'"),
    ],
)
def test_output_options_refused(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capfd, *argv, "--", "echo", ":::", "a")
    assert (rc, out) == (2, "")
    assert message in err
    assert os.listdir(tmp_path) == []


def test_output_options_parsed() -> None:
    parse = _options.parse
    opts = parse(["echo"])
    assert (opts.output, opts.tag, opts.results, opts.files) == ("group", None, None, False)
    assert parse(["--line-buffer", "echo"]).output == parse(["--lb", "echo"]).output == "line"
    assert parse(["-u", "echo"]).output == parse(["--ungroup", "echo"]).output == "ungroup"
    assert parse(["-u", "echo"]).progress is False  # (the jobs write to the terminal)
    assert parse(["--tag", "echo"]).tag == "{}"
    assert parse(["--tag", "--tagstring", "<{}>", "echo"]).tag == "<{}>"  # (as parallel)
    assert parse(["--tag-string", "a\\tb", "echo"]).tag == "a\tb"
    assert parse(["--res", "d", "--output-as-files", "echo"]).results == "d"
    assert parse(["--results", "{a,b}", "echo"]).results == "{a,b}"  # (no replacement)


def test_tagstring_escapes_are_those_of_gnu_parallel() -> None:
    """One after the other, as parallel's unquote_printf: so \\\\n is a backslash and a
    newline; octal as in a Perl string."""
    unquote = _output_options.unquote_printf
    assert unquote("a\\tb\\\\n\\x41\\101%s%%") == "a\tb\\\n\\x41A%s%%"
    assert unquote("\\0\\8\\189\\777\\r") == "\0" + "8" + "\x01" + "89" + "\u01ff" + "\r"
    assert unquote("{} {#}") == "{} {#}"


def test_ungroup_job_killed_by_sigpipe_stops_the_run_if_stdout_is_gone(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    script = 'echo "$0"; kill -PIPE $$'
    rc, out, err = run(capfd, "-u", "-j1", "--", "sh", "-c", script, ":::", "a", "b")
    assert (rc, out) == (2, "a\nb\n")  # stdout is there: the two jobs just failed
    assert "job 2 failed: killed by SIGPIPE" in err
    monkeypatch.setattr(_results, "_stdout_gone", lambda: True)
    monkeypatch.setattr(sys, "stdout", _ClosedStdout())  # (no fd 1 to send to /dev/null)
    rc, out, _ = run(capfd, "-u", "-j1", "--", "sh", "-c", script, ":::", "a", "b")
    assert (rc, out) == (141, "a\n")


def test_stdout_gone_is_a_pipe_without_reader() -> None:
    read, write = os.pipe()
    try:
        assert not _results._stdout_gone(write)
        os.close(read)
        assert _results._stdout_gone(write)
    finally:
        os.close(write)


def test_ungroup_closed_stdout_stops_the_run() -> None:
    """With -u the jobs write to our stdout: the first one the closed pipe kills (SIGPIPE)
    stops the run, as a closed stdout does without -u."""
    with subprocess.Popen(
        cli("-u", "-j", "1", "--", "echo"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdin.write(b"first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"first\n"
        proc.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(b"".join(b"%d\n" % i for i in range(1000)))
            proc.stdin.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=TIMEOUT) == 141, err
    assert err.count(b"killed by SIGPIPE") <= 1
    ran = re.search(rb"(\d+) done, (\d+) failed", err)
    assert ran is not None, err
    assert int(ran[1]) + int(ran[2]) < 100  # (stopped, not run to the end)


def test_receive_of_a_results_file_the_job_removed_is_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Receive is the stdout file's size at the job's end; a file gone counts nothing."""
    monkeypatch.chdir(tmp_path)
    job = "echo some; rm res/1/$1/stdout"
    argv = ["--results", "res", "--joblog", "log", "--", "sh", "-c", job, "sh", ":::", "a"]
    rc, _, err = run(capfd, *argv)
    assert rc == 0, err
    assert [row[5] for row in joblog_rows(tmp_path / "log")] == ["0"]
