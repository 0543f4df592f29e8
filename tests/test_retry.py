"""Retry policy: `ExponentialBackoff`, and retry decisions seen through real tasks.

Timings use the virtual clock of conftest: ``loop.time()`` only moves to the next timer, so
the waits between attempts are exact.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from _helpers import now
from asynctasklib import (
    Definition,
    ExponentialBackoff,
    Run,
    State,
    Task,
    TaskCanceledError,
    TaskTimeoutError,
)
from conftest import LibraryLog


class Boom(BaseException):
    """Like KeyboardInterrupt: a BaseException that is not an Exception."""


class Recorder:
    """A task function that raises the given errors in turn, recording each attempt.

    Each item of ``script`` is an exception to raise, a number of seconds to sleep (then
    raise nothing and return "ok"), or the string "hang" (sleep a long time).
    """

    def __init__(self, *script: BaseException | float | str) -> None:
        self.script = list(script)
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.attempts: list[int] = []
        self.raised: list[BaseException] = []

    async def __call__(self, run: Run) -> str:
        self.starts.append(now())
        self.attempts.append(run.attempt)
        step = self.script[min(run.attempt, len(self.script) - 1)]
        try:
            if isinstance(step, BaseException):
                # a fresh object each attempt, so identity tells attempts apart
                error = type(step)(*step.args, run.attempt)
                self.raised.append(error)
                raise error
            if step == "hang":
                await asyncio.sleep(10_000)
            else:
                await asyncio.sleep(float(step))
            return "ok"
        finally:
            self.ends.append(now())

    def waits(self) -> list[float]:
        """The time between the end of each attempt and the start of the next."""
        return [s - e for e, s in zip(self.ends, self.starts[1:], strict=False)]


async def run_task(definition: Definition[Any]) -> Task[Any]:
    task = Task(definition)
    task.go()
    await task.wait()
    return task


# -- ExponentialBackoff ----------------------------------------------------------------------


def test_exponential_backoff_defaults() -> None:
    eb = ExponentialBackoff()
    assert (eb.initial, eb.multiplier, eb.max_delay, eb.jitter) == (0.1, 2.0, 30.0, 0.5)


def test_exponential_backoff_without_jitter() -> None:
    eb = ExponentialBackoff(jitter=0)
    got = [eb(n) for n in range(1, 13)]
    want = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0]
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        ({"initial": 1, "multiplier": 2, "max_delay": 100, "jitter": 0}, [1, 2, 4, 8, 16, 32, 64]),
        ({"initial": 1, "multiplier": 10, "max_delay": 50, "jitter": 0}, [1, 10, 50, 50, 50]),
        ({"initial": 3, "multiplier": 1, "max_delay": 50, "jitter": 0}, [3, 3, 3, 3]),
        ({"initial": 5, "multiplier": 2, "max_delay": 2, "jitter": 0}, [2, 2, 2]),
        ({"initial": 0, "multiplier": 3, "max_delay": 9, "jitter": 0}, [0, 0, 0]),
        (
            {"initial": 0.5, "multiplier": 1.5, "max_delay": 2, "jitter": 0},
            [0.5, 0.75, 1.125, 1.6875, 2],
        ),
    ],
)
def test_exponential_backoff_values(kwargs: dict[str, float], want: list[float]) -> None:
    eb = ExponentialBackoff(**kwargs)
    assert [eb(n) for n in range(1, len(want) + 1)] == want


@pytest.mark.parametrize("n", [1_000, 10_000, 10**6])
@pytest.mark.parametrize("multiplier", [2, 2.0, 1e300])
def test_exponential_backoff_huge_retry_number_is_capped(n: int, multiplier: float) -> None:
    eb = ExponentialBackoff(initial=0.1, multiplier=multiplier, max_delay=7.5, jitter=0)
    assert eb(n) == 7.5


def test_exponential_backoff_cap_with_jitter_is_scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.5)
    eb = ExponentialBackoff(initial=1, multiplier=2, max_delay=8, jitter=0.5)
    # the factor is 1 - 0.5 * 0.5 = 0.75, applied after the cap
    assert [eb(n) for n in range(1, 7)] == [0.75, 1.5, 3.0, 6.0, 6.0, 6.0]
    assert eb(10**6) == 6.0


@pytest.mark.parametrize(
    ("jitter", "r", "factor"),
    [
        (0.5, 0.0, 1.0),
        (0.5, 0.5, 0.75),
        (0.5, 0.999, 1 - 0.5 * 0.999),
        (1.0, 0.0, 1.0),
        (1.0, 0.25, 0.75),
        (1.0, 0.999, 0.001),
        (0.2, 0.5, 0.9),
    ],
)
def test_exponential_backoff_jitter_factor(
    monkeypatch: pytest.MonkeyPatch, jitter: float, r: float, factor: float
) -> None:
    monkeypatch.setattr(random, "random", lambda: r)
    eb = ExponentialBackoff(initial=2, multiplier=2, max_delay=100, jitter=jitter)
    assert eb(1) == pytest.approx(2 * factor, rel=1e-12)
    assert eb(3) == pytest.approx(8 * factor, rel=1e-12)


def test_exponential_backoff_jitter_zero_draws_no_random(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> float:
        raise AssertionError("random drawn with jitter=0")

    monkeypatch.setattr(random, "random", fail)
    assert ExponentialBackoff(initial=1, jitter=0)(2) == 2.0


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
def test_exponential_backoff_jitter_bounds_seeded(jitter: float) -> None:
    random.seed(20240601)
    eb = ExponentialBackoff(initial=1, multiplier=2, max_delay=1000, jitter=jitter)
    values = {n: [eb(n) for _ in range(200)] for n in range(1, 6)}
    for n, vs in values.items():
        base = 2.0 ** (n - 1)
        assert all((1 - jitter) * base <= v <= base for v in vs), (n, min(vs), max(vs))
        assert len(set(vs)) > 150  # really random
        assert max(vs) > base * (1 - jitter * 0.05)  # reaches near the top...
        assert min(vs) < base * (1 - jitter * 0.95)  # ...and near the bottom
    # the same seed gives the same waits
    random.seed(20240601)
    assert [eb(1) for _ in range(200)] == values[1]


@pytest.mark.parametrize("n", [0, -1])
def test_exponential_backoff_retry_numbers_start_at_one(n: int) -> None:
    with pytest.raises(ValueError, match="retry"):
        ExponentialBackoff()(n)


def test_exponential_backoff_timedelta_fields() -> None:
    # The fields are typed float; a timedelta is taken at run time (and made a float).
    eb = ExponentialBackoff(
        initial=timedelta(milliseconds=250),  # type: ignore[arg-type]
        max_delay=timedelta(seconds=1),  # type: ignore[arg-type]
    )
    assert eb.initial == 0.25
    assert eb.max_delay == 1.0
    assert type(eb.initial) is float


def test_exponential_backoff_frozen_and_equal() -> None:
    import dataclasses

    eb = ExponentialBackoff()
    with pytest.raises(dataclasses.FrozenInstanceError):
        eb.initial = 1.0  # type: ignore[misc]
    assert ExponentialBackoff(initial=1, jitter=0) == ExponentialBackoff(initial=1.0, jitter=0.0)
    assert ExponentialBackoff(initial=1) != ExponentialBackoff(initial=2)


@pytest.mark.parametrize("field", ["initial", "max_delay"])
@pytest.mark.parametrize("value", [-1, -0.001, math.nan, timedelta(seconds=-1)], ids=repr)
def test_exponential_backoff_bad_duration(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        ExponentialBackoff(**{field: value})


@pytest.mark.parametrize("field", ["initial", "max_delay", "multiplier", "jitter"])
@pytest.mark.parametrize("value", ["1", None, True], ids=repr)
def test_exponential_backoff_wrong_type(field: str, value: Any) -> None:
    with pytest.raises(TypeError, match=field):
        ExponentialBackoff(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("multiplier", 0.99),
        ("multiplier", 0),
        ("multiplier", -2),
        ("jitter", -0.1),
        ("jitter", 1.01),
    ],
)
def test_exponential_backoff_bad_value(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ExponentialBackoff(**{field: value})


@pytest.mark.parametrize("field", ["multiplier", "jitter"])
def test_exponential_backoff_nan_is_value_error(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ExponentialBackoff(**{field: math.nan})


# -- retry decisions through real tasks: retry_on ---------------------------------------------


@pytest.mark.parametrize(
    ("retry_on", "error", "retried"),
    [
        (Exception, ValueError("x"), True),
        (ValueError, ValueError("x"), True),
        (LookupError, KeyError("x"), True),  # subclasses match
        (KeyError, ValueError("x"), False),
        ((KeyError, ValueError), ValueError("x"), True),
        ((KeyError, ValueError), TypeError("x"), False),
        ((), ValueError("x"), False),
        (lambda e: True, ValueError("x"), True),
        (lambda e: False, ValueError("x"), False),
        (lambda e: None, ValueError("x"), False),
        (lambda e: isinstance(e, OSError), OSError("x"), True),
        (lambda e: isinstance(e, OSError), ValueError("x"), False),
    ],
)
async def test_retry_on(
    hook_log: LibraryLog, retry_on: Any, error: Exception, retried: bool
) -> None:
    fn = Recorder(error)
    task = await run_task(Definition(task_fn=fn, max_retries=2, backoff=1, retry_on=retry_on))
    assert hook_log.records == []  # a plain "no" is not an error
    assert task.state is State.FAILED
    assert task.error is fn.raised[-1]
    assert type(task.error) is type(error)
    if retried:
        assert task.attempts == 3
        assert fn.attempts == [0, 1, 2]
        assert fn.waits() == [1.0, 1.0]
    else:
        assert task.attempts == 1
        assert fn.attempts == [0]


async def test_predicate_receives_each_error() -> None:
    seen: list[BaseException] = []

    def retry_on(e: BaseException) -> bool:
        seen.append(e)
        return True

    fn = Recorder(ValueError("x"))
    task = await run_task(Definition(task_fn=fn, max_retries=3, backoff=0, retry_on=retry_on))
    # asked after each attempt that has a retry left, with that attempt's error
    assert len(seen) == 3
    assert all(a is b for a, b in zip(seen, fn.raised[:3], strict=True))
    assert task.error is fn.raised[3]


async def test_retry_succeeds_after_failures() -> None:
    fn = Recorder(ValueError("a"), ValueError("b"), 0.5)
    task = await run_task(Definition(task_fn=fn, max_retries=5, backoff=2))
    assert task.state is State.DONE
    assert task.result() == "ok"
    assert task.error is None
    assert task.attempts == 3
    assert fn.starts == [0.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("verdict", "wait"),
    [(2.5, 2.5), (0, 0.0), (0.0, 0.0), (7, 7.0), (timedelta(milliseconds=1500), 1.5)],
    ids=repr,
)
async def test_predicate_retry_after_waits_exactly(verdict: Any, wait: float) -> None:
    fn = Recorder(ValueError("x"), 1.0)
    task = await run_task(
        Definition(task_fn=fn, max_retries=1, backoff=100, retry_on=lambda e: verdict)
    )
    assert task.state is State.DONE
    assert fn.waits() == [wait]
    assert fn.starts == [0.0, wait]


async def test_predicate_retry_after_overrides_backoff_once() -> None:
    verdicts: list[Any] = [4.0, True, 0.25, True]
    retries: list[int] = []

    def backoff(n: int) -> float:
        retries.append(n)
        return 16.0 * n

    fn = Recorder(ValueError("x"))
    task = await run_task(
        Definition(task_fn=fn, max_retries=4, backoff=backoff, retry_on=lambda e: verdicts.pop(0))
    )
    assert task.state is State.FAILED
    assert task.attempts == 5
    assert fn.waits() == [4.0, 32.0, 0.25, 64.0]
    assert retries == [2, 4]  # backoff is only asked when the predicate said True


@pytest.mark.parametrize("verdict", [-1.0, "soon", math.nan, timedelta(seconds=-1)], ids=repr)
async def test_predicate_bad_retry_after_fails_with_attempt_error(
    hook_log: LibraryLog, verdict: Any
) -> None:
    fn = Recorder(ValueError("x"))
    task = await run_task(Definition(task_fn=fn, max_retries=3, retry_on=lambda e: verdict))
    assert task.state is State.FAILED
    assert task.attempts == 1
    assert task.error is fn.raised[0]
    assert any(r.name == "asynctasklib" and r.levelno == logging.ERROR for r in hook_log.records)


async def test_predicate_that_raises_is_logged_and_task_fails_with_its_own_error(
    hook_log: LibraryLog,
) -> None:
    oops = RuntimeError("predicate broke")

    def retry_on(e: BaseException) -> bool:
        raise oops

    fn = Recorder(ValueError("x"))
    task = await run_task(Definition(id="p", task_fn=fn, max_retries=3, retry_on=retry_on))
    assert task.state is State.FAILED
    assert task.attempts == 1
    assert task.error is fn.raised[0]
    errors = [r for r in hook_log.records if r.name == "asynctasklib"]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[1] is oops


# -- backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backoff", [3, 3.0, timedelta(seconds=3)], ids=repr)
async def test_constant_backoff(backoff: Any) -> None:
    fn = Recorder(ValueError("x"), ValueError("x"), ValueError("x"), 0.5)
    task = await run_task(Definition(task_fn=fn, max_retries=3, backoff=backoff))
    assert task.state is State.DONE
    assert fn.waits() == [3.0, 3.0, 3.0]
    assert fn.starts == [0.0, 3.0, 6.0, 9.0]


async def test_zero_backoff_retries_at_once() -> None:
    fn = Recorder(ValueError("x"))
    task = await run_task(Definition(task_fn=fn, max_retries=4, backoff=0))
    assert task.attempts == 5
    assert fn.starts == [0.0] * 5


async def test_callable_backoff_gets_retry_numbers_from_one() -> None:
    calls: list[int] = []

    def backoff(n: int) -> float | timedelta:
        calls.append(n)
        return timedelta(seconds=n) if n % 2 else float(n * 10)

    fn = Recorder(ValueError("x"))
    task = await run_task(Definition(task_fn=fn, max_retries=4, backoff=backoff))
    assert calls == [1, 2, 3, 4]
    assert fn.waits() == [1.0, 20.0, 3.0, 40.0]
    assert task.attempts == 5


async def test_exponential_backoff_through_a_task() -> None:
    fn = Recorder(ValueError("x"))
    backoff = ExponentialBackoff(initial=0.5, multiplier=2, max_delay=3, jitter=0)
    task = await run_task(Definition(task_fn=fn, max_retries=5, backoff=backoff))
    assert fn.waits() == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert task.attempts == 6


async def test_default_backoff_with_random_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.0)  # jitter factor 1
    fn = Recorder(ValueError("x"))
    await run_task(Definition(task_fn=fn, max_retries=3))
    assert fn.waits() == pytest.approx([0.1, 0.2, 0.4], abs=1e-9)
    monkeypatch.setattr(random, "random", lambda: 0.5)  # jitter factor 0.75
    fn = Recorder(ValueError("x"))
    await run_task(Definition(task_fn=fn, max_retries=3))
    assert fn.waits() == pytest.approx([0.075, 0.15, 0.3], abs=1e-9)


@pytest.mark.parametrize(
    "backoff",
    [
        pytest.param(lambda n: (_ for _ in ()).throw(ZeroDivisionError("bad")), id="raises"),
        pytest.param(lambda n: -1.0, id="negative"),
        pytest.param(lambda n: "1", id="not-a-number"),
        pytest.param(lambda n: math.nan, id="nan"),
    ],
)
async def test_bad_callable_backoff_fails_with_attempt_error(
    hook_log: LibraryLog, backoff: Callable[[int], Any]
) -> None:
    fn = Recorder(ValueError("x"))
    task = await run_task(Definition(task_fn=fn, max_retries=3, backoff=backoff))
    assert task.state is State.FAILED
    assert task.attempts == 1
    assert task.error is fn.raised[0]
    assert [r.levelno for r in hook_log.records if r.name == "asynctasklib"] == [logging.ERROR]


# -- timeouts, cancellation, BaseException ------------------------------------------------------


@pytest.mark.parametrize(
    "retry_on",
    [Exception, KeyError, (), lambda e: False, lambda e: None],
    ids=["Exception", "KeyError", "empty", "false", "none"],
)
async def test_timeouts_retried_whatever_retry_on_says(retry_on: Any) -> None:
    fn = Recorder("hang")
    task = await run_task(
        Definition(task_fn=fn, max_duration=2, max_retries=2, backoff=1, retry_on=retry_on)
    )
    assert task.state is State.FAILED
    assert isinstance(task.error, TaskTimeoutError)
    assert task.attempts == 3
    assert fn.starts == [0.0, 3.0, 6.0]
    assert fn.ends == [2.0, 5.0, 8.0]
    assert now() == 8.0


async def test_timeout_then_success() -> None:
    fn = Recorder("hang", 1.0)
    task = await run_task(Definition(task_fn=fn, max_duration=2, max_retries=1, backoff=0.5))
    assert task.state is State.DONE
    assert task.result() == "ok"
    assert fn.starts == [0.0, 2.5]
    assert now() == 3.5


async def test_timeout_uses_backoff_callable() -> None:
    calls: list[int] = []

    def backoff(n: int) -> float:
        calls.append(n)
        return 4.0

    fn = Recorder("hang")
    await run_task(Definition(task_fn=fn, max_duration=1, max_retries=2, backoff=backoff))
    assert calls == [1, 2]
    assert fn.starts == [0.0, 5.0, 10.0]


async def test_cancellation_never_retried() -> None:
    fn = Recorder("hang")
    task = Task(Definition(task_fn=fn, max_retries=5, backoff=0, retry_on=BaseException))
    task.go()
    await asyncio.sleep(1)
    assert task.cancel() is True
    await task.wait()
    assert task.state is State.CANCELED
    assert isinstance(task.error, TaskCanceledError)
    assert task.attempts == 1
    assert fn.attempts == [0]
    assert now() == 1.0


async def test_own_cancelled_error_is_not_retried_nor_a_failure() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)
        raise asyncio.CancelledError

    task = await run_task(Definition(task_fn=fn, max_retries=3, backoff=0, retry_on=BaseException))
    assert task.state is State.CANCELED
    assert isinstance(task.error, TaskCanceledError)
    assert calls == [0]


@pytest.mark.parametrize("retry_on", [Exception, BaseException, Boom, lambda e: True])
async def test_base_exception_neither_retried_nor_swallowed(retry_on: Any) -> None:
    calls: list[int] = []
    boom = Boom("stop")
    drivers: list[asyncio.Task[Any] | None] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)
        drivers.append(asyncio.current_task())
        raise boom

    task = Task(Definition(task_fn=fn, max_retries=3, backoff=0, retry_on=retry_on))
    task.go()
    await task.wait()
    assert calls == [0]
    assert task.attempts == 1
    assert task.state is State.FAILED
    assert task.error is boom
    with pytest.raises(Boom):
        task.result()
    with pytest.raises(Boom):
        await task
    # not swallowed: the asyncio task that ran the function ends with it
    driver = drivers[0]
    assert driver is not None
    await asyncio.wait([driver])
    assert driver.exception() is boom


# -- total_timeout -----------------------------------------------------------------------------


async def test_total_timeout_spent_during_an_attempt_is_not_retried() -> None:
    fn = Recorder("hang")
    task = await run_task(
        Definition(task_fn=fn, max_duration=30, max_retries=5, backoff=0, total_timeout=5)
    )
    assert task.state is State.FAILED
    assert isinstance(task.error, TaskTimeoutError)
    assert isinstance(task.error, TimeoutError)
    assert task.attempts == 1
    assert now() == 5.0


async def test_total_timeout_cuts_a_later_attempt() -> None:
    starts: list[tuple[float, float | None]] = []

    async def fn(run: Run) -> None:
        starts.append((now(), run.deadline))
        if run.attempt == 0:
            await asyncio.sleep(2)
            raise ValueError("first")
        await asyncio.sleep(100)

    task = await run_task(
        Definition(task_fn=fn, max_duration=30, max_retries=5, backoff=3, total_timeout=10)
    )
    assert task.state is State.FAILED
    assert isinstance(task.error, TaskTimeoutError)
    assert task.attempts == 2
    # attempt 1 starts at 5 with the budget's end (10) as its deadline, not 5 + 30
    assert starts == [(0.0, 10.0), (5.0, 10.0)]
    assert now() == 10.0


async def test_total_timeout_fails_at_once_when_backoff_would_outlast_it() -> None:
    fn = Recorder(ValueError("x"))

    async def traced(run: Run) -> str:
        await asyncio.sleep(1)
        return await fn(run)

    task = await run_task(Definition(task_fn=traced, max_retries=5, backoff=20, total_timeout=10))
    assert task.state is State.FAILED
    assert isinstance(task.error, TaskTimeoutError)
    assert task.error.__cause__ is fn.raised[0]
    assert task.attempts == 1
    assert now() == 1.0  # no waiting for a backoff that cannot end in time


@pytest.mark.parametrize(
    ("backoff", "starts", "end"),
    [
        (10.0, [0.0], 0.0),  # ends exactly at the budget's end: no time to run, fail at once
        (12.0, [0.0], 0.0),
        (9.5, [0.0, 9.5], 10.0),  # fits: the retry starts, and is cut at the budget's end
    ],
)
async def test_total_timeout_boundary(backoff: float, starts: list[float], end: float) -> None:
    seen: list[float] = []

    async def fn(run: Run) -> None:
        seen.append(now())
        if run.attempt == 0:
            raise ValueError("x")
        await asyncio.sleep(100)

    task = await run_task(Definition(task_fn=fn, max_retries=3, backoff=backoff, total_timeout=10))
    assert task.state is State.FAILED
    assert isinstance(task.error, TaskTimeoutError)
    assert seen == starts
    assert now() == end


async def test_total_timeout_allows_backoffs_that_fit() -> None:
    fn = Recorder(ValueError("x"), ValueError("x"), 0.5)
    task = await run_task(Definition(task_fn=fn, max_retries=5, backoff=3, total_timeout=10))
    assert task.state is State.DONE
    assert fn.starts == [0.0, 3.0, 6.0]


async def test_total_timeout_stops_retries_of_failures() -> None:
    fn = Recorder(ValueError("x"))
    task = await run_task(Definition(task_fn=fn, max_retries=100, backoff=3, total_timeout=10))
    assert task.state is State.FAILED
    assert isinstance(task.error, TaskTimeoutError)
    assert task.error.__cause__ is fn.raised[-1]
    # a retry at 9 still starts before the end (10); one at 12 would not
    assert fn.starts == [0.0, 3.0, 6.0, 9.0]
    assert task.attempts == 4
    assert now() == 9.0


async def test_total_timeout_shorter_than_delay_fails_at_once() -> None:
    fn = Recorder(1.0)
    task = await run_task(Definition(task_fn=fn, delay=10, total_timeout=5))
    assert task.state is State.FAILED
    assert isinstance(task.error, TaskTimeoutError)
    assert task.attempts == 0
    assert fn.starts == []
    assert now() == 0.0


async def test_total_timeout_counts_the_delay() -> None:
    deadlines: list[tuple[float, float | None]] = []

    async def fn(run: Run) -> None:
        deadlines.append((now(), run.deadline))
        await asyncio.sleep(100)

    task = await run_task(Definition(task_fn=fn, delay=3, max_duration=30, total_timeout=5))
    assert deadlines == [(3.0, 5.0)]
    assert task.state is State.FAILED
    assert isinstance(task.error, TaskTimeoutError)
    assert now() == 5.0


async def test_total_timeout_longer_than_everything_changes_nothing() -> None:
    fn = Recorder(ValueError("x"), 1.0)
    task = await run_task(
        Definition(task_fn=fn, max_retries=1, backoff=2, total_timeout=timedelta(hours=1))
    )
    assert task.state is State.DONE
    assert fn.starts == [0.0, 2.0]


# -- regressions of bugs these tests found (fixed in 12dddac) -----------------------------


async def test_zero_backoff_retries_yield_to_the_loop() -> None:
    ticks: list[int] = []
    seen: list[int] = []

    async def ticker() -> None:
        for i in range(10):
            ticks.append(i)
            await asyncio.sleep(0)

    async def fails_fast(run: Run) -> None:
        seen.append(len(ticks))
        raise ValueError("x")

    ticking = asyncio.ensure_future(ticker())
    task = Task(Definition(task_fn=fails_fast, max_retries=5, backoff=0))
    task.go()
    await task.wait()
    await ticking
    assert len(seen) == 6
    assert seen[-1] > seen[0]  # the ticker ran between the first and the last attempt


async def test_cancel_lands_between_zero_backoff_retries() -> None:
    async def fails_fast(run: Run) -> None:
        raise ValueError("x")

    task = Task(Definition(task_fn=fails_fast, max_retries=1000, backoff=0))
    task.go()
    await asyncio.sleep(0)
    assert task.cancel() is True
    await task.wait()
    assert task.state is State.CANCELED
    assert task.attempts < 1001


async def test_task_timeout_error_raised_by_the_function_follows_retry_on() -> None:
    calls: list[int] = []

    async def fn(run: Run) -> None:
        calls.append(run.attempt)
        raise TaskTimeoutError("a sub-task timed out")

    task = await run_task(Definition(task_fn=fn, max_retries=2, backoff=0, retry_on=KeyError))
    assert calls == [0]
    assert task.attempts == 1


@pytest.mark.parametrize(
    ("verdict", "attempts"),
    [(re.match("x", "x"), 3), (re.match("y", "x"), 1), ([1], 3), ([], 1), (0, 3)],
    ids=["a match", "no match", "a non-empty list", "an empty list", "zero seconds"],
)
async def test_predicate_verdicts_count_by_their_truth_numbers_as_seconds(
    verdict: Any, attempts: int
) -> None:
    fn = Recorder(ValueError("x"))
    task = await run_task(
        Definition(task_fn=fn, max_retries=2, backoff=1.0, retry_on=lambda e: verdict)
    )
    assert task.state is State.FAILED
    assert task.attempts == attempts
    if attempts > 1:
        assert fn.waits() == ([0.0, 0.0] if verdict == 0 else [1.0, 1.0])


# -- on/off options take only bools (a truthy string such as "no" turned them on) ------------

NOT_BOOLS = ["no", "False", "", 0, 1, None, 1.0, [True]]


@pytest.mark.parametrize("value", NOT_BOOLS, ids=repr)
def test_flag_refuses_anything_but_a_bool(value: Any) -> None:
    from asynctasklib._validate import flag

    with pytest.raises(TypeError, match=r"^ordered must be a bool"):
        flag(value, "ordered")
    assert flag(True, "ordered") is True
    assert flag(False, "ordered") is False


@pytest.mark.parametrize("value", NOT_BOOLS, ids=repr)
async def test_pool_bool_options_refuse_other_values(value: Any) -> None:
    from asynctasklib import WorkerPool

    async def fn(x: object) -> object:  # (a map's item, or a Definition's Run)
        return x

    with pytest.raises(TypeError, match=r"\bretain_finished\b"):
        WorkerPool(1, retain_finished=value)
    pool = WorkerPool(1)
    with pytest.raises(TypeError, match=r"\bordered\b"):
        pool.map(fn, [1], ordered=value)
    with pytest.raises(TypeError, match=r"\breturn_exceptions\b"):
        pool.map(fn, [1], return_exceptions=value)
    with pytest.raises(TypeError, match=r"\breturn_exceptions\b"):
        await pool.gather([Definition(task_fn=fn)], return_exceptions=value)
    with pytest.raises(TypeError, match=r"\bcancel\b"):
        await pool.shutdown(cancel=value)
    assert pool.stats().total == 0  # nothing ran, nothing stopped
    assert not pool.is_stopped()
    await pool.shutdown()


@pytest.mark.parametrize("value", ["no", 1, None], ids=repr)
def test_blocking_pool_bool_options_refuse_other_values(value: Any) -> None:
    from asynctasklib import blocking

    def fn(x: object) -> object:  # (a map's item, or a Definition's Run)
        return x

    with pytest.raises(TypeError, match=r"\bretain_finished\b"):
        blocking.WorkerPool(1, retain_finished=value)
    pool = blocking.WorkerPool(1)
    try:
        with pytest.raises(TypeError, match=r"\bordered\b"):
            pool.map(fn, [1], ordered=value)
        with pytest.raises(TypeError, match=r"\breturn_exceptions\b"):
            pool.map(fn, [1], return_exceptions=value)
        with pytest.raises(TypeError, match=r"\breturn_exceptions\b"):
            pool.gather([Definition(task_fn=fn)], return_exceptions=value)
        with pytest.raises(TypeError, match=r"\bcancel\b"):
            pool.shutdown(cancel=value)
        assert pool._portal is None  # refused before the background loop was started
        assert not pool.is_stopped()
    finally:
        pool.shutdown()


@pytest.mark.parametrize("value", ["no", 1, None], ids=repr)
def test_dask_executor_bool_options_refuse_other_values(value: Any) -> None:
    pytest.importorskip("distributed")
    from asynctasklib import dask

    with pytest.raises(TypeError, match=r"\ballow_other_workers\b"):
        # (checked before the client: a wrong one is never looked at)
        dask.DaskExecutor(object(), allow_other_workers=value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"\ballow_other_workers\b"):
        dask.executor(object(), allow_other_workers=value)  # type: ignore[arg-type]
    unmade = dask.DaskExecutor.__new__(dask.DaskExecutor)  # (the flags are checked first)
    with pytest.raises(TypeError, match=r"^wait\b"):
        unmade.shutdown(wait=value)
    with pytest.raises(TypeError, match=r"^cancel_futures\b"):
        unmade.shutdown(cancel_futures=value)
