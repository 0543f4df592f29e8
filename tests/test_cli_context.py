"""``-N``'s context replace (``_replace.repeat_contexts``, ``_template``): a word with ``{}``
repeated once per argument, safe in shell code too. The comparisons with GNU parallel
itself are in test_cli_oracle_misc.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from asynctasklib._cli import _errors, _template, main
from asynctasklib._cli._replace import DEFAULT_NAMES, Field, change, parse, repeat_contexts
from cli_helpers import TIMEOUT, run
from test_cli_template import HOSTILE, SHELLS


def _texts(words: list[list[str | Field]]) -> list[str]:
    """Each word as written, its fields as ``{N}`` where -N gave them a position."""
    return [
        "".join(p if isinstance(p, str) else p.text if p.position is None else f"<{p.position}>"
                for p in word)
        for word in words
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("word", "count", "expect"),
    [
        ("[{}]", 2, ["[<1>]", "[<2>]"]),
        ("x{}{#}{1}", 2, ["x<1>{#}<1>", "x<2>{#}<1>"]),  # ({1} and {#} stay as they are)
        ("{1}-{2}", 3, ["<1>-<2>"]),  # (no field of each argument: not repeated)
        ("a {} b", 2, ["a <1>", "<2> b"]),  # (the rest stays with the first and last copy)
        ("{} {.}", 2, ["<1>", "<2> <1>", "<2>"]),
        ("[{}]", 0, ["[<1>]"]),  # (-N 0: one copy of nothing)
        ("plain", 2, ["plain"]),
    ],
)
def test_repeat_contexts(word: str, count: int, expect: list[str]) -> None:
    assert _texts(repeat_contexts(parse(word, DEFAULT_NAMES), count)) == expect


def test_a_job_of_fewer_arguments_gets_fewer_copies(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "-k", "-N", "3", "--", "echo", "[{}]", "{2}", ":::", *"abcde")
    assert (rc, out.splitlines()) == (0, ["[a] [b] [c] b", "[d] [e] e"])
    rc, out, _ = run(capfd, "--dry-run", "-N", "2", "--", "echo", "[{}]", ":::", "a b", "c")
    assert out == "echo '[a b]' '[c]'\n"


# Each context of shell code, and the words it gives for the arguments of a job: one copy
# of its whole shell word per argument, inside quotes too.
SCRIPT = "printf '<%s>' x{}y \"[{}]\" '({})' \"a {} b\" '<'{.}\"/\" {1} {#}; echo"


def _expected(args: tuple[str, ...], seq: int) -> bytes:
    x = "".join(f"<x{a}y>" for a in args)
    dq = "".join(f"<[{a}]>" for a in args)
    sq = "".join(f"<({a})>" for a in args)
    spaced = "<a " + " ".join(args) + " b>"  # (the context is `{}` alone: inside "...")
    ext = "".join(f"<<{change(a, '.')}/>" for a in args)
    return os.fsencode(x + dq + sq + spaced + ext + f"<{args[0]}><{seq}>\n")


def test_shell_input_never_runs_as_code_when_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    values = [v for v in HOSTILE if v]  # ('' alone as {.} would print nothing at all)
    rc = main(["-k", "-j1", "-N", "3", "--shell", "--", SCRIPT, ":::", *values])
    out, err = capfdbinary.readouterr()
    assert rc == 0, err
    jobs = [tuple(values[i : i + 3]) for i in range(0, len(values), 3)]
    assert out == b"".join(_expected(args, seq) for seq, args in enumerate(jobs, 1))
    # The same script as the -c code of each shell.
    for shell in SHELLS:
        template = _template.Template([shell, "-c", SCRIPT], shell=False, each=True)
        for seq, args in enumerate(jobs, 1):
            done = subprocess.run(
                template.argv(seq, 1, args), capture_output=True, timeout=TIMEOUT, check=False
            )
            assert (shell, done.stdout, done.stderr) == (shell, _expected(args, seq), b"")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "script",
    [
        'echo "a{}b c"',  # (a copy would close the quote the first one opened)
        'echo x{}y"  "{2}',
        'echo $(echo {}) "$(echo {})"',  # (the copies of {}) would close $(...) and "..."
    ],
)
def test_a_context_whose_copies_would_read_differently_is_refused(script: str) -> None:
    _template.Template([script], shell=True)  # (-n: one copy, fine)
    with pytest.raises(_errors.UsageError, match=r"-N repeats a word with \{\} once per arg"):
        _template.Template([script], shell=True, each=True)
    with pytest.raises(_errors.UsageError, match="-N repeats a word"):
        _template.Template(["sh", "-c", script], shell=False, each=True)
