"""`_context`: whether a task may run in its runner's context, and the trampoline that runs
a coroutine's every step in a context of its own."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from asynctasklib._context import run_in, same_context

var_a: contextvars.ContextVar[Any] = contextvars.ContextVar("a")
var_b: contextvars.ContextVar[Any] = contextvars.ContextVar("b")


def context_with(**values: Any) -> contextvars.Context:
    """A fresh context holding ``a`` and/or ``b`` set to these values."""
    context = contextvars.Context()
    for name, value in values.items():
        context.run({"a": var_a, "b": var_b}[name].set, value)
    return context


def test_two_empty_contexts_are_the_same() -> None:
    assert same_context(contextvars.Context(), contextvars.Context(), 0)


def test_the_very_same_values_are_the_same_context() -> None:
    value = ["shared"]
    home = context_with(a=value, b=1)
    assert same_context(context_with(b=1, a=value), home, len(home))


@pytest.mark.parametrize(
    "other",
    [
        {},  # fewer variables
        {"a": "x", "b": "y"},  # more
        {"b": "x"},  # another variable
        {"a": "y"},  # another value
    ],
)
def test_other_variables_are_another_context(other: dict[str, Any]) -> None:
    home = context_with(a="x")
    assert not same_context(context_with(**other), home, len(home))


def test_equal_but_distinct_values_are_another_context() -> None:
    """By identity: two equal lists are two objects a task could tell apart (it may mutate
    one); and comparing would call the values' own __eq__."""
    home = context_with(a=[1, 2])
    assert not same_context(context_with(a=[1, 2]), home, len(home))


def test_a_value_whose_eq_raises_is_compared_by_identity() -> None:
    class Touchy:
        def __eq__(self, other: object) -> bool:
            raise AssertionError("compared with ==")

        __hash__ = object.__hash__

    value = Touchy()
    home = context_with(a=value)
    assert same_context(context_with(a=value), home, len(home))
    assert not same_context(context_with(a=Touchy()), home, len(home))


async def test_run_in_runs_every_step_in_the_context() -> None:
    context = context_with(a="task's")
    seen: list[Any] = []

    async def steps() -> str:
        seen.append(var_a.get("none"))
        await asyncio.sleep(0)
        seen.append(var_a.get("none"))
        var_b.set("set by the task")
        await asyncio.sleep(0)
        seen.append(var_b.get("none"))
        return "done"

    assert await run_in(context, steps()) == "done"
    assert seen == ["task's", "task's", "set by the task"]
    assert var_a.get("none") == "none"  # nothing leaked into the caller's context
    assert var_b.get("none") == "none"
    assert context[var_b] == "set by the task"  # the task's own context kept it


async def test_run_in_a_coroutine_done_in_one_step() -> None:
    async def at_once() -> Any:
        return var_a.get()

    assert await run_in(context_with(a=7), at_once()) == 7


async def test_run_in_throws_a_cancellation_into_the_coroutine_in_its_context() -> None:
    context = context_with(a="task's")
    seen: list[Any] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append(var_a.get("none"))
            raise

    atask = asyncio.ensure_future(run_in(context, waits()))
    await asyncio.sleep(0)
    atask.cancel()
    with pytest.raises(asyncio.CancelledError):
        await atask
    assert seen == ["task's"]
