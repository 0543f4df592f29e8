"""What a run reports of its jobs (``_cli/_report.py``): ``--json`` events, ``--joblog``
rows and a joblog read back (``_cli/_joblog.py``), and why a job failed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from asynctasklib._cli import _joblog
from cli_helpers import TIMEOUT, joblog_rows, run


def test_json_events(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capfd, "--json", "-j", "2", "--", "sh", "-c", "echo hi $0; exit $0", ":::", "0", "3"
    )
    assert rc == 1
    events = [json.loads(line) for line in out.splitlines()]  # nothing else on stdout
    by_seq: dict[int, list[dict[str, object]]] = {}
    for event in events:
        by_seq.setdefault(int(event["seq"]), []).append(event)
    assert [e["event"] for e in by_seq[1]] == ["pending", "started", "done"]
    assert [e["event"] for e in by_seq[2]] == ["pending", "started", "failed"]
    done, failed = by_seq[1][-1], by_seq[2][-1]
    assert done["input"] == "0"
    assert done["exit_code"] == 0
    assert done["stdout"] == "hi 0\n"
    assert failed["exit_code"] == 3
    assert failed["error"] == "exit code 3"
    assert failed["stdout"] == "hi 3\n"
    assert failed["attempts"] == 1
    assert by_seq[1][1]["command"] == ["sh", "-c", "echo hi $0; exit $0", "0"]
    for event in events:
        assert re.match(r"\d{4}-\d\d-\d\dT.*\+00:00$", str(event["time"]))
    assert "hi" not in err


def test_joblog_columns(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """GNU parallel's columns (the oracle tests compare them with parallel's own)."""
    log = tmp_path / "jobs.tsv"
    before = time.time()
    rc, _, _ = run(
        capfd, "--joblog", str(log), "--shell", "--", 'printf %s "$(echo {})"; test {} = ok',
        ":::", "ok", "tab\there",
    )  # fmt: skip
    assert rc == 1
    assert log.read_text().startswith(
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
    )
    rows = sorted(joblog_rows(log))
    assert [row[:2] + row[4:] for row in rows] == [
        ["1", ":", "0", "2", "0", "0", 'printf %s "$(echo ok)"; test ok = ok'],
        ["2", ":", "0", "8", "1", "0",
         "printf %s \"$(echo 'tab\there')\"; test 'tab\there' = ok"],
    ]  # fmt: skip
    start, runtime = rows[0][2:4]
    assert re.fullmatch(r"\d+\.\d{3}", start)
    assert before - 1 <= float(start) <= time.time() + 1
    assert re.fullmatch(r" *\d+\.\d{3}", runtime)
    assert len(runtime) == 10
    assert 0 <= float(runtime) < TIMEOUT


def test_joblog_row_format() -> None:
    """Parallel's own arithmetic: the run time is cut (not rounded) to the millisecond,
    from the start as written; a newline in the command is written as NUL."""
    row = _joblog.row(3, 100.0004, 101.2349, 7, -1, 15, "echo 'a\nb'")
    assert row == "3\t:\t100.000\t     1.234\t0\t7\t-1\t15\techo 'a\0b'\n"
    assert _joblog.row(1, 5.0, 4.9999, 0, 0, 0, "x").split("\t")[3] == "     0.000"


def test_a_failed_job_says_why_after_its_own_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    script = 'echo "out $0"; echo "err $0" >&2; [ "$0" = 0 ]'
    rc, out, err = run(capfd, "-k", "--", "sh", "-c", script, ":::", "0", "3", "it's")
    assert rc == 2  # two failed
    assert out == "out 0\nout 3\nout it's\n"
    assert err.splitlines()[:-1] == [
        "err 0",
        "err 3",
        "asynctasklib: job 2 failed: exit code 1 (input 3)",
        "err it's",
        "asynctasklib: job 3 failed: exit code 1 (input 'it'\"'\"'s')",
    ]


def test_failure_reasons_timeout_signal_retries_json(capfd: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capfd, "--timeout", "0.2", "--grace", "0.1", "--", "sleep", ":::", "30")
    assert rc == 1
    assert "asynctasklib: job 1 failed: timed out after 0.2 s (input 30)" in err
    rc, _, err = run(capfd, "--", "sh", "-c", "kill -KILL $$", ":::", "a\nb")
    assert rc == 1
    assert "asynctasklib: job 1 failed: killed by SIGKILL (input 'a\\nb')" in err
    rc, _, err = run(
        capfd, "--retries", "2", "--backoff", "none", "--", "sh", "-c", "exit 5", ":::", "x"
    )
    assert "asynctasklib: job 1 failed after 2 attempts: exit code 5 (input x)" in err
    rc, out, err = run(capfd, "--json", "--", "sh", "-c", "exit 4", ":::", "x")
    assert all(json.loads(line) for line in out.splitlines())  # stdout: only the events
    assert "asynctasklib: job 1 failed: exit code 4 (input x)" in err
    # A command that cannot start says so once, not twice.
    rc, _, err = run(capfd, "--", "{}", ":::", "/nonexistent/cmd")
    assert [line for line in err.splitlines() if "nonexistent" in line] == [
        "asynctasklib: /nonexistent/cmd: No such file or directory"
    ]


def test_a_joblog_read_back_must_be_parallels(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    argv = ["--resume", "--joblog", str(log), "echo", ":::", "a"]
    log.write_text("seq\tinput\texit_code\n1\ta\t0\n")
    rc, out, err = run(capfd, *argv)
    assert (rc, out) == (2, "")
    assert "is not a GNU parallel joblog: its first line is not the header" in err
    log.write_text(_joblog.HEADER + "1\t:\t1.000\t     0.001\t0\t2\t0\t0\techo a\nnonsense\n")
    rc, out, err = run(capfd, *argv)
    assert (rc, out) == (2, "")
    assert "line 3: not a GNU parallel joblog row: nonsense" in err
    log.write_text("")  # empty: as no joblog (GNU parallel's), the job runs, the header comes
    rc, out, _ = run(capfd, *argv)
    assert (rc, out) == (0, "a\n")
    assert log.read_text().startswith(_joblog.HEADER)
    rc, _, err = run(capfd, "--resume", "--joblog", str(tmp_path), "echo", ":::", "a")
    assert rc == 2
    assert f"--joblog: cannot read {tmp_path}: Is a directory" in err
    log.unlink()  # missing, for --retry-failed: nothing to retry
    rc, out, _ = run(capfd, "--retry-failed", "--joblog", str(log))
    assert (rc, out, log.read_text()) == (0, "", _joblog.HEADER)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resume", "echo", ":::", "a"], "--resume needs --joblog FILE"),
        (["--resume-failed", "--joblog", "-", "echo"], "--resume-failed needs --joblog FILE"),
        (["--retry-failed", "--resume", "--joblog", "x"], "give only one of --resume, --retry"),
        (["--halt", "later", "echo"], "--halt: expected never, soon or now, got 'later'"),
        (["--halt", "now,oops=1", "echo"], "--halt now: expected now,fail, ,success or ,done"),
        (["--halt", "now,fail=0", "echo"], "expected =N or =N% with N >= 1, got 'now,fail=0'"),
        (["--halt", "soon,done=1.5", "echo"], "expected =N or =N% with N >= 1"),
        (["--halt", "2", "--halt-on-error", "echo"], "give --halt or --halt-on-error, not both"),
    ],
)
def test_bad_halt_and_joblog_reuse(
    argv: list[str], message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capfd, *argv)
    assert (rc, out) == (2, "")
    assert message in err


def test_retry_failed_runs_the_logged_command_lines(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A command line with a newline (a NUL in the joblog, as GNU parallel writes it) is
    run again whole; --dry-run shows the jobs that would run, skipping the others."""
    log = tmp_path / "log"
    rc, _, _ = run(  # (-j1: the rows in the jobs' order)
        capfd, "-j1", "--joblog", str(log), "--shell", "--", "echo {}; test {} = ok", ":::",
        "ok", "two\nlines",
    )  # fmt: skip
    assert rc == 1
    assert "\0" in log.read_text()
    rc, out, _ = run(capfd, "--dry-run", "--retry-failed", "--joblog", str(log))
    assert (rc, out) == (0, "echo 'two\nlines'; test 'two\nlines' = ok\n")
    rc, out, _ = run(
        capfd, "--dry-run", "--resume-failed", "--joblog", str(log), "echo", ":::", "x", "y"
    )
    assert (rc, out) == (0, "echo y\n")
    rc, out, _ = run(capfd, "--retry-failed", "--joblog", str(log), "ignored", ":::", "ignored")
    assert (rc, out) == (1, "two\nlines\n")
    rows = joblog_rows(log)
    assert [row[0] for row in rows] == ["1", "2", "2"]
    assert rows[1][8] == rows[2][8]
