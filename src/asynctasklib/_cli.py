"""``asynctasklib run``: run a command once per input, on a `WorkerPool`.

Each job is a subprocess in a session (so a process group) of its own, run by an
``async def`` task function; the pool gives the concurrency limit, retries with backoff,
per-attempt timeouts and (with ``--halt-on-error``) error groups, and its hooks feed the
output, the ``--json`` events, the ``--joblog`` and the progress view.

A job that times out, is cancelled, or leaves processes behind when it exits has its
whole process group killed: SIGTERM, then SIGKILL after ``--grace`` seconds. On Linux the
runner is a child subreaper, so processes orphaned by a job are reparented to it and
reaped here rather than left as zombies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import functools
import json
import os
import re
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Final, cast

from . import __version__
from .task import Definition, ExponentialBackoff, Run, StateHooks, TaskTimeoutError
from .workflow import WorkerPool

if TYPE_CHECKING:
    from ._progress import ProgressView

__all__ = ["JobFailedError", "main"]

PROG: Final = "asynctasklib run"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143  # SIGTERM
EXIT_BROKEN_PIPE: Final = 141  # our stdout was closed (SIGPIPE's code)

DEFAULT_GRACE: Final = 2.0
_KILL_WAIT: Final = 5.0  # after SIGKILL, how long to wait for the group to be gone
_PR_SET_CHILD_SUBREAPER: Final = 36
_REAP_EVERY: Final = 0.5  # seconds between reaps of orphans where SIGCHLD is the loop's own

JOBLOG_HEADER: Final = "seq\tinput\texit_code\tattempts\tstart_time\tduration\tsignal\n"

_FIELD = re.compile(r"\{#?\}")
_NOT_YET: Final[Any] = object()  # get_nowait(): no value ready yet


class JobFailedError(Exception):
    """A job's command exited with a non-zero code or was killed by a signal."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode
        super().__init__(_describe_returncode(returncode))


class _CannotStartError(Exception):
    """The command could not be started (not found, not executable): not retried."""


class _UsageError(Exception):
    pass


class _InputError(Exception):
    """An input the run cannot take (a line too long to be an argument): exit status 2."""


def _describe_returncode(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"killed by {name}"
    return f"exit code {rc}"


# -- options -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    command: list[str]
    inputs: list[str] | None  # from ::: (None: read --arg-file or stdin)
    arg_file: str | None
    jobs: int
    retries: int
    backoff: float | Callable[[int], float]
    timeout: float | None
    delay: float
    grace: float
    halt_on_error: bool
    keep_order: bool
    joblog: str | None
    json: bool
    dry_run: bool
    shell: bool
    progress: bool | None


def _number(kind: Callable[[str], Any], low: float, strict: bool) -> Callable[[str], Any]:
    bound = f"> {low:g}" if strict else f">= {low:g}"
    noun = "an integer" if kind is int else "a number of seconds"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if value != value or value in (float("inf"),) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    return parse


def _jobs(text: str) -> int:
    """-j N; GNU parallel's forms relative to the CPU count are refused, not misread."""
    if text.startswith(("+", "-")) or text.endswith("%"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: GNU parallel's -j +N, -N and N% are not supported (give a number of "
            "jobs at once, >= 1)"
        )
    value: int = _number(int, 1, strict=False)(text)
    return value


_EPILOG = """\
inputs: one job per input, taken from `::: a b c` after the command, from --arg-file, or
from standard input (one per line). In the command, {} is replaced by the input and {#} by
the job number (1-based); without {} the input is appended as the last argument. GNU
parallel's other replacement strings ({.} {/} {//} {/.} {%} {1} {= =}...), :::: and :::+
are not supported and refused.

no input ever runs as code: as a plain argument it goes in as it is; in shell code (the
--shell script, or the -c script of sh, bash, dash, zsh, ksh... in the command) it is
quoted to be exactly one word wherever {} stands: bare, in "..." or in '...'. Where that
cannot be done (backquotes, $'...', ${...}, arithmetic, [[ ]], comments, here-documents)
the command is refused. A script that evaluates its data (eval, sh -c "$1") is its own.

a failed job's stderr is shown, then a line: which job failed and why, with its input.

backoff: POLICY[:BASE], POLICY one of exp (BASE, 2*BASE, 4*BASE... up to 30 s, with
jitter; the default, BASE 0.1), const (always BASE seconds), none (retry at once); a bare
number means const.

exit status: 0 all jobs succeeded, 1 some failed (or were cancelled by --halt-on-error),
2 bad usage, 130 interrupted (Ctrl-C; 143 for SIGTERM), 141 standard output was closed.
Ctrl-C once: start no more jobs, let the running ones finish; twice: cancel them (their
process groups get SIGTERM, then SIGKILL after --grace seconds); three times: SIGKILL now.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [OPTIONS] [--] COMMAND [ARGS...] [::: INPUT...]",
        description="Run COMMAND once per input, in parallel, with retries, timeouts "
        "and a live progress view.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    seconds = _number(float, 0, strict=False)
    p.add_argument(
        "-j", "--jobs", type=_jobs, metavar="N",
        help="jobs to run at once (default: the CPU count)",
    )  # fmt: skip
    p.add_argument(
        "-a", "--arg-file", metavar="FILE", help="read inputs from FILE, one per line ('-': stdin)"
    )
    p.add_argument(
        "--retries", type=_number(int, 0, strict=False), default=0, metavar="N",
        help="retry a failed or timed-out job up to N times (default: 0)",
    )  # fmt: skip
    p.add_argument(
        "--backoff", default="exp", metavar="POLICY[:BASE]",
        help="wait before each retry (default: exp:0.1); see below",
    )  # fmt: skip
    p.add_argument("--backoff-base", type=seconds, metavar="SECONDS", help="the BASE of --backoff")
    p.add_argument(
        "--timeout", type=_number(float, 0, strict=True), metavar="SECONDS",
        help="kill an attempt that runs longer than this (default: no limit)",
    )  # fmt: skip
    p.add_argument(
        "--delay", type=seconds, default=0.0, metavar="SECONDS",
        help="wait this long between job starts",
    )  # fmt: skip
    p.add_argument(
        "--grace", type=seconds, default=DEFAULT_GRACE, metavar="SECONDS",
        help=f"SIGKILL a job's process group this long after SIGTERM (default: {DEFAULT_GRACE:g})",
    )  # fmt: skip
    p.add_argument(
        "--halt-on-error", action="store_true",
        help="the first job that fails cancels the others and stops the run",
    )  # fmt: skip
    p.add_argument(
        "-k", "--keep-order", action="store_true",
        help="print the jobs' output in input order (default: as they finish; --json "
        "events always come as they happen)",
    )  # fmt: skip
    p.add_argument(
        "--joblog", metavar="FILE",
        help="write one tab-separated row per job: seq, input, exit code, attempts, "
        "start time, duration, signal",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true",
        help="print one JSON object per job lifecycle event on stdout instead of job output",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--shell", action="store_true",
        help="run COMMAND through /bin/sh -c, the input shell-quoted",
    )  # fmt: skip
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="show a live progress view on stderr (default: when stderr is a terminal)",
    )  # fmt: skip
    p.add_argument("--version", action="version", version=f"asynctasklib {__version__}")
    p.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def _parse_backoff(spec: str, base: float | None) -> float | Callable[[int], float]:
    policy, _, value = spec.partition(":")
    policy = policy.strip().lower()
    if value:
        try:
            parsed = float(value)
        except ValueError:
            raise _UsageError(f"--backoff: {value!r} is not a number of seconds") from None
        if not parsed >= 0 or parsed == float("inf"):
            raise _UsageError(f"--backoff: the base must be >= 0, got {value!r}")
        base = parsed if base is None else base
    if policy in ("exp", "exponential"):
        return ExponentialBackoff(initial=0.1 if base is None else base)
    if policy in ("const", "constant", "fixed"):
        return 1.0 if base is None else base
    if policy in ("none", "0"):
        return 0.0
    try:
        number = float(policy)
    except ValueError:
        raise _UsageError(
            f"--backoff: unknown policy {policy!r} (expected exp, const or none)"
        ) from None
    if not number >= 0 or number == float("inf"):
        raise _UsageError(f"--backoff: must be >= 0, got {spec!r}")
    return number if base is None else base


def _parse(argv: list[str]) -> _Options:
    ns = _parser().parse_args(argv)
    words: list[str] = list(ns.command)
    if words and words[0] == "--":
        del words[0]
    inputs: list[str] | None = None
    for word in words:
        if word in _PARALLEL_SEPARATORS:
            raise _UsageError(
                f"GNU parallel's {word} is not supported (inputs: ::: a b c, --arg-file FILE "
                "or standard input)"
            )
    if ":::" in words:
        cut = words.index(":::")
        words, inputs = words[:cut], words[cut + 1 :]
        if ":::" in inputs:
            raise _UsageError("only one ::: group of inputs is supported")
    if not words:
        raise _UsageError("no command given (usage: asynctasklib run [OPTIONS] -- COMMAND ...)")
    if inputs is not None and ns.arg_file is not None:
        raise _UsageError("give inputs either after ::: or with --arg-file, not both")
    if not ns.shell and not _FIELD.search(words[0]) and shutil.which(words[0]) is None:
        hint = " (a command line in one string needs --shell)" if " " in words[0] else ""
        raise _UsageError(f"command not found: {_show(words[0])}{hint}")
    _Template(words, ns.shell)  # a replacement string or quoting refused: now, not per job
    return _Options(
        command=words,
        inputs=inputs,
        arg_file=ns.arg_file,
        jobs=ns.jobs if ns.jobs is not None else (os.cpu_count() or 1),
        retries=ns.retries,
        backoff=_parse_backoff(ns.backoff, ns.backoff_base),
        timeout=ns.timeout,
        delay=ns.delay,
        grace=ns.grace,
        halt_on_error=ns.halt_on_error,
        keep_order=ns.keep_order,
        joblog=ns.joblog,
        json=ns.json,
        dry_run=ns.dry_run,
        shell=ns.shell,
        progress=ns.progress,
    )


# -- commands --------------------------------------------------------------------------

# GNU parallel's replacement strings (without --plus): {} {.} {/} {//} {/.} {#} {%}, their
# positional forms ({N}, {N.}, {-N/}..., spaces allowed before the suffix) and {= perl =}.
# Only {} and {#} are implemented; the rest are refused, never passed on literally. Other
# braces ({a,b}, ${HOME}, awk's {print}) are not replacement strings, for parallel either.
_REPLACEMENT = re.compile(r"\{(?:-?\d+\s*)?(?:|\.|/|//|/\.|#|%)\}")
_PERL_REPLACEMENT = re.compile(r"\{=.*?=\}", re.DOTALL)  # (parallel joins words to find it)
_PARALLEL_SEPARATORS: Final = frozenset({"::::", ":::+", "::::+"})

# Programs whose -c argument is POSIX shell code: the input is quoted for the shell there.
_POSIX_SHELLS: Final = frozenset(
    {"sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "lksh", "pdksh",
     "oksh", "yash", "posh"}
)  # fmt: skip
_OTHER_SHELLS: Final = frozenset({"fish", "csh", "tcsh"})  # other quoting rules: refused

# How an input goes into a word: as it is (a plain argument), or shell-quoted for where it
# stands in shell code: unquoted, inside "...", inside '...'. Then the job number.
_RAW, _PLAIN, _DOUBLE, _SINGLE, _SEQ = range(5)
_REOPEN: Final = {_PLAIN: "", _DOUBLE: '"', _SINGLE: "'"}  # close the quote, value, reopen
_RESERVED: Final = frozenset(
    {"case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for", "foreach",
     "function", "if", "in", "nocorrect", "noglob", "repeat", "select", "then", "time",
     "until", "while"}
)  # fmt: skip
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
_BARE = re.compile(r"[A-Za-z0-9_@%+:./-]+")  # needs no quotes (shlex's set without = and ,)


def _sh_quote(value: str) -> str:
    """``value`` as one shell word, literally, in any POSIX shell: in single quotes, each
    ``'`` as ``'"'"'``. Bare only when nothing could read it as syntax: not a reserved word
    (if, while...), no ``=`` (an assignment; zsh's =cmd), no ``,`` (brace expansion)."""
    if _BARE.fullmatch(value) and value not in _RESERVED:
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _show(text: str) -> str:
    """``text`` for a message: shell-quoted, bytes that are not UTF-8 as ``\\xNN``, and
    control characters escaped (a message stays on one line)."""
    text = os.fsencode(text).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return shlex.quote(text)
    return repr(text)


def _check_replacements(words: list[str]) -> None:
    """Refuse GNU parallel's syntax that is not supported (rather than misread it)."""
    for word in words:
        for match in _REPLACEMENT.finditer(word):
            if match.group() not in ("{}", "{#}"):
                raise _UsageError(
                    f"the replacement string {match.group()} is not supported "
                    "(only {} and {#} are)"
                )
    perl = _PERL_REPLACEMENT.search(" ".join(words))
    if perl is not None:
        raise _UsageError(
            f"the replacement string {perl.group()} is not supported (only {{}} and {{#}} are)"
        )


def _shell_script_index(words: list[str], i: int) -> int | None:
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


def _shell_fields(script: str) -> list[tuple[int, int, int]]:
    """Each ``{}`` and ``{#}`` in shell code, as (start, end, how the input goes there).

    A small tokenizer of POSIX shell quoting follows the script to each ``{}``: unquoted
    (in the script or in a ``$(...)``), inside "..." or inside '...'; there the value is
    put in single quotes, closing and reopening the quote around it, so that it is one
    literal word whatever surrounds it. Where that cannot be made safe (backquotes,
    ``$'...'``, ``${...}``, arithmetic, ``[[ ... ]]``, a comment, after a here-document,
    right after ``$`` or a backslash) or the tokenizer cannot be sure of the context, the
    command is refused. ``{#}`` (digits) is safe anywhere but right after ``$``.
    """
    fields = {m.start(): m for m in _FIELD.finditer(script)}
    found: list[tuple[int, int, int]] = []
    # The stack of contexts: [kind, depth]. "cmd" is shell code (the script, or inside
    # $(...), depth counting nested parentheses); "dq" "...", "sq" '...', "ansi" $'...',
    # "bq" `...`, "param" ${...}, "arith" $((...)) or ((...)), "arithb" $[...], "comment",
    # "test" [[ ... ]] (shell code too).
    stack: list[list[Any]] = [["cmd", 0]]
    word_start = True  # at the start of a word (where # starts a comment)
    dollar = -1  # the position of the last unescaped $ that started nothing
    doubt: str | None = None  # once set, no later placeholder can be placed
    n = len(script)
    i = 0

    def field(at: int, where: str | None) -> int:
        match = fields[at]
        is_input = match.group() == "{}"
        kinds = {frame[0] for frame in stack}
        for kind, reason in _REFUSED_IN:
            if where is None and kind in kinds:
                where = reason
        if dollar == at - 1 and dollar >= 0:
            where = "right after $"
        elif not is_input:
            where = None  # digits are literal in any other context
        elif doubt is not None:
            where = doubt
        if where is not None:
            raise _UsageError(
                f"cannot put the input safely in shell code {where}: {script!r} "
                "(put {} where the shell sees it unquoted, or in \"...\" or '...')"
            )
        kind = stack[-1][0]
        how = _PLAIN if kind == "cmd" else _DOUBLE if kind == "dq" else _SINGLE
        found.append((at, match.end(), how if is_input else _SEQ))
        return match.end()

    def push(kind: str, depth: int = 0) -> None:
        stack.append([kind, depth])

    while i < n:
        frame = stack[-1]
        kind = frame[0]
        c = script[i]
        if i in fields:
            i = field(i, None)
            word_start = False
            continue
        if kind == "sq":
            if c == "'":
                stack.pop()
            i += 1
            continue
        if kind == "comment":
            if c == "\n":
                stack.pop()
                word_start = True
            i += 1
            continue
        if c == "\\":
            if i + 1 in fields and kind != "bq":
                i = field(i + 1, "right after a backslash")
            elif kind == "dq" and script[i + 1 : i + 2] not in ("$", "`", '"', "\\", "\n"):
                i += 1  # a backslash that stays
            else:
                if script[i + 1 : i + 2] == "\n" and kind != "bq":
                    # A line continuation joins what is around it (even "$" and "("):
                    # too easy to misread; what comes after is refused.
                    doubt = "after a backslash-newline"
                i += 2
            word_start = False
            continue
        if kind in ("bq", "ansi"):
            if c == ("`" if kind == "bq" else "'"):
                stack.pop()
            i += 1
            continue
        if c == "$":
            nxt = script[i + 1 : i + 3]
            if i + 1 in fields:  # ${} or ${#}: refused by field()
                dollar = i
                i += 1
                continue
            if nxt.startswith("'") and kind != "dq":
                push("ansi")
            elif nxt.startswith('"') and kind != "dq":
                push("dq")
            elif nxt == "((":
                push("arith", 2)
                i += 1
            elif nxt.startswith("("):
                push("cmd", 0)
            elif nxt.startswith("{"):
                push("param", 1)
            elif nxt.startswith("["):
                push("arithb", 1)
            else:
                dollar = i
                i += 1
                word_start = False
                continue
            i += 2
            word_start = stack[-1][0] == "cmd"
            continue
        if c == "`":
            push("bq")
            i += 1
            continue
        if kind in ("arith", "arithb"):
            if c in "'\"":
                doubt = "after quotes inside arithmetic"
            elif c == ("(" if kind == "arith" else "["):
                frame[1] += 1
            elif c == (")" if kind == "arith" else "]"):
                frame[1] -= 1
                if frame[1] == 0:
                    stack.pop()
            i += 1
            continue
        if kind == "param":
            outer = stack[-2][0]
            if c in "'\"":
                if outer == "dq":  # quotes in "${x:-'...'}": shells differ
                    doubt = 'after quotes inside "${...}"'
                push("sq" if c == "'" else "dq")
            elif c == "{":
                frame[1] += 1
            elif c == "}":
                frame[1] -= 1
                if frame[1] == 0:
                    stack.pop()
            i += 1
            continue
        if kind == "dq":
            if c == '"':
                stack.pop()
            i += 1
            continue
        # kind == "cmd" (or "test"): shell code
        if word_start and script.startswith(("[[ ", "[[\t", "[[\n"), i):
            push("test")  # bash/zsh [[ ... ]]: -eq and the like evaluate operands as code
            i += 2
            continue
        if kind == "test" and word_start and script.startswith("]]", i):
            stack.pop()
            i += 2
            word_start = False
            continue
        if c == "'":
            push("sq")
        elif c == '"':
            push("dq")
        elif c == "#" and word_start:
            push("comment")
        elif c == "<" and script.startswith("<<", i):
            if script.startswith("<<<", i):
                i += 2  # a here-string: an ordinary word follows
            else:
                doubt = "after a here-document (<<)"
        elif c == "(":
            if word_start and script.startswith("((", i):
                push("arith", 2)
                i += 1
            else:
                frame[1] += 1
        elif c == ")":
            if frame[1] > 0:
                frame[1] -= 1
            elif len(stack) > 1 and kind == "cmd":
                stack.pop()  # the end of $(...)
        elif (
            word_start
            and len(stack) > 1
            and script.startswith("case", i)
            and script[i + 4 : i + 5] in ("", " ", "\t", "\n")
        ):
            # case patterns end with an unmatched ")", which would end $(...) here.
            doubt = "after a case statement inside $(...)"
        i += 1
        word_start = c in " \t\n;&|()<>"
    if len(found) != len(fields):  # pragma: no cover - every field is visited above
        raise _UsageError(f"cannot place the input in shell code: {script!r}")
    return found


class _Template:
    """The command with ``{}`` (the input) and ``{#}`` (the job number) to fill in.

    No input is ever run as code. In plain arguments (a command given as separate words)
    the input goes in as it is: no shell sees it. In shell code -- the script of
    ``--shell``, or the ``-c`` argument of a shell in the command (``sh -c 'echo {}'``,
    ``bash -ec ...``, also after ``env``, ``timeout`` and such) -- it is shell-quoted for
    where ``{}`` stands, so that the shell sees exactly the input as one word, whether
    ``{}`` is bare, in "..." or in '...'; a place where that cannot be done is refused
    (`_UsageError`). Any other GNU parallel replacement string is refused too.
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
            self._parts = [self._split(script, _shell_fields(script))]
        else:
            scripts: dict[int, str] = {}  # index of a shell's -c word: the shell's name
            for i, word in enumerate(words):
                name = os.path.basename(word)
                if name in _POSIX_SHELLS or name in _OTHER_SHELLS:
                    at = _shell_script_index(words, i)
                    if at is not None:
                        scripts[at] = name
            self._parts = []
            for i, word in enumerate(words):
                shell_name = scripts.get(i)
                if "{" not in word:
                    self._parts.append(word)
                elif shell_name is None:
                    self._parts.append(self._split(word, None))
                elif shell_name in _OTHER_SHELLS and "{}" in word:
                    raise _UsageError(
                        f"cannot quote the input for {shell_name}'s -c code: {word!r} (pass "
                        f"it as an argument instead: {shell_name} -c '...' {{}})"
                    )
                else:
                    self._parts.append(self._split(word, _shell_fields(word)))
        # The program, looked up in PATH once rather than for every job (None: it varies).
        self.executable = "/bin/sh" if shell else None
        if not shell and not _FIELD.search(words[0]):
            self.executable = shutil.which(words[0])

    @staticmethod
    def _split(word: str, fields: list[tuple[int, int, int]] | None) -> list[str | int]:
        """``word`` as literal pieces and the codes of what goes between them."""
        if fields is None:
            fields = [(m.start(), m.end(), _SEQ if m.group() == "{#}" else _RAW)
                      for m in _FIELD.finditer(word)]  # fmt: skip
        parts: list[str | int] = []
        end = 0
        for start, stop, how in fields:
            parts += [word[end:start], how]
            end = stop
        parts.append(word[end:])
        return parts

    def argv(self, seq: int, value: str) -> list[str]:
        number = str(seq)
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
                elif part == _SEQ:
                    pieces.append(number)
                elif part == _RAW:
                    pieces.append(value)
                else:
                    if quoted is None:
                        quoted = _sh_quote(value)
                    reopen = _REOPEN[part]
                    pieces += [reopen, quoted, reopen]
            words.append("".join(pieces))
        if not self._has_input:
            words.append(value)
        return ["/bin/sh", "-c", words[0]] if self._shell else words

    def display(self, argv: list[str]) -> str:
        """The command as a shell line (the script itself with ``--shell``)."""
        return argv[2] if self._shell else shlex.join(argv)


# -- inputs ----------------------------------------------------------------------------


class _Lines:
    """Input values from an iterator: ``await get()`` gives the next one, None at the end."""

    def __init__(self, values: Iterator[str], close: Callable[[], None] | None = None) -> None:
        self._values = values
        self._close = close
        self._error: Exception | None = None

    def get_nowait(self) -> Any:
        """The next value, None at the end, or ``_NOT_YET`` if none is ready (after an
        error: `get` raises it, so that the values taken before it still run)."""
        if self._error is not None:
            return _NOT_YET
        try:
            return next(self._values, None)
        except Exception as exc:
            self._error = exc
            return _NOT_YET

    async def get(self) -> str | None:
        value = self.get_nowait()
        if value is _NOT_YET:
            assert self._error is not None
            raise self._error
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


_MAX_ARG_STRLEN: Final = 131072  # Linux: the most bytes one argument takes, with its NUL


def _max_line() -> int:
    """The longest input line taken, in bytes: what one argument of a command can hold
    (131071 bytes; less if the system's whole argument limit, ARG_MAX, is smaller)."""
    try:
        arg_max = os.sysconf("SC_ARG_MAX")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no such sysconf
        arg_max = -1
    return min(arg_max if arg_max > 0 else _MAX_ARG_STRLEN, _MAX_ARG_STRLEN) - 1


MAX_LINE: Final = _max_line()


def _too_long(name: str, number: int) -> _InputError:
    return _InputError(
        f"{name}: line {number} is longer than {MAX_LINE} bytes, the most one argument "
        "of a command can hold; no more inputs are read"
    )


class _PipeLines(asyncio.Protocol):
    """Input lines from a pipe or terminal, read without blocking the event loop.

    Reading pauses while ``_HIGH`` lines or ``_HIGH_BYTES`` bytes wait to be taken: input
    is read as jobs start. A line longer than `MAX_LINE` stops the reading as soon as it
    gets that long; the lines before it are given, then `get` raises `_InputError`.
    """

    _HIGH = 4096
    _HIGH_BYTES = 1 << 20

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str = "standard input") -> None:
        self._loop = loop
        self._name = name
        self._lines: deque[bytes] = deque()
        self._queued = 0  # bytes in _lines, a newline each included
        self._partial: list[bytes] = []  # the start of a line not ended yet, in pieces
        self._partial_len = 0
        self._number = 0  # lines received so far
        self._error: _InputError | None = None
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
        if b"\n" not in data:  # (a long line: kept in pieces, joined once, not each time)
            self._partial.append(data)
            self._partial_len += len(data)
            if self._partial_len > MAX_LINE:
                self._refuse()
            return
        first, *lines, rest = data.split(b"\n")
        partial = self._partial
        lines.insert(0, b"".join(partial) + first if partial else first)
        if self._partial_len + len(data) > MAX_LINE:  # (else no line here can be too long)
            for i, line in enumerate(lines):
                if len(line) > MAX_LINE:
                    self._take(lines[:i])
                    self._refuse()
                    return
            if len(rest) > MAX_LINE:
                self._take(lines)
                self._refuse()
                return
        self._take(lines, self._partial_len + len(data) - len(rest))
        self._partial = [rest] if rest else []
        self._partial_len = len(rest)
        if (
            (len(self._lines) > self._HIGH or self._queued > self._HIGH_BYTES)
            and not self._paused
            and self._transport is not None
        ):
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def _take(self, lines: list[bytes], size: int | None = None) -> None:
        """Queue complete ``lines``, ``size`` bytes with their newlines (None: count)."""
        self._lines.extend(lines)
        self._number += len(lines)
        self._queued += sum(map(len, lines)) + len(lines) if size is None else size

    def _refuse(self) -> None:
        """The next line is too long: stop reading; `get` raises once the lines before it
        are taken."""
        self._error = _too_long(self._name, self._number + 1)
        self._partial = []
        self._partial_len = 0
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if self._partial:
            self._take([b"".join(self._partial)])
            self._partial = []
            self._partial_len = 0
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        _resolve(self._waiter)

    def get_nowait(self) -> Any:
        lines = self._lines
        if lines:
            line = lines.popleft()
            self._queued -= len(line) + 1
            if (
                self._paused
                and len(lines) < self._HIGH // 2
                and self._queued < self._HIGH_BYTES // 2
                and self._transport is not None
            ):
                self._paused = False
                self._transport.resume_reading()
            return os.fsdecode(line)
        return None if self._eof and self._error is None else _NOT_YET

    async def get(self) -> str | None:
        while True:
            value = self.get_nowait()
            if value is not _NOT_YET:
                return value  # type: ignore[no-any-return]
            if self._error is not None:  # (not from get_nowait: see _Lines.get_nowait)
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


def _binary_lines(stream: IO[bytes], name: str) -> Iterator[str]:
    """The lines of ``stream``; `_InputError` for one longer than `MAX_LINE` bytes, once
    that much of it is read (not the whole of it: it may have no end)."""
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        if line.endswith(b"\n"):
            line = line[:-1]
        elif len(line) > MAX_LINE:
            raise _too_long(name, number)
        yield os.fsdecode(line)


def _text_lines(stream: IO[str], name: str) -> Iterator[str]:
    """As `_binary_lines`, for a stream without a file descriptor (counted in characters)."""
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        if line.endswith("\n"):
            line = line[:-1]
        elif len(line) > MAX_LINE:
            raise _too_long(name, number)
        yield line


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


@dataclass(slots=True)
class _Source:
    """Where the inputs come from: a blocking iterator, or a pipe to read on the loop."""

    values: Iterator[str] | None
    pipe_fd: int | None = None
    close: Callable[[], None] | None = None
    name: str = "standard input"  # for messages


def _open_source(opts: _Options, *, pipes: bool) -> _Source:
    """Open the inputs (OSError if the arg file cannot be read).

    With ``pipes``, a pipe or terminal is left to read on the event loop, so that a slow
    producer never blocks it; regular files are read with blocking reads (they never wait).
    """
    if opts.inputs is not None:
        return _Source(iter(opts.inputs))
    name = "standard input"
    if opts.arg_file is not None and opts.arg_file != "-":
        name = opts.arg_file
        stream = open(opts.arg_file, "rb")  # noqa: SIM115  # closed by _Source.close
    else:
        fd = _stdin_fd()
        if fd is None:
            return _Source(_text_lines(sys.stdin, name))
        stream = open(fd, "rb", closefd=False)  # noqa: SIM115
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    # Only these can wait for input, and can be polled; /dev/null and regular files
    # cannot (epoll refuses them) and never block.
    if pipes and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
        return _Source(None, fd, stream.close, name)
    return _Source(_binary_lines(stream, name), None, stream.close, name)


async def _lines(source: _Source) -> _Lines | _PipeLines:
    """The inputs, to be taken one by one as jobs start."""
    fd = source.pipe_fd
    if fd is None:
        assert source.values is not None
        return _Lines(source.values, source.close)
    # Reading on the loop sets O_NONBLOCK on the open file, which other processes may
    # share (a terminal): put it back when done.
    loop = asyncio.get_running_loop()
    was_blocking = os.get_blocking(fd)
    pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
    _, reader = await loop.connect_read_pipe(lambda: _PipeLines(loop, source.name), pipe)
    close = reader.close

    def close_and_restore() -> None:
        close()
        with contextlib.suppress(OSError):
            os.set_blocking(fd, was_blocking)
        if source.close is not None:
            source.close()

    reader.close = close_and_restore  # type: ignore[method-assign]
    return reader


# -- process groups ----------------------------------------------------------------------

_subreaper = False


def _become_subreaper() -> bool:
    """On Linux, adopt the processes our jobs orphan, so that we can reap them."""
    global _subreaper
    if _subreaper or not sys.platform.startswith("linux"):
        return _subreaper
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        _subreaper = False
    return _subreaper


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any live process is left in the group (its leader already reaped).

    Reaps the members that were orphaned to us first.
    """
    waitid = getattr(os, "waitid", None)
    if waitid is not None:
        while True:
            try:
                if waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG) is None:
                    break
            except ChildProcessError:
                break
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal (setuid): it is there
        return True
    if _subreaper:
        return True
    return _live_member_in_proc(pgid)


def _live_member_in_proc(pgid: int) -> bool:
    """Whether /proc shows a group member that is not a zombie (another process's to
    reap); True when /proc cannot tell."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _children() -> list[int]:
    """The pids of our children (our jobs, and the processes orphaned to us), from /proc."""
    pids: list[int] = []
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:  # pragma: no cover - no /proc
        return []
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                pids.extend(map(int, f.read().split()))
        except OSError:  # (a thread that just ended)
            continue
    if not pids and not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return _children_by_scan()  # pragma: no cover - a kernel without that file
    return pids


def _children_by_scan() -> list[int]:  # pragma: no cover - see _children
    me = os.getpid()
    pids = []
    for name in os.listdir("/proc"):
        stat = _proc_stat(int(name)) if name.isdigit() else None
        if stat is not None and stat[1] == me:
            pids.append(int(name))
    return pids


def _proc_stat(pid: int) -> tuple[bytes, int, int, int] | None:
    """A process's state, parent, process group and session, from /proc (None: gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


class _Store:
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
    """The memory a part of a `_Spool` holds (a bytearray's spare room included)."""
    return sys.getsizeof(part) + _SLOT


class _Spool:
    """A job's stdout or stderr: kept in memory while the run's `_Store` has room, spilled
    to its file otherwise. Each part is bytes (a big chunk, as it was read), a bytearray
    (small chunks gathered, so that memory grows with the bytes written, not with the
    number of writes), or an (offset, length) in the file (adjacent ones merged).

    The store counts the memory the parts really take, their overhead included. Over the
    budget, a spool still being written keeps its last few KiB (under ``_SPILL_BLOCK``) in
    memory, so that tiny writes do not each become a write to the file and a part of their
    own; `seal` sends them to the file once the output is complete."""

    __slots__ = ("_parts", "_store")

    def __init__(self, store: _Store, data: bytes = b"") -> None:
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


class _Capture(asyncio.SubprocessProtocol):
    """Collects a job's stdout and stderr, and tells when its leader exited and its
    pipes closed.

    State is kept in flags; waiting uses a fresh future each time, since a task that is
    cancelled while it awaits a future cancels that future.
    """

    __slots__ = ("_loop", "_waiter", "closed", "err", "exited", "out")

    def __init__(self, loop: asyncio.AbstractEventLoop, store: _Store) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self.out = _Spool(store)
        self.err = _Spool(store)
        self.exited = False  # the leader has exited and been reaped
        self.closed = False  # ... and its stdout and stderr are closed

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        (self.out if fd == 1 else self.err).append(data)

    def process_exited(self) -> None:
        self.exited = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        _resolve(self._waiter)

    async def wait(self, *, closed: bool = False, timeout: float | None = None) -> None:
        """Until the leader exited (or, with ``closed``, the pipes closed too), or
        ``timeout`` seconds passed."""
        loop = self._loop
        end = None if timeout is None else loop.time() + timeout
        while not (self.closed if closed else self.exited):
            waiter = self._waiter = loop.create_future()
            timer = None
            if end is not None:
                left = end - loop.time()
                if left <= 0:
                    return
                timer = loop.call_later(left, _resolve, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()


def _resolve(future: asyncio.Future[None] | None) -> None:
    """Wake whoever waits on ``future``, if anyone still does."""
    if future is not None and not future.done():
        future.set_result(None)


# -- output ----------------------------------------------------------------------------


class _Sink:
    """Writes whole chunks to our stdout/stderr, or through the progress view's console.

    When our stdout is closed (``| head``), ``on_stdout_closed`` is called once and
    whatever follows is dropped.
    """

    def __init__(self) -> None:
        self.view: ProgressView | None = None
        self.stdout_tty = _isatty(sys.stdout)
        self.stdout_closed = False
        self.on_stdout_closed: Callable[[], None] | None = None

    def write(self, data: bytes | _Spool, *, err: bool) -> None:
        """Write ``data`` whole: nothing else is written between its chunks."""
        if not data or (self.stdout_closed and not err):
            return
        view = self.view
        if view is not None and (err or self.stdout_tty):
            text = data if isinstance(data, bytes) else data.getvalue()
            view.print(text.decode(errors="replace"))
            return
        chunks = (data,) if isinstance(data, bytes) else data.chunks()
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
                self._closed()

    def _closed(self) -> None:
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


class _Ordered:
    """Output in input order: each job's output waits only for the jobs before it."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._next = 1
        self._waiting: dict[int, tuple[bytes | _Spool, bytes | _Spool]] = {}

    def put(self, seq: int, out: bytes | _Spool, err: bytes | _Spool) -> None:
        self._waiting[seq] = (out, err)
        self._drain()

    def skip(self, seq: int) -> None:
        self.put(seq, b"", b"")

    def _drain(self) -> None:
        waiting = self._waiting
        while self._next in waiting:
            self._write(*waiting.pop(self._next))
            self._next += 1

    def flush(self) -> None:
        """Write what still waits (its predecessors never ran), in order."""
        for seq in sorted(self._waiting):
            self._write(*self._waiting.pop(seq))

    def _write(self, out: bytes | _Spool, err: bytes | _Spool) -> None:
        self._sink.write(out, err=False)
        self._sink.write(err, err=True)
        for spool in (out, err):
            if isinstance(spool, _Spool):
                spool.release()


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def _tsv(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\0", "\\0")
    )


# -- the run -----------------------------------------------------------------------------


class _Job:
    """One input's job: what it runs and what its last attempt gave."""

    __slots__ = (
        "argv",
        "attempts",
        "err",
        "error",
        "group",
        "out",
        "returncode",
        "running",
        "seq",
        "started_at",
        "started_mono",
        "timed_out",
        "value",
    )

    def __init__(self, seq: int, value: str, argv: list[str]) -> None:
        self.seq = seq
        self.value = value
        self.argv = argv
        self.started_at: float | None = None  # wall-clock time of the first attempt
        self.started_mono = 0.0
        self.running = False
        self.attempts = 0
        self.timed_out = False  # the last attempt was interrupted (a timeout, when retried)
        self.returncode: int | None = None
        self.error: str | None = None
        self.out: bytes | _Spool = b""  # the last attempt's output
        self.err: bytes | _Spool = b""
        self.group: asyncio.Task[None] | None = None

    def set_output(self, out: bytes | _Spool, err: bytes | _Spool) -> None:
        """This attempt's output replaces the last one's (only the last is written)."""
        for old in (self.out, self.err):
            if isinstance(old, _Spool):
                old.release()
        for new in (out, err):
            if isinstance(new, _Spool):
                new.seal()
        self.out, self.err = out, err


class _Runner:
    """One ``run``: feeds inputs to the pool and turns its hooks into output."""

    def __init__(self, opts: _Options) -> None:
        self.opts = opts
        self.template = _Template(opts.command, opts.shell)
        self.sink = _Sink()
        self.sink.on_stdout_closed = self._stdout_closed
        self.store = _Store()  # the jobs' output until it is written
        self.ordered = _Ordered(self.sink) if opts.keep_order and not opts.json else None
        self.jobs: dict[str, _Job] = {}
        self.seq = 0
        self.done = self.failed = self.canceled = self.retried = self.running = 0
        self.total: int | None = len(opts.inputs) if opts.inputs is not None else None
        self.interrupts = 0
        self.exit_override: int | None = None
        self.halted = False
        self.kill_now = False
        self.live_groups: set[int] = set()
        # Job leaders that asyncio's child watcher reaps (we must not), and how many jobs
        # are starting (forked, pid not known yet): see _reap_adopted.
        self.leaders: dict[int, _Capture] = {}
        self.spawning = 0
        self.reap_wanted = False
        self.reap_timer: asyncio.TimerHandle | None = None  # where there is no SIGCHLD
        self.session = os.getsid(0)
        self.groups: set[asyncio.Task[None]] = set()
        self.group_submitted: tuple[str, asyncio.Future[None]] | None = None
        self.slot_waiter: asyncio.Future[None] | None = None
        self.joblog: IO[str] | None = None
        self.view: ProgressView | None = None
        self.feeder: asyncio.Task[None] | None = None
        self.pool = WorkerPool(
            opts.jobs,
            hooks=StateHooks(
                on_pending=self._on_pending,
                on_started=self._on_started,
                on_done=self._on_done,
                on_failed=self._on_failed,
                on_canceled=self._on_canceled,
            ),
            retain_finished=False,
        )
        self.definition: Definition[None] = Definition(
            task_fn=self._attempt,
            max_duration=opts.timeout,
            max_retries=opts.retries,
            backoff=opts.backoff,
            retry_on=JobFailedError,  # and timeouts, always; a command not found is not
        )

    # -- the whole run -------------------------------------------------------------------

    async def run(self, source: _Source, joblog: IO[str] | None) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.joblog = joblog
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # the jobs' stdin
        started = time.perf_counter()
        self._start_view()
        handled: list[signal.Signals] = []
        signals: list[tuple[signal.Signals, Callable[..., None], tuple[Any, ...]]] = [
            (signal.SIGINT, self._on_sigint, ()),
            (signal.SIGTERM, self._on_sigterm, ()),
            (signal.SIGHUP, self._on_sigterm, (128 + signal.SIGHUP,)),
            (signal.SIGQUIT, self._on_sigterm, (128 + signal.SIGQUIT,)),
        ]
        for sig, handler, args in signals:
            try:
                loop.add_signal_handler(sig, handler, *args)
            except (RuntimeError, ValueError):  # pragma: no cover - not the main thread
                continue
            handled.append(sig)
        try:
            loop.add_signal_handler(signal.SIGCHLD, self._reap_adopted)
            handled.append(signal.SIGCHLD)
        except (RuntimeError, ValueError):  # uvloop keeps SIGCHLD; or not the main thread
            self._reap_every(_REAP_EVERY)
        try:
            lines = await _lines(source)
            # asyncio.Task, not create_task: an eager task factory would run the feeder up to
            # its first job before the check below could stop it.
            self.feeder = feeder = asyncio.Task(self._feed(lines))
            if self.interrupts or self.exit_override is not None:
                # A signal (or a closed stdout) came before the feeder existed, while the
                # inputs were being opened: stop as it would have stopped the feeder.
                feeder.cancel()
            try:
                await asyncio.wait([feeder])
            finally:
                lines.close()  # (a feeder cancelled before it began never closes them)
            error = None if feeder.cancelled() else feeder.exception()
            if isinstance(error, _InputError):  # a bad input: start no more, finish the rest
                self._notice(f"error: {error}")
                self.exit_override = EXIT_USAGE
            elif error is not None:  # reading the inputs failed: the same
                self._notice(f"cannot read the inputs: {error}")
                self.exit_override = EXIT_FAILED
            while self.groups:
                await asyncio.wait(list(self.groups))
            await self.pool.shutdown(cancel=False)
        except BaseException:
            self._cancel_all()
            with contextlib.suppress(BaseException):
                await self.pool.shutdown(cancel=True)
            raise
        finally:
            if self.reap_timer is not None:
                self.reap_timer.cancel()
            self._reap_adopted()
            for sig in handled:
                loop.remove_signal_handler(sig)
            os.close(self.devnull)
            self._stop_view()
        try:
            if self.ordered is not None:
                self.ordered.flush()
        finally:
            self.store.close()
        self._summary(time.perf_counter() - started)
        if self.exit_override is not None:
            return self.exit_override
        if self.interrupts:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed or self.canceled else EXIT_OK

    def _stdout_closed(self) -> None:
        """Our stdout was closed: nobody reads the results, stop everything."""
        if self.exit_override is None:
            self.exit_override = EXIT_BROKEN_PIPE
        self._cancel_all()

    # -- feeding the pool ----------------------------------------------------------------

    async def _feed(self, lines: _Lines | _PipeLines) -> None:
        """Submit one job per input, as the pool frees workers (inputs are read lazily)."""
        opts = self.opts
        pool = self.pool
        try:
            while True:
                if opts.halt_on_error:
                    await self._free_slot()
                value = await lines.get()
                if value is None:
                    break
                if opts.halt_on_error:
                    batch = [value]
                    room = 1 if opts.delay else pool.available_workers
                    while len(batch) < room:
                        more = lines.get_nowait()
                        if more is None or more is _NOT_YET:
                            break
                        batch.append(more)
                    await self._submit_group(batch)
                else:
                    job = self._new_job(value)
                    try:
                        await pool.submit(self._definition(job))
                    except BaseException:
                        self._forget(job)
                        raise
                if opts.delay:
                    await asyncio.sleep(opts.delay)
            self.total = self.seq
            self._refresh_view()
        finally:
            lines.close()

    def _new_job(self, value: str) -> _Job:
        self.seq += 1
        seq = self.seq
        job = _Job(seq, value, self.template.argv(seq, value))
        self.jobs[str(seq)] = job
        return job

    def _definition(self, job: _Job) -> Definition[None]:
        d = self.definition
        return Definition(
            id=str(job.seq),
            task_fn=d.task_fn,
            max_duration=d.max_duration,
            max_retries=d.max_retries,
            backoff=d.backoff,
            retry_on=d.retry_on,
        )

    def _forget(self, job: _Job) -> None:
        """A job that was never submitted."""
        self.jobs.pop(str(job.seq), None)
        if self.ordered is not None:
            self.ordered.skip(job.seq)

    async def _free_slot(self) -> None:
        while self.pool.available_workers == 0:
            self.slot_waiter = waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self.slot_waiter = None

    async def _submit_group(self, values: list[str]) -> None:
        """Run ``values`` as one error group (``--halt-on-error``), in free workers.

        The pool's error group takes a list, so a long input goes in as many small groups
        (at most one per free worker each time), and the first failure anywhere cancels
        the other groups as well (`_halt`).
        """
        jobs = [self._new_job(v) for v in values]
        submitted: asyncio.Future[None] = self.loop.create_future()
        self.group_submitted = (str(jobs[-1].seq), submitted)
        group = self.loop.create_task(self._group([self._definition(j) for j in jobs]))
        self.groups.add(group)
        for job in jobs:
            job.group = group

        def ended(task: asyncio.Task[None]) -> None:
            self.groups.discard(task)
            if not submitted.done():
                submitted.set_result(None)

        group.add_done_callback(ended)
        try:
            await submitted
        finally:
            self.group_submitted = None

    async def _group(self, definitions: list[Definition[None]]) -> None:
        # The failure has been reported by the hooks already.
        with contextlib.suppress(Exception):
            await self.pool.submit_with_err_group(definitions)

    def _halt(self, job: _Job) -> None:
        """``--halt-on-error``: a job failed; cancel everything else, start nothing more."""
        if self.halted:
            return
        self.halted = True
        if self.feeder is not None:
            self.feeder.cancel()
        for group in self.groups:
            if group is not job.group:
                group.cancel()  # the pool cancels that group's tasks

    # -- signals -------------------------------------------------------------------------

    def _on_sigint(self) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            if self.feeder is not None:
                self.feeder.cancel()
            for task in self.pool.tasks():  # not started, or waiting to retry: they never will
                if task.is_pending():
                    task.cancel()
            running = self.running
            self._notice(
                f"interrupted: starting no more jobs, waiting for {running} running "
                "(Ctrl-C again to cancel them)"
            )
        elif self.interrupts == 2:
            self._notice("interrupted again: cancelling the running jobs")
            self._cancel_all()
        else:
            self._notice("killing the running jobs")
            self._kill_all()

    def _cancel_job(self, task_id: str) -> None:
        for task in self.pool.tasks():
            if task.id == task_id:
                task.cancel()

    def _on_sigterm(self, exit_code: int = EXIT_TERMINATED) -> None:
        """SIGTERM, and SIGHUP or SIGQUIT (the terminal or the session went away): cancel
        the jobs, kill their process groups, and exit with 128 + the signal's number."""
        self.interrupts = max(self.interrupts, 2)
        self.exit_override = exit_code
        self._cancel_all()

    def _cancel_all(self) -> None:
        if self.feeder is not None:
            self.feeder.cancel()
        for task in self.pool.tasks():
            task.cancel()

    def _kill_all(self) -> None:
        self._cancel_all()
        self.kill_now = True
        for pgid in list(self.live_groups):
            _killpg(pgid, signal.SIGKILL)

    # -- one attempt of a job ------------------------------------------------------------

    async def _attempt(self, run: Run) -> None:
        """Run the job's command once; a non-zero exit raises `JobFailedError`."""
        job = self.jobs[run.id]
        loop = self.loop
        proto = _Capture(loop, self.store)
        job.timed_out = False
        spawn = loop.create_task(self._spawn(proto, job.argv))
        self.spawning += 1
        spawn.add_done_callback(functools.partial(self._spawned, proto))
        transport: asyncio.SubprocessTransport | None = None
        try:
            try:
                transport, _ = await asyncio.shield(spawn)
            except asyncio.CancelledError:
                transport = await self._started(spawn)  # to kill what it started
                raise
            assert transport is not None
            pgid = transport.get_pid()
            self.live_groups.add(pgid)
            await proto.wait()
            if self._job_alive(pgid) and await self._terminate(pgid, proto):
                raise asyncio.CancelledError
            # Normally closed already; if a process outside the group holds the pipes open,
            # wait for it only so long.
            await proto.wait(closed=True, timeout=self.opts.grace)
        except asyncio.CancelledError:
            job.timed_out = True
            if transport is not None:
                await self._terminate(transport.get_pid(), proto)
            raise
        except (OSError, ValueError) as exc:
            if transport is not None:  # pragma: no cover - only the start raises these
                raise
            # As a shell says it: 127 not found, 126 found but not runnable (not allowed,
            # arguments too long, a NUL byte in them).
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            job.returncode = 127 if isinstance(exc, FileNotFoundError) else 126
            message = f"asynctasklib: {job.argv[0]}: {reason}\n"  # (the name as given)
            job.set_output(b"", message.encode(errors="surrogateescape"))
            job.error = f"cannot run {job.argv[0]!r}: {reason}"
            raise _CannotStartError(job.error) from None
        finally:
            if transport is not None:
                self.live_groups.discard(transport.get_pid())
                if proto.exited:  # (else reaped later: _reap_adopted forgets it then)
                    self.leaders.pop(transport.get_pid(), None)
                transport.close()
                job.returncode = rc = transport.get_returncode()
                job.set_output(proto.out, proto.err)
                job.error = _describe_returncode(rc) if rc else None
        if rc != 0:
            raise JobFailedError(rc if rc is not None else -1)

    async def _spawn(
        self, proto: _Capture, argv: list[str]
    ) -> tuple[asyncio.SubprocessTransport, Any]:
        """Start ``argv`` as a shell would, the same on every event loop.

        uvloop starts programs with the C library's ``execvp``, asyncio's loop does not:
        so both a word with a NUL byte (uvloop would cut it there) and a file that is no
        executable format (``execvp`` hands it to ``/bin/sh``, as shells and GNU parallel
        do) are dealt with here.
        """
        if any("\0" in word for word in argv):
            raise ValueError("embedded null byte")
        program = self.template.executable
        options: dict[str, Any] = {
            "stdin": self.devnull,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
            "start_new_session": True,
        }
        try:
            return await self.loop.subprocess_exec(
                lambda: proto, *argv, executable=program, **options
            )
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
        script = program or argv[0]
        return await self.loop.subprocess_exec(
            lambda: proto, "/bin/sh", script, *argv[1:], **options
        )

    async def _started(self, spawn: asyncio.Task[Any]) -> asyncio.SubprocessTransport | None:
        """Cancelled while starting: let the start finish; its transport, if it started."""
        while not spawn.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([spawn])
        if spawn.cancelled() or spawn.exception() is not None:
            return None
        transport: asyncio.SubprocessTransport = spawn.result()[0]
        return transport

    async def _terminate(self, pgid: int, proto: _Capture) -> bool:
        """Kill the job's process group: SIGTERM, SIGKILL after the grace period; return
        once the leader is reaped and no member is left. True if cancelled meanwhile.

        A cancellation while waiting does not stop this: it sends SIGKILL at once.
        """
        loop = self.loop
        cancelled = False
        sig = signal.SIGTERM if not self.kill_now else signal.SIGKILL
        self._signal_job(pgid, sig)
        self._signal_job(pgid, signal.SIGCONT)  # (a stopped process acts on SIGTERM once resumed)
        deadline = loop.time() + (self.opts.grace if sig == signal.SIGTERM else _KILL_WAIT)
        pause = 0.002
        while True:
            if proto.exited and not self._job_alive(pgid):
                return cancelled
            now = loop.time()
            if sig == signal.SIGTERM and (now >= deadline or cancelled or self.kill_now):
                sig = signal.SIGKILL
                self._signal_job(pgid, sig)
                deadline = now + _KILL_WAIT
            elif sig == signal.SIGKILL and now >= deadline:
                self._notice(f"process group {pgid} survived SIGKILL for {_KILL_WAIT:g} s")
                return cancelled
            wait = max(0.0, min(pause, deadline - now))
            try:
                if proto.exited:  # the leader is gone: poll for the rest of the group
                    await asyncio.sleep(wait)
                else:
                    await proto.wait(timeout=wait)
            except asyncio.CancelledError:
                cancelled = True
            pause = min(pause * 2, 0.05)

    # -- processes orphaned to us ----------------------------------------------------------

    def _spawned(self, proto: _Capture, spawn: asyncio.Task[Any]) -> None:
        """A job's start ended: its leader is now known, for `_reap_adopted` to leave it."""
        self.spawning -= 1
        if not spawn.cancelled() and spawn.exception() is None:
            self.leaders[spawn.result()[0].get_pid()] = proto
        if self.reap_wanted and not self.spawning:
            self._reap_adopted()

    def _adopted(self) -> list[tuple[int, bytes, int, int]]:
        """Our children that are not job leaders, from the jobs' sessions (not ours: those
        are the host's own children when `main` is called in a bigger program): pid,
        state, process group and session of each."""
        leaders = self.leaders
        found = []
        for pid in _children():
            proto = leaders.get(pid)
            if proto is not None:
                if not proto.exited:
                    continue
                del leaders[pid]  # reaped by the watcher: this is a new process
            stat = _proc_stat(pid)
            if stat is not None and stat[3] != self.session:
                found.append((pid, stat[0], stat[2], stat[3]))
        return found

    def _reap_adopted(self) -> None:
        """Reap the processes orphaned to us (as a child subreaper) that have exited: on
        SIGCHLD, and at the end of the run.

        Never a job's leader: asyncio's child watcher waits for those, and would lose
        their exit status. A job that is starting is our child before its pid is known,
        so while one is, this waits until none is.
        """
        if not _subreaper:
            return
        if self.spawning:
            self.reap_wanted = True
            return
        self.reap_wanted = False
        for pid, state, _, _ in self._adopted():
            if state in (b"Z", b"X"):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def _reap_every(self, interval: float) -> None:
        """`_reap_adopted` now and every ``interval`` seconds, for a loop that cannot
        call it on SIGCHLD."""
        self._reap_adopted()
        if _subreaper:
            self.reap_timer = self.loop.call_later(interval, self._reap_every, interval)

    def _strays(self, sid: int) -> set[int]:
        """The process groups of the live processes orphaned to us from the session ``sid``
        (a job's: those that left its process group with setpgid); reaps the dead ones."""
        groups = set()
        for pid, state, pgid, session in self._adopted():
            if session != sid:
                continue
            if state in (b"Z", b"X"):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            else:
                groups.add(pgid)
        return groups

    def _job_alive(self, pgid: int) -> bool:
        """Whether a process of the job is left, in its process group or (orphaned to us)
        elsewhere in its session. Its leader has been reaped."""
        return _group_alive(pgid) or (_subreaper and bool(self._strays(pgid)))

    def _signal_job(self, pgid: int, sig: int) -> None:
        """Signal the job's process group, and the groups in its session orphaned to us."""
        _killpg(pgid, sig)
        if _subreaper:
            for group in self._strays(pgid):
                _killpg(group, sig)

    # -- hooks ---------------------------------------------------------------------------

    def _on_pending(self, task_id: str, when: datetime, attempt: int) -> None:
        job = self.jobs[task_id]
        if attempt:
            self.retried += 1
            if job.running:
                job.running = False
                self.running -= 1
            if self.interrupts:  # after Ctrl-C nothing more starts, retries included
                self.loop.call_soon(self._cancel_job, task_id)
        else:
            pending = self.group_submitted
            if pending is not None and pending[0] == task_id and not pending[1].done():
                pending[1].set_result(None)
        if self.opts.json:
            event: dict[str, Any] = {"event": "pending", "seq": job.seq, "input": job.value}
            event["attempt"] = attempt
            event["time"] = when.isoformat()
            if attempt:
                event["error"] = (
                    f"timed out after {self.opts.timeout:g} s" if job.timed_out else job.error
                )
            self._event(event)
        self._refresh_view()

    def _on_started(self, task_id: str, when: datetime) -> None:
        job = self.jobs[task_id]
        job.running = True
        job.attempts += 1
        self.running += 1
        if job.started_at is None:
            job.started_at = when.timestamp()
            job.started_mono = time.monotonic()
        if self.opts.json:
            self._event(
                {
                    "event": "started",
                    "seq": job.seq,
                    "input": job.value,
                    "attempt": job.attempts - 1,
                    "time": when.isoformat(),
                    "command": job.argv,
                }
            )
        self._refresh_view()

    def _on_done(self, task_id: str, when: datetime) -> None:
        self.done += 1
        self._ended(task_id, when, "done", None)

    def _on_failed(self, task_id: str, when: datetime, error: BaseException) -> None:
        self.failed += 1
        self._ended(task_id, when, "failed", error)

    def _on_canceled(self, task_id: str, when: datetime) -> None:
        self.canceled += 1
        self._ended(task_id, when, "canceled", None)

    def _ended(self, task_id: str, when: datetime, how: str, error: BaseException | None) -> None:
        job = self.jobs.pop(task_id)
        if job.running:
            job.running = False
            self.running -= 1
        rc = job.returncode
        exit_code = rc if rc is not None and rc >= 0 else -1
        sig = -rc if rc is not None and rc < 0 else 0
        duration = time.monotonic() - job.started_mono if job.started_at is not None else None
        attempts = job.attempts
        if how == "failed" and not isinstance(error, _CannotStartError):  # (that one says so)
            # Why it failed, after its own stderr (GNU parallel shows that; the rest is ours).
            reason = self._failure(job, error)
            err = job.err
            if self.opts.json:
                self._notice(reason)
            elif isinstance(err, _Spool):
                err.append(f"asynctasklib: {reason}\n".encode(errors="surrogateescape"))
            else:
                job.err = err + f"asynctasklib: {reason}\n".encode(errors="surrogateescape")
        if self.opts.json:
            event: dict[str, Any] = {
                "event": how,
                "seq": job.seq,
                "input": job.value,
                "time": when.isoformat(),
                "attempts": attempts,
                "exit_code": exit_code,
                "signal": sig,
                "duration": None if duration is None else round(duration, 6),
            }
            if how == "failed":
                event["error"] = _error_text(error, job)
            event["stdout"] = _text(job.out)
            event["stderr"] = _text(job.err)
            self._event(event)
            job.set_output(b"", b"")
        elif self.ordered is not None:
            self.ordered.put(job.seq, job.out, job.err)  # (it releases them once written)
        else:
            self.sink.write(job.out, err=False)
            self.sink.write(job.err, err=True)
            job.set_output(b"", b"")
        if self.joblog is not None:
            self.joblog.write(
                f"{job.seq}\t{_tsv(job.value)}\t{exit_code}\t{attempts}\t"
                + ("-" if job.started_at is None else f"{job.started_at:.3f}")
                + "\t"
                + ("-" if duration is None else f"{duration:.3f}")
                + f"\t{sig}\n"
            )
            self.joblog.flush()
        if how == "failed" and self.opts.halt_on_error:
            self._halt(job)
        waiter = self.slot_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._refresh_view()

    def _failure(self, job: _Job, error: BaseException | None) -> str:
        """One line for a failed job: which, why (exit code, signal, timeout), its input."""
        if isinstance(error, TaskTimeoutError) and self.opts.timeout is not None:
            why = f"timed out after {self.opts.timeout:g} s"
        else:
            why = _error_text(error, job)
        tries = f" after {job.attempts} attempts" if job.attempts > 1 else ""
        return f"job {job.seq} failed{tries}: {why} (input {_show(job.value)})"

    def _event(self, event: dict[str, Any]) -> None:
        self.sink.write((json.dumps(event) + "\n").encode(), err=False)

    # -- progress and messages -----------------------------------------------------------

    def _start_view(self) -> None:
        wanted = self.opts.progress
        if wanted is False or not _isatty(sys.stderr):
            return
        try:
            from ._progress import ProgressView
        except ImportError:
            if wanted:
                self._notice(
                    "the progress view needs rich: pip install 'asynctasklib[cli]'; "
                    "running without it"
                )
            return
        self.view = ProgressView(self.total)
        self.view.start()
        self.sink.view = self.view

    def _refresh_view(self) -> None:
        view = self.view
        if view is not None:
            view.update(
                total=self.total,
                done=self.done,
                failed=self.failed,
                canceled=self.canceled,
                running=self.running,
                retried=self.retried,
            )

    def _stop_view(self) -> None:
        view = self.view
        if view is not None:
            self._refresh_view()
            self.sink.view = self.view = None
            view.stop()

    def _notice(self, message: str) -> None:
        self.sink.notice(message)

    def _summary(self, wall: float) -> None:
        ended = self.done + self.failed + self.canceled
        rate = ended / wall if wall > 0 else 0.0
        self._notice(
            f"{ended} jobs: {self.done} done, {self.failed} failed, {self.canceled} canceled, "
            f"{self.retried} retried in {wall:.2f} s ({rate:.1f} jobs/s)"
            + (" (interrupted)" if self.interrupts else "")
        )


def _text(output: bytes | _Spool) -> str:
    data = output if isinstance(output, bytes) else output.getvalue()
    return data.decode(errors="replace")


def _error_text(error: BaseException | None, job: _Job) -> str:
    if isinstance(error, TaskTimeoutError):
        return f"timed out: {error}"
    if error is None:
        return job.error or ""
    return str(error) or type(error).__name__


# -- the entry point ---------------------------------------------------------------------


@contextlib.contextmanager
def _pidfd_child_watcher() -> Iterator[None]:
    """On Python 3.11, watch children with pidfds instead of a thread per child.

    (3.12 and later do so by default.) Must be entered with the event loop running.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):  # pragma: no cover
        yield
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
        old = asyncio.get_child_watcher()
    except (OSError, NotImplementedError, AttributeError):  # pragma: no cover
        yield
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    try:
        yield
    finally:
        asyncio.set_child_watcher(old)


async def _run(opts: _Options, source: _Source, joblog: IO[str] | None) -> int:
    with _pidfd_child_watcher():
        return await _Runner(opts).run(source, joblog)


def _dry_run(opts: _Options, source: _Source) -> int:
    assert source.values is not None
    template = _Template(opts.command, opts.shell)
    out = sys.stdout
    try:
        for seq, value in enumerate(source.values, 1):
            out.write(template.display(template.argv(seq, value)) + "\n")
        out.flush()
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    except _InputError as exc:
        out.flush()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if source.close is not None:
            source.close()
    return EXIT_OK


FDS_PER_JOB: Final = 4  # its stdout and stderr pipes, its pidfd, and one to spare
FDS_KEPT: Final = 64  # for ourselves: the loop, the joblog, the spill file, the input


def _fit_jobs(jobs: int) -> int:
    """As many jobs at once as the open-file limit allows (raised to its hard limit if need
    be), with a warning if that is fewer than asked: not jobs failing to start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FDS_KEPT + FDS_PER_JOB * jobs
    if need > soft:
        wanted = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    fit = max(1, (soft - FDS_KEPT) // FDS_PER_JOB)
    if jobs > fit:
        print(
            f"{PROG}: warning: -j {jobs} needs about {need} open files, the limit is {soft}: "
            f"running {fit} jobs at once",
            file=sys.stderr,
        )
        return fit
    return jobs


def _ensure_std_streams() -> None:
    """Started with standard input, output or error closed (``>&-``): put /dev/null there,
    so that the files we open do not take those descriptors, and writing does not fail."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        except OSError:  # closed
            usable = False
        else:  # (opened the wrong way round by someone else: as good as closed)
            usable = access != (os.O_WRONLY if fd == 0 else os.O_RDONLY)
        if not usable:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (never closed)


def main(argv: list[str]) -> int:
    """``asynctasklib run ARGS``: the exit status (0 ok, 1 failures, 2 usage, 130 Ctrl-C)."""
    _ensure_std_streams()
    joblog: IO[str] | None = None
    try:
        opts = _parse(argv)
        try:
            source = _open_source(opts, pipes=not opts.dry_run)
        except OSError as exc:
            raise _UsageError(f"--arg-file: cannot read {opts.arg_file}: {exc.strerror}") from None
        if opts.dry_run:
            return _dry_run(opts, source)
        if opts.joblog is not None:
            try:
                joblog = open(opts.joblog, "w", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
            except OSError as exc:
                if source.close is not None:
                    source.close()
                raise _UsageError(f"--joblog: cannot write {opts.joblog}: {exc.strerror}") from None
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help (0) or a bad option (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if joblog is not None:
            joblog.write(JOBLOG_HEADER)
            joblog.flush()
        if opts.inputs is None and opts.arg_file in (None, "-") and _isatty(sys.stdin):
            print(f"{PROG}: reading inputs from the terminal (Ctrl-D to end)", file=sys.stderr)
        _become_subreaper()
        opts = dataclasses.replace(opts, jobs=_fit_jobs(opts.jobs))
        return asyncio.run(_run(opts, source, joblog))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if joblog is not None:
            joblog.close()
