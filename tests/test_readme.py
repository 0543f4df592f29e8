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


def test_the_two_set_up_commands_are_in_the_readme() -> None:
    section = README.split("## On a new machine", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].strip().splitlines()
    assert commands == [INSTALL_AND_DEMO, TESTS]


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the line of the README's first bash block that mentions pytest."""
    first_block = re.findall(r"```bash\n(.*?)```", README, flags=re.S)[0]
    assert [line for line in first_block.splitlines() if "pytest" in line] == [TESTS]
    assert "README.md" in (ROOT / ".ci" / "run").read_text()  # (read from it, not copied)


def test_the_quick_start_is_the_checked_one() -> None:
    """docs/quickstart.md is checked against examples/ by test_quickstart.py."""
    assert (ROOT / "docs" / "quickstart.md").read_text().strip() in README
