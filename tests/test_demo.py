"""The demo (`_demo`, ``python -m asynctasklib demo``): its report adds up, a seed makes it
reproducible, bad arguments are refused, and it runs from the command line.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from asynctasklib._demo import main as demo_main

STATS = re.compile(
    r"^pool stats: total=(?P<total>\d+) done=(?P<done>\d+) failed=(?P<failed>\d+) "
    r"canceled=(?P<canceled>\d+) created=(?P<created>\d+) pending=(?P<pending>\d+) "
    r"started=(?P<started>\d+) max_workers=(?P<max_workers>\d+) "
    r"active_workers=(?P<active>\d+) stopped=True$",
    re.MULTILINE,
)
RETRIES = re.compile(
    r"^attempts: (?P<attempts>\d+) \((?P<retries>\d+) retries, (?P<hung>\d+) timed out\); "
    r"tasks that needed retries: (?P<retried>\d+) ",
    re.MULTILINE,
)


def run_demo(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = demo_main(argv)
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_demo(["--tasks", "300", "--seed", "1"], capsys)
    assert code == 0
    stats = STATS.search(out)
    assert stats is not None, out
    n = {k: int(v) for k, v in stats.groupdict().items()}
    assert n["done"] + n["failed"] + n["canceled"] == n["total"] == 300
    assert n["created"] == n["pending"] == n["started"] == n["active"] == 0
    assert n["max_workers"] == 50
    retries = RETRIES.search(out)
    assert retries is not None, out
    r = {k: int(v) for k, v in retries.groupdict().items()}
    assert 0 < r["retried"] <= r["retries"]
    assert r["attempts"] == 300 + r["retries"]
    assert r["hung"] > 0  # some attempts timed out
    assert re.search(r"^wall time: [\d.]+ s, [\d,]+ tasks/s$", out, re.MULTILINE)


def test_demo_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    """The same seed gives the same failures and retries, whatever the timing."""

    def outcome(out: str) -> tuple[str, ...]:
        keep = ("pool stats:", "attempts:", "failed for good:", "FAILED")
        return tuple(sorted(line for line in out.splitlines() if line.startswith(keep)))

    runs = [run_demo(["--tasks", "200", "--workers", "20", "--seed", "7"], capsys)[1]]
    runs.append(run_demo(["--tasks", "200", "--workers", "20", "--seed", "7"], capsys)[1])
    assert outcome(runs[0]) == outcome(runs[1])


def test_demo_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        demo_main(["--tasks", "0"])
    assert exc.value.code == 2
    assert "--tasks: must be >= 1" in capsys.readouterr().err


def test_demo_from_the_command_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asynctasklib", "demo", "--tasks", "50", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pool stats: total=50 " in proc.stdout
