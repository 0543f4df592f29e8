from __future__ import annotations

import enum

from ._public import public_here

__all__ = ["State", "StatePredicates"]


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


class StatePredicates:
    """What a task's state says, read from its ``state`` alone: written once for every
    handle of a task (the blocking face's ``Task`` takes them from here)."""

    __slots__ = ()

    @property
    def state(self) -> State:
        """Where the task is in its lifecycle."""
        raise NotImplementedError

    def is_created(self) -> bool:
        """CREATED: made, not yet started (``go()`` starts it)."""
        return self.state is State.CREATED

    def is_pending(self) -> bool:
        """PENDING: waiting for a worker, its delay, a backoff or a rate limit."""
        return self.state is State.PENDING

    def is_started(self) -> bool:
        """STARTED: an attempt is running."""
        return self.state is State.STARTED

    def is_done(self) -> bool:
        """DONE: ended with the function's return value."""
        return self.state is State.DONE

    def is_failed(self) -> bool:
        """FAILED: ended with an error (after its retries)."""
        return self.state is State.FAILED

    def is_canceled(self) -> bool:
        """CANCELED: ended by a cancel."""
        return self.state is State.CANCELED

    def is_end(self) -> bool:
        """DONE, FAILED or CANCELED."""
        return self.state >= State.DONE

    def is_in_progress(self) -> bool:
        """PENDING or STARTED."""
        state = self.state
        return state is State.PENDING or state is State.STARTED


public_here(globals(), ["State"], "asynctasklib")  # (see `_public`)
