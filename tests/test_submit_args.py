"""``submit(fn, *args, **options)``: per-item arguments, with a `Definition`'s options.

The function is called as ``fn(*args)`` at every attempt, retries included; the options are
a definition's, made once per function and set of options; ``id`` is each task's own. What
cannot work is refused at submit, before anything is counted. Async tests run on the
virtual-clock loop (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, cast

import pytest

from _helpers import GUARD, WAIT, Inline, counters
from asynctasklib import (
    Definition,
    Run,
    StateHooks,
    Task,
    TaskCanceledError,
    TaskTimeoutError,
    WorkerPool,
    blocking,
)


async def add(a: int, b: int = 10) -> int:
    return a + b


def mul(a: int, b: int) -> int:
    return a * b


def hook_log(log: list[tuple[Any, ...]]) -> StateHooks:
    def recorder(name: str) -> Callable[..., None]:
        def hook(task_id: str, when: Any, *args: Any) -> None:
            log.append((task_id, name, *args))

        return hook

    names = ("created", "pending", "started", "done", "failed", "canceled")
    return StateHooks(**{f"on_{name}": recorder(name) for name in names})


@pytest.mark.realtime  # (a plain function runs in a thread: the virtual clock would not wait)
async def test_the_function_is_called_with_its_arguments_and_no_run() -> None:
    def nothing() -> str:
        return "none"

    async with WorkerPool(2) as pool:
        tasks: list[Task[Any]] = [
            await pool.submit(add, 1, 2),
            await pool.submit(add, 5),  # b's default
            await pool.submit(mul, 3, 4),  # a plain function, in a thread
            await pool.submit(nothing),
        ]
    assert [task.result() for task in tasks] == [3, 15, 12, "none"]
    assert all(task.is_done() and task.attempts == 1 for task in tasks)


async def test_every_attempt_gets_the_same_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    async def flaky(item: str, times: int) -> str:
        calls.append((item, times))
        if len(calls) <= times:
            raise OSError("not yet")
        return item.upper()

    async with WorkerPool(1) as pool:
        task = await pool.submit(flaky, "x", 2, max_retries=2, backoff=0)
    assert task.result() == "X"
    assert task.attempts == 3
    assert calls == [("x", 2)] * 3


async def test_the_options_apply_as_a_definitions_do() -> None:
    async def slow(seconds: float) -> None:
        await asyncio.sleep(seconds)

    async with asyncio.timeout(GUARD), WorkerPool(2) as pool:
        timed_out = await pool.submit(slow, 5, max_duration=1, max_retries=1, backoff=0)
        spent = await pool.submit(slow, 5, total_timeout=2)
        fine = await pool.submit(slow, 0.5, max_duration=1)
        await pool.wait()
    assert isinstance(timed_out.error, TaskTimeoutError)
    assert timed_out.attempts == 2
    assert isinstance(spent.error, TaskTimeoutError)
    assert "total_timeout" in str(spent.error)
    assert fine.is_done()


async def test_hooks_and_states_are_those_of_a_task_of_a_definition() -> None:
    async def fails(item: int) -> None:
        raise ValueError(item)

    async def fn_of_run(run: Run) -> None:
        raise ValueError(1)

    by_args: list[tuple[Any, ...]] = []
    by_definition: list[tuple[Any, ...]] = []
    async with WorkerPool(1, hooks=hook_log(by_args)) as pool:
        task = await pool.submit(fails, 1, id="t", max_retries=1, backoff=0)
        assert task.is_pending()
    async with WorkerPool(1, hooks=hook_log(by_definition)) as pool:
        await pool.submit(Definition(id="t", task_fn=fn_of_run, max_retries=1, backoff=0))
    assert task.is_failed()
    assert isinstance(task.error, ValueError)
    assert [entry[:2] for entry in by_args] == [entry[:2] for entry in by_definition]
    assert [entry[:2] for entry in by_args] == [
        ("t", "created"),
        ("t", "pending"),
        ("t", "started"),
        ("t", "pending"),
        ("t", "started"),
        ("t", "failed"),
    ]
    # options' own hooks replace the pool's, as a definition's do
    own: list[tuple[Any, ...]] = []
    async with WorkerPool(1, hooks=hook_log(by_args)) as pool:
        await pool.submit(add, 1, id="own", hooks=hook_log(own))
    assert [entry[:2] for entry in own] == [
        ("own", "created"),
        ("own", "pending"),
        ("own", "started"),
        ("own", "done"),
    ]


async def test_a_task_given_arguments_can_be_canceled() -> None:
    started = asyncio.Event()

    async def waits(item: int) -> None:
        started.set()
        await asyncio.sleep(GUARD * 2)

    async with asyncio.timeout(GUARD), WorkerPool(1) as pool:
        task = await pool.submit(waits, 1)
        await started.wait()
        assert task.cancel()
        await task.wait()
    assert task.is_canceled()
    assert isinstance(task.error, TaskCanceledError)
    assert pool.stats().canceled == 1


async def test_one_definition_per_function_and_set_of_options() -> None:
    async with WorkerPool(2) as pool:
        first = await pool.submit(add, 1, id="a")
        second = await pool.submit(add, 2, id="b")
        retried = await pool.submit(add, 3, max_retries=1)
        retried_again = await pool.submit(add, 4, max_retries=1)
        other = await pool.submit(mul, 1, 2)
    assert (first.id, second.id, retried.id) == ("a", "b", "")
    assert first.definition is second.definition  # the id is the task's, not in it
    assert cast("object", first.definition.task_fn) is add
    assert first.definition.id == ""
    assert retried.definition is retried_again.definition
    assert retried.definition is not first.definition
    assert retried.definition.max_retries == 1
    assert cast("object", other.definition.task_fn) is mul


async def test_a_definition_submitted_with_an_id_runs_under_that_id() -> None:
    seen: list[tuple[str, int]] = []

    async def task_fn(run: Run) -> None:
        seen.append((run.id, run.attempt))

    definition = Definition(id="shared", task_fn=task_fn)
    log: list[tuple[Any, ...]] = []
    async with WorkerPool(2, hooks=hook_log(log)) as pool:
        tasks = [await pool.submit(definition, id=f"item-{i}") for i in range(2)]
        plain = await pool.submit(definition)
    assert [t.id for t in tasks] == ["item-0", "item-1"]
    assert plain.id == "shared"
    assert all(t.definition is definition for t in (*tasks, plain))
    assert sorted(seen) == [("item-0", 0), ("item-1", 0), ("shared", 0)]
    assert {entry[0] for entry in log} == {"item-0", "item-1", "shared"}


async def test_a_subclass_of_definition_is_a_definition() -> None:
    """(submit tells a Definition by its class first, then by isinstance)"""

    class Named(Definition[str]):
        pass

    async def task_fn(run: Run) -> str:
        return run.id

    definition = Named(id="sub", task_fn=task_fn)
    async with WorkerPool(1) as pool:
        task = await pool.submit(definition)
        with pytest.raises(TypeError, match="takes no arguments"):
            await pool.submit(definition, 1)  # type: ignore[call-overload]
    assert await task == "sub"
    assert task.definition is definition


async def test_an_option_equal_but_of_another_type_is_checked_afresh() -> None:
    async with WorkerPool(1) as pool:
        await pool.submit(add, 1, max_retries=1)
        with pytest.raises(TypeError, match="max_retries must be an int"):
            await pool.submit(add, 1, max_retries=True)  # (True == 1)
    assert pool.stats().total == 1


@dataclasses.dataclass
class Adder:
    """Equal to another of the same ``base``: unhashable (eq without frozen)."""

    base: int

    async def add(self, item: int) -> int:
        return self.base + item

    async def __call__(self, item: int) -> int:
        return self.base + item


@dataclasses.dataclass(frozen=True)
class Named:
    """Equal (and of equal hash) to another of the same name, yet a different object."""

    name: str
    log: list[str] = dataclasses.field(compare=False, hash=False)

    async def __call__(self, item: int) -> None:
        self.log.append(f"{self.name} {item}")


async def test_each_callable_object_is_called_itself() -> None:
    first_log: list[str] = []
    second_log: list[str] = []
    first, second = Named("n", first_log), Named("n", second_log)
    assert first == second
    assert hash(first) == hash(second)
    async with WorkerPool(1) as pool:
        await pool.submit(first, 1)
        await pool.submit(second, 2)
        await pool.submit(first, 3)
    assert first_log == ["n 1", "n 3"]
    assert second_log == ["n 2"]


async def test_bound_methods_and_unhashable_callables_work() -> None:
    one, two = Adder(100), Adder(200)
    async with WorkerPool(1) as pool:
        a = await pool.submit(one.add, 1)
        b = await pool.submit(one.add, 2)  # a new bound method, equal to the first
        c = await pool.submit(one, 3)  # unhashable: a definition of its own each time
        d = await pool.submit(two, 4)
    assert [t.result() for t in (a, b, c, d)] == [101, 102, 103, 204]


async def test_the_definitions_kept_are_bounded() -> None:
    async with WorkerPool(4) as pool:
        for i in range(300):
            await pool.submit(functools.partial(add, i), 1)
    # (the pool's own, read here only to show it does not grow with the calls)
    assert len(pool._made) == 256
    assert pool.stats().done == 300


async def of_run(run: Run) -> None:
    pass


def same(x: object) -> object:
    return x


async def same_async(x: object) -> object:
    return x


async def needs_keyword(item: int, *, scale: int) -> int:
    return item * scale


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda pool: pool.submit(add), TypeError, r"'add' takes 1 to 2 positional arg"),
        (lambda pool: pool.submit(add, 1, 2, 3), TypeError, r"but submit\(\) gave it 3"),
        (lambda pool: pool.submit(mul, 1), TypeError, r"'mul' takes 2 positional arguments"),
        (lambda pool: pool.submit(lambda run: None), TypeError, r"goes in a Definition"),
        (lambda pool: pool.submit(needs_keyword, 1), TypeError, r"keyword argument 'scale'"),
        (lambda pool: pool.submit(add, 1, retries=2), TypeError, r"no option 'retries'"),
        (lambda pool: pool.submit(add, 1, task_fn=add), TypeError, r"no option 'task_fn'"),
        (lambda pool: pool.submit(add, 1, id=1), TypeError, r"id must be a str"),
        (lambda pool: pool.submit(add, 1, max_retries=-1), ValueError, r"max_retries"),
        (lambda pool: pool.submit(add, 1, max_duration="1"), TypeError, r"max_duration"),
        (lambda pool: pool.submit(42, 1), TypeError, r"a Definition or a function, got int"),
        (
            lambda pool: pool.submit(Definition(task_fn=of_run), 1),
            TypeError,
            r"submit\(definition\) takes no arguments nor options but id",
        ),
        (
            lambda pool: pool.submit(Definition(task_fn=of_run), max_retries=1),
            TypeError,
            r"submit\(definition\) takes no arguments nor options but id",
        ),
    ],
    ids=[
        "too-few",
        "too-many",
        "too-few-plain",
        "a-task-fn",
        "keyword-only",
        "unknown-option",
        "task-fn-option",
        "id-not-str",
        "option-out-of-range",
        "option-of-wrong-type",
        "not-callable",
        "definition-with-args",
        "definition-with-options",
    ],
)
async def test_what_cannot_run_is_refused_at_submit_and_counts_nothing(
    call: Callable[[WorkerPool], Any], error: type[Exception], match: str
) -> None:
    pool = WorkerPool(2)
    with pytest.raises(error, match=match):
        await call(pool)
    assert counters(pool) == (0, 0, 0, 0, 0, 0, 0)
    assert pool.available_workers == 2
    await pool.shutdown()


async def test_tasks_lists_each_task_once_with_a_map_in_progress() -> None:
    gate = asyncio.Event()

    async def gated(item: int) -> int:
        await gate.wait()
        return item

    async with asyncio.timeout(GUARD), WorkerPool(4) as pool:
        task = await pool.submit(gated, 0, id="args")
        async with pool.map(gated, [1, 2]) as results:
            first = asyncio.ensure_future(anext(results))
            while len(pool.tasks()) < 3:
                await asyncio.sleep(0)
            assert sorted(t.id for t in pool.tasks()) == ["0", "1", "args"]
            gate.set()
            assert await first == 1
            assert [r async for r in results] == [2]
    assert task.result() == 0
    assert [t.id for t in pool.tasks()] == ["args"]  # kept; a map's tasks never are


@pytest.mark.realtime
async def test_with_another_process_the_arguments_must_pickle() -> None:
    async with WorkerPool(1, executor=Inline()) as pool:
        task = await pool.submit(divmod, 7, 2)  # picklable, sent as they are
        with pytest.raises(TypeError, match=r"arguments of .* cannot be pickled"):
            await pool.submit(same, lambda: None)
        awaited = await pool.submit(same_async, lambda: None)  # an async def is never sent
        with pytest.raises(TypeError, match=r"cannot be pickled"):
            await pool.submit(Definition(task_fn=lambda run: None))
        await pool.wait()
    assert task.result() == (3, 1)
    assert callable(awaited.result())  # (it ran here, on the loop)
    assert pool.stats().total == 2


def test_the_blocking_face_submits_functions_and_arguments() -> None:
    with blocking.WorkerPool(2) as pool:
        task = pool.submit(mul, 6, 7, id="m", max_retries=1)
        own_id = pool.submit(Definition(id="d", task_fn=of_run), id="own")
        awaited = pool.submit(add, 1)
        assert task.result(WAIT) == 42
        assert awaited.result(WAIT) == 11
        assert task.id == "m"
        assert own_id.id == "own"
        own_id.result(WAIT)
        with pytest.raises(TypeError, match=r"'mul' takes 2 positional arguments"):
            pool.submit(mul, 1)  # type: ignore[arg-type]  # (the checkers see it too)
        with pytest.raises(TypeError, match=r"submit\(definition\) takes no arguments"):
            pool.submit(Definition(task_fn=of_run), 1)  # type: ignore[call-overload]
        assert counters(pool)[0] == 3
