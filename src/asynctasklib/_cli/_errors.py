"""The exit statuses of ``asynctasklib run``, its errors, and how messages show values."""

from __future__ import annotations

import os
import shlex
import signal
from typing import Final

PROG: Final = "asynctasklib run"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143  # SIGTERM
EXIT_BROKEN_PIPE: Final = 141  # our stdout was closed (SIGPIPE's code)
EXIT_TOO_LONG: Final = 255  # GNU parallel's status for "Command line too long"


class JobFailedError(Exception):
    """A job's command exited with a non-zero code or was killed by a signal."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode
        super().__init__(describe_returncode(returncode))


class CannotStartError(Exception):
    """The command could not be started (not found, not executable): not retried."""


class UsageError(Exception):
    """Bad usage: a message, exit status 2, and no job runs."""


class InputError(Exception):
    """An input the run cannot take (a line too long to be an argument): exit status 2,
    or ``status`` (255, GNU parallel's, for a line too long)."""

    status: int = EXIT_USAGE


def describe_returncode(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"killed by {name}"
    return f"exit code {rc}"


def show(text: str) -> str:
    """``text`` for a message: shell-quoted, bytes that are not UTF-8 as ``\\xNN``, and
    control characters escaped (a message stays on one line)."""
    text = os.fsencode(text).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return shlex.quote(text)
    return repr(text)
