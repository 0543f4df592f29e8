"""GNU parallel's ``--joblog``: its rows, and a joblog read back for ``--resume``,
``--resume-failed`` and ``--retry-failed``.

A row is what parallel's ``print_joblog`` writes: the job's number, ``:`` for the local
host, the start of its last attempt (Unix seconds, 3 decimals), that attempt's run time
(``%10.3f``, cut to the millisecond as parallel does), 0 bytes sent, the bytes of standard
output received, the exit value (-1 when a timeout killed it), the signal that killed it,
and the command line (a newline in it written as NUL, so that a row stays one line).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ._errors import UsageError, show
from ._template import Template

if TYPE_CHECKING:
    from ._options import Options

HEADER: Final = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
# A row as parallel writes one: Seq, Host, Starttime, JobRuntime (padded), Send, Receive,
# Exitval, Signal, Command.
_ROW = re.compile(
    r"(\d+)\t[^\t]+\t[0-9.]+\t *-?[0-9.]+\t[0-9.]+\t[0-9.]+\t(-?\d+)\t(\d+)\t(.*)", re.DOTALL
)


def row(
    seq: int, start: float, end: float, received: int, exitval: int, sig: int, command: str
) -> str:
    """One joblog row, as GNU parallel formats it."""
    starttime, runtime = times(start, end)
    command = command.replace("\n", "\0")
    return f"{seq}\t:\t{starttime}\t{runtime:10.3f}\t0\t{received}\t{exitval}\t{sig}\t{command}\n"


def times(start: float, end: float) -> tuple[str, float]:
    """Starttime (3 decimals) and JobRuntime as GNU parallel has them: the run time is
    int((end - starttime) * 1000) / 1000, from the start as written."""
    starttime = f"{start:.3f}"
    return starttime, math.trunc((end - float(starttime)) * 1000) / 1000


@dataclass(slots=True)
class Previous:
    """What a joblog says of the jobs it lists."""

    logged: set[int] = field(default_factory=set)  # every Seq with a row
    succeeded: set[int] = field(default_factory=set)  # with a row of Exitval 0, Signal 0
    commands: dict[int, str] = field(default_factory=dict)  # each Seq's last command line


def read(path: str, text: str) -> Previous | None:
    """The joblog ``text`` (the file at ``path``), or None if it is empty (as GNU parallel
    treats it: a new joblog). `UsageError` if it is not in parallel's format."""
    if not text:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if lines[0] + "\n" != HEADER:
        raise UsageError(
            f"--joblog {show(path)} is not a GNU parallel joblog: its first line is not "
            f"the header {HEADER.rstrip()!r}"
        )
    previous = Previous()
    for number, line in enumerate(lines[1:], 2):
        match = _ROW.fullmatch(line)
        if match is None:
            raise UsageError(
                f"--joblog {show(path)}, line {number}: not a GNU parallel joblog row: {show(line)}"
            )
        seq = int(match[1])
        previous.logged.add(seq)
        if match[2] == "0" and match[3] == "0":
            previous.succeeded.add(seq)
        previous.commands[seq] = match[4].replace("\0", "\n")
    return previous


class CommandLines:
    """``--retry-failed``'s template: each input is a command line from the joblog, run
    by ``/bin/sh -c`` as GNU parallel runs it (the joblog is a script of commands)."""

    executable: Final = "/bin/sh"

    def argv(self, seq: int, slot: int, args: Sequence[str]) -> list[str]:
        return ["/bin/sh", "-c", args[0]]  # (one argument: a command line of the joblog)

    def display(self, argv: list[str], seq: int, slot: int, args: Sequence[str]) -> str:
        return argv[2]


def template_for(opts: Options) -> Template | CommandLines:
    """What makes each job's command: the command line's template, or the joblog's."""
    if opts.retry_failed:
        return CommandLines()
    return Template(opts.command, opts.shell, opts.names, opts.context_replace)
