"""``asynctasklib run`` in a real terminal: the live progress view and Ctrl-C, driven with
tmux (``send-keys`` to type, ``capture-pane`` to read the screen).

Skipped only when tmux is not installed (``apt-get install -y tmux``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
TIMEOUT = 20.0

pytestmark = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (apt-get install -y tmux)"
)


class Pane:
    """A shell in a detached tmux session of its own (a private server socket)."""

    def __init__(self, tmp_path: Path) -> None:
        assert TMUX is not None
        socket = f"asynctasklib-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.base = [TMUX, "-L", socket, "-f", "/dev/null"]
        env = {**os.environ, "PS1": "$ ", "TERM": "xterm-256color"}
        env.pop("TMUX", None)
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", "t", "-x", "140", "-y", "40", "sh"],
            check=True, env=env, cwd=tmp_path, timeout=TIMEOUT,
        )  # fmt: skip

    def type(self, line: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", "-l", line], check=True)
        subprocess.run([*self.base, "send-keys", "-t", "t", "Enter"], check=True)

    def ctrl_c(self) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", "C-c"], check=True)

    def screen(self) -> str:
        return subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", "t"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def wait_screen(self, predicate: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.05)

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    p = Pane(tmp_path)
    try:
        yield p
    finally:
        p.kill()


def wait_file(path: Path) -> str:
    deadline = time.monotonic() + TIMEOUT
    while not path.exists() or not path.read_text().endswith("\n"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)
    return path.read_text()


def command(tmp_path: Path, *argv: str) -> str:
    run = [sys.executable, "-m", "asynctasklib", "run", *argv]
    return f"{shlex.join(run)}; echo EXIT=$? > {tmp_path}/exit"


def test_progress_view_and_ctrl_c_in_a_terminal(tmp_path: Path, pane: Pane) -> None:
    """Inputs 1 and 2 finish, 3 and 4 wait for a file, 5 is never started: Ctrl-C comes
    while 3 and 4 run. The view shows the counts and a bar; job output scrolls above it."""
    pytest.importorskip("rich")
    job = (
        f'[ "$0" -ge 3 ] && while [ ! -e {tmp_path}/release ]; do sleep 0.02; done; '
        'echo "output of $0"'
    )
    pane.type(command(tmp_path, "-j", "2", "--", "sh", "-c", job, ":::", *"12345"))
    screen = pane.wait_screen(
        lambda s: "2 done" in s and "2 running" in s, "the view to show 2 done, 2 running"
    )
    assert "━" in screen  # the bar
    assert "0 failed" in screen
    assert "jobs/s" in screen
    assert "ETA" in screen
    assert "output of 1" in screen
    assert "output of 2" in screen

    pane.ctrl_c()
    pane.wait_screen(lambda s: "starting no more jobs" in s, "the Ctrl-C notice")
    (tmp_path / "release").touch()
    assert wait_file(tmp_path / "exit") == "EXIT=130\n"
    screen = pane.screen()
    assert "output of 3" in screen
    assert "output of 4" in screen
    assert "output of 5" not in screen
    assert "4 jobs: 4 done, 0 failed, 0 canceled" in screen
    assert "(interrupted)" in screen


def test_no_view_when_stderr_is_a_pipe_in_a_terminal(tmp_path: Path, pane: Pane) -> None:
    """Same terminal, but stderr piped through cat: no view, only the summary."""
    line = command(tmp_path, "-j", "2", "--progress", "--", "echo", "out", ":::", *"123")
    line = line.replace("; echo EXIT", " 2>&1 | cat; echo EXIT", 1)
    pane.type(line)
    assert wait_file(tmp_path / "exit") == "EXIT=0\n"
    screen = pane.wait_screen(lambda s: "3 jobs: 3 done" in s, "the summary")
    assert "━" not in screen
    assert "running" not in screen
    assert "out 1" in screen
