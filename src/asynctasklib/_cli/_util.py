"""Two small helpers and a sentinel that several modules of ``asynctasklib run`` share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncio

NOT_YET: Final[Any] = object()  # get_nowait(): no value ready yet


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
