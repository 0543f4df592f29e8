from __future__ import annotations

import inspect
import math
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import MethodType
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, overload

from ._hooks import StateHooks, is_async_callable, is_generator_callable
from ._public import public_here
from ._retry import Backoff, ExponentialBackoff, RetryOn, check_retry_on
from ._run import _RUN
from ._validate import at_least, optional_seconds, seconds

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["Definition", "TaskOptions"]

# Covariant: a definition only hands out its T (the result), so a Definition[int] is a
# Definition[int | str] too, and a list of definitions of several result types is typed.
T = TypeVar("T", covariant=True)

_DEFAULT_BACKOFF = ExponentialBackoff()


# init=False: __init__ is written out below. Not slots=True: Definition[int](...) must work
# (it sets __orig_class__).
@dataclass(frozen=True, init=False)
class Definition(Generic[T]):
    """What to run and how: the recipe of a task. Immutable; one definition may start many tasks.

    Durations are seconds (int or float) or ``datetime.timedelta``; they are stored as float.

    Args:
        id: a name for the task, given to hooks.
        task_fn: ``fn(run)``, a plain function (run in a worker thread) or an ``async def``
            (run on the event loop). ``None`` makes the task fail with ``TaskFnNotSetError``.
            A generator function (plain or async) is refused with ``TypeError``.
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
    # What the runner reads as it takes a task, in one tuple: (task_fn, is_async,
    # max_duration with inf for no limit, plain: a task_fn and neither a delay nor a
    # total_timeout, so the first attempt starts at once). A plain tuple: the runner
    # unpacks it on its hot path, where a NamedTuple costs 1.5% per task (measured).
    # Everything else reads the fields by their names.
    _plan: tuple[Any, bool, float, bool] = field(
        init=False, repr=False, compare=False, default=(None, False, 30.0, False)
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

    else:

        def __init__(
            self,
            id: str = "",
            task_fn: Callable[[Run], Any] | None = None,
            hooks: StateHooks | None = None,
            delay: float | timedelta = 0.0,
            max_duration: float | timedelta | None = 30.0,
            max_retries: int = 0,
            backoff: Backoff = _DEFAULT_BACKOFF,
            retry_on: RetryOn = Exception,
            total_timeout: float | timedelta | None = None,
        ) -> None:
            # Written out rather than generated: the dataclass's frozen __init__ stores each
            # field through object.__setattr__; this one validates the arguments, then fills
            # __dict__ at once, in a third of the time (a Definition per item is common).
            if not isinstance(id, str):
                raise TypeError(f"id must be a str, got {type(id).__name__}")
            if task_fn is not None:
                if not callable(task_fn):
                    raise TypeError(f"task_fn must be callable, got {type(task_fn).__name__}")
                if is_generator_callable(task_fn):
                    # its call would return a generator at once, the task DONE with that
                    raise TypeError(
                        f"task_fn must not be a generator function, got {task_fn!r}: "
                        "calling it runs none of its body (return a value, or a list)"
                    )
            if hooks is not None and not isinstance(hooks, StateHooks):
                raise TypeError(f"hooks must be a StateHooks, got {type(hooks).__name__}")
            if type(delay) is not float or not delay >= 0:  # (NaN fails >= too)
                delay = seconds(delay, "delay")
            if type(max_duration) is not float or not max_duration > 0:
                max_duration = optional_seconds(max_duration, "max_duration")
            if total_timeout is not None:
                total_timeout = optional_seconds(total_timeout, "total_timeout")
            if type(max_retries) is not int or max_retries < 0:
                at_least(max_retries, "max_retries", 0)
            if backoff is not _DEFAULT_BACKOFF and not callable(backoff):
                backoff = seconds(backoff, "backoff")
            if retry_on is not Exception:
                check_retry_on(retry_on)
            is_async = task_fn is not None and is_async_callable(task_fn)
            self.__dict__.update(
                id=id,
                task_fn=task_fn,
                hooks=hooks,
                delay=delay,
                max_duration=max_duration,
                max_retries=max_retries,
                backoff=backoff,
                retry_on=retry_on,
                total_timeout=total_timeout,
                _plan=(
                    task_fn,
                    is_async,
                    math.inf if max_duration is None else max_duration,
                    task_fn is not None and not delay and total_timeout is None,
                ),
            )
            post_init = getattr(self, "__post_init__", None)
            if post_init is not None:  # (a subclass's, as a dataclass __init__ would call)
                post_init()


class TaskOptions(TypedDict, total=False):
    """The options ``submit(fn, *args, **options)`` takes: a `Definition`'s fields but
    ``task_fn``, ``id`` being the task's own."""

    id: str  # (a parameter of submit's own: listed here for the type checkers)
    hooks: StateHooks | None
    delay: float | timedelta
    max_duration: float | timedelta | None
    max_retries: int
    backoff: Backoff
    retry_on: RetryOn
    total_timeout: float | timedelta | None


_OPTIONS = TaskOptions.__optional_keys__ - {"id"}  # those of the definition

# What a recipe is: (its function, its definition, the least and most positional arguments
# the function takes).
_Recipe = tuple[Callable[..., Any], Definition[Any], int, int]


class _Recipes:
    """What ``submit(definition)`` or ``submit(fn, *args, **options)`` runs. For a function,
    a definition per function and set of options, validated once and kept (the last
    ``keep`` made) for the next call with the same, so that a task per item costs no
    `Definition` per item. Any thread may use it (the blocking face's submitters).

    A function is found by equality, then must be the same object: a bound method, made
    afresh at each access, is the same when its object and function are (its equality).
    """

    __slots__ = ("_check", "_keep", "_lock", "made")

    def __init__(self, check: Callable[[Definition[Any], Any], None] | None, keep: int = 256):
        self._check = check  # for an executor in other processes: what must be picklable
        self.made: dict[Any, _Recipe] = {}  # by fn, or (fn, *options, *their types)
        self._keep = keep
        self._lock = threading.Lock()  # (for a miss only)

    def what_to_run(
        self, fn: Any, args: tuple[Any, ...], options: dict[str, Any]
    ) -> tuple[Definition[Any], Any]:
        """The definition and the task's ``arg`` (`Task._setup`'s: _RUN to call ``task_fn``
        with the Run, else ``args``), checked: ``TypeError`` or ``ValueError`` for what
        `Definition` refuses, and ``TypeError`` for arguments or options with a definition,
        or a number of arguments ``fn`` cannot take.

        (`WorkerPool.submit` finds a function of no options in ``made`` itself.)"""
        if isinstance(fn, Definition):
            if args or options:
                raise TypeError(_ARGS_WITH_DEFINITION)
            if self._check is not None:
                self._check(fn, None)
            return fn, _RUN
        # With options, their types too: 1 == True, and True is no max_retries.
        key: Any = (fn, *options.items(), *map(type, options.values())) if options else fn
        try:
            made = self.made.get(key)
        except TypeError:  # unhashable (a bound method of an unhashable object, an option)
            made = key = None
        if made is None or (made[0] is not fn and fn.__class__ is not MethodType):
            made = self._make(fn, options, key)
        if not made[2] <= len(args) <= made[3]:
            raise _arity_error(fn, made[2], made[3], len(args))
        if self._check is not None:
            self._check(made[1], args)
        return made[1], args

    def _make(self, fn: Callable[..., Any], options: dict[str, Any], key: Any) -> _Recipe:
        if not callable(fn):
            raise TypeError(f"submit() takes a Definition or a function, got {type(fn).__name__}")
        for name in options:
            if name not in _OPTIONS:
                known = ", ".join(sorted(_OPTIONS | {"id"}))
                raise TypeError(f"submit(fn, ...) has no option {name!r} (its options: {known})")
        made = (fn, Definition(task_fn=fn, **options), *_positional(fn))
        if key is not None:
            with self._lock:
                if len(self.made) >= self._keep:
                    del self.made[next(iter(self.made))]  # the oldest
                self.made[key] = made
        return made


def check_id(task_id: object) -> None:
    """A task's own id, given to ``submit``, must be a str (None: the definition's)."""
    if task_id is not None and task_id.__class__ is not str:
        raise TypeError(f"id must be a str, got {type(task_id).__name__}")


_ARGS_WITH_DEFINITION = (
    "submit(definition) takes no arguments nor options but id (its task_fn is called with "
    "the Run): for fn(*args), submit the function itself: submit(fn, *args, **options)"
)


def _positional(fn: Callable[..., Any]) -> tuple[int, int]:
    """The least and most positional arguments ``fn`` takes (any number, if its signature
    cannot be read). ``TypeError`` if it needs a keyword argument: ``submit`` passes none."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0, sys.maxsize
    least = most = 0
    for p in parameters:
        if p.kind is p.VAR_POSITIONAL:
            most = sys.maxsize
        elif p.kind is p.KEYWORD_ONLY:
            if p.default is p.empty:
                raise TypeError(
                    f"{fn!r} needs the keyword argument {p.name!r}, and submit() passes "
                    "positional arguments only: bind it with functools.partial"
                )
        elif p.kind is not p.VAR_KEYWORD:
            most += 1
            if p.default is p.empty:
                least = most
    return least, most


def _arity_error(fn: Callable[..., Any], least: int, most: int, given: int) -> TypeError:
    if most == sys.maxsize:
        takes = f"at least {least}"
    elif least == most:
        takes = str(least)
    else:
        takes = f"{least} to {most}"
    # (a function given none that wants one may well be a task_fn, made for its Run)
    hint = " (a task_fn that takes the Run goes in a Definition)" if not given else ""
    return TypeError(
        f"{getattr(fn, '__qualname__', fn)!r} takes {takes} positional argument"
        f"{'' if takes == '1' else 's'}, but submit() gave it {given}{hint}"
    )


public_here(globals(), ["Definition"], "asynctasklib")  # (see `_public`)
