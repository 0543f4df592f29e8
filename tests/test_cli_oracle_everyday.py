"""Everyday GNU parallel command lines, from its tutorial's style, run as they are by the
real GNU parallel and by ``asynctasklib run``: the same standard output, the same files
left in the working directory, the same exit status.

Each case runs in two fresh directories holding the same files (with the same times, so
that gzip writes the same bytes). The argv is the same for both: no ``--shell`` on ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asynctasklib._cli import main
from cli_helpers import needs_parallel

pytestmark = [needs_parallel, pytest.mark.timeout(300)]  # (GNU parallel is slow to start)

FILES = {
    "a.txt": b"hello a\n",
    "b.txt": b"hello b\nline 2\n",
    "c d.txt": b"c c\n",
    "sub/x.txt": b"x\n",
    "list": b"one\ntwo\nthree\n",
    "cols.csv": b"a,1\nb,2\nc,3\n",
}
TXT = ["a.txt", "b.txt", "c d.txt"]

# (id, argv, standard input)
CASES: list[tuple[str, list[str], bytes]] = [
    ("gzip", ["gzip", ":::", *TXT], b""),
    ("one string, redirection", ["gzip -c {} > {.}.gz", ":::", *TXT], b""),
    ("one string, strings", ["-k", "echo {} {.} {/} {//} {/.} {#}", ":::", "sub/x.txt", *TXT],
     b""),
    ("one string, pipe", ["-k", "cat {} | wc -l", ":::", *TXT], b""),
    ("one string, two commands", ["-k", "echo {}; echo {#}", ":::", "x", "y z"], b""),
    ("one string, exit status", ["-j1", "exit {}", ":::", "0", "1", "2"], b""),
    ("one string, halt", ["-j1", "--halt", "soon,fail=1", "exit {}", ":::", "0", "3", "0"], b""),
    ("one string, retries", ["--retries", "2", "echo {}; exit 1", ":::", "r"], b""),
    ("one string, no replacement string", ["-k", "echo x", ":::", "a", "b"], b""),
    ("one string, hostile inputs", ["-k", "printf '<%s>' {}; echo", ":::", "$(touch PWNED)",
     "`touch PWNED`", "a;touch PWNED", "it's", "*"], b""),
    ("product", ["-k", "echo", ":::", "a", "b", ":::", "1", "2"], b""),
    ("linked", ["-k", "echo", ":::", "a", "b", "c", ":::+", "1", "2", "3"], b""),
    ("-X from stdin", ["-k", "-X", "echo", "pre-{}"], b"a.txt\nb.txt\nsub/x.txt\n"),
    ("-m from stdin", ["-k", "-m", "echo"], b"a.txt\nb.txt\n"),
    ("--tag", ["-k", "--tag", "wc", "-l", ":::", *TXT], b""),
    ("-N2", ["-k", "-N2", "echo", ":::", *"abcde"], b""),
    ("-n2", ["-k", "-n2", "echo", ":::", *"abcde"], b""),
    ("--colsep", ["-k", "--colsep", ",", "echo", "{2}", "{1}", "::::", "cols.csv"], b""),
    ("-a", ["-k", "-a", "list", "echo", "item"], b""),
    (":::: and :::", ["-k", "echo", "::::", "list", ":::", "x", "y"], b""),
    ("-0", ["-k", "-0", "echo"], b"a b\0c\nd\0"),
    ("--results", ["--results", "out", "echo", ":::", "a", "b c"], b""),
    ("--dry-run", ["-k", "--dry-run", "convert", "{}", "{.}.png", ":::", "a.svg", "b c.svg",
                   "x:y.svg", "it's.svg"],
     b""),
    ("-I", ["-k", "-I", "@@", "echo", "pre-@@", ":::", "a", "b"], b""),
    ("--delay with a unit", ["-k", "--delay", "0.1s", "echo", ":::", "a", "b"], b""),
    ("a line too long", ["-k", "-j1", "echo"], b"s1\ns2\n" + b"x" * 140_000 + b"\nafter\n"),
    ("-j +2 --lb", ["-k", "-j", "+2", "--lb", "echo", ":::", "a", "b", "c"], b""),
    ("-j0", ["-k", "-j0", "echo", ":::", "a", "b", "c"], b""),
    ("--load", ["-k", "--load", "100%", "echo", ":::", "a", "b"], b""),
    ("--memfree", ["-k", "--memfree", "1M", "echo", ":::", "a", "b"], b""),
    # The default --term-seq (TERM,200,TERM,100,TERM,50,KILL,25): a job that ignores TERM is
    # killed, its output never written, well before it would end.
    ("--timeout, TERM ignored", ["--timeout", "0.3", "trap '' TERM; sleep 3; echo late",
                                 ":::", "x"], b""),
]  # fmt: skip


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _fixture(where: Path) -> None:
    where.mkdir(parents=True)
    for name, data in FILES.items():
        path = where / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (1_700_000_000, 1_700_000_000))  # (gzip keeps the time)


def _parallel(cwd: Path, argv: list[str], stdin: Path) -> tuple[int, bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLEL")}
    env.update(HOME=str(cwd.parent), PARALLEL_SHELL="/bin/sh")  # (HOME/.parallel: not cwd)
    with stdin.open("rb") as data:
        done = subprocess.run(
            ["parallel", "--will-cite", *argv],
            cwd=cwd, env=env, stdin=data, capture_output=True, timeout=240, check=False,
        )  # fmt: skip
    return done.returncode, done.stdout


def test_everyday_command_lines_as_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    mismatches = []
    stdin = tmp_path / "stdin"
    for i, (case, argv, data) in enumerate(CASES):
        theirs_dir, ours_dir = tmp_path / f"{i}" / "theirs", tmp_path / f"{i}" / "ours"
        _fixture(theirs_dir)
        _fixture(ours_dir)
        stdin.write_bytes(data)
        theirs = (*_parallel(theirs_dir, argv, stdin), _tree(theirs_dir))
        monkeypatch.chdir(ours_dir)
        with stdin.open() as stream:
            monkeypatch.setattr(sys, "stdin", stream)
            rc = main(argv)
        ours = (rc, capfdbinary.readouterr().out, _tree(ours_dir))
        if ours != theirs:
            mismatches.append((case, ours, theirs))
        assert "PWNED" not in theirs[2]
        assert "PWNED" not in ours[2]
    assert mismatches == []
