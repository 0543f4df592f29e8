"""The record of one job, which the feeder makes, the processes fill in, and the
reporter shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._output import Spool

if TYPE_CHECKING:
    from ..task import Task


class Job:
    """One job: its arguments (from the inputs), what it runs and what its last attempt
    gave."""

    __slots__ = (
        "args",
        "argv",
        "attempts",
        "err",
        "error",
        "killed",
        "out",
        "received",
        "returncode",
        "seq",
        "slot",
        "started_at",
        "started_mono",
        "task",
        "timed_out",
    )

    def __init__(self, seq: int, args: tuple[str, ...], argv: list[str]) -> None:
        self.seq = seq
        self.args = args
        self.argv = argv
        self.slot = 0  # its job slot ({%}), from its submit to its end
        self.started_at: float | None = None  # wall-clock start of the last attempt
        self.started_mono = 0.0
        self.attempts = 0
        self.timed_out = False  # the last attempt was interrupted (a timeout, when retried)
        self.killed: str | None = None  # ... by --memfree, not a timeout: why (see _load)
        self.returncode: int | None = None
        self.error: str | None = None
        self.out: bytes | Spool = b""  # the last attempt's output
        self.err: bytes | Spool = b""
        self.received: int | None = None  # the bytes of ``out`` in a file (None: in ``out``)
        self.task: Task[None] | None = None  # its task in the pool, from submit to its end

    @property
    def input(self) -> str:
        """The arguments as one string, for reports: joined by spaces, as ``{}`` is."""
        return " ".join(self.args)

    def set_output(
        self, out: bytes | Spool, err: bytes | Spool, received: int | None = None
    ) -> None:
        """This attempt's output replaces the last one's (only the last is written).
        ``received``: the bytes its standard output wrote to a file (``--files``,
        ``--results``); None: what is in ``out``."""
        for old in (self.out, self.err):
            if isinstance(old, Spool):
                old.release()
        for new in (out, err):
            if isinstance(new, Spool):
                new.seal()
        self.out, self.err, self.received = out, err, received
