"""``asynctasklib run``'s entry point (``_cli/__init__.py``, then ``_cli/_start.py``): the real
command, dry runs, standard streams closed, the open-file limit, ``--help`` and
``--version``, and that those two import no asyncio.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from asynctasklib import _cli
from asynctasklib._cli import _start
from cli_helpers import PY, TIMEOUT, cli, run


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


def test_dry_run_prints_and_runs_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    rc, out, err = run(
        capfd, "--dry-run", "--", "touch", str(marker), "{#}", "{}", ":::", "a b", "c"
    )
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


def test_entry_point_dispatch(capfd: pytest.CaptureFixture[str]) -> None:
    from asynctasklib.__main__ import main as entry

    assert entry(["run", "--", "echo", ":::", "via entry"]) == 0
    assert capfd.readouterr().out == "via entry\n"
    assert entry([]) == 2
    assert entry(["--help"]) == 0
    assert "run" in capfd.readouterr().err
    assert entry(["nonsense"]) == 2


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A fake open-file limit (soft 128, hard 4096) that ``_fit_jobs`` reads and raises; it
    refuses to be raised to no limit, as Linux does for an unprivileged process."""
    import resource

    limits = {"soft": 128, "hard": 4096}
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))

    def setrlimit(_: int, new: tuple[int, int]) -> None:
        if new[0] == resource.RLIM_INFINITY:
            raise ValueError("not allowed")
        limits["soft"] = new[0]

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    return limits


def test_fit_jobs_raises_the_soft_limit_or_runs_fewer(
    limits: dict[str, int], capfd: pytest.CaptureFixture[str]
) -> None:
    assert _start._fit_jobs(100) == 100  # the soft limit was raised to what it needs
    assert limits["soft"] == _start.FDS_KEPT + _start.FDS_PER_JOB * 100
    assert capfd.readouterr().err == ""
    limits.update(soft=128, hard=128)
    assert _start._fit_jobs(100) == (128 - _start.FDS_KEPT) // _start.FDS_PER_JOB
    assert "warning: -j 100 needs about" in capfd.readouterr().err


def test_ensure_std_streams_puts_dev_null_where_a_stream_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, int, int]] = []

    def fcntl_(fd: int, cmd: int) -> int:
        if fd == 1:
            raise OSError(9, "Bad file descriptor")  # closed
        return os.O_RDONLY if fd == 2 else os.O_RDWR  # 2: read-only, as good as closed

    monkeypatch.setattr(fcntl, "fcntl", fcntl_)
    monkeypatch.setattr(os, "open", lambda path, flags: 99)
    monkeypatch.setattr(os, "dup2", lambda a, b: calls.append(("dup2", a, b)))
    monkeypatch.setattr(os, "close", lambda fd: calls.append(("close", fd, 0)))
    monkeypatch.setattr(sys, "stdout", None)
    _cli._ensure_std_streams()
    assert calls == [("dup2", 99, 1), ("close", 99, 0), ("dup2", 99, 2), ("close", 99, 0)]
    assert sys.stdout is not None
    assert sys.stdout.fileno() == 1


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


def test_fit_jobs_0_is_as_many_as_the_open_files_allow(
    limits: dict[str, int], capfd: pytest.CaptureFixture[str]
) -> None:
    import resource

    assert _start._fit_jobs(0) == (4096 - _start.FDS_KEPT) // _start.FDS_PER_JOB  # raised to hard
    limits.update(soft=128, hard=128)
    assert _start._fit_jobs(0) == (128 - _start.FDS_KEPT) // _start.FDS_PER_JOB
    limits.update(soft=128, hard=resource.RLIM_INFINITY)  # cannot be raised to no limit
    assert _start._fit_jobs(0) == (128 - _start.FDS_KEPT) // _start.FDS_PER_JOB
    assert capfd.readouterr().err == ""  # -j 0 asks for no more: no warning
    limits.update(soft=resource.RLIM_INFINITY, hard=resource.RLIM_INFINITY)
    assert _start._fit_jobs(0) == sys.maxsize
    assert _start._fit_jobs(5) == 5


def test_jobs_0_runs_them_all_within_the_open_file_limit() -> None:
    command = " ".join(shlex.quote(a) for a in cli("-j", "0", "--", "true", ":::"))
    inputs = " ".join(str(i) for i in range(50))
    proc = subprocess.run(
        ["sh", "-c", f"ulimit -n 128 && exec {command} {inputs}"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    assert "50 done, 0 failed" in proc.stderr


def _imported(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``argv`` (a Python command line) with ``-X importtime``: the process, and the
    names of the modules it imported (from the timings on standard error)."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    names = {
        line.rpartition("|")[2].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc, names


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_asyncio_nor_the_pool(
    flag: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """``asynctasklib run --help`` starts fast: it parses its options before it imports the
    run's modules, and ``import asynctasklib`` is lazy (issue 12). Its text is the same as
    in the process, on standard output, exit 0."""
    proc, names = _imported(cli(flag))
    assert proc.returncode == 0, proc.stderr
    assert "asynctasklib._cli._options" in names  # (the timings were read)
    heavy = {"asyncio", "asynctasklib._pool", "asynctasklib._cli._start", "asynctasklib.task"}
    assert not names & heavy
    assert run(capfd, flag) == (0, proc.stdout, "")
    start = "usage: asynctasklib run" if flag == "--help" else "asynctasklib "
    assert proc.stdout.startswith(start)


def test_a_usage_error_imports_no_asyncio() -> None:
    proc, names = _imported(cli("--jobs", "nope", "--", "true"))
    assert proc.returncode == 2
    assert "asyncio" not in names
    assert "argument -j/--jobs: expected N, +N, -N or N%" in proc.stderr


def test_a_run_imports_the_rest_after_the_options() -> None:
    proc, names = _imported(cli("--", "echo", ":::", "a"))
    assert (proc.returncode, proc.stdout) == (0, "a\n")
    assert {"asyncio", "asynctasklib._cli._start", "asynctasklib._pool"} <= names
