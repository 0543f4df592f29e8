"""GNU parallel's replacement strings: their names, where they stand in a word, and what
each one gives for a job.

The strings are GNU parallel's without ``--plus``: ``{}`` (the arguments), ``{.}`` (without
the extension), ``{/}`` (the basename), ``{//}`` (the dirname), ``{/.}`` (the basename
without the extension), ``{#}`` (the job number), ``{%}`` (the job slot), and the positional
forms of the five that carry an argument: ``{1}``, ``{-1}``, ``{2.}``, ``{1 /}``... Each name
can be changed (``-I`` and the like). They are found as GNU parallel finds them (its
``CommandLineQueue::new``): the longest names first, each in the text that no other one took
yet, then its positional form if the name starts with ``{``; and each value is what
GNU parallel's Perl expression for it gives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from ._errors import UsageError

ARG, SEQ, SLOT = range(3)  # what a field gives: an argument, the job number, the job slot

# Each name: (what it gives, how an argument is changed: "" . / // /.), as GNU parallel has
# them; -I and the like rename them, in the order GNU parallel applies them.
DEFAULT_NAMES: Final[Mapping[str, tuple[int, str]]] = {
    "{}": (ARG, ""), "{.}": (ARG, "."), "{/}": (ARG, "/"), "{//}": (ARG, "//"),
    "{/.}": (ARG, "/."), "{#}": (SEQ, ""), "{%}": (SLOT, ""),
}  # fmt: skip
RENAME_OPTIONS: Final = (
    (("-I",), "{}"), (("--extensionreplace", "--er"), "{.}"),
    (("--basenamereplace", "--bnr"), "{/}"), (("--dirnamereplace", "--dnr"), "{//}"),
    (("--seqreplace",), "{#}"), (("--slotreplace",), "{%}"),
    (("--basenameextensionreplace", "--bner"), "{/.}"),
)  # fmt: skip
Names = Mapping[str, tuple[int, str]]

_PERL = re.compile(r"\{=.*?=\}", re.DOTALL)  # (GNU parallel joins words to find it)
_SPACE = "[ \t\n\r\f\v]*"  # Perl's \s, in a positional form such as {1 .}


class Field(NamedTuple):
    """One replacement string in a word."""

    kind: int  # ARG, SEQ or SLOT
    change: str  # ARG: "" (as it is), ".", "/", "//" or "/."
    position: int | None  # ARG: {N}'s N; None: each of the job's arguments
    text: str  # as written


APPENDED: Final = Field(ARG, "", None, "{}")  # the arguments, added to a command without any


def rename(new_names: Sequence[str | None]) -> Names:
    """The names, changed by the values of `RENAME_OPTIONS` (in that order; None: not
    given) as GNU parallel's ``rpl`` changes them: the new name takes the old one's meaning
    (also over a string of that name), and the old one is no replacement string any more."""
    names = dict(DEFAULT_NAMES)
    for (flags, old), new in zip(RENAME_OPTIONS, new_names, strict=True):
        if new is None or new == old:
            continue
        if not new:
            raise UsageError(f"{flags[0]}: the replacement string must not be empty")
        if re.search(r"\(.*\)", new):  # GNU parallel reads (...) as a regular expression
            raise UsageError(f"{flags[0]}: parentheses in {new!r} are not supported")
        names[new] = names.pop(old)
    return names


def parse(word: str, names: Names) -> list[str | Field]:
    """``word`` as literal text and the fields in it (no empty text)."""
    pieces: list[str | Field] = [word]
    for name in sorted(names, key=len, reverse=True):
        kind, change = names[name]
        pieces = _take(pieces, re.compile(re.escape(name)), kind, change)
        if name.startswith("{"):  # its positional form: {N}, {N.}, {-N /}...
            positional = re.compile(r"\{(?P<n>-?[0-9]+)" + _SPACE + re.escape(name[1:]))
            pieces = _take(pieces, positional, kind, change)
    return [piece for piece in pieces if piece != ""]


def _take(
    pieces: list[str | Field], pattern: re.Pattern[str], kind: int, change: str
) -> list[str | Field]:
    """``pieces`` with each match of ``pattern`` in their text made a field."""
    out: list[str | Field] = []
    for piece in pieces:
        if isinstance(piece, Field):
            out.append(piece)
            continue
        end = 0
        for match in pattern.finditer(piece):
            out += [piece[end : match.start()], _field(match, kind, change)]
            end = match.end()
        out.append(piece[end:])
    return out


def _field(match: re.Match[str], kind: int, change: str) -> Field:
    number = match.groupdict().get("n")  # (None: not a positional form)
    if number is not None and kind != ARG:
        # GNU parallel gives for {N#} the job number if the job has an argument N1 (N's
        # digits, then 1), else nothing: {1#} is empty up to 10 arguments, {0#} is {#}.
        raise UsageError(
            f"the replacement string {match.group()} is not supported (GNU parallel's "
            "positional forms of {#} and {%} give an argument's number: use {#} or {%})"
        )
    # {0} is {} in GNU parallel (Perl's "0" is false), while {00} and {-0} are past the end.
    position = None if number is None or number == "0" else int(number)
    return Field(kind, change, position, match.group())


_WHITE = re.compile(r"([ \t\n\r\f\v]+)")  # (Perl's \s, where GNU parallel cuts contexts)


def repeat_contexts(pieces: Sequence[str | Field], count: int) -> list[list[str | Field]]:
    """``-N``'s words of ``pieces`` for a job of ``count`` arguments, as GNU parallel's
    context replace makes them: each context (a run between white space) that holds a field
    of each argument (``{}``, ``{.}``...: no position) is repeated once per argument, its
    fields giving argument 1, 2... in turn (positional ones and ``{#}`` staying as they
    are). The copies are words of their own; the rest of ``pieces`` stays with the first
    and the last. No argument (``-N 0``) is one copy of nothing."""
    words: list[list[str | Field]] = [[]]
    for group in _contexts(pieces):
        if not any(_each(piece) for piece in group):
            words[-1] += group
            continue
        for i in range(max(count, 1)):
            if i:
                words.append([])
            words[-1] += [
                piece._replace(position=i + 1)
                if isinstance(piece, Field) and _each(piece)
                else piece
                for piece in group
            ]
    return words


def _each(piece: str | Field) -> bool:
    """Whether ``piece`` is a field of each argument (``{}``, ``{/}``...)."""
    return isinstance(piece, Field) and piece.kind == ARG and piece.position is None


def _contexts(pieces: Sequence[str | Field]) -> list[list[str | Field]]:
    """``pieces`` cut at white space: the runs between it, and each white space alone."""
    groups: list[list[str | Field]] = [[]]
    for piece in pieces:
        if isinstance(piece, Field):
            groups[-1].append(piece)
            continue
        for i, part in enumerate(_WHITE.split(piece)):
            if i % 2:  # (white space: split's captured separators)
                groups += [[part], []]
            elif part:
                groups[-1].append(part)
    return [group for group in groups if group]


def check_perl(words: Sequence[str]) -> None:
    """Refuse GNU parallel's ``{= perl expression =}`` (rather than pass it on literally)."""
    perl = _PERL.search(" ".join(words))
    if perl is not None:
        raise UsageError(
            f"the replacement string {perl.group()} is not supported (Perl expressions "
            "are not; use {}, {.}, {/}, {//}, {/.}, {#}, {%} or {N})"
        )


def values(field: Field, seq: int, slot: int, args: Sequence[str]) -> list[str]:
    """What ``field`` gives for a job: a value for each argument (``{}``), else one; none
    for a position past the arguments (GNU parallel puts nothing there, not even '')."""
    if field.kind == SEQ:
        return [str(seq)]
    if field.kind == SLOT:
        return [str(slot)]
    if field.position is None:
        return [change(arg, field.change) for arg in args]
    n = len(args)
    at = field.position - 1 if field.position > 0 else n + field.position
    # Perl's indexing: -n..-1 from the end (so {-3} of 2 arguments is the last).
    return [change(args[at], field.change)] if -n <= at < n else []


# GNU parallel's Perl expressions: s:\.[^/.]*$:: and s:.*/:: (no /s: "." stops at a newline,
# in Python too; "$" also matches before a last newline, in both).
_EXTENSION = re.compile(r"\.[^/.]*$")
_DIRECTORY = re.compile(r".*/")
_ANY = re.compile(r"^(.*/)?(.*)", re.DOTALL)
_TRAILING = re.compile(r"(.)/*\Z", re.DOTALL)


def change(value: str, how: str) -> str:
    """``value`` as ``{}``, ``{.}``, ``{/}``, ``{//}`` or ``{/.}`` give it."""
    if how == "":
        return value
    if how == ".":
        return _EXTENSION.sub("", value, count=1)
    if how == "/":
        return _DIRECTORY.sub("", value, count=1)
    if how == "/.":
        return _EXTENSION.sub("", _DIRECTORY.sub("", value, count=1), count=1)
    return dirname(value)


def _fileparse(path: str) -> tuple[str, str]:
    match = _ANY.match(path)
    assert match is not None  # (it matches any string)
    return match.group(2), match.group(1) or "./"


def dirname(path: str) -> str:
    """Perl's ``File::Basename::dirname`` on Unix, which GNU parallel's ``{//}`` is:
    ``a/b/`` gives ``a``, ``a`` and ``a/`` give ``.``, ``/`` gives ``/``."""
    base, directory = _fileparse(path)
    directory = _TRAILING.sub(r"\1", directory, count=1)
    if not base:
        base, directory = _fileparse(directory)
        directory = _TRAILING.sub(r"\1", directory, count=1)
    return directory
