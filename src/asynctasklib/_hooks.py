"""State hooks: plain callables told about each step of a task's lifecycle."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from contextvars import Context, copy_context
from dataclasses import dataclass
from datetime import datetime
from types import FunctionType
from typing import Any, TypeAlias

from ._public import public_here

__all__ = [
    "AttemptHook",
    "ErrorHook",
    "Hook",
    "StateHooks",
    "from_task_fn",
    "when_canceled",
    "when_created",
    "when_done",
    "when_failed",
    "when_pending",
    "when_started",
]

logger = logging.getLogger("asynctasklib")

Hook: TypeAlias = Callable[[str, datetime], object]
"""``hook(task_id, when)``; ``when`` is a timezone-aware UTC datetime."""
AttemptHook: TypeAlias = Callable[[str, datetime, int], object]
"""``on_pending(task_id, when, attempt)``: attempt 0 before the first run, n before retry n."""
ErrorHook: TypeAlias = Callable[[str, datetime, BaseException], object]
"""``on_failed(task_id, when, error)``."""

# What each hook is called with, after the task's id: (when,) or (when, attempt | error).
_HOOK_ARGS = {
    "on_created": ("when",),
    "on_pending": ("when", "attempt"),
    "on_started": ("when",),
    "on_done": ("when",),
    "on_failed": ("when", "error"),
    "on_canceled": ("when",),
    "on_task_fn": ("when",),
}
_NAMES = tuple(_HOOK_ARGS)


@dataclass(frozen=True, slots=True)
class _HookOption:
    """One hook for ``StateHooks(...)``, as ``when_started(fn)`` and the like make it: the
    field it fills (``on_started``...) and the function."""

    name: str
    fn: Callable[..., object]


def _option(name: str, fn: Callable[..., object]) -> _HookOption:
    _check_hook(name, fn)
    return _HookOption(name, fn)


def when_created(fn: Hook) -> _HookOption:
    """Call ``fn(task_id, when)`` when the task is created.

    Args:
        fn: called with the task's id and the time, a timezone-aware UTC datetime.

    Returns:
        An option for ``StateHooks(...)``.

    Raises:
        TypeError: ``fn`` is not callable, is an ``async def`` or a generator
            function, or cannot take those arguments.
    """
    return _option("on_created", fn)


def when_pending(fn: AttemptHook) -> _HookOption:
    """Call ``fn(task_id, when, attempt)`` each time the task becomes PENDING.

    Args:
        fn: called with the task's id, the time, and the attempt: 0 before the first
            run, n before retry n.

    Returns:
        An option for ``StateHooks(...)``.

    Raises:
        TypeError: ``fn`` is not callable, is an ``async def`` or a generator
            function, or cannot take those arguments.
    """
    return _option("on_pending", fn)


def when_started(fn: Hook) -> _HookOption:
    """Call ``fn(task_id, when)`` each time an attempt starts.

    Args:
        fn: called with the task's id and the time the attempt started.

    Returns:
        An option for ``StateHooks(...)``.

    Raises:
        TypeError: ``fn`` is not callable, is an ``async def`` or a generator
            function, or cannot take those arguments.
    """
    return _option("on_started", fn)


def when_done(fn: Hook) -> _HookOption:
    """Call ``fn(task_id, when)`` when the task ends DONE.

    Args:
        fn: called with the task's id and the time it ended.

    Returns:
        An option for ``StateHooks(...)``.

    Raises:
        TypeError: ``fn`` is not callable, is an ``async def`` or a generator
            function, or cannot take those arguments.
    """
    return _option("on_done", fn)


def when_failed(fn: ErrorHook) -> _HookOption:
    """Call ``fn(task_id, when, error)`` when the task ends FAILED.

    Args:
        fn: called with the task's id, the time it ended and its error.

    Returns:
        An option for ``StateHooks(...)``.

    Raises:
        TypeError: ``fn`` is not callable, is an ``async def`` or a generator
            function, or cannot take those arguments.
    """
    return _option("on_failed", fn)


def when_canceled(fn: Hook) -> _HookOption:
    """Call ``fn(task_id, when)`` when the task ends CANCELED.

    Args:
        fn: called with the task's id and the time it ended.

    Returns:
        An option for ``StateHooks(...)``.

    Raises:
        TypeError: ``fn`` is not callable, is an ``async def`` or a generator
            function, or cannot take those arguments.
    """
    return _option("on_canceled", fn)


def from_task_fn(fn: Hook) -> _HookOption:
    """Call ``fn(task_id, when)`` whenever the task function calls ``run.callback()``.

    Args:
        fn: called with the task's id and the time of the call.

    Returns:
        An option for ``StateHooks(...)``.

    Raises:
        TypeError: ``fn`` is not callable, is an ``async def`` or a generator
            function, or cannot take those arguments.
    """
    return _option("on_task_fn", fn)


def is_async_callable(fn: object) -> bool:
    """An ``async def`` function, a partial of one, or an object with an async ``__call__``."""
    while isinstance(fn, functools.partial):  # (inspect's checks see through them too)
        fn = fn.func
    if type(fn) is FunctionType and fn.__code__.co_flags & inspect.CO_COROUTINE:
        return True  # the common case, without inspect's slower checks
    if isinstance(fn, type):
        return False  # calling a class makes an instance, whatever its __call__ is
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


def is_generator_callable(fn: object) -> bool:
    """A generator function or async generator function, a partial of one, or an object
    whose ``__call__`` is one: calling it only makes a generator, running none of its body."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if type(fn) is FunctionType:
        return bool(fn.__code__.co_flags & _GENERATOR_FLAGS)  # the common case, fast
    if isinstance(fn, type):
        return False  # calling a class makes an instance, whatever its __call__ is
    return any(
        inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f)
        for f in (fn, getattr(fn, "__call__", None))  # noqa: B004
    )


def _check_hook(name: str, fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    if is_async_callable(fn):
        raise TypeError(f"{name} must be a plain function, not an async def: hooks are not awaited")
    if is_generator_callable(fn):
        raise TypeError(
            f"{name} must be a plain function, not a generator function: its body would never run"
        )
    # A hook that cannot take its arguments would fail at every call, each failure only
    # logged: refuse it now. A callable whose signature cannot be read (some builtins) is
    # taken on trust.
    args = ("task_id", *_HOOK_ARGS[name])
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args)
    except TypeError as exc:
        raise TypeError(
            f"{name} is called as {name}({', '.join(args)}), which {fn!r} cannot take: {exc}"
        ) from None


@dataclass(frozen=True, slots=True, init=False)
class StateHooks:
    """Callbacks for a task's lifecycle; every one is optional.

    Build it from option functions, ``StateHooks(when_started(f), when_done(g))``, or with
    keywords, ``StateHooks(on_started=f, on_done=g)``. Hooks run on the event loop's thread
    (``on_task_fn`` too, when ``run.callback()`` is called from a worker thread). A hook that
    raises is logged on the ``asynctasklib`` logger and otherwise ignored.

    Args:
        *options: made by `when_created`, `when_pending`, `when_started`, `when_done`,
            `when_failed`, `when_canceled` and `from_task_fn`.
        on_created: ``hook(task_id, when)`` when the task is created.
        on_pending: ``hook(task_id, when, attempt)`` each time it becomes PENDING.
        on_started: ``hook(task_id, when)`` each time an attempt starts.
        on_done: ``hook(task_id, when)`` when it ends DONE.
        on_failed: ``hook(task_id, when, error)`` when it ends FAILED.
        on_canceled: ``hook(task_id, when)`` when it ends CANCELED.
        on_task_fn: ``hook(task_id, when)`` when the task function calls
            ``run.callback()``.

    Raises:
        TypeError: a hook is not a plain callable that takes its arguments, or an option
            is not one of those above.
        ValueError: a hook is given twice.
    """

    on_created: Hook | None
    on_pending: AttemptHook | None
    on_started: Hook | None
    on_done: Hook | None
    on_failed: ErrorHook | None
    on_canceled: Hook | None
    on_task_fn: Hook | None

    def __init__(
        self,
        *options: _HookOption,
        on_created: Hook | None = None,
        on_pending: AttemptHook | None = None,
        on_started: Hook | None = None,
        on_done: Hook | None = None,
        on_failed: ErrorHook | None = None,
        on_canceled: Hook | None = None,
        on_task_fn: Hook | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "on_created": on_created,
            "on_pending": on_pending,
            "on_started": on_started,
            "on_done": on_done,
            "on_failed": on_failed,
            "on_canceled": on_canceled,
            "on_task_fn": on_task_fn,
        }
        for name, fn in values.items():
            if fn is not None:
                _check_hook(name, fn)
        for option in options:
            if not isinstance(option, _HookOption):
                raise TypeError(
                    "StateHooks takes options made by when_created(), when_pending(), "
                    "when_started(), when_done(), when_failed(), when_canceled() or "
                    f"from_task_fn(), got {type(option).__name__}"
                )
            if values[option.name] is not None:
                raise ValueError(f"{option.name} is given twice")
            values[option.name] = option.fn
        for name in _NAMES:
            object.__setattr__(self, name, values[name])


# The hooks of a task that has none: the engine reads each hook with no test for None first.
NO_HOOKS = StateHooks()


def call_hook(
    hook: Callable[..., object], task_id: str, *args: object, context: Context | None = None
) -> None:
    """Call one hook, in a copy of ``context`` (by default the current one): context
    variables it sets are dropped, they reach neither a task nor the code that fired it. Log
    and swallow anything it raises."""
    try:
        (copy_context() if context is None else context.copy()).run(hook, task_id, *args)
    except Exception:
        logger.exception("hook %s of task %r raised", getattr(hook, "__name__", hook), task_id)


public_here(  # (see `_public`)
    globals(),
    [
        "StateHooks",
        "from_task_fn",
        "when_canceled",
        "when_created",
        "when_done",
        "when_failed",
        "when_pending",
        "when_started",
    ],
    "asynctasklib",
)
