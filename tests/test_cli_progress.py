"""The progress view (``_cli/_progress.py``): on a terminal only, and a run without rich."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading

import pytest

from asynctasklib._cli import _report, main
from cli_helpers import PY, TIMEOUT, run, summary


def test_no_progress_view_when_stderr_is_a_pipe() -> None:
    code = (
        "import sys; from asynctasklib.__main__ import main; "
        "rc = main(['run', '--progress', '--', 'echo', ':::', 'a', 'b']); "
        "print('rich imported' if any(m.startswith('rich') for m in sys.modules) else 'no rich'); "
        "sys.exit(rc)"
    )
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "no rich"
    assert "\x1b[" not in proc.stderr  # no cursor movement, no colours
    assert proc.stderr.splitlines() == [summary(proc.stderr)]


def _run_with_tty_stderr(argv: list[str], block_rich: bool) -> tuple[int, str, str]:
    """Run the CLI in a subprocess whose stderr is a pseudo-terminal."""
    prelude = "import sys; sys.modules['rich'] = None; " if block_rich else "import sys; "
    code = prelude + f"from asynctasklib._cli import main; sys.exit(main({argv!r}))"
    master, slave = pty.openpty()
    with subprocess.Popen(
        [PY, "-c", code], stdout=subprocess.PIPE, stderr=slave, text=True,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    ) as proc:  # fmt: skip
        os.close(slave)
        chunks: list[bytes] = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        assert proc.stdout is not None
        out = proc.stdout.read()
        rc = proc.wait(timeout=TIMEOUT)
    return rc, out, b"".join(chunks).decode(errors="replace")


def test_run_works_when_rich_cannot_be_imported() -> None:
    rc, out, err = _run_with_tty_stderr(["--progress", "--", "echo", ":::", "a"], block_rich=True)
    assert rc == 0
    assert out == "a\n"
    assert "the progress view needs rich" in err
    # Shown by default on a terminal: without rich it is left out silently.
    rc, out, err = _run_with_tty_stderr(["--", "echo", ":::", "b"], block_rich=True)
    assert (rc, out) == (0, "b\n")
    assert "needs rich" not in err
    assert "1 jobs: 1 done" in err


def test_progress_view_on_a_terminal_stderr() -> None:
    pytest.importorskip("rich")
    rc, out, err = _run_with_tty_stderr(
        ["-k", "--", "sh", "-c", "echo out $0; echo err $0 >&2", ":::", "a", "b"],
        block_rich=False,
    )
    assert rc == 0
    assert out == "out a\nout b\n"  # stdout is a pipe: the job output goes there, untouched
    assert "err a" in err
    assert "err b" in err
    assert "2 done" in err
    assert "0 failed" in err
    assert "jobs/s" in err
    assert "━" in err  # the bar
    rc, out, err = _run_with_tty_stderr(["--no-progress", "--", "echo", ":::", "a"], False)
    assert rc == 0
    assert "━" not in err


class Terminal:
    """A pseudo-terminal: ``file`` is its slave end; what is written to it is collected."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.file = open(self.slave, "w", closefd=False)  # noqa: SIM115
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._drain)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    def close(self) -> str:
        self.file.close()
        os.close(self.slave)
        self.thread.join(timeout=TIMEOUT)
        os.close(self.master)
        return b"".join(self.chunks).decode(errors="replace")


def test_progress_view_in_process(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "150")
    term = Terminal()
    try:
        monkeypatch.setattr(sys, "stderr", term.file)
        monkeypatch.setattr(sys, "stdout", term.file)  # both on the terminal
        rc = main(
            [
                "-j", "2", "--retries", "2", "--backoff", "none", "--halt-on-error",
                "--", "sh", "-c", 'echo "out $0"; echo "err $0" >&2; [ "$0" != bad ]',
                ":::", "a", "b", "bad",
            ]
        )  # fmt: skip
    finally:
        monkeypatch.undo()
        screen = term.close()
    assert rc == 1
    for text in ("out a", "err a", "out b", "err b", "out bad", "━", "failed", "running"):
        assert text in screen
    assert "jobs/s" in screen
    assert "ETA" in screen
    assert "1 retried" in screen


def test_progress_view_reads_inputs_from_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """stdin a terminal: a hint, then lines typed, then Ctrl-D; stdout stays a pipe."""
    pytest.importorskip("rich")
    term = Terminal()
    stdin = open(term.slave, closefd=False)  # noqa: SIM115
    os.write(term.master, b"typed one\ntyped two\n\x04")  # Ctrl-D: end of input
    try:
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stderr", term.file)
        rc = main(["-k", "--", "echo"])
    finally:
        monkeypatch.undo()
        stdin.close()
        screen = term.close()
    out, _ = capfd.readouterr()
    assert rc == 0
    assert out == "typed one\ntyped two\n"
    assert "reading inputs from the terminal" in screen
    assert "2 done" in screen


def test_progress_flag_without_rich_in_process(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.delitem(sys.modules, "asynctasklib._cli._progress", raising=False)
    monkeypatch.setattr(_report, "isatty", lambda stream: True)
    rc, out, err = run(capfd, "--progress", "--", "echo", ":::", "x")
    assert (rc, out) == (0, "x\n")
    assert "the progress view needs rich" in err


def test_the_progress_rate_is_jobs_over_the_elapsed_time() -> None:
    pytest.importorskip("rich")
    from rich.progress import Progress

    from asynctasklib._cli import _progress

    progress = Progress()
    task_id = progress.add_task("jobs", total=10)
    task = progress.tasks[task_id]
    assert _progress._rate(task) is None  # nothing done yet
    task.start_time = task.get_time() - 4.0  # started 4 s ago
    progress.update(task_id, completed=2)  # two jobs ending a moment apart
    progress.update(task_id, completed=2)
    rate = _progress._rate(task)
    assert rate is not None
    assert 0.45 < rate <= 0.5  # 2 jobs in about 4 s, not thousands per second
    eta = _progress._EtaColumn().render(task).plain
    assert eta in ("0:00:16", "0:00:15")  # 8 left at 0.5 jobs/s
