"""-X, -m and --xargs checked against GNU parallel itself, where it is installed: the same
jobs (each one's line, where each is split), the same output and exit status. Each job
starts with its number ({#}), so that the split points show in the output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from asynctasklib._cli import main
from cli_helpers import needs_parallel, nul_inputs

pytestmark = [needs_parallel, pytest.mark.timeout(600)]  # (GNU parallel is slow to start)

# Inputs no shell may run, and lengths that quoting changes: quotes, $(...), newlines, tabs,
# UTF-8, the empty string, and plain ones.
HOSTILE = ["plain", "$(touch PWNED)", "it's", "'q'", 'a"b', "a\nb", "t\tab", "\u00e9\u20ac",
           "", "`touch PWNED`", "x;touch PWNED", "a b", "-n", "c.d/e.f", "*", "~/g.h"]  # fmt: skip


def _parallel(tmp_path: Path, *argv: str) -> tuple[int, bytes]:
    env = {**os.environ, "HOME": str(tmp_path), "PARALLEL_SHELL": "/bin/sh"}
    done = subprocess.run(
        ["parallel", "--will-cite", "-k", *argv],
        cwd=tmp_path, env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


def _ours(capfdbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, bytes]:
    rc = main(["-k", *argv])
    out, _ = capfdbinary.readouterr()
    return rc, out


def _same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes],
    theirs: list[str], ours: list[str], status: int | None = 0,
) -> bytes:  # fmt: skip
    """Run GNU parallel with ``theirs`` and us with ``ours``: the same exit status
    (``status``, if not None) and output, which is returned."""
    monkeypatch.chdir(tmp_path)
    expected = _parallel(tmp_path, *theirs)
    assert status is None or expected[0] == status, expected
    assert _ours(capfdbinary, *ours) == expected
    assert not (tmp_path / "PWNED").exists()
    return expected[1]


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("mode", ["-X", "-m"])
def test_small_inputs_spread_over_the_job_slots_as_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes],
    mode: str, jobs: str,
) -> None:  # fmt: skip
    argv = ["-j", jobs, mode, "printf", "%s,", "{#}:", "x{}y", ":::", "a", "b", "c", "d", "e"]
    out = _same(tmp_path, monkeypatch, capfdbinary, argv, argv)
    if jobs == "2":  # ceil(5 / 2) records a job: 3, then 2
        assert out.count(b":") == 2


@pytest.mark.parametrize("mode", ["-X", "-m"])
def test_contexts_with_replacement_strings_as_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes],
    mode: str,
) -> None:  # fmt: skip
    """{.} {/} {//} {/.} {#} {%} and positional ones in the repeated word and outside it,
    with two sources (records of two values). ({%} with -j1 only: which slot parallel
    gives a job when the one before has just ended is up to timing.)"""
    command = ["printf", "%s,", "{#}:", "_{.}-{/}_", "{//}={/.}", "p{1}q", "{-1}", "{2.}"]
    sources = [":::", "a.b/c.d", "e/f.g", "h", ":::", "x.y/z", "w"]
    for jobs, slot in (("1", ["{%}"]), ("2", [])):
        argv = ["-j", jobs, mode, *command, *slot, *sources]
        _same(tmp_path, monkeypatch, capfdbinary, argv, argv)


@pytest.mark.parametrize("mode", ["-X", "-m", "--xargs"])
def test_max_chars_split_points_as_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes],
    mode: str,
) -> None:  # fmt: skip
    """Lines of at most -s bytes as parallel counts them (each value shell-quoted), with
    hostile inputs, as plain arguments and in shell code."""
    path = nul_inputs(tmp_path, HOSTILE * 3)
    for jobs in ("1", "2"):
        for size in ("60", "150"):
            plain = ["-j", jobs, "-s", size, mode, "-0", "-a", path, "printf", "%s,", "{#}:",
                     "x{}y", "{1}"]  # fmt: skip
            _same(tmp_path, monkeypatch, capfdbinary, plain, plain)
    # (bare: parallel quotes a value alike wherever it stands, so not in "..." or '...')
    script = "printf '%s|' {#}: x{}y {/} {-1}; echo"
    theirs = ["-j", "2", "-s", "90", mode, "-0", "-a", path, script]
    ours = ["-j", "2", "-s", "90", mode, "-0", "-a", path, "--shell", script]
    _same(tmp_path, monkeypatch, capfdbinary, theirs, ours)


def test_several_sources_and_columns_split_as_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Records of several values (sources, --colsep): a record is never cut, and a
    positional string counts its column of each record, as parallel counts it."""
    for mode in ("-X", "-m"):
        for size in ("70", "100"):  # (-X at 70: a record over the limit, exit status 255)
            argv = ["-j1", "-s", size, mode, "printf", "%s,", "{#}:", "{2}", "a{}b", "{-1}",
                    ":::", "one", "it's", "three", ":::", "x y", "z", "$(touch PWNED)"]  # fmt: skip
            _same(tmp_path, monkeypatch, capfdbinary, argv, argv, status=None)
    (tmp_path / "cols").write_text("a,b b,c\n'd',e\n" * 6)
    argv = ["-j2", "-s", "50", "-X", "--colsep", ",", "-a", "cols", "printf", "%s,", "{#}",
            "{1}", "_{}_"]  # fmt: skip
    _same(tmp_path, monkeypatch, capfdbinary, argv, argv)


def test_max_args_with_x_and_m_as_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """-n caps the records a job, -N also repeats the context with -m (as parallel);
    the line that reads the last input is spread over the slots."""
    inputs = [":::", *"abcdefg"]
    for options in (["-X", "-n", "3"], ["-m", "-n", "3"], ["-m", "-N", "2"], ["-X", "-N", "3"],
                    ["--xargs", "-n", "2"], ["-X", "-n", "3", "-s", "20"]):  # fmt: skip
        argv = ["-j2", *options, "printf", "%s,", "{#}:", "x{}y", *inputs]
        _same(tmp_path, monkeypatch, capfdbinary, argv, argv)


def test_inputs_longer_than_a_line_split_as_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """The default -s (the system's limit): inputs of several lines' length."""
    (tmp_path / "many").write_text("".join(f"item-{i:05d}\n" for i in range(25000)))
    for mode in ("-X", "-m"):
        argv = ["-j2", mode, "-a", "many", "echo", "{#}", "x{}y"]
        out = _same(tmp_path, monkeypatch, capfdbinary, argv, argv)
        assert out.count(b"\n") > 5
        assert out.count(b"item-") == 25000


def test_a_single_input_over_the_limit_fails_as_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """The jobs before it run; then the run ends with exit status 255."""
    argv = ["-j1", "-s", "20", "-X", "echo", "x{}y", ":::", "a", "b", "c" * 30, "d"]
    out = _same(tmp_path, monkeypatch, capfdbinary, argv, argv, status=255)
    assert out == b"xay xby\n"
