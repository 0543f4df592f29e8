"""The types of the command line's option values: a text value that is not a missing one,
and a bounded number."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from ._sources import SEPARATORS


def value(text: str) -> str:
    """An option's text value: not the ::: that starts the inputs (the value is missing)."""
    if text in SEPARATORS:
        raise argparse.ArgumentTypeError(f"expected a value, got {text!r}")
    return text


def number(kind: Callable[[str], Any], low: float, strict: bool) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` (int or float) >= ``low`` (> with ``strict``)."""
    bound = f"> {low:g}" if strict else f">= {low:g}"
    noun = "an integer" if kind is int else "a number of seconds"

    def parse(text: str) -> Any:
        try:
            got = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(got):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if got < low or (strict and got == low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return got

    return parse
