"""The argument checks every option goes through (asynctasklib._validate)."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from asynctasklib import Definition, ExponentialBackoff, Semaphore, WorkerPool
from asynctasklib._ratelimit import RateLimiter
from asynctasklib._validate import at_least, is_number, number, optional_seconds, seconds


@pytest.mark.parametrize("value", [0, 1, -2, 0.5, math.inf, math.nan])
def test_ints_and_floats_are_numbers(value: Any) -> None:
    assert is_number(value)
    assert number(value, "x") is value  # returned as given, not converted


@pytest.mark.parametrize("value", [True, False, "1", None, timedelta(seconds=1), 1j])
def test_bools_and_the_rest_are_not_numbers(value: Any) -> None:
    assert not is_number(value)
    with pytest.raises(TypeError, match=rf"^x must be a number, got {re.escape(repr(value))}$"):
        number(value, "x")


def test_at_least_takes_ints_from_the_minimum_up() -> None:
    assert at_least(0, "n", 0) == 0
    assert at_least(5, "n", 1) == 5
    with pytest.raises(ValueError, match=r"^n must be >= 1, got 0$"):
        at_least(0, "n", 1)
    with pytest.raises(ValueError, match=r"^n must be >= 0, got -1$"):
        at_least(-1, "n", 0)


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_at_least_refuses_what_is_not_an_int(value: Any) -> None:
    with pytest.raises(TypeError, match=rf"^n must be an int, got {type(value).__name__}$"):
        at_least(value, "n", 1)


def test_seconds_take_numbers_and_timedeltas() -> None:
    assert seconds(2, "t") == 2.0
    assert seconds(timedelta(milliseconds=1500), "t") == 1.5
    assert seconds(0, "t") == 0.0
    assert optional_seconds(None, "t") is None
    with pytest.raises(ValueError, match=r"^t must be > 0, got 0$"):
        optional_seconds(0, "t")
    with pytest.raises(ValueError, match=r"^t must be >= 0, got -1$"):
        seconds(-1, "t")
    with pytest.raises(ValueError, match=r"^t must not be NaN$"):
        seconds(math.nan, "t")
    with pytest.raises(TypeError, match=r"^t must be a number of seconds or a timedelta"):
        seconds(True, "t")


class Count(enum.IntEnum):
    THREE = 3


def test_every_count_option_says_the_same() -> None:
    """The options that take a count go through one check, so they word it alike."""
    makers: list[tuple[Callable[[Any], object], str, int]] = [
        (lambda v: WorkerPool(v), "max_workers", 1),
        (lambda v: Semaphore(v), "limit", 1),
        (lambda v: Definition(max_retries=v), "max_retries", 0),
        (lambda v: WorkerPool(1).map(str, [], window=v), "window", 1),
    ]
    for make, name, minimum in makers:
        with pytest.raises(TypeError, match=rf"^{name} must be an int, got bool$"):
            make(True)
        with pytest.raises(ValueError, match=rf"^{name} must be >= {minimum}, got {minimum - 1}$"):
            make(minimum - 1)
        make(Count.THREE)  # an int subclass is an int


def test_every_number_option_says_the_same() -> None:
    with pytest.raises(TypeError, match=r"^max_per_second must be a number, got True$"):
        RateLimiter(True)
    for name in ("multiplier", "jitter"):
        with pytest.raises(TypeError, match=rf"^{name} must be a number, got '1'$"):
            ExponentialBackoff(**{name: "1"})  # type: ignore[arg-type]
