"""Helpers shared by the tests of ``asynctasklib run`` (tests/test_cli*.py).

Most tests call ``main(argv)`` in this process (so coverage sees them); those about the
real entry point, signals sent from outside, or a blocked ``rich`` import run the CLI as a
subprocess. Jobs are small ``sh`` scripts; tests wait on files the jobs create, never on
sleeps that merely hope something happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from asynctasklib._cli import _orchestrator, main
from asynctasklib._cli._joblog import HEADER as JOBLOG_HEADER

PY = sys.executable
# GNU parallel, the oracle of the tests that compare with it (.ci/run installs it).
PARALLEL = shutil.which("parallel")
needs_parallel = pytest.mark.skipif(PARALLEL is None, reason="needs GNU parallel")
TIMEOUT = 20.0  # upper bound of any wait below: reaching it means the test failed


def run(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capfd.readouterr()
    return rc, out, err


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def pid_gone(pid: int) -> bool:
    """The process does not exist any more, not even as a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def summary(err: str) -> str:
    lines = [line for line in err.splitlines() if " jobs: " in line]
    assert lines, f"no summary line in stderr: {err!r}"
    return lines[-1]


def cli(*argv: str) -> list[str]:
    return [PY, "-m", "asynctasklib", "run", *argv]


def joblog_rows(path: Path) -> list[list[str]]:
    """The rows of GNU parallel's joblog: Seq, Host, Starttime, JobRuntime, Send, Receive,
    Exitval, Signal, Command."""
    text = path.read_text()
    assert text.startswith(JOBLOG_HEADER)
    return [line.split("\t", 8) for line in text.split("\n")[1:-1]]


class Interrupter:
    """Sends this process SIGINT, as Ctrl-C would, each time after the last was handled.

    (Two signals sent at once would be delivered as one.)
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.handled = threading.Semaphore(0)
        on_sigint = _orchestrator.Orchestrator._on_sigint

        def spy(runner: _orchestrator.Orchestrator) -> None:
            on_sigint(runner)
            self.handled.release()

        monkeypatch.setattr(_orchestrator.Orchestrator, "_on_sigint", spy)

    def when(self, paths: list[Path], count: int, then: Callable[[], None] | None = None) -> None:
        """In a thread: once every path exists, interrupt ``count`` times, then ``then()``."""

        def send() -> None:
            wait_for(lambda: all(p.exists() for p in paths), "the jobs to start")
            for _ in range(count):
                os.kill(os.getpid(), signal.SIGINT)
                assert self.handled.acquire(timeout=TIMEOUT), "SIGINT not handled"
            if then is not None:
                then()

        self.thread = threading.Thread(target=send)
        self.thread.start()


def nul_inputs(tmp_path: Path, values: list[str]) -> str:
    """A file of ``values``, each ended by a NUL (for -0 -a FILE: newlines stay in them)."""
    path = tmp_path / "inputs"
    path.write_bytes(b"".join(os.fsencode(v) + b"\0" for v in values))
    return str(path)
