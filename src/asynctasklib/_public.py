"""Where the public classes and functions say they live."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["public_here"]


def public_here(namespace: Mapping[str, object], names: Iterable[str], module: str) -> None:
    """Make the public classes and functions say where users import them from, as trio and
    httpx do: reprs, tracebacks and pickles then name ``asynctasklib.Task``, not a private
    module that may move. Each private module that defines one calls this at its end (once
    the class is made: `dataclasses` reads ``__module__`` while it makes one), so the name
    holds however the object was reached, ``asynctasklib`` being imported lazily."""
    for name in names:
        obj = namespace[name]
        if callable(obj):  # (classes too)
            obj.__module__ = module
