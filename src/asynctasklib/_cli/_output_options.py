"""The options of ``asynctasklib run`` about the jobs' output, as GNU parallel names
them: their argparse definitions, the checks of what goes together, ``--tagstring``'s
escapes."""

from __future__ import annotations

import argparse
import re
from typing import Final

from ._argtypes import value
from ._errors import UsageError

GROUP: Final = "group"  # the output modes: each job's output whole (the default),
LINE: Final = "line"  # line by line (--line-buffer),
UNGROUP: Final = "ungroup"  # straight through (-u)


def add_output_options(p: argparse.ArgumentParser) -> None:
    """The options about the jobs' output, as GNU parallel names them."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--group", dest="output", action="store_const", const=GROUP,
        help="write each job's output whole once it ends (the default)",
    )  # fmt: skip
    mode.add_argument(
        "--line-buffer", "--lb", dest="output", action="store_const", const=LINE,
        help="write the jobs' output line by line as it comes: lines of different jobs "
        "may interleave, never parts of lines",
    )  # fmt: skip
    mode.add_argument(
        "-u", "--ungroup", dest="output", action="store_const", const=UNGROUP,
        help="pass the jobs' output straight through (-k and --tag then do nothing)",
    )  # fmt: skip
    p.add_argument(
        "--tag", action="store_true",
        help="start each line of a job's output with its arguments (joined by spaces) and "
        "a TAB",
    )  # fmt: skip
    p.add_argument(
        "--tagstring", "--tag-string", type=value, metavar="STR",
        help="start each line of a job's output with STR (its replacement strings filled "
        "in) and a TAB",
    )  # fmt: skip
    p.add_argument(
        "--results", "--res", type=value, metavar="DIR",
        help="save each job's stdout, stderr and number in DIR/1/INPUT/ (stdout, stderr, "
        "seq), as GNU parallel lays them out; nothing is printed",
    )  # fmt: skip
    p.add_argument(
        "--files", "--output-as-files", "--outputasfiles", action="store_true",
        help="save each job's stdout in a file in $TMPDIR and print the file's name",
    )  # fmt: skip


def unquote_printf(text: str) -> str:
    """``--tagstring``'s escapes, as GNU parallel reads them, one after the other: ``\\t``,
    ``\\n``, ``\\r``, then ``\\NNN`` and ``\\N`` (octal, as in a Perl string)."""
    text = text.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")

    def octal(match: re.Match[str]) -> str:
        digits = match[1]
        lead = re.match("[0-7]*", digits)
        assert lead is not None
        if not lead[0]:  # \8, \9: the digit itself
            return digits
        return chr(int(lead[0], 8)) + digits[len(lead[0]) :]

    text = re.sub(r"\\(\d\d\d)", octal, text)
    return re.sub(r"\\(\d)", octal, text)


def check_output(ns: argparse.Namespace) -> str | None:
    """The output options that cannot go together refused; the tag string, if any."""
    mode = ns.output or GROUP
    saved = "--results" if ns.results is not None else "--files" if ns.files else None
    tag = unquote_printf(ns.tagstring) if ns.tagstring is not None else "{}" if ns.tag else None
    if ns.json:
        given = {
            "--tag": ns.tag, "--tagstring": ns.tagstring is not None, "--line-buffer": mode == LINE,
            "-u": mode == UNGROUP, "--results": ns.results is not None, "--files": ns.files,
        }  # fmt: skip
        for flag, on in given.items():
            if on:
                raise UsageError(f"--json cannot be combined with {flag}")
    if saved is not None and mode != GROUP:
        flag = "--line-buffer" if mode == LINE else "-u"
        raise UsageError(f"{saved} cannot be combined with {flag}")
    if ns.progress and mode == UNGROUP:
        raise UsageError("--progress cannot be combined with -u (the jobs write to the terminal)")
    if saved is not None and ns.dry_run:
        raise UsageError(f"{saved} cannot be combined with --dry-run")
    if ns.results is not None:
        _check_results(ns.results)
    if tag is not None:
        from ._template import Template  # (not for --help)

        try:
            Template([tag], shell=False)
        except UsageError as exc:
            raise UsageError(f"--tagstring: {exc}") from None
    return tag


def _check_results(name: str) -> None:
    """``--results DIR`` or a table (``.csv``, ``.tsv``, ``.json``), without replacement
    strings."""
    from ._template import Template  # (not for --help)

    try:
        replaced = Template([name], shell=False).argv(1, 0, ("x",))[0] != name
    except UsageError:
        replaced = True
    if replaced:
        raise UsageError(f"--results {name}: a name with replacement strings is not supported")
