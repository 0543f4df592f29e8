"""The command line of ``asynctasklib run`` (``_cli/_options.py``): bad usage,
``--backoff``, GNU parallel's syntax that is not supported, a command not found.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asynctasklib import ExponentialBackoff
from asynctasklib._cli import _jobslots, _options, main
from asynctasklib._cli._jobslots import CPUS as DEFAULT_SLOTS
from asynctasklib._cli._jobslots import JobSlots
from cli_helpers import PARALLEL, TIMEOUT, cli, needs_parallel, run


def test_timeout_as_gnu_parallel_reads_it() -> None:
    """Seconds, with GNU parallel's units (d, h, m, s, in any case), or N% of the median."""
    for text, seconds, pct in (("2.5", 2.5, None), ("1h2M3.5s", 3723.5, None),
                               ("1d", 86400.0, None), ("150%", None, 1.5)):  # fmt: skip
        opts = _options.parse(["--timeout", text, "echo"])
        assert (opts.timeout, opts.timeout_pct) == (seconds, pct)


def test_delay_as_gnu_parallel_reads_it() -> None:
    """Seconds, with GNU parallel's units, as --timeout (test_cli_oracle_everyday.py)."""
    for text, seconds in (("0", 0.0), ("0.25", 0.25), ("0.5s", 0.5), ("1m2S", 62.0)):
        assert _options.parse(["--delay", text, "echo"]).delay == seconds


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no command given"),
        (["-j", "two", "echo"], "-j/--jobs: expected N, +N, -N or N%, got 'two'"),
        (["-j", "1.5", "echo"], "-j/--jobs: expected N, +N, -N or N%, got '1.5'"),
        (["-j", "+1.5", "echo"], "-j/--jobs: expected N, +N, -N or N%"),
        (["--timeout", "inf", "echo"], "--timeout: must be a finite number, got 'inf'"),
        (["--timeout", "nan", "echo"], "--timeout: must be a finite number"),
        (["--delay", "1e400", "echo"], "--delay: must be a finite number"),
        (["--retries", "1.5", "echo"], "--retries: expected an integer, got '1.5'"),
        (["-a", ":::", "echo"], "-a/--arg-file: expected a value, got ':::'"),
        (["--joblog", ":::", "echo"], "--joblog: expected a value, got ':::'"),
        (["--backoff", ":::", "echo"], "--backoff: expected a value, got ':::'"),
        (["--grace", "-1", "echo"], "--grace: must be >= 0, got '-1'"),
        (["--backoff-base", "x", "echo"], "--backoff-base: expected a number of seconds"),
        (["--json=1", "echo"], "--json: ignored explicit argument '1'"),
        (["--retries"], "--retries: expected one argument"),
        (["--timeout", "0", "echo"], "--timeout: must be > 0"),
        (["--timeout", "0%", "echo"], "--timeout: must be > 0%, got '0%'"),
        (["--timeout", "5x", "echo"], "--timeout: expected a number of seconds, got '5x'"),
        (["--delay", "-1", "echo"], "must be >= 0"),
        (["--retries", "-1", "echo"], "must be >= 0"),
        (["--backoff", "wobbly", "echo"], "unknown policy 'wobbly'"),
        (["--backoff", "const:x", "echo"], "is not a number"),
        (["--backoff", "exp:-1", "echo"], "must be >= 0"),
        (["--no-such-option", "echo"], "unrecognized arguments"),
        (["--", "no-such-command-asynctasklib", ":::", "a"], "command not found"),
        (["-a", "/nonexistent/args", "echo"], "--arg-file: cannot read"),
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
    assert _options.parse(["true"]).jobs == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-j", "list.txt", "echo", ":::", "a"], "'list.txt': GNU parallel's -j FILE is not"),
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


def test_a_command_line_in_one_string_runs_in_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """As GNU parallel runs it (test_cli_oracle_everyday.py): the input quoted, as with
    --shell. Not a program whose name has a space in it, nor with -q (a hint then)."""
    monkeypatch.chdir(tmp_path)
    assert _options.parse(["echo hi"]).shell
    assert _options.parse(["echo", "a b"]).shell is False
    rc, out, _ = run(capfd, "-k", "echo hi {} > out{#}; cat out{#}", ":::", "a b", "$(x)")
    assert (rc, out) == (0, "hi a b\nhi $(x)\n")
    program = tmp_path / "my prog"
    program.write_text('#!/bin/sh\necho mine "$@"\n')
    program.chmod(0o755)
    assert _options.parse([str(program)]).shell is False
    assert run(capfd, str(program), ":::", "a")[:2] == (0, "mine a\n")
    rc, _, err = run(capfd, "-q", "echo hi", ":::", "a")
    assert rc == 2
    hint = "(a command line in one string runs in a shell, not with -q)"
    assert f"command not found: 'echo hi' {hint}" in err


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


CPUS = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("form", "jobs"),
    [
        ("3", 3), ("0", 0), ("+0", CPUS), ("+2", CPUS + 2), ("-0", CPUS),
        ("-1", max(1, CPUS - 1)), (f"-{CPUS + 5}", 1), ("100%", CPUS), ("50%", -(-CPUS // 2)),
        ("150%", -(-CPUS * 3 // 2)), ("1%", 1), ("0%", 1), ("12.5%", -(-CPUS // 8)),
    ],
)  # fmt: skip
def test_jobs_forms_as_gnu_parallel_computes_them(form: str, jobs: int) -> None:
    assert _options.parse(["-j", form, "true"]).jobs == jobs
    assert _options.parse(["--jobs", form, "true"]).jobs == jobs


def test_cpu_count_is_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 3, 5})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert _jobslots.cpu_count() == 3
    assert _options.parse(["-j", "+1", "true"]).jobs == 4
    assert _options.parse(["-j", "50%", "true"]).jobs == 2  # 1.5, rounded up
    assert _options.parse(["true"]).jobs == 3


@pytest.mark.parametrize(
    ("form", "against_6", "against_1"),
    [(None, 6, 1), ("4", 4, 4), ("0", 0, 0), ("+1", 7, 2), ("-1", 5, 1), ("-9", 1, 1),
     ("50%", 3, 1), ("12.5%", 1, 1), ("150%", 9, 2), ("0%", 1, 1)],
)  # fmt: skip
def test_jobs_are_kept_as_given_and_counted_later(
    form: str | None, against_6: int, against_1: int
) -> None:
    """What --scheduler counts against the cluster's threads (`JobSlots.of`); -j N alone
    does not depend on them."""
    slots = _options.parse([*(["-j", form] if form else []), "true"]).slots
    assert slots == (DEFAULT_SLOTS if form is None else JobSlots.parse(form))
    assert (slots.of(6), slots.of(1)) == (against_6, against_1)
    assert slots.relative == (form is None or not form.isdigit())


@pytest.mark.parametrize("text", ["", "x", "1.5", "+-1", "--1", "+1%", "-50%", "%", "1e3", " 2"])
def test_job_slots_refuse_another_form(text: str, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=re.escape("expected N, +N, -N or N%")):
        JobSlots.parse(text)
    if text and not text.startswith("-"):  # (one that starts with - is taken for an option)
        rc, _, err = run(capfd, "-j", text, "true")
        assert rc == 2
        assert "expected N, +N, -N or N%" in err


@pytest.mark.parametrize("cpus", [0, -1, True, 2.0, None])
def test_job_slots_need_a_cpu_count_of_at_least_1(cpus: object) -> None:
    with pytest.raises(ValueError, match="CPU count must be a whole number >= 1"):
        DEFAULT_SLOTS.of(cpus)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "n"), [("*", 1), ("n", -1), ("+", 1.5), ("%", float("nan")), ("%", float("inf"))]
)
def test_job_slots_refuse_what_no_form_gives(kind: str, n: float) -> None:
    with pytest.raises(ValueError, match="-j: "):
        JobSlots(kind, n)  # type: ignore[arg-type]


@needs_parallel
@pytest.mark.parametrize(
    "form", ["3", "+0", "+2", "-0", "-1", "100%", "50%", "150%", "1%", "33.3%"]
)
def test_jobs_match_the_real_gnu_parallel(form: str) -> None:
    """GNU parallel's own count (its -D load debug line), clamped to 1 as it documents."""
    assert PARALLEL is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLEL")}
    done = subprocess.run(
        [PARALLEL, "--will-cite", "-D", "load", "-j", form, "true", ":::", "1"],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False,
    )  # fmt: skip
    wanted = re.search(r"Wanted procs: (-?\d+)", done.stdout + done.stderr)
    assert wanted is not None, done.stderr
    assert _options.parse(["-j", form, "true"]).jobs == max(1, int(wanted[1]))


def _attempts(argv: list[str], tmp_path: Path) -> tuple[int, int]:
    count = tmp_path / "count"
    count.unlink(missing_ok=True)
    done = subprocess.run(
        [*argv, "--", "sh", "-c", f'echo "$0" >> {count}; exit 3', ":::", "a"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    return done.returncode, len(count.read_text().splitlines())


@needs_parallel
@pytest.mark.parametrize("n", ["1", "2", "3"])
def test_retries_count_attempts_as_the_real_gnu_parallel(n: str, tmp_path: Path) -> None:
    assert PARALLEL is not None
    theirs = _attempts([PARALLEL, "--will-cite", "--retries", n], tmp_path)
    ours = _attempts(cli("--retries", n, "--backoff", "none"), tmp_path)
    assert theirs == (1, int(n))
    assert ours == theirs


def test_retries_forms() -> None:
    assert _options.parse(["true"]).retries == 0  # one attempt
    assert _options.parse(["--retries", "1", "true"]).retries == 0
    assert _options.parse(["--retries", "3", "true"]).retries == 2
    assert _options.parse(["--retries", "0", "true"]).retries == _options.FOREVER


def test_retries_0_retries_until_the_job_succeeds(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    count = tmp_path / "count"
    script = f'echo x >> {count}; [ "$(wc -l < {count})" -ge 5 ]'
    rc, _, err = run(
        capfd, "--retries", "0", "--backoff", "none", "--", "sh", "-c", script, ":::", "a"
    )
    assert rc == 0
    assert count.read_text().count("x") == 5
    assert "1 done, 0 failed, 0 canceled, 4 retried" in err


def test_run_help_and_version_go_to_stdout() -> None:
    for argv in (["--help"], ["-h"]):
        done = subprocess.run(cli(*argv), capture_output=True, text=True, timeout=TIMEOUT)
        assert (done.returncode, done.stderr) == (0, "")
        assert "+N, -N" in done.stdout
        assert "--retries N" in done.stdout
    done = subprocess.run(cli("--version"), capture_output=True, text=True, timeout=TIMEOUT)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("asynctasklib ")


@pytest.mark.parametrize("flag", ["--bar", "--eta", "--progress"])
def test_bar_and_eta_ask_for_the_live_view(flag: str) -> None:
    assert _options.parse([flag, "echo"]).progress is True
    assert _options.parse(["echo"]).progress is None  # (default: when stderr is a terminal)
    assert _options.parse([flag, "--no-progress", "echo"]).progress is False
