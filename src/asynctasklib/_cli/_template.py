"""The command template: ``{}`` (the input) and ``{#}`` (the job number), filled per job."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Sequence
from typing import Final

from ._errors import UsageError
from ._shell import DOUBLE, FIELD, PLAIN, RAW, SEQ, SINGLE, shell_fields

# GNU parallel's replacement strings (without --plus): {} {.} {/} {//} {/.} {#} {%}, their
# positional forms ({N}, {N.}, {-N/}..., spaces allowed before the suffix) and {= perl =}.
# Only {} and {#} are implemented; the rest are refused, never passed on literally. Other
# braces ({a,b}, ${HOME}, awk's {print}) are not replacement strings, for parallel either.
_REPLACEMENT = re.compile(r"\{(?:-?\d+\s*)?(?:|\.|/|//|/\.|#|%)\}")
_PERL_REPLACEMENT = re.compile(r"\{=.*?=\}", re.DOTALL)  # (parallel joins words to find it)
PARALLEL_SEPARATORS: Final = frozenset({"::::", ":::+", "::::+"})

# Programs whose -c argument is POSIX shell code: the input is quoted for the shell there.
_POSIX_SHELLS: Final = frozenset(
    {"sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "lksh", "pdksh",
     "oksh", "yash", "posh"}
)  # fmt: skip
_OTHER_SHELLS: Final = frozenset({"fish", "csh", "tcsh"})  # other quoting rules: refused

_REOPEN: Final = {PLAIN: "", DOUBLE: '"', SINGLE: "'"}  # close the quote, value, reopen
_RESERVED: Final = frozenset(
    {"case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for", "foreach",
     "function", "if", "in", "nocorrect", "noglob", "repeat", "select", "then", "time",
     "until", "while"}
)  # fmt: skip
_BARE = re.compile(r"[A-Za-z0-9_@%+:./-]+")  # needs no quotes (shlex's set without = and ,)


def sh_quote(value: str) -> str:
    """``value`` as one shell word, literally, in any POSIX shell: in single quotes, each
    ``'`` as ``'"'"'``. Bare only when nothing could read it as syntax: not a reserved word
    (if, while...), no ``=`` (an assignment; zsh's =cmd), no ``,`` (brace expansion)."""
    if _BARE.fullmatch(value) and value not in _RESERVED:
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _check_replacements(words: list[str]) -> None:
    """Refuse GNU parallel's syntax that is not supported (rather than misread it)."""
    for word in words:
        for match in _REPLACEMENT.finditer(word):
            if match.group() not in ("{}", "{#}"):
                raise UsageError(
                    f"the replacement string {match.group()} is not supported "
                    "(only {} and {#} are)"
                )
    perl = _PERL_REPLACEMENT.search(" ".join(words))
    if perl is not None:
        raise UsageError(
            f"the replacement string {perl.group()} is not supported (only {{}} and {{#}} are)"
        )


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


def _split(word: str, fields: list[tuple[int, int, int]] | None) -> list[str | int]:
    """``word`` as literal pieces and the codes of what goes between them (``fields``
    None: a plain argument, where the input goes in as it is)."""
    if fields is None:
        fields = [(m.start(), m.end(), SEQ if m.group() == "{#}" else RAW)
                  for m in FIELD.finditer(word)]  # fmt: skip
    parts: list[str | int] = []
    end = 0
    for start, stop, how in fields:
        parts += [word[end:start], how]
        end = stop
    parts.append(word[end:])
    return parts


class Template:
    """The command with ``{}`` (the input) and ``{#}`` (the job number) to fill in.

    No input is ever run as code. In plain arguments (a command given as separate words)
    the input goes in as it is: no shell sees it. In shell code -- the script of
    ``--shell``, or the ``-c`` argument of a shell in the command (``sh -c 'echo {}'``,
    ``bash -ec ...``, also after ``env``, ``timeout`` and such) -- it is shell-quoted for
    where ``{}`` stands, so that the shell sees exactly the input as one word, whether
    ``{}`` is bare, in "..." or in '...'; a place where that cannot be done is refused
    (`UsageError`). Any other GNU parallel replacement string is refused too.
    """

    __slots__ = ("_has_input", "_parts", "_shell", "executable")

    def __init__(self, words: list[str], shell: bool) -> None:
        _check_replacements(words)
        self._parts: list[str | list[str | int]]  # a word as it is, or in pieces (_split)
        self._shell = shell
        self._has_input = any("{}" in w for w in words)
        if shell:
            script = " ".join(words)
            if not self._has_input:  # the input is appended, as a word of the script
                script += " {}"
                self._has_input = True
            self._parts = [_split(script, shell_fields(script))]
        else:
            self._parts = self._word_parts(words)
        # The program, looked up in PATH once rather than for every job (None: it varies).
        self.executable = "/bin/sh" if shell else None
        if not shell and not FIELD.search(words[0]):
            self.executable = shutil.which(words[0])

    @staticmethod
    def _word_parts(words: list[str]) -> list[str | list[str | int]]:
        """Each word as it is, or in pieces: shell-quoted in a shell's ``-c`` word."""
        scripts = _shell_scripts(words)
        parts: list[str | list[str | int]] = []
        for i, word in enumerate(words):
            shell_name = scripts.get(i)
            if "{" not in word:
                parts.append(word)
            elif shell_name is None:
                parts.append(_split(word, None))
            elif shell_name in _OTHER_SHELLS and "{}" in word:
                raise UsageError(
                    f"cannot quote the input for {shell_name}'s -c code: {word!r} (pass "
                    f"it as an argument instead: {shell_name} -c '...' {{}})"
                )
            else:
                parts.append(_split(word, shell_fields(word)))
        return parts

    def argv(self, seq: int, slot: int, args: Sequence[str]) -> list[str]:
        """The job's argument list: ``{}`` is ``args`` joined by spaces (in shell code
        each quoted on its own); with no ``{}``, each arg is appended as a word."""
        number = str(seq)
        value = " ".join(args)
        quoted: str | None = None
        words: list[str] = []
        for parts in self._parts:
            if isinstance(parts, str):
                words.append(parts)
                continue
            pieces: list[str] = []
            for part in parts:
                if isinstance(part, str):
                    pieces.append(part)
                elif part == SEQ:
                    pieces.append(number)
                elif part == RAW:
                    pieces.append(value)
                else:
                    if quoted is None:
                        quoted = " ".join(map(sh_quote, args))
                    reopen = _REOPEN[part]
                    pieces += [reopen, quoted, reopen]
            words.append("".join(pieces))
        if not self._has_input:
            words += args
        return ["/bin/sh", "-c", words[0]] if self._shell else words

    def display(self, argv: list[str]) -> str:
        """The command as a shell line (the script itself with ``--shell``)."""
        return argv[2] if self._shell else shlex.join(argv)
