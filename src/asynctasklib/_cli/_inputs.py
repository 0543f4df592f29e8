"""The inputs of ``asynctasklib run``: the ``:::`` list, a file, or a pipe read on the loop.

Inputs are taken one by one as jobs start. A pipe or a terminal is read without blocking
the event loop, with back-pressure: reading pauses while many lines wait to be taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final, cast

from ._errors import InputError
from ._util import resolve

if TYPE_CHECKING:
    from ._options import Options

NOT_YET: Final[Any] = object()  # get_nowait(): no value ready yet


class Lines:
    """Input values from an iterator: ``await get()`` gives the next one, None at the end."""

    def __init__(self, values: Iterator[str], close: Callable[[], None] | None = None) -> None:
        self._values = values
        self._close = close
        self._error: Exception | None = None

    def get_nowait(self) -> Any:
        """The next value, None at the end, or ``NOT_YET`` if none is ready (after an
        error: `get` raises it, so that the values taken before it still run)."""
        if self._error is not None:
            return NOT_YET
        try:
            return next(self._values, None)
        except Exception as exc:
            self._error = exc
            return NOT_YET

    async def get(self) -> str | None:
        value = self.get_nowait()
        if value is NOT_YET:
            assert self._error is not None
            raise self._error
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


_MAX_ARG_STRLEN: Final = 131072  # Linux: the most bytes one argument takes, with its NUL


def _max_line() -> int:
    """The longest input line taken, in bytes: what one argument of a command can hold
    (131071 bytes; less if the system's whole argument limit, ARG_MAX, is smaller)."""
    try:
        arg_max = os.sysconf("SC_ARG_MAX")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no such sysconf
        arg_max = -1
    return min(arg_max if arg_max > 0 else _MAX_ARG_STRLEN, _MAX_ARG_STRLEN) - 1


MAX_LINE: Final = _max_line()


def _too_long(name: str, number: int) -> InputError:
    return InputError(
        f"{name}: line {number} is longer than {MAX_LINE} bytes, the most one argument "
        "of a command can hold; no more inputs are read"
    )


class PipeLines(asyncio.Protocol):
    """Input lines from a pipe or terminal, read without blocking the event loop.

    Reading pauses while ``_HIGH`` lines or ``_HIGH_BYTES`` bytes wait to be taken: input
    is read as jobs start. A line longer than `MAX_LINE` stops the reading as soon as it
    gets that long; the lines before it are given, then `get` raises `InputError`.
    """

    _HIGH = 4096
    _HIGH_BYTES = 1 << 20

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str = "standard input") -> None:
        self._loop = loop
        self._name = name
        self._lines: deque[bytes] = deque()
        self._queued = 0  # bytes in _lines, a newline each included
        self._partial: list[bytes] = []  # the start of a line not ended yet, in pieces
        self._partial_len = 0
        self._number = 0  # lines received so far
        self._error: InputError | None = None
        self._eof = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # connect_read_pipe gives a read transport; uvloop's is not an asyncio.ReadTransport
        # subclass, so this is a cast, not an isinstance check.
        self._transport = cast("asyncio.ReadTransport", transport)

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        if b"\n" not in data:  # (a long line: kept in pieces, joined once, not each time)
            self._partial.append(data)
            self._partial_len += len(data)
            if self._partial_len > MAX_LINE:
                self._refuse()
            return
        first, *lines, rest = data.split(b"\n")
        partial = self._partial
        lines.insert(0, b"".join(partial) + first if partial else first)
        if self._partial_len + len(data) > MAX_LINE:  # (else no line here can be too long)
            for i, line in enumerate(lines):
                if len(line) > MAX_LINE:
                    self._take(lines[:i])
                    self._refuse()
                    return
            if len(rest) > MAX_LINE:
                self._take(lines)
                self._refuse()
                return
        self._take(lines, self._partial_len + len(data) - len(rest))
        self._partial = [rest] if rest else []
        self._partial_len = len(rest)
        if (
            (len(self._lines) > self._HIGH or self._queued > self._HIGH_BYTES)
            and not self._paused
            and self._transport is not None
        ):
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def _take(self, lines: list[bytes], size: int | None = None) -> None:
        """Queue complete ``lines``, ``size`` bytes with their newlines (None: count)."""
        self._lines.extend(lines)
        self._number += len(lines)
        self._queued += sum(map(len, lines)) + len(lines) if size is None else size

    def _refuse(self) -> None:
        """The next line is too long: stop reading; `get` raises once the lines before it
        are taken."""
        self._error = _too_long(self._name, self._number + 1)
        self._partial = []
        self._partial_len = 0
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if self._partial:
            self._take([b"".join(self._partial)])
            self._partial = []
            self._partial_len = 0
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        resolve(self._waiter)

    def get_nowait(self) -> Any:
        lines = self._lines
        if lines:
            line = lines.popleft()
            self._queued -= len(line) + 1
            if (
                self._paused
                and len(lines) < self._HIGH // 2
                and self._queued < self._HIGH_BYTES // 2
                and self._transport is not None
            ):
                self._paused = False
                self._transport.resume_reading()
            return os.fsdecode(line)
        return None if self._eof and self._error is None else NOT_YET

    async def get(self) -> str | None:
        while True:
            value = self.get_nowait()
            if value is not NOT_YET:
                return value  # type: ignore[no-any-return]
            if self._error is not None:  # (not from get_nowait: see Lines.get_nowait)
                raise self._error
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def _binary_lines(stream: IO[bytes], name: str) -> Iterator[str]:
    """The lines of ``stream``; `InputError` for one longer than `MAX_LINE` bytes, once
    that much of it is read (not the whole of it: it may have no end)."""
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        if line.endswith(b"\n"):
            line = line[:-1]
        elif len(line) > MAX_LINE:
            raise _too_long(name, number)
        yield os.fsdecode(line)


def _text_lines(stream: IO[str], name: str) -> Iterator[str]:
    """As `_binary_lines`, for a stream without a file descriptor (counted in characters)."""
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        if line.endswith("\n"):
            line = line[:-1]
        elif len(line) > MAX_LINE:
            raise _too_long(name, number)
        yield line


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


@dataclass(slots=True)
class Source:
    """Where the inputs come from: a blocking iterator, or a pipe to read on the loop."""

    values: Iterator[str] | None
    pipe_fd: int | None = None
    close: Callable[[], None] | None = None
    name: str = "standard input"  # for messages


def open_source(opts: Options, *, pipes: bool) -> Source:
    """Open the inputs (OSError if the arg file cannot be read).

    With ``pipes``, a pipe or terminal is left to read on the event loop, so that a slow
    producer never blocks it; regular files are read with blocking reads (they never wait).
    """
    if opts.inputs is not None:
        return Source(iter(opts.inputs))
    name = "standard input"
    if opts.arg_file is not None and opts.arg_file != "-":
        name = opts.arg_file
        stream = open(opts.arg_file, "rb")  # noqa: SIM115  # closed by Source.close
    else:
        fd = _stdin_fd()
        if fd is None:
            return Source(_text_lines(sys.stdin, name))
        stream = open(fd, "rb", closefd=False)  # noqa: SIM115
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    # Only these can wait for input, and can be polled; /dev/null and regular files
    # cannot (epoll refuses them) and never block.
    if pipes and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
        return Source(None, fd, stream.close, name)
    return Source(_binary_lines(stream, name), None, stream.close, name)


async def open_lines(source: Source) -> Lines | PipeLines:
    """The inputs, to be taken one by one as jobs start."""
    fd = source.pipe_fd
    if fd is None:
        assert source.values is not None
        return Lines(source.values, source.close)
    # Reading on the loop sets O_NONBLOCK on the open file, which other processes may
    # share (a terminal): put it back when done.
    loop = asyncio.get_running_loop()
    was_blocking = os.get_blocking(fd)
    pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
    _, reader = await loop.connect_read_pipe(lambda: PipeLines(loop, source.name), pipe)
    close = reader.close

    def close_and_restore() -> None:
        close()
        with contextlib.suppress(OSError):
            os.set_blocking(fd, was_blocking)
        if source.close is not None:
            source.close()

    reader.close = close_and_restore  # type: ignore[method-assign]
    return reader
