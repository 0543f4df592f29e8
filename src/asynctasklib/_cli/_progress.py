"""The live progress view of ``asynctasklib run``, drawn with rich on stderr.

Imported only when the view is shown: rich is an optional dependency (the ``cli`` extra).
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

__all__ = ["ProgressView"]


def _rate(task: Task) -> float | None:
    """Jobs finished per second since the start: rich's own speed, taken over its last few
    samples, jumps to thousands when two jobs end a millisecond apart."""
    elapsed = task.elapsed
    if not task.completed or not elapsed:
        return None
    return task.completed / elapsed


class _RateColumn(ProgressColumn):
    """Jobs finished per second."""

    def render(self, task: Task) -> Text:
        rate = _rate(task)
        if rate is None:
            return Text("- jobs/s", style="progress.data.speed")
        return Text(f"{rate:.1f} jobs/s", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """The time left at that rate."""

    def render(self, task: Task) -> Text:
        rate = _rate(task)
        if rate is None or task.total is None or task.finished:
            return Text("-:--:--", style="progress.remaining")
        left = int((task.total - task.completed) / rate)
        clock = f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
        return Text(clock, style="progress.remaining")


class ProgressView:
    """A bar with done/failed/running counts, rate and ETA; refreshed by a rich thread.

    ``total`` may be unknown (None) while inputs are still being read: the bar pulses
    and the ETA shows once it is known.
    """

    def __init__(self, total: int | None) -> None:
        self.console = Console(file=sys.stderr, highlight=False)
        self._progress = Progress(
            SpinnerColumn(),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "[green]{task.fields[done]} done[/] "
                "[red]{task.fields[failed]} failed[/] "
                "[yellow]{task.fields[running]} running[/]"
                "{task.fields[extra]}"
            ),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            _EtaColumn(),
            console=self.console,
            redirect_stdout=False,
            redirect_stderr=False,
            refresh_per_second=10,
        )
        self._task = self._progress.add_task(
            "jobs", total=total, done=0, failed=0, running=0, extra=""
        )

    def start(self) -> None:
        self._progress.start()

    def update(
        self,
        *,
        total: int | None,
        done: int,
        failed: int,
        canceled: int,
        running: int,
        retried: int,
    ) -> None:
        extra = ""
        if canceled:
            extra += f" [magenta]{canceled} canceled[/]"
        if retried:
            extra += f" [cyan]{retried} retried[/]"
        self._progress.update(
            self._task,
            total=total,
            completed=done + failed + canceled,
            done=done,
            failed=failed,
            running=running,
            extra=extra,
        )

    def print(self, text: str) -> None:
        """Write a job's output (or a message) above the live view."""
        if not text.endswith("\n"):
            text += "\n"
        self.console.print(Text.from_ansi(text), end="", soft_wrap=True)

    def stop(self) -> None:
        self._progress.stop()
