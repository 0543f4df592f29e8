"""Running a task in its own context variables without an asyncio task of its own.

A pool's task keeps the context variables of the code that submitted it, as an asyncio task
would. A runner runs many tasks in one asyncio task, so either a task's variables are the
runner's own (`same_context`: then it runs as it is, the common case), or each step of its
coroutine is entered in the task's context (`run_in`, the trampoline).
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["resume_in", "run_in", "same_context"]

T = TypeVar("T")

_ABSENT: Any = object()


def same_context(context: contextvars.Context, home: contextvars.Context, size: int) -> bool:
    """Whether ``context`` holds the very variables of ``home`` (``size`` is ``len(home)``).

    By identity: ``a == b`` would compare distinct values with their own ``__eq__``, which
    may raise (a numpy array's), cost, or take two equal lists for one.
    """
    if len(context) != size:
        return False
    return not size or all(context.get(var, _ABSENT) is value for var, value in home.items())


@types.coroutine
def resume_in(
    context: contextvars.Context, coro: Coroutine[Any, Any, T], step: Any
) -> Generator[Any, Any, T]:
    """Drive ``coro``, which has just yielded ``step``, to its end, every step inside
    ``context`` (as an asyncio task would in its own context)."""
    while True:
        try:
            sent = yield step
        except BaseException as exc:  # thrown in by the driving asyncio task
            try:
                step = context.run(coro.throw, exc)
            except StopIteration as returned:
                return returned.value  # type: ignore[no-any-return]
        else:
            try:
                step = context.run(coro.send, sent)
            except StopIteration as returned:
                return returned.value  # type: ignore[no-any-return]


async def run_in(context: contextvars.Context, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` with every step of it inside ``context``."""
    try:
        step = context.run(coro.send, None)  # (an async def has run nothing yet)
    except StopIteration as returned:  # done in one step
        return returned.value  # type: ignore[no-any-return]
    return await resume_in(context, coro, step)
