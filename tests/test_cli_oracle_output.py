"""The output modes against the real GNU parallel, as an oracle: the same bytes on
standard output (and the jobs' standard error), the same files, the same exit status.

GNU parallel runs the command with ``-q`` (its words quoted, as ours are never split),
one input source; each case is one parallel run, as each takes a while to start.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asynctasklib._cli import main
from cli_helpers import needs_parallel

if TYPE_CHECKING:
    from collections.abc import Sequence

pytestmark = [
    needs_parallel,
    pytest.mark.timeout(300),  # GNU parallel is slow to start on a loaded machine
]

# Lines, an empty line, a \r\n, a \r after the last \n of a write (--line-buffer
# --tag writes up to it), a last line without a newline, on both streams; nothing at all
# for the input "quiet".
SCRIPT = r"""
[ "$0" = quiet ] && exit 0
printf 'out %s\n' "$0"
printf 'err %s\n' "$0" >&2
printf 'x\n\ny\r\nz'
printf ' bar\nb\rc\rd'
printf ' last %s' "$0"
printf 'half' >&2
"""
# Inputs that a tag, or a directory name, must take as they are: spaces, a TAB, a
# backslash (and one before a digit, as re.sub would read it), a slash, UTF-8, a glob.
INPUTS = ["a", "b c", "", "t\tx", "back\\slash", "g\\1", "x/y", "é", "*", "quiet"]


def _parallel(
    cwd: Path, *argv: str | bytes, tmpdir: Path | None = None
) -> tuple[int, bytes, bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARALLEL")}
    env.update(HOME=str(cwd), PARALLEL_SHELL="/bin/sh")
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    done = subprocess.run(
        ["parallel", "--will-cite", "-q", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, timeout=240, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def _ours(
    capfdbinary: pytest.CaptureFixture[bytes], *argv: str | bytes
) -> tuple[int, bytes, bytes]:
    rc = main([os.fsdecode(word) for word in argv])
    out, err = capfdbinary.readouterr()
    # (less our summary line: GNU parallel has none)
    return rc, out, re.sub(rb"asynctasklib: \d+ jobs: .*\n\Z", b"", err)


def _both(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
    argv: Sequence[str | bytes],
) -> tuple[tuple[int, bytes, bytes], tuple[int, bytes, bytes]]:
    """Parallel's exit status, stdout and stderr, and ours, each run in a directory of
    its own (named the same: ``run``)."""
    theirs_dir, ours_dir = tmp_path / "theirs" / "run", tmp_path / "ours" / "run"
    theirs_dir.mkdir(parents=True)
    ours_dir.mkdir(parents=True)
    theirs = _parallel(theirs_dir, *argv)
    monkeypatch.chdir(ours_dir)
    return theirs, _ours(capfdbinary, *argv)


COMMAND = ["sh", "-c", SCRIPT, "{}", ":::", *INPUTS]
# With --line-buffer, a write that has a carriage return after its last newline is
# tagged one way by a job whose output is live and another way by one that waits for
# its turn (GNU parallel does the same): which a job is, with -k and several jobs at
# once, is up to timing. Such flags run a script without that write.
STEADY_SCRIPT = SCRIPT.replace(r"printf ' bar\nb\rc\rd'", r"printf ' bar\nb c d'")
assert STEADY_SCRIPT != SCRIPT
STEADY_COMMAND = ["sh", "-c", STEADY_SCRIPT, "{}", ":::", *INPUTS]


@pytest.mark.parametrize(
    "flags",
    [
        ["-k", "--tag"],
        ["-k", "--tagstring", "{#}<{}>\\t\\101"],
        ["-k", "--tagstring", "job"],
        ["-j1", "--line-buffer", "--tag"],
        ["-k", "-j4", "--lb", "--tagstring", "[{}]", *STEADY_COMMAND],
        ["-j1", "-u", "--tag", "-k"],  # (--tag and -k do nothing with -u)
        ["-k", "--group"],
    ],
    ids=lambda flags: " ".join(flags[: flags.index("sh")] if "sh" in flags else flags),
)
def test_output_is_that_of_gnu_parallel(
    flags: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    argv = flags if "sh" in flags else [*flags, *COMMAND]
    theirs, ours = _both(tmp_path, monkeypatch, capfdbinary, argv)
    assert theirs[0] == 0, theirs[2]
    assert ours == theirs


def _tree(root: Path) -> dict[bytes, bytes]:
    """Each file under ``root`` (its path from ``root``, as bytes): its content."""
    files = {}
    for where, _, names in os.walk(os.fsencode(root)):
        for name in names:
            path = os.path.join(where, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, os.fsencode(root))] = f.read()
    return files


RESULTS_INPUTS: list[str | bytes] = [
    *INPUTS, "tab\tin", "q'\"", "..", ".", b"\xff\xfe", "L" * 300, "-n"
]  # fmt: skip


@pytest.mark.parametrize(
    "flags", [["--results", "out"], ["--results", "out/", "--files", "--tag", "-k"]], ids=str
)
def test_results_are_the_files_of_gnu_parallel(
    flags: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    """The same tree: DIR/1/ARG/{seq,stdout,stderr}, ARG escaped as parallel does (``/``
    as ``\\_``, TAB as ``\\t``, ``\\`` as ``\\\\``), a name too long cut to the longest
    allowed, ``.``, ``..`` and the empty string kept; with --files, each stdout's name
    printed. One job at a time: ``.`` and the empty input write the same files."""
    argv = ["-j1", *flags, "sh", "-c", SCRIPT, "{}", ":::", *RESULTS_INPUTS]
    theirs, ours = _both(tmp_path, monkeypatch, capfdbinary, argv)
    assert theirs[0] == 0, theirs[2]
    assert ours == theirs
    tree = _tree(tmp_path / "theirs" / "run" / "out")
    assert tree[b"1/x\\_y/stdout"] == b"out x/y\nx\n\ny\r\nz bar\nb\rc\rd last x/y"
    assert tree[b"1/" + b"L" * 255 + b"/seq"] == b"%d" % (RESULTS_INPUTS.index("L" * 300) + 1)
    assert _tree(tmp_path / "ours" / "run" / "out") == tree


def test_files_are_those_of_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """--files: one $TMPDIR/parXXX.par file per job with its stdout, its name printed
    (tagged with --tag), in order with -k."""
    theirs_tmp, ours_tmp = tmp_path / "theirs-tmp", tmp_path / "ours-tmp"
    theirs_tmp.mkdir()
    ours_tmp.mkdir()
    argv = ["-k", "--files", "--tag", *COMMAND]
    rc, theirs, _ = _parallel(tmp_path, *argv, tmpdir=theirs_tmp)
    assert rc == 0
    monkeypatch.setenv("TMPDIR", str(ours_tmp))
    rc, ours, _ = _ours(capfdbinary, *argv)
    assert rc == 0

    def contents(out: bytes, where: Path) -> list[tuple[bytes, bytes]]:
        names = re.findall(rb"^(.*)\t" + re.escape(os.fsencode(where)) + rb"/(par\w+\.par)\n",
                           out, re.MULTILINE)  # fmt: skip
        assert b"".join(tag + b"\t" + name for tag, name in names) == out.replace(
            os.fsencode(where) + b"/", b""
        ).replace(b"\n", b"")
        assert sorted(os.listdir(where)) == sorted(os.fsdecode(name) for _, name in names)
        return [(tag, (where / os.fsdecode(name)).read_bytes()) for tag, name in names]

    assert contents(ours, ours_tmp) == contents(theirs, theirs_tmp)
    assert len(contents(ours, ours_tmp)) == len(INPUTS)


def test_dry_run_tag_is_that_of_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    argv = ["--dry-run", "--tag", "-k", "echo", "{}", ":::", "a", "b.c", "d"]
    theirs, ours = _both(tmp_path, monkeypatch, capfdbinary, argv)
    assert ours == theirs
    assert theirs[1] == b"a\techo a\nb.c\techo b.c\nd\techo d\n"
