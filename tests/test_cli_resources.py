"""``asynctasklib run``: the resources a run holds and leaves behind.

Memory that must stay bounded by bytes (the jobs' output, the input read-ahead, an overlong
input line), zombies of processes the jobs orphan, and signals that arrive before the run
is fully under way. Peak memory is measured on the CLI run as a subprocess (its own
``ru_maxrss`` from ``wait4``), against the same CLI's peak on a trivial run, so that the
bound does not depend on the interpreter's size.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asynctasklib import _cli

from test_cli import TIMEOUT, cli, run, summary, wait_for

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
    original: Callable[..., None] = getattr(_cli._Runner, handler)

    def spy(runner: _cli._Runner, *args: Any) -> None:
        original(runner, *args)
        for future in handled:
            if not future.done():
                future.set_result(None)

    monkeypatch.setattr(_cli._Runner, handler, spy)
    open_lines = _cli._lines

    async def lines_after_a_signal(source: _cli._Source) -> Any:
        handled.append(asyncio.get_running_loop().create_future())
        os.kill(os.getpid(), sig)
        await handled[0]  # the run's own handler has run
        return await open_lines(source)

    monkeypatch.setattr(_cli, "_lines", lines_after_a_signal)
    marker = tmp_path / "ran"
    rc, out, err = run(capfd, "--", "sh", "-c", f'echo "$0" >> "{marker}"', ":::", "a", "b")
    assert rc == code
    assert not marker.exists()
    assert "0 jobs: 0 done, 0 failed, 0 canceled" in summary(err)
