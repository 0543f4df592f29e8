"""``--results FILE.csv``, ``.tsv`` and ``.json`` against the real GNU parallel: the same
table, but for Starttime and JobRuntime (checked for their format, then taken out), and
the same exit status. Parallel runs a command line through a shell, so ours gets
``--shell``."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from asynctasklib._cli import main
from cli_helpers import needs_parallel, nul_inputs

pytestmark = [needs_parallel, pytest.mark.timeout(600)]  # (GNU parallel is slow to start)

# Commas, quotes, newlines, tabs, UTF-8, white space, shell syntax, the empty string, a
# leading and trailing ', @ % : (none a shell reserved word: GNU parallel leaves those bare).
AWKWARD = ["plain", "a,b", 'q"u"o', "new\nline", "tab\there", "\u00e9\u20ac", "it's", "a b",
           "$(touch PWNED)", "", "back\\slash", "cr\rx", "x\x01y", "-n", "'q'",
           "x:y@%"]  # fmt: skip
_CSV_TIMES = re.compile(rb"^(\d+([,\t]):\2)(\d+\.\d{3})\2(\d+\.\d{3})\2", re.MULTILINE)
_JSON_TIMES = re.compile(rb'"Starttime": (\d+\.\d{3}), "JobRuntime": (\d+\.\d{3}),')


def untimed(table: bytes) -> bytes:
    """The table with its times checked (3 decimals) and taken out."""
    csv = _CSV_TIMES.sub(rb"\1S\2R\2", table)
    return _JSON_TIMES.sub(b'"Starttime": S, "JobRuntime": R,', csv)


def _both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes],
    name: str, argv: list[str],
) -> tuple[bytes, bytes]:  # fmt: skip
    """GNU parallel's table and ours (``name`` in ``tmp_path``), their times taken out,
    after checking that the exit status and standard output are the same."""
    monkeypatch.chdir(tmp_path)
    table = tmp_path / name
    env = {**os.environ, "HOME": str(tmp_path), "PARALLEL_SHELL": "/bin/sh"}
    done = subprocess.run(
        ["parallel", "--will-cite", "--results", name, *argv],
        env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    theirs = table.read_bytes() if not name.startswith("-.") else done.stdout
    table.unlink(missing_ok=True)
    capfdbinary.readouterr()
    rc = main(["--results", name, "--shell", *argv])
    out, _ = capfdbinary.readouterr()
    assert rc == done.returncode
    mine = table.read_bytes() if not name.startswith("-.") else out
    if not name.startswith("-."):
        assert out == done.stdout == b""  # (the jobs' output goes only to the table)
    assert not (tmp_path / "PWNED").exists()
    for text in (theirs, mine):
        if b"Seq" in text[:3] or b'"Seq"' in text[:10]:
            assert len(_CSV_TIMES.findall(text)) + len(_JSON_TIMES.findall(text)) > 0
    return untimed(theirs), untimed(mine)


@pytest.mark.parametrize("suffix", ["csv", "tsv", "json", "CSV"])
def test_tables_are_those_of_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes],
    suffix: str,
) -> None:  # fmt: skip
    """Awkward inputs and output, stderr, exit codes (the status counts the failures)."""
    path = nul_inputs(tmp_path, AWKWARD)
    script = "printf '%s|\\n' {} {#}; printf 'e,\"%s\"\\t\\n' {} >&2; exit $(({#} % 3))"
    theirs, mine = _both(
        tmp_path, monkeypatch, capfdbinary, f"out.{suffix}", ["-k", "-j2", "-0", "-a", path,
                                                             script],
    )  # fmt: skip
    assert mine == theirs


def test_several_values_a_job_and_signals_as_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """V1, V2... of two sources; -X (the V columns are the first job's); a job killed by a
    signal (Exitval 0, Signal 9); -j1 without -k (as the jobs end)."""
    cases = [
        ["-j1", "echo {1}-{2}; test {2} != y || kill -9 $$", ":::", "a,b", "c d", ":::", "x",
         "y"],
        ["-k", "-j2", "-X", "echo", ":::", "a", "b,c", "d\"e", "f"],
    ]  # fmt: skip
    for name in ("t.csv", "t.json"):
        for argv in cases:
            theirs, mine = _both(tmp_path, monkeypatch, capfdbinary, name, argv)
            assert mine == theirs, (name, argv)


def test_no_jobs_as_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """No job: an empty file."""
    theirs, mine = _both(tmp_path, monkeypatch, capfdbinary, "none.tsv", ["echo", ":::"])
    assert mine == theirs == b""
