"""The records of one input source: a file or a stream cut at a delimiter, or a list.

A record is one input value: a line by default (``-d``/``-0`` change the delimiter). Each
source gives its records one at a time, as jobs start. A pipe or a terminal is read
without blocking the event loop, with back-pressure: reading pauses while many records
wait to be taken. A record longer than `MAX_LINE` bytes is refused as soon as it gets
that long: it could not be one argument of a command.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any, Final, cast

from ._errors import EXIT_TOO_LONG, InputError
from ._util import NOT_YET as NOT_YET  # (re-exported: what `get_nowait` gives, not ready)
from ._util import resolve

_MAX_ARG_STRLEN: Final = 131072  # Linux: the most bytes one argument takes, with its NUL
_CHUNK: Final = 1 << 16


def _max_line() -> int:
    """The longest input record taken, in bytes: what one argument of a command can hold
    (131071 bytes; less if the system's whole argument limit, ARG_MAX, is smaller)."""
    try:
        arg_max = os.sysconf("SC_ARG_MAX")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no such sysconf
        arg_max = -1
    return min(arg_max if arg_max > 0 else _MAX_ARG_STRLEN, _MAX_ARG_STRLEN) - 1


MAX_LINE: Final = _max_line()


def _too_long(name: str, number: int) -> InputError:
    """Exit status 255, as GNU parallel's for a command line too long."""
    error = InputError(
        f"{name}: line {number} is longer than {MAX_LINE} bytes, the most one argument "
        "of a command can hold; no more inputs are read"
    )
    error.status = EXIT_TOO_LONG
    return error


class TooLong(Exception):
    """A record longer than `MAX_LINE`: ``error`` to raise once ``before`` (the records
    completed ahead of it) have run."""

    def __init__(self, error: InputError, before: list[bytes]) -> None:
        super().__init__(error)
        self.error = error
        self.before = before


class Splitter:
    """Cuts a stream, given in pieces, into records at ``delim`` (`TooLong` for a record
    longer than `MAX_LINE` bytes, as soon as that much of it is here), and decodes them."""

    def __init__(self, delim: bytes, name: str) -> None:
        self._delim = delim
        self._name = name
        self._partial: list[bytes] = []  # the start of a record not ended yet, in pieces
        self._partial_len = 0
        self._tail = b""  # the partial record's last len(delim) - 1 bytes
        self._warned = False
        self.number = 0  # records given so far

    def feed(self, data: bytes) -> list[bytes]:
        """The records that ``data`` completes."""
        delim = self._delim
        if delim not in self._tail + data:  # (a long record: kept in pieces, joined once)
            self._partial.append(data)
            self._partial_len += len(data)
            if len(delim) > 1:
                self._tail = (self._tail + data[-len(delim) + 1 :])[-len(delim) + 1 :]
            if self._partial_len > MAX_LINE:
                self._refuse([])
            return []
        *records, rest = (b"".join(self._partial) + data).split(delim)
        self._partial = [rest] if rest else []
        self._partial_len = len(rest)
        self._tail = rest[-len(delim) + 1 :] if len(delim) > 1 else b""
        for i, record in enumerate(records):
            if len(record) > MAX_LINE:
                self._refuse(records[:i])
        if len(rest) > MAX_LINE:
            self._refuse(records)
        self.number += len(records)
        return records

    def end(self) -> list[bytes]:
        """The last record, if the stream did not end with the delimiter."""
        last = [b"".join(self._partial)] if self._partial else []
        self._partial, self._partial_len, self._tail = [], 0, b""
        self.number += len(last)
        return last

    def _refuse(self, before: list[bytes]) -> None:
        self.number += len(before)
        self._partial, self._partial_len, self._tail = [], 0, b""
        raise TooLong(_too_long(self._name, self.number + 1), before)

    def decode(self, record: bytes) -> str:
        """The record as a str. A NUL cannot be passed in an argument: as GNU parallel
        does, it becomes the two characters ``\\0``, with a warning (once a source)."""
        if b"\0" in record:
            if not self._warned:
                self._warned = True
                print(
                    f"asynctasklib run: warning: {self._name}: a NUL in the input was "
                    "replaced with \\0 (it cannot be passed in an argument; see -0)",
                    file=sys.stderr,
                )
            record = record.replace(b"\0", b"\\0")
        return os.fsdecode(record)


def read_records(read: Callable[[int], bytes], delim: bytes, name: str) -> Iterator[str]:
    """The records of a blocking stream, read in chunks."""
    splitter = Splitter(delim, name)
    decode = splitter.decode
    while chunk := read(_CHUNK):
        try:
            records = splitter.feed(chunk)
        except TooLong as exc:
            yield from map(decode, exc.before)
            raise exc.error from None
        yield from map(decode, records)
    yield from map(decode, splitter.end())


def text_reader(stream: IO[str]) -> Callable[[int], bytes]:
    """``read`` for a text stream without a file descriptor (a test's StringIO)."""
    return lambda size: os.fsencode(stream.read(size))


class Lines:
    """Records from an iterator: ``get_nowait()`` gives the next one, None at the end."""

    def __init__(self, values: Iterator[str], close: Callable[[], None] | None = None) -> None:
        self._values = values
        self._close = close
        self._error: Exception | None = None

    def get_nowait(self) -> Any:
        """The next value, None at the end, or ``NOT_YET`` if none is ready (after an
        error: `ready` raises it, so that the values taken before it still run)."""
        if self._error is not None:
            return NOT_YET
        try:
            return next(self._values, None)
        except Exception as exc:
            self._error = exc
            return NOT_YET

    async def ready(self) -> None:
        """Wait until `get_nowait` has something to give (here: raise the error)."""
        self.raise_error()

    def raise_error(self) -> None:
        """Raise the error that stopped the reading, if any."""
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


class PipeLines(asyncio.Protocol):
    """Records from a pipe or terminal, read without blocking the event loop.

    Reading pauses while ``_HIGH`` records or ``_HIGH_BYTES`` bytes wait to be taken: input
    is read as jobs start. A record longer than `MAX_LINE` stops the reading as soon as it
    gets that long; the records before it are given, then `ready` raises `InputError`.
    """

    _HIGH = 4096
    _HIGH_BYTES = 1 << 20

    def __init__(
        self, loop: asyncio.AbstractEventLoop, name: str = "standard input", delim: bytes = b"\n"
    ) -> None:
        self._loop = loop
        self._splitter = Splitter(delim, name)
        self._extra = len(delim)  # bytes of a delimiter, counted with each record queued
        self._lines: deque[bytes] = deque()
        self._queued = 0  # bytes in _lines, a delimiter each included
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
        try:
            records = self._splitter.feed(data)
        except TooLong as exc:
            self._take(exc.before)
            self._refuse(exc.error)
            return
        if records:
            self._take(records)
            if (
                (len(self._lines) > self._HIGH or self._queued > self._HIGH_BYTES)
                and not self._paused
                and self._transport is not None
            ):
                self._paused = True
                self._transport.pause_reading()
            self._wake()

    def _take(self, records: list[bytes]) -> None:
        self._lines.extend(records)
        self._queued += sum(map(len, records)) + self._extra * len(records)

    def _refuse(self, error: InputError) -> None:
        """The next record is too long: stop reading; `ready` raises once the records
        before it are taken."""
        self._error = error
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if self._error is None:
            self._take(self._splitter.end())
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        resolve(self._waiter)

    def get_nowait(self) -> Any:
        lines = self._lines
        if lines:
            line = lines.popleft()
            self._queued -= len(line) + self._extra
            if (
                self._paused
                and len(lines) < self._HIGH // 2
                and self._queued < self._HIGH_BYTES // 2
                and self._transport is not None
            ):
                self._paused = False
                self._transport.resume_reading()
            return self._splitter.decode(line)
        return None if self._eof and self._error is None else NOT_YET

    async def ready(self) -> None:
        while not self._lines and not (self._eof and self._error is None):
            if self._error is not None:
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
