"""The command template: the command's words with GNU parallel's replacement strings
(`_replace`), filled in per job."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Sequence
from typing import Final

from ._errors import UsageError
from ._replace import (
    APPENDED,
    ARG,
    DEFAULT_NAMES,
    Field,
    Names,
    check_perl,
    parse,
    repeat_contexts,
    values,
)
from ._shell import DOUBLE, PLAIN, RAW, SINGLE, shell_fields

# Programs whose -c argument is POSIX shell code: the input is quoted for the shell there.
_POSIX_SHELLS: Final = frozenset(
    {"sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "lksh", "pdksh",
     "oksh", "yash", "posh"}
)  # fmt: skip
_OTHER_SHELLS: Final = frozenset({"fish", "csh", "tcsh"})  # other quoting rules: refused

_REOPEN: Final = {DOUBLE: '"', SINGLE: "'"}  # close the quote, the value, reopen
_RESERVED: Final = frozenset(
    {"case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for", "foreach",
     "function", "if", "in", "nocorrect", "noglob", "repeat", "select", "then", "time",
     "until", "while"}
)  # fmt: skip
_PARALLEL_BARE = re.compile(r"[-_.+a-zA-Z0-9/]*")


def parallel_quote(value: str) -> str:
    """``value`` quoted as GNU parallel quotes a value for a Bourne shell (its
    ``shell_quote_scalar_default``): bare if only ``-_.+/``, letters and digits, else in
    single quotes, each ``'`` as ``'"'"'``, less an empty ``''`` at either end."""
    if not value:
        return "''"
    if _PARALLEL_BARE.fullmatch(value):
        return value
    quoted = "'" + value.replace("'", "'\"'\"'") + "'"
    return quoted.removeprefix("''").removesuffix("''")


def sh_quote(value: str) -> str:
    """``value`` as one shell word, literally, in any POSIX shell: as GNU parallel quotes it
    (`parallel_quote`), and a reserved word (if, while...) in quotes too, which GNU
    parallel leaves bare."""
    if value in _RESERVED:
        return "'" + value + "'"
    return parallel_quote(value)


def shell_script_index(words: list[str], i: int) -> int | None:
    """``words[i]`` runs a shell: the index of its ``-c`` command string, if any.

    Options come before it (``sh -ec``, ``bash -o pipefail -c``, ``--norc``); ``o`` and
    ``O`` take the next word as their argument, as do ``--rcfile`` and ``--init-file``.
    """
    j, has_c = i + 1, False
    while j < len(words):
        word = words[j]
        if word in ("-", "--"):
            j += 1
            break
        if word.startswith("--"):
            j += 2 if word in ("--rcfile", "--init-file") else 1
        elif len(word) > 1 and word[0] in "-+":
            has_c = has_c or (word[0] == "-" and "c" in word)
            j += 1 + word.count("o") + word.count("O")
        else:
            break
    return j if has_c and j < len(words) else None


def _shell_scripts(words: list[str]) -> dict[int, str]:
    """The index of each shell's ``-c`` word in the command: the shell's name."""
    scripts: dict[int, str] = {}
    for i, word in enumerate(words):
        name = os.path.basename(word)
        if name in _POSIX_SHELLS or name in _OTHER_SHELLS:
            at = shell_script_index(words, i)
            if at is not None:
                scripts[at] = name
    return scripts


# A word of the command: as it is, or in pieces: literal text, and each field with how its
# value goes in (RAW, or shell-quoted for where it stands: PLAIN, DOUBLE, SINGLE; ARGUMENT:
# as RAW, in a plain argument: no shell code).
_Pieces = list[str | tuple[Field, int]]
ARGUMENT: Final = max(RAW, PLAIN, DOUBLE, SINGLE) + 1


def _in_shell_code(words: list[list[str | Field]], repeated: bool = False) -> _Pieces:
    """The pieces of shell code (``words`` joined by spaces), each field placed (or
    refused) by the scanner. ``repeated``: ``words`` are `repeat_contexts`' for three
    arguments, so each context it repeats starts two of them, its second and third copies:
    those must read alike (then so do any further copies, the scanner being the same)."""
    text, spans, starts = "", [], []
    pieces: list[str | Field] = []
    for i, word in enumerate(words):
        if i:
            pieces.append(" ")
            text += " "
            starts.append(len(text))
        pieces += word
        for piece in word:
            if isinstance(piece, str):
                text += piece
            else:
                spans.append((len(text), len(text) + len(piece.text), piece.kind == ARG))
                text += piece.text
    same_at = list(zip(starts[::2], starts[1::2], strict=True)) if repeated else []
    hows = iter(shell_fields(text, spans, same_at))
    return [piece if isinstance(piece, str) else (piece, next(hows)) for piece in pieces]


def _word_parts(
    words: list[str], parsed: list[list[str | Field]], count: int | None, repeated: bool
) -> list[str | _Pieces]:
    """Each word as it is, or in pieces: shell-quoted in a shell's ``-c`` word. ``count``:
    the job's arguments for ``-N`` (None: no context repeated)."""
    command = [*words, APPENDED.text] if len(parsed) > len(words) else words
    scripts = _shell_scripts(command)  # (an appended input can be a shell's -c script)
    parts: list[str | _Pieces] = []
    for i, pieces in enumerate(parsed):
        shell_name = scripts.get(i)
        copies = [pieces] if count is None else repeat_contexts(pieces, count)
        if all(isinstance(piece, str) for piece in pieces):
            parts.append(words[i])
        elif shell_name is None or shell_name in _OTHER_SHELLS:
            carries_input = any(isinstance(p, Field) and p.kind == ARG for p in pieces)
            if shell_name is not None and carries_input:
                raise UsageError(
                    f"cannot quote the input for {shell_name}'s -c code: {words[i]!r} (pass "
                    f"it as an argument instead: {shell_name} -c '...' {{}})"
                )
            for copy in copies:
                parts.append([p if isinstance(p, str) else (p, ARGUMENT) for p in copy])
        else:
            parts.append(_in_shell_code(copies, repeated))
    return parts


_SAFE_TEXT = re.compile(r"[\w@%+=:,./-]+", re.ASCII)  # (what shlex leaves bare)


def _shown_as_parallel(pieces: _Pieces) -> bool:
    """A plain argument whose text no shell would read as syntax: shown as GNU parallel
    shows it, the values quoted in it (``x'a b'.png``)."""
    return any(isinstance(p, tuple) and p[1] == ARGUMENT for p in pieces) and all(
        isinstance(p, tuple) or _SAFE_TEXT.fullmatch(p) for p in pieces
    )


def _fill(
    pieces: _Pieces, seq: int, slot: int, args: Sequence[str], shown: bool = False
) -> list[str]:
    """The words ``pieces`` make for a job. As plain arguments, a field that gives each
    argument (``{}``) makes a word of each, and one that gives nothing (``{3}`` of two
    arguments) leaves no word if nothing else is in it: as GNU parallel's shell splits them.
    ``shown``: each value quoted as GNU parallel quotes it in a command line it shows."""
    out: list[str] = []
    word: str | None = None  # the word being made: None while nothing has made it
    for piece in pieces:
        if isinstance(piece, str):
            word = (word or "") + piece
            continue
        field, how = piece
        got = values(field, seq, slot, args)
        if shown and how == ARGUMENT:
            got = [parallel_quote(value) for value in got]
        if how in (RAW, ARGUMENT):  # a plain argument, or a number (digits) in shell code
            for i, value in enumerate(got):
                if i:
                    out.append(word or "")
                    word = value
                else:
                    word = (word or "") + value
        elif how == PLAIN:
            word = (word or "") + " ".join(map(sh_quote, got))  # a word each, as GNU parallel
        else:  # inside quotes: one word, the values joined by a space
            reopen = _REOPEN[how]
            word = (word or "") + reopen + sh_quote(" ".join(got)) + reopen
    return out if word is None else [*out, word]


class Template:
    """The command, with GNU parallel's replacement strings to fill in (`_replace`).

    No input is ever run as code. In plain arguments (a command given as separate words)
    a value goes in as it is: no shell sees it. In shell code -- the script of ``--shell``,
    or the ``-c`` argument of a shell in the command (``sh -c 'echo {}'``, ``bash -ec ...``,
    also after ``env``, ``timeout`` and such) -- it is shell-quoted for where it stands, so
    that the shell sees exactly the value as one word, whether it stands bare, in "..." or
    in '...'; a place where that cannot be done is refused (`UsageError`), as is a
    replacement string that is not supported. A command without any replacement string
    gets the job's arguments added at its end, as GNU parallel adds them.
    """

    __slots__ = ("_by_count", "_parsed", "_parts", "_shell", "_words", "executable",
                 "program_varies")  # fmt: skip

    def __init__(
        self,
        words: list[str],
        shell: bool,
        names: Names = DEFAULT_NAMES,
        each: bool = False,
        append: bool = True,
    ) -> None:
        """``each``: ``-N``'s context replace (see `repeat_contexts`). ``append``: add the
        arguments to words without any replacement string (not to a tag)."""
        check_perl(words)
        parsed = [parse(word, names) for word in words]
        if append and not any(isinstance(p, Field) for pieces in parsed for p in pieces):
            parsed.append([APPENDED])  # (GNU parallel adds {} where there is none at all)
        self._words, self._parsed, self._shell = words, parsed, shell
        # -N: the parts for each number of arguments, made once (None: the same for all).
        self._by_count: dict[int, list[str | _Pieces]] | None = {} if each else None
        self._parts = self._make(1)
        if each:  # what -N could refuse, now rather than at a job
            try:
                self._make(3, repeated=True)
            except UsageError:
                raise UsageError(
                    "-N repeats a word with {} once per argument, and in this shell code "
                    f"the copies would not be quoted alike: {' '.join(words)!r} (quote "
                    "each such word whole, or give -n)"
                ) from None
        # The program, looked up in PATH once rather than for every job (None: it varies).
        self.program_varies = not shell and not isinstance(self._parts[0], str)
        self.executable = "/bin/sh" if shell else None
        if not shell and not self.program_varies:
            self.executable = shutil.which(words[0])

    def _make(self, count: int, repeated: bool = False) -> list[str | _Pieces]:
        """The parts for a job of ``count`` arguments."""
        each = None if self._by_count is None else count
        if not self._shell:
            return _word_parts(self._words, self._parsed, each, repeated)
        script: list[str | Field] = []
        for i, pieces in enumerate(self._parsed):
            script += [" ", *pieces] if i else pieces
        copies = [script] if each is None else repeat_contexts(script, each)
        return [_in_shell_code(copies, repeated)]

    def argv(self, seq: int, slot: int, args: Sequence[str]) -> list[str]:
        """The command for job number ``seq`` in job slot ``slot``, with ``args`` (none
        with ``-n 0``: then ``{}`` gives no word, and ``[{}]`` gives ``[]``, as in GNU
        parallel)."""
        words = self.words(seq, slot, args)
        if self._shell:
            return ["/bin/sh", "-c", words[0]]
        # No word left ({2} alone, of one argument): an empty command line, which does
        # nothing and succeeds, as in GNU parallel.
        return words or ["/bin/sh", "-c", ""]

    def words(self, seq: int, slot: int, args: Sequence[str], shown: bool = False) -> list[str]:
        """The words filled in for a job (with ``--shell``, the script). ``shown``: each
        word quoted for a shell line, plain arguments as GNU parallel shows them."""
        by_count, parts = self._by_count, self._parts
        if by_count is not None:
            count = len(args)
            parts = by_count.get(count) or by_count.setdefault(count, self._make(count))
        words: list[str] = []
        for part in parts:
            if isinstance(part, str):
                words.append(shlex.quote(part) if shown else part)
            elif shown and _shown_as_parallel(part):
                words += _fill(part, seq, slot, args, shown)
            elif shown:  # (shell code, or text that a shell would read: quoted whole)
                words += map(shlex.quote, _fill(part, seq, slot, args))
            else:
                words += _fill(part, seq, slot, args)
        return words

    def display(self, argv: list[str], seq: int, slot: int, args: Sequence[str]) -> str:
        """The command of a job (``argv``, that of job ``seq`` in ``slot`` with ``args``) as
        a shell line, as GNU parallel shows it: the script itself with ``--shell``; else
        each input quoted where it stands (``x'a b'.png``)."""
        if self._shell:
            return argv[2]
        words = self.words(seq, slot, args, shown=True)
        return " ".join(words) if words else shlex.join(argv)
