"""``--results FILE.csv``, ``.tsv`` and ``.json``: one table of the jobs, as GNU parallel
20221122 writes it (its ``print_csv`` and ``print_json``).

A row a job, as it ends (in input order with ``-k``): Seq, Host (``:``), Starttime,
JobRuntime, Send, Receive, Exitval, Signal, Command (as the joblog has them), then its
arguments (V1, V2..., in JSON a list ``V``), and its whole Stdout and Stderr. CSV and TSV
have a header line, written with the first row written (its V columns are that row's), and a
field is put in double quotes (each ``"`` doubled) if it holds one, white space, the
separator or a NUL. JSON is an object a line, ``\\``, ``"`` and control characters
escaped. The jobs' output goes only there. ``-.csv`` (and the like) writes on standard
output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

from ._joblog import times

TABLE: Final = re.compile(r"\.(csv|tsv|json)$", re.IGNORECASE)  # (parallel's test)
_COLUMNS: Final = ("Seq", "Host", "Starttime", "JobRuntime", "Send", "Receive", "Exitval",
                   "Signal", "Command")  # fmt: skip
_JSON_ESCAPES: Final = {i: f"\\u{i:04x}".encode() for i in range(32)}
_CONTROL = re.compile(rb"[\x00-\x1f]")


def kind(name: str) -> str | None:
    """``csv``, ``tsv`` or ``json`` for a table's name, else None (a directory)."""
    match = TABLE.search(name)
    return None if match is None else match.group(1).lower()


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Table:
    """The rows written to ``write``, in order with ``keep_order``."""

    def __init__(self, kind: str, write: Callable[[bytes], object], keep_order: bool) -> None:
        self.kind = kind
        self.sep = b"," if kind == "csv" else b"\t"
        self._quote = re.compile(rb'["\0 \t\n\r\f\v' + re.escape(self.sep) + rb"]")
        self._write = write
        self._header = kind != "json"  # still to write
        self._waiting: dict[int, tuple[bytes, int] | None] = {}  # (-k: rows before their turn)
        self._ordered = keep_order
        self._next = 1  # with keep_order: the row to write next

    def row(
        self, seq: int, start: float, end: float, received: int, exitval: int, sig: int,
        command: str, args: Sequence[str], out: bytes, err: bytes,
    ) -> None:  # fmt: skip
        """Job ``seq``'s row, written (or kept until its turn)."""
        starttime, runtime = times(start, end)
        fields = [str(seq), ":", starttime, f"{runtime:.3f}", "0", str(received), str(exitval),
                  str(sig)]  # fmt: skip
        if self.kind == "json":
            text = self._json(fields, command, args, out, err)
        else:
            cells = [*map(_encode, fields), *map(self._cell, [command, *args]), self._cell(out),
                     self._cell(err)]  # fmt: skip
            text = self.sep.join(cells) + b"\n"
        self._put(seq, (text, len(args)))

    def skip(self, seq: int) -> None:
        """Job ``seq`` has no row (not run): its turn passes."""
        self._put(seq, None)

    def _put(self, seq: int, row: tuple[bytes, int] | None) -> None:
        if not self._ordered:
            if row is not None:
                self._emit(*row)
            return
        self._waiting[seq] = row
        while self._next in self._waiting:
            row = self._waiting.pop(self._next)
            self._next += 1
            if row is not None:
                self._emit(*row)

    def _emit(self, text: bytes, nargs: int) -> None:
        """Write a row; the header goes with the first written (with -k the first job's, not
        the first to end), its V columns that row's."""
        if self._header:
            self._header = False
            names = [*_COLUMNS, *(f"V{i}" for i in range(1, nargs + 1)), "Stdout", "Stderr"]
            text = self.sep.join(_encode(name) for name in names) + b"\n" + text
        self._write(text)

    def _cell(self, value: str | bytes) -> bytes:
        data = _encode(value) if isinstance(value, str) else value
        if self._quote.search(data):
            return b'"' + data.replace(b'"', b'""') + b'"'
        return data

    def _json(
        self, fields: list[str], command: str, args: Sequence[str], out: bytes, err: bytes
    ) -> bytes:
        def quoted(value: str | bytes) -> bytes:
            data = _encode(value) if isinstance(value, str) else value
            data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
            return b'"' + _CONTROL.sub(lambda m: _JSON_ESCAPES[m[0][0]], data) + b'"'

        seq, host, start, runtime, send, received, exitval, sig = (_encode(f) for f in fields)
        values = b",".join(quoted(arg) for arg in args)
        return (
            b'{ "Seq": ' + seq + b', "Host": ' + quoted(host) + b', "Starttime": ' + start
            + b', "JobRuntime": ' + runtime + b', "Send": ' + send + b', "Receive": '
            + received + b', "Exitval": ' + exitval + b', "Signal": ' + sig
            + b', "Command": ' + quoted(command) + b', "V": [ ' + values + b' ], "Stdout": '
            + quoted(out) + b', "Stderr": ' + quoted(err) + b" }\n"
        )  # fmt: skip
