"""The README's promises that a test can hold it to."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# In a virtual environment: on a fresh Debian there is no `python`, and the system's pip
# refuses to install ("externally-managed-environment").
INSTALL_AND_DEMO = (
    "python3 -m venv .venv && .venv/bin/python -m pip install . "
    "&& .venv/bin/python -m asynctasklib demo"
)
TESTS = (
    "python3 -m venv .venv && .venv/bin/python -m pip install -e '.[dev]' "
    "&& .venv/bin/python -m pytest"
)


def first_bash_block() -> list[str]:
    """The lines of the README's first ```bash block (CI reads its test line from there)."""
    blocks: list[str] = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return blocks[0].strip().splitlines()


def test_the_two_set_up_commands_are_the_first_bash_block() -> None:
    assert first_bash_block() == [INSTALL_AND_DEMO, TESTS]


def test_the_set_up_commands_are_under_on_a_new_machine() -> None:
    section = README.split("## On a new machine", 1)[1].split("\n## ", 1)[0]
    assert INSTALL_AND_DEMO in section
    assert TESTS in section


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the line of the README's first bash block that mentions pytest."""
    first_block = re.findall(r"```bash\n(.*?)```", README, flags=re.S)[0]
    assert [line for line in first_block.splitlines() if "pytest" in line] == [TESTS]
    assert "README.md" in (ROOT / ".ci" / "run").read_text()  # (read from it, not copied)


def test_the_quick_start_is_the_checked_one() -> None:
    """docs/quickstart.md is checked against examples/ by test_quickstart.py."""
    assert (ROOT / "docs" / "quickstart.md").read_text().strip() in README
