"""The jobs' output: where it waits (memory, then one file), and how it is written.

A job's stdout and stderr are written whole, one job after the other: as each job ends, or
in input order with ``--keep-order``. With ``--line-buffer`` whole lines are written as
they come (`LineStream`); with ``--tag`` each line starts with the job's tag (`tagged`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Final

from ._util import isatty

if TYPE_CHECKING:
    from ._progress import ProgressView


class Store:
    """Where the jobs' output waits until it is written: in memory up to ``budget`` bytes
    for the whole run, beyond that in one temporary file (as GNU parallel buffers output in
    files), so that big outputs, or many waiting for their turn with --keep-order, take
    disk rather than memory. One file, written only at its end: one descriptor whatever the
    number of jobs; its space is given back when the run ends."""

    BUDGET = 32 * 1024 * 1024

    def __init__(self, budget: int | None = None) -> None:
        self.budget = self.BUDGET if budget is None else budget
        self.in_memory = 0
        self.in_file = 0  # bytes in the file not yet written out
        self._file: IO[bytes] | None = None
        self._end = 0

    def spill(self, data: bytes | bytearray) -> tuple[int, int]:
        """Append ``data`` to the file: its (offset, length)."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="asynctasklib-run-")  # noqa: SIM115 (closed by close())
        offset = self._end
        os.pwrite(self._file.fileno(), data, offset)
        self._end += len(data)
        self.in_file += len(data)
        return offset, len(data)

    def released(self, length: int) -> None:
        """``length`` bytes of the file were written out: once none waits, the file is
        emptied, so that it holds only what waits, not the whole run's output."""
        self.in_file -= length
        if not self.in_file and self._file is not None:
            self._file.truncate(0)
            self._end = 0

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        assert self._file is not None
        end = offset + length
        while offset < end:
            block = os.pread(self._file.fileno(), min(1 << 20, end - offset), offset)
            if not block:  # pragma: no cover - the file is ours and never shrinks
                raise OSError(f"the output file ended at {offset}, {end - offset} bytes early")
            offset += len(block)
            yield block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_BLOCK: Final = 64 * 1024  # small chunks of output are gathered into blocks of this size
_SPILL_BLOCK: Final = 4096  # ... and over the budget, go to the file this much at a time
_SLOT: Final = 16  # a part's memory beyond sys.getsizeof: its list slot, malloc's rounding


def _cost(part: bytes | bytearray) -> int:
    """The memory a part of a `Spool` holds (a bytearray's spare room included)."""
    return sys.getsizeof(part) + _SLOT


class Spool:
    """A job's stdout or stderr: kept in memory while the run's `Store` has room, spilled
    to its file otherwise. Each part is bytes (a big chunk, as it was read), a bytearray
    (small chunks gathered, so that memory grows with the bytes written, not with the
    number of writes), or an (offset, length) in the file (adjacent ones merged).

    The store counts the memory the parts really take, their overhead included. Over the
    budget, a spool still being written keeps its last few KiB (under ``_SPILL_BLOCK``) in
    memory, so that tiny writes do not each become a write to the file and a part of their
    own; `seal` sends them to the file once the output is complete."""

    __slots__ = ("_parts", "_store")

    def __init__(self, store: Store, data: bytes = b"") -> None:
        self._store = store
        self._parts: list[bytes | bytearray | tuple[int, int]] = []
        if data:
            self.append(data)

    def __bool__(self) -> bool:
        return bool(self._parts)

    def append(self, data: bytes) -> None:
        store = self._store
        parts = self._parts
        tail = parts[-1] if parts else None
        if not isinstance(tail, bytearray):
            tail = None
        size = len(data)
        if store.in_memory + size + _SLOT <= store.budget:
            if tail is not None and len(tail) + size <= _BLOCK:
                self._extend(tail, data)
            else:
                self._add(bytearray(data) if size < _BLOCK else data)
            return
        # Over the budget: this spool's memory goes to the file, and so does the rest, but
        # for a short tail.
        keep = tail is not None and len(tail) + size < _SPILL_BLOCK
        if keep:
            parts.pop()
        self._spill()
        if tail is not None and keep:
            parts.append(tail)
            self._extend(tail, data)
        elif size < _SPILL_BLOCK:
            self._add(bytearray(data))
        else:
            self._add_extent(store.spill(data))

    def seal(self) -> None:
        """The output is complete: if the store is over its budget, its memory goes to the
        file (what it kept to gather small writes)."""
        if self._store.in_memory > self._store.budget:
            self._spill()

    def _add(self, part: bytes | bytearray) -> None:
        self._store.in_memory += _cost(part)
        self._parts.append(part)

    def _extend(self, tail: bytearray, data: bytes) -> None:
        before = _cost(tail)
        tail += data
        self._store.in_memory += _cost(tail) - before

    def _add_extent(self, extent: tuple[int, int]) -> None:
        parts = self._parts
        last = parts[-1] if parts else None
        if isinstance(last, tuple) and last[0] + last[1] == extent[0]:
            parts[-1] = (last[0], last[1] + extent[1])
        else:
            parts.append(extent)

    def _spill(self) -> None:
        """Send every part in memory to the file."""
        store = self._store
        parts = self._parts[:]
        self._parts.clear()
        for part in parts:
            if isinstance(part, tuple):
                self._add_extent(part)
            else:
                store.in_memory -= _cost(part)
                self._add_extent(store.spill(part))

    def chunks(self) -> Iterator[bytes | bytearray]:
        for part in self._parts:
            if isinstance(part, tuple):
                yield from self._store.read(*part)
            else:
                yield part

    def getvalue(self) -> bytes:
        return b"".join(self.chunks())

    def release(self) -> None:
        """Written (or dropped): give its memory, and its place in the file, back."""
        for part in self._parts:
            if isinstance(part, tuple):
                self._store.released(part[1])
            else:
                self._store.in_memory -= _cost(part)
        self._parts = []


Chunks = Iterable[bytes | bytearray]
_LINE_START = re.compile(rb"(?<=[\r\n])(?=.)", re.DOTALL)  # after a line end, with more


def _template(tag: bytes) -> bytes:
    """``tag`` as a replacement for `re.sub`, which reads backslashes in it."""
    return tag.replace(b"\\", b"\\\\")


def tagged(chunks: Chunks, tag: bytes) -> Iterator[bytes | bytearray]:
    """The output with ``tag`` at the start of each line, as GNU parallel's ``--tag`` writes
    it: at the start, and after each ``\n`` or ``\r`` that more output follows (a last
    line without a newline is tagged too; nothing follows a last newline)."""
    if not tag:
        yield from chunks
        return
    template = _template(tag)
    at_start = True
    for chunk in chunks:
        if not chunk:
            continue
        if at_start:
            yield tag
        yield _LINE_START.sub(template, chunk)
        at_start = chunk[-1] in b"\r\n"


class Sink:
    """Writes whole chunks to our stdout/stderr, or through the progress view's console.

    When our stdout is closed (``| head``), ``on_stdout_closed`` is called once and
    whatever follows is dropped.
    """

    def __init__(self) -> None:
        self.view: ProgressView | None = None
        self.stdout_tty = isatty(sys.stdout)
        self.stdout_closed = False
        self.on_stdout_closed: Callable[[], None] | None = None

    def write(self, data: bytes | Spool, *, err: bool, tag: bytes = b"") -> None:
        """Write ``data`` whole, each line starting with ``tag``: nothing else is written
        between its chunks."""
        if data:
            chunks = (data,) if isinstance(data, bytes) else data.chunks()
            self.write_chunks(tagged(chunks, tag), err=err)

    def write_chunks(self, chunks: Chunks, *, err: bool) -> None:
        """Write ``chunks`` whole: nothing else is written between them."""
        if self.stdout_closed and not err:
            return
        view = self.view
        if view is not None and (err or self.stdout_tty):
            view.print(b"".join(chunks).decode(errors="replace"))
            return
        stream = sys.stderr if err else sys.stdout
        try:
            stream.flush()
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                for chunk in chunks:
                    buffer.write(chunk)
                buffer.flush()
            else:
                stream.write(b"".join(chunks).decode(errors="replace"))
                stream.flush()
        except BrokenPipeError:
            if not err:
                self.closed()

    def closed(self) -> None:
        """Our stdout was closed: nothing more goes there."""
        if self.stdout_closed:
            return
        self.stdout_closed = True
        # What is still buffered would fail again at exit: send fd 1 to /dev/null.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        if self.on_stdout_closed is not None:
            self.on_stdout_closed()

    def notice(self, message: str) -> None:
        """A message of ours, on stderr."""
        self.write(f"asynctasklib: {message}\n".encode(errors="surrogateescape"), err=True)


class LineStream:
    """A job's stdout or stderr with ``--line-buffer``: once the job is live (at once, or
    in its turn with ``--keep-order``), each read that ends a line is written as it comes,
    up to its last line end, as GNU parallel does; what follows waits in a `Spool` for the
    rest of its line (as does everything while the job waits for its turn)."""

    __slots__ = ("_err", "_sink", "_store", "_tag", "_template", "live", "rest")

    def __init__(self, sink: Sink, store: Store, *, err: bool, tag: bytes) -> None:
        self._sink = sink
        self._store = store
        self._err = err
        self._tag = tag
        self._template = _template(tag)
        self.live = False
        self.rest = Spool(store)  # not written yet

    def append(self, data: bytes) -> None:
        if not self.live:
            self.rest.append(data)
            return
        # Up to the last newline; only if there is none, the last carriage return (a
        # progress bar's line).
        end = (data.rfind(b"\n") + 1) or (data.rfind(b"\r") + 1)
        if not end:
            self.rest.append(data)
            return
        head: tuple[bytes, ...] = ()
        lines: tuple[bytes, ...]
        if self._tag:
            # As GNU parallel: the tag goes before the half line kept (as it is), each
            # line end up to ``end`` gets one after it, and the output written then goes
            # on to the last carriage return, if one comes after ``end``.
            stop = max(end, data.rfind(b"\r") + 1)
            head = (self._tag,)
            lines = (_LINE_START.sub(self._template, data[:end]), data[end:stop])
            end = stop
        else:
            lines = (data[:end],)
        # (the half line kept may be in the run's file: read it as it is written)
        chunks = itertools.chain(head, self.rest.chunks(), lines)
        self._sink.write_chunks(chunks, err=self._err)
        self.rest.release()
        if end < len(data):
            self.rest.append(data[end:])

    def go_live(self) -> None:
        """The job's turn came: what waits is written up to its last line end, and from
        now on each line as it comes."""
        waiting, self.rest = self.rest, Spool(self._store)
        self.live = True
        for chunk in waiting.chunks():
            self.append(bytes(chunk))
        waiting.release()

    def done(self) -> Spool:
        """The attempt is over: a live stream writes its last half line (after the tag,
        as it is, as GNU parallel does); what is left (all of it, if the job is not live)
        is the attempt's output."""
        if self.live and self.rest:
            line = itertools.chain((self._tag,), self.rest.chunks())
            self._sink.write_chunks(line, err=self._err)
            self.rest.release()
        return self.rest


_Then = Callable[[], None] | None  # what to do once a job's output is written


class Ordered:
    """Output in input order: each job's output waits only for the jobs before it.

    With ``--line-buffer`` the first job in order is live (`LineStream.go_live`): ``turn``
    tells a running job's streams when their turn comes."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._next = 1
        self._waiting: dict[int, tuple[bytes | Spool, bytes | Spool, bytes, _Then]] = {}
        self._turns: dict[int, Callable[[], None]] = {}

    def put(
        self, seq: int, out: bytes | Spool, err: bytes | Spool, tag: bytes = b"",
        then: _Then = None,
    ) -> None:  # fmt: skip
        """Job ``seq``'s output, to write in its turn; then ``then()`` (its joblog row)."""
        self._waiting[seq] = (out, err, tag, then)
        self._drain()

    def skip(self, seq: int) -> None:
        self.put(seq, b"", b"")

    def turn(self, seq: int, go: Callable[[], None] | None) -> None:
        """Call ``go`` once job ``seq`` is the first in order (now, if it is); None: it
        has no running attempt any more."""
        if go is None:
            self._turns.pop(seq, None)
        elif seq == self._next:
            go()
        else:
            self._turns[seq] = go

    def _drain(self) -> None:
        waiting = self._waiting
        while self._next in waiting:
            self._write(*waiting.pop(self._next))
            self._next += 1
        go = self._turns.pop(self._next, None)
        if go is not None:
            go()

    def flush(self) -> None:
        """Write what still waits (its predecessors never ran), in order."""
        for seq in sorted(self._waiting):
            self._write(*self._waiting.pop(seq))

    def _write(self, out: bytes | Spool, err: bytes | Spool, tag: bytes, then: _Then) -> None:
        self._sink.write(out, err=False, tag=tag)
        self._sink.write(err, err=True, tag=tag)
        for spool in (out, err):
            if isinstance(spool, Spool):
                spool.release()
        if then is not None:
            then()
