"""The inputs of ``asynctasklib run``: each job's arguments, from one or more sources.

The sources are, in this order, each ``-a FILE`` and then each group after the command
(``::: words``, ``:::: files``; ``:::+`` and ``::::+`` link a source to the one before it),
or standard input when none is given. As GNU parallel does, the jobs are every
combination of the sources' records (`_combine`), the last source varying fastest; linked
sources go along together (the shortest ends them). A source with no record at all counts
as one empty record, unless every source is empty (then there is no job). With
``--colsep`` a record is cut into several arguments; with ``-n``/``-N`` a job takes N
records.

Everything is read lazily, as jobs start: the first source is read as it goes and
forgotten, the others are kept as they are read (every combination needs them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._combine import Chain, Padded, Product, Wrapped
from ._errors import UsageError
from ._records import NOT_YET, Lines, PipeLines, read_records, text_reader
from ._sources import STDIN, SourceSpec
from ._xargs import LineLength, Packer

if TYPE_CHECKING:
    from ._options import Options

__all__ = ["NOT_YET", "Inputs", "OpenSources", "open_inputs", "open_sources"]

_SPACE: Final = " \t\n\r\f\v"  # what GNU parallel's --colsep trims (Perl's \s)


@dataclass(slots=True)
class _Opened:
    """One source opened: a blocking iterator of records, or a pipe to read on the loop."""

    lines: Lines | None
    pipe_fd: int | None = None
    close: Callable[[], None] | None = None
    name: str = STDIN
    delim: bytes = b"\n"


@dataclass(slots=True)
class OpenSources:
    """The sources opened (`open_sources`), to become the `Inputs` (`open_inputs`)."""

    opened: list[_Opened]
    chains: list[int]  # the number of sources in each linked chain, in order
    colsep: re.Pattern[str] | None = None
    max_args: int | None = None
    packer: Packer | None = None  # -X, -m, --xargs
    jobs: int = 0  # the job slots (-X and -m spread the last line's inputs over them)
    wrap: bool = False  # --link: linked sources end with the longest, the others wrapped

    def blocking_inputs(self) -> Inputs:
        """The inputs, when every source was opened without ``pipes`` (`open_sources`)."""
        readers: list[Lines | PipeLines] = [s.lines for s in self.opened if s.lines is not None]
        assert len(readers) == len(self.opened), "a pipe is read by open_inputs, on the loop"
        return _inputs_of(self, readers)

    def close(self) -> None:
        for source in self.opened:
            if source.lines is not None:
                source.lines.close()
            elif source.close is not None:
                source.close()


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _open_one(spec: SourceSpec, delim: bytes, pipes: bool) -> _Opened:
    """Open one source (OSError if its file cannot be read)."""
    if spec.values is not None:
        return _Opened(Lines(iter(spec.values)))
    name = spec.name
    if spec.path not in (None, "-"):
        assert spec.path is not None
        stream = open(spec.path, "rb")  # noqa: SIM115  # closed by its Lines or reader
    else:
        fd = _stdin_fd()
        if fd is None:
            return _Opened(Lines(read_records(text_reader(sys.stdin), delim, name)))
        stream = open(fd, "rb", closefd=False)  # noqa: SIM115
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    # Only these can wait for input, and can be polled; /dev/null and regular files
    # cannot (epoll refuses them) and never block.
    if pipes and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
        return _Opened(None, fd, stream.close, name, delim)
    return _Opened(Lines(read_records(stream.read1, delim, name), stream.close), name=name)


def open_sources(opts: Options, *, pipes: bool) -> OpenSources:
    """Open every source (`UsageError` naming a file that cannot be read).

    With ``pipes``, a pipe or terminal is left to read on the event loop, so that a slow
    producer never blocks it; regular files are read with blocking reads (they never wait).
    """
    sources = OpenSources([], [], opts.colsep, opts.max_args, jobs=opts.jobs, wrap=opts.link)
    if opts.pack is not None:
        line = LineLength(opts.command, opts.names, opts.context_replace, opts.pack.quoting)
        sources.packer = Packer(opts.pack, line, opts.jobs)
    try:
        for spec in opts.sources:
            try:
                sources.opened.append(_open_one(spec, opts.delimiter, pipes))
            except OSError as exc:
                raise UsageError(f"{spec.given}: cannot read {spec.path}: {exc.strerror}") from None
            if spec.linked and sources.chains:
                sources.chains[-1] += 1
            else:
                sources.chains.append(1)
    except BaseException:
        sources.close()
        raise
    return sources


async def _on_loop(source: _Opened) -> PipeLines:
    """Read a pipe's records on the event loop."""
    fd = source.pipe_fd
    assert fd is not None
    # Reading on the loop sets O_NONBLOCK on the open file, which other processes may
    # share (a terminal): put it back when done.
    loop = asyncio.get_running_loop()
    was_blocking = os.get_blocking(fd)
    pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
    try:
        _, reader = await loop.connect_read_pipe(
            lambda: PipeLines(loop, source.name, source.delim), pipe
        )
    except BaseException:
        pipe.close()
        raise
    close = reader.close

    def close_and_restore() -> None:
        close()
        with contextlib.suppress(OSError):
            os.set_blocking(fd, was_blocking)
        if source.close is not None:
            source.close()

    reader.close = close_and_restore  # type: ignore[method-assign]
    return reader


class Inputs:
    """Each job's arguments: ``await get()`` gives the next tuple, None at the end."""

    def __init__(
        self,
        product: Product,
        sources: OpenSources,
        readers: list[Lines | PipeLines],
    ) -> None:
        self._product = product
        self._colsep = sources.colsep
        self._max_args = sources.max_args
        self._packer = sources.packer
        if self._packer is not None:
            self._packer.jobs = sources.jobs
        self._readers = readers
        self._pending: list[tuple[str, ...]] = []  # records for the next job (-n)

    def _split(self, record: tuple[str, ...]) -> tuple[str, ...]:
        """--colsep: each value cut into columns, each trimmed, as GNU parallel does."""
        colsep = self._colsep
        if colsep is None:
            return record
        return tuple(
            (column or "").strip(_SPACE)
            for value in record
            for column in (colsep.split(value) if value else [""])
        )

    def _next_split(self) -> Any:
        record = self._product.get_nowait()
        return record if record is None or record is NOT_YET else self._split(record)

    def get_nowait(self) -> Any:
        """The next job's arguments, None at the end, or NOT_YET if not ready."""
        product = self._product
        if self._packer is not None:
            records = self._packer.get_nowait(self._next_split)
            if records is None or records is NOT_YET:
                return records
            return tuple(arg for record in records for arg in record)
        if self._max_args is None:
            record = product.get_nowait()
            return record if record is None or record is NOT_YET else self._split(record)
        pending = self._pending
        while len(pending) < max(self._max_args, 1):
            record = product.get_nowait()
            if record is NOT_YET:
                return NOT_YET
            if record is None:
                break
            pending.append(record)
        if not pending:
            return None
        args = () if self._max_args == 0 else tuple(a for r in pending for a in self._split(r))
        pending.clear()
        return args

    async def get(self) -> tuple[str, ...] | None:
        while (args := self.get_nowait()) is NOT_YET:
            assert self._product.blocked is not None
            await self._product.blocked.ready()
        return args  # type: ignore[no-any-return]

    def values(self) -> Iterator[tuple[str, ...]]:
        """The arguments one by one, for blocking sources only (``--dry-run``)."""
        while (args := self.get_nowait()) is not None:
            if args is NOT_YET:
                blocked = self._product.blocked
                assert isinstance(blocked, Lines)
                blocked.raise_error()  # (a blocking source is only not ready after an error)
                raise AssertionError("a blocking source is not ready")  # pragma: no cover
            yield args

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


def _inputs_of(sources: OpenSources, readers: list[Lines | PipeLines]) -> Inputs:
    padded = [Padded(reader) for reader in readers]
    chains: list[Chain | Wrapped] = []
    start = 0
    for count in sources.chains:
        linked = padded[start : start + count]
        chains.append(Wrapped(linked) if sources.wrap else Chain(linked, keep=bool(chains)))
        start += count
    return Inputs(Product(chains, padded), sources, readers)


async def open_inputs(sources: OpenSources) -> Inputs:
    """The inputs of the sources opened, to be taken one by one as jobs start."""
    readers: list[Lines | PipeLines] = []
    try:
        for source in sources.opened:
            readers.append(source.lines if source.lines is not None else await _on_loop(source))
    except BaseException:
        for reader in readers:
            reader.close()
        sources.close()
        raise
    return _inputs_of(sources, readers)
