"""`Definition`: validation of every field, normalisation of durations, immutability, defaults."""

from __future__ import annotations

import dataclasses
import functools
import math
from datetime import timedelta
from typing import Any

import pytest

from asynctasklib import Definition, ExponentialBackoff, StateHooks, when_done
from asynctasklib.task import Definition as TaskDefinition

NAN = math.nan


async def _async_fn(run: Any) -> int:
    return 1


def _sync_fn(run: Any) -> int:
    return 2


class _AsyncCallable:
    async def __call__(self, run: Any) -> int:
        return 3


# -- defaults -------------------------------------------------------------------------------


def test_defaults() -> None:
    d = Definition()
    assert d.id == ""
    assert d.task_fn is None
    assert d.hooks is None
    assert d.delay == 0.0
    assert type(d.delay) is float
    assert d.max_duration == 30.0
    assert type(d.max_duration) is float
    assert d.max_retries == 0
    assert d.backoff == ExponentialBackoff()
    assert d.backoff == ExponentialBackoff(initial=0.1, multiplier=2.0, max_delay=30.0, jitter=0.5)
    assert d.retry_on is Exception
    assert d.total_timeout is None


def test_same_class_from_both_namespaces() -> None:
    assert TaskDefinition is Definition


def test_all_fields_kept() -> None:
    hooks = StateHooks(when_done(lambda _id, _when: None))

    def backoff(n: int) -> float:
        return n * 1.5

    def retry_on(e: BaseException) -> bool:
        return True

    d = Definition(
        id="job",
        task_fn=_sync_fn,
        hooks=hooks,
        delay=1.25,
        max_duration=None,
        max_retries=7,
        backoff=backoff,
        retry_on=retry_on,
        total_timeout=99,
    )
    assert d.id == "job"
    assert d.task_fn is _sync_fn
    assert d.hooks is hooks
    assert d.delay == 1.25
    assert d.max_duration is None
    assert d.max_retries == 7
    assert d.backoff is backoff
    assert d.retry_on is retry_on
    assert d.total_timeout == 99.0
    assert type(d.total_timeout) is float


@pytest.mark.parametrize(
    "task_fn", [_async_fn, _sync_fn, _AsyncCallable(), lambda run: None, print], ids=repr
)
def test_any_callable_task_fn_accepted(task_fn: Any) -> None:
    assert Definition(task_fn=task_fn).task_fn is task_fn


@pytest.mark.parametrize(
    "retry_on",
    [ValueError, BaseException, (KeyError, OSError), (), lambda e: True, ExponentialBackoff()],
    ids=repr,
)
def test_valid_retry_on_accepted(retry_on: Any) -> None:
    # a predicate is any callable (here also a callable instance)
    assert Definition(retry_on=retry_on).retry_on is retry_on


# -- durations: numbers and timedelta, normalised to float seconds ------------------------------


@pytest.mark.parametrize("field", ["delay", "max_duration", "total_timeout", "backoff"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2.0),
        (2.5, 2.5),
        (timedelta(milliseconds=1500), 1.5),
        (timedelta(minutes=2), 120.0),
        (timedelta(days=1, seconds=1), 86401.0),
    ],
)
def test_durations_normalised_to_float_seconds(field: str, value: Any, expected: float) -> None:
    d = Definition(**{field: value})
    got = getattr(d, field)
    assert got == expected
    assert type(got) is float


@pytest.mark.parametrize("field", ["delay", "backoff"])
def test_zero_allowed_for_delay_and_backoff(field: str) -> None:
    zero: dict[str, Any] = {field: 0}
    zero_timedelta: dict[str, Any] = {field: timedelta(0)}
    assert getattr(Definition(**zero), field) == 0.0
    assert getattr(Definition(**zero_timedelta), field) == 0.0


@pytest.mark.parametrize("field", ["max_duration", "total_timeout"])
def test_none_means_no_limit(field: str) -> None:
    no_limit: dict[str, Any] = {field: None}
    assert getattr(Definition(**no_limit), field) is None


def test_callable_backoff_kept_as_is() -> None:
    eb = ExponentialBackoff(initial=1, jitter=0)
    assert Definition(backoff=eb).backoff is eb

    def fixed(n: int) -> timedelta:
        return timedelta(seconds=n)

    assert Definition(backoff=fixed).backoff is fixed


# -- validation: wrong types are TypeError naming the field -----------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 1),
        ("id", None),
        ("id", b"job"),
        ("task_fn", 1),
        ("task_fn", "print"),
        ("task_fn", object()),
        ("hooks", {}),
        ("hooks", "hooks"),
        ("hooks", lambda *a: None),
        ("delay", "1"),
        ("delay", None),
        ("delay", True),
        ("delay", [1]),
        ("max_duration", "30"),
        ("max_duration", True),
        ("max_duration", object()),
        ("max_retries", 1.0),
        ("max_retries", "1"),
        ("max_retries", None),
        ("max_retries", True),
        ("backoff", "0.1"),
        ("backoff", None),
        ("backoff", False),
        ("retry_on", int),
        ("retry_on", 5),
        ("retry_on", "ValueError"),
        ("retry_on", (KeyError, 1)),
        ("retry_on", (KeyError, int)),
        ("retry_on", ValueError()),
        ("total_timeout", "5"),
        ("total_timeout", True),
    ],
)
def test_wrong_type_is_type_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(TypeError, match=rf"\b{field}\b"):
        Definition(**{field: value})


# -- validation: bad values are ValueError naming the field -----------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delay", -1),
        ("delay", -0.001),
        ("delay", timedelta(seconds=-1)),
        ("max_duration", 0),
        ("max_duration", 0.0),
        ("max_duration", -5),
        ("max_duration", timedelta(0)),
        ("max_duration", timedelta(seconds=-1)),
        ("max_retries", -1),
        ("backoff", -0.5),
        ("backoff", timedelta(seconds=-2)),
        ("backoff", NAN),
        ("total_timeout", 0),
        ("total_timeout", -1),
        ("total_timeout", timedelta(0)),
        ("total_timeout", NAN),
    ],
    ids=repr,
)
def test_bad_value_is_value_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        Definition(**{field: value})


@pytest.mark.parametrize("field", ["delay", "max_duration"])
def test_nan_duration_is_value_error(field: str) -> None:
    nan: dict[str, Any] = {field: NAN}
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        Definition(**nan)


def test_validation_checks_each_definition_separately() -> None:
    # a first, valid construction must not make the fast paths skip checks on later ones
    Definition(delay=1.0, max_duration=1.0)
    with pytest.raises(ValueError, match="delay"):
        Definition(delay=-1.0)
    with pytest.raises(ValueError, match="max_duration"):
        Definition(max_duration=-1.0)


# -- frozen, equality, hashing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "other"),
        ("task_fn", _sync_fn),
        ("delay", 1.0),
        ("max_duration", None),
        ("max_retries", 3),
        ("backoff", 1.0),
        ("retry_on", KeyError),
        ("total_timeout", 1.0),
    ],
)
def test_frozen(field: str, value: Any) -> None:
    d = Definition(id="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(d, field, value)
    assert d == Definition(id="x")


def test_no_new_attributes() -> None:
    d = Definition()
    with pytest.raises((AttributeError, TypeError)):
        d.extra = 1  # type: ignore[attr-defined]


def test_equality_and_hash() -> None:
    a = Definition(id="a", task_fn=_sync_fn, delay=1, max_retries=2)
    b = Definition(id="a", task_fn=_sync_fn, delay=timedelta(seconds=1), max_retries=2)
    assert a == b
    assert hash(a) == hash(b)
    assert a != Definition(id="b", task_fn=_sync_fn, delay=1, max_retries=2)
    assert a != Definition(id="a", task_fn=_async_fn, delay=1, max_retries=2)
    assert a != Definition(id="a", task_fn=_sync_fn, delay=2, max_retries=2)
    assert a != Definition(id="a", task_fn=_sync_fn, delay=1, max_retries=3)
    assert Definition() == Definition()
    assert Definition(max_duration=timedelta(seconds=30)) == Definition()
    assert Definition(backoff=ExponentialBackoff()) == Definition()
    assert len({a, b, Definition()}) == 2


def test_replace_revalidates() -> None:
    d = Definition(id="x", delay=1)
    e = dataclasses.replace(d, delay=timedelta(seconds=3))
    assert e.delay == 3.0
    assert d.delay == 1.0
    with pytest.raises(ValueError, match="max_retries"):
        dataclasses.replace(d, max_retries=-2)


def test_one_definition_starts_many_tasks() -> None:
    from asynctasklib import Task

    d = Definition(id="shared", task_fn=_sync_fn)
    t1, t2 = Task(d), Task(d)
    assert t1 is not t2
    assert t1.definition is d
    assert t2.definition is d
    assert t1.id == t2.id == "shared"


def test_a_subclass_post_init_is_called() -> None:
    seen: list[str] = []

    @dataclasses.dataclass(frozen=True, init=False)
    class Named(Definition[None]):
        def __post_init__(self) -> None:
            seen.append(self.id)

    Named(id="n")
    assert seen == ["n"]


# -- task_fn: a generator function would end DONE with a generator, its body never run --------


def _gen_fn(run: Any) -> Any:
    yield 1


async def _async_gen_fn(run: Any) -> Any:
    yield 1


class _GenCallable:
    def __call__(self, run: Any) -> Any:
        yield 1


class _AsyncGenCallable:
    async def __call__(self, run: Any) -> Any:
        yield 1


class _Worker:
    def work(self, run: Any) -> Any:
        yield 1


@pytest.mark.parametrize(
    "task_fn",
    [
        _gen_fn,
        _async_gen_fn,
        functools.partial(_gen_fn),
        functools.partial(_async_gen_fn),
        functools.partial(functools.partial(_gen_fn)),
        _GenCallable(),
        _AsyncGenCallable(),
        functools.partial(_GenCallable()),
        _Worker().work,
    ],
    ids=[
        "generator-function",
        "async-generator-function",
        "partial-of-generator-function",
        "partial-of-async-generator-function",
        "partial-of-partial",
        "callable-object-generator-call",
        "callable-object-async-generator-call",
        "partial-of-callable-object",
        "generator-method",
    ],
)
def test_generator_task_fn_is_type_error_naming_the_field(task_fn: Any) -> None:
    with pytest.raises(TypeError, match=r"\btask_fn\b.*generator"):
        Definition(task_fn=task_fn)


def test_generator_task_fn_is_refused_by_map_too() -> None:
    from asynctasklib import WorkerPool

    with pytest.raises(TypeError, match=r"\btask_fn\b.*generator"):
        WorkerPool(1).map(_gen_fn, [1])


def test_a_class_with_a_generator_call_is_a_task_fn() -> None:
    # calling the class makes an instance (its result), whatever __call__ is. (To mypy the
    # class is no task function, as its __init__ takes no Run: only the check is tested.)
    d: Definition[Any] = Definition(task_fn=_GenCallable)  # type: ignore[arg-type]
    assert d.task_fn is _GenCallable  # type: ignore[comparison-overlap]


@pytest.mark.realtime
async def test_a_plain_function_returning_a_generator_runs() -> None:
    # Not a generator function: its body runs (and what it returns is its result).
    from asynctasklib import Task

    ran: list[int] = []

    def fn(run: Any) -> Any:
        ran.append(1)
        return iter([1, 2])

    task = Task(Definition(task_fn=fn))
    task.go()
    assert list(await task) == [1, 2]
    assert ran == [1]
