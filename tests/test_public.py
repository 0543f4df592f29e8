"""The public surface: what ``__all__`` lists, and where each object says it lives."""

from __future__ import annotations

import pickle
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
