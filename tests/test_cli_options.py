"""The command line of ``asynctasklib run`` (``_cli/_options.py``): bad usage,
``--backoff``, GNU parallel's syntax that is not supported, a command not found.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from asynctasklib import ExponentialBackoff
from asynctasklib._cli import _options, main
from cli_helpers import run


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
