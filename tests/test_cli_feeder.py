"""Feeding the pool (``_cli/_feeder.py``): ``--halt-on-error``, ``--delay``, and each step of
a job reported for that job.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import joblog_rows, pid_gone, run, summary


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


@pytest.mark.parametrize("halt", [[], ["--halt-on-error"]], ids=["plain", "halt-on-error"])
def test_each_step_of_a_retried_job_reaches_that_job(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], halt: list[str]
) -> None:
    """Many jobs at once, each failing its first attempt: every step (the first PENDING
    at submit, each start, the retry's PENDING, the end) is reported for its own job."""
    script = f'if [ -e "{tmp_path}/tried.$0" ]; then echo "ok $0"; exit 0; fi; '
    script += f'touch "{tmp_path}/tried.$0"; exit 3'
    inputs = [f"in{i}" for i in range(12)]
    rc, out, err = run(
        capfd, "-j", "4", *halt, "--retries", "2", "--backoff", "none", "--json",
        "--", "sh", "-c", script, ":::", *inputs,
    )  # fmt: skip
    assert rc == 0, err
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for event in map(json.loads, out.splitlines()):
        by_seq.setdefault(event["seq"], []).append(event)
    assert sorted(by_seq) == list(range(1, 13))
    for seq, events in by_seq.items():
        value = inputs[seq - 1]
        assert [(e["event"], e.get("attempt")) for e in events] == [
            ("pending", 0), ("started", 0), ("pending", 1), ("started", 1), ("done", None),
        ]  # fmt: skip
        assert {e["input"] for e in events} == {value}
        assert events[1]["command"][-1] == events[3]["command"][-1] == value
        assert events[2]["error"] == "exit code 3"
        assert (events[4]["attempts"], events[4]["stdout"]) == (2, f"ok {value}\n")
    assert "12 jobs: 12 done, 0 failed, 0 canceled, 12 retried" in summary(err)
