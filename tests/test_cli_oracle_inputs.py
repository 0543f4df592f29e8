"""The inputs of ``asynctasklib run`` against the real GNU parallel: the same jobs, with the
same arguments, in the same order, from every kind of source and option of the inputs.

Each case runs ``printf %s: ...`` (so each argument shows with its bounds) under both,
with ``-k -j1``: the standard output must be the same, and the exit status.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asynctasklib._cli import main
from cli_helpers import needs_parallel

pytestmark = needs_parallel

FILES = {"A": b"f1\nf2\n", "B": b"g1\ng2\ng3\n", "E": b"", "C": b"c1,c2\n c3 ,\n"}
PRINT = ["printf", "%s:"]  # (parallel joins the command words unquoted: no shell syntax)

# (id, the options and input groups, standard input)
CASES: list[tuple[str, list[str], bytes]] = [
    ("product", [*PRINT, ":::", "a", "b", ":::", "1", "2", "3"], b""),
    ("three groups", [*PRINT, ":::", "a", "b", ":::", "1", "2", ":::", "x", "y"], b""),
    ("linked, unequal", [*PRINT, ":::", "a", "b", "c", ":::", "1", "2", ":::+", *"xyzw"], b""),
    ("linked, shorter", [*PRINT, ":::", "a", "b", "c", ":::+", "1", "2"], b""),
    ("linked pairs", [*PRINT, ":::", *"ab", ":::+", *"12", ":::", *"xy", ":::+", *"pq"], b""),
    ("linked first", [*PRINT, ":::+", "a", "b"], b""),
    ("file group", [*PRINT, "::::", "A", ":::", "x", "y"], b""),
    ("file linked", [*PRINT, "::::", "A", "::::+", "B"], b""),
    ("two files, one group", [*PRINT, "::::", "A", "B"], b""),
    ("group linked to a file", [*PRINT, ":::", "p", "q", "r", "::::+", "A"], b""),
    ("--link", ["--link", *PRINT, ":::", "a", "b", "c", ":::", "1", "2"], b""),
    ("--xapply, three", ["--xapply", *PRINT, ":::", "a", ":::", *"123", ":::", "x", "y"], b""),
    ("--link and :::+", ["--link", *PRINT, ":::", *"abc", ":::", "1", "2", ":::+", *"wxyz"], b""),
    ("--link, -a", ["--link", "-a", "B", *PRINT, ":::", "x", "y"], b""),
    ("--link, -n 2", ["--link", "-n", "2", *PRINT, "::::", "A", ":::", *"xyz"], b""),
    ("--link, stdin", ["--link", *PRINT, "::::", "-", ":::", "x"], b"s1\ns2\ns3\n"),
    ("-a, then :::", ["-a", "A", *PRINT, ":::", "x", "y"], b""),
    ("-a twice", ["-a", "A", "-a", "B", *PRINT], b""),
    ("-a, then ::::", ["-a", "B", *PRINT, "::::", "A"], b""),
    ("-a - and :::", ["-a", "-", *PRINT, ":::", "x", "y"], b"s1\ns2\n"),
    (":::: -", [*PRINT, "::::", "-", ":::", "x"], b"s1\ns2\n"),
    ("-a - and -a", ["-a", "-", "-a", "A", *PRINT], b"s1\ns2\n"),
    ("stdin", [*PRINT], b"s1\n\ns 2\nlast"),
    ("empty group last", [*PRINT, ":::", "a", "b", ":::"], b""),
    ("empty group first", [*PRINT, ":::", ":::", "a"], b""),
    ("empty file", [*PRINT, "::::", "E", ":::", "a"], b""),
    ("only an empty file", ["-a", "E", *PRINT], b""),
    ("empty linked", [*PRINT, ":::", "a", "b", ":::+"], b""),
    ("-0", ["-0", *PRINT], b"a b\0c\nd\0"),
    ("--null, no last NUL", ["--null", *PRINT], b"a\0b"),
    ("-d ,", ["-d", ",", *PRINT], b"a,b,,c\n"),
    ("-d tab", ["-d", "\\t", *PRINT], b"a\tb\tc"),
    ("-d newline", ["--delimiter", "\\n", *PRINT], b"a\nb\n"),
    ("-d NUL", ["-d", "\\0", *PRINT], b"a\0b\0"),
    ("-d two bytes", ["-d", "ab", *PRINT], b"xabyabzab"),
    ("-d octal", ["-d", "\\101", *PRINT], b"xAyAz"),
    ("-d 9", ["-d", "\\9", *PRINT], b"x9y"),
    ("-d no escape", ["-d", "\\x", *PRINT], b"a\\xb"),
    ("-d and a file", ["-d", ",", "-a", "C", *PRINT, ":::", "z"], b""),
    ("CR-LF", [*PRINT], b"a\r\nb\r\n"),
    ("NUL in a line", [*PRINT], b"a\0b\nc\n"),  # (as \0: NUL cannot be in an argument)
    ("--colsep", ["--colsep", ",", *PRINT], b"a,b,,c,\n ,x , y\n\nq\n"),
    ("-C regex", ["-C", "[0-9]+", *PRINT], b"a1b22c\n"),
    ("-C on :::", ["-C", ",", *PRINT, ":::", "a,b", "c", ":::", "x,y"], b""),
    ("-C on a file", ["-C", ",", *PRINT, "::::", "C"], b""),
    ("-C with -0", ["-0", "-C", ",", *PRINT], b"a,b\nc\0d"),
    ("-n 2", ["-n", "2", *PRINT, ":::", *"abcde"], b""),
    ("-N 2", ["-N", "2", *PRINT, ":::", *"abcde"], b""),
    ("--max-args", ["--max-args", "3", *PRINT], b"1\n2\n3\n4\n5\n6\n7\n"),
    ("-n 2, two groups", ["-n", "2", *PRINT, ":::", "a", "b", "c", ":::", "1", "2"], b""),
    ("-n 2 -C", ["-n", "2", "-C", ",", *PRINT], b"a,b\nc,d\ne,f\n"),
    ("-n 0", ["-n", "0", *PRINT, "x", ":::", "a", "b"], b""),
    ("-N 0", ["-N", "0", *PRINT, "x", ":::", "a", "b"], b""),
    ("-n 1", ["-n", "1", *PRINT, ":::", "a", "b"], b""),
    ("{} alone", ["printf", "%s:", "[{}]", ":::", "a b", "c"], b""),
    ("{} in shell code", ["--shell", "printf %s: {}", ":::", "a", "b c", ":::", "d"], b""),
    ("-n 2 in shell code", ["-n", "2", "--shell", "printf %s: {}", ":::", *"abc"], b""),
]


def _parallel(tmp_path: Path, argv: list[str], stdin: Path) -> tuple[int, bytes]:
    if "--shell" in argv:  # parallel runs a command line through the shell anyway
        argv = [a for a in argv if a != "--shell"]
    with stdin.open("rb") as data:
        done = subprocess.run(
            ["parallel", "--will-cite", "-k", "-j1", *argv],
            stdin=data, capture_output=True, cwd=tmp_path, timeout=120, check=False,
        )  # fmt: skip
    return done.returncode, done.stdout


@pytest.mark.timeout(300)  # GNU parallel is slow to start on a loaded machine
def test_inputs_match_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    stdin = tmp_path / "stdin"
    mismatches = []
    for case, argv, data in CASES:
        stdin.write_bytes(data)
        theirs = _parallel(tmp_path, argv, stdin)
        assert theirs[0] == 0, (case, theirs)
        assert theirs[1] or case == "only an empty file", (case, theirs)
        with stdin.open() as stream:
            monkeypatch.setattr(sys, "stdin", stream)
            rc = main(["-k", "-j1", *argv])
        ours = (rc, capfdbinary.readouterr().out)
        if ours != theirs:
            mismatches.append((case, ours, theirs))
    assert mismatches == []
