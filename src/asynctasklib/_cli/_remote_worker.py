"""The worker's half of ``--executor dask`` (see `_remote`): a job's command run on a
Dask worker as a local job runs here, in a session of its own, its output read whole.

`run_command` is what each attempt calls on the cluster; `request_stop`, what
``client.run`` calls on every worker to stop one (it finds the command by its token). The
command's process group is killed (SIGTERM and SIGCONT, SIGKILL after the grace period) when
a stop is asked for, when the call is canceled on the cluster (the worker's own state says
so: checked every `POLL` seconds), or when the leader exits and leaves processes behind
that hold its pipes open.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any, Final

from ._reap import group_alive  # (what a local job's end uses too)

POLL: Final = 0.05  # seconds between a worker's checks for a stop
KILL_WAIT: Final = 5.0  # after SIGKILL, how long to wait for the command to be gone
# How hard a command is stopped: not (0), SIGTERM then SIGKILL after the grace period, or
# SIGKILL at once.
TERM: Final = 1
KILL: Final = 2
_SIGNALS: Final = {TERM: signal.SIGTERM, KILL: signal.SIGKILL}
_CHUNK: Final = 1 << 16

# What a call of `run_command` returns: the exit code (or minus the signal), the stdout
# and stderr, and why the command could not start (None if it did).
Outcome = tuple[int, bytes, bytes, str | None]

# The stop asked for each command running in this worker process (0: none yet), by token.
_STOPS: dict[str, int] = {}


def request_stop(token: str, how: int) -> bool:
    """On each worker (``client.run``): have the command of ``token`` stopped ``how``
    (``TERM`` or ``KILL``), if it runs here."""
    if token not in _STOPS:
        return False
    _STOPS[token] = max(_STOPS[token], how)
    return True


def run_command(argv: list[str], token: str, grace: float) -> Outcome:
    """On a worker: run ``argv`` as the CLI runs a local job, and say how it went."""
    try:
        proc = _start(argv)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        rc = 127 if isinstance(exc, FileNotFoundError) else 126
        return rc, b"", b"", f"{argv[0]}: {reason}"
    _STOPS[token] = 0
    try:
        out, err = _collect(proc, _Killer(proc.pid, grace), _still_wanted(token))
        status = proc.poll()
    finally:
        del _STOPS[token]
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return (-signal.SIGKILL if status is None else status), out, err, None


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    """``argv`` started as a shell would (a file that is no executable format run by
    ``/bin/sh``), in a session of its own."""
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE,
        "start_new_session": True,
    }  # fmt: skip
    try:
        return subprocess.Popen(argv, **options)
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
    return subprocess.Popen(["/bin/sh", *argv], **options)


class _Killer:
    """Kills a process group: SIGTERM (and SIGCONT), SIGKILL after the grace period."""

    def __init__(self, pgid: int, grace: float) -> None:
        self.pgid = pgid
        self.grace = grace
        self.sent = 0  # the last signal sent
        self.at = 0.0  # when

    def stop(self, how: int) -> None:
        """Start killing (``KILL``: at once); and SIGKILL once the grace period is over."""
        now = time.monotonic()
        if self.sent == TERM and now >= self.at + self.grace:
            how = KILL
        if how > self.sent:
            self.sent, self.at = how, now
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, _SIGNALS[how])
                os.killpg(self.pgid, signal.SIGCONT)  # (a stopped process acts on SIGTERM)

    def past_grace(self) -> bool:
        return self.sent != 0 and time.monotonic() >= self.at + self.grace

    def gave_up(self) -> bool:
        """SIGKILL was sent long enough ago: stop waiting for the group."""
        return self.sent == KILL and time.monotonic() > self.at + KILL_WAIT


def _collect(
    proc: subprocess.Popen[bytes], killer: _Killer, wanted: Callable[[], int]
) -> tuple[bytes, bytes]:
    """The command's stdout and stderr, read until both close and its leader exits. Its
    group is killed when a stop is asked for, or when the leader has exited and left
    processes behind (those holding the pipes open are waited for ``grace`` seconds)."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    data = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    with selectors.DefaultSelector() as selector:
        for fd in data:
            selector.register(fd, selectors.EVENT_READ)
        while not killer.gave_up():
            if selector.get_map():
                for key, _ in selector.select(POLL):
                    chunk = os.read(key.fd, _CHUNK)
                    if chunk:
                        data[key.fd] += chunk
                    else:
                        selector.unregister(key.fd)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(POLL)
            exited = proc.poll() is not None
            if exited and (not selector.get_map() or killer.past_grace()):
                break
            stop = max(wanted(), TERM if exited else 0)  # (exited: the pipes are held)
            if stop:
                killer.stop(stop)
    # What the leader left in its group (zombies orphaned to another process not counted).
    while group_alive(killer.pgid) and not killer.gave_up():
        killer.stop(TERM)
        time.sleep(POLL)
    return bytes(data[proc.stdout.fileno()]), bytes(data[proc.stderr.fileno()])


def _still_wanted(token: str) -> Callable[[], int]:
    """How to stop the command: as asked, or with SIGTERM once its call is canceled
    on the cluster (a cancel, or the client gone). Outside a worker, only the former."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key, tasks = worker.get_current_task(), worker.state.tasks
    except (ImportError, ValueError, AttributeError):
        return lambda: _STOPS.get(token, 0)

    def stop() -> int:
        task = tasks.get(key)
        canceled = task is None or task.state == "cancelled"
        return max(_STOPS.get(token, 0), TERM if canceled else 0)

    return stop
