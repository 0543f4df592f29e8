"""The code-shape limits of ``src/asynctasklib`` (tools/shape.py), held by the suite.

Modules of at most 700 lines (400 in ``_cli``, the CLI), functions of at most 80 lines and
radon cyclomatic complexity 25, and no import cycle among our modules, type-only imports
included.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("radon", reason="radon is not installed (pip install -e '.[lint]')")

TOOL = Path(__file__).resolve().parent.parent / "tools" / "shape.py"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shape", TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shape"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(300)  # radon over every module: seconds, but minutes on a loaded machine
def test_the_source_keeps_its_shape() -> None:
    shape = load_tool()
    found = shape.problems(shape.modules())
    assert found == []


def test_the_tool_sees_a_cli_module_over_400_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """401 lines are too many in ``_cli``, not elsewhere (701 are)."""
    shape = load_tool()
    src = tmp_path / "asynctasklib"
    (src / "_cli").mkdir(parents=True)
    for rel, lines in [("_cli/_big.py", 401), ("_cli/_ok.py", 400), ("_big.py", 401),
                       ("_huge.py", 701), ("_cli/_huge.py", 701)]:  # fmt: skip
        (src / rel).write_text("x = 1\n" * lines)
    monkeypatch.setattr(shape, "SRC", src)
    assert sorted(shape.problems(shape.modules())) == [
        "asynctasklib/_cli/_big.py: 401 lines > 400",
        "asynctasklib/_cli/_huge.py: 701 lines > 400",
        "asynctasklib/_huge.py: 701 lines > 700",
    ]


def test_the_tool_sees_a_cycle() -> None:
    shape = load_tool()
    assert shape.cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert shape.cycles({"a": {"b"}, "b": set()}) == []
