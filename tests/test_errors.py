"""The exceptions (`_errors`): their hierarchy, their messages, pickling, and their public home.

Which call raises which error, and with what message, is tested with the call (test_task.py,
test_pool.py, test_blocking.py); here, the classes themselves.
"""

from __future__ import annotations

import asyncio
import pickle

import pytest

import asynctasklib
from asynctasklib import (
    InvalidStateError,
    PoolStoppedError,
    TaskCanceledError,
    TaskError,
    TaskFnNotSetError,
    TaskInProgressError,
    TaskTimeoutError,
    _errors,
)

ALL = [
    InvalidStateError,
    PoolStoppedError,
    TaskCanceledError,
    TaskError,
    TaskFnNotSetError,
    TaskInProgressError,
    TaskTimeoutError,
]
TASK_ERRORS = [
    TaskCanceledError,
    TaskTimeoutError,
    TaskInProgressError,
    TaskFnNotSetError,
    InvalidStateError,
]


def test_the_module_exports_every_error_and_the_package_the_same_objects() -> None:
    assert sorted(_errors.__all__) == sorted(cls.__name__ for cls in ALL)
    for cls in ALL:
        assert getattr(asynctasklib, cls.__name__) is cls
        assert cls.__name__ in asynctasklib.__all__


def test_the_hierarchy_is_the_documented_tree() -> None:
    assert TaskError.__bases__ == (Exception,)
    for cls in TASK_ERRORS:
        assert issubclass(cls, TaskError)
    assert TaskTimeoutError.__bases__ == (TaskError, TimeoutError)
    for cls in (TaskCanceledError, TaskInProgressError, TaskFnNotSetError, InvalidStateError):
        assert cls.__bases__ == (TaskError,)
    # a stopped pool is not a task's error
    assert PoolStoppedError.__bases__ == (RuntimeError,)
    assert not issubclass(PoolStoppedError, TaskError)


def test_a_task_timeout_is_caught_as_a_timeout_error_too() -> None:
    with pytest.raises(TimeoutError):
        raise TaskTimeoutError("slow")
    with pytest.raises(TaskError):
        raise TaskTimeoutError("slow")


def test_a_canceled_task_error_is_not_asyncios_cancellation() -> None:
    """It is an ordinary Exception: ``except Exception`` catches it, asyncio does not read it
    as a cancellation of the coroutine that raises it."""
    assert issubclass(TaskCanceledError, Exception)
    assert not issubclass(TaskCanceledError, asyncio.CancelledError)


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_the_message_is_the_str_and_the_args(cls: type[Exception]) -> None:
    error = cls("task 'x' went wrong")
    assert str(error) == "task 'x' went wrong"
    assert error.args == ("task 'x' went wrong",)
    assert repr(error) == f"{cls.__name__}(\"task 'x' went wrong\")"
    assert str(cls()) == ""


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_each_error_says_it_lives_in_asynctasklib(cls: type[Exception]) -> None:
    assert cls.__module__ == "asynctasklib"
    assert cls.__qualname__ == cls.__name__
    assert cls.__doc__


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_each_error_pickles_by_its_public_path_with_its_message(cls: type[Exception]) -> None:
    error = cls("the message")
    data = pickle.dumps(error)
    assert b"_errors" not in data
    back = pickle.loads(data)
    assert type(back) is cls
    assert back.args == ("the message",)
    assert str(back) == "the message"
