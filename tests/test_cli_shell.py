"""The shell-code scanner (``_cli/_shell.py``): where a replacement string stands in a
script, and the places where it cannot be put safely.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from asynctasklib._cli import _errors, _replace, _shell
from cli_helpers import run


def shell_fields(script: str) -> list[int]:
    """The scanner on ``script``, its fields found as the template finds them."""
    spans: list[tuple[int, int, bool]] = []
    at = 0
    for piece in _replace.parse(script, _replace.DEFAULT_NAMES):
        if isinstance(piece, _replace.Field):
            spans.append((at, at + len(piece.text), piece.kind == _replace.ARG))
            piece = piece.text
        at += len(piece)
    return _shell.shell_fields(script, spans)


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("echo `echo {}`", "inside backquotes"),
        ("echo $'{}'", "inside $'...'"),
        ("echo ${x:-{}}", "inside ${...}"),
        ('echo "${x:-{}}"', "inside ${...}"),
        ("echo $(( {} + 1 ))", "inside arithmetic"),
        ("(( x = {} ))", "inside arithmetic"),
        ("echo $[ {} ]", "inside arithmetic"),
        ("echo hi # {}", "in a comment"),
        ("echo hi #", "in a comment"),  # where the input would be appended
        ("cat <<EOF\n{}\nEOF", "after a here-document"),
        ("echo \\{}", "right after a backslash"),
        ('echo "\\{}"', "right after a backslash"),
        ("echo ${}", "right after $"),
        ("echo $${#}", "right after $"),
        ('echo "${}"', "right after $"),
        ("echo \\\n{}", "after a backslash-newline"),
        ('echo "$\\\n(echo {})"', "after a backslash-newline"),
        ('echo "$(case a in a) echo {} ;; esac)"', "after a case statement"),
        ("echo \"${x:-'a'}\" {}", "after quotes inside"),
        ("echo $(( '1' )) {}", "after quotes inside arithmetic"),
        ("[[ {} -eq 1 ]]", "inside [[ ... ]]"),
        ("echo `echo {1.}`", "inside backquotes"),  # every string that carries input
        ("echo $(( {-1} + 1 ))", "inside arithmetic"),
        ("echo $'{/.}'", "inside $'...'"),
        ("echo # {//}", "in a comment"),
        ("echo ${%}", "right after $"),  # and the numbers, right after $
        ("echo $x${#}", "right after $"),
        ('if [[ ( a == "{}" ) ]]; then :; fi', "inside [[ ... ]]"),
    ],
)
def test_shell_contexts_that_cannot_be_made_safe_are_refused(
    script: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    forms = [["--shell", "--", script], ["--", "sh", "-c", script]]
    for argv in forms if "{" in script else forms[:1]:  # (argv: an appended input is $0)
        rc, out, err = run(capfd, *argv, ":::", "$(touch PWNED)")
        assert (rc, out) == (2, ""), err
        assert f"cannot put the input safely in shell code {why}" in err
        assert " jobs: " not in err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("script", "output"),
    [
        ("echo `echo {#}` $(( {#} + 1 )) # {#}", "1 2\n"),  # the job number is digits
        ("echo $# ${#x} $$x {}", "0 0 {pid}x v\n"),
        ("case {} in v) echo ok;; esac", "ok\n"),  # (not inside $(...))
        ("printf '%s\\n' {} <<< here", "v\n"),
        ("x=1; echo $((x+1)) {}", "2 v\n"),
        ("echo '$' {}", "$ v\n"),
        ("[[ a == a ]] && [ {} = v ] && echo ok", "ok\n"),  # after ]], and [ ... ]
    ],
)
def test_shell_code_around_the_input_that_is_fine(
    script: str, output: str, capfd: pytest.CaptureFixture[str]
) -> None:
    bash = "<<<" in script or "[[" in script
    if bash and not shutil.which("bash"):
        pytest.skip("needs bash")
    words = ["bash" if bash else "sh", "-c", script]
    rc, out, err = run(capfd, "--", *words, ":::", "v")
    assert rc == 0, err
    if "{pid}" in output:
        out = re.sub(r"^0 0 \d+x", "0 0 {pid}x", out)
    assert out == output


P, D, S, N = _shell.PLAIN, _shell.DOUBLE, _shell.SINGLE, _shell.RAW


@pytest.mark.parametrize(
    ("script", "kinds"),
    [
        ("echo {} \"{}\" '{}' {#} '{%}' {1} \"{-1/.}\" '{2 //}'", [P, D, S, N, N, P, D, S]),
        ("# a comment '\n{}", [P]),  # the comment ends at the newline
        ("echo `a \\` b` {}", [P]),  # an escaped backquote inside backquotes
        ('echo $"x {}"', [D]),  # bash's $"..."
        ("echo $(( (1 + 2) * 3 )) {}", [P]),
        ("(( (x) )); echo {}", [P]),
        ("echo ${x:-'}'} ${y:-${z}} \"${w#\\}}\" {}", [P]),
        ('echo "$(echo "{}")" "$(echo {})"', [D, P]),
        ("echo $( (echo a) ) {}", [P]),
        ("echo a#b {}", [P]),  # not a comment: # inside a word
        ("echo $# {}", [P]),
        ("echo '$'{}", [P]),
        ("echo \\\\{}", [P]),  # an escaped backslash, then {}
        ('echo "a\\"{}"', [D]),
        ("echo $[1+[2]] {}", [P]),
        ('echo "`echo {#}`" $(({%}))', [N, N]),
        ("echo $'a\\'b' {}", [P]),  # $'...' ends at its quote, \' escaped inside
        ("echo ${x:-{a}} {}", [P]),  # braces nest inside ${...}
    ],
)
def test_shell_fields_follow_the_quoting(script: str, kinds: list[int]) -> None:
    assert shell_fields(script) == kinds


def test_a_field_after_a_backslash_inside_backquotes_is_refused(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Inside backquotes a backslash takes the next character with it, so the scanner
    steps over a field there without placing it: the command is refused, ``{#}`` too."""
    for script in ("echo `\\{}`", "echo `\\{#}`"):
        with pytest.raises(_errors.UsageError, match="cannot place the input in shell code"):
            shell_fields(script)
    rc, out, err = run(capfd, "--shell", "--", "echo `\\{}`", ":::", "a")
    assert (rc, out) == (2, "")
    assert "cannot place the input in shell code" in err
