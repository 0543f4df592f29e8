"""``-j`` as the command line gives it (`JobSlots`), and the job slots it comes to against a
CPU count: this machine's (`cpu_count`), or with ``--scheduler`` the Dask cluster's worker
threads, known only once connected (see `_remote.cluster_threads`). Kept apart from
`_options` so that the form is checked when parsing and counted later, as GNU parallel
counts ``-j`` per sshlogin.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["n", "+", "-", "%"]
_KINDS: Final = frozenset(("n", "+", "-", "%"))
_FORM = re.compile(r"(?P<sign>[+-]?)(?P<n>[0-9]+)|(?P<pct>[0-9]+(?:\.[0-9]+)?)%")


@dataclass(frozen=True, slots=True)
class JobSlots:
    """-j as given: ``n`` N (0: as many as possible, see `_start._fit_jobs`), ``+`` and ``-``
    the CPU count plus or minus N, ``%`` N percent of it."""

    kind: Kind
    n: float  # N (whole, but for "%")

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"-j: unknown kind {self.kind!r}")
        if not (math.isfinite(self.n) and self.n >= 0):
            raise ValueError(f"-j: N must be a number >= 0, got {self.n!r}")
        if self.kind != "%" and self.n != int(self.n):
            raise ValueError(f"-j: N must be whole for {self.kind!r}, got {self.n!r}")

    @classmethod
    def parse(cls, text: str) -> JobSlots:
        """GNU parallel's forms: N, +N, -N, N% (`ValueError` for another)."""
        match = _FORM.fullmatch(text)
        if match is None:
            raise ValueError(f"expected N, +N, -N or N%, got {text!r}")
        if match["pct"] is not None:
            return cls("%", float(match["pct"]))
        kind: Kind = "+" if match["sign"] == "+" else "-" if match["sign"] == "-" else "n"
        return cls(kind, int(match["n"]))

    @property
    def relative(self) -> bool:
        """Whether it depends on the CPU count (N does not)."""
        return self.kind != "n"

    def of(self, cpus: int) -> int:
        """The job slots against ``cpus`` CPUs (or worker threads), as GNU parallel counts:
        N% rounded up, and at least 1 but for ``-j 0``."""
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise ValueError(f"-j: the CPU count must be a whole number >= 1, got {cpus!r}")
        n = int(self.n)
        if self.kind == "%":
            return max(1, math.ceil(cpus * self.n / 100))
        if self.kind == "+":
            return cpus + n
        if self.kind == "-":
            # GNU parallel documents this floor of 1; 20221122 says "Cannot run any jobs" instead.
            return max(1, cpus - n)
        return n


CPUS: Final = JobSlots("%", 100)  # no -j: the CPU count


def cpu_count() -> int:
    """The CPUs as GNU parallel counts them: the CPU threads this process may run on (it
    takes the fewer of the threads and of ``Cpus_allowed``, the affinity mask). Not
    ``os.process_cpu_count()``: the same on Linux, but it follows PYTHON_CPU_COUNT."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1  # pragma: no cover - no affinity mask (macOS)
