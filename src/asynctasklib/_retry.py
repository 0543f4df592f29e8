"""Retry policy: which errors are retried, and how long to wait first. No I/O here."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeAlias

from ._public import public_here
from ._validate import is_number, number, seconds

__all__ = ["Backoff", "ExponentialBackoff", "RetryOn"]

# (Real expressions, not strings: type checkers do not read an alias built from joined
# strings, which left retry_on untyped.)
Backoff: TypeAlias = float | timedelta | Callable[[int], float | timedelta]
"""A constant wait in seconds, or ``f(retry_number) -> seconds`` (1 for the first retry)."""

RetryOn: TypeAlias = (
    type[BaseException]
    | tuple[type[BaseException], ...]
    | Callable[[BaseException], bool | float | timedelta]
)
"""Which errors to retry: a type, a tuple of types, or a predicate.

A predicate returns True to retry after the usual backoff, False not to retry, or a number
of seconds (or a ``timedelta``) to retry after exactly that long, for a server's Retry-After.
"""


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Wait ``min(max_delay, initial * multiplier ** (n - 1))`` before retry n, with jitter.

    The wait is scaled by a random factor in ``[1 - jitter, 1]``: ``jitter=0`` waits exactly
    the exponential delay, ``jitter=1`` waits anything from zero up to it ("full jitter").

    Args:
        initial: Seconds (or a ``timedelta``) before the first retry, before jitter.
        multiplier: What each further retry multiplies the delay by; at least 1.
        max_delay: The longest delay in seconds (or a ``timedelta``), before jitter.
        jitter: The share of the delay taken off at random, from 0 to 1.

    Raises:
        TypeError: A value is not a number (or, for the delays, a ``timedelta``).
        ValueError: A value is out of range or NaN.
    """

    initial: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", seconds(self.initial, "initial"))
        object.__setattr__(self, "max_delay", seconds(self.max_delay, "max_delay"))
        for name in ("multiplier", "jitter"):
            value = number(getattr(self, name), name)
            if math.isnan(value):
                raise ValueError(f"{name} must not be NaN")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")

    def __call__(self, retry: int) -> float:
        """The delay before a retry.

        Args:
            retry: The retry's number: 1 for the first retry.

        Returns:
            Seconds to wait before that retry.

        Raises:
            ValueError: ``retry`` is below 1.
        """
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        try:
            delay = min(self.max_delay, self.initial * self.multiplier ** (retry - 1))
        except OverflowError:
            delay = self.max_delay
        if self.jitter:
            delay *= 1.0 - self.jitter * random.random()
        return delay


def check_retry_on(retry_on: object) -> None:
    if isinstance(retry_on, type):
        if not issubclass(retry_on, BaseException):
            raise TypeError(f"retry_on must be an exception type, got {retry_on!r}")
    elif isinstance(retry_on, tuple):
        for item in retry_on:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(f"retry_on tuple must hold exception types, got {item!r}")
    elif not callable(retry_on):
        raise TypeError(
            f"retry_on must be an exception type, a tuple of them, or a predicate, got {retry_on!r}"
        )


def retry_wait(
    error: BaseException, retry: int, retry_on: object, backoff: object, timed_out: bool
) -> float | None:
    """Seconds to wait before retry number ``retry`` after ``error``; None not to retry.

    An attempt that ran out of its ``max_duration`` (``timed_out``) is retried whatever
    ``retry_on`` says; the caller checks the retry budget before asking.
    """
    if not timed_out:
        if isinstance(retry_on, type | tuple):
            if not isinstance(error, retry_on):
                return None
        else:
            verdict = retry_on(error)  # type: ignore[operator]
            if is_number(verdict) or isinstance(verdict, timedelta | str | bytes):
                # seconds (a str, such as a raw Retry-After header, is refused: convert it)
                return seconds(verdict, "the delay returned by retry_on")
            if not verdict:  # anything else counts by its truth (a regex match retries)
                return None
    if callable(backoff):
        return seconds(backoff(retry), "the delay returned by backoff")
    return backoff  # type: ignore[return-value]  # a float, made so by Definition


public_here(globals(), ["ExponentialBackoff"], "asynctasklib")  # (see `_public`)
