"""Feeding the pool (``_cli/_feeder.py``): ``--halt-on-error``, ``--delay``, and each step of
a job reported for that job. (``--halt`` and ``--resume`` against GNU parallel:
test_cli_oracle_joblog.py.)
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asynctasklib._cli import _report, _timeout
from cli_helpers import joblog_rows, pid_gone, run, summary

if TYPE_CHECKING:
    from asynctasklib._cli._job import Job


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
    assert rc == 9  # --halt now,fail=1: the failed job's exit status
    ends = {e["seq"]: e["event"] for e in map(json.loads, out.splitlines()) if "attempts" in e}
    assert ends[1] == "failed"
    assert set(ends) <= {1, 2, 3}
    assert all(ends[s] == "canceled" for s in ends if s != 1)
    assert not (tmp_path / "started.4").exists()
    assert not (tmp_path / "started.5").exists()
    for pid_file in tmp_path.glob("pid.*"):
        assert pid_gone(int(pid_file.read_text()))
    assert "1 failed" in summary(err)
    assert "--halt: starting no more jobs, cancelling the running ones" in err
    assert [row[0] for row in joblog_rows(log)] == ["1"]  # the canceled ones have no row


def test_halt_on_error_cancels_a_job_started_before(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """1 and 2 start together; 1 succeeds, so 3 starts, and fails: that cancels 2, and
    nothing more starts."""
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
    assert rc == 5
    ends = {e["seq"]: e["event"] for e in map(json.loads, out.splitlines()) if "attempts" in e}
    assert ends == {1: "done", 2: "canceled", 3: "failed"}
    assert pid_gone(int(pid2.read_text()))
    assert not (tmp_path / "started.4").exists()
    assert "1 done, 1 failed, 1 canceled" in summary(err)


def test_halt_on_error_without_failures_runs_everything(
    capfd: pytest.CaptureFixture[str],
) -> None:
    inputs = [str(i) for i in range(60)]
    rc, out, _ = run(capfd, "-j", "4", "--halt-on-error", "-k", "--", "echo", ":::", *inputs)
    assert rc == 0
    assert out.splitlines() == inputs


@pytest.mark.parametrize("halt", [[], ["--halt-on-error"]], ids=["plain", "halt-on-error"])
def test_delay_between_starts(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], halt: list[str]
) -> None:
    """--delay D: after each job is submitted, the feeder waits D seconds before it takes
    the next input. The order of those steps is checked, and (on the monotonic clock,
    a bound that a slow machine only makes truer) that the run took at least the waits."""
    delay = 0.15
    steps: list[tuple[str, object]] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float, result: Any = None) -> Any:
        if seconds == delay:
            steps.append(("wait", seconds))
        return await real_sleep(seconds, result)

    pending = _report.Reporter.pending

    def on_pending(self: _report.Reporter, job: Job, when: datetime, attempt: int) -> None:
        steps.append(("submit", job.seq))
        pending(self, job, when, attempt)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    monkeypatch.setattr(_report.Reporter, "pending", on_pending)
    started = time.monotonic()
    rc, _, _ = run(capfd, "-j", "3", *halt, "--delay", str(delay), "true", ":::", *"abc")
    elapsed = time.monotonic() - started
    assert rc == 0
    assert steps == [
        ("submit", 1), ("wait", delay), ("submit", 2), ("wait", delay), ("submit", 3),
        ("wait", delay),
    ]  # fmt: skip
    assert elapsed >= 3 * delay


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


def test_halt_percent_counts_the_inputs_first(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """--halt ...=N% needs the number of jobs: the inputs of a file are all read first
    (from ::: they are known). 2 failed of 4 is 50%: no job starts after the third."""
    args = tmp_path / "args"
    args.write_text("0\n3\n4\n0\n")
    log = tmp_path / "log"
    rc, _, err = run(
        capfd, "-j", "1", "--halt", "soon,fail=50%", "--joblog", str(log), "-a", str(args),
        "--shell", "exit {}",
    )  # fmt: skip
    assert rc == 50  # as GNU parallel: the percentage of the jobs that failed
    assert [row[0] for row in joblog_rows(log)] == ["1", "2", "3"]
    assert "--halt: starting no more jobs, waiting for the running ones" in err


def test_the_median_of_timeout_percent() -> None:
    """The lower median of the run times of the jobs that succeeded (cut to the
    millisecond, as GNU parallel's), times N%."""
    watch = _timeout.MedianTimeout(2.0)
    assert watch.limit is None  # no job succeeded yet: no limit
    for runtime, median in ((5.0, 5.0), (1.0, 1.0), (3.0, 3.0), (4.0, 3.0), (0.0, 3.0),
                            (0.5, 1.0), (9.0, 3.0), (0.0012345, 1.0)):  # fmt: skip
        watch.succeeded(runtime)
        assert watch.limit == 2 * median
