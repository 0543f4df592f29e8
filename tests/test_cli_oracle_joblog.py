"""``--joblog``, ``--halt``, the exit status and ``--resume`` and its kin, against the real
GNU parallel: the same command lines, the same rows (but for the times), the same exit
statuses. Parallel runs a command line through a shell, so ours gets ``--shell``.

GNU parallel is slow to start: each test batches its cases.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asynctasklib._cli._joblog import HEADER as JOBLOG_HEADER
from cli_helpers import PARALLEL, needs_parallel, run

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

pytestmark = [
    needs_parallel,
    pytest.mark.timeout(300),
]
_TIMES = re.compile(r"^(\d+\t:\t)\d+\.\d{3}\t {0,5}\d+\.\d{3}\t", re.MULTILINE)


def parallel(*argv: str) -> tuple[int, str]:
    assert PARALLEL is not None
    done = subprocess.run(
        [PARALLEL, "--will-cite", *argv], capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout


def ours(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc, out, _ = run(capfd, "--shell", *argv)
    return rc, out


def untimed(text: str) -> str:
    """A joblog (or output with one) with its Starttime and JobRuntime checked for their
    format (3 decimals; the run time padded to 10) and taken out."""
    for match in re.finditer(r"^\d+\t:\t(\S+)\t( *\S+)\t", text, re.MULTILINE):
        assert re.fullmatch(r"\d+\.\d{3}", match[1]), match[0]
        assert re.fullmatch(r" *\d+\.\d{3}", match[2]), match[0]
        assert len(match[2]) == 10, match[0]
    return _TIMES.sub(r"\1T\tR\t", text)


def both(
    capfd: pytest.CaptureFixture[str],
    log: Path,
    argv: Sequence[str],
    before: Callable[[], None] = lambda: None,
) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """Run ``argv`` (with ``--joblog log``) by parallel, then by us (``before`` each):
    each one's exit status, output and joblog (its times taken out)."""
    results = []
    for tool in (parallel, lambda *a: ours(capfd, *a)):
        log.unlink(missing_ok=True)
        before()
        rc, out = tool("--joblog", str(log), *argv)
        results.append((rc, out, untimed(log.read_text())))
    return results[0], results[1]


def test_joblog_rows_and_exit_status_as_parallel(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    counter = tmp_path / "count"
    count = f"echo x >> {counter}.{{}}; test $(wc -l < {counter}.{{}}) -ge {{}}"
    cases: list[list[str]] = [
        # the exit status is the number of failed jobs; Receive is the bytes of stdout
        ["-j1", "echo {}; printf abc; echo err >&2; exit {}", ":::", "0", "1", "2", "3"],
        # the command line as parallel writes it: quoted inputs
        ["-j1", "echo {}", ":::", "a b", "it's", "$HOME", "tab\there", "x:y", "'q'", "@%"],
        # killed by a signal: Exitval 0, Signal 9
        ["-j1", "kill -9 $$; echo {}", ":::", "a"],
        # a timeout: Exitval -1, Signal 15
        ["-j1", "--timeout", "1", "sleep {}", ":::", "30", "0.1"],
        # --retries: one row per job, for its last attempt
        ["-j1", "--retries", "3", count, ":::", "2", "5"],
    ]  # fmt: skip

    def reset() -> None:
        for path in tmp_path.glob("count.*"):
            path.unlink()

    for case in cases:
        theirs, mine = both(capfd, log, case, reset)
        assert mine == theirs, case
        assert mine[2].startswith(JOBLOG_HEADER)
    # more than 100 failed: 101
    theirs_rc, _ = parallel("-j8", "exit 1", ":::", *map(str, range(102)))
    assert ours(capfd, "-j8", "exit 1", ":::", *map(str, range(102)))[0] == theirs_rc == 101


def test_joblog_command_of_plain_words_as_parallel(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A command given as words (no shell here): each value quoted where it stands, as
    parallel shows it (``x'a b'y``), also in --dry-run."""
    log = tmp_path / "log"
    argv = ["-k", "-j1", "echo", "{}", "x{}y", "{#}", ":::", "a b", "it's", "x:y", "'q'", ""]
    results = []
    for tool in (parallel, lambda *a: run(capfd, *a)[:2]):
        log.unlink(missing_ok=True)
        rc, out = tool("--joblog", str(log), *argv)
        dry = tool("--dry-run", *argv)
        results.append((rc, out, untimed(log.read_text()), dry))
    assert results[1] == results[0]
    assert "echo 'a b' x'a b'y 1\n" in results[1][2]


def test_joblog_rows_come_in_the_order_of_the_output_with_keep_order(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """With -k, as parallel writes them: job 2 ends first (job 1 waits until its process is
    reaped), yet its row comes after job 1's output and row, to a file as to stdout."""
    marker = tmp_path / "m"
    script = (
        f"if [ {{}} = 1 ]; then while [ ! -s {marker} ]; do sleep 0.01; done; "
        f"while kill -0 $(cat {marker}) 2>/dev/null; do sleep 0.01; done; fi; echo {{}}; "
        f"[ {{}} = 1 ] || echo $$ > {marker}"
    )
    log = tmp_path / "log"
    for where in (str(log), "-"):
        results = []
        for tool in (parallel, lambda *a: ours(capfd, *a)):
            marker.unlink(missing_ok=True)
            log.unlink(missing_ok=True)
            rc, out = tool("-k", "-j2", "--joblog", where, script, ":::", "1", "2")
            results.append((rc, untimed(out), untimed(log.read_text()) if where != "-" else ""))
        assert results[1] == results[0], where
        rows = results[1][1] if where == "-" else results[1][1] + results[1][2]
        assert re.findall(r"^(\d)\t:|^(\d)$", rows, re.MULTILINE) == (
            [("", "1"), ("", "2"), ("1", ""), ("2", "")] if where != "-"
            else [("", "1"), ("1", ""), ("", "2"), ("2", "")]
        )  # fmt: skip


def test_joblog_on_standard_output_as_parallel(capfd: pytest.CaptureFixture[str]) -> None:
    argv = ["-j1", "--joblog", "-", "echo {}; exit {}", ":::", "0", "1"]
    rc, out = parallel(*argv)
    assert (rc, untimed(out)) == (1, untimed(ours(capfd, *argv)[1]))
    assert out.startswith(JOBLOG_HEADER)


def test_joblog_plus_file_appends_as_parallel(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """--joblog +FILE appends its rows to FILE, with no header (even to a new file)."""
    logs = []
    for tool in (parallel, lambda *a: ours(capfd, *a)):
        log = tmp_path / "log"
        log.unlink(missing_ok=True)
        for value in ("1", "0"):
            tool("--joblog", f"+{log}", "exit {}", ":::", value)
        logs.append(untimed(log.read_text()))
    assert logs[0] == logs[1] == "1\t:\tT\tR\t0\t0\t1\t0\texit 1\n1\t:\tT\tR\t0\t0\t0\t0\texit 0\n"


def test_halt_as_parallel(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    one_by_one = ["-j1", "exit {}", ":::"]
    cases: list[list[str]] = [
        ["--halt", "now,fail=1", *one_by_one, "0", "3", "0", "0"],  # the job's own status
        ["--halt", "soon,fail=1", *one_by_one, "0", "3", "0", "4"],
        ["--halt", "now,fail=2", *one_by_one, "0", "3", "0", "4", "5"],  # 2 failed
        ["--halt", "now,fail=5", *one_by_one, "0", "3", "4"],  # never reached: 2 failed
        ["--halt", "now,success=1", *one_by_one, "1", "2", "0", "4"],  # 0
        ["--halt", "soon,success=2", *one_by_one, "1", "0", "0", "4"],
        ["--halt", "now,done=2", *one_by_one, "0", "4", "5"],  # 1 failed
        ["--halt", "soon,fail=50%", *one_by_one, "0", "3", "4", "0"],  # 50 (percent)
        ["--halt", "now,fail=25%", *one_by_one, "0", "7", "0", "0"],  # 25% of 4 is 1: 7
        ["--halt", "soon,fail=90%", *one_by_one, "0", "0", "3", "4"],  # never reached: 50
        ["--halt", "now,fail,1", *one_by_one, "0", "6", "0"],  # (parallel splits on , and =)
        ["--halt", "2", *one_by_one, "0", "3", "0"],  # now,fail=1
        ["--halt", "1", *one_by_one, "0", "3", "0"],  # soon,fail=1
        ["--halt", "-2", *one_by_one, "1", "0", "2"],  # now,success=1
        ["--halt", "-1", *one_by_one, "1", "0", "2"],  # soon,success=1
        ["--halt", "0", *one_by_one, "1", "0", "2"],  # never
        ["--halt", "30%", *one_by_one, "0", "1", "2", "0"],  # soon,fail=30%
        ["--halt", "never", *one_by_one, "1", "2"],
        ["--halt", "now,fail=1", "kill -9 $$", ":::", "a"],  # 128 + the signal
        ["--halt", "now,fail=1", "--timeout", "1", "sleep {}", ":::", "30"],  # -1: 255
    ]
    for case in cases:
        theirs, mine = both(capfd, log, case)
        assert mine == theirs, case


def test_halt_now_kills_soon_waits_as_parallel(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Job a fails once b runs; c would start next. ``now`` kills b (no row), ``soon``
    lets it end (its row); c never starts."""
    log = tmp_path / "log"
    started = tmp_path / "b.started"
    script = (
        f"if [ {{}} = a ]; then while [ ! -e {started} ]; do sleep 0.01; done; exit 3; fi; "
        f"touch {started}; sleep SECONDS"
    )
    for when, b_sleeps in (("now", "30"), ("soon", "1")):
        command = script.replace("SECONDS", b_sleeps)
        argv = ["-j2", "--halt", f"{when},fail=1", command, ":::", "a", "b", "c"]
        results: list[tuple[int, list[tuple[str, str]]]] = []
        for tool in (parallel, lambda *a: ours(capfd, *a)):
            log.unlink(missing_ok=True)
            started.unlink(missing_ok=True)
            rc = tool("--joblog", str(log), *argv)[0]
            rows = [row.split("\t") for row in log.read_text().splitlines()[1:]]
            results.append((rc, [(row[0], row[6]) for row in rows]))  # Seq, Exitval
        assert results[0] == results[1], when
        assert results[1] == (3, [("1", "3")] if when == "now" else [("1", "3"), ("2", "0")])


def test_timeout_percent_as_parallel(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """--timeout 1000%: once jobs succeeded, one that runs 10 times their median is killed
    (Exitval -1, Signal 15); the others, well under it, are not. With -j2 the slow job
    starts before any job succeeded, with no limit: the first success sets it. --timeout
    1m2s (units) kills none of these."""
    log = tmp_path / "log"
    fast = ["0.2", "0.2", "0.2"]
    cases = (
        (["-j1", "--timeout", "1000%"], [*fast, "30", "0.2"], ["4", "-1", "15"]),
        (["-j2", "--timeout", "1000%"], ["0.2", "30", "0.2"], ["2", "-1", "15"]),
        (["-j1", "--timeout", "1m2s"], [*fast, "0.3", "0.2"], ["4", "0", "0"]),
    )
    for options, inputs, slow_row in cases:
        argv = [*options, "sleep {}", ":::", *inputs]
        results: list[tuple[int, list[list[str]]]] = []
        for tool in (parallel, lambda *a: ours(capfd, *a)):
            log.unlink(missing_ok=True)
            rc = tool("--joblog", str(log), *argv)[0]
            rows = [row.split("\t") for row in log.read_text().splitlines()[1:]]
            results.append((rc, sorted([row[0], row[6], row[7]] for row in rows)))
        assert results[0] == results[1], options
        assert slow_row in results[1][1]


def test_resume_and_retry_failed_as_parallel(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A run, then --resume with more inputs, --resume-failed with more still, then
    --retry-failed (no command: the joblog's): the same jobs run, the same rows appended."""
    command = ["-j1", "echo {}; exit {}", ":::"]
    steps: list[list[str]] = [
        [*command, "0", "1", "2"],
        ["--resume", *command, "0", "1", "2", "3", "0"],
        ["--resume-failed", *command, "0", "1", "2", "3", "0", "5"],
        ["--retry-failed", "-j1"],  # (one at a time: the output in the jobs' order)
    ]
    for tool in ("parallel", "ours"):
        log = tmp_path / f"log.{tool}"
        outputs = []
        for step in steps:
            if tool == "parallel":
                outputs.append(parallel("--joblog", str(log), *step))
            else:
                outputs.append(ours(capfd, "--joblog", str(log), *step))
        (tmp_path / f"out.{tool}").write_text(repr(outputs))
    assert (tmp_path / "out.ours").read_text() == (tmp_path / "out.parallel").read_text()
    mine = untimed((tmp_path / "log.ours").read_text())
    assert mine == untimed((tmp_path / "log.parallel").read_text())
    assert mine.count(JOBLOG_HEADER) == 1
