"""The public surface: what ``__all__`` lists, and where each object says it lives."""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Any

import pytest

import asynctasklib
import asynctasklib.blocking
import asynctasklib.task
import asynctasklib.workflow
from asynctasklib import PoolStats, State, TaskTimeoutError


@pytest.mark.parametrize(
    ("module", "name"),
    [(asynctasklib, n) for n in asynctasklib.__all__ if n != "__version__"]
    + [(asynctasklib.blocking, n) for n in asynctasklib.blocking.__all__],
)
def test_public_objects_name_their_public_module(module: Any, name: str) -> None:
    assert getattr(module, name).__module__ == module.__name__


@pytest.mark.parametrize("module", [asynctasklib.task, asynctasklib.workflow])
def test_the_topical_modules_re_export_the_same_objects(module: Any) -> None:
    for name in module.__all__:
        assert getattr(module, name) is getattr(asynctasklib, name)


def test_public_objects_pickle_by_their_public_path() -> None:
    error = TaskTimeoutError("slow")
    data = pickle.dumps(error)
    assert b"asynctasklib" in data
    assert b"_errors" not in data
    assert pickle.loads(pickle.dumps(State.DONE)) is State.DONE
    fields: dict[str, Any] = dict.fromkeys(PoolStats.__dataclass_fields__, 0)
    stats = PoolStats(**fields)
    assert pickle.loads(pickle.dumps(stats)) == stats
    assert type(pickle.loads(pickle.dumps(error))) is TaskTimeoutError


def test_reprs_and_tracebacks_name_the_public_class() -> None:
    assert repr(asynctasklib.WorkerPool).startswith("<class 'asynctasklib.WorkerPool'")
    assert repr(asynctasklib.blocking.WorkerPool) == "<class 'asynctasklib.blocking.WorkerPool'>"


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (this one has imported everything): its output."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_asynctasklib_is_lazy_and_the_names_still_work() -> None:
    """``import asynctasklib`` imports no asyncio (issue 12); a public name imports it."""
    out = _fresh(
        "import sys, asynctasklib\n"
        "print('asyncio' in sys.modules, asynctasklib.__version__)\n"
        "pool = asynctasklib.WorkerPool\n"
        "print('asyncio' in sys.modules, pool.__module__, asynctasklib.Task.__name__)\n"
    )
    assert out.splitlines() == [
        f"False {asynctasklib.__version__}",
        "True asynctasklib Task",
    ]
    out = _fresh("import asynctasklib\nprint(asynctasklib.workflow.WorkerPool.__name__)")
    assert out == "WorkerPool\n"  # (the topical modules too, as before)


def test_star_import_gives_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from asynctasklib import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(asynctasklib.__all__)
    assert namespace["WorkerPool"] is asynctasklib.WorkerPool
    out = _fresh("from asynctasklib import *\nprint(WorkerPool.__name__, when_done.__name__)")
    assert out == "WorkerPool when_done\n"


def test_an_unknown_attribute_raises_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match=r"module 'asynctasklib' has no attribute 'Nope'"):
        asynctasklib.Nope  # noqa: B018
    assert not hasattr(asynctasklib, "_pool_of_nothing")
    with pytest.raises(ImportError, match="Nope"):
        exec("from asynctasklib import Nope", {})


def test_dir_lists_the_public_names() -> None:
    assert set(asynctasklib.__all__) <= set(dir(asynctasklib))
    out = _fresh("import asynctasklib\nprint(sorted(dir(asynctasklib)))")
    assert all(repr(name) in out for name in asynctasklib.__all__)


def test_objects_reached_by_a_private_path_still_name_the_public_one() -> None:
    """The private modules set ``__module__`` themselves: a pickle made without touching
    ``asynctasklib.X`` (so before the lazy import) still names ``asynctasklib``."""
    out = _fresh(
        "import pickle, sys\n"
        "from asynctasklib._errors import TaskTimeoutError\n"
        "from asynctasklib._state import State\n"
        "assert 'asynctasklib.task' not in sys.modules\n"
        "data = pickle.dumps((TaskTimeoutError('slow'), State.DONE))\n"
        "print(b'_errors' in data, b'_state' in data, TaskTimeoutError.__module__)\n"
        "error, state = pickle.loads(data)\n"
        "import asynctasklib\n"
        "print(type(error) is asynctasklib.TaskTimeoutError, state is asynctasklib.State.DONE)\n"
    )
    assert out.splitlines() == ["False False asynctasklib", "True True"]
