"""The options of the inputs: their sources (``-a``), delimiters (``-0``, ``-d``), columns
(``--colsep``) and how many go to each job (``-n``, ``-N``); checked into what `Options`
holds."""

from __future__ import annotations

import argparse
import os
import re
from typing import TYPE_CHECKING, Final

from ._argtypes import number, value
from ._errors import UsageError, show

if TYPE_CHECKING:
    from ._xargs import Pack


def add_input_options(p: argparse.ArgumentParser) -> None:
    """The options of the inputs: their sources, delimiters, columns, and per job."""
    p.add_argument(
        "-a", "--arg-file", type=value, action="append", default=[], metavar="FILE",
        help="read inputs from FILE, one per line ('-': stdin); repeatable, as :::: FILE",
    )  # fmt: skip
    # -0 is "--null" (`short_null`): as an option of argparse's own, it would make every
    # negative number a flag (--grace -1, -j -2).
    p.add_argument(
        "--null", action="store_true", help="(or -0) inputs end with a NUL, not a newline"
    )  # fmt: skip
    p.add_argument(
        "-d", "--delimiter", type=value, metavar="DELIM",
        help=r"inputs end with DELIM, not a newline (\t \n \r \0 \NNN: octal)",
    )  # fmt: skip
    p.add_argument(
        "-C", "--colsep", type=value, metavar="REGEX",
        help="cut each input into arguments at REGEX (each trimmed of white space)",
    )  # fmt: skip
    p.add_argument(
        "--link", "--xapply", action="store_true",
        help="link every input source: one job for the first value of each, one for the "
        "second... up to the end of the longest, the shorter ones starting again from their "
        "first value (:::+ links one source to the one before, up to the shortest)",
    )  # fmt: skip
    count = number(int, 0, strict=False)
    p.add_argument(
        "-n", "--max-args", type=count, metavar="N",
        help="N inputs per job (the last takes what is left; 0: none)",
    )  # fmt: skip
    p.add_argument(
        "-N", "--max-replace-args", type=count, metavar="N",
        help="N inputs per job, as -n; a word with {} is repeated for each of them",
    )  # fmt: skip
    fit = p.add_mutually_exclusive_group()
    fit.add_argument(
        "-X", dest="pack", action="store_const", const="X",
        help="as many inputs a job as fit in a command line (-s), as GNU parallel's -X: a "
        "word with {} is repeated for each of them; the last line's inputs are spread over "
        "the job slots",
    )  # fmt: skip
    fit.add_argument(
        "-m", dest="pack", action="store_const", const="m",
        help="as -X, but {} gives all the inputs at once (its word is not repeated)",
    )  # fmt: skip
    fit.add_argument(
        "--xargs", dest="pack", action="store_const", const="xargs",
        help="as -m, but every line is filled (nothing is spread over the job slots)",
    )  # fmt: skip
    p.add_argument(
        "-s", "--max-chars", type=count, metavar="N",
        help="with -X, -m, --xargs: a command line is shorter than N bytes, as GNU parallel "
        "counts them (default: the system's limit, less 3000, halved: 63664 on Linux)",
    )  # fmt: skip


# GNU parallel's escapes in -d (its unquote_printf), applied in this order: \t \n \r,
# then three octal digits, then one digit (a bare \8 or \9 is the digit itself).
_ESCAPES: Final = (("\\t", "\t"), ("\\n", "\n"), ("\\r", "\r"))
_OCTAL3 = re.compile(r"\\(\d\d\d)")
_OCTAL1 = re.compile(r"\\(\d)")


def _octal(match: re.Match[str]) -> str:
    digits = match.group(1)
    octal = re.match(r"[0-7]*", digits)
    assert octal is not None
    head = octal.group()
    return (chr(int(head, 8)) if head else "") + digits[len(head) :]


def delimiter(text: str) -> bytes:
    """``-d TEXT`` as GNU parallel reads it: the bytes that end each record (ValueError if
    there are none)."""
    for escape, char in _ESCAPES:
        text = text.replace(escape, char)
    text = _OCTAL1.sub(_octal, _OCTAL3.sub(_octal, text))
    if not text:
        raise ValueError("the delimiter is empty")
    return os.fsencode(text)


def delimiter_of(ns: argparse.Namespace) -> bytes:
    if ns.delimiter is not None and ns.null:
        raise UsageError("-0/--null and -d/--delimiter both set the delimiter: give one")
    if ns.null:
        return b"\0"
    if ns.delimiter is None:
        return b"\n"
    try:
        return delimiter(ns.delimiter)
    except ValueError as exc:
        raise UsageError(f"-d/--delimiter: {exc}") from None


def colsep_of(text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    if not text:
        raise UsageError("-C/--colsep: the separator is empty")
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"-C/--colsep: not a regular expression: {show(text)} ({exc})") from None


def max_args_of(ns: argparse.Namespace) -> int | None:
    if ns.max_args is not None and ns.max_replace_args is not None:
        raise UsageError(
            "-n/--max-args and -N/--max-replace-args both set the inputs per job: give one"
        )
    count: int | None = ns.max_args if ns.max_args is not None else ns.max_replace_args
    return count


def pack_of(ns: argparse.Namespace, max_args: int | None) -> Pack | None:
    """-X, -m, --xargs (with -s and -n/-N), checked: None if none is given."""
    if ns.pack is None:
        if ns.max_chars is not None:
            raise UsageError("-s/--max-chars sets the length of a line of -X, -m or --xargs")
        return None
    if max_args == 0:
        raise UsageError(f"-n 0 and -N 0 cannot be given with {_PACK_FLAG[ns.pack]}")
    from ._xargs import Pack  # (not for --help)

    return Pack(ns.pack, ns.max_chars, max_args, ns.quote)


_PACK_FLAG = {"X": "-X", "m": "-m", "xargs": "--xargs"}


def short_null(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``argv`` with each option ``-0`` as ``--null`` (not an option's value: ``-j -0``), and
    a long option's value that starts with ``-`` joined to it (``--results=-.csv``)."""
    takes_value = {
        flag
        for action in parser._actions  # (argparse has no public list of its options)
        if action.nargs is None
        for flag in action.option_strings
    }
    out: list[str] = []
    for i, word in enumerate(argv):
        if out and out[-1] in takes_value:
            if word.startswith("-") and out[-1].startswith("--"):
                out[-1] += "=" + word  # (argparse takes -.csv for an option: --results -.csv)
            else:
                out.append(word)
        elif word == "--" or word == "-" or not word.startswith("-"):
            return out + argv[i:]  # the command
        else:
            out.append("--null" if word == "-0" else word)
    return out
