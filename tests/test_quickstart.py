"""The Quick Start examples (examples/*.py, the Go README's rewritten) and the demo.

Each example runs as a script would (``runpy`` with ``__name__ == "__main__"``, so its own
``asyncio.run``): these are sync tests, on a real event loop, not the virtual clock.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from asynctasklib._demo import main as demo_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TESTED = {
    "basic_task.py",
    "worker_pool.py",
    "error_group.py",
    "state_hooks.py",
    "semaphore.py",
    "semaphore_timeout.py",
}


def run_example(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[list[str], dict[str, Any]]:
    """Run ``examples/<name>`` as ``python examples/<name>`` would; its lines and globals."""
    namespace = runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out, err = capsys.readouterr()
    assert err == ""
    return out.splitlines(), namespace


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == TESTED


def test_basic_task(capsys: pytest.CaptureFixture[str]) -> None:
    lines, _ = run_example("basic_task.py", capsys)
    assert lines == ["Executing task fetch-user-data", "Task completed successfully"]


def test_worker_pool(capsys: pytest.CaptureFixture[str]) -> None:
    lines, _ = run_example("worker_pool.py", capsys)
    processed = lines[:-1]
    assert sorted(processed) == sorted(f"Processing task task-{i}" for i in range(100))
    assert lines[-1] == "Completed: 100, Failed: 0"


def test_error_group(capsys: pytest.CaptureFixture[str]) -> None:
    lines, _ = run_example("error_group.py", capsys)
    assert lines == ["Error encountered: simulated error"]


def test_state_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    lines, _ = run_example("state_hooks.py", capsys)
    stamp = r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\]"  # RFC 3339, UTC, as Go prints it
    assert len(lines) == 2
    assert re.fullmatch(rf"{stamp} Task monitored-task started", lines[0])
    assert re.fullmatch(rf"{stamp} Task monitored-task completed", lines[1])


def test_semaphore(capsys: pytest.CaptureFixture[str]) -> None:
    lines, namespace = run_example("semaphore.py", capsys)
    assert sorted(lines) == sorted(f"Worker {i} processing" for i in range(10))
    assert namespace["peak"] == 3  # never more than the limit inside, and the limit was used
    assert namespace["inside"] == 0


def test_semaphore_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    lines, _ = run_example("semaphore_timeout.py", capsys)
    assert lines == [
        "Acquired a slot, working",
        "Failed to acquire: no slot free within 0.05 s",
        "try_acquire_with_timeout: still busy",
    ]


# -- the demo ------------------------------------------------------------------------------

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


def test_docs_show_the_examples() -> None:
    """docs/quickstart.md shows each example's code as it is (without its docstring)."""
    docs = (EXAMPLES.parent / "docs" / "quickstart.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, re.DOTALL)
    for name in TESTED:
        code = (EXAMPLES / name).read_text().split('"""', 2)[2].strip("\n") + "\n"
        assert code in blocks, f"docs/quickstart.md does not show examples/{name} as it is"
        assert 10 <= len(code.splitlines()) <= 30
    assert len(blocks) == len(TESTED)
