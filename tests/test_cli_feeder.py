"""Feeding the pool (``_cli/_feeder.py``): ``--halt-on-error`` and ``--delay``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cli_helpers import joblog_rows, pid_gone, run, summary

if TYPE_CHECKING:
    import pytest


def test_halt_on_error_cancels_the_rest(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Job 1 fails; 2 and 3 would wait forever; 4 and 5 must never start."""
    script = (
        f'touch "{tmp_path}/started.$0"; [ "$0" = 1 ] && exit 9; '
        f'echo $$ > "{tmp_path}/tmp.$0"; mv "{tmp_path}/tmp.$0" "{tmp_path}/pid.$0"; '
        "exec sleep 60"
    )
    log = tmp_path / "log"
    rc, out, err = run(
        capfd, "-j", "3", "--halt-on-error", "--grace", "0.5", "--json", "--joblog", str(log),
        "--", "sh", "-c", script, ":::", "1", "2", "3", "4", "5",
    )  # fmt: skip
    assert rc == 1
    ends = {e["seq"]: e["event"] for e in map(json.loads, out.splitlines()) if "attempts" in e}
    assert ends[1] == "failed"
    assert set(ends) <= {1, 2, 3}
    assert all(ends[s] == "canceled" for s in ends if s != 1)
    assert not (tmp_path / "started.4").exists()
    assert not (tmp_path / "started.5").exists()
    for pid_file in tmp_path.glob("pid.*"):
        assert pid_gone(int(pid_file.read_text()))
    assert "1 failed" in summary(err)
    assert {row[0] for row in joblog_rows(log)} == {str(s) for s in ends}


def test_halt_on_error_across_groups(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """1 and 2 start together (one group); 1 succeeds, so 3 starts in a group of its own
    and fails: that cancels 2, in the other group, and nothing more starts."""
    pid2 = tmp_path / "pid.2"
    script = (
        f'touch "{tmp_path}/started.$0"; [ "$0" = 1 ] && exit 0; '
        f'if [ "$0" = 3 ]; then while [ ! -e {pid2} ]; do sleep 0.01; done; exit 5; fi; '
        f'echo $$ > "{tmp_path}/tmp"; mv "{tmp_path}/tmp" {pid2}; exec sleep 60'
    )
    rc, out, err = run(
        capfd, "-j", "2", "--halt-on-error", "--json",
        "--", "sh", "-c", script, ":::", "1", "2", "3", "4", "5",
    )  # fmt: skip
    assert rc == 1
    ends = {e["seq"]: e["event"] for e in map(json.loads, out.splitlines()) if "attempts" in e}
    assert ends == {1: "done", 2: "canceled", 3: "failed"}
    assert pid_gone(int(pid2.read_text()))
    assert not (tmp_path / "started.4").exists()
    assert "1 done, 1 failed, 1 canceled" in summary(err)


def test_halt_on_error_with_many_groups(capfd: pytest.CaptureFixture[str]) -> None:
    """Without failures every input runs, through as many error groups as it takes."""
    inputs = [str(i) for i in range(60)]
    rc, out, _ = run(capfd, "-j", "4", "--halt-on-error", "-k", "--", "echo", ":::", *inputs)
    assert rc == 0
    assert out.splitlines() == inputs


def test_delay_between_starts(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    rc, _, _ = run(capfd, "-j", "3", "--delay", "0.1", "--joblog", str(log), "true", ":::", *"abc")
    assert rc == 0
    starts = sorted(float(row[4]) for row in joblog_rows(log))
    assert all(b - a >= 0.095 for a, b in itertools.pairwise(starts))


def test_delay_with_halt_on_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    rc, _, _ = run(
        capfd, "-j", "3", "--halt-on-error", "--delay", "0.1", "--joblog", str(log),
        "true", ":::", *"abc",
    )  # fmt: skip
    assert rc == 0
    starts = sorted(float(row[4]) for row in joblog_rows(log))
    assert len(starts) == 3
    assert all(b - a >= 0.095 for a, b in itertools.pairwise(starts))
