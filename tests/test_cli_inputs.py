"""The inputs of ``asynctasklib run`` (``_cli/_inputs.py``): ``:::``, ``--arg-file``, and
standard input as a file, a pipe or nothing at all.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from asynctasklib import _cli
from asynctasklib._cli import _inputs, _records
from cli_helpers import TIMEOUT, cli, run, summary, wait_for

if TYPE_CHECKING:
    import pytest


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
    monkeypatch.setattr(_cli, "open_sources", lambda opts, pipes: source)
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
