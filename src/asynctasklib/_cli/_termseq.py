"""How a job's processes are killed (on a timeout, a cancel, ``--halt now``): GNU parallel's
``--term-seq``, a signal and a wait at a time, or ``--grace`` (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import math
import signal
from typing import Final, NamedTuple

from ._errors import UsageError

# GNU parallel's default: TERM, wait 200 ms, TERM, 100 ms, TERM, 50 ms, KILL, 25 ms.
DEFAULT: Final = "TERM,200,TERM,100,TERM,50,KILL,25"


class KillSequence(NamedTuple):
    """Each signal to send the job's process group, and how long to wait at most (in
    seconds) for the group to be gone before the next one."""

    steps: tuple[tuple[signal.Signals, float], ...]

    @property
    def seconds(self) -> float:
        """The longest the sequence waits, from its first signal to its end."""
        return sum(wait for _, wait in self.steps)


def grace(seconds: float) -> KillSequence:
    """``--grace SECONDS``: SIGTERM, then SIGKILL if the group is not gone after
    ``seconds``."""
    return KillSequence(((signal.SIGTERM, seconds), (signal.SIGKILL, 0.025)))


def parse(text: str) -> KillSequence:
    """``--term-seq SIGNAL,MS,SIGNAL,MS...``, as GNU parallel reads it: a signal by name
    (``TERM``, ``SIGTERM``) or number, then the milliseconds to wait at most (none after
    the last signal: no wait). Empty: the default. `UsageError` if it is not that."""
    items = (text or DEFAULT).split(",")
    steps = []
    for i in range(0, len(items), 2):
        sig = _signal(items[i])
        wait = _milliseconds(items[i + 1]) if i + 1 < len(items) else 0.0
        steps.append((sig, wait))
    return KillSequence(tuple(steps))


def _signal(name: str) -> signal.Signals:
    word = name.strip().upper()
    try:
        if word.isdigit():
            return signal.Signals(int(word))
        return signal.Signals[word if word.startswith("SIG") else "SIG" + word]
    except (KeyError, ValueError):
        raise UsageError(
            f"--term-seq: not a signal: {name!r} (expected SIGNAL,MS,SIGNAL,MS... such as "
            f"{DEFAULT})"
        ) from None


def _milliseconds(text: str) -> float:
    try:
        ms = float(text)
    except ValueError:
        ms = math.nan
    if not (0 <= ms < math.inf):
        raise UsageError(
            f"--term-seq: not a wait in milliseconds: {text!r} (expected SIGNAL,MS,SIGNAL,"
            f"MS... such as {DEFAULT})"
        )
    return ms / 1000
