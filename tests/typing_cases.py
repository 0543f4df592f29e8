"""What a type checker infers from asynctasklib's public API: checked by mypy and pyright.

Not a test module (pytest does not collect it): tests/test_typing.py runs both checkers on
it. Each ``assert_type`` must hold in both; each line marked with an ignore comment must be
an error in that checker (unused ignores are errors: mypy's ``warn_unused_ignores``,
pyright's ``reportUnnecessaryTypeIgnoreComment``, with ``# type: ignore`` read by mypy only).
The functions but ``rejected`` are also run by test_typing.py: every case is code that works.
"""

from __future__ import annotations

from datetime import timedelta
from typing import assert_type

from asynctasklib import Definition, MapResults, Run, Task, WorkerPool, blocking


async def async_int(run: Run) -> int:
    return 1


def sync_str(run: Run) -> str:
    return "s"


async def double(x: int) -> int:
    if x < 0:
        raise ValueError(x)
    return 2 * x


def name(x: int) -> str:
    return str(x)


async def pair(x: int, y: str) -> str:
    return f"{x}{y}"


def definitions() -> None:
    assert_type(Definition(task_fn=async_int), Definition[int])  # an async def's result
    assert_type(Definition(task_fn=sync_str), Definition[str])
    assert_type(Definition(), Definition[None])
    # retry_on: a type, a tuple of types, or a predicate (its type alias is readable now)
    Definition(retry_on=ValueError)
    Definition(retry_on=(KeyError, OSError))
    Definition(retry_on=lambda error: isinstance(error, OSError))
    Definition(retry_on=lambda error: 1.5)
    Definition(retry_on=lambda error: timedelta(seconds=2))


async def async_pool(flag: bool) -> None:
    async with WorkerPool(2) as pool:
        d_int = Definition(task_fn=async_int)
        task = await pool.submit(d_int)
        assert_type(task, Task[int])
        assert_type(await task, int)
        assert_type(await pool.gather([d_int, d_int]), list[int])
        # (mypy joins a Definition and a Task to object, so a list of both needs its type)
        mixed: list[Definition[int] | Task[int]] = [d_int, task]
        assert_type(await pool.gather(mixed), list[int])
        assert_type(await pool.gather([d_int], return_exceptions=False), list[int])
        assert_type(await pool.gather([d_int], return_exceptions=True), list[int | BaseException])
        assert_type(await pool.gather([d_int], return_exceptions=flag), list[int | BaseException])
        # definitions of several result types: typed as each checker joins them
        await pool.gather([d_int, Definition(task_fn=sync_str)])

        assert_type(pool.map(double, [1]), MapResults[int])  # an async def's result
        assert_type(pool.map(name, [1]), MapResults[str])
        assert_type(pool.map(double, [1], return_exceptions=False), MapResults[int])
        results = pool.map(double, [1, -1], return_exceptions=True)
        assert_type(results, MapResults[int | BaseException])
        assert_type(pool.map(name, [1], return_exceptions=flag), MapResults[str | BaseException])
        outcomes = [outcome async for outcome in results]
        assert_type(outcomes, list[int | BaseException])
        assert outcomes[0] == 2
        assert isinstance(outcomes[1], ValueError)

        # submit(fn, *args, **options): fn's parameters checked, its result the task's type
        assert_type(await pool.submit(d_int, id="own"), Task[int])  # a task's own id
        assert_type(await pool.submit(double, 1), Task[int])  # an async def's result
        assert_type(await pool.submit(name, 1, id="n", max_retries=2), Task[str])
        assert_type(await pool.submit(pair, 1, "a", max_duration=timedelta(seconds=1)), Task[str])
        assert await (await pool.submit(pair, 2, "b")) == "2b"


def blocking_pool(flag: bool) -> None:
    with blocking.WorkerPool(2) as pool:
        d_str = Definition(task_fn=sync_str)
        task = pool.submit(d_str)
        assert_type(task, blocking.Task[str])
        assert_type(task.result(), str)
        mixed: list[Definition[str] | blocking.Task[str]] = [d_str, task]
        assert_type(pool.gather(mixed), list[str])
        assert_type(pool.gather([d_str], return_exceptions=True), list[str | BaseException])
        assert_type(pool.gather([d_str], return_exceptions=flag), list[str | BaseException])
        assert_type(pool.submit(name, 1), blocking.Task[str])
        assert_type(pool.submit(double, 1, retry_on=ValueError), blocking.Task[int])
        assert_type(pool.map(name, [1]), blocking.MapIterator[str])
        assert_type(pool.map(double, [1]), blocking.MapIterator[int])
        with pool.map(double, [1, -1], return_exceptions=True) as results:
            assert_type(results, blocking.MapIterator[int | BaseException])
            outcomes = list(results)
        assert outcomes[0] == 2
        assert isinstance(outcomes[1], ValueError)


def rejected(pool: WorkerPool) -> None:
    """Errors for both checkers (and TypeErrors at run time: not run)."""
    Definition(retry_on="ValueError")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    Definition(retry_on=int)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Definition(retry_on=lambda error: "retry")  # type: ignore[arg-type, return-value]  # pyright: ignore[reportArgumentType]
    Definition(backoff="1")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    WorkerPool(1, retain_finished="no")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    pool.map(name, [1], ordered=1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


async def rejected_submits(pool: WorkerPool, threads: blocking.WorkerPool) -> None:
    """submit(fn, *args, **options): arguments that do not fit fn, and bad options."""
    await pool.submit(double, "1")  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
    await pool.submit(double)  # type: ignore[call-arg, arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
    await pool.submit(pair, 1)  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
    await pool.submit(double, 1, 2)  # type: ignore[call-arg, arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
    await pool.submit(double, 1, max_retries="3")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    await pool.submit(double, 1, retries=3)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    await pool.submit(double, 1, id=1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    await pool.submit(Definition(task_fn=async_int), 1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    await pool.submit(Definition(task_fn=async_int), id=1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    threads.submit(name, "1")  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
