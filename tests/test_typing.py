"""Static typing of the public API: what mypy and pyright infer, and pyright's completeness.

tests/typing_cases.py holds ``assert_type`` calls and lines that must be type errors; here
both checkers run on it as a user's code would be checked (mypy with the project's strict
settings, pyright in strict mode), and pyright's ``--verifytypes`` scores the public API. The
checkers run in subprocesses of this Python, so they see the asynctasklib installed here. A
checker that is not installed skips its tests (both come with the ``lint`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import typing_cases

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "typing_cases.py"


def _needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"{module} is not installed (pip install -e '.[lint]')",
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # pyright finds installed packages through the `python` first on PATH: this one's.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _pyright_json(*args: str) -> dict[str, Any]:
    done = _run("pyright", "--outputjson", *args)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no report ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return report


@_needs("mypy")
@pytest.mark.timeout(300)
def test_mypy_infers_the_typed_cases() -> None:
    done = _run("mypy", "--config-file", str(ROOT / "pyproject.toml"), str(CASES))
    assert done.returncode == 0, done.stdout + done.stderr


@_needs("pyright")
@pytest.mark.timeout(300)
def test_pyright_infers_the_typed_cases(tmp_path: Path) -> None:
    # `# type: ignore` is mypy's here: pyright reads only its own ignores, and an ignore
    # that suppresses nothing is an error.
    config = tmp_path / "pyrightconfig.json"
    config.write_text(
        json.dumps(
            {
                "typeCheckingMode": "strict",
                "pythonVersion": "3.11",
                "enableTypeIgnoreComments": False,
                "reportUnnecessaryTypeIgnoreComment": "error",
            }
        )
    )
    report = _pyright_json("-p", str(config), str(CASES))
    problems = [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in report["generalDiagnostics"]
    ]
    assert report["summary"]["filesAnalyzed"] == 1
    assert not problems, "\n".join(problems)


@_needs("pyright")
@pytest.mark.timeout(300)
def test_public_api_is_fully_typed_for_pyright() -> None:
    # --ignoreexternal: distributed (in asynctasklib.dask's signatures) is not typed itself
    report = _pyright_json("--verifytypes", "asynctasklib", "--ignoreexternal")
    completeness = report["typeCompleteness"]
    unknown = [
        f"{symbol['name']}: {d['message']}"
        for symbol in completeness["symbols"]
        for d in symbol["diagnostics"]
        if d["severity"] == "error"  # (not the warnings of missing docstrings)
    ]
    assert completeness["packageRootDirectory"], "pyright did not find asynctasklib"
    assert completeness["completenessScore"] == 1, "\n".join(unknown)


# The cases are code that runs, with the outcomes their types say.


def test_typed_definitions_run() -> None:
    typing_cases.definitions()


async def test_typed_async_pool_cases_run() -> None:
    await typing_cases.async_pool(True)


def test_typed_blocking_pool_cases_run() -> None:
    typing_cases.blocking_pool(True)
