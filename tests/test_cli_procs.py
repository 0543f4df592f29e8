"""A job's processes (``_cli/_procs.py``, ``_cli/_capture.py``, ``_cli/_reap.py``): starting
its command, its pipes, retries, timeouts, and its process group killed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from asynctasklib._cli import _errors, _reap, _start
from cli_helpers import Interrupter, joblog_rows, pid_gone, run, summary, wait_for

if TYPE_CHECKING:
    import pytest


def test_command_that_cannot_start_fails_without_retries(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    rc, _, err = run(
        capfd, "--retries", "3", "--joblog", str(log), "--", "{}", ":::", "/nonexistent/cmd"
    )
    assert rc == 1
    assert "/nonexistent/cmd: No such file or directory" in err
    assert joblog_rows(log)[0][6:8] == ["127", "0"]  # Exitval, Signal


def test_retries_a_job_that_fails_the_first_time(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = (
        f'if [ -e "{tmp_path}/m.$0" ]; then echo ok $0; else touch "{tmp_path}/m.$0"; exit 1; fi'
    )
    log = tmp_path / "log"
    rc, out, err = run(
        capfd, "--retries", "2", "--backoff", "const:0", "--json", "--joblog", str(log),
        "--", "sh", "-c", script, ":::", "a",
    )  # fmt: skip
    assert rc == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["event"], e.get("attempt")) for e in events] == [
        ("pending", 0), ("started", 0), ("pending", 1), ("started", 1), ("done", None),
    ]  # fmt: skip
    assert events[2]["error"] == "exit code 1"
    assert events[-1]["stdout"] == "ok a\n"
    assert events[-1]["attempts"] == 2
    assert "1 done, 0 failed, 0 canceled, 1 retried" in summary(err)
    assert joblog_rows(log)[0][6:8] == ["0", "0"]


def test_retries_run_out(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    count = tmp_path / "count"
    started = time.monotonic()
    rc, out, err = run(
        capfd, "--retries", "2", "--backoff", "const:0.1",
        "--", "sh", "-c", f"echo x >> {count}; echo attempt; exit 7", ":::", "a",
    )  # fmt: skip
    assert rc == 1
    assert count.read_text() == "x\nx\n"  # --retries 2: two attempts in all, as GNU parallel
    assert out == "attempt\n"  # the last attempt's output only
    assert time.monotonic() - started >= 0.1  # one backoff wait
    assert "0 done, 1 failed, 0 canceled, 1 retried" in summary(err)


# A job whose child ignores SIGTERM: only SIGKILL of the group gets rid of it.
STUBBORN = '(trap "" TERM; exec sleep 60) & echo $! > "{dir}/child.$0"; wait'


def test_timeout_kills_the_process_group(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    started = time.monotonic()
    rc, _, err = run(
        capfd, "--timeout", "0.5", "--grace", "0.3", "--joblog", str(log), "--json",
        "--", "sh", "-c", STUBBORN.format(dir=tmp_path), ":::", "a",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert rc == 1
    child = int((tmp_path / "child.a").read_text())
    assert pid_gone(child), "the child that ignored SIGTERM is still there"
    assert elapsed >= 0.5 + 0.3  # the timeout, then the grace period before SIGKILL
    assert joblog_rows(log)[0][6:8] == ["-1", "15"]  # as GNU parallel: Exitval -1, Signal
    assert "0 done, 1 failed" in summary(err)


def test_timeout_is_retried(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    script = f'if [ -e "{tmp_path}/m" ]; then echo second; else touch "{tmp_path}/m"; sleep 60; fi'
    rc, out, err = run(
        capfd, "--timeout", "0.3", "--retries", "2", "--backoff", "none", "--grace", "0.2",
        "--", "sh", "-c", script, ":::", "a",
    )  # fmt: skip
    assert (rc, out) == (0, "second\n")
    assert "1 done, 0 failed, 0 canceled, 1 retried" in summary(err)


def test_processes_left_behind_by_a_job_are_killed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The job exits at once but leaves a background process in its group."""
    script = f'sleep 60 > /dev/null 2>&1 & echo $! > "{tmp_path}/bg"; echo leader done'
    rc, out, _ = run(capfd, "--grace", "5", "--", "sh", "-c", script, ":::", "a")
    assert (rc, out) == (0, "leader done\n")
    assert pid_gone(int((tmp_path / "bg").read_text()))


def test_an_input_with_a_nul_byte_fails_its_job_with_a_message(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "jobs.tsv"
    rc, out, err = run(capfd, "--joblog", str(log), "--", "echo", ":::", "a\0b", "c")
    assert rc == 1
    assert out == "c\n"
    assert "null byte" in err
    rows = sorted(joblog_rows(log))
    assert [(r[8], r[6]) for r in rows] == [("echo 'a\0b'", "126"), ("echo c", "0")]


def test_a_file_without_a_shebang_line_runs_with_bin_sh(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """As in a shell and in GNU parallel (and under uvloop, whose execvp does it itself)."""
    script = tmp_path / "no-shebang"
    script.write_text('echo "hi $0 $1"\n')
    script.chmod(0o755)
    rc, out, err = run(capfd, "--", str(script), ":::", "a")
    assert (rc, out) == (0, f"hi {script} a\n"), err


def test_cancel_during_the_grace_period_kills_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The timeout sent SIGTERM, which the job ignores; cancelling it then sends SIGKILL
    without waiting out the (long) grace period."""
    job = (
        f'trap "touch {tmp_path}/termed" TERM; echo $$ > "{tmp_path}/pid"; '
        "while :; do sleep 0.01; done"
    )
    interrupter = Interrupter(monkeypatch)
    interrupter.when([tmp_path / "termed"], 2)
    started = time.monotonic()
    rc, _, err = run(capfd, "--timeout", "0.2", "--grace", "30", "--", "sh", "-c", job, ":::", "x")
    interrupter.thread.join()
    assert rc == 130
    assert time.monotonic() - started < 15
    assert "1 canceled" in summary(err)
    assert pid_gone(int((tmp_path / "pid").read_text()))


def test_cancel_while_cleaning_up_after_the_leader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The leader exited, leaving a process that ignores SIGTERM: cancelling kills it now."""
    job = (
        f'(trap "touch {tmp_path}/termed" TERM; touch {tmp_path}/ready; '
        "while :; do sleep 0.01; done) > /dev/null & "
        f'echo $! > "{tmp_path}/bg"; while [ ! -e {tmp_path}/ready ]; do sleep 0.01; done'
    )
    interrupter = Interrupter(monkeypatch)
    interrupter.when([tmp_path / "termed"], 2)
    started = time.monotonic()
    rc, _, err = run(capfd, "--grace", "30", "--", "sh", "-c", job, ":::", "x")
    interrupter.thread.join()
    assert rc == 130
    assert time.monotonic() - started < 15
    assert "1 canceled" in summary(err)
    assert pid_gone(int((tmp_path / "bg").read_text()))


def test_small_helpers() -> None:
    assert _errors.describe_returncode(-9) == "killed by SIGKILL"
    assert _errors.describe_returncode(-99) == "killed by signal 99"
    assert _errors.describe_returncode(3) == "exit code 3"
    assert _reap._live_member_in_proc(os.getpgid(0))  # this very test run is in it
    assert not _reap._live_member_in_proc(2**22 + 12345)  # above any pid: no such group


def test_group_check_without_subreaper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Where we cannot adopt orphans, /proc tells live members from zombies."""
    monkeypatch.setattr(_reap, "_subreaper", False)
    monkeypatch.setattr(_start, "become_subreaper", lambda: False)
    script = f'sleep 60 > /dev/null 2>&1 & echo $! > "{tmp_path}/bg"; echo leader done'
    rc, out, _ = run(capfd, "--", "sh", "-c", script, ":::", "a")
    assert (rc, out) == (0, "leader done\n")
    bg = int((tmp_path / "bg").read_text())
    wait_for(lambda: not _reap._live_member_in_proc(bg), "the orphan to die")


def test_output_files_go_to_their_job_only_and_are_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """With --results and --files each job's process has its own files as stdout and
    stderr, and no other job's; the runner keeps none of them open."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    before = set(os.listdir("/proc/self/fd"))
    script = 'sleep 0.05; ls "/proc/$$/fd"; o=$(readlink "/proc/$$/fd/1"); echo "$o" >&2'
    inputs = [str(i) for i in range(8)]
    for flag in (["--results", "res"], ["--files"]):
        rc, out, err = run(capfd, "-j", "4", *flag, "--", "sh", "-c", script, ":::", *inputs)
        assert rc == 0, err
        assert set(os.listdir("/proc/self/fd")) == before
    for i in inputs:
        assert (tmp_path / "res" / "1" / i / "stdout").read_text() == "0\n1\n2\n"
        assert (tmp_path / "res" / "1" / i / "stderr").read_text().endswith(f"res/1/{i}/stdout\n")
    files = [Path(name) for name in out.splitlines()]
    assert [f.read_text() for f in files] == ["0\n1\n2\n"] * len(inputs)
    assert sorted(line for line in err.splitlines() if line.startswith("/")) == sorted(
        map(str, files)
    )


def test_a_job_gets_what_subprocess_gave_it(capfd: pytest.CaptureFixture[str]) -> None:
    """Started with posix_spawn: SIGPIPE at its default (Python ignores it, and `yes | head`
    would complain of a broken pipe), no signal blocked, and none of the descriptors the
    runner inherited (as subprocess's close_fds), only stdin from /dev/null."""
    given = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(given, True)
    script = (
        'yes | head -n 1; grep -E "^(SigIgn|SigBlk)" /proc/self/status; '
        "if [ -e /proc/self/fd/$0 ]; then echo fd open; else echo fd closed; fi; "
        "readlink /proc/self/fd/0"
    )
    try:
        rc, out, err = run(capfd, "--", "sh", "-c", script, ":::", str(given))
    finally:
        os.close(given)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "y"
    masks = dict(line.split(":\t") for line in lines[1:3])
    assert not int(masks["SigIgn"], 16) & (1 << (13 - 1)), masks  # SIGPIPE (13)
    assert int(masks["SigBlk"], 16) == 0, masks
    assert lines[3:] == ["fd closed", os.devnull]
    assert "Broken pipe" not in err


def test_an_orphan_is_adopted_by_the_main_thread_and_a_job_is_its_starters_child(
    tmp_path: Path,
) -> None:
    # What the reaper's per-job check relies on (`_reap._children(main_file)`):
    # Linux hands our orphans to the main thread, while a job started from another thread
    # is that thread's child, so the main thread's list holds the orphans and no job.
    import threading

    from asynctasklib._cli._spawn import Spawner

    if not _reap.become_subreaper():
        return  # (not Linux: nothing is adopted)
    ready = tmp_path / "orphan"
    script = f'(setsid sh -c "echo \\$\\$ > {ready}; exec sleep 30" &); exit 0'
    started: list[int] = []
    done = threading.Event()

    def starter() -> None:  # (it lives while the checks run, as the runner's does)
        started.append(Spawner([]).spawn("sh", ["sh", "-c", script], [], search=True))
        done.wait()

    thread = threading.Thread(target=starter)
    thread.start()
    wait_for(lambda: bool(started) and ready.exists() and ready.read_text().strip() != "",
             "the orphan's pid")  # fmt: skip
    leader, orphan = started[0], int(ready.read_text())
    main_file = _reap.main_children_file()
    try:
        assert leader in _reap._children()
        assert leader not in _reap._children(main_file)
        wait_for(lambda: orphan in _reap._children(main_file), "the orphan's adoption")
        assert orphan in _reap._children()
    finally:
        os.close(main_file)
        done.set()
        thread.join()
        os.waitpid(leader, 0)
        os.kill(orphan, 9)
        os.waitpid(orphan, 0)


def test_the_starting_thread_runs_calls_in_order_and_hands_back_each_outcome() -> None:
    import asyncio
    import threading

    from asynctasklib._cli._spawn import StartingThread

    calls: list[tuple[int, str]] = []
    gate = threading.Event()

    def job(n: int) -> int:
        gate.wait()  # (all are given before the first runs)
        calls.append((n, threading.current_thread().name))
        if n == 3:
            raise OSError(n, "cannot start")
        return n * 10

    async def main() -> list[int | BaseException]:
        starter = StartingThread(asyncio.get_running_loop())
        try:
            futures = [starter.start(job, n) for n in range(6)]
            gate.set()
            return await asyncio.gather(*futures, return_exceptions=True)
        finally:
            starter.close()

    outcomes = asyncio.run(main())
    assert [n for n, _ in calls] == list(range(6))  # in the order given
    assert {name for _, name in calls} == {"asynctasklib-spawn"}  # one thread, not ours
    assert outcomes[:3] == [0, 10, 20]
    assert outcomes[4:] == [40, 50]
    error = outcomes[3]
    assert isinstance(error, OSError)
    assert error.errno == 3
    assert not any(t.name == "asynctasklib-spawn" for t in threading.enumerate())  # closed


def test_readers_call_back_for_each_ready_descriptor_and_none_once_removed() -> None:
    import asyncio

    from asynctasklib._cli._capture import Readers

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        readers = Readers(loop)
        a_read, a_write = os.pipe()
        b_read, b_write = os.pipe()
        calls: list[str] = []
        both, last = asyncio.Event(), asyncio.Event()

        def on_a() -> None:
            calls.append("a:" + os.read(a_read, 10).decode())
            if calls[-1] == "a:4":
                last.set()
            if b_read in removable:  # b is ready too: its event in the same batch is dropped
                removable.discard(b_read)
                readers.remove(b_read)
                loop.call_soon(both.set)

        def on_b(name: str) -> None:
            calls.append(name + os.read(b_read, 10).decode())
            if b_read in removable:
                removable.discard(b_read)
                readers.remove(b_read)
                loop.call_soon(both.set)

        removable = {b_read}
        try:
            readers.add(a_read, on_a)
            readers.add(b_read, on_b, "b:")
            os.write(b_write, b"1")
            os.write(a_write, b"2")
            await asyncio.wait_for(both.wait(), 10)
            os.write(b_write, b"3")  # removed: no call
            os.write(a_write, b"4")
            await asyncio.wait_for(last.wait(), 10)
            readers.remove(a_read)
        finally:
            readers.close()
            for fd in (a_read, a_write, b_read, b_write):
                os.close(fd)
        return calls

    calls = asyncio.run(main())
    # b's first byte, read only if its callback came before a's; never its second
    assert calls[-1] == "a:4"
    assert calls[:-1] in (["a:2"], ["b:1", "a:2"])
