"""``asynctasklib run --executor dask --scheduler ADDRESS`` (``_cli/_remote.py``): each
job's command runs on a worker of a real Dask cluster (a `LocalCluster`, one worker process
of two threads, on loopback), its outcome comes back here.

What a remote run writes is checked against the same run made here (the local runner is the
one tested against GNU parallel). Commands that must stay running write their pid to a file
and wait; nothing depends on how long anything takes, but ``--timeout`` itself. After each
test nothing may be left on the cluster, and the commands stopped are gone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "distributed", reason="Dask's distributed is not installed: pip install 'asynctasklib[dask]'"
)

import dask
import distributed

from asynctasklib._cli import _remote_worker
from cli_helpers import (
    PARALLEL,
    Interrupter,
    joblog_rows,
    needs_parallel,
    pid_gone,
    run,
    summary,
    wait_for,
)
from conftest import third_party_loops

pytestmark = pytest.mark.timeout(120)

WAIT = 15.0
WAITER = 'echo $$ > "$1"; exec sleep 60'  # writes its pid, then stays (until killed)
# sh -c JOBS sh PIDFILE MODE: wait (WAITER), stubborn (the same, SIGTERM ignored), or fail
# (exit 4 once the pid of another is written)
JOBS = f"""case "$2" in
    stubborn) trap '' TERM;;
    fail) while [ ! -s "$1" ]; do sleep 0.01; done; exit 4;;
esac
{WAITER}"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    # (the cluster's loops are its own: see conftest; a call whose worker dies fails at once)
    with third_party_loops(), dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=1,
            # (in this process, the worker's commands would be this process's children: the
            # CLI run here would reap them as orphans)
            processes=True,
            threads_per_worker=2,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
    with cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster: distributed.LocalCluster) -> Iterator[distributed.Client]:
    with third_party_loops():
        client = distributed.Client(cluster, set_as_default=False)
    with client:
        yield client


@pytest.fixture
def address(cluster: distributed.LocalCluster, client: distributed.Client) -> Iterator[str]:
    """The scheduler's address; after the test, no task is left on the cluster."""
    yield cluster.scheduler_address
    end = time.monotonic() + WAIT
    while tasks := client.run_on_scheduler(_scheduler_tasks):
        assert time.monotonic() < end, f"left on the cluster: {tasks}"
        time.sleep(0.02)


def _scheduler_tasks(dask_scheduler: Any) -> list[str]:
    return [str(key) for key in dask_scheduler.tasks]


def remote(capfd: pytest.CaptureFixture[str], address: str, *argv: str) -> tuple[int, str, str]:
    """The CLI run in this process with ``--scheduler address``. (Its loop is a third
    party's too: the client's thread makes its own, which an eager task factory hangs.)"""
    with third_party_loops():
        return run(capfd, "--scheduler", address, *argv)


def joblog_outcomes(path: Path) -> list[list[str]]:
    """Each row's Seq, Receive, Exitval, Signal and Command (not the times, nor Host)."""
    return [[r[0], *r[5:]] for r in joblog_rows(path)]


def test_output_exit_status_and_joblog_as_a_local_run(
    address: str, client: distributed.Client, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = 'echo "out $1"; echo "err $1" >&2; exit "$1"'
    args = ["-k", "sh", "-c", script, "sh", ":::", "0", "3", "0", "7"]
    rc, out, _ = run(capfd, "--joblog", str(tmp_path / "local"), *args)
    with distributed.get_task_stream(client) as stream:
        rc_remote, out_remote, err_remote = remote(
            capfd, address, "--joblog", str(tmp_path / "remote"), *args
        )
    assert (rc_remote, out_remote) == (rc, out) == (2, "out 0\nout 3\nout 0\nout 7\n")
    for line in ("err 3", "job 2 failed: exit code 3 (input 3)", "job 4 failed: exit code 7"):
        assert line in err_remote
    assert summary(err_remote).startswith("asynctasklib: 4 jobs: 2 done, 2 failed")
    logged = [sorted(joblog_outcomes(tmp_path / name)) for name in ("remote", "local")]
    assert logged[0] == logged[1]
    ran = [str(task["key"]) for task in stream.data]  # (on the worker)
    assert ["run_command" in key for key in ran] == [True] * 4, ran


@needs_parallel
@pytest.mark.timeout(300)
def test_as_gnu_parallel(address: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Output, exit status and joblog rows as GNU parallel's run here: an exit code, a
    signal, a timeout."""
    script = "echo {}; case {} in 0) exit 0;; k) kill -9 $$;; s) exec sleep 30;; esac; exit 3"
    argv = ["-j4", "-k", "--timeout", "2", "--joblog", str(tmp_path / "log"), script]
    inputs = [":::", "0", "x", "k", "s"]
    assert PARALLEL is not None
    theirs = subprocess.run(
        [PARALLEL, "--will-cite", *argv, *inputs], capture_output=True, text=True, timeout=120
    )
    logged = sorted(joblog_outcomes(tmp_path / "log"))
    rc, out, _ = remote(capfd, address, "--shell", *argv, *inputs)
    assert (rc, out) == (theirs.returncode, theirs.stdout) == (3, "0\nx\nk\ns\n")
    assert sorted(joblog_outcomes(tmp_path / "log")) == logged
    assert [row[2:4] for row in logged] == [["0", "0"], ["3", "0"], ["0", "9"], ["-1", "15"]]


def test_hostile_inputs_stay_data_on_the_worker(
    address: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pwned = tmp_path / "PWNED"
    hostile = [
        f"$(touch {pwned})", f"`touch {pwned}`", f"; touch {pwned}", f"' ; touch {pwned} '",
        f'" ; touch {pwned} "', "line\nbreak", "*", "-n", f"&& touch {pwned} #",
    ]  # fmt: skip
    for command in (["printf", "[%s]\\n"], ["--shell", "printf '[%s]\\n' \"{}\" '{}' {}"]):
        argv = ["-k", *command, ":::", *hostile]
        rc, out, err = remote(capfd, address, *argv)
        assert rc == 0, err
        assert (rc, out) == run(capfd, *argv)[:2]
        assert "[$(touch" in out
        assert "[line\nbreak]" in out
    # bytes that are not UTF-8 reach the worker as they are (shown in hex)
    (tmp_path / "bytes").write_bytes(b"\xff$(touch " + bytes(pwned) + b")\xfe\n")
    hexdump = ["-a", str(tmp_path / "bytes"), "sh", "-c", 'printf %s "$1" | od -An -tx1', "sh"]
    rc, out, _ = remote(capfd, address, *hexdump)
    assert (rc, out) == run(capfd, *hexdump)[:2]
    assert out.split()[:3] == ["ff", "24", "28"]
    assert not pwned.exists()


def test_a_retried_job_and_a_command_not_found(
    address: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    flag = tmp_path / "flag"
    second = 'if [ -e "$1" ]; then echo second; else touch "$1"; exit 1; fi'
    rc, out, err = remote(capfd, address, "--retries", "2", "--backoff", "none",
                          "sh", "-c", second, "sh", ":::", str(flag))  # fmt: skip
    assert (rc, out) == (0, "second\n")
    assert "1 done, 0 failed, 0 canceled, 1 retried" in summary(err)
    # a program not found: looked up on the worker, not here; not retried, as a local one
    missing = str(tmp_path / "missing")
    rc, out, err = remote(capfd, address, "--retries", "3", "--joblog", str(tmp_path / "log"),
                          missing, ":::", "x")  # fmt: skip
    assert (rc, out) == (1, "")
    assert f"asynctasklib: {missing}: No such file or directory" in err
    assert "1 failed, 0 canceled, 0 retried" in summary(err)
    assert joblog_outcomes(tmp_path / "log") == [["1", "0", "127", "0", f"{missing} x"]]
    assert run(capfd, missing, ":::", "x")[0] == 2  # (here: refused before any job)


def test_timeout_kills_the_remote_command(
    address: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Killed on the worker: SIGTERM; SIGKILL after --grace for one that ignores it."""
    rc, _, err = remote(capfd, address, "--timeout", "1", "--grace", "0.5", "--joblog",
                        str(tmp_path / "log"), "sh", "-c", JOBS, "sh", str(tmp_path / "{}"), "{}",
                        ":::", "wait", "stubborn")  # fmt: skip
    assert rc == 2
    rows = sorted(joblog_outcomes(tmp_path / "log"))
    assert [row[2:4] for row in rows] == [["-1", "15"], ["-1", "9"]]
    assert "job 1 failed: timed out after 1 s (input wait)" in err
    for name in ("wait", "stubborn"):
        assert pid_gone(int((tmp_path / name).read_text()))


def test_halt_now_stops_the_remote_commands(
    address: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pid = tmp_path / "pid"
    rc, _, err = remote(capfd, address, "-j", "2", "--halt", "now,fail=1",
                        "sh", "-c", JOBS, "sh", str(pid), ":::", "wait", "fail")  # fmt: skip
    assert rc == 4
    assert "1 failed, 1 canceled" in summary(err)
    assert pid_gone(int(pid.read_text()))


def test_ctrl_c_three_times_kills_the_remote_commands_at_once(
    address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Twice: canceled, SIGTERM (ignored; --grace is long); the third time: SIGKILL."""
    pids = [tmp_path / "1", tmp_path / "2"]
    Interrupter(monkeypatch).when(pids, 3)
    rc, _, err = remote(capfd, address, "-j", "2", "--grace", "60",
                        "sh", "-c", JOBS, "sh", str(tmp_path / "{#}"), "stubborn",
                        ":::", "a", "b")  # fmt: skip
    assert rc == 130
    assert "2 canceled" in summary(err)
    for path in pids:
        assert pid_gone(int(path.read_text()))


def test_results_are_written_here(
    address: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = remote(capfd, address, "--results", str(tmp_path / "r"),
                        "sh", "-c", 'echo "o$1"; echo "e$1" >&2', "sh", ":::", "a")  # fmt: skip
    assert (rc, out) == (0, "")
    job = tmp_path / "r" / "1" / "a"
    assert [(job / n).read_text() for n in ("stdout", "stderr", "seq")] == ["oa\n", "ea\n", "1"]


def test_an_attempt_whose_worker_dies_is_lost(
    address: str, client: distributed.Client, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Exit code 255 (ssh's, when GNU parallel loses a --sshlogin): retried with --retries;
    here the command kills its worker every time."""
    old = set(client.scheduler_info()["workers"])
    log = str(tmp_path / "log")
    rc, out, err = remote(capfd, address, "--retries", "2", "--backoff", "none", "--joblog", log,
                          "sh", "-c", 'kill -9 "$PPID"', ":::", "x")  # fmt: skip
    assert (rc, out) == (1, "")
    assert "job 1 failed after 2 attempts: lost on the Dask cluster: " in err
    assert joblog_outcomes(tmp_path / "log")[0][2:4] == ["255", "0"]
    # the nanny starts a new worker
    wait_for(lambda: bool(set(client.scheduler_info()["workers"]) - old), "a new worker", WAIT)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--executor", "dask", "echo"], "--executor dask needs --scheduler ADDRESS"),
        (["--executor", "local", "--scheduler", "tcp://h:1", "echo"], "not --executor local"),
        (["--scheduler", "tcp://h:1", "-u", "echo"], "cannot be combined with -u"),
        (["--scheduler", "tcp://h:1", "--line-buffer", "echo"], "with --line-buffer"),
        (["-S", "host", "echo"], "GNU parallel's -S/--sshlogin is not supported"),
        (["--slf", "hosts", "echo"], "--slf/--sshloginfile is not supported: run the jobs on"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capfd, *argv, ":::", "x")
    assert (rc, out) == (2, "")
    assert message in err


def test_without_distributed_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "distributed" else find_spec(name, *a),
    )  # fmt: skip
    rc, _, err = run(capfd, "--scheduler", "tcp://h:1", "echo", ":::", "x")
    assert rc == 2
    assert "needs Dask's distributed package: pip install 'asynctasklib[dask]'" in err


def test_a_scheduler_that_cannot_be_reached(capfd: pytest.CaptureFixture[str]) -> None:
    with dask.config.set({"distributed.comm.timeouts.connect": "0.2s"}):
        rc, out, err = remote(capfd, "tcp://127.0.0.1:9", "echo", ":::", "x")
    assert (rc, out) == (2, "")
    assert "--scheduler tcp://127.0.0.1:9: cannot connect" in err
    rc, _, err = remote(capfd, "127.0.0.1", "echo", ":::", "x")
    assert rc == 2
    assert "--scheduler 127.0.0.1: missing port number" in err


# -- the worker's half, called here ------------------------------------------------------


def test_run_command_gives_the_output_and_exit_status() -> None:
    argv = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert _remote_worker.run_command(argv, "t", 1.0) == (3, b"out\n", b"err\n", None)
    assert _remote_worker.run_command(["/nonexistent/x"], "t", 1.0)[0::3] == (
        127,
        "/nonexistent/x: No such file or directory",
    )
    assert not _remote_worker._STOPS


def test_run_command_stops_when_asked(tmp_path: Path) -> None:
    pid, token = tmp_path / "pid", uuid.uuid4().hex

    def ask() -> None:
        wait_for(lambda: pid.exists() and pid.stat().st_size > 0, "the command to start")
        wait_for(lambda: _remote_worker.request_stop(token, _remote_worker.TERM), "a stop")

    asker = threading.Thread(target=ask)
    asker.start()
    outcome = _remote_worker.run_command(["sh", "-c", WAITER, "sh", str(pid)], token, 1.0)
    asker.join()
    assert outcome == (-signal.SIGTERM, b"", b"", None)
    assert not _remote_worker.request_stop(token, _remote_worker.TERM)  # (not running any more)


@pytest.mark.parametrize("holding", [True, False])
def test_run_command_kills_what_the_leader_left(tmp_path: Path, holding: bool) -> None:
    """Left holding the command's pipes open, or not."""
    pid = tmp_path / "pid"
    left = f'sh -c {shlex.quote(WAITER)} sh "$0"' + ("" if holding else " >/dev/null 2>&1")
    script = f'{left} & while [ ! -s "$0" ]; do sleep 0.01; done'
    outcome = _remote_worker.run_command(["sh", "-c", script, str(pid)], "t", 0.2)
    assert outcome == (0, b"", b"", None)
    wait_for(lambda: _dead(int(pid.read_text())), "the process left behind to be killed")


def _dead(pid: int) -> bool:
    """Gone, or a zombie (orphaned to this process, which may be a subreaper: reaped)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


# -- -j against the cluster's worker threads ----------------------------------------------

# sh -c SLOTS sh DIR B: mark this job's start, print its slot ({%}), and wait (at most 10 s)
# until B jobs have started: the first B of a run are all running at once.
SLOTS = """echo "$3"; : > "$1/$4"
i=0; while [ "$(ls "$1" | wc -l)" -lt "$2" ] && [ "$i" -lt 500 ]; do sleep 0.02; i=$((i+1)); done"""


def _three_thread_workers(n_workers: int) -> distributed.LocalCluster:
    """A local cluster of ``n_workers`` worker processes of 3 threads, on loopback."""
    with third_party_loops():
        return distributed.LocalCluster(
            n_workers=n_workers, processes=True, threads_per_worker=3, host="127.0.0.1",
            dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )  # fmt: skip


@pytest.fixture(scope="module")
def six_threads() -> Iterator[str]:
    """Another cluster, of 2 workers of 3 threads (6: not this machine's CPU count, unless
    it has 6); its scheduler's address."""
    with _three_thread_workers(2) as cluster:
        yield cluster.scheduler_address


@pytest.mark.parametrize(("form", "slots"), [(None, 6), ("50%", 3), ("+1", 7), ("-1", 5), ("4", 4)])
def test_jobs_count_the_cluster_threads(
    six_threads: str, form: str | None, slots: int, tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """slots + 1 jobs; each waits for the first min(slots, 6) to start (6: the threads that
    run at once; a 7th slot's job waits on the cluster). With the right slots the highest
    {%} is theirs: fewer show fewer, more put the last job in a slot of its own."""
    jobs = [] if form is None else ["-j", form]
    command = ["sh", "-c", SLOTS, "sh", str(tmp_path), str(min(slots, 6)), "{%}", "{#}"]
    rc, out, err = remote(capfd, six_threads, *jobs, *command, ":::", *map(str, range(slots + 1)))
    assert rc == 0, err
    assert max(map(int, out.split())) == slots, out


def test_jobs_wait_for_a_first_worker(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """No worker yet: the run waits for one (its 3 threads, the default -j) or, when none
    joins in distributed's connect timeout, stops before any job, naming --scheduler."""
    with _three_thread_workers(0) as cluster:
        address = cluster.scheduler_address
        with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
            rc, out, err = remote(capfd, address, "echo", ":::", "x")
        assert (rc, out) == (2, "")
        assert "waiting at most 0.5 s for one" in err
        assert f"error: --scheduler {address}: the cluster has no worker, and none joined" in err
        with third_party_loops():
            threading.Timer(0.5, cluster.scale, (1,)).start()
        with dask.config.set({"distributed.comm.timeouts.connect": "60s"}):
            command = ["sh", "-c", SLOTS, "sh", str(tmp_path), "2", "{%}", "{#}"]
            rc, out, err = remote(capfd, address, "-j", "-1", *command, ":::", "a", "b", "c")
        assert rc == 0, err
        assert max(map(int, out.split())) == 2, out  # -j -1: 3 - 1 slots (see above)


class _Client:
    """What `cluster_threads` asks of a client: each worker's threads, a wait for one."""

    def __init__(self, *answers: dict[str, int] | OSError) -> None:
        self.answers = list(answers)
        self.waited: list[float] = []

    def nthreads(self) -> dict[str, int]:
        answer = self.answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    def wait_for_workers(self, n_workers: int, timeout: float) -> None:
        assert n_workers == 1
        self.waited.append(timeout)


def test_cluster_threads_sum_the_workers_and_say_why_not() -> None:
    from asynctasklib._cli._errors import UsageError
    from asynctasklib._cli._remote import cluster_threads

    def threads(client: _Client) -> int:
        return cluster_threads(client, "tcp://h:1", 2.0)  # type: ignore[arg-type]

    assert threads(_Client({"a": 3, "b": 4})) == 7
    client = _Client({}, {"a": 2})
    assert (threads(client), client.waited) == (2, [2.0])
    with pytest.raises(UsageError, match="tcp://h:1: the cluster has no worker, and none joined"):
        threads(_Client({}, {}))  # (the worker that came has gone)
    with pytest.raises(UsageError, match="tcp://h:1: cannot reach the scheduler: gone"):
        threads(_Client(OSError("gone")))
