"""``asynctasklib run``: inputs, substitution, output, events, joblog, retries, timeouts,
halt-on-error, signals, dry run, and the progress view being off without a terminal.

Most tests call ``main(argv)`` in this process (so coverage sees them); those about the
real entry point, signals sent from outside, or a blocked ``rich`` import run the CLI as a
subprocess. Jobs are small ``sh`` scripts; tests wait on files the jobs create, never on
sleeps that merely hope something happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctasklib import ExponentialBackoff, _cli
from asynctasklib._cli import (
    JOBLOG_HEADER,
    _errors,
    _inputs,
    _options,
    _orchestrator,
    _output,
    _reap,
    _report,
    _shell,
    _template,
    main,
)

PY = sys.executable
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
    text = path.read_text()
    assert text.startswith(JOBLOG_HEADER)
    return [line.split("\t") for line in text.splitlines()[1:]]


# -- inputs ------------------------------------------------------------------------------


def test_inputs_after_triple_colon(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capfd, "-j", "2", "--", "echo", "x", ":::", "a", "b", "c")
    assert rc == 0
    assert sorted(out.splitlines()) == ["x a", "x b", "x c"]
    assert "3 jobs: 3 done, 0 failed, 0 canceled, 0 retried" in summary(err)


def test_inputs_from_arg_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    args = tmp_path / "args.txt"
    args.write_text("one\ntwo words\n\nlast-without-newline")
    rc, out, _ = run(capfd, "-k", "--arg-file", str(args), "--", "echo", "[{}]")
    assert rc == 0
    assert out.splitlines() == ["[one]", "[two words]", "[]", "[last-without-newline]"]


def test_inputs_from_stdin_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "stdin.txt"
    data.write_text("".join(f"{i}\n" for i in range(1, 51)))
    with data.open() as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        rc, out, _ = run(capfd, "-k", "-j", "4", "--", "echo")
    assert rc == 0
    assert out.splitlines() == [str(i) for i in range(1, 51)]
    with data.open() as stdin:  # --arg-file - is standard input too
        monkeypatch.setattr(sys, "stdin", stdin)
        rc, out, _ = run(capfd, "-k", "--arg-file", "-", "--", "echo")
    assert (rc, out.splitlines()[-1]) == (0, "50")


def test_stdin_pipe_is_read_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A job starts before standard input ends: inputs are not all read first."""
    read_fd, write_fd = os.pipe()
    first_ran = tmp_path / "ran.first"

    def producer() -> None:
        with os.fdopen(write_fd, "w") as w:
            w.write("first\n")
            w.flush()
            wait_for(first_ran.exists, "the first job to run while stdin is still open")
            w.write("second\nthird\n")

    thread = threading.Thread(target=producer)
    thread.start()
    with os.fdopen(read_fd) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        rc, out, _ = run(capfd, "-k", "--", "sh", "-c", f"touch {tmp_path}/ran.$0; echo $0")
        was_blocking = os.get_blocking(read_fd)
    thread.join()
    assert rc == 0
    assert out.splitlines() == ["first", "second", "third"]
    assert was_blocking, "the pipe was left in non-blocking mode"


def test_stdin_pipe_through_the_real_entry_point() -> None:
    proc = subprocess.run(
        cli("-k", "--", "echo", "got"),
        input="".join(f"line {i}\n" for i in range(200)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"got line {i}" for i in range(200)]


def test_stdin_dev_null_runs_nothing() -> None:
    """/dev/null is a character device that cannot be polled: read it plainly."""
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.run(
            cli("--", "echo"), stdin=devnull, capture_output=True, text=True, timeout=TIMEOUT
        )
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    assert "0 jobs" in summary(proc.stderr)


def test_empty_input_runs_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    rc, out, err = run(capfd, "-a", str(empty), "--", "echo")
    assert (rc, out) == (0, "")
    assert "0 jobs" in summary(err)


# -- the command ---------------------------------------------------------------------------


def test_placeholders_are_substituted(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "-k", "--", "echo", "{#}:{}", "x{}y", "{#}", ":::", "a", "b b", "{#}{}")
    assert rc == 0
    # An input that contains the placeholders is not substituted again.
    assert out.splitlines() == ["1:a xay 1", "2:b b xb by 2", "3:{#}{} x{#}{}y 3"]


def test_input_is_appended_without_braces(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "-k", "--", "printf", "<%s>", ":::", "a b", "c")
    assert rc == 0
    assert out == "<a b><c>"
    # {#} alone does not count: the input is still appended (the rule is about {}).
    rc, out, _ = run(capfd, "-k", "--", "echo", "n{#}", ":::", "a", "b")
    assert out.splitlines() == ["n1 a", "n2 b"]


def test_shell_quotes_the_input(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    nasty = ["it's", 'say "hi"', "$HOME", "a; touch pwned", "`id`", "tab\there", "*"]
    rc, out, _ = run(capfd, "-k", "--shell", "--", "printf '%s|' {} {#}; echo", ":::", *nasty)
    assert rc == 0
    assert out.splitlines() == [f"{v}|{i}|" for i, v in enumerate(nasty, 1)]
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()
    # Without {}, the quoted input is appended to the script.
    rc, out, _ = run(capfd, "--shell", "--", "echo $((1 + 1))", ":::", "a b")
    assert (rc, out) == (0, "2 a b\n")


def test_shell_runs_a_pipeline(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "-k", "--shell", "--", "echo {} | tr a-z A-Z", ":::", "ab", "cd")
    assert (rc, out.splitlines()) == (0, ["AB", "CD"])


def test_dry_run_prints_and_runs_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    rc, out, err = run(capfd, "--dry-run", "--", "touch", str(marker), "{#}", ":::", "a b", "c")
    assert rc == 0
    assert out.splitlines() == [f"touch {marker} 1 'a b'", f"touch {marker} 2 c"]
    assert not marker.exists()
    assert err == ""
    rc, out, _ = run(capfd, "--dry-run", "--shell", "--", "echo {} > /dev/null", ":::", "x y")
    assert out == "echo 'x y' > /dev/null\n"


def test_dry_run_reads_an_arg_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    args = tmp_path / "args"
    args.write_text("1\n2\n")
    rc, out, _ = run(capfd, "--dry-run", "-a", str(args), "echo")
    assert (rc, out) == (0, "echo 1\necho 2\n")


# -- output ------------------------------------------------------------------------------

CHUNKY = 'for i in 1 2 3 4; do echo "$0 out $i"; echo "$0 err $i" >&2; sleep 0.02; done'


def test_output_of_each_job_is_whole(capfd: pytest.CaptureFixture[str]) -> None:
    """Jobs that write in chunks, all at once: each job's lines stay together."""
    names = [f"job{i}" for i in range(8)]
    rc, out, err = run(capfd, "-j", "8", "--", "sh", "-c", CHUNKY, ":::", *names)
    assert rc == 0
    for stream, kind in ((out, "out"), (err, "err")):
        lines = [line for line in stream.splitlines() if line.startswith("job")]
        assert len(lines) == 32
        for start in range(0, 32, 4):
            block = lines[start : start + 4]
            name = block[0].split()[0]
            assert block == [f"{name} {kind} {i}" for i in range(1, 5)], stream


def _finish_in_reverse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> threading.Thread:
    """Release jobs n, n-1, ..., 1, each once the run has seen the previous one end."""
    ended: list[str] = []
    on_done = _orchestrator.Orchestrator._on_done

    def spy(runner: _orchestrator.Orchestrator, task_id: str, when: object) -> None:
        on_done(runner, task_id, when)  # type: ignore[arg-type]
        ended.append(task_id)

    monkeypatch.setattr(_orchestrator.Orchestrator, "_on_done", spy)

    def release() -> None:
        for k in range(n, 0, -1):
            (tmp_path / f"release.{k}").touch()
            wait_for(lambda k=k: str(k) in ended, f"job {k} to end")  # type: ignore[misc]

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_keep_order_against_finish_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Jobs finish in reverse order: output in input order only with -k."""
    n = 5
    script = f'while [ ! -e "{tmp_path}/release.$0" ]; do sleep 0.005; done; echo "$0"'
    inputs = [str(i) for i in range(1, n + 1)]
    for keep_order in (False, True):
        for f in tmp_path.glob("release.*"):
            f.unlink()
        releaser = _finish_in_reverse(tmp_path, monkeypatch, n)
        flags = ["-k"] if keep_order else []
        rc, out, _ = run(capfd, "-j", str(n), *flags, "--", "sh", "-c", script, ":::", *inputs)
        releaser.join()
        monkeypatch.undo()
        assert rc == 0
        assert out.splitlines() == (inputs if keep_order else inputs[::-1])


def test_stdout_has_only_job_output(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capfd, "--", "sh", "-c", "echo o$0; echo e$0 >&2", ":::", "1")
    assert (rc, out) == (0, "o1\n")
    assert err.splitlines()[0] == "e1"
    assert "1 jobs: 1 done" in summary(err)
    assert "jobs/s" in summary(err)


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
    log = tmp_path / "jobs.tsv"
    before = time.time()
    rc, _, _ = run(
        capfd, "--joblog", str(log), "--shell", "--", 'test "$(echo {})" = ok', ":::",
        "ok", "tab\there",
    )  # fmt: skip
    assert rc == 1
    rows = sorted(joblog_rows(log))
    assert [len(r) for r in rows] == [7, 7]
    (seq1, in1, code1, att1, start1, dur1, sig1), (seq2, in2, code2, _, _, _, sig2) = rows
    assert (seq1, in1, code1, att1, sig1) == ("1", "ok", "0", "1", "0")
    assert (seq2, in2, code2, sig2) == ("2", "tab\\there", "1", "0")
    assert before - 1 <= float(start1) <= time.time() + 1
    assert 0 <= float(dur1) < TIMEOUT


# -- exit codes and bad usage --------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no command given"),
        (["--", "echo", ":::", "a", ":::", "b"], "only one :::"),
        (["-j", "0", "echo"], "-j/--jobs: must be >= 1"),
        (["-j", "two", "echo"], "expected an integer"),
        (["--timeout", "0", "echo"], "--timeout: must be > 0"),
        (["--delay", "-1", "echo"], "must be >= 0"),
        (["--retries", "-1", "echo"], "must be >= 0"),
        (["--backoff", "wobbly", "echo"], "unknown policy 'wobbly'"),
        (["--backoff", "const:x", "echo"], "is not a number"),
        (["--backoff", "exp:-1", "echo"], "must be >= 0"),
        (["--no-such-option", "echo"], "unrecognized arguments"),
        (["--", "no-such-command-asynctasklib", ":::", "a"], "command not found"),
        (["-a", "/nonexistent/args", "echo"], "--arg-file: cannot read"),
        (["-a", "x", "--", "echo", ":::", "a"], "either after ::: or with --arg-file"),
        (["--joblog", "/nonexistent/dir/log", "echo", ":::", "a"], "--joblog: cannot write"),
    ],
)
def test_bad_usage_exits_2_and_runs_nothing(
    argv: list[str], message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capfd, *argv)
    assert rc == 2
    assert out == ""
    assert message in err
    assert " jobs: " not in err


def test_help_exits_0(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "--help")
    assert rc == 0
    assert "--halt-on-error" in out
    assert "{#}" in out


def test_backoff_forms(capfd: pytest.CaptureFixture[str]) -> None:
    opts = _options.parse(["--backoff", "exp", "--backoff-base", "0.5", "true"])
    assert isinstance(opts.backoff, ExponentialBackoff)
    assert opts.backoff.initial == 0.5
    assert _options.parse(["--backoff", "const:2", "true"]).backoff == 2.0
    assert _options.parse(["--backoff", "constant", "true"]).backoff == 1.0
    assert _options.parse(["--backoff", "none", "true"]).backoff == 0.0
    assert _options.parse(["--backoff", "0.25", "true"]).backoff == 0.25
    assert _options.parse(["--backoff-base", "3", "--backoff", "fixed", "true"]).backoff == 3.0
    assert _options.parse(["true"]).jobs == (os.cpu_count() or 1)


def test_exit_code_1_when_some_fail(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capfd, "-k", "--", "sh", "-c", "echo $0; exit $0", ":::", "0", "4", "0")
    assert rc == 1
    assert out.splitlines() == ["0", "4", "0"]
    assert "3 jobs: 2 done, 1 failed, 0 canceled" in summary(err)


def test_command_that_cannot_start_fails_without_retries(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    rc, _, err = run(
        capfd, "--retries", "3", "--joblog", str(log), "--", "{}", ":::", "/nonexistent/cmd"
    )
    assert rc == 1
    assert "/nonexistent/cmd: No such file or directory" in err
    assert joblog_rows(log)[0][2:4] == ["127", "1"]


# -- retries, timeouts, process groups -------------------------------------------------------


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
    assert joblog_rows(log)[0][2:4] == ["0", "2"]


def test_retries_run_out(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    count = tmp_path / "count"
    started = time.monotonic()
    rc, out, err = run(
        capfd, "--retries", "2", "--backoff", "const:0.1",
        "--", "sh", "-c", f"echo x >> {count}; echo attempt; exit 7", ":::", "a",
    )  # fmt: skip
    assert rc == 1
    assert count.read_text() == "x\nx\nx\n"
    assert out == "attempt\n"  # the last attempt's output only
    assert time.monotonic() - started >= 0.2  # two backoff waits
    assert "0 done, 1 failed, 0 canceled, 2 retried" in summary(err)


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
    row = joblog_rows(log)[0]
    assert row[2:4] == ["-1", "1"]
    assert row[6] == "15"
    assert "0 done, 1 failed" in summary(err)


def test_timeout_is_retried(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    script = f'if [ -e "{tmp_path}/m" ]; then echo second; else touch "{tmp_path}/m"; sleep 60; fi'
    rc, out, err = run(
        capfd, "--timeout", "0.3", "--retries", "1", "--backoff", "none", "--grace", "0.2",
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


# -- interrupts ----------------------------------------------------------------------------

WAITER = (
    'echo $$ > "{dir}/pid.$0"; touch "{dir}/started.$0"; '
    'while [ ! -e "{dir}/release" ]; do sleep 0.01; done; echo fin $0'
)


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
    assert sorted(row[6] for row in joblog_rows(log)) == ["15", "15"]
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


def test_first_interrupt_starts_no_retry(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
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


def test_an_input_with_a_nul_byte_fails_its_job_with_a_message(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "jobs.tsv"
    rc, out, err = run(capfd, "--joblog", str(log), "--", "echo", ":::", "a\0b", "c")
    assert rc == 1
    assert out == "c\n"
    assert "null byte" in err
    rows = joblog_rows(log)
    assert [(r[1], r[2]) for r in rows] == [("a\\0b", "126"), ("c", "0")]


def test_a_file_without_a_shebang_line_runs_with_bin_sh(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """As in a shell and in GNU parallel (and under uvloop, whose execvp does it itself)."""
    script = tmp_path / "no-shebang"
    script.write_text('echo "hi $0 $1"\n')
    script.chmod(0o755)
    rc, out, err = run(capfd, "--", str(script), ":::", "a")
    assert (rc, out) == (0, f"hi {script} a\n"), err


@pytest.mark.parametrize("closed", ["0<", "1>", "2>"])
def test_started_with_a_standard_stream_closed(closed: str) -> None:
    """Nothing to write to: the output is dropped, quietly; the exit status is the jobs'."""
    command = " ".join(shlex.quote(a) for a in cli("--", "echo", ":::", "a", "b"))
    proc = subprocess.run(
        ["sh", "-c", f"{command} {closed}&-"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_more_jobs_than_open_files_allow_run_fewer_at_once() -> None:
    command = " ".join(shlex.quote(a) for a in cli("-j", "300", "--", "true", ":::"))
    inputs = " ".join(str(i) for i in range(300))
    proc = subprocess.run(
        ["sh", "-c", f"ulimit -n 128 && exec {command} {inputs}"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning: -j 300 needs about" in proc.stderr
    assert "300 done, 0 failed" in proc.stderr


def test_closed_stdout_stops_the_run() -> None:
    """Like ``| head -1``: the reader goes away; the run stops quietly with 141."""
    with subprocess.Popen(
        cli("-j", "2", "--", "echo"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdin.write("first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "first\n"
        proc.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write("".join(f"{i}\n" for i in range(1000)))
            proc.stdin.flush()
        err = proc.stderr.read()
        assert proc.wait(timeout=TIMEOUT) == 141, err
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    assert "Traceback" not in err
    assert "Exception ignored" not in err


# -- the progress view stays off without a terminal -------------------------------------------


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


# -- in-process checks of the less travelled paths ---------------------------------------------


def test_pipe_input_pauses_and_resumes_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """More lines than the read-ahead limit; the last one has no newline."""
    monkeypatch.setattr(_inputs.PipeLines, "_HIGH", 4)
    read_fd, write_fd = os.pipe()

    def producer() -> None:
        with os.fdopen(write_fd, "w") as w:
            w.write("".join(f"{i}\n" for i in range(1, 40)) + "40")

    thread = threading.Thread(target=producer)
    thread.start()
    with os.fdopen(read_fd) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        rc, out, _ = run(capfd, "-k", "-j", "3", "--", "echo")
    thread.join()
    assert rc == 0
    assert out.splitlines() == [str(i) for i in range(1, 41)]


def test_input_that_fails_to_read(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """An I/O error after some inputs: those run, then the run ends with 1 and a message."""

    def lines() -> Iterator[str]:
        yield "a"
        raise OSError(5, "Input/output error")

    source = _inputs.Source(lines(), None, None)
    monkeypatch.setattr(_cli, "open_source", lambda opts, pipes: source)
    rc, out, err = run(capfd, "--", "echo")
    assert (rc, out) == (1, "a\n")
    assert "cannot read the inputs: [Errno 5] Input/output error" in err
    assert "1 jobs: 1 done" in summary(err)


def test_stdin_without_a_file_descriptor(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\nb"))
    rc, out, _ = run(capfd, "-k", "--", "echo")
    assert (rc, out) == (0, "a\nb\n")


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


class _ClosedStdout(io.StringIO):
    """A stdout whose reader went away."""

    def write(self, s: str) -> int:
        raise BrokenPipeError

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


def test_closed_stdout_in_process(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedStdout())
    rc, _, err = run(capfd, "-j", "1", "--", "echo", ":::", *map(str, range(20)))
    assert rc == 141
    assert "Traceback" not in err
    assert "20 jobs" not in summary(err)  # the rest was cancelled
    rc = main(["--dry-run", "--", "echo", ":::", "a"])
    assert rc == 141


def test_output_to_a_stream_without_a_buffer(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    fake = io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake)
    rc, _, _ = run(capfd, "--", "echo", ":::", "plain")
    assert (rc, fake.getvalue()) == (0, "plain\n")


def test_ordered_output_flushes_what_never_got_its_turn(
    capfd: pytest.CaptureFixture[str],
) -> None:
    ordered = _output.Ordered(_output.Sink())
    ordered.put(3, b"three\n", b"")
    ordered.put(1, b"one\n", b"err one\n")
    ordered.flush()  # job 2 never ran
    out, err = capfd.readouterr()
    assert (out, err) == ("one\nthree\n", "err one\n")


def test_output_beyond_the_memory_budget_waits_in_one_file() -> None:
    size = 2 * _output._BLOCK  # chunks this big are kept as they come, not gathered
    a, b, c = (bytes([n]) * size for n in b"abc")
    store = _output.Store(budget=2 * _output._cost(a) + 100)
    small, big = _output.Spool(store, a), _output.Spool(store)
    assert store.in_memory == _output._cost(a)
    big.append(b)
    big.append(c)  # over the budget: big's parts go to the file, small stays
    assert store.in_memory == _output._cost(a)
    assert (small.getvalue(), big.getvalue()) == (a, b + c)
    assert big._parts == [(0, 2 * size)]  # (written one after the other: one extent)
    small.append(b"678")
    assert store.in_memory == _output._cost(a) + _output._cost(bytearray(b"678"))
    assert list(small.chunks()) == [a, b"678"]
    assert store.in_file == 2 * size
    big.release()
    small.release()
    assert store.in_memory == 0
    assert store.in_file == 0
    assert not big
    assert not small
    # nothing waits in the file any more: it is emptied, not left to grow with the run
    assert store._file is not None
    assert os.fstat(store._file.fileno()).st_size == 0
    again = _output.Spool(store, b"x" * store.budget)
    assert again.getvalue() == b"x" * store.budget
    assert os.fstat(store._file.fileno()).st_size == store.budget
    store.close()


def test_keep_order_output_spilled_to_a_file_comes_out_whole_and_in_order(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """With --keep-order, the outputs of jobs that finished early wait for their turn;
    beyond the run's memory budget they wait in a file, and come out the same."""
    monkeypatch.setattr(_output.Store, "BUDGET", 3000)
    spilled: list[int] = []
    spill = _output.Store.spill

    def counting_spill(store: _output.Store, data: bytes) -> tuple[int, int]:
        spilled.append(len(data))
        return spill(store, data)

    monkeypatch.setattr(_output.Store, "spill", counting_spill)
    files = {"a": 500, "b": 4000, "c": 2500, "d": 1200}  # more than the budget in all
    script = (
        "import sys; n, c = sys.argv[1].split(); "
        "sys.stdout.write(c * int(n) + '\\n'); sys.stderr.write('err ' + c + '\\n')"
    )
    argv = [f"{n} {name}" for name, n in files.items()]
    rc, out, err = run(
        capfd, "-j", "4", "--keep-order", "--", sys.executable, "-c", script, ":::", *argv
    )
    assert rc == 0
    assert sum(spilled) >= 4001  # at least b's output went through the file
    assert out == "".join(name * n + "\n" for name, n in files.items())
    assert [line for line in err.splitlines() if line.startswith("err")] == [
        f"err {name}" for name in files
    ]


def test_pipe_lines_arriving_in_pieces() -> None:
    """A line split over many reads is put together once (a long line used to be re-joined
    on every read: quadratic)."""
    loop = asyncio.new_event_loop()
    try:
        lines = _inputs.PipeLines(loop)
        for piece in (b"ab", b"c", b"\nd", b"e\n\nf", b"g"):
            lines.data_received(piece)
        lines.eof_received()
        assert list(lines._lines) == [b"abc", b"de", b"", b"fg"]
    finally:
        loop.close()


def test_small_helpers() -> None:
    assert _errors.describe_returncode(-9) == "killed by SIGKILL"
    assert _errors.describe_returncode(-99) == "killed by signal 99"
    assert _errors.describe_returncode(3) == "exit code 3"
    assert _report._tsv("a\tb\nc\\d\r") == "a\\tb\\nc\\\\d\\r"
    assert _reap._live_member_in_proc(os.getpgid(0))  # this very test run is in it
    assert not _reap._live_member_in_proc(2**22 + 12345)  # above any pid: no such group


def test_group_check_without_subreaper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Where we cannot adopt orphans, /proc tells live members from zombies."""
    monkeypatch.setattr(_reap, "_subreaper", False)
    monkeypatch.setattr(_cli, "become_subreaper", lambda: False)
    script = f'sleep 60 > /dev/null 2>&1 & echo $! > "{tmp_path}/bg"; echo leader done'
    rc, out, _ = run(capfd, "--", "sh", "-c", script, ":::", "a")
    assert (rc, out) == (0, "leader done\n")
    bg = int((tmp_path / "bg").read_text())
    wait_for(lambda: not _reap._live_member_in_proc(bg), "the orphan to die")


def test_entry_point_dispatch(capfd: pytest.CaptureFixture[str]) -> None:
    from asynctasklib.__main__ import main as entry

    assert entry(["run", "--", "echo", ":::", "via entry"]) == 0
    assert capfd.readouterr().out == "via entry\n"
    assert entry([]) == 2
    assert entry(["--help"]) == 0
    assert "run" in capfd.readouterr().err
    assert entry(["nonsense"]) == 2


# -- the progress view, in process, on a pseudo-terminal --------------------------------------


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
                "-j", "2", "--retries", "1", "--backoff", "none", "--halt-on-error",
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


def test_fit_jobs_raises_the_soft_limit_or_runs_fewer(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import resource

    limits = {"soft": 128, "hard": 4096}
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))

    def setrlimit(_: int, new: tuple[int, int]) -> None:
        limits["soft"] = new[0]

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert _cli._fit_jobs(100) == 100  # the soft limit was raised to what it needs
    assert limits["soft"] == _cli.FDS_KEPT + _cli.FDS_PER_JOB * 100
    assert capfd.readouterr().err == ""
    limits.update(soft=128, hard=128)
    assert _cli._fit_jobs(100) == (128 - _cli.FDS_KEPT) // _cli.FDS_PER_JOB
    assert "warning: -j 100 needs about" in capfd.readouterr().err


def test_ensure_std_streams_puts_dev_null_where_a_stream_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, int, int]] = []

    def fcntl_(fd: int, cmd: int) -> int:
        if fd == 1:
            raise OSError(9, "Bad file descriptor")  # closed
        return os.O_RDONLY if fd == 2 else os.O_RDWR  # 2: read-only, as good as closed

    monkeypatch.setattr(_cli.fcntl, "fcntl", fcntl_)
    monkeypatch.setattr(_cli.os, "open", lambda path, flags: 99)
    monkeypatch.setattr(_cli.os, "dup2", lambda a, b: calls.append(("dup2", a, b)))
    monkeypatch.setattr(_cli.os, "close", lambda fd: calls.append(("close", fd, 0)))
    monkeypatch.setattr(sys, "stdout", None)
    _cli._ensure_std_streams()
    assert calls == [("dup2", 99, 1), ("close", 99, 0), ("dup2", 99, 2), ("close", 99, 0)]
    assert sys.stdout is not None
    assert sys.stdout.fileno() == 1


# -- no input runs as code; unsupported GNU parallel syntax is refused ------------------------

# Inputs that run `touch PWNED` if they reach a shell as code, in any quoting context.
HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "a b; touch PWNED",
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "'\"$(touch PWNED)\"'",
    "\ntouch PWNED\n",
    "x\\",
    "\\'",
    "it's",
    "*",
    "~",
    "a,b",
    "if",
    "PATH=/nonexistent",
    "",
    "caf\udcc3\udca9 \udcff",  # invalid UTF-8 (surrogateescape)
]
SHELLS = [s for s in ("/bin/sh", "dash", "bash", "zsh", "ksh", "mksh") if shutil.which(s)]


@pytest.mark.parametrize(
    ("template", "expect"),
    [
        ("printf '<%s>' {}", "<{}>"),
        ("printf '<%s>' \"{}\"", "<{}>"),
        ("printf '<%s>' '{}'", "<{}>"),
        ("printf '<%s>' x{}y", "<x{}y>"),
        ("printf '<%s>' \"a {} b\"", "<a {} b>"),
        ("printf '<%s>' 'a {} b'", "<a {} b>"),
        ("printf '<%s>' \"$(printf '%s.' {})\"", "<{}.>"),
        ("printf '<%s>' \"$(printf '%s.' \"{}\")\"", "<{}.>"),
        ("v={}; printf '<%s>' \"$v\"", "<{}>"),
        ("printf '<%s>'", "<{}>"),  # appended
    ],
)
def test_shell_input_never_runs_as_code_whatever_the_quotes(
    template: str, expect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    rc = main(["-k", "--shell", "--", template, ":::", *HOSTILE])
    out, err = capfdbinary.readouterr()
    assert rc == 0, err
    assert out == b"".join(os.fsencode(expect.replace("{}", v)) for v in HOSTILE)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["sh", "-c", "printf '<%s>' x{}y"],
        ["sh", "-ec", "printf '<%s>' \"x{}y\""],
        ["/bin/sh", "-e", "-o", "nounset", "-c", "printf '<%s>' 'x{}y'"],
        ["env", "LC_ALL=C", "sh", "-c", "printf '<%s>' x{}y"],
        ["sh", "-c", "printf '<%s>' \"$1\"", "sh", "x{}y"],  # as an argument: no quoting
        ["printf", "<%s>", "x{}y"],
    ],
)
def test_a_shell_c_script_in_the_command_gets_the_input_quoted(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    rc = main(["-k", "--", *command, ":::", *HOSTILE])
    out, err = capfdbinary.readouterr()
    assert rc == 0, err
    assert out == b"".join(b"<x" + os.fsencode(v) + b"y>" for v in HOSTILE)
    assert not (tmp_path / "PWNED").exists()


def test_the_sh_c_example_of_the_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run(capfd, "sh", "-c", "echo x{}y", ":::", "$(touch PWNED)")
    assert (rc, out) == (0, "x$(touch PWNED)y\n")
    rc, out, _ = run(capfd, "--shell", "--", 'echo "{}"', ":::", "$(touch PWNED)")
    assert (rc, out) == (0, "$(touch PWNED)\n")
    assert not (tmp_path / "PWNED").exists()
    rc, out, _ = run(capfd, "--dry-run", "--", "sh", "-c", "echo x{}y", ":::", "a b")
    assert out == "sh -c 'echo x'\"'\"'a b'\"'\"'y'\n"


# Each context, and what the script prints there for an input v (NUL-separated).
CONTEXTS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("printf '%s\\0' {}", lambda v: v),
    ('printf "%s\\0" "{}"', lambda v: v),
    ("printf '%s\\0' '{}'", lambda v: v),
    ("printf '%s\\0' x{}y", lambda v: b"x" + v + b"y"),
    ("printf '%s\\0' \"a {} b\"", lambda v: b"a " + v + b" b"),
    ("printf '%s\\0' 'a {} b'", lambda v: b"a " + v + b" b"),
    ("printf '%s\\0' \"x\"{}'y'", lambda v: b"x" + v + b"y"),
    ("printf '%s\\0' '\"'{}\"'\"", lambda v: b'"' + v + b"'"),
    ("printf '%s\\0' \"$(printf '%s.' {})\"", lambda v: v + b"."),
    ("printf '%s\\0' \"$(printf '%s.' \"{}\")\"", lambda v: v + b"."),
    ("printf '%s\\0' \"$(printf '%s.' '{}')\"", lambda v: v + b"."),
    ("printf '%s\\0' $(printf '%s' {#})", lambda v: b"1"),
    ("w={}; printf '%s\\0' \"$w\"", lambda v: v),
    ("printf '%s\\0' {} | cat", lambda v: v),
]
SCRIPT = "\n".join(c for c, _ in CONTEXTS)


@pytest.mark.timeout(300)  # a few shells per example, on a loaded machine
@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=12).filter(lambda b: b"\0" not in b),
            st.sampled_from([os.fsencode(h) for h in HOSTILE]),
            st.sampled_from([b"'", b'"', b"\\", b"$", b"`", b"\n", b"}", b"(", b"#", b"\xff"]),
        ),
        max_size=6,
    ).map(b"".join)
)
def test_quoting_property_every_context_every_shell(value: bytes) -> None:
    text = os.fsdecode(value)
    expected = b"".join(expect(value) + b"\0" for _, expect in CONTEXTS)
    with tempfile.TemporaryDirectory() as cwd:
        runs = [_template.Template([SCRIPT], shell=True).argv(1, text)]
        for shell in SHELLS:
            runs.append(_template.Template([shell, "-c", SCRIPT], shell=False).argv(1, text))
        for argv in runs:
            done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TIMEOUT)
            assert (argv[0], done.stdout, done.stderr) == (argv[0], expected, b"")
            assert os.listdir(cwd) == []  # nothing else happened


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("echo `echo {}`", "inside backquotes"),
        ("echo $'{}'", "inside $'...'"),
        ("echo ${x:-{}}", "inside ${...}"),
        ('echo "${x:-{}}"', "inside ${...}"),
        ("echo $(( {} + 1 ))", "inside arithmetic"),
        ("(( x = {} ))", "inside arithmetic"),
        ("echo $[ {} ]", "inside arithmetic"),
        ("echo hi # {}", "in a comment"),
        ("echo hi #", "in a comment"),  # where the input would be appended
        ("cat <<EOF\n{}\nEOF", "after a here-document"),
        ("echo \\{}", "right after a backslash"),
        ('echo "\\{}"', "right after a backslash"),
        ("echo ${}", "right after $"),
        ("echo $${#}", "right after $"),
        ('echo "${}"', "right after $"),
        ("echo \\\n{}", "after a backslash-newline"),
        ('echo "$\\\n(echo {})"', "after a backslash-newline"),
        ('echo "$(case a in a) echo {} ;; esac)"', "after a case statement"),
        ("echo \"${x:-'a'}\" {}", "after quotes inside"),
        ("echo $(( '1' )) {}", "after quotes inside arithmetic"),
        ("[[ {} -eq 1 ]]", "inside [[ ... ]]"),
        ("if [[ ( a == \"{}\" ) ]]; then :; fi", "inside [[ ... ]]"),
    ],
)
def test_shell_contexts_that_cannot_be_made_safe_are_refused(
    script: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    forms = [["--shell", "--", script], ["--", "sh", "-c", script]]
    for argv in forms if "{" in script else forms[:1]:  # (argv: an appended input is $0)
        rc, out, err = run(capfd, *argv, ":::", "$(touch PWNED)")
        assert (rc, out) == (2, ""), err
        assert f"cannot put the input safely in shell code {why}" in err
        assert " jobs: " not in err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("script", "output"),
    [
        ("echo `echo {#}` $(( {#} + 1 )) # {#}", "1 2\n"),  # the job number is digits
        ("echo $# ${#x} $$x {}" , "0 0 {pid}x v\n"),
        ("case {} in v) echo ok;; esac", "ok\n"),  # (not inside $(...))
        ("printf '%s\\n' {} <<< here", "v\n"),
        ("x=1; echo $((x+1)) {}", "2 v\n"),
        ("echo '$' {}", "$ v\n"),
        ("[[ a == a ]] && [ {} = v ] && echo ok", "ok\n"),  # after ]], and [ ... ]
    ],
)
def test_shell_code_around_the_input_that_is_fine(
    script: str, output: str, capfd: pytest.CaptureFixture[str]
) -> None:
    bash = "<<<" in script or "[[" in script
    if bash and not shutil.which("bash"):
        pytest.skip("needs bash")
    words = ["bash" if bash else "sh", "-c", script]
    rc, out, err = run(capfd, "--", *words, ":::", "v")
    assert rc == 0, err
    if "{pid}" in output:
        out = re.sub(r"^0 0 \d+x", "0 0 {pid}x", out)
    assert out == output


P, D, S, N = _shell.PLAIN, _shell.DOUBLE, _shell.SINGLE, _shell.SEQ


@pytest.mark.parametrize(
    ("script", "kinds"),
    [
        ("echo {} \"{}\" '{}' {#}", [P, D, S, N]),
        ("# a comment '\n{}", [P]),  # the comment ends at the newline
        ("echo `a \\` b` {}", [P]),  # an escaped backquote inside backquotes
        ('echo $"x {}"', [D]),  # bash's $"..."
        ("echo $(( (1 + 2) * 3 )) {}", [P]),
        ("(( (x) )); echo {}", [P]),
        ("echo ${x:-'}'} ${y:-${z}} \"${w#\\}}\" {}", [P]),
        ('echo "$(echo "{}")" "$(echo {})"', [D, P]),
        ("echo $( (echo a) ) {}", [P]),
        ("echo a#b {}", [P]),  # not a comment: # inside a word
        ("echo $# {}", [P]),
        ("echo '$'{}", [P]),
        ("echo \\\\{}", [P]),  # an escaped backslash, then {}
        ("echo \"a\\\"{}\"", [D]),
        ("echo $[1+[2]] {}", [P]),
        ("echo \"`echo {#}`\" $(({#}))", [N, N]),
    ],
)
def test_shell_fields_follow_the_quoting(script: str, kinds: list[int]) -> None:
    assert [how for _, _, how in _shell.shell_fields(script)] == kinds


def test_shells_with_other_quoting_rules_are_refused(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(_errors.UsageError, match="cannot quote the input for fish's -c code"):
        _template.Template(["fish", "-c", "echo {}"], shell=False)
    with pytest.raises(_errors.UsageError, match="for csh's -c code"):
        _template.Template(["env", "/bin/csh", "-c", "echo {}"], shell=False)
    # As an argument it is fine (no shell reads it as code).
    opts = _template.Template(["fish", "-c", "echo $argv", "{}"], shell=False)
    assert opts.argv(1, "$(x)") == ["fish", "-c", "echo $argv", "$(x)"]


def test_quoting_helpers() -> None:
    q = _template.sh_quote
    assert [q("abc"), q("a/b.c-1"), q("")] == ["abc", "a/b.c-1", "''"]
    # Reserved words, assignments and brace lists are quoted although shlex would not.
    assert [q("if"), q("A=1"), q("a,b"), q("it's")] == ["'if'", "'A=1'", "'a,b'", "'it'\"'\"'s'"]
    assert _errors.show("a\udcffb") == "'a\\xffb'"
    assert _errors.show("a\nb") == "'a\\nb'"
    assert _errors.show("ok") == "ok"
    # The -c word of a shell, after its options; none without -c.
    index = _template.shell_script_index
    assert index(["sh", "-c", "s"], 0) == 2
    assert index(["bash", "--norc", "-o", "pipefail", "-ec", "s", "a0"], 0) == 5
    assert index(["bash", "--rcfile", "f", "-c", "--", "s"], 0) == 5
    assert index(["sh", "+x", "-c", "-", "s"], 0) == 4
    assert index(["sh", "script.sh", "-c"], 0) is None
    assert index(["sh", "-c"], 0) is None


def _parallel(tmp_path: Path, *argv: str) -> bytes:
    env = {**os.environ, "HOME": str(tmp_path), "PARALLEL_SHELL": "/bin/sh"}
    done = subprocess.run(
        ["parallel", "--will-cite", "-k", "-j1", *argv],
        cwd=tmp_path, env=env, capture_output=True, timeout=240, check=False,  # (slow start)
    )  # fmt: skip
    return done.stdout


needs_parallel = pytest.mark.skipif(shutil.which("parallel") is None, reason="needs GNU parallel")


@needs_parallel
@pytest.mark.timeout(300)  # GNU parallel is slow to start on a loaded machine
def test_output_matches_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Where GNU parallel's own quoting is right (``{}`` outside quotes) the output is the
    same, hostile inputs included. Inside "..." or '...' parallel pastes its quoted value
    in (so `echo "{}"` prints the quotes, and runs `$(...)`); there the output is the same
    for inputs that need no quoting, and is the input itself for the others."""
    monkeypatch.chdir(tmp_path)
    plain = ["abc", "a.b", "x-1", "/tmp/f_2"]
    cases = [  # (one script per parallel run: each takes a while to start)
        ("echo {}; echo x{}y; echo {} {#}", HOSTILE),
        ("echo \"{}\"; echo '{}'; echo \"a {} b\"; echo 'a {} b'", plain),
    ]
    for template, values in cases:
        values = [v for v in values if "\n" not in v]  # (parallel splits ::: a\nb in two)
        theirs = _parallel(tmp_path, template, ":::", *values)
        rc = main(["-k", "-j1", "--shell", "--", template, ":::", *values])
        ours = capfdbinary.readouterr().out
        assert (template, rc, ours) == (template, 0, theirs)
        assert not (tmp_path / "PWNED").exists()


# Brace forms: GNU parallel (without --plus) replaces the first group, not the second.
REPLACEMENT_STRINGS = ["{.}", "{/}", "{//}", "{/.}", "{%}", "{1}", "{2.}", "{-1}", "{1 }",
                       "{3/.}", "{0#}", "{12//}", "{1%}", "{=$_.=\"z\"=}", "{=1 $_=}"]  # fmt: skip
NOT_REPLACEMENT_STRINGS = ["{a,b}", "${HOME}", "{print $1}", "{..}", "{+/}", "{##}", "{ }",
                           "{ 1}", "{1..5}", "{+1}", "{1=$_=}", "{=", "{x}"]  # fmt: skip


@pytest.mark.parametrize("brace", REPLACEMENT_STRINGS)
def test_unsupported_replacement_strings_are_refused(
    brace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    shell = ["--shell", f"touch {marker} {brace}"]
    for argv in (["--", "touch", str(marker), f"x{brace}y"], shell):
        rc, out, err = run(capfd, *argv, ":::", "a")
        assert (rc, out) == (2, "")
        assert f"the replacement string {brace} is not supported" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("brace", NOT_REPLACEMENT_STRINGS)
def test_braces_that_are_not_replacement_strings_are_passed_on(
    brace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capfd, "--", "printf", "%s|", brace, ":::", "a")
    assert (rc, out) == (0, f"{brace}|a|"), err


@needs_parallel
@pytest.mark.timeout(300)
def test_replacement_strings_are_those_of_gnu_parallel(tmp_path: Path) -> None:
    braces = REPLACEMENT_STRINGS + NOT_REPLACEMENT_STRINGS + ["{}", "{#}"]
    # Few parallel runs (each takes a while to start): the braces as words of one command,
    # except those with {= or =}, which parallel joins across words: one run each.
    perl = [b for b in braces if "{=" in b or "=}" in b]
    groups = [[b for b in braces if b not in perl]] + [[b] for b in perl]
    for group in groups:
        words = [f"<{i}:{brace}>" for i, brace in enumerate(group)]
        line = os.fsdecode(_parallel(tmp_path, "--dry-run", "echo", *words, ":::", "d/a.b"))
        assert line.startswith("echo <0:")
        for word, brace in zip(words, group, strict=True):
            replaced = word not in line
            try:
                _template.Template(["echo", word], shell=False)
                refused = False
            except _errors.UsageError:
                refused = True
            assert (brace, replaced) == (brace, refused or brace in ("{}", "{#}"))


def test_awk_and_shell_braces_still_run(capfd: pytest.CaptureFixture[str]) -> None:
    awk = ["awk", "-v", "v={}", "BEGIN { print v } {print $1}", "/dev/null"]
    rc, out, _ = run(capfd, "--", *awk, ":::", "x")
    assert (rc, out) == (0, "x\n")
    rc, out, err = run(capfd, "--shell", "--", "echo ${HOME:+set} {a,b}", ":::", "x")
    assert (rc, out) == (0, "set {a,b} x\n"), err  # (sh: no brace expansion)


def test_gzip_example_of_the_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a").write_text("A")
    rc, _, err = run(capfd, "--shell", "--", "gzip -c {} > {.}.gz", ":::", "a")
    assert rc == 2
    assert "{.}" in err
    assert os.listdir(".") == ["a"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gzip", "::::", "list.txt"], "GNU parallel's :::: is not supported"),
        (["echo", ":::", "a", ":::+", "b"], "GNU parallel's :::+ is not supported"),
        (["echo", "::::+", "f"], "GNU parallel's ::::+ is not supported"),
        (["-j", "+1", "echo", ":::", "a"], "'+1': GNU parallel's -j +N, -N and N% are not"),
        (["-j", "-1", "echo", ":::", "a"], "'-1': GNU parallel's -j +N"),
        (["-j", "50%", "echo", ":::", "a"], "'50%': GNU parallel's -j +N"),
    ],
)
def test_unsupported_gnu_parallel_syntax_is_refused(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    Path("list.txt").write_text("x\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("data\n"))
    rc, out, err = run(capfd, *argv)
    assert (rc, out) == (2, "")
    assert message in err
    assert sorted(os.listdir(".")) == ["list.txt"]  # gzip did not compress list.txt


def test_a_command_line_in_one_string_gets_a_hint(capfd: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capfd, "echo hi", ":::", "a")
    assert rc == 2
    assert "command not found: 'echo hi' (a command line in one string needs --shell)" in err


# -- messages, --help and --version -----------------------------------------------------------


def test_a_program_name_that_is_not_utf8_and_cannot_start(
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    rc = main(["--", "{}", ":::", "/nonexistent/\udcff"])
    _, err = capfdbinary.readouterr()
    assert rc == 1
    assert b"asynctasklib: /nonexistent/\xff: No such file or directory\n" in err
    assert b"codec" not in err
    rc = main(["--", "/nonexistent/\udcff", ":::", "a"])
    _, err = capfdbinary.readouterr()
    assert rc == 2
    assert b"command not found: '/nonexistent/\\xff'" in err


def test_top_level_help_goes_to_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    from asynctasklib.__main__ import main as entry

    assert entry(["--help"]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("usage: asynctasklib {demo,run}")
    assert err == ""
    assert entry([]) == 2  # no command: usage on stderr
    out, err = capfd.readouterr()
    assert (out, err.startswith("usage: asynctasklib")) == ("", True)


def test_version(capfd: pytest.CaptureFixture[str]) -> None:
    import asynctasklib
    from asynctasklib.__main__ import main as entry

    expected = f"asynctasklib {asynctasklib.__version__}\n"
    assert entry(["--version"]) == 0
    assert capfd.readouterr() == (expected, "")
    assert entry(["run", "--version"]) == 0
    assert capfd.readouterr() == (expected, "")
    done = subprocess.run([PY, "-m", "asynctasklib", "--version"], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, expected)


# -- why a job failed ----------------------------------------------------------------------


def test_a_failed_job_says_why_after_its_own_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    script = 'echo "out $0"; echo "err $0" >&2; [ "$0" = 0 ]'
    rc, out, err = run(capfd, "-k", "--", "sh", "-c", script, ":::", "0", "3", "it's")
    assert rc == 1
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
        capfd, "--retries", "1", "--backoff", "none", "--", "sh", "-c", "exit 5", ":::", "x"
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
