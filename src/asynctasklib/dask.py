"""Run a pool's plain task functions on a Dask cluster: ``pip install 'asynctasklib[dask]'``.

::

    from distributed import Client
    import asynctasklib
    from asynctasklib.dask import DaskExecutor

    def work(info: asynctasklib.RunInfo) -> int:  # in a module the workers can import
        return 42

    async def main() -> None:
        with Client("tcp://scheduler-host:8786") as client:  # or Client(LocalCluster(...))
            async with asynctasklib.WorkerPool(100, executor=DaskExecutor(client)) as pool:
                task = await pool.submit(asynctasklib.Definition(task_fn=work, max_retries=3))
                print(await task)

The pool stays where it is, on the submitting machine: its retries, timeouts
(``max_duration``), hooks, error groups, ``map``, rate limits and stats. Only each attempt
of a plain (sync) task function crosses to the cluster, as one Dask future; an
``async def`` task function still runs on the pool's event loop.

Pointing it at a cluster. ``DaskExecutor`` takes a ``distributed.Client``:
``Client("tcp://host:8786")`` for a running scheduler (``dask scheduler`` on one machine,
``dask worker tcp://host:8786`` on the others), or ``Client(LocalCluster(...))`` on this one;
a synchronous client (the usual kind, with its own thread) or an asynchronous one
(``await Client(..., asynchronous=True)``) on the pool's event loop. The workers must be able
to import the task function's module (and what it uses) unless it is defined in ``__main__``.

Each attempt is one ``client.submit(task_fn, arg, pure=False)``: ``pure=False`` so that Dask
never merges two calls that look alike (a retry, or two tasks with the same id and no
deadline, send equal arguments), as it would by default.

What crosses, pickled (by Dask, with cloudpickle): the task function, its argument (a
`RunInfo` with the task's ``id``, ``attempt`` and wall-clock ``deadline``, or the item for
``pool.map``), its return value, and the exception it raises, raised again here with its
type, message and the worker's traceback, so ``retry_on`` sees it (its class must be
importable here too). The pool checks with ``pickle`` at submit and refuses a function that
cannot be pickled, such as a lambda or a nested function, with ``TypeError`` before anything
is sent. An argument that cannot be pickled (a ``pool.map`` item) is found only when its
attempt is sent: that attempt fails with Dask's ``TypeError`` ("Could not serialize ...").

What does not cross: ``Run.cancel()``, ``Run.callback()``, ``Run.canceled`` and the waits
(the function gets a `RunInfo`, which has none of them), and any signal to stop. When a task
is canceled or an attempt times out, the task ends at once here and its Dask future is
canceled: a call still waiting on the scheduler or a worker never runs, but one already
running goes on to its end, holding its worker thread (Dask cannot interrupt a thread: the
worker marks the task ``canceled`` and drops its result once the function returns). A
function that may run long should watch ``info.deadline`` and return when it has passed
(``time.time()`` seconds on the submitting machine: on another machine, as good as the two
clocks agree).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

try:
    from distributed import Client
except ImportError as _missing:  # pragma: no cover - exercised without distributed installed
    raise ImportError(
        "asynctasklib.dask needs Dask's distributed package: pip install 'asynctasklib[dask]'",
        name="distributed",
    ) from _missing

from ._compat import dask_outcome
from ._validate import flag

if TYPE_CHECKING:
    from distributed import Future

__all__ = ["DaskExecutor", "executor"]

T = TypeVar("T")


class DaskExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` whose calls are Dask futures of ``client``.

    Give it to ``WorkerPool(executor=...)``; it works as any executor too (``submit``,
    ``map``, ``shutdown``, ``with``). Each ``submit(fn, *args)`` is
    ``client.submit(fn, *args, pure=False)``, and the ``concurrent.futures.Future`` returned
    follows that Dask future; canceling it cancels the Dask future.

    ``workers``, ``resources`` and ``allow_other_workers`` are passed to every
    ``client.submit`` (see Dask's documentation). Retries belong to the pool
    (``Definition.max_retries``, which sees every attempt), so Dask's own ``retries`` is
    refused, as is ``pure``. A Dask future canceled on the cluster's side rather than from
    here (by another client, the client closing, the scheduler connection lost) is a call
    that failed, with Dask's ``FutureCancelledError``: the pool retries it as any failure.

    Why not ``client.get_executor()`` (Dask's ``ClientExecutor``), which does much the same?
    It merges equal calls unless given ``pure=False``; its cancel waits on the calling thread
    for the client's loop (the pool cancels from its event loop), and with an asynchronous
    client returns a coroutine nobody awaits, so nothing is canceled; a call that fails
    stays on the cluster for as long as the client lives (it re-raises the error in a frame
    that holds the Dask future, and the client keeps that exception while the future
    lives: a cycle through ``client.futures``); and once its ``shutdown(wait=True)`` has met a
    canceled call, the calls it waited for (and their results on the cluster) can stay alive
    until the garbage collector runs.

    The pool never shuts this executor down, nor closes the client: both are yours.
    ``shutdown(cancel_futures=True)`` cancels every call not finished, running ones too.

    Args:
        client: the ``distributed.Client`` (synchronous or asynchronous) to submit through.
        workers: the workers that may run the calls (Dask's ``workers``).
        resources: what each call needs of a worker (Dask's ``resources``).
        allow_other_workers: let other workers run a call when those of ``workers`` cannot.
        **options: none is accepted: ``pure``, ``retries`` and any other name raise
            TypeError (for ``pure`` and ``retries`` the message says why).

    Raises:
        TypeError: ``client`` is not a ``distributed.Client``; ``pure``, ``retries`` or
            another unknown option is given; ``allow_other_workers`` is not a bool.
    """

    def __init__(
        self,
        client: Client,
        *,
        workers: str | Iterable[str] | None = None,
        resources: dict[str, float] | None = None,
        allow_other_workers: bool = False,
        **options: Any,
    ) -> None:
        if "pure" in options:
            raise TypeError(
                "DaskExecutor always submits with pure=False: each call of a task function "
                "must run, even when it looks like another"
            )
        if "retries" in options:
            raise TypeError(
                "DaskExecutor does not take Dask's retries: the pool retries "
                "(Definition.max_retries), and sees every attempt"
            )
        if options:
            raise TypeError(f"unexpected arguments to DaskExecutor: {sorted(options)}")
        flag(allow_other_workers, "allow_other_workers")
        if not isinstance(client, Client):
            raise TypeError(f"DaskExecutor needs a distributed.Client, got {client!r}")
        self._client = client
        submit_options: dict[str, Any] = {"pure": False}
        if workers is not None:
            submit_options["workers"] = workers
        if resources is not None:
            submit_options["resources"] = resources
        if allow_other_workers:
            submit_options["allow_other_workers"] = True
        self._options = submit_options
        self._lock = threading.Lock()
        self._shutdown = False
        self._futures: weakref.WeakSet[cf.Future[Any]] = weakref.WeakSet()

    @property
    def client(self) -> Client:
        """The Dask client the calls go through."""
        return self._client

    @property
    def submit_options(self) -> dict[str, Any]:
        """What every ``client.submit`` is given besides the function and its arguments."""
        return dict(self._options)

    def __repr__(self) -> str:
        return f"<DaskExecutor client={self._client!r} options={self._options!r}>"

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Run ``fn(*args, **kwargs)`` on the cluster.

        Args:
            fn: a function Dask can pickle.
            *args: its positional arguments.
            **kwargs: its keyword arguments (not ``client.submit``'s options).

        Returns:
            A ``concurrent.futures.Future`` that follows the call's Dask future; canceling
            it cancels the Dask future.

        Raises:
            RuntimeError: the executor was shut down.
        """
        if kwargs:  # the function's own, kept apart from client.submit's options
            fn = partial(fn, **kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            try:
                future = self._submit(fn, args)
            except Exception as exc:
                # Dask makes the call's future before it serializes the call, so the frames
                # of a failure to (an argument that cannot be pickled) hold that future, and
                # the client its key, for as long as they live; distributed also logs the
                # error and keeps the record. Let go of what those frames hold.
                traceback.clear_frames(exc.__traceback__)
                raise
            cf_future: cf.Future[T] = cf.Future()
            self._futures.add(cf_future)
        client = self._client
        loop = client.loop
        assert loop is not None  # a client that could submit has its loop
        cf_future.add_done_callback(partial(_cancel_dask_future, client, future))
        loop.add_callback(_relay, future, cf_future)
        return cf_future

    def _submit(self, fn: Callable[..., T], args: tuple[Any, ...]) -> Future[T]:
        """The Dask future of one call."""
        return self._client.submit(fn, *args, **self._options)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls. The client stays open.

        Args:
            wait: wait until every call's future is done.
            cancel_futures: cancel the calls not finished, running ones too (those go on
                to their end on the workers).

        Raises:
            TypeError: ``wait`` or ``cancel_futures`` is not a bool.
        """
        flag(wait, "wait")
        flag(cancel_futures, "cancel_futures")
        with self._lock:
            self._shutdown = True
            futures = list(self._futures)
        if cancel_futures:
            for future in futures:
                future.cancel()
        if wait:
            cf.wait(futures)


def executor(
    client: Client,
    *,
    workers: str | Iterable[str] | None = None,
    resources: dict[str, float] | None = None,
    allow_other_workers: bool = False,
) -> DaskExecutor:
    """An executor for ``WorkerPool(executor=...)`` that runs plain task functions on the
    Dask cluster of ``client``: ``DaskExecutor(client, ...)``.

    Args:
        client: the ``distributed.Client`` to submit through.
        workers: the workers that may run the calls (Dask's ``workers``).
        resources: what each call needs of a worker (Dask's ``resources``).
        allow_other_workers: let other workers run a call when those of ``workers`` cannot.

    Returns:
        A `DaskExecutor`.

    Raises:
        TypeError: as `DaskExecutor` raises it.
    """
    return DaskExecutor(
        client, workers=workers, resources=resources, allow_other_workers=allow_other_workers
    )


def _cancel_dask_future(client: Client, future: Future[Any], cf_future: cf.Future[Any]) -> None:
    """Done callback of the ``concurrent.futures.Future``: a cancel goes on to Dask."""
    loop = client.loop
    if cf_future.cancelled() and future.status != "cancelled" and loop is not None:
        # This runs in the thread that canceled cf_future (the pool's event loop): hand the
        # cancel to the client's loop instead of waiting there for it to be done.
        loop.add_callback(client.cancel, [future], asynchronous=True)


async def _relay(future: Any, cf_future: cf.Future[Any]) -> None:
    """On the client's loop: wait for the Dask future and copy its outcome to ``cf_future``.

    A Dask future canceled on the cluster's side (another client, the client closing, the
    connection to the scheduler lost), not from here, is a call that failed: its
    ``FutureCancelledError`` is the outcome, an ``Exception`` the pool may retry. Nothing here
    leaves a traceback that holds this frame, and through it ``future``.
    """
    try:
        outcome = await dask_outcome(future)
    except Exception as exc:  # the result could not be fetched
        _settle(cf_future, error=exc.with_traceback(None))
        return
    except BaseException:  # this relay is canceled: the client's loop is stopping
        _settle(cf_future, error=RuntimeError(f"the Dask client stopped: {future.key!r} lost"))
        raise
    status = future.status
    if status == "finished":
        _settle(cf_future, outcome)
    elif status == "error":  # outcome: (type, exception, the worker's traceback)
        _, error, tb = outcome
        _settle(cf_future, error=error.with_traceback(tb))
    elif cf_future.cancelled():  # canceled from here: wake concurrent.futures.wait() too
        cf_future.set_running_or_notify_cancel()
    else:  # canceled on the cluster's side
        _settle(cf_future, error=outcome)


def _settle(
    cf_future: cf.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    try:
        if error is None:
            cf_future.set_result(result)
        else:
            cf_future.set_exception(error)
    except cf.InvalidStateError:  # canceled from here while the outcome came in
        cf_future.set_running_or_notify_cancel()
