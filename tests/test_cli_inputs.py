"""The inputs of ``asynctasklib run`` (``_cli/_inputs.py``, ``_cli/_combine.py``): ``:::``,
``--arg-file``, and standard input as a file, a pipe or nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from asynctasklib._cli import _input_options, _inputs, _options, _records, _sources, _start
from cli_helpers import TIMEOUT, cli, joblog_rows, run, summary, wait_for


def test_inputs_after_triple_colon(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capfd, "-j", "2", "--", "echo", "x", ":::", "a", "b", "c")
    assert rc == 0
    assert sorted(out.splitlines()) == ["x a", "x b", "x c"]
    assert "3 jobs: 3 done, 0 failed, 0 canceled, 0 retried" in summary(err)


def test_inputs_from_arg_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    args = tmp_path / "args.txt"
    args.write_text("one\ntwo words\n\nlast-without-newline")
    rc, out, _ = run(capfd, "-k", "--arg-file", str(args), "--", "echo", "[{}]")
    assert rc == 0
    assert out.splitlines() == ["[one]", "[two words]", "[]", "[last-without-newline]"]


def test_inputs_from_stdin_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "stdin.txt"
    data.write_text("".join(f"{i}\n" for i in range(1, 51)))
    with data.open() as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        rc, out, _ = run(capfd, "-k", "-j", "4", "--", "echo")
    assert rc == 0
    assert out.splitlines() == [str(i) for i in range(1, 51)]
    with data.open() as stdin:  # --arg-file - is standard input too
        monkeypatch.setattr(sys, "stdin", stdin)
        rc, out, _ = run(capfd, "-k", "--arg-file", "-", "--", "echo")
    assert (rc, out.splitlines()[-1]) == (0, "50")


def test_stdin_pipe_is_read_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A job starts before standard input ends: inputs are not all read first."""
    read_fd, write_fd = os.pipe()
    first_ran = tmp_path / "ran.first"

    def producer() -> None:
        with os.fdopen(write_fd, "w") as w:
            w.write("first\n")
            w.flush()
            wait_for(first_ran.exists, "the first job to run while stdin is still open")
            w.write("second\nthird\n")

    thread = threading.Thread(target=producer)
    thread.start()
    with os.fdopen(read_fd) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        rc, out, _ = run(capfd, "-k", "--", "sh", "-c", f"touch {tmp_path}/ran.$0; echo $0")
        was_blocking = os.get_blocking(read_fd)
    thread.join()
    assert rc == 0
    assert out.splitlines() == ["first", "second", "third"]
    assert was_blocking, "the pipe was left in non-blocking mode"


def test_stdin_dev_null_runs_nothing() -> None:
    """/dev/null is a character device that cannot be polled: read it plainly."""
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.run(
            cli("--", "echo"), stdin=devnull, capture_output=True, text=True, timeout=TIMEOUT
        )
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    assert "0 jobs" in summary(proc.stderr)


def test_empty_input_runs_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    rc, out, err = run(capfd, "-a", str(empty), "--", "echo")
    assert (rc, out) == (0, "")
    assert "0 jobs" in summary(err)


def test_pipe_input_pauses_and_resumes_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """More lines than the read-ahead limit; the last one has no newline."""
    monkeypatch.setattr(_records.PipeLines, "_HIGH", 4)
    read_fd, write_fd = os.pipe()

    def producer() -> None:
        with os.fdopen(write_fd, "w") as w:
            w.write("".join(f"{i}\n" for i in range(1, 40)) + "40")

    thread = threading.Thread(target=producer)
    thread.start()
    with os.fdopen(read_fd) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        rc, out, _ = run(capfd, "-k", "-j", "3", "--", "echo")
    thread.join()
    assert rc == 0
    assert out.splitlines() == [str(i) for i in range(1, 41)]


def test_input_that_fails_to_read(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """An I/O error after some inputs: those run, then the run ends with 1 and a message."""

    def lines() -> Iterator[str]:
        yield "a"
        raise OSError(5, "Input/output error")

    source = _inputs.OpenSources([_inputs._Opened(_records.Lines(lines()))], [1])
    monkeypatch.setattr(_start, "open_sources", lambda opts, pipes: source)
    rc, out, err = run(capfd, "--", "echo")
    assert (rc, out) == (1, "a\n")
    assert "cannot read the inputs: [Errno 5] Input/output error" in err
    assert "1 jobs: 1 done" in summary(err)


def test_stdin_without_a_file_descriptor(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\nb"))
    rc, out, _ = run(capfd, "-k", "--", "echo")
    assert (rc, out) == (0, "a\nb\n")


def test_pipe_lines_arriving_in_pieces() -> None:
    """A line split over many reads is put together once (a long line used to be re-joined
    on every read: quadratic)."""
    loop = asyncio.new_event_loop()
    try:
        lines = _records.PipeLines(loop)
        for piece in (b"ab", b"c", b"\nd", b"e\n\nf", b"g"):
            lines.data_received(piece)
        lines.eof_received()
        assert list(lines._lines) == [b"abc", b"de", b"", b"fg"]
    finally:
        loop.close()


# -- several sources, delimiters, columns, -n ----------------------------------------------


def test_a_later_source_is_read_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The first job runs once each source has given one record: a pipe as the second
    source is not read whole first (its records are kept, for the jobs of ``b``)."""
    read_fd, write_fd = os.pipe()
    waited: list[BaseException] = []

    def producer() -> None:
        with os.fdopen(write_fd, "w") as w:
            w.write("1\n")
            w.flush()
            try:
                wait_for((tmp_path / "ran.a1").exists, "the first job while stdin is open")
            except AssertionError as exc:
                waited.append(exc)
            w.write("2\n")

    thread = threading.Thread(target=producer)
    thread.start()
    with os.fdopen(read_fd) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        script = f'touch "{tmp_path}/ran.$0$1"; echo "$0 $1"'
        cmd = ["sh", "-c", script, ":::", "a", "b", "::::", "-"]
        rc, out, _ = run(capfd, "-k", "-j", "2", "--", *cmd)
    thread.join()
    assert waited == []
    assert (rc, out.splitlines()) == (0, ["a 1", "a 2", "b 1", "b 2"])


def _open_files(*paths: Path) -> list[str]:
    """Which of ``paths`` this process has open."""
    fds = Path("/proc/self/fd")
    wanted = {str(p) for p in paths}
    found = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if (target := os.readlink(fd)) in wanted:
                found.append(target)
    return found


def test_every_source_is_closed_at_the_end(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    a, b, big = tmp_path / "a", tmp_path / "b", tmp_path / "big"
    a.write_text("1\n2\n")
    b.write_text("x\n")
    big.write_bytes(b"y\n" + b"z" * (_records.MAX_LINE + 1))
    rc, out, _ = run(capfd, "-k", "-a", str(a), "--", "echo", "::::", str(b))
    assert (rc, out) == (0, "1 x\n2 x\n")
    rc, _, err = run(capfd, "-a", str(a), "--", "echo", "::::", str(tmp_path / "missing"))
    assert rc == 2
    assert f":::: cannot read {tmp_path}/missing: No such file or directory" in err
    rc, out, err = run(capfd, "-k", "--dry-run", "--", "echo", "::::", str(a), str(big))
    assert (rc, out) == (255, "echo 1 y\n")
    assert f"{big}: line 2 is longer" in err
    rc, out, err = run(capfd, "-k", "--", "echo", "::::", str(a), str(big))
    assert (rc, out) == (255, "1 y\n")
    assert _open_files(a, b, big) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["echo", "::::"], ":::: needs at least one file name"),
        (["echo", ":::", "a", "::::+"], "::::+ needs at least one file name"),
        (["-a", "f", "echo", ":::", "a", ":::+", "b"], ":::+ and ::::+ cannot be used with -a"),
        (["-a", "-", "echo", "::::", "-"], "standard input ('-') is given as more than one"),
        (["-0", "-d", ",", "echo"], "-0/--null and -d/--delimiter both set the delimiter"),
        (["-d", "", "echo"], "-d/--delimiter: the delimiter is empty"),
        (["-C", "", "echo"], "-C/--colsep: the separator is empty"),
        (["--colsep", "(", "echo"], "-C/--colsep: not a regular expression: '('"),
        (["-n", "1", "-N", "1", "echo"], "-n/--max-args and -N/--max-replace-args both"),
        (["-n", "-1", "echo"], "-n/--max-args: must be >= 0, got '-1'"),
        (["-N", "x", "echo"], "-N/--max-replace-args: expected an integer, got 'x'"),
        (["-d", ":::", "echo"], "-d/--delimiter: expected a value, got ':::'"),
    ],
)
def test_bad_inputs_usage_exits_2_and_runs_nothing(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    Path("f").write_text("x\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("data\n"))
    rc, out, err = run(capfd, *argv)
    assert (rc, out) == (2, "")
    assert message in err


def test_dash_zero_is_null_only_as_an_option() -> None:
    assert _options.parse(["-0", "-j", "2", "echo"]).delimiter == b"\0"
    assert _options.parse(["-d", "-0", "echo"]).delimiter == b"-0"  # -d's value
    assert _options.parse(["-j", "-0", "echo"]).delimiter == b"\n"  # -j's value
    assert _options.parse(["echo", "-0"]).command == ["echo", "-0"]  # the command's


def test_delimiter_escapes_as_gnu_parallel() -> None:
    assert _input_options.delimiter("\\t\\n\\r") == b"\t\n\r"
    assert _input_options.delimiter("\\0") == b"\0"
    assert _input_options.delimiter("\\101\\1") == b"A\1"
    assert _input_options.delimiter("\\189") == b"\x0189"  # octal digits only, the rest as is
    assert _input_options.delimiter("\\9\\x") == b"9\\x"


def test_n_args_per_job_with_halt_on_error(capfd: pytest.CaptureFixture[str]) -> None:
    """Jobs taken in batches (get_nowait) get N args each too, the last one what is left."""
    rc, out, _ = run(capfd, "-n", "2", "--halt-on-error", "-j", "4", "-k", "echo", ":::", *"12345")
    assert (rc, out.splitlines()) == (0, ["1 2", "3 4", "5"])


def test_pipe_with_a_delimiter_of_several_bytes_cut_between_reads() -> None:
    loop = asyncio.new_event_loop()
    try:
        lines = _records.PipeLines(loop, delim=b"ab")
        for piece in (b"xa", b"by", b"a", b"", b"bzzz", b"a"):
            lines.data_received(piece)
        lines.eof_received()
        assert list(lines._lines) == [b"x", b"y", b"zzza"]
    finally:
        loop.close()


def test_the_number_of_jobs_is_known_for_command_line_groups() -> None:
    def total(*argv: str) -> int | None:
        options = ["--link"] if argv[0] == "--link" else []
        opts = _options.parse([*options, "echo", *argv[len(options) :]])
        return _sources.known_total(opts.sources, opts.max_args, opts.link)

    assert total(":::", "a", "b", ":::", "1", "2", "3") == 6
    assert total(":::", "a", "b", "c", ":::+", "1", "2", ":::", "x") == 2
    assert total(":::", "a", ":::", ":::") == 1  # (an empty group counts one empty value)
    assert total(":::", ":::") == 0
    assert _sources.known_total(_options.parse(["-n", "2", "echo", ":::", *"abc"]).sources, 2) == 2
    assert total("::::", "f") is None
    # --link: the longest (the others wrapped around)
    assert total("--link", ":::", "a", "b", "c", ":::", "1", "2") == 3
    assert total("--link", ":::", "a", ":::", "1", "2", ":::", "x") == 2
    assert total("--link", ":::", ":::", "1") == 1


def test_inputs_wait_for_a_pipe_on_the_loop(tmp_path: Path) -> None:
    """Nothing in the pipe yet: not ready, for the first job as for a later one (-n 2)."""
    read_fd, write_fd = os.pipe()
    opts = _options.parse(["-n", "2", "echo", ":::", "a", ":::", "x", "::::", "-"])

    async def main() -> list[tuple[str, ...] | None]:
        with os.fdopen(read_fd, "rb") as stdin, contextlib.ExitStack() as stack:
            sys_stdin = sys.stdin
            sys.stdin = stdin
            stack.callback(setattr, sys, "stdin", sys_stdin)
            inputs = await _inputs.open_inputs(_inputs.open_sources(opts, pipes=True))
            stack.callback(inputs.close)
            assert inputs.get_nowait() is _inputs.NOT_YET
            os.write(write_fd, b"1\n")
            await asyncio.wait_for(inputs._readers[2].ready(), TIMEOUT)
            assert inputs.get_nowait() is _inputs.NOT_YET  # one record of the two, so far
            os.write(write_fd, b"2\n3\n")
            os.close(write_fd)
            first = await inputs.get()
            return [first, await inputs.get(), await inputs.get()]

    assert asyncio.run(main()) == [("a", "x", "1", "a", "x", "2"), ("a", "x", "3"), None]


def test_sources_opened_are_closed_if_a_pipe_cannot_be_read_on_the_loop(tmp_path: Path) -> None:
    if "uvloop" in os.environ.get("ASYNCTASKLIB_TEST_LOOP", ""):
        # (asyncio refuses a regular file as a pipe with ValueError; libuv aborts the
        # process. The runner never offers it one: only pipes and terminals go there.)
        pytest.skip("uvloop aborts on a regular file given as a pipe")
    regular = tmp_path / "f"
    regular.write_text("x\n")
    opts = _options.parse(["echo", "::::", str(regular), str(regular)])
    sources = _inputs.open_sources(opts, pipes=True)
    # the second as if it were a pipe: the loop refuses a regular file
    second = sources.opened[1]
    assert second.lines is not None
    stream = open(regular, "rb")  # noqa: SIM115 - closed by the source
    sources.opened[1] = _inputs._Opened(None, stream.fileno(), stream.close, "f")
    second.lines.close()
    with pytest.raises(ValueError, match="pipe"):
        asyncio.run(_inputs.open_inputs(sources))
    assert stream.closed
    assert _open_files(regular) == []


def test_a_pipe_not_read_is_closed_when_the_joblog_cannot_be_written(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    ours = os.open(fifo, os.O_RDWR)  # (a fifo's reader waits in open() for a writer)
    try:
        rc, _, err = run(capfd, "--joblog", str(tmp_path / "no" / "log"), "-a", str(fifo), "echo")
        assert rc == 2
        assert "--joblog: cannot write" in err
        assert _open_files(fifo) == [str(fifo)]  # only ours
    finally:
        os.close(ours)


def test_a_job_of_several_args_is_reported_with_them_joined(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    rc, out, err = run(
        capfd, "--json", "--joblog", str(log), "-k", "--", "sh", "-c", "exit 3",
        ":::", "a", ":::", "1", "2 x",
    )  # fmt: skip
    assert rc == 2  # (two jobs failed)
    ends = [e for e in map(json.loads, out.splitlines()) if "attempts" in e]
    assert sorted((e["seq"], e["input"]) for e in ends) == [(1, "a 1"), (2, "a 2 x")]
    assert sorted((row[0], row[8]) for row in joblog_rows(log)) == [  # Seq, Command
        ("1", "sh -c 'exit 3' a 1"),
        ("2", "sh -c 'exit 3' a '2 x'"),
    ]
    assert "job 2 failed: exit code 3 (input 'a 2 x')" in err
