"""Checks of the arguments users give: durations, counts, numbers and on/off options.

One place for them, so that every option of the library refuses a bad value with the same
words. A bool is refused where a number is wanted: it is an int to Python, but ``True`` as a
number of workers or seconds is always a mistake.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TypeGuard

__all__ = [
    "at_least",
    "flag",
    "is_number",
    "number",
    "optional_seconds",
    "seconds",
    "shutdown_limits",
]


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value: object, name: str) -> float:
    """Validate a number (an int or a float, not a bool) and return it unchanged."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return value


def at_least(value: object, name: str, minimum: int) -> int:
    """Validate a count: an int (not a bool) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def seconds(value: object, name: str, *, allow_zero: bool = True) -> float:
    """Validate a duration given as seconds or a ``timedelta`` and return it in seconds."""
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif is_number(value):
        result = float(value)
    else:
        raise TypeError(f"{name} must be a number of seconds or a timedelta, got {value!r}")
    if math.isnan(result):
        raise ValueError(f"{name} must not be NaN")
    if result < 0 or (result == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return result


def optional_seconds(value: object, name: str, *, allow_zero: bool = False) -> float | None:
    """Like `seconds` for a limit that may be None (no limit); zero only if allowed."""
    if value is None:
        return None
    return seconds(value, name, allow_zero=allow_zero)


def flag(value: object, name: str) -> bool:
    """Validate an on/off option: only True or False (a truthy string such as "no" would
    otherwise turn it on)."""
    if value is True or value is False:
        return value
    raise TypeError(f"{name} must be a bool, got {value!r}")


def shutdown_limits(
    cancel: bool, timeout: float | timedelta | None, grace: float | timedelta | None
) -> tuple[float | None, float | None]:
    """``shutdown()``'s timeout and grace, in seconds, checked (and ``cancel``)."""
    flag(cancel, "cancel")
    limit = optional_seconds(timeout, "timeout", allow_zero=True)
    drain = optional_seconds(grace, "grace", allow_zero=True)
    if drain is not None:
        if not cancel:
            raise ValueError("grace needs cancel=True (without it, every task is waited for)")
        if limit is not None and drain > limit:
            raise ValueError(f"grace ({drain}s) must not be longer than timeout ({limit}s)")
    return limit, drain
