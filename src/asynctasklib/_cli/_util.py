"""Two small helpers that several modules of ``asynctasklib run`` share."""

from __future__ import annotations

import asyncio


def resolve(future: asyncio.Future[None] | None) -> None:
    """Wake whoever waits on ``future``, if anyone still does."""
    if future is not None and not future.done():
        future.set_result(None)


def isatty(stream: object) -> bool:
    """Whether ``stream`` is a terminal; False for anything that cannot say."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
