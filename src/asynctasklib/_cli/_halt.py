"""``--halt``: when to stop a run early, and the exit status, as GNU parallel decides both
(its ``parse_halt``, ``should_we_halt`` and ``halt``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final, Literal

from ._errors import UsageError

MAX_STATUS: Final = 101  # "101 means more than 100 jobs failed"

# parallel's short forms
_SHORT: Final = {
    "0": "never",
    "1": "soon,fail=1",
    "2": "now,fail=1",
    "-1": "soon,success=1",
    "-2": "now,success=1",
}


@dataclass(frozen=True, slots=True)
class HaltSpec:
    """``--halt WHEN,WHAT=N`` or ``WHEN,WHAT=N%``."""

    when: Literal["now", "soon"]
    what: Literal["fail", "success", "done"]
    count: int | None  # N jobs
    pct: float | None  # or N% of the jobs, as a fraction


def parse_halt(text: str) -> HaltSpec | None:
    """``--halt``'s value (None: never halt); `UsageError` if it is not one."""
    spec = _SHORT.get(text, text)
    spec = re.sub(r"^(\d+)%$", r"soon,fail=\1%", spec)  # --halt 5%: soon,fail=5%
    when, _, rest = spec.partition(",")
    if when == "never" and not rest:
        return None
    if when not in ("now", "soon"):
        raise UsageError(f"--halt: expected never, soon or now, got {text!r}")
    what, _, amount = re.sub("=", ",", rest, count=1).partition(",")
    if what not in ("fail", "success", "done"):
        raise UsageError(f"--halt {when}: expected {when},fail, ,success or ,done, got {text!r}")
    match = re.fullmatch(r"(\d+)(%?)", amount)
    if match is None or int(match[1]) == 0:
        raise UsageError(f"--halt {when},{what}: expected =N or =N% with N >= 1, got {text!r}")
    number = int(match[1])
    pct = number / 100 if match[2] else None
    return HaltSpec(when, what, None if pct else number, pct)  # type: ignore[arg-type]


class Halt:
    """Counts the jobs as they end, says when the run must halt, and its exit status."""

    def __init__(self, spec: HaltSpec | None) -> None:
        self.spec = spec
        self.total: int | None = None  # the number of jobs (needed for N%)
        self.failed = 0
        self.completed = 0
        self.status: int | None = None  # the exit status, once a halt is decided

    def ended(self, exitval: int, sig: int) -> str | None:
        """A job ended for good (no retry to come) with ``exitval`` and ``sig``: "now" or
        "soon" if the run must halt (each time, from then on), else None."""
        self.completed += 1
        failed = bool(exitval or sig)
        self.failed += failed
        spec = self.spec
        if spec is None:
            return None
        if spec.what == "done":
            reached = self.completed
        elif spec.what == "fail":
            if not failed:
                return None
            reached = self.failed
        else:
            if failed:
                return None
            reached = self.completed - self.failed
        count = self._count(spec)
        if reached < count:
            return None
        if self.status is None:
            self.status = self._status(spec, count, exitval, sig)
        return spec.when

    def _count(self, spec: HaltSpec) -> float:
        if spec.count is not None:
            return spec.count
        assert spec.pct is not None
        assert self.total is not None
        return self.total * spec.pct

    def _status(self, spec: HaltSpec, count: float, exitval: int, sig: int) -> int:
        """The exit status of a halt, when it is decided (parallel's should_we_halt)."""
        if spec.what == "success":
            return 0
        if count == 1:  # the job's own status, as a shell gives it (128 + its signal)
            return exitval or (128 + sig if sig else 0)
        if spec.pct is not None:
            assert self.total is not None
            return math.ceil(self.failed / self.total * 100)
        return min(self.failed, MAX_STATUS)

    def exit_status(self, started: int) -> int:
        """The run's exit status: that of the halt, if there was one; else the failed
        jobs (at most 101), or with ``N%`` their percentage of the ``started`` attempts
        (0 to 255)."""
        if self.status is not None:
            return self.status % 256  # (exit -1, from a timed out job, is 255)
        if self.spec is not None and self.spec.pct is not None:
            return math.ceil(self.failed / (started or 1) * 100)
        return min(self.failed, MAX_STATUS)
