"""The Quick Start examples (examples/*.py, the Go README's rewritten).

(The demo, ``python -m asynctasklib demo``, is test_demo.py's.)

Each example runs as a script would (``runpy`` with ``__name__ == "__main__"``, so its own
``asyncio.run``): these are sync tests, on a real event loop, not the virtual clock.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest


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


def test_docs_show_the_examples() -> None:
    """docs/quickstart.md shows each example's code as it is (without its docstring)."""
    docs = (EXAMPLES.parent / "docs" / "quickstart.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, re.DOTALL)
    for name in TESTED:
        code = (EXAMPLES / name).read_text().split('"""', 2)[2].strip("\n") + "\n"
        assert code in blocks, f"docs/quickstart.md does not show examples/{name} as it is"
        assert 10 <= len(code.splitlines()) <= 30
    assert len(blocks) == len(TESTED)
