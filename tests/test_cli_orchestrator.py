"""The whole run (``_cli/_orchestrator.py``): the exit status; Ctrl-C once, twice and
three times; SIGTERM, SIGHUP and SIGQUIT.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asynctasklib._cli import _feeder
from cli_helpers import TIMEOUT, Interrupter, cli, joblog_rows, pid_gone, run, summary, wait_for

if TYPE_CHECKING:
    from asynctasklib._cli._job import Job
    from asynctasklib.task import Task


def test_exit_status_is_the_number_of_failed_jobs(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capfd, "-k", "--", "sh", "-c", "echo $0; exit $0", ":::", "0", "4", "0")
    assert rc == 1
    assert out.splitlines() == ["0", "4", "0"]
    assert "3 jobs: 2 done, 1 failed, 0 canceled" in summary(err)
    # as GNU parallel: the number of failed jobs, 101 for more than 100
    rc, _, _ = run(capfd, "--", "sh", "-c", "exit $0", ":::", "0", "4", "5", "0")
    assert rc == 2
    rc, _, _ = run(capfd, "-j", "8", "false", ":::", *map(str, range(102)))
    assert rc == 101


WAITER = (
    'echo $$ > "{dir}/pid.$0"; touch "{dir}/started.$0"; '
    'while [ ! -e "{dir}/release" ]; do sleep 0.01; done; echo fin $0'
)


def test_first_interrupt_lets_running_jobs_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    interrupter = Interrupter(monkeypatch)
    # Release the jobs only once the interrupt was handled: no job may start after it.
    interrupter.when(
        [tmp_path / "started.1", tmp_path / "started.2"], 1, (tmp_path / "release").touch
    )
    job = WAITER.format(dir=tmp_path)
    rc, out, err = run(capfd, "-j", "2", "--", "sh", "-c", job, ":::", *"1234")
    interrupter.thread.join()
    assert rc == 130
    assert sorted(out.splitlines()) == ["fin 1", "fin 2"]
    assert not (tmp_path / "started.3").exists()
    assert not (tmp_path / "started.4").exists()
    assert "interrupted: starting no more jobs, waiting for 2 running" in err
    assert "2 jobs: 2 done, 0 failed, 0 canceled" in summary(err)


def test_second_interrupt_cancels_running_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    interrupter = Interrupter(monkeypatch)
    interrupter.when([tmp_path / "started.1", tmp_path / "started.2"], 2)
    log = tmp_path / "log"
    rc, out, err = run(
        capfd, "-j", "2", "--grace", "0.5", "--joblog", str(log),
        "--", "sh", "-c", WAITER.format(dir=tmp_path), ":::", *"1234",
    )  # fmt: skip
    interrupter.thread.join()
    assert rc == 130
    assert out == ""
    assert "0 done, 0 failed, 2 canceled" in summary(err)
    assert joblog_rows(log) == []  # as GNU parallel: no row for a killed job (--resume runs it)
    for n in "12":
        assert pid_gone(int((tmp_path / f"pid.{n}").read_text()))


def test_third_interrupt_kills_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Jobs that ignore SIGTERM would take the whole grace period; Ctrl-C #3 kills now."""
    job = 'trap "" TERM; echo $$ > "{dir}/pid.$0"; touch "{dir}/started.$0"; exec sleep 60'
    interrupter = Interrupter(monkeypatch)
    interrupter.when([tmp_path / "started.1"], 3)
    started = time.monotonic()
    rc, _, err = run(capfd, "--grace", "30", "--", "sh", "-c", job.format(dir=tmp_path), ":::", "1")
    interrupter.thread.join()
    assert rc == 130
    assert time.monotonic() - started < 15
    assert "killing the running jobs" in err
    assert pid_gone(int((tmp_path / "pid.1").read_text()))


@contextlib.contextmanager
def spawn_cli(tmp_path: Path, *argv: str) -> Iterator[subprocess.Popen[str]]:
    """The CLI as a subprocess; if the test fails while it runs, it is told to cancel its
    jobs (SIGTERM) and waited for, so no job outlives the test."""
    with subprocess.Popen(
        cli(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()


def both_started(tmp_path: Path) -> None:
    wait_for(
        lambda: (tmp_path / "started.1").exists() and (tmp_path / "started.2").exists(),
        "the jobs to start",
    )


def test_sigint_once_from_outside(tmp_path: Path) -> None:
    """The real entry point, interrupted by another process as a terminal would."""
    job = WAITER.format(dir=tmp_path)
    with spawn_cli(tmp_path, "-j", "2", "--", "sh", "-c", job, ":::", *"1234") as proc:
        both_started(tmp_path)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        assert "interrupted" in proc.stderr.readline()  # handled: now let the jobs finish
        (tmp_path / "release").touch()
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert sorted(out.splitlines()) == ["fin 1", "fin 2"]
    assert not (tmp_path / "started.3").exists()


def test_sigint_twice_from_outside(tmp_path: Path) -> None:
    job = WAITER.format(dir=tmp_path)
    argv = ["-j", "2", "--grace", "0.5", "--", "sh", "-c", job, ":::", *"1234"]
    with spawn_cli(tmp_path, *argv) as proc:
        both_started(tmp_path)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        assert "interrupted" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)  # only now: two at once would arrive as one
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert out == ""
    assert "2 canceled" in summary(err)
    for n in "12":
        assert pid_gone(int((tmp_path / f"pid.{n}").read_text()))


def test_sigterm_cancels_everything(tmp_path: Path) -> None:
    job = WAITER.format(dir=tmp_path)
    argv = ["-j", "2", "--grace", "0.5", "--", "sh", "-c", job, ":::", *"12"]
    with spawn_cli(tmp_path, *argv) as proc:
        both_started(tmp_path)
        proc.terminate()
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143, err
    for n in "12":
        assert pid_gone(int((tmp_path / f"pid.{n}").read_text()))


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
def test_hangup_or_quit_cancels_everything(tmp_path: Path, sig: signal.Signals) -> None:
    """The terminal or the session went away: the jobs (each in a session of its own, so
    the hangup does not reach them) are killed, not left running."""
    job = WAITER.format(dir=tmp_path)
    argv = ["-j", "2", "--grace", "0.5", "--", "sh", "-c", job, ":::", *"12"]
    with spawn_cli(tmp_path, *argv) as proc:
        both_started(tmp_path)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 128 + sig, err
    for n in "12":
        assert pid_gone(int((tmp_path / f"pid.{n}").read_text()))


def test_first_interrupt_starts_no_retry(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C: let the running jobs finish, start nothing more, not even a retry."""

    def send() -> None:
        wait_for(lambda: (tmp_path / "tries").exists(), "the first attempt")
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=send)
    thread.start()
    script = f'echo x >> "{tmp_path}/tries"; exit 3'
    rc, _, _ = run(
        capfd, "--retries", "5", "--backoff", "const:0.3", "--", "sh", "-c", script, ":::", "a"
    )
    thread.join()
    assert rc == 130
    assert (tmp_path / "tries").read_text().count("x") <= 2  # (the signal may come late)


def test_sigterm_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def send() -> None:
        wait_for((tmp_path / "started.1").exists, "the job to start")
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=send)
    thread.start()
    job = WAITER.format(dir=tmp_path)
    rc, _, err = run(capfd, "--grace", "0.5", "--", "sh", "-c", job, ":::", "1")
    thread.join()
    assert rc == 143
    assert "1 canceled" in summary(err)
    assert pid_gone(int((tmp_path / "pid.1").read_text()))


def test_a_retry_due_after_ctrl_c_cancels_only_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while jobs 1 and 2 run; then 1 fails, and its retry, due at once, is
    canceled instead of started, while 2 runs on to its end."""
    ended: list[int] = []
    job_ended = _feeder.Feeder._ended

    def spy(feeder: _feeder.Feeder, job: Job, task: Task[None]) -> None:
        job_ended(feeder, job, task)
        ended.append(job.seq)

    monkeypatch.setattr(_feeder.Feeder, "_ended", spy)
    seen_at_1s_end: list[list[int]] = []

    def release() -> None:
        (tmp_path / "release.1").touch()
        wait_for(lambda: 1 in ended, "job 1 to end")
        seen_at_1s_end.append(list(ended))
        (tmp_path / "release.2").touch()

    interrupter = Interrupter(monkeypatch)
    interrupter.when([tmp_path / "started.1", tmp_path / "started.2"], 1, release)
    script = (
        f'echo x >> "{tmp_path}/tries.$0"; touch "{tmp_path}/started.$0"; '
        f'while [ ! -e "{tmp_path}/release.$0" ]; do sleep 0.01; done; '
        '[ "$0" = 2 ] && echo "fin $0"'
    )
    rc, out, err = run(
        capfd, "-j", "2", "--retries", "2", "--backoff", "none", "--json",
        "--", "sh", "-c", script, ":::", "1", "2",
    )  # fmt: skip
    interrupter.thread.join()
    assert rc == 130
    assert seen_at_1s_end == [[1]]  # job 2 was still running
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for event in map(json.loads, out.splitlines()):
        by_seq.setdefault(event["seq"], []).append(event)
    assert [e["event"] for e in by_seq[1]] == ["pending", "started", "pending", "canceled"]
    assert by_seq[1][2]["error"] == "exit code 1"
    assert [e["event"] for e in by_seq[2]] == ["pending", "started", "done"]
    assert by_seq[2][-1]["stdout"] == "fin 2\n"
    assert (tmp_path / "tries.1").read_text() == "x\n"  # the retry never started
    assert "2 jobs: 1 done, 0 failed, 1 canceled, 1 retried" in summary(err)
