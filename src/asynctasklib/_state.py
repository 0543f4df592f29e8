from __future__ import annotations

import enum

__all__ = ["State"]


class State(enum.IntEnum):
    """Where a task is in its lifecycle.

    ``CREATED -> PENDING -> STARTED -> DONE | FAILED | CANCELED``; a retry goes from
    STARTED back to PENDING, a cancel can end a PENDING task, and an ended task may be
    started again with ``go()``.
    """

    CREATED = 0
    PENDING = 1
    STARTED = 2
    DONE = 3
    FAILED = 4
    CANCELED = 5
