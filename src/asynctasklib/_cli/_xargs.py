"""GNU parallel's ``-X``, ``-m`` and ``--xargs``: each job takes as many inputs as fit in
one command line, split where GNU parallel 20221122 splits them.

A job takes records while GNU parallel's estimate of its command line (`LineLength`: the
command's text, each replacement string's values shell-quoted as parallel quotes them,
in bytes) stays under the limit: ``-s/--max-chars N``, or by default half of what the
system allows a command line, less 3000 (`usable_length`). A single record over the limit
is an error (exit status 255, as parallel's). With ``-X`` and ``-m`` (not ``--xargs``),
the job that reads the last input spreads what it took over the job slots, as parallel
does: ``ceil(records / jobs)`` records a job from there on (`Packer`).
"""

from __future__ import annotations

import collections
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ._errors import EXIT_TOO_LONG, PROG, InputError
from ._replace import ARG, SEQ, SLOT, Field, Names, change, parse
from ._util import NOT_YET

MODES: Final = ("X", "m", "xargs")


@dataclass(frozen=True, slots=True)
class Pack:
    """What ``-X``, ``-m`` or ``--xargs`` ask for."""

    mode: str  # one of MODES
    max_chars: int | None  # -s/--max-chars (None: the system's, as `usable_length`)
    max_args: int | None  # -n/-N: at most this many records a job
    quoting: bool  # -q: GNU parallel counts each line three times as long


def _find_max(acceptable: Callable[[int], bool]) -> int:
    """GNU parallel's ``Limits::Command::find_max``: the longest command line, found by
    trying lengths (x16 from 324, then halving within 1%)."""
    length, lower = 324, 324
    while True:
        if length > 100_000_000:
            return length
        lower, length = length, length * 16
        if not acceptable(length):
            break
    upper = length
    lower = length // 16
    while not (lower >= upper - 1 or lower / upper > 0.99):
        middle = int((upper - lower) * 0.5 + lower)
        if acceptable(middle):
            lower = middle
        else:
            upper = middle
    return lower


def system_limit() -> int:
    """The longest string the system takes as one argument: GNU parallel measures its limit
    with one ``sh -c`` string, which Linux caps at 32 pages (MAX_ARG_STRLEN)."""
    if sys.platform.startswith("linux"):
        return 32 * os.sysconf("SC_PAGE_SIZE")
    return int(os.sysconf("SC_ARG_MAX"))  # pragma: no cover - not Linux


def usable_length(limit: int | None = None) -> int:
    """GNU parallel's default ``-s``: (the longest command line - 3000) / 2 (63664 here)."""
    longest = _find_max(lambda n: n <= (system_limit() if limit is None else limit))
    return (longest - 3000) // 2


_SAFE = re.compile(r"[-_.+a-zA-Z0-9/]*")  # what GNU parallel's quoting leaves bare


def _size(text: str) -> int:
    """Perl's ``length`` of a value read as bytes."""
    return len(text.encode("utf-8", "surrogateescape")) if not text.isascii() else len(text)


def quoted_size(value: str) -> int:
    """The length of ``value`` as GNU parallel's ``Q`` quotes it for a Bourne shell: bare if
    it is only ``-_.+/`` letters and digits, else in '...' (each ``'`` as ``'"'"'``, then a
    leading or trailing ``''`` dropped); '' for the empty string."""
    if not value:
        return 2
    size = _size(value)
    if _SAFE.fullmatch(value):
        return size
    size += 4 * value.count("'") + 2
    return size - 2 * value.startswith("'") - 2 * value.endswith("'")


_CONTEXT = re.compile(rb"[^ \t\n\r\f\v]*\0[^ \t\n\r\f\v]*")  # (Perl's \S*\000\S*)


class LineLength:
    """GNU parallel's estimate of a job's command line (its ``CommandLine::len``), from the
    command's words: the text around the replacement strings, how often each occurs, and
    each one's values, summed as the records are taken."""

    def __init__(self, words: Sequence[str], names: Names, context: bool, quoting: bool) -> None:
        parsed = [parse(word, names) for word in words]
        if not any(isinstance(p, Field) for pieces in parsed for p in pieces):
            parsed.append([Field(ARG, "", None, "{}")])  # (appended, a word of its own)
        self.count: collections.Counter[Field] = collections.Counter()
        noncontext = context_len = groups = 0
        for pieces in parsed:
            text = b""
            for piece in pieces:
                if isinstance(piece, Field):
                    self.count[piece._replace(text="")] += 1
                    text += b"\0"
                else:
                    text += piece.encode("utf-8", "surrogateescape")
            for group in _CONTEXT.findall(text):
                context_len += len(group) - group.count(b"\0")
                groups += 1
            noncontext += len(_CONTEXT.sub(b"", text))
        self.base = noncontext + len(parsed) - 1
        self.context, self.groups = context_len, groups
        self.each_arg = context
        # A replacement string in the command's first word (the program) is not quoted.
        first = re.match(r"[^ \t\n=]*", " ".join(words))
        self.quote = not quoting and not (first and any(
            isinstance(p, Field) for p in parse(first.group(), names)
        ))  # fmt: skip
        self.factor = 3 if quoting else 1

    def sizes(self, record: tuple[str, ...], seq: int, slot: int) -> dict[Field, int]:
        """What one record adds to each replacement string's length, as parallel's
        ``CommandLine::push`` counts it: a positional one (also ``{#}`` and ``{%}``,
        position 1 in parallel) its column of the record, the others every value."""
        sized = quoted_size if self.quote else _size
        out: dict[Field, int] = {}
        for field in self.count:
            if field.kind in (SEQ, SLOT) or field.position is not None:
                col = 0 if field.position is None else field.position
                col = col - 1 if col > 0 else col
                if not -len(record) <= col < len(record):
                    out[field] = 0
                elif field.kind == ARG:
                    out[field] = sized(change(record[col], field.change))
                else:
                    out[field] = len(str(seq if field.kind == SEQ else slot))
            else:
                out[field] = sum(sized(change(value, field.change)) for value in record)
        return out

    def pop_sizes(self, record: tuple[str, ...], pushed: dict[Field, int]) -> dict[Field, int]:
        """What parallel's ``CommandLine::pop`` takes back off: as pushed for ``{#}`` and
        ``{%}``, but every value of the record for the other positional ones (its test for a
        position, ``/^(\\d+) /``, wants a space after the digits)."""
        sized = quoted_size if self.quote else _size
        out = dict(pushed)
        for field in self.count:
            if field.kind == ARG and field.position is not None:
                out[field] = sum(sized(change(value, field.change)) for value in record)
        return out

    def length(self, sums: dict[Field, int], args: int) -> int:
        """The line's length with ``args`` values in all, ``sums`` each field's."""
        length = self.base
        if self.each_arg:  # the context around each value is repeated (-X, -N)
            length += args * self.context + (args - 1) * self.groups
            length += sum(sums[field] * n for field, n in self.count.items())
        else:
            length += self.context
            length += sum((args - 1 + sums[field]) * n for field, n in self.count.items())
        return length * self.factor


_Product = Callable[[], Any]  # the next record (its columns cut), None, or NOT_YET


class Packer:
    """Each job's records, as many as fit (GNU parallel's ``CommandLine::populate``)."""

    def __init__(self, pack: Pack, line: LineLength, jobs: int) -> None:
        self.line = line
        self.max_len = usable = usable_length()
        if pack.max_chars:
            if pack.max_chars <= usable:
                self.max_len = pack.max_chars
            else:
                print(f"{PROG}: warning: -s/--max-chars should be < {usable}", file=sys.stderr)
        self.max_args = pack.max_args
        self.spread = pack.mode != "xargs"  # (--xargs fills every line)
        self.jobs = jobs  # the job slots to spread over (0: none)
        self._ahead: collections.deque[tuple[str, ...]] = collections.deque()  # read, not taken
        self._ended = False  # the product gave None
        self._records: list[tuple[str, ...]] = []
        self._sums: dict[Field, int] = dict.fromkeys(line.count, 0)
        self._sizes: list[dict[Field, int]] = []
        self._full = False  # the job being made takes no more records
        self._seq = 0  # the jobs made so far

    def _peek(self, product: _Product) -> Any:
        """The next record, left in place: None at the end, or NOT_YET."""
        if self._ahead:
            return self._ahead[0]
        if self._ended:
            return None
        record = product()
        if record is None:
            self._ended = True
        elif record is not NOT_YET:
            self._ahead.append(record)
        return record

    def _push(self, record: tuple[str, ...]) -> None:
        slot = min(self._seq + 1, self.jobs) if self.jobs else 1
        sizes = self.line.sizes(record, self._seq + 1, slot)
        self._records.append(record)
        self._sizes.append(self.line.pop_sizes(record, sizes))
        for field, size in sizes.items():
            self._sums[field] += size

    def _pop(self) -> tuple[str, ...]:
        for field, size in self._sizes.pop().items():
            self._sums[field] -= size
        return self._records.pop()

    def _length(self) -> int:
        records = self._records
        return self.line.length(self._sums, len(records) * len(records[0]))

    def _fill(self, product: _Product) -> Any:
        """Take records until the line is full or the inputs end: NOT_YET if one is not
        ready (the job is taken up again at the next call)."""
        while not self._full:
            record = self._peek(product)
            if record is NOT_YET:
                return NOT_YET
            if record is None:
                break
            self._push(self._ahead.popleft())
            if (length := self._length()) >= self.max_len:
                if len(self._records) == 1:
                    raise _too_long(length, self.max_len, record)
                self._ahead.appendleft(self._pop())
                break
            if self.max_args is not None and len(self._records) >= self.max_args:
                break
        self._full = True
        return None

    def get_nowait(self, product: _Product) -> Any:
        """The next job's records, None at the end, or NOT_YET."""
        if self._fill(product) is NOT_YET:
            return NOT_YET
        if self.spread and self.jobs:
            after = self._peek(product)
            if after is NOT_YET:
                return NOT_YET
            if after is None:  # the inputs end here: spread them over the job slots
                self.spread = False
                if len(self._records) > 1:
                    self.max_args = math.ceil(len(self._records) / self.jobs)
                    while len(self._records) > self.max_args:
                        self._ahead.appendleft(self._pop())
        records = self._records
        if not records:
            return None
        self._records, self._sizes, self._full = [], [], False
        self._sums = dict.fromkeys(self._sums, 0)
        self._seq += 1
        return records


def _too_long(length: int, limit: int, record: tuple[str, ...]) -> InputError:
    text = " ".join(record)
    shown = text[:50] + "..." if len(text) > 50 else text
    error = InputError(f"command line too long ({length} >= {limit}) at input: {shown!r}")
    error.status = EXIT_TOO_LONG
    return error
