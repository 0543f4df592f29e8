"""Every public member says what it does: a docstring, and ``Args:`` naming its parameters.

Public means listed in the ``__all__`` of ``asynctasklib``, ``asynctasklib.blocking`` or
``asynctasklib.dask``, and the public attributes of those classes (inherited ones too).
A function or method that takes parameters needs an ``Args:`` section (Google style) with a
line for each; a class whose ``__init__`` takes parameters needs one in the class docstring.
Properties and dunder protocol methods (``__aiter__``, ``__enter__``...) need a docstring only.
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

import asynctasklib
import asynctasklib.blocking
import asynctasklib.dask

MODULES: list[ModuleType] = [asynctasklib, asynctasklib.blocking, asynctasklib.dask]

# The dunder methods of a protocol, which a user reaches through syntax: a docstring only.
PROTOCOL = frozenset(
    {
        "__aiter__",
        "__anext__",
        "__await__",
        "__iter__",
        "__next__",
        "__enter__",
        "__exit__",
        "__aenter__",
        "__aexit__",
    }
)
# Dunder methods that take arguments a user passes by name: held to the Args: rule.
CALLED = frozenset({"__call__"})

_ARG_LINE = re.compile(r"^(\s+)\*{0,2}(\w+)(?:\s*\([^)]*\))?\s*:")
_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")


def documented_args(doc: str) -> set[str]:
    """The parameter names an ``Args:`` section of ``doc`` has a line for."""
    names: set[str] = set()
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "Args:":
            continue
        indent: str | None = None
        for item in lines[i + 1 :]:
            if not item.strip():
                continue
            depth = len(item) - len(item.lstrip())
            if _SECTION.match(item) and (indent is None or depth < len(indent)):
                break
            match = _ARG_LINE.match(item)
            if match and (indent is None or match.group(1) == indent):
                indent = match.group(1)
                names.add(match.group(2))
            elif indent is not None and depth < len(indent):
                break
    return names


def parameters(fn: Callable[..., Any]) -> list[str] | None:
    """The names a caller passes to ``fn`` (not ``self``/``cls``), or None if unknown."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return [name for name in signature.parameters if name not in ("self", "cls")]


def args_problem(doc: str, params: list[str] | None) -> str | None:
    """What is wrong with the ``Args:`` of ``doc`` for ``params``, or None."""
    if not params:
        return None
    if "Args:" not in doc:
        return f"takes {', '.join(params)} but has no Args:"
    missing = [p for p in params if p not in documented_args(doc)]
    if missing:
        return f"Args: does not name {', '.join(missing)}"
    return None


def own_init(cls: type) -> Callable[..., Any] | None:
    """The ``__init__`` a class's users call, if this library wrote it (not a builtin's)."""
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        if klass.__module__ == "builtins" or not inspect.isfunction(init):
            return None
        return init
    return None


def class_members(cls: type) -> Iterator[tuple[str, Any]]:
    """The public attributes of ``cls`` that this library defines, inherited ones too."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("asynctasklib"):
            continue  # (object, Generic, Exception...: not ours to document)
        for name, value in vars(klass).items():
            if name in seen:
                continue
            if name.startswith("_") and name not in PROTOCOL | CALLED:
                continue
            seen.add(name)
            yield name, value


def problems(module: ModuleType) -> list[str]:
    """Every public member of ``module`` without the documentation this file asks for."""
    found: list[str] = []

    def check_callable(qual: str, fn: Any, needs_args: bool) -> None:
        doc = inspect.getdoc(fn)
        if not doc:
            found.append(f"{qual}: no docstring")
            return
        if needs_args:
            problem = args_problem(doc, parameters(fn))
            if problem:
                found.append(f"{qual}: {problem}")

    for name in module.__all__:
        obj = getattr(module, name)
        qual = f"{module.__name__}.{name}"
        if isinstance(obj, type):
            doc = vars(obj).get("__doc__")
            if not doc:
                found.append(f"{qual}: no docstring")
            init = own_init(obj)
            if doc and init is not None and not issubclass(obj, enum.Enum):
                problem = args_problem(inspect.cleandoc(doc), parameters(init))
                if problem:
                    found.append(f"{qual} (constructor): {problem}")
            if issubclass(obj, enum.Enum):
                continue
            for attr, value in class_members(obj):
                member = f"{qual}.{attr}"
                if isinstance(value, property):
                    if not inspect.getdoc(value):
                        found.append(f"{member}: no docstring")
                elif isinstance(value, (staticmethod, classmethod)):
                    check_callable(member, value.__func__, needs_args=True)
                elif inspect.isfunction(value):
                    check_callable(member, value, needs_args=attr not in PROTOCOL)
        elif callable(obj):
            check_callable(qual, obj, needs_args=True)
    return found


def test_documented_args_reads_a_google_style_section() -> None:
    doc = """Do it.

    Args:
        first: The first.
        second (int): The second,
            over two lines.
        *rest: The others.

    Returns:
        Something.
    """
    assert documented_args(inspect.cleandoc(doc)) == {"first", "second", "rest"}


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_public_member_is_documented(module: ModuleType) -> None:
    assert problems(module) == []
