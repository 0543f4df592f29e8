"""The command template (``_cli/_template.py``): ``{}`` and ``{#}``, the input quoted in
shell code so that it never runs as code, and GNU parallel's syntax, checked against GNU
parallel itself where it is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctasklib._cli import _errors, _template, main
from cli_helpers import TIMEOUT, run


def test_placeholders_are_substituted(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "-k", "--", "echo", "{#}:{}", "x{}y", "{#}", ":::", "a", "b b", "{#}{}")
    assert rc == 0
    # An input that contains the placeholders is not substituted again.
    assert out.splitlines() == ["1:a xay 1", "2:b b xb by 2", "3:{#}{} x{#}{}y 3"]


def test_input_is_appended_without_braces(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "-k", "--", "printf", "<%s>", ":::", "a b", "c")
    assert rc == 0
    assert out == "<a b><c>"
    # {#} alone does not count: the input is still appended (the rule is about {}).
    rc, out, _ = run(capfd, "-k", "--", "echo", "n{#}", ":::", "a", "b")
    assert out.splitlines() == ["n1 a", "n2 b"]


def test_shell_quotes_the_input(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    nasty = ["it's", 'say "hi"', "$HOME", "a; touch pwned", "`id`", "tab\there", "*"]
    rc, out, _ = run(capfd, "-k", "--shell", "--", "printf '%s|' {} {#}; echo", ":::", *nasty)
    assert rc == 0
    assert out.splitlines() == [f"{v}|{i}|" for i, v in enumerate(nasty, 1)]
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()
    # Without {}, the quoted input is appended to the script.
    rc, out, _ = run(capfd, "--shell", "--", "echo $((1 + 1))", ":::", "a b")
    assert (rc, out) == (0, "2 a b\n")


def test_shell_runs_a_pipeline(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "-k", "--shell", "--", "echo {} | tr a-z A-Z", ":::", "ab", "cd")
    assert (rc, out.splitlines()) == (0, ["AB", "CD"])


# Inputs that run `touch PWNED` if they reach a shell as code, in any quoting context.
HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "a b; touch PWNED",
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "'\"$(touch PWNED)\"'",
    "\ntouch PWNED\n",
    "x\\",
    "\\'",
    "it's",
    "*",
    "~",
    "a,b",
    "if",
    "PATH=/nonexistent",
    "",
    "caf\udcc3\udca9 \udcff",  # invalid UTF-8 (surrogateescape)
]


SHELLS = [s for s in ("/bin/sh", "dash", "bash", "zsh", "ksh", "mksh") if shutil.which(s)]


@pytest.mark.parametrize(
    ("template", "expect"),
    [
        ("printf '<%s>' {}", "<{}>"),
        ("printf '<%s>' \"{}\"", "<{}>"),
        ("printf '<%s>' '{}'", "<{}>"),
        ("printf '<%s>' x{}y", "<x{}y>"),
        ("printf '<%s>' \"a {} b\"", "<a {} b>"),
        ("printf '<%s>' 'a {} b'", "<a {} b>"),
        ("printf '<%s>' \"$(printf '%s.' {})\"", "<{}.>"),
        ("printf '<%s>' \"$(printf '%s.' \"{}\")\"", "<{}.>"),
        ("v={}; printf '<%s>' \"$v\"", "<{}>"),
        ("printf '<%s>'", "<{}>"),  # appended
    ],
)
def test_shell_input_never_runs_as_code_whatever_the_quotes(
    template: str, expect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    rc = main(["-k", "--shell", "--", template, ":::", *HOSTILE])
    out, err = capfdbinary.readouterr()
    assert rc == 0, err
    assert out == b"".join(os.fsencode(expect.replace("{}", v)) for v in HOSTILE)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["sh", "-c", "printf '<%s>' x{}y"],
        ["sh", "-ec", "printf '<%s>' \"x{}y\""],
        ["/bin/sh", "-e", "-o", "nounset", "-c", "printf '<%s>' 'x{}y'"],
        ["env", "LC_ALL=C", "sh", "-c", "printf '<%s>' x{}y"],
        ["sh", "-c", "printf '<%s>' \"$1\"", "sh", "x{}y"],  # as an argument: no quoting
        ["printf", "<%s>", "x{}y"],
    ],
)
def test_a_shell_c_script_in_the_command_gets_the_input_quoted(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    rc = main(["-k", "--", *command, ":::", *HOSTILE])
    out, err = capfdbinary.readouterr()
    assert rc == 0, err
    assert out == b"".join(b"<x" + os.fsencode(v) + b"y>" for v in HOSTILE)
    assert not (tmp_path / "PWNED").exists()


def test_the_sh_c_example_of_the_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run(capfd, "sh", "-c", "echo x{}y", ":::", "$(touch PWNED)")
    assert (rc, out) == (0, "x$(touch PWNED)y\n")
    rc, out, _ = run(capfd, "--shell", "--", 'echo "{}"', ":::", "$(touch PWNED)")
    assert (rc, out) == (0, "$(touch PWNED)\n")
    assert not (tmp_path / "PWNED").exists()
    rc, out, _ = run(capfd, "--dry-run", "--", "sh", "-c", "echo x{}y", ":::", "a b")
    assert out == "sh -c 'echo x'\"'\"'a b'\"'\"'y'\n"


# Each context, and what the script prints there for an input v (NUL-separated).
CONTEXTS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("printf '%s\\0' {}", lambda v: v),
    ('printf "%s\\0" "{}"', lambda v: v),
    ("printf '%s\\0' '{}'", lambda v: v),
    ("printf '%s\\0' x{}y", lambda v: b"x" + v + b"y"),
    ("printf '%s\\0' \"a {} b\"", lambda v: b"a " + v + b" b"),
    ("printf '%s\\0' 'a {} b'", lambda v: b"a " + v + b" b"),
    ("printf '%s\\0' \"x\"{}'y'", lambda v: b"x" + v + b"y"),
    ("printf '%s\\0' '\"'{}\"'\"", lambda v: b'"' + v + b"'"),
    ("printf '%s\\0' \"$(printf '%s.' {})\"", lambda v: v + b"."),
    ("printf '%s\\0' \"$(printf '%s.' \"{}\")\"", lambda v: v + b"."),
    ("printf '%s\\0' \"$(printf '%s.' '{}')\"", lambda v: v + b"."),
    ("printf '%s\\0' $(printf '%s' {#})", lambda v: b"1"),
    ("w={}; printf '%s\\0' \"$w\"", lambda v: v),
    ("printf '%s\\0' {} | cat", lambda v: v),
]


SCRIPT = "\n".join(c for c, _ in CONTEXTS)


@pytest.mark.timeout(300)  # a few shells per example, on a loaded machine
@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=12).filter(lambda b: b"\0" not in b),
            st.sampled_from([os.fsencode(h) for h in HOSTILE]),
            st.sampled_from([b"'", b'"', b"\\", b"$", b"`", b"\n", b"}", b"(", b"#", b"\xff"]),
        ),
        max_size=6,
    ).map(b"".join)
)
def test_quoting_property_every_context_every_shell(value: bytes) -> None:
    text = os.fsdecode(value)
    expected = b"".join(expect(value) + b"\0" for _, expect in CONTEXTS)
    with tempfile.TemporaryDirectory() as cwd:
        runs = [_template.Template([SCRIPT], shell=True).argv(1, 0, [text])]
        for shell in SHELLS:
            runs.append(_template.Template([shell, "-c", SCRIPT], shell=False).argv(1, 0, [text]))
        for argv in runs:
            done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TIMEOUT)
            assert (argv[0], done.stdout, done.stderr) == (argv[0], expected, b"")
            assert os.listdir(cwd) == []  # nothing else happened


def test_shells_with_other_quoting_rules_are_refused(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(_errors.UsageError, match="cannot quote the input for fish's -c code"):
        _template.Template(["fish", "-c", "echo {}"], shell=False)
    with pytest.raises(_errors.UsageError, match="for csh's -c code"):
        _template.Template(["env", "/bin/csh", "-c", "echo {}"], shell=False)
    # As an argument it is fine (no shell reads it as code).
    opts = _template.Template(["fish", "-c", "echo $argv", "{}"], shell=False)
    assert opts.argv(1, 0, ["$(x)"]) == ["fish", "-c", "echo $argv", "$(x)"]


def test_quoting_helpers() -> None:
    q = _template.sh_quote
    assert [q("abc"), q("a/b.c-1"), q("")] == ["abc", "a/b.c-1", "''"]
    # Reserved words, assignments and brace lists are quoted although shlex would not.
    assert [q("if"), q("A=1"), q("a,b"), q("it's")] == ["'if'", "'A=1'", "'a,b'", "'it'\"'\"'s'"]
    assert _errors.show("a\udcffb") == "'a\\xffb'"
    assert _errors.show("a\nb") == "'a\\nb'"
    assert _errors.show("ok") == "ok"
    # The -c word of a shell, after its options; none without -c.
    index = _template.shell_script_index
    assert index(["sh", "-c", "s"], 0) == 2
    assert index(["bash", "--norc", "-o", "pipefail", "-ec", "s", "a0"], 0) == 5
    assert index(["bash", "--rcfile", "f", "-c", "--", "s"], 0) == 5
    assert index(["sh", "+x", "-c", "-", "s"], 0) == 4
    assert index(["sh", "script.sh", "-c"], 0) is None
    assert index(["sh", "-c"], 0) is None


def _parallel(tmp_path: Path, *argv: str) -> bytes:
    env = {**os.environ, "HOME": str(tmp_path), "PARALLEL_SHELL": "/bin/sh"}
    done = subprocess.run(
        ["parallel", "--will-cite", "-k", "-j1", *argv],
        cwd=tmp_path, env=env, capture_output=True, timeout=240, check=False,  # (slow start)
    )  # fmt: skip
    return done.stdout


needs_parallel = pytest.mark.skipif(shutil.which("parallel") is None, reason="needs GNU parallel")


@needs_parallel
@pytest.mark.timeout(300)  # GNU parallel is slow to start on a loaded machine
def test_output_matches_gnu_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Where GNU parallel's own quoting is right (``{}`` outside quotes) the output is the
    same, hostile inputs included. Inside "..." or '...' parallel pastes its quoted value
    in (so `echo "{}"` prints the quotes, and runs `$(...)`); there the output is the same
    for inputs that need no quoting, and is the input itself for the others."""
    monkeypatch.chdir(tmp_path)
    plain = ["abc", "a.b", "x-1", "/tmp/f_2"]
    cases = [  # (one script per parallel run: each takes a while to start)
        ("echo {}; echo x{}y; echo {} {#}", HOSTILE),
        ("echo \"{}\"; echo '{}'; echo \"a {} b\"; echo 'a {} b'", plain),
    ]
    for template, values in cases:
        values = [v for v in values if "\n" not in v]  # (parallel splits ::: a\nb in two)
        theirs = _parallel(tmp_path, template, ":::", *values)
        rc = main(["-k", "-j1", "--shell", "--", template, ":::", *values])
        ours = capfdbinary.readouterr().out
        assert (template, rc, ours) == (template, 0, theirs)
        assert not (tmp_path / "PWNED").exists()


# Brace forms: GNU parallel (without --plus) replaces the first group, not the second.
REPLACEMENT_STRINGS = ["{.}", "{/}", "{//}", "{/.}", "{%}", "{1}", "{2.}", "{-1}", "{1 }",
                       "{3/.}", "{0#}", "{12//}", "{1%}", "{=$_.=\"z\"=}", "{=1 $_=}"]  # fmt: skip


NOT_REPLACEMENT_STRINGS = ["{a,b}", "${HOME}", "{print $1}", "{..}", "{+/}", "{##}", "{ }",
                           "{ 1}", "{1..5}", "{+1}", "{1=$_=}", "{=", "{x}"]  # fmt: skip


@pytest.mark.parametrize("brace", REPLACEMENT_STRINGS)
def test_unsupported_replacement_strings_are_refused(
    brace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran"
    shell = ["--shell", f"touch {marker} {brace}"]
    for argv in (["--", "touch", str(marker), f"x{brace}y"], shell):
        rc, out, err = run(capfd, *argv, ":::", "a")
        assert (rc, out) == (2, "")
        assert f"the replacement string {brace} is not supported" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("brace", NOT_REPLACEMENT_STRINGS)
def test_braces_that_are_not_replacement_strings_are_passed_on(
    brace: str, capfd: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capfd, "--", "printf", "%s|", brace, ":::", "a")
    assert (rc, out) == (0, f"{brace}|a|"), err


@needs_parallel
@pytest.mark.timeout(300)
def test_replacement_strings_are_those_of_gnu_parallel(tmp_path: Path) -> None:
    braces = REPLACEMENT_STRINGS + NOT_REPLACEMENT_STRINGS + ["{}", "{#}"]
    # Few parallel runs (each takes a while to start): the braces as words of one command,
    # except those with {= or =}, which parallel joins across words: one run each.
    perl = [b for b in braces if "{=" in b or "=}" in b]
    groups = [[b for b in braces if b not in perl]] + [[b] for b in perl]
    for group in groups:
        words = [f"<{i}:{brace}>" for i, brace in enumerate(group)]
        line = os.fsdecode(_parallel(tmp_path, "--dry-run", "echo", *words, ":::", "d/a.b"))
        assert line.startswith("echo <0:")
        for word, brace in zip(words, group, strict=True):
            replaced = word not in line
            try:
                _template.Template(["echo", word], shell=False)
                refused = False
            except _errors.UsageError:
                refused = True
            assert (brace, replaced) == (brace, refused or brace in ("{}", "{#}"))


def test_awk_and_shell_braces_still_run(capfd: pytest.CaptureFixture[str]) -> None:
    awk = ["awk", "-v", "v={}", "BEGIN { print v } {print $1}", "/dev/null"]
    rc, out, _ = run(capfd, "--", *awk, ":::", "x")
    assert (rc, out) == (0, "x\n")
    rc, out, err = run(capfd, "--shell", "--", "echo ${HOME:+set} {a,b}", ":::", "x")
    assert (rc, out) == (0, "set {a,b} x\n"), err  # (sh: no brace expansion)


def test_gzip_example_of_the_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a").write_text("A")
    rc, _, err = run(capfd, "--shell", "--", "gzip -c {} > {.}.gz", ":::", "a")
    assert rc == 2
    assert "{.}" in err
    assert os.listdir(".") == ["a"]
