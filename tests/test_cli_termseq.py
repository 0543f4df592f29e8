"""``--term-seq`` (``_cli/_termseq.py``, ``_procs.Processes._terminate``): how a job's
processes are killed, and ``--grace``. The jobs log each signal they get; the tests wait on
the files they write, never on time. The comparison with GNU parallel itself is in
test_cli_oracle_misc.py."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

import asynctasklib
from asynctasklib._cli import _termseq
from asynctasklib._cli._errors import UsageError
from asynctasklib._cli._options import parse
from cli_helpers import TIMEOUT, cli, run, wait_for

# Job 1 logs each signal it gets (HUP ends it); job 2 fails once job 1 is ready, which
# makes --halt now kill job 1. (A file "release" lets job 1 end by itself.)
JOB = """\
if [ "$1" = 1 ]; then
  trap 'echo TERM >> log' TERM; trap 'echo USR1 >> log' USR1
  trap 'echo HUP >> log; exit 3' HUP
  touch ready
  until [ -e release ]; do sleep 0.01; done
  echo released >> log
else
  until [ -e ready ]; do sleep 0.01; done
  exit 1
fi
"""
HALT = ["-j2", "--halt", "now,fail=1"]


def test_the_sequence_is_read_as_gnu_parallel_reads_it() -> None:
    term, kill, usr1 = signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1
    default = ((term, 0.2), (term, 0.1), (term, 0.05), (kill, 0.025))
    assert _termseq.parse("").steps == default
    assert parse(["echo"]).term_seq.steps == default
    assert _termseq.parse("TERM,1500,SIGUSR1,0,9").steps == ((term, 1.5), (usr1, 0.0), (kill, 0))
    assert _termseq.parse("term,2.5").steps == ((term, 0.0025),)
    assert parse(["--grace", "3", "echo"]).term_seq.steps == ((term, 3.0), (kill, 0.025))
    assert parse(["--termseq", "INT", "echo"]).term_seq.steps == ((signal.SIGINT, 0.0),)
    assert _termseq.parse("TERM,200,KILL,25").seconds == pytest.approx(0.225)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--term-seq", "TERM,x"], "--term-seq: not a wait in milliseconds: 'x'"),
        (["--term-seq", "TERM,-1"], "--term-seq: not a wait in milliseconds: '-1'"),
        (["--term-seq", "TERM,inf"], "--term-seq: not a wait in milliseconds: 'inf'"),
        (["--term-seq", "NOPE,10"], "--term-seq: not a signal: 'NOPE'"),
        (["--term-seq", "TERM,10,,5"], "--term-seq: not a signal: ''"),
        (["--term-seq", "999"], "--term-seq: not a signal: '999'"),
        (["--term-seq", "TERM", "--grace", "1"], "give --term-seq or --grace, not both"),
    ],
)
def test_a_bad_sequence_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse([*argv, "echo"])
    assert str(caught.value).startswith(message)


def test_each_signal_of_the_sequence_in_turn_until_the_job_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """TERM and USR1 are trapped (the job lives on: each wait runs out); HUP ends it, so
    KILL is never sent (and the long wait before it is cut short). (The waits are long
    enough for each trap to have run before the next signal: two pending at once would
    run in the shell's order, not theirs.)"""
    monkeypatch.chdir(tmp_path)
    seq = "TERM,1000,USR1,1000,HUP,600000,KILL,25"
    rc, _, err = run(capfd, *HALT, "--term-seq", seq, "--", "sh", "-c", JOB, "sh", ":::", "1", "2")
    assert rc == 1, err
    assert (tmp_path / "log").read_text() == "TERM\nUSR1\nHUP\n"


def test_a_job_that_outlives_a_sequence_without_kill_is_waited_for(tmp_path: Path) -> None:
    """As in GNU parallel: the sequence ends, the job runs on until it ends by itself."""
    argv = cli(*HALT, "--term-seq", "TERM,10", "--", "sh", "-c", JOB, "sh", ":::", "1", "2")
    log = tmp_path / "log"
    src = str(Path(asynctasklib.__file__).resolve().parents[1])  # (run from tmp_path)
    env = {**os.environ, "PYTHONPATH": src}
    with subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) as proc:
        wait_for(lambda: log.exists() and log.read_text() == "TERM\n", "the TERM logged")
        (tmp_path / "release").touch()  # (had KILL been sent, nothing would be logged)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1, err
    assert log.read_text() == "TERM\nreleased\n"


def test_grace_sends_term_then_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capfd, *HALT, "--grace", "2", "--", "sh", "-c", JOB, "sh", ":::", "1", "2")
    assert rc == 1, err
    assert (tmp_path / "log").read_text() == "TERM\n"  # (then KILL: nothing more)
