"""`StateHooks`: construction, validation, and exactly when and how hooks fire."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from _helpers import LONG, REAL_TIMEOUT
from asynctasklib import (
    Definition,
    Run,
    State,
    StateHooks,
    Task,
    TaskCanceledError,
    TaskFnNotSetError,
    TaskTimeoutError,
    WorkerPool,
    from_task_fn,
    when_canceled,
    when_created,
    when_done,
    when_failed,
    when_pending,
    when_started,
)
from conftest import LibraryLog

NAMES = (
    "on_created",
    "on_pending",
    "on_started",
    "on_done",
    "on_failed",
    "on_canceled",
    "on_task_fn",
)
OPTIONS: dict[str, Callable[[Any], Any]] = {
    "on_created": when_created,
    "on_pending": when_pending,
    "on_started": when_started,
    "on_done": when_done,
    "on_failed": when_failed,
    "on_canceled": when_canceled,
    "on_task_fn": from_task_fn,
}


def noop(*args: Any) -> None:
    pass


async def async_hook(*args: Any) -> None:
    pass


class Events:
    """Hooks that record ``(event, task_id, extra, loop time)``; extra is the attempt of
    on_pending and the error of on_failed."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, Any, float | None]] = []
        self.whens: list[datetime] = []
        self.states: list[tuple[str, State]] = []
        self.task: Task[Any] | None = None  # to look at its state from the hooks

    def _add(self, event: str, task_id: str, when: datetime, extra: Any = None) -> None:
        self.whens.append(when)
        try:
            t: float | None = asyncio.get_running_loop().time()
        except RuntimeError:
            t = None  # on_created of a task made without a loop
        self.log.append((event, task_id, extra, t))
        if self.task is not None:
            self.states.append((event, self.task.state))

    def hooks(self) -> StateHooks:
        return StateHooks(
            on_created=lambda i, w: self._add("created", i, w),
            on_pending=lambda i, w, a: self._add("pending", i, w, a),
            on_started=lambda i, w: self._add("started", i, w),
            on_done=lambda i, w: self._add("done", i, w),
            on_failed=lambda i, w, e: self._add("failed", i, w, e),
            on_canceled=lambda i, w: self._add("canceled", i, w),
            on_task_fn=lambda i, w: self._add("task_fn", i, w),
        )

    def events(self) -> list[tuple[str, Any]]:
        return [(event, extra) for event, _, extra, _ in self.log]

    def timed(self) -> list[tuple[str, Any, float | None]]:
        return [(event, extra, t) for event, _, extra, t in self.log]


def make_task(events: Events, fn: Any, **kw: Any) -> Task[Any]:
    task = Task(Definition(id="h", task_fn=fn, hooks=events.hooks(), **kw))
    events.task = task
    return task


# -- construction ------------------------------------------------------------------------------


def test_empty() -> None:
    hooks = StateHooks()
    assert all(getattr(hooks, name) is None for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_option_function_sets_one_hook(name: str) -> None:
    def f(*args: Any) -> None:
        pass

    hooks = StateHooks(OPTIONS[name](f))
    for other in NAMES:
        assert getattr(hooks, other) is (f if other == name else None)


@pytest.mark.parametrize("name", NAMES)
def test_keyword_sets_one_hook(name: str) -> None:
    def f(*args: Any) -> None:
        pass

    hooks = StateHooks(**{name: f})
    for other in NAMES:
        assert getattr(hooks, other) is (f if other == name else None)


def test_all_options_and_keywords_and_mixed() -> None:
    fns = {name: functools.partial(noop, name) for name in NAMES}
    by_options = StateHooks(*(OPTIONS[name](fns[name]) for name in NAMES))
    by_keywords = StateHooks(**fns)
    half = NAMES[:3]
    mixed = StateHooks(
        *(OPTIONS[name](fns[name]) for name in half),
        **{name: fns[name] for name in NAMES if name not in half},
    )
    for hooks in (by_options, by_keywords, mixed):
        for name in NAMES:
            assert getattr(hooks, name) is fns[name]
    assert by_options == by_keywords == mixed


@pytest.mark.parametrize("name", NAMES)
def test_duplicate_option_is_value_error(name: str) -> None:
    option = OPTIONS[name]
    with pytest.raises(ValueError, match=name):
        StateHooks(option(noop), option(print))


@pytest.mark.parametrize("name", NAMES)
def test_option_and_keyword_for_the_same_hook_is_value_error(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        StateHooks(OPTIONS[name](noop), **{name: print})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [1, "print", object()], ids=repr)
def test_non_callable_is_type_error(name: str, bad: Any) -> None:
    with pytest.raises(TypeError, match=name):
        StateHooks(**{name: bad})
    with pytest.raises(TypeError, match=name):
        OPTIONS[name](bad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "hook",
    [async_hook, functools.partial(async_hook, 1)],
    ids=["async-def", "partial-of-async-def"],
)
def test_async_def_hook_is_type_error(name: str, hook: Any) -> None:
    with pytest.raises(TypeError, match=name):
        StateHooks(**{name: hook})
    with pytest.raises(TypeError, match=name):
        OPTIONS[name](hook)


class _AsyncCallable:
    async def __call__(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("name", ["on_done", "on_started"])
def test_async_callable_object_hook_is_type_error(name: str) -> None:
    with pytest.raises(TypeError, match=name):
        StateHooks(**{name: _AsyncCallable()})


@pytest.mark.parametrize("bad", [noop, "on_done", ("on_done", noop), None])
def test_positional_non_option_is_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="when_"):
        StateHooks(bad)


def test_unknown_keyword_is_type_error() -> None:
    with pytest.raises(TypeError):
        StateHooks(on_finished=noop)  # type: ignore[call-arg]


def test_frozen() -> None:
    hooks = StateHooks(on_done=noop)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hooks.on_done = print  # type: ignore[misc]
    assert hooks.on_done is noop


# -- signatures: a hook that cannot take its arguments is refused at once ---------------------

# How many positional arguments each hook is called with: (task_id, when[, attempt | error]).
ARITY = {name: 3 if name in ("on_pending", "on_failed") else 2 for name in NAMES}


def _takes(n: int) -> Callable[..., None]:
    """A function of exactly n positional parameters."""
    params = ", ".join(f"a{i}" for i in range(n))
    namespace: dict[str, Any] = {}
    exec(f"def f({params}): pass", namespace)
    return namespace["f"]  # type: ignore[no-any-return]


def _gen_hook(*args: Any) -> Any:
    yield


async def _async_gen_hook(*args: Any) -> Any:
    yield


class _TwoArgs:
    def __init__(self, task_id: str, when: datetime) -> None:
        pass


class _CallTakesNothing:
    def __call__(self) -> None:
        pass


def _wrong_hooks(name: str) -> list[Any]:
    n = ARITY[name]
    return [
        _takes(n - 1),
        _takes(n + 1),
        _takes(0),
        lambda task_id, when, *, extra: None,  # a required keyword-only parameter
        functools.partial(_takes(n), 1),  # one argument bound already: one too few left
        _CallTakesNothing(),
        _TwoArgs if n == 3 else _takes(3),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_hook_that_cannot_take_its_arguments_is_type_error(name: str) -> None:
    for hook in _wrong_hooks(name):
        with pytest.raises(TypeError, match=rf"{name}\(task_id, when"):
            StateHooks(**{name: hook})
        with pytest.raises(TypeError, match=rf"{name}\(task_id, when"):
            OPTIONS[name](hook)


@pytest.mark.parametrize("name", NAMES)
def test_hooks_of_any_signature_that_takes_the_arguments_are_accepted(name: str) -> None:
    with pytest.raises(ValueError, match="no signature"):
        inspect.signature(max)
    n = ARITY[name]
    fits: list[Any] = [
        _takes(n),
        noop,  # *args
        lambda *args, **kwargs: None,
        lambda task_id, when, extra=None, more=None: None,  # defaults fill what is not given
        lambda task_id, *rest: None,
        lambda task_id, when, *rest, keyword=1: None,
        functools.partial(_takes(n + 1), "bound"),
        print,  # a builtin of *args
        max,  # a builtin whose signature cannot be read: taken on trust
    ]
    if n == 2:
        fits.append(_TwoArgs)  # a class: its __init__ takes them
    for hook in fits:
        assert getattr(StateHooks(**{name: hook}), name) is hook
        assert getattr(StateHooks(OPTIONS[name](hook)), name) is hook


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "hook",
    [_gen_hook, _async_gen_hook, functools.partial(_gen_hook, 1)],
    ids=["generator-function", "async-generator-function", "partial-of-generator"],
)
def test_generator_function_hook_is_type_error(name: str, hook: Any) -> None:
    # calling it would make a generator and run none of the hook
    with pytest.raises(TypeError, match=rf"{name}.*generator"):
        StateHooks(**{name: hook})
    with pytest.raises(TypeError, match=rf"{name}.*generator"):
        OPTIONS[name](hook)


async def test_hooks_of_odd_signatures_are_called_with_their_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    def pending(task_id: str, when: datetime, attempt: int = -1, extra: Any = "x") -> None:
        calls.append(("pending", task_id, attempt, extra))

    def done(*args: Any) -> None:
        calls.append(("done", args[0], len(args)))

    task = Task(
        Definition(id="odd", task_fn=async_hook, hooks=StateHooks(on_pending=pending, on_done=done))
    )
    task.go()
    await task.wait()
    assert calls == [("pending", "odd", 0, "x"), ("done", "odd", 2)]


# -- when ----------------------------------------------------------------------------------


async def test_when_is_timezone_aware_utc() -> None:
    events = Events()
    before = datetime.now(UTC)

    async def fn(run: Run) -> None:
        run.callback()
        if run.attempt == 0:
            raise ValueError("x")

    task = make_task(events, fn, max_retries=1, backoff=0)
    task.go()
    await task.wait()
    failing = make_task(events, None)
    failing.go()
    await failing.wait()
    canceled = make_task(events, fn, delay=1)
    canceled.go()
    canceled.cancel()
    await canceled.wait()
    after = datetime.now(UTC)
    kinds = {event for event, _ in events.events()}
    assert kinds == {"created", "pending", "started", "done", "failed", "canceled", "task_fn"}
    assert len(events.whens) == len(events.log)
    for when in events.whens:
        assert isinstance(when, datetime)
        assert when.tzinfo is not None
        assert when.utcoffset() == timedelta(0)
        assert before <= when <= after
    assert events.whens == sorted(events.whens)


def test_on_created_fires_on_construction_without_a_loop() -> None:
    events = Events()
    Task(Definition(id="offline", task_fn=noop, hooks=events.hooks()))
    assert events.log[0][:3] == ("created", "offline", None)
    assert len(events.log) == 1
    assert events.whens[0].utcoffset() == timedelta(0)


# -- order of hooks ----------------------------------------------------------------------------


async def test_order_success() -> None:
    events = Events()

    async def fn(run: Run) -> str:
        await asyncio.sleep(2)
        return "ok"

    task = make_task(events, fn, delay=1)
    assert events.timed() == [("created", None, 0.0)]
    task.go()
    assert events.timed() == [("created", None, 0.0), ("pending", 0, 0.0)]
    assert await task == "ok"
    assert events.timed() == [
        ("created", None, 0.0),
        ("pending", 0, 0.0),
        ("started", None, 1.0),
        ("done", None, 3.0),
    ]
    assert {task_id for _, task_id, _, _ in events.log} == {"h"}
    assert events.states == [
        ("pending", State.PENDING),
        ("started", State.STARTED),
        ("done", State.DONE),
    ]


async def test_order_retries_then_success() -> None:
    events = Events()

    async def fn(run: Run) -> str:
        await asyncio.sleep(1)
        if run.attempt < 2:
            raise ValueError(run.attempt)
        return "ok"

    task = make_task(events, fn, max_retries=5, backoff=lambda n: 10.0 * n)
    task.go()
    await task.wait()
    assert events.timed() == [
        ("created", None, 0.0),
        ("pending", 0, 0.0),
        ("started", None, 0.0),
        ("pending", 1, 1.0),
        ("started", None, 11.0),
        ("pending", 2, 12.0),
        ("started", None, 32.0),
        ("done", None, 33.0),
    ]
    assert [s for e, s in events.states if e == "pending"] == [State.PENDING] * 3


async def test_order_failure() -> None:
    events = Events()
    errors: list[Exception] = []

    async def fn(run: Run) -> None:
        errors.append(KeyError(run.attempt))
        raise errors[-1]

    task = make_task(events, fn, max_retries=2, backoff=1)
    task.go()
    await task.wait()
    assert events.events() == [
        ("created", None),
        ("pending", 0),
        ("started", None),
        ("pending", 1),
        ("started", None),
        ("pending", 2),
        ("started", None),
        ("failed", errors[-1]),
    ]
    assert events.log[-1][2] is errors[-1]
    assert events.log[-1][2] is task.error
    assert events.states[-1] == ("failed", State.FAILED)


async def test_order_not_retried_failure() -> None:
    events = Events()
    error = TypeError("not retried")

    async def fn(run: Run) -> None:
        raise error

    task = make_task(events, fn, max_retries=2, retry_on=KeyError)
    task.go()
    await task.wait()
    assert events.events() == [
        ("created", None),
        ("pending", 0),
        ("started", None),
        ("failed", error),
    ]


async def test_order_no_task_fn() -> None:
    events = Events()
    task = make_task(events, None)
    task.go()
    await task.wait()
    assert [e for e, _ in events.events()] == ["created", "pending", "failed"]
    assert isinstance(events.log[-1][2], TaskFnNotSetError)


@pytest.mark.parametrize("phase", ["delay", "attempt", "backoff", "self"])
async def test_order_cancel(phase: str) -> None:
    events = Events()

    async def fn(run: Run) -> None:
        if phase == "self":
            await asyncio.sleep(2)
            run.cancel()
        if phase == "backoff" and run.attempt == 0:
            raise ValueError("retry")
        await asyncio.sleep(LONG)

    task = make_task(events, fn, delay=5 if phase == "delay" else 0, max_retries=3, backoff=10)
    task.go()
    if phase != "self":
        await asyncio.sleep(2)
        task.cancel()
    await task.wait()
    expected: dict[str, list[tuple[str, Any, float | None]]] = {
        "delay": [("created", None, 0.0), ("pending", 0, 0.0), ("canceled", None, 2.0)],
        "attempt": [
            ("created", None, 0.0),
            ("pending", 0, 0.0),
            ("started", None, 0.0),
            ("canceled", None, 2.0),
        ],
        "backoff": [
            ("created", None, 0.0),
            ("pending", 0, 0.0),
            ("started", None, 0.0),
            ("pending", 1, 0.0),
            ("canceled", None, 2.0),
        ],
    }
    expected["self"] = expected["attempt"]
    assert events.timed() == expected[phase]
    assert events.states[-1] == ("canceled", State.CANCELED)
    assert isinstance(task.error, TaskCanceledError)


async def test_order_timeout() -> None:
    events = Events()

    async def fn(run: Run) -> None:
        await asyncio.sleep(LONG)

    task = make_task(events, fn, max_duration=2, max_retries=1, backoff=1)
    task.go()
    await task.wait()
    assert events.timed()[:-1] == [
        ("created", None, 0.0),
        ("pending", 0, 0.0),
        ("started", None, 0.0),
        ("pending", 1, 2.0),
        ("started", None, 3.0),
    ]
    event, _, error, t = events.log[-1]
    assert (event, t) == ("failed", 5.0)
    assert isinstance(error, TaskTimeoutError)
    assert error is task.error


async def test_order_rerun() -> None:
    events = Events()

    async def fn(run: Run) -> None:
        run.callback()

    task = make_task(events, fn)
    task.go()
    await task.wait()
    task.go()
    await task.wait()
    assert [e for e, _ in events.events()] == [
        "created",
        "pending",
        "started",
        "task_fn",
        "done",
        "pending",
        "started",
        "task_fn",
        "done",
    ]


async def test_on_pending_attempt_numbers() -> None:
    attempts: list[int] = []
    ids: list[str] = []

    def on_pending(task_id: str, when: datetime, attempt: int) -> None:
        ids.append(task_id)
        attempts.append(attempt)

    async def fn(run: Run) -> None:
        raise ValueError("x")

    task = Task(
        Definition(
            id="p", task_fn=fn, hooks=StateHooks(when_pending(on_pending)), max_retries=4, backoff=0
        )
    )
    task.go()
    await task.wait()
    assert attempts == [0, 1, 2, 3, 4]
    assert ids == ["p"] * 5


async def test_only_given_hooks_fire() -> None:
    done: list[str] = []

    async def fn(run: Run) -> None:
        run.callback()

    task = Task(
        Definition(id="d", task_fn=fn, hooks=StateHooks(when_done(lambda i, w: done.append(i))))
    )
    task.go()
    await task.wait()
    assert done == ["d"]


# -- a hook that raises ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_raising_hook_is_logged_and_changes_nothing(hook_log: LibraryLog, name: str) -> None:
    oops = RuntimeError(f"{name} broke")
    calls: list[str] = []

    def bad(*args: Any) -> None:
        calls.append(name)
        raise oops

    def good(event: str) -> Callable[..., None]:
        return lambda *args: calls.append(event)

    hooks = StateHooks(**{n: (bad if n == name else good(n)) for n in NAMES})
    failure = ValueError("the task's own")

    async def fn(run: Run) -> str:
        run.callback()
        if name == "on_failed":
            raise failure
        if name == "on_canceled":
            await asyncio.sleep(LONG)
        return "result"

    task = Task(Definition(id="raiser", task_fn=fn, hooks=hooks))
    task.go()
    if name == "on_canceled":
        await asyncio.sleep(1)
        assert task.cancel() is True
    await task.wait()

    end = {"on_failed": "on_failed", "on_canceled": "on_canceled"}.get(name, "on_done")
    assert calls == ["on_created", "on_pending", "on_started", "on_task_fn", end]
    if name == "on_failed":
        assert task.state is State.FAILED
        assert task.error is failure
    elif name == "on_canceled":
        assert task.state is State.CANCELED
        assert isinstance(task.error, TaskCanceledError)
    else:
        assert task.state is State.DONE
        assert task.result() == "result"
    records = [r for r in hook_log.records if r.name == "asynctasklib"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is oops
    assert "raiser" in records[0].getMessage()


async def test_raising_hooks_on_every_attempt(hook_log: LibraryLog) -> None:
    def bad(*args: Any) -> None:
        raise RuntimeError("again")

    async def fn(run: Run) -> int:
        if run.attempt < 2:
            raise ValueError("x")
        return 3

    task = Task(
        Definition(
            task_fn=fn, hooks=StateHooks(on_pending=bad, on_started=bad), max_retries=2, backoff=0
        )
    )
    task.go()
    assert await task == 3
    assert task.attempts == 3
    assert len([r for r in hook_log.records if r.name == "asynctasklib"]) == 6


# -- run.callback() from a worker thread ----------------------------------------------------------


@pytest.mark.realtime
async def test_callback_from_sync_fn_fires_on_the_loop_thread() -> None:
    loop_thread = threading.get_ident()
    calls: list[tuple[str, str, int]] = []
    fn_thread: list[int] = []

    def record(event: str) -> Callable[..., None]:
        return lambda task_id, *args: calls.append((event, task_id, threading.get_ident()))

    def fn(run: Run) -> str:
        fn_thread.append(threading.get_ident())
        run.callback()
        run.callback()
        return "sync"

    hooks = StateHooks(
        on_started=record("started"), on_task_fn=record("task_fn"), on_done=record("done")
    )
    task = Task(Definition(id="thread", task_fn=fn, hooks=hooks))
    task.go()
    assert await asyncio.wait_for(task, REAL_TIMEOUT) == "sync"
    await asyncio.sleep(0)
    assert fn_thread[0] != loop_thread
    assert calls == [
        ("started", "thread", loop_thread),
        ("task_fn", "thread", loop_thread),
        ("task_fn", "thread", loop_thread),
        ("done", "thread", loop_thread),
    ]


# -- pool-level hooks -------------------------------------------------------------------------


async def test_pool_hooks_apply_only_to_tasks_without_hooks() -> None:
    pool_events = Events()
    own_events = Events()

    async def fn(run: Run) -> None:
        run.callback()
        await asyncio.sleep(1)

    async with WorkerPool(3, hooks=pool_events.hooks()) as pool:
        plain = await pool.submit(Definition(id="plain", task_fn=fn))
        own = await pool.submit(Definition(id="own", task_fn=fn, hooks=own_events.hooks()))
        empty = await pool.submit(Definition(id="empty", task_fn=fn, hooks=StateHooks()))
    assert plain.is_done()
    assert own.is_done()
    assert empty.is_done()
    expected = ["created", "pending", "started", "task_fn", "done"]
    assert [e for e, i, _, _ in pool_events.log if i == "plain"] == expected
    assert {i for _, i, _, _ in pool_events.log} == {"plain"}
    assert [e for e, _ in own_events.events()] == expected
    assert {i for _, i, _, _ in own_events.log} == {"own"}
