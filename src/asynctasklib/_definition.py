from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ._hooks import StateHooks, is_async_callable
from ._retry import (
    Backoff,
    ExponentialBackoff,
    RetryOn,
    check_retry_on,
    optional_seconds,
    seconds,
)

if TYPE_CHECKING:
    from ._task import Run

__all__ = ["Definition"]

T = TypeVar("T")

_DEFAULT_BACKOFF = ExponentialBackoff()


@dataclass(frozen=True)  # not slots=True: Definition[int](...) must work (__orig_class__)
class Definition(Generic[T]):
    """What to run and how: the recipe of a task. Immutable; one definition may start many tasks.

    Durations are seconds (int or float) or ``datetime.timedelta``; they are stored as float.

    Args:
        id: a name for the task, given to hooks.
        task_fn: ``fn(run)``, a plain function (run in a worker thread) or an ``async def``
            (run on the event loop). ``None`` makes the task fail with ``TaskFnNotSetError``.
        hooks: lifecycle callbacks (a pool's hooks apply when this is None).
        delay: wait this long once, before the first attempt.
        max_duration: the timeout of each attempt; None for no limit.
        max_retries: retries after the first attempt (attempts = max_retries + 1).
        backoff: the wait before each retry: seconds, or ``f(retry_number) -> seconds``.
        retry_on: the errors worth a retry: a type, a tuple of types, or a predicate that
            returns True, False, or the seconds to wait (overriding ``backoff`` once).
            Timeouts are retried whatever it says; cancellations never are.
        total_timeout: a budget for the whole run, delay, attempts and backoff waits together;
            when it is spent the task fails with ``TaskTimeoutError`` and is not retried again.
    """

    id: str = ""
    task_fn: Callable[[Run], Awaitable[T]] | Callable[[Run], T] | None = None
    hooks: StateHooks | None = None
    delay: float | timedelta = 0.0
    max_duration: float | timedelta | None = 30.0
    max_retries: int = 0
    backoff: Backoff = _DEFAULT_BACKOFF
    retry_on: RetryOn = Exception
    total_timeout: float | timedelta | None = None
    # What the engine reads, validated and normalised, in one tuple:
    # (task_fn, is_async, delay, max_duration, total_timeout).
    _plan: tuple[Any, bool, float, float | None, float | None] = field(
        init=False, repr=False, compare=False, default=(None, False, 0.0, 30.0, None)
    )

    if TYPE_CHECKING:
        # What the type checker sees, so that T is the result of an async def task_fn too.
        @overload
        def __init__(
            self,
            id: str = "",
            *,
            task_fn: Callable[[Run], Awaitable[T]],
            hooks: StateHooks | None = None,
            delay: float | timedelta = 0.0,
            max_duration: float | timedelta | None = 30.0,
            max_retries: int = 0,
            backoff: Backoff = ...,
            retry_on: RetryOn = ...,
            total_timeout: float | timedelta | None = None,
        ) -> None: ...

        @overload
        def __init__(
            self,
            id: str = "",
            *,
            task_fn: Callable[[Run], T],
            hooks: StateHooks | None = None,
            delay: float | timedelta = 0.0,
            max_duration: float | timedelta | None = 30.0,
            max_retries: int = 0,
            backoff: Backoff = ...,
            retry_on: RetryOn = ...,
            total_timeout: float | timedelta | None = None,
        ) -> None: ...

        @overload
        def __init__(
            self: Definition[None],
            id: str = "",
            task_fn: None = None,
            hooks: StateHooks | None = None,
            delay: float | timedelta = 0.0,
            max_duration: float | timedelta | None = 30.0,
            max_retries: int = 0,
            backoff: Backoff = ...,
            retry_on: RetryOn = ...,
            total_timeout: float | timedelta | None = None,
        ) -> None: ...

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        if not isinstance(self.id, str):
            raise TypeError(f"id must be a str, got {type(self.id).__name__}")
        fn = self.task_fn
        if fn is not None and not callable(fn):
            raise TypeError(f"task_fn must be callable, got {type(fn).__name__}")
        if self.hooks is not None and not isinstance(self.hooks, StateHooks):
            raise TypeError(f"hooks must be a StateHooks, got {type(self.hooks).__name__}")
        if type(self.delay) is not float or not self.delay >= 0:  # (NaN fails >= too)
            setattr_(self, "delay", seconds(self.delay, "delay"))
        if type(self.max_duration) is not float or not self.max_duration > 0:
            setattr_(self, "max_duration", optional_seconds(self.max_duration, "max_duration"))
        if self.total_timeout is not None:
            setattr_(self, "total_timeout", optional_seconds(self.total_timeout, "total_timeout"))
        retries = self.max_retries
        if type(retries) is not int or retries < 0:
            if not isinstance(retries, int) or isinstance(retries, bool):
                raise TypeError(f"max_retries must be an int, got {type(retries).__name__}")
            raise ValueError(f"max_retries must be >= 0, got {retries}")
        backoff = self.backoff
        if backoff is not _DEFAULT_BACKOFF and not callable(backoff):
            setattr_(self, "backoff", seconds(backoff, "backoff"))
        if self.retry_on is not Exception:
            check_retry_on(self.retry_on)
        setattr_(
            self,
            "_plan",
            (
                fn,
                fn is not None and is_async_callable(fn),
                self.delay,
                self.max_duration,
                self.total_timeout,
            ),
        )
