"""The types of the command line's option values: a text value that is not a missing one,
a bounded number, and a size."""

from __future__ import annotations

import argparse
import math
import re
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


# GNU parallel's UNIT PREFIX: upper case binary, lower case decimal (its man page).
_PREFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
             "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}  # fmt: skip
_SIZE = re.compile(r"(?P<n>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<prefix>[KMGTPkmgtp]?)")


def size(text: str) -> int:
    """A number of bytes with GNU parallel's unit prefixes: ``1G`` is 1024**3 bytes, ``1g``
    10**9 (K M G T P, k m g t p). Not its arithmetic (``1M-12*2k``), which it evaluates as
    Perl: refused."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 512M or 2G (K M G T P: powers of 1024; k m g t p: of "
            f"1000), got {text!r}"
        )
    return round(float(match["n"]) * _PREFIXES[match["prefix"]])
