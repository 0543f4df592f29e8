"""GNU parallel's -N (context replace), the joblog's Receive column with --files and
--results, and --term-seq, checked against the real GNU parallel where it is installed.

Each case runs a small script that prints each of its arguments in <...>, one line per job,
under both with ``-k -j1``: the output must be the same, and the exit status.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from asynctasklib._cli import main
from cli_helpers import joblog_rows, needs_parallel
from test_cli_termseq import HALT, JOB

ARGS_SH = '#!/bin/sh\nfor a in "$@"; do printf \'<%s>\' "$a"; done; echo\n'
ARGS = "./args.sh"  # (GNU parallel joins the command's words unquoted: no shell syntax here)

# (id, the options, the command and its inputs); with --shell, GNU parallel gets the same
# command line without it (it runs every command line through a shell).
N_CASES: list[tuple[str, list[str]]] = [
    ("each string", ["-N", "2", ARGS, "{}", "[{}]", "{1}-{2}", "x{}{#}{%}", "{.}:{/}",
                     "{//},{/.}", "x{-1}", "{3}", "x{3}y", "{1}{}", ":::", "a.x/b.c", "d/e f",
                     "g"]),
    ("fewer than asked", ["-N", "3", ARGS, "{1}", "{2}", "{3}", "[{3}]", ":::", "a", "b"]),
    ("-N 1", ["-N", "1", ARGS, "x{}y", ":::", "a", "b"]),
    ("-N 0", ["-N", "0", ARGS, "[{}]", "{}", "x", ":::", "a", "b"]),
    ("two sources", ["-N", "2", ARGS, "[{}]", "{3}", ":::", "a", "b", ":::", "1", "2"]),
    ("--colsep", ["-N", "2", "-C", ",", ARGS, "[{}]", "{4}", ":::", "a,b", "c", "d,e,f"]),
    ("appended", ["-N", "2", ARGS, ":::", "a", "b c", "d"]),
    ("shell code", ["-N", "2", "--shell", ARGS + " x{}y '[{}]' \"p {} q\" {2}", ":::", "a",
                    "b", "c"]),
]  # fmt: skip


def _parallel(tmp_path: Path, argv: list[str]) -> tuple[int, bytes]:
    argv = [a for a in argv if a != "--shell"]
    done = subprocess.run(
        ["parallel", "--will-cite", "-k", "-j1", *argv],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PARALLEL_SHELL": "/bin/sh"},
        stdin=subprocess.DEVNULL, capture_output=True, cwd=tmp_path, timeout=240, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


def _ours(capfdbinary: pytest.CaptureFixture[bytes], argv: list[str]) -> tuple[int, bytes]:
    rc = main(["-k", "-j1", *argv])
    return rc, capfdbinary.readouterr().out


def _mismatches(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes], cases: list[tuple[str, list[str]]]
) -> list[tuple[str, tuple[int, bytes], tuple[int, bytes]]]:
    """Each case run by GNU parallel and by us in ``tmp_path`` (the current directory):
    those whose exit status or output differ."""
    (tmp_path / "args.sh").write_text(ARGS_SH)
    (tmp_path / "args.sh").chmod(0o755)
    mismatches = []
    for case, argv in cases:
        theirs = _parallel(tmp_path, argv)
        assert theirs[0] == 0, (case, theirs)
        assert theirs[1], (case, theirs)
        ours = _ours(capfdbinary, argv)
        if ours != theirs:
            mismatches.append((case, ours, theirs))
    return mismatches


@needs_parallel
@pytest.mark.timeout(300)  # GNU parallel is slow to start on a loaded machine
def test_max_replace_args_matches_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """-N repeats a word with {} once per argument; {1}, {#} and a past position do not."""
    monkeypatch.chdir(tmp_path)
    assert _mismatches(tmp_path, capfdbinary, N_CASES) == []


TAG_CASES: list[tuple[str, list[str]]] = [
    ("--tag, two sources", ["--tag", ARGS, "x", ":::", "a", "b c", ":::", "d"]),
    ("--tagstring", ["--tagstring", "x{}y-{2}-{3}", ARGS, ":::", "a", ":::", "b"]),
    ("--tagstring, no string", ["--tagstring", "t", ARGS, ":::", "a"]),
    ("--tagstring, -N", ["-N", "2", "--tagstring", "x{}y-{3}", ARGS, ":::", "a", "b", "c"]),
]


@needs_parallel
@pytest.mark.timeout(300)
def test_tags_of_several_arguments_match_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """The tag is the tag string's words joined by spaces ({} of two arguments: 'a b')."""
    monkeypatch.chdir(tmp_path)
    assert _mismatches(tmp_path, capfdbinary, TAG_CASES) == []


@needs_parallel
@pytest.mark.timeout(300)
@pytest.mark.parametrize("saving", [["--files"], ["--results", "res"]])
def test_joblog_receive_counts_the_saved_stdout_as_gnu_parallel(
    saving: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:  # fmt: skip
    """With --files and --results, Receive is the size of the job's stdout file (of its
    last attempt); what goes to stderr does not count."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    script = "head -c {} /dev/zero; echo to-stderr >&2; test {} != 10"  # (10 fails)
    inputs = ["0", "1", "10", "70000", "5"]

    def receive_and_exit(joblog: str) -> list[tuple[str, str, str]]:
        rows = sorted(joblog_rows(tmp_path / joblog), key=lambda row: int(row[0]))
        return [(row[0], row[5], row[6]) for row in rows]  # (Seq, Receive, Exitval)

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["parallel", "--will-cite", "-k", "-j2", "--joblog", "theirs", *saving, script, ":::",
         *inputs],
        env=env, capture_output=True, cwd=tmp_path, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    theirs = receive_and_exit("theirs")
    assert main(["-k", "-j2", "--joblog", "ours", *saving, "--shell", script, ":::", *inputs]) == 1
    capfdbinary.readouterr()
    assert receive_and_exit("ours") == theirs
    assert [size for _, size, _ in theirs] == inputs


@needs_parallel
@pytest.mark.timeout(300)
def test_term_seq_sends_the_signals_of_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A job that logs each signal it gets, killed by --halt now once it is ready: the
    same signals, in the same order, and the same exit status."""
    # (Not a long wait after HUP: once an in-process run made this process a subreaper,
    # GNU parallel's job, orphaned here, stays a zombie that parallel waits out.)
    seq = ["--term-seq", "TERM,1000,USR1,1000,HUP,1000,KILL,25"]
    argv = [*HALT, *seq, "sh", "job.sh", ":::", "1", "2"]
    for who in ("theirs", "ours"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "job.sh").write_text(JOB)
    done = subprocess.run(
        ["parallel", "--will-cite", *argv], cwd=tmp_path / "theirs", capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PARALLEL_SHELL": "/bin/sh"},
        timeout=240, check=False,
    )  # fmt: skip
    monkeypatch.chdir(tmp_path / "ours")
    rc = main(argv)
    capfd.readouterr()
    assert (rc, (tmp_path / "ours" / "log").read_text()) == (
        done.returncode,
        (tmp_path / "theirs" / "log").read_text(),
    )
    assert rc == 1


@needs_parallel
@pytest.mark.timeout(300)
def test_quote_and_max_procs_match_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """-q: the words reach the program as they are, which is what runs here without it."""
    monkeypatch.chdir(tmp_path)
    cases = [
        ("-q", ["-q", ARGS, "$HOME", "a;b", "{}", "x{}y", ":::", "c d", "$(e)"]),
        ("-q -N 2", ["-q", "-N", "2", ARGS, "'{}'", ":::", "a b", "c"]),
        ("-P", ["-P", "1", ARGS, "{}", ":::", "a"]),
    ]
    assert _mismatches(tmp_path, capfdbinary, cases) == []
