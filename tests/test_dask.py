"""The pool on a real Dask cluster: `asynctasklib.dask.DaskExecutor` on a `LocalCluster`
with two single-threaded worker processes on loopback.

The pool stays here (retries, timeouts, hooks, error groups, stats); each attempt of a plain
task function is one Dask future. Functions that must stay running block on a file the
test creates (``release``), so nothing here depends on how long anything takes, and every
wait is a bounded poll of a condition. After each test, nothing may be left on the cluster:
no future held by the client, no task on the scheduler or on a worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "distributed", reason="Dask's distributed is not installed: pip install 'asynctasklib[dask]'"
)

import distributed

from _helpers import run_info_fn
from asynctasklib import (
    Definition,
    RunInfo,
    StateHooks,
    TaskCanceledError,
    TaskTimeoutError,
    WorkerPool,
)
from asynctasklib.dask import DaskExecutor, _relay, executor
from conftest import third_party_loops

pytestmark = pytest.mark.realtime  # real processes, real time

WAIT = 15.0  # seconds any condition below may take before the test fails


# -- task functions (module level: the workers import this module to unpickle them) ---------


class Boom(Exception):
    """Raised on a worker, raised again here."""


def where(info: RunInfo) -> tuple[int, str, int]:
    return os.getpid(), info.id, info.attempt


def flaky(info: RunInfo) -> tuple[str, int, int]:
    if info.attempt == 0:
        raise Boom(f"attempt {info.attempt} of {info.id} failed")
    return "ok", info.attempt, os.getpid()


def fails(info: RunInfo) -> None:
    raise Boom(f"{info.id} failed on attempt {info.attempt} in {os.getpid()}")


def token(_: Any) -> str:
    return uuid.uuid4().hex


def square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def blocker(directory: str, info: RunInfo | None = None) -> int:
    """Say it started (a file ``started-<id>``), then block until ``release`` exists."""
    name = "x" if info is None else info.id
    Path(directory, f"started-{name}").touch()
    release = Path(directory, "release")
    end = time.monotonic() + 60
    while not release.exists():
        if time.monotonic() > end:
            raise TimeoutError("never released")
        time.sleep(0.01)
    return os.getpid()


def worker_pid() -> int:
    return os.getpid()


def power(x: int, *, exponent: int) -> int:
    return int(x**exponent)


def scheduler_tasks(dask_scheduler: Any) -> dict[str, str]:
    return {str(key): ts.state for key, ts in dask_scheduler.tasks.items()}


def worker_tasks(dask_worker: Any) -> dict[str, str]:
    return {str(key): ts.state for key, ts in dask_worker.state.tasks.items()}


# -- the cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with third_party_loops():  # (the loops the cluster and client make are theirs)
        cluster = distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            # No dashboard, and its HTTP server (which the scheduler starts anyway, on 8787 by
            # default) on a free port: another cluster may be running on this machine.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
    with cluster:
        with third_party_loops():
            client = distributed.Client(cluster)
        with client:
            client.wait_for_workers(2, timeout=WAIT)
            yield client


class Recording(DaskExecutor):
    """A DaskExecutor that keeps the Dask futures it makes, to check them."""

    def __init__(self, client: distributed.Client, **options: Any) -> None:
        super().__init__(client, **options)
        self.submitted: list[distributed.Future[Any]] = []

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> distributed.Future[Any]:
        future = super()._submit(fn, args)
        self.submitted.append(future)
        return future


def leftovers(client: distributed.Client) -> dict[str, Any]:
    """What the client, the scheduler and the workers still hold; empty when clean."""
    found: dict[str, Any] = {}
    if client.futures:
        found["client futures"] = {str(k): st.status for k, st in client.futures.items()}
    on_scheduler = client.run_on_scheduler(scheduler_tasks)
    if on_scheduler:
        found["scheduler tasks"] = on_scheduler
    on_workers = {w: t for w, t in client.run(worker_tasks).items() if t}
    if on_workers:
        found["worker tasks"] = on_workers
    return found


@pytest.fixture
def dask(client: distributed.Client, tmp_path: Path) -> Iterator[Recording]:
    """The executor for one test; afterwards, every blocker released and the cluster empty."""
    assert not leftovers(client), "the cluster was not clean before the test"
    ex = Recording(client)
    yield ex
    release(tmp_path)
    ex.submitted.clear()
    end = time.monotonic() + WAIT
    while found := leftovers(client):
        if time.monotonic() > end:
            pytest.fail(f"left on the cluster after the test: {found}")
        time.sleep(0.02)


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something true; fail after WAIT seconds."""
    end = time.monotonic() + WAIT
    while not (result := check()):
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return result


def started(directory: Path) -> set[str]:
    """The ids of the blockers that have started."""
    return {p.name.removeprefix("started-") for p in directory.glob("started-*")}


def release(directory: Path) -> None:
    """Let every blocker of ``directory`` return."""
    Path(directory, "release").touch()


# -- results, processes, hooks and stats ----------------------------------------------------


async def test_results_come_back_from_two_other_processes(dask: Recording, tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    hooks = StateHooks(
        on_started=lambda i, _when: events.append(("started", i)),
        on_done=lambda i, _when: events.append(("done", i)),
    )
    async with WorkerPool(2, executor=dask, hooks=hooks) as pool:
        # Both block until released: two single-threaded workers, so each runs on its own.
        tasks = [
            await pool.submit(Definition(id=f"t{i}", task_fn=partial(blocker, str(tmp_path))))
            for i in range(2)
        ]
        await eventually(lambda: started(tmp_path) == {"t0", "t1"}, "both to start")
        release(tmp_path)
        pids = [await task for task in tasks]
        quick = await pool.submit(Definition(id="where", task_fn=run_info_fn(where)))
        pid, task_id, attempt = await quick
    assert len(set(pids)) == 2, "the two functions ran in the same process"
    assert os.getpid() not in pids
    assert pid != os.getpid()
    assert (task_id, attempt) == ("where", 0)
    stats = pool.stats()
    assert (stats.total, stats.done, stats.failed, stats.active_workers) == (3, 3, 0, 0)
    # The hooks ran here, on the submitting side.
    assert sorted(events) == sorted(
        [(e, i) for i in ("t0", "t1", "where") for e in ("started", "done")]
    )
    assert len(dask.submitted) == 3


async def test_a_failure_is_retried_with_the_next_attempt(dask: Recording) -> None:
    async with WorkerPool(2, executor=dask) as pool:
        task = await pool.submit(
            Definition(id="flaky", task_fn=run_info_fn(flaky), max_retries=1, backoff=0)
        )
        word, attempt, pid = await task
    assert (word, attempt, task.attempts) == ("ok", 1, 2)
    assert pid != os.getpid()
    assert len(dask.submitted) == 2  # one Dask future per attempt


async def test_the_workers_exception_is_raised_here_after_the_last_retry(
    dask: Recording,
) -> None:
    async with WorkerPool(2, executor=dask) as pool:
        task = await pool.submit(
            Definition(
                id="bad", task_fn=run_info_fn(fails), max_retries=2, backoff=0, retry_on=Boom
            )
        )
        await task.wait()
    assert task.is_failed()
    assert task.attempts == 3
    assert type(task.error) is Boom  # the class itself, not a copy
    assert str(task.error).startswith("bad failed on attempt 2 in ")
    assert pool.stats().failed == 1


async def test_equal_calls_are_not_merged_by_dask(dask: Recording) -> None:
    """pure=False: the same function with equal arguments runs every time."""
    async with WorkerPool(4, executor=dask) as pool:
        same = Definition(id="same", task_fn=token, max_duration=None)  # equal RunInfos
        tasks = [await pool.submit(same) for _ in range(3)]
        tokens = [await task for task in tasks]
        mapped = [t async for t in pool.map(token, [7, 7, 7])]
    assert len(set(tokens)) == 3
    assert len(set(mapped)) == 3
    assert len({f.key for f in dask.submitted}) == 6


async def test_map_runs_each_item_on_the_cluster(dask: Recording) -> None:
    async with WorkerPool(4, executor=dask) as pool:
        results = [r async for r in pool.map(square, range(20), max_retries=1)]
    assert [value for value, _ in results] == [i * i for i in range(20)]
    assert os.getpid() not in {pid for _, pid in results}
    assert pool.stats().done == 20


# -- timeouts, cancellation, error groups --------------------------------------------------


async def test_a_timeout_fails_the_task_and_cancels_its_dask_future(
    dask: Recording, client: distributed.Client, tmp_path: Path
) -> None:
    async with WorkerPool(2, executor=dask) as pool:
        began = time.monotonic()
        task = await pool.submit(
            Definition(id="slow", task_fn=partial(blocker, str(tmp_path)), max_duration=0.5)
        )
        await task.wait()
        took = time.monotonic() - began
    assert task.is_failed()
    assert isinstance(task.error, TaskTimeoutError)
    assert took < 5, "the task did not end at its timeout"
    [future] = dask.submitted
    await eventually(lambda: future.status == "cancelled", "the Dask future to be canceled")
    await eventually(lambda: not client.run_on_scheduler(scheduler_tasks), "the scheduler")
    # Dask cannot stop a running function: the worker marks it canceled and lets it run.
    assert started(tmp_path) == {"slow"}
    on_workers = client.run(worker_tasks)
    assert sorted(state for tasks in on_workers.values() for state in tasks.values()) == [
        "cancelled"
    ]
    # The fixture releases it, and checks that the worker then forgets it.


async def test_cancelling_a_task_cancels_its_dask_future(
    dask: Recording, client: distributed.Client, tmp_path: Path
) -> None:
    async with WorkerPool(2, executor=dask) as pool:
        task = await pool.submit(Definition(id="c", task_fn=partial(blocker, str(tmp_path))))
        await eventually(lambda: started(tmp_path) == {"c"}, "the function to start")
        assert task.cancel() is True
        await task.wait()
    assert task.is_canceled()
    assert isinstance(task.error, TaskCanceledError)
    [future] = dask.submitted
    await eventually(lambda: future.status == "cancelled", "the Dask future to be canceled")
    await eventually(lambda: not client.run_on_scheduler(scheduler_tasks), "the scheduler")


async def test_a_dask_future_canceled_on_the_cluster_is_a_failed_attempt(
    dask: Recording, client: distributed.Client, tmp_path: Path
) -> None:
    """Not canceled by the pool (another client, the client closing): retried."""
    async with WorkerPool(2, executor=dask) as pool:
        task = await pool.submit(
            Definition(id="ext", task_fn=partial(blocker, str(tmp_path)), max_retries=1, backoff=0)
        )
        await eventually(lambda: started(tmp_path) == {"ext"}, "the function to start")
        client.cancel(dask.submitted[0], reason="someone else")
        await eventually(lambda: len(dask.submitted) == 2, "the retry")
        release(tmp_path)
        await task.wait()
    assert task.is_done()
    assert task.attempts == 2
    assert task.result() != os.getpid()


async def test_an_error_group_cancels_its_remaining_dask_futures(
    dask: Recording, client: distributed.Client, tmp_path: Path
) -> None:
    group = [Definition(id="first", task_fn=run_info_fn(fails))] + [
        Definition(id=f"b{i}", task_fn=partial(blocker, str(tmp_path))) for i in range(5)
    ]
    async with WorkerPool(6, executor=dask) as pool:
        with pytest.raises(Boom, match="first failed on attempt 0"):
            await pool.submit_with_err_group(group)
        tasks = pool.tasks()
    assert [t.id for t in tasks] == ["first", "b0", "b1", "b2", "b3", "b4"]
    assert tasks[0].is_failed()
    assert all(t.is_canceled() for t in tasks[1:])
    # The pool sends each task as its worker takes it, in practice all six long before the
    # first failure comes back; any it had not sent yet were canceled before they were.
    assert 3 <= len(dask.submitted) <= 6
    assert dask.submitted[0].status == "error"
    failed_key = dask.submitted[0].key
    await eventually(
        lambda: all(f.status == "cancelled" for f in dask.submitted[1:]),
        "the group's futures to be canceled",
    )
    await eventually(
        lambda: set(client.run_on_scheduler(scheduler_tasks)) <= {failed_key}, "the scheduler"
    )
    # Two single-threaded workers, and each blocker holds its thread until released: at most
    # two of the five ever started; the others were canceled before they ran, and never will.
    assert len(started(tmp_path)) <= 2


async def test_an_asynchronous_client_on_the_pools_loop(
    client: distributed.Client, dask: Recording, tmp_path: Path
) -> None:
    assert client.scheduler is not None
    address = client.scheduler.address
    async with distributed.Client(address, asynchronous=True) as aclient:
        on_loop = Recording(aclient)
        async with WorkerPool(2, executor=on_loop) as pool:
            pid, _, _ = await (await pool.submit(Definition(id="a", task_fn=run_info_fn(where))))
            slow = await pool.submit(
                Definition(id="s", task_fn=partial(blocker, str(tmp_path)), max_duration=0.3)
            )
            await slow.wait()
        assert pid != os.getpid()
        assert isinstance(slow.error, TaskTimeoutError)
        await eventually(
            lambda: on_loop.submitted[1].status == "cancelled", "the Dask future's cancel"
        )
        on_loop.submitted.clear()


# -- what cannot cross -------------------------------------------------------------------


async def test_a_function_that_cannot_be_pickled_is_refused_before_anything_is_sent(
    dask: Recording, client: distributed.Client
) -> None:
    def nested(info: RunInfo) -> int:
        return 1

    async with WorkerPool(2, executor=dask) as pool:
        with pytest.raises(TypeError, match="cannot be pickled"):
            await pool.submit(Definition(task_fn=lambda info: 1))
        with pytest.raises(TypeError, match="cannot be pickled"):
            await pool.submit_with_err_group(
                [Definition(task_fn=run_info_fn(where)), Definition(task_fn=run_info_fn(nested))]
            )
        with pytest.raises(TypeError, match="cannot be pickled"):
            pool.map(lambda x: x, [1, 2])
    assert pool.stats().total == 0
    assert dask.submitted == []
    assert not client.futures
    assert not client.run_on_scheduler(scheduler_tasks)


async def test_an_argument_that_cannot_be_pickled_fails_its_task_and_leaves_nothing(
    dask: Recording, client: distributed.Client
) -> None:
    async with WorkerPool(2, executor=dask) as pool:
        unpicklable: Any = threading.Lock()  # (not the int square takes: it never gets there)
        results = [r async for r in pool.map(square, [unpicklable], return_exceptions=True)]
    [error] = results
    assert isinstance(error, TypeError)
    assert "serialize" in str(error)
    assert pool.stats().failed == 1
    # Dask made a future for the call before it failed to send it: it must go.
    await eventually(lambda: not client.futures, "the client to let go of the call's future")


# -- the executor itself -------------------------------------------------------------------


def test_executor_options(client: distributed.Client, dask: Recording) -> None:
    made = executor(client)
    assert isinstance(made, DaskExecutor)
    assert made.client is client
    assert made.submit_options == {"pure": False}
    assert "DaskExecutor" in repr(made)
    with pytest.raises(TypeError, match="pure=False"):
        DaskExecutor(client, pure=True)
    with pytest.raises(TypeError, match="max_retries"):
        DaskExecutor(client, retries=2)
    with pytest.raises(TypeError, match="priority"):
        DaskExecutor(client, priority=1)
    with pytest.raises(TypeError, match=r"needs a distributed\.Client"):
        DaskExecutor("tcp://127.0.0.1:8786")  # type: ignore[arg-type]
    # workers= sends every call to the workers named.
    pids = client.run(worker_pid)
    address = sorted(pids)[0]
    with_resources = executor(client, resources={"GPU": 1})
    assert with_resources.submit_options == {"pure": False, "resources": {"GPU": 1}}
    pinned = executor(client, workers=[address], allow_other_workers=True)
    assert pinned.submit_options == {
        "pure": False,
        "workers": [address],
        "allow_other_workers": True,
    }
    with pinned:
        assert {pinned.submit(worker_pid).result(timeout=WAIT) for _ in range(3)} == {pids[address]}


def test_used_as_a_plain_executor(dask: Recording) -> None:
    assert dask.submit(square, 3).result(timeout=WAIT)[0] == 9
    assert dask.submit(power, 2, exponent=10).result(timeout=WAIT) == 1024
    assert [value for value, _ in dask.map(square, [1, 2, 3], timeout=WAIT)] == [1, 4, 9]
    with pytest.raises(Boom):
        dask.submit(fails, RunInfo("plain", 0, None)).result(timeout=WAIT)


def test_shutdown_can_cancel_what_has_not_finished(dask: Recording, tmp_path: Path) -> None:
    assert dask.submit(square, 3).result(timeout=WAIT)[0] == 9
    running = dask.submit(blocker, str(tmp_path))
    end = time.monotonic() + WAIT
    while not started(tmp_path) and time.monotonic() < end:
        time.sleep(0.01)
    dask.shutdown(wait=True, cancel_futures=True)
    assert running.cancelled()
    dask.shutdown(cancel_futures=True)  # nothing left to cancel
    with pytest.raises(RuntimeError, match="shutdown"):
        dask.submit(square, 1)
    dask.shutdown(wait=False)  # twice is fine


async def test_an_outcome_that_comes_after_a_cancel_is_dropped() -> None:
    """The race in _relay: the pool canceled the call just as Dask finished it."""

    class Finished:
        status = "finished"

        async def _result(self, raiseit: bool) -> int:
            return 42

    cf_future: concurrent.futures.Future[int] = concurrent.futures.Future()
    cf_future.cancel()
    await _relay(Finished(), cf_future)
    assert cf_future.cancelled()
    assert concurrent.futures.wait([cf_future], timeout=0).done == {cf_future}


async def test_a_result_that_cannot_be_fetched_is_the_calls_error() -> None:
    class Unreachable:
        key = "k"

        async def _result(self, raiseit: bool) -> int:
            raise OSError("the worker holding it is gone")

    cf_future: concurrent.futures.Future[int] = concurrent.futures.Future()
    await _relay(Unreachable(), cf_future)
    error = cf_future.exception(timeout=0)
    assert isinstance(error, OSError)
    assert error.__traceback__ is None  # nothing keeps the relay's frame


async def test_a_relay_stopped_with_the_clients_loop_fails_the_call() -> None:
    class Stopping:
        key = "k"

        async def _result(self, raiseit: bool) -> int:
            raise asyncio.CancelledError

    cf_future: concurrent.futures.Future[int] = concurrent.futures.Future()
    with pytest.raises(asyncio.CancelledError):
        await _relay(Stopping(), cf_future)
    with pytest.raises(RuntimeError, match="the Dask client stopped"):
        cf_future.result(timeout=0)
