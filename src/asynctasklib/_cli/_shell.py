"""Where each replacement string stands in POSIX shell code, and how its value goes there.

A small scanner of shell quoting follows the script to each field: unquoted (in the script
or in a ``$(...)``), inside "..." or inside '...'. There the value is put in single quotes,
closing and reopening the quote around it, so that it is one literal word whatever
surrounds it. Where that cannot be made safe (backquotes, ``$'...'``, ``${...}``,
arithmetic, ``[[ ... ]]``, a comment, after a here-document, right after ``$`` or a
backslash) or the scanner cannot be sure of the context, the command is refused. A number
(``{#}``, ``{%}``: digits) is safe anywhere but right after ``$``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ._errors import UsageError

# How a value goes into a word: as it is (a plain argument), or shell-quoted for where it
# stands in shell code: unquoted, inside "...", inside '...'.
RAW, PLAIN, DOUBLE, SINGLE = range(4)

# Where an input cannot be placed safely, whatever the quotes: (context, why).
_REFUSED_IN: Final = (
    ("comment", "in a comment"),
    ("bq", "inside backquotes (use $(...))"),
    ("ansi", "inside $'...'"),
    ("param", "inside ${...}"),
    ("arith", "inside arithmetic"),
    ("arithb", "inside arithmetic"),
    ("test", "inside [[ ... ]] (bash runs $(...) in an -eq operand; use [ ... ])"),
)


def shell_fields(
    script: str,
    spans: Sequence[tuple[int, int, bool]],
    same_at: Sequence[tuple[int, int]] = (),
) -> list[int]:
    """How the value of each field goes into shell code (PLAIN, DOUBLE or SINGLE; RAW for
    a number): the fields are ``spans`` of ``script``, (start, end, whether it carries
    input), in order. At both positions of each pair of ``same_at`` the scanner must be in
    the same context (two copies of a text that ``-N`` repeats then read alike, and so do
    any more copies).

    Raises `UsageError` where one cannot be placed safely.
    """
    scanner = _Scanner(script, spans, {at for pair in same_at for at in pair})
    found = scanner.scan()
    for first, second in same_at:
        state = scanner.states.get(first)
        if state is None or state != scanner.states.get(second):
            raise UsageError(f"the copies of a word would read differently: {script!r}")
    return found


class _Frame:
    """A context the scanner is in, and how deeply its own brackets are nested."""

    __slots__ = ("depth", "kind")

    def __init__(self, kind: str, depth: int = 0) -> None:
        self.kind = kind
        self.depth = depth


class _Scanner:
    """One pass over a script, a character or a construct at a time.

    ``stack`` holds the contexts, the innermost last. "cmd" is shell code (the script, or
    inside $(...), its depth counting nested parentheses); "dq" is "...", "sq" '...',
    "ansi" $'...', "bq" `...`, "param" ${...}, "arith" $((...)) or ((...)), "arithb"
    $[...], "comment", and "test" [[ ... ]] (shell code too).
    """

    def __init__(
        self, script: str, spans: Sequence[tuple[int, int, bool]], marks: set[int]
    ) -> None:
        self.script = script
        self.marks = marks  # where to note the context (`state`)
        self.states: dict[int, tuple[object, ...]] = {}
        self.fields = {start: (end, is_input) for start, end, is_input in spans}
        self.found: list[int] = []
        self.stack = [_Frame("cmd")]
        self.i = 0
        self.word_start = True  # at the start of a word (where # starts a comment)
        self.dollar = -1  # the position of the last unescaped $ that started nothing
        self.doubt: str | None = None  # once set, no later {} can be placed

    def scan(self) -> list[int]:
        n = len(self.script)
        while self.i < n:
            if self.i in self.marks:
                self.states[self.i] = self.state()
            self._step()
        if len(self.found) != len(self.fields):
            # A field was stepped over: right after a backslash inside backquotes.
            raise UsageError(f"cannot place the input in shell code: {self.script!r}")
        return self.found

    def state(self) -> tuple[object, ...]:
        """What decides how the scanner reads what comes next (but ``$`` just before)."""
        frames = tuple((frame.kind, frame.depth) for frame in self.stack)
        return frames, self.word_start, self.doubt

    def _step(self) -> None:
        """Scan what starts at ``i``: a field, or a character in its context."""
        kind = self.stack[-1].kind
        c = self.script[self.i]
        if self.i in self.fields:
            self._field(self.i, None)
            self.word_start = False
        elif kind == "sq":
            self._quoted(c, "'")
        elif kind == "comment":
            self._comment(c)
        elif c == "\\":
            self._backslash(kind)
        elif kind == "bq":
            self._quoted(c, "`")
        elif kind == "ansi":
            self._quoted(c, "'")
        elif c == "$":
            self._dollar(kind)
        elif c == "`":
            self._push("bq")
            self.i += 1
        elif kind in ("arith", "arithb"):
            self._arithmetic(c)
        elif kind == "param":
            self._parameter(c)
        elif kind == "dq":
            self._quoted(c, '"')
        else:
            self._code(kind, c)

    # -- the fields ----------------------------------------------------------------------

    def _field(self, at: int, where: str | None) -> None:
        """Place the field at ``at``, or refuse it; ``where`` is a reason known already."""
        end, is_input = self.fields[at]
        where = self._refusal(at, is_input, where)
        if where is not None:
            raise UsageError(
                f"cannot put the input safely in shell code {where}: {self.script!r} "
                "(put {} where the shell sees it unquoted, or in \"...\" or '...')"
            )
        kind = self.stack[-1].kind
        how = PLAIN if kind == "cmd" else DOUBLE if kind == "dq" else SINGLE
        self.found.append(how if is_input else RAW)
        self.i = end

    def _refusal(self, at: int, is_input: bool, where: str | None) -> str | None:
        """Why the field at ``at`` cannot be placed, or None if it can."""
        if self.dollar >= 0 and self.dollar == at - 1:
            return "right after $"
        if not is_input:
            return None  # digits are literal in any other context
        if self.doubt is not None:
            return self.doubt
        if where is None:
            kinds = {frame.kind for frame in self.stack}
            where = next((why for kind, why in _REFUSED_IN if kind in kinds), None)
        return where

    # -- contexts ------------------------------------------------------------------------

    def _push(self, kind: str, depth: int = 0) -> None:
        self.stack.append(_Frame(kind, depth))

    def _close_bracket(self, frame: _Frame) -> None:
        frame.depth -= 1
        if frame.depth == 0:
            self.stack.pop()

    def _quoted(self, c: str, close: str) -> None:
        """Inside quotes or backquotes: only the closing one matters."""
        if c == close:
            self.stack.pop()
        self.i += 1

    def _comment(self, c: str) -> None:
        if c == "\n":
            self.stack.pop()
            self.word_start = True
        self.i += 1

    def _backslash(self, kind: str) -> None:
        """A backslash escapes the next character (inside "..." only a few of them)."""
        after = self.script[self.i + 1 : self.i + 2]
        if self.i + 1 in self.fields and kind != "bq":
            self._field(self.i + 1, "right after a backslash")
        elif kind == "dq" and after not in ("$", "`", '"', "\\", "\n"):
            self.i += 1  # a backslash that stays
        else:
            if after == "\n" and kind != "bq":
                # A line continuation joins what is around it (even "$" and "("): too
                # easy to misread, so what comes after is refused.
                self.doubt = "after a backslash-newline"
            self.i += 2
        self.word_start = False

    def _dollar(self, kind: str) -> None:
        """A ``$``: what it starts, if anything."""
        i = self.i
        if i + 1 in self.fields:  # ${} or ${#}: refused by _field
            self.dollar = i
            self.i += 1
            return
        nxt = self.script[i + 1 : i + 3]
        if nxt.startswith("'") and kind != "dq":
            self._push("ansi")
        elif nxt.startswith('"') and kind != "dq":
            self._push("dq")
        elif nxt == "((":
            self._push("arith", 2)
            self.i += 1
        elif nxt.startswith("("):
            self._push("cmd")
        elif nxt.startswith("{"):
            self._push("param", 1)
        elif nxt.startswith("["):
            self._push("arithb", 1)
        else:  # $x, $#, a lone $: it starts nothing
            self.dollar = i
            self.i += 1
            self.word_start = False
            return
        self.i += 2
        self.word_start = self.stack[-1].kind == "cmd"

    def _arithmetic(self, c: str) -> None:
        """Inside $((...)), ((...)) or $[...]: its brackets are counted to find its end."""
        frame = self.stack[-1]
        opening, closing = ("(", ")") if frame.kind == "arith" else ("[", "]")
        if c in "'\"":
            self.doubt = "after quotes inside arithmetic"
        elif c == opening:
            frame.depth += 1
        elif c == closing:
            self._close_bracket(frame)
        self.i += 1

    def _parameter(self, c: str) -> None:
        """Inside ${...}: quotes open, braces nest."""
        frame = self.stack[-1]
        if c in "'\"":
            if self.stack[-2].kind == "dq":  # quotes in "${x:-'...'}": shells differ
                self.doubt = 'after quotes inside "${...}"'
            self._push("sq" if c == "'" else "dq")
        elif c == "{":
            frame.depth += 1
        elif c == "}":
            self._close_bracket(frame)
        self.i += 1

    # -- shell code ----------------------------------------------------------------------

    def _code(self, kind: str, c: str) -> None:
        """Shell code: "cmd", or "test" inside [[ ... ]]."""
        if self.word_start and self._test_brackets(kind):
            return
        if c == "'":
            self._push("sq")
        elif c == '"':
            self._push("dq")
        elif c == "#" and self.word_start:
            self._push("comment")
        elif c == "<":
            self._redirection()
        elif c == "(":
            self._open_paren()
        elif c == ")":
            self._close_paren(kind)
        elif self.word_start and len(self.stack) > 1 and self._at_word("case"):
            # case patterns end with an unmatched ")", which would end $(...) here.
            self.doubt = "after a case statement inside $(...)"
        self.i += 1
        self.word_start = c in " \t\n;&|()<>"

    def _test_brackets(self, kind: str) -> bool:
        """At the start of a word: ``[[ `` opens a test, ``]]`` closes one (True if so)."""
        script, i = self.script, self.i
        if script.startswith(("[[ ", "[[\t", "[[\n"), i):
            self._push("test")  # bash/zsh [[ ... ]]: -eq and the like evaluate operands as code
            self.i += 2
            return True
        if kind == "test" and script.startswith("]]", i):
            self.stack.pop()
            self.i += 2
            self.word_start = False
            return True
        return False

    def _at_word(self, word: str) -> bool:
        """Whether ``word`` stands at ``i``, followed by a blank or the end."""
        end = self.i + len(word)
        after = self.script[end : end + 1]
        return self.script.startswith(word, self.i) and after in ("", " ", "\t", "\n")

    def _redirection(self) -> None:
        """``<<<`` is a here-string (an ordinary word follows); ``<<`` a here-document."""
        if self.script.startswith("<<<", self.i):
            self.i += 2
        elif self.script.startswith("<<", self.i):
            self.doubt = "after a here-document (<<)"

    def _open_paren(self) -> None:
        if self.word_start and self.script.startswith("((", self.i):
            self._push("arith", 2)
            self.i += 1
        else:
            self.stack[-1].depth += 1

    def _close_paren(self, kind: str) -> None:
        frame = self.stack[-1]
        if frame.depth > 0:
            frame.depth -= 1
        elif len(self.stack) > 1 and kind == "cmd":
            self.stack.pop()  # the end of $(...)
