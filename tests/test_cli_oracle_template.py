"""The replacement strings and the job slots checked against GNU parallel itself, where it is
installed: the same output for the same command and inputs. GNU parallel is slow to start,
so each test runs it a few times only, on many inputs and replacement strings at once.
"""

from __future__ import annotations

import errno
import itertools
import os
import subprocess
from pathlib import Path

import pytest

import asynctasklib
from asynctasklib._cli import _errors, _replace, _template, main
from cli_helpers import TIMEOUT, cli, joblog_rows, needs_parallel, wait_for
from test_cli_template import HOSTILE, NOT_REPLACEMENT_STRINGS, REFUSED

# For a run in another directory: the asynctasklib under test, wherever it is imported from.
SRC = str(Path(asynctasklib.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}


def _parallel(tmp_path: Path, *argv: str) -> bytes:
    env = {**os.environ, "HOME": str(tmp_path), "PARALLEL_SHELL": "/bin/sh"}
    done = subprocess.run(
        ["parallel", "--will-cite", "-k", "-j1", *argv],
        cwd=tmp_path, env=env, capture_output=True, timeout=240, check=False,  # (slow start)
    )  # fmt: skip
    return done.stdout


def _ours(capfdbinary: pytest.CaptureFixture[bytes], *argv: str) -> bytes:
    rc = main(["-k", "-j1", *argv])
    out, err = capfdbinary.readouterr()
    assert rc == 0, err
    return out


# Paths at their edges: no extension, dotfiles, trailing slashes, /, empty, a.b/c, dots.
EDGES = ["a", "a.b", "a.b.c", ".bashrc", "dir/", "dir/a.b", "/", "", "a.b/c", "/x/y.tar.gz",
         "./a", ".", "..", "a b.c", ".a.b", "a/.b", "dir//", "a.", "/a", "a/b/", "..a", "//",
         "///a//", "a//b", "a/./b.c", "-x.y", "~/f.txt", "a\\b.c", "\u00e9/\u00fc.tar",
         "x.\udcff", "a.b c/d"]  # fmt: skip

# (Perl's "." stops at a newline, and its "$" matches before a last one too.)
NEWLINES = ["a.b\n", "a\nb.c", "a.\n", "x/y\nz/w.q", "a/b\n/", "\n", "a.b\nc.d\n", "d/\n",
            "a\n/b", "/\n", "\ntouch PWNED\n", "a\n.b"]  # fmt: skip

# Every replacement string, for jobs of one argument (so {2} and {-2} are past the end).
ONE_ARGUMENT = ["{}", "{.}", "{/}", "{//}", "{/.}", "{1}", "{-1}", "{1.}", "{1/}", "{1//}",
                "{1/.}", "{-1 /.}", "{0}", "{0.}", "{00}", "{-0}", "{2}", "{-2}", "{2/.}",
                "{01}", "{#}", "{%}"]  # fmt: skip

# GNU parallel's answers for EDGES[:21], copied from a run of 20221122 (also checked against
# it live below): {.} {/} {//} {/.} of each.
KNOWN = """\
a|a|a|.|a
a.b|a|a.b|.|a
a.b.c|a.b|a.b.c|.|a.b
.bashrc||.bashrc|.|
dir/|dir/||.|
dir/a.b|dir/a|a.b|dir|a
/|/||/|
|||.|
a.b/c|a.b/c|c|a.b|c
/x/y.tar.gz|/x/y.tar|y.tar.gz|/x|y.tar
./a|./a|a|.|a
.||.|.|
..|.|..|.|.
a b.c|a b|a b.c|.|a b
.a.b|.a|.a.b|.|.a
a/.b|a/|.b|a|
dir//|dir//||.|
a.|a|a.|.|a
/a|/a|a|/|a
a/b/|a/b/||a|
..a|.|..a|.|.
"""


def test_values_are_those_gnu_parallel_gave() -> None:
    for row in KNOWN.splitlines():
        value, *expected = row.split("|")
        assert [_replace.change(value, how) for how in (".", "/", "//", "/.")] == expected


@needs_parallel
@pytest.mark.timeout(300)  # GNU parallel is slow to start on a loaded machine
def test_one_argument_values_match_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Each string on edge inputs and hostile ones, as plain arguments and in --shell."""
    monkeypatch.chdir(tmp_path)
    inputs = [v for v in EDGES + HOSTILE if "\n" not in v]  # (parallel splits a\nb in two)
    script = "printf '%s\\0' " + " ".join(ONE_ARGUMENT)
    theirs = _parallel(tmp_path, script, ":::", *inputs)
    # Each string gives a word, but {2} {2/.} {00} {-0}: past the one argument, nothing.
    assert theirs.count(b"\0") == len(inputs) * (len(ONE_ARGUMENT) - 4)
    assert _ours(capfdbinary, "--", "printf", "%s\\0", *ONE_ARGUMENT, ":::", *inputs) == theirs
    assert _ours(capfdbinary, "--shell", "--", script, ":::", *inputs) == theirs
    # Inputs with newlines (which its ::: splits): from a NUL-separated file (-0).
    (tmp_path / "inputs").write_bytes(b"".join(os.fsencode(v) + b"\0" for v in NEWLINES))
    theirs = _parallel(tmp_path, "-0", "-a", "inputs", script)
    assert theirs.count(b"\0") == len(NEWLINES) * (len(ONE_ARGUMENT) - 4)
    assert _ours(capfdbinary, "--", "printf", "%s\\0", *ONE_ARGUMENT, ":::", *NEWLINES) == theirs
    assert not (tmp_path / "PWNED").exists()


@needs_parallel
@pytest.mark.timeout(300)
def test_several_arguments_match_gnu_parallel(tmp_path: Path) -> None:
    """Jobs of three arguments (three ::: sources): {} is a word for each argument."""
    strings = ["{}", "x{}y", "{}-{}", "{1}", "{2}", "{3}", "{4}", "{-1}", "{-2}", "{-3}",
               "{-4}", "{-5}", "{0}", "{00}", "{1.}", "{2/}", "{3//}", "{-1/.}", "{.}", "{/}",
               "{//}", "{/.}", "{#}", "{%}", "a{1}b{3}c"]  # fmt: skip
    sources = [["a.b/c", "x y"], ["", "d/e.f"], ["-g", "h.i/", "it's $(touch PWNED)"]]
    script = "printf '%s\\0' " + " ".join(strings)
    groups = [word for source in sources for word in (":::", *source)]
    theirs = _parallel(tmp_path, script, *groups)
    plain = _template.Template(["printf", "%s\\0", *strings], shell=False)
    shell = _template.Template([script], shell=True)
    for template in (plain, shell):
        ours = b""
        for seq, args in enumerate(itertools.product(*sources), 1):
            argv = template.argv(seq, 1, args)
            ours += subprocess.run(argv, cwd=tmp_path, capture_output=True, check=True).stdout
        assert ours == theirs
    assert not (tmp_path / "PWNED").exists()


@needs_parallel
@pytest.mark.timeout(300)
def test_renaming_options_match_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = ["d/a.b", "c", "x/y/"]
    cases = [
        # BE is found before B (the longer first); {} {.} {1} are no replacement strings.
        (["-I", "XX", "--er", "E", "--bnr", "B", "--dnr", "D", "--bner", "BE",
          "--seqreplace", "S", "--slotreplace", "L"],
         ["XX", "E", "B", "D", "BE", "S", "L", "{}", "{.}", "{/}", "{1}", "X1X", "aXXb"]),
        # A name in braces has positional forms: {1x}, {1 x}; {1} is gone with {}.
        (["-I", "{x}", "--bnr", "{b}"], ["{x}", "{1x}", "{-1 x}", "{2x}", "{1b}", "{b}", "{1}"]),
        # A new name that is another string's takes its place: {.} is {} here.
        (["-I", "{.}", "--er", "{}"], ["{}", "{.}", "{1.}", "{1}"]),
    ]  # fmt: skip
    for options, strings in cases:
        script = "printf '%s\\0' " + " ".join(strings)
        theirs = _parallel(tmp_path, *options, script, ":::", *inputs)
        plain = ["--", "printf", "%s\\0", *strings, ":::", *inputs]
        assert (options, _ours(capfdbinary, *options, *plain)) == (options, theirs)
        ours = _ours(capfdbinary, *options, "--shell", "--", script, ":::", *inputs)
        assert (options, ours) == (options, theirs)


@needs_parallel
@pytest.mark.timeout(300)
def test_the_input_is_appended_as_gnu_parallel_appends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Only to a command without any replacement string ({#} counts; a renamed {} not)."""
    monkeypatch.chdir(tmp_path)
    cases = [  # (GNU parallel's command line, our command's words)
        ([], "printf '<%s>'", ["printf", "<%s>"]),
        ([], "printf '<%s>' n{#}", ["printf", "<%s>", "n{#}"]),
        ([], "printf '<%s>' {%}", ["printf", "<%s>", "{%}"]),
        ([], "printf '<%s>' {2}", ["printf", "<%s>", "{2}"]),
        (["-I", "XX"], "printf '<%s>' {}", ["printf", "<%s>", "{}"]),
    ]
    inputs = ["a b", "", "$(touch PWNED)"]
    for options, line, words in cases:
        theirs = _parallel(tmp_path, *options, line, ":::", *inputs)
        for command in (["--", *words], ["--shell", line]):
            ours = _ours(capfdbinary, *options, *command, ":::", *inputs)
            assert (command, ours) == (command, theirs)
    assert not (tmp_path / "PWNED").exists()


@needs_parallel
@pytest.mark.timeout(300)
def test_output_matches_gnu_parallel_in_quotes_for_plain_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Inside "..." or '...' GNU parallel pastes its quoted value in (so `echo "{}"` prints
    the quotes, and runs `$(...)`); there the output is the same for inputs that need no
    quoting, and is the input itself for the others (test_cli_template.py)."""
    monkeypatch.chdir(tmp_path)
    script = "; ".join(
        f"echo \"{rs}\"; echo '{rs}'; echo \"a {rs} b\"; echo 'a {rs} b'"
        for rs in ("{}", "{.}", "{/}", "{//}", "{/.}", "{1}", "{-1/.}")
    )
    plain = ["abc", "a.b", "x-1", "/tmp/f_2", "d/e.f"]
    theirs = _parallel(tmp_path, script, ":::", *plain)
    assert _ours(capfdbinary, "--shell", "--", script, ":::", *plain) == theirs


@needs_parallel
@pytest.mark.timeout(300)
def test_replacement_strings_are_those_of_gnu_parallel(tmp_path: Path) -> None:
    """What GNU parallel replaces, we replace or refuse; what it leaves, we leave."""
    braces = ONE_ARGUMENT + REFUSED + NOT_REPLACEMENT_STRINGS
    # Few parallel runs (each takes a while to start): the braces as words of one command,
    # except those with {= or =}, which parallel joins across words: one run each.
    perl = [b for b in braces if "{=" in b or "=}" in b]
    groups = [[b for b in braces if b not in perl]] + [[b] for b in perl]
    for group in groups:
        words = [f"<{i}:{brace}>" for i, brace in enumerate(group)]
        line = os.fsdecode(_parallel(tmp_path, "--dry-run", "echo", *words, ":::", "d/a.b"))
        assert line.startswith("echo <0:")
        for word, brace in zip(words, group, strict=True):
            try:
                pieces = _replace.parse(word, _replace.DEFAULT_NAMES)
                _replace.check_perl([word])
                ours = any(isinstance(piece, _replace.Field) for piece in pieces)
            except _errors.UsageError:
                ours = True  # refused
            assert (brace, word not in line) == (brace, ours)


# -- job slots -------------------------------------------------------------------------

# Each job writes its number and slot, then waits until the test opens its fifo.
SLOT_JOB = "echo {#} {%} >> started; read x < f{#}"


def _release(fifo: Path) -> None:
    """End the job that reads ``fifo`` (waiting for it to open it)."""

    def written() -> bool:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader yet
                return False
            raise
        os.write(fd, b"x\n")
        os.close(fd)
        return True

    wait_for(written, f"the job reading {fifo}")


def _started(cwd: Path) -> list[str]:
    path = cwd / "started"
    return path.read_text().splitlines() if path.exists() else []


def _wait_for_lines(cwd: Path, n: int) -> None:
    wait_for(lambda: len(_started(cwd)) >= n, f"{n} jobs started", 240)  # (parallel: slow)


def _wait_for_end(joblog: Path, seq: int) -> None:
    def ended() -> bool:
        return joblog.exists() and any(row[0] == str(seq) for row in joblog_rows(joblog))

    wait_for(ended, f"job {seq} ended")


def _slots_when_ending_one_at_a_time(
    argv: list[str], cwd: Path, jobs: int, at_once: int, ends: list[int]
) -> list[str]:
    """Run ``argv`` (jobs 1..``jobs`` of SLOT_JOB, ``at_once`` at a time) and end its jobs
    in the order ``ends``, each once the job that took the place of the last one ended has
    started: the lines of ``started``, in job order."""
    for seq in range(1, jobs + 1):
        os.mkfifo(cwd / f"f{seq}")
    env = {**ENV, "HOME": str(cwd), "PARALLEL_SHELL": "/bin/sh"}
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    try:
        expected = min(at_once, jobs)
        for seq in ends:
            _wait_for_lines(cwd, expected)
            _release(cwd / f"f{seq}")
            expected = min(jobs, expected + 1)
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        proc.kill()
        proc.wait()
    return sorted(_started(cwd), key=lambda line: int(line.split()[0]))


@needs_parallel
@pytest.mark.timeout(300)
def test_a_freed_slot_goes_to_the_next_job_as_in_gnu_parallel(tmp_path: Path) -> None:
    ends = [2, 1, 4, 3, 6, 5, 7]
    inputs = [":::", *map(str, range(1, 8))]
    runs = {}
    for name, argv in (
        ("parallel", ["parallel", "--will-cite", "-j3", SLOT_JOB, *inputs]),
        ("ours", cli("-j3", "--shell", "--", SLOT_JOB, *inputs)),
    ):
        cwd = tmp_path / name
        cwd.mkdir()
        runs[name] = _slots_when_ending_one_at_a_time(argv, cwd, 7, 3, ends)
    assert runs["ours"] == runs["parallel"]
    assert runs["ours"] == ["1 1", "2 2", "3 3", "4 2", "5 1", "6 2", "7 3"]


@pytest.mark.timeout(120)
def test_free_slots_are_taken_in_the_order_they_were_freed(tmp_path: Path) -> None:
    """Jobs 3 and 1 end while the next input has not come yet: job 4 takes slot 3, job 5
    slot 1. (GNU parallel, blocked on its input then, frees them as it reaps them: in the
    order the jobs started, so it would give job 4 slot 1.)"""
    for seq in range(1, 6):
        os.mkfifo(tmp_path / f"f{seq}")
    log = tmp_path / "log"
    argv = cli("-j3", "--joblog", str(log), "--shell", "--", SLOT_JOB)
    proc = subprocess.Popen(argv, cwd=tmp_path, env=ENV, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"a\nb\nc\n")
        proc.stdin.flush()
        _wait_for_lines(tmp_path, 3)
        for seq in (3, 1):
            _release(tmp_path / f"f{seq}")
            _wait_for_end(log, seq)
        proc.stdin.write(b"d\ne\n")
        proc.stdin.close()
        _wait_for_lines(tmp_path, 5)
        for seq in (2, 4, 5):
            _release(tmp_path / f"f{seq}")
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        proc.kill()
        proc.wait()
    started = sorted(_started(tmp_path))
    assert started == ["1 1", "2 2", "3 3", "4 3", "5 1"]
