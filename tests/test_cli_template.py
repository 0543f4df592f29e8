"""The command template (``_cli/_template.py``, ``_replace.py``): GNU parallel's replacement
strings, the input quoted in shell code so that it never runs as code, the job slots. The
comparisons with GNU parallel itself are in test_cli_oracle_template.py.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctasklib._cli import _errors, _feeder, _replace, _template, main
from cli_helpers import TIMEOUT, run


def test_placeholders_are_substituted(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capfd, "-k", "--", "echo", "{#}:{}", "x{}y", "{#}", ":::", "a", "b b", "{#}{}")
    assert rc == 0
    # An input that contains the placeholders is not substituted again.
    assert out.splitlines() == ["1:a xay 1", "2:b b xb by 2", "3:{#}{} x{#}{}y 3"]


def test_input_is_appended_without_any_replacement_string(
    capfd: pytest.CaptureFixture[str],
) -> None:
    rc, out, _ = run(capfd, "-k", "--", "printf", "<%s>", ":::", "a b", "c")
    assert rc == 0
    assert out == "<a b><c>"
    # As in GNU parallel, any replacement string counts, {#} too: nothing is appended.
    rc, out, _ = run(capfd, "-k", "--", "echo", "n{#}", ":::", "a", "b")
    assert out.splitlines() == ["n1", "n2"]
    # With -I XX, {} is no replacement string: the input is appended.
    rc, out, _ = run(capfd, "-k", "-I", "XX", "--", "echo", "{}", "{1}", ":::", "a")
    assert (rc, out) == (0, "{} {1} a\n")
    # A shell's -c script that would be the input: quoted, so it is a command's name.
    rc, out, err = run(capfd, "--", "sh", "-c", ":::", "echo PWNED")
    assert (rc, out) == (1, "")
    assert "echo PWNED: not found" in err


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
    "-n",
    "--version",
    "a.$(touch PWNED)",  # (what {.}, {/}, {//} leave of these is hostile too)
    "$(touch PWNED)/b.c",
    "`touch PWNED`.d/'e;touch PWNED'",
    'x/"$(touch PWNED)"',
]


SHELLS = [s for s in ("/bin/sh", "dash", "bash", "zsh", "ksh", "mksh") if shutil.which(s)]

# The replacement strings that carry input, and how each changes the one argument of a job.
INPUT_STRINGS = {"{}": "", "{.}": ".", "{/}": "/", "{//}": "//", "{/.}": "/.", "{1}": "",
                 "{-1}": "", "{1.}": ".", "{1/.}": "/.", "{1 //}": "//",
                 "{-1/.}": "/."}  # fmt: skip


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
    """Every replacement string that carries input, in each context (one script each)."""
    monkeypatch.chdir(tmp_path)
    strings = INPUT_STRINGS if "{}" in template else {"{}": ""}
    script = "; ".join(template.replace("{}", rs) for rs in strings)
    rc = main(["-k", "--shell", "--", script, ":::", *HOSTILE])
    out, err = capfdbinary.readouterr()
    assert rc == 0, err
    assert out == b"".join(
        os.fsencode(expect.replace("{}", _replace.change(v, how)))
        for v in HOSTILE
        for how in strings.values()
    )
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("rs", ["{}", "{.}", "{//}", "{1/.}"])
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
    command: list[str], rs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    command = [word.replace("{}", rs) for word in command]
    rc = main(["-k", "--", *command, ":::", *HOSTILE])
    out, err = capfdbinary.readouterr()
    assert rc == 0, err
    how = INPUT_STRINGS[rs]
    assert out == b"".join(b"<x" + os.fsencode(_replace.change(v, how)) + b"y>" for v in HOSTILE)
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


def _each(args: tuple[str, ...], how: str = "") -> str:
    """The arguments, each changed as ``how`` says, as words that printf '%s\\0' prints."""
    return "\0".join(_replace.change(arg, how) for arg in args)


def _joined(args: tuple[str, ...], how: str = "") -> str:
    return " ".join(_replace.change(arg, how) for arg in args)


# Each context, and what the script prints there for a job's arguments (NUL-separated): in
# plain shell code {} is a word for each argument, in quotes one word, as GNU parallel.
CONTEXTS: list[tuple[str, Callable[[tuple[str, ...]], str]]] = [
    ("printf '%s\\0' {}", _each),
    ('printf "%s\\0" "{}"', _joined),
    ("printf '%s\\0' '{}'", _joined),
    ("printf '%s\\0' x{}y", lambda a: "x" + _each(a) + "y"),
    ("printf '%s\\0' \"a {} b\"", lambda a: "a " + _joined(a) + " b"),
    ("printf '%s\\0' 'a {} b'", lambda a: "a " + _joined(a) + " b"),
    ("printf '%s\\0' \"x\"{}'y'", lambda a: "x" + _each(a) + "y"),
    ("printf '%s\\0' '\"'{}\"'\"", lambda a: '"' + _each(a) + "'"),
    ("printf '%s\\0' \"$(printf '%s.' {})\"", lambda a: "".join(v + "." for v in a)),
    ("printf '%s\\0' \"$(printf '%s.' \"{}\")\"", lambda a: _joined(a) + "."),
    ("printf '%s\\0' \"$(printf '%s.' '{}')\"", lambda a: _joined(a) + "."),
    ("printf '%s\\0' $(printf '%s' {#}{%})", lambda a: "17"),
    ("w={1}; printf '%s\\0' \"$w\"", lambda a: a[0]),
    ('w="{}"; printf \'%s\\0\' "$w"', _joined),
    ("printf '%s\\0' {} | cat", _each),
    (
        "printf '%s\\0' {1} \"{-1}\" '{2}' {0} {3}",
        lambda a: "\0".join([a[0], a[-1], a[1] if len(a) > 1 else "", _each(a)]),  # {3}: none
    ),
    (
        "printf '%s\\0' {/} \"{.}\" '{//}' {-1/.}",
        lambda a: "\0".join(
            [_each(a, "/"), _joined(a, "."), _joined(a, "//"), _each(a[-1:], "/.")]
        ),
    ),
]


SCRIPT = "\n".join(c for c, _ in CONTEXTS)

_VALUE = st.lists(
    st.one_of(
        st.binary(max_size=12).filter(lambda b: b"\0" not in b),
        st.sampled_from([os.fsencode(h) for h in HOSTILE]),
        st.sampled_from(
            [b"'", b'"', b"\\", b"$", b"`", b"\n", b"}", b"(", b"#", b"\xff", b"/", b"."]
        ),
    ),
    max_size=6,
).map(lambda parts: os.fsdecode(b"".join(parts)))


@pytest.mark.timeout(300)  # a few shells per example, on a loaded machine
@settings(max_examples=50, deadline=None)
@given(st.lists(_VALUE, min_size=1, max_size=2).map(tuple))
def test_quoting_property_every_context_every_shell(args: tuple[str, ...]) -> None:
    expected = os.fsencode("".join(expect(args) + "\0" for _, expect in CONTEXTS))
    with tempfile.TemporaryDirectory() as cwd:
        runs = [_template.Template([SCRIPT], shell=True).argv(1, 7, args)]
        for shell in SHELLS:
            runs.append(_template.Template([shell, "-c", SCRIPT], shell=False).argv(1, 7, args))
        for argv in runs:
            done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=TIMEOUT)
            assert (argv[0], done.stdout, done.stderr) == (argv[0], expected, b"")
            assert os.listdir(cwd) == []  # nothing else happened


def test_shells_with_other_quoting_rules_are_refused(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(_errors.UsageError, match="cannot quote the input for fish's -c code"):
        _template.Template(["fish", "-c", "echo {}"], shell=False)
    with pytest.raises(_errors.UsageError, match="for csh's -c code"):
        _template.Template(["env", "/bin/csh", "-c", "echo {}"], shell=False)
    with pytest.raises(_errors.UsageError, match="for fish's -c code"):
        _template.Template(["fish", "-c", "echo {2/.}"], shell=False)
    # As an argument it is fine (no shell reads it as code); so are numbers in the code.
    opts = _template.Template(["fish", "-c", "echo $argv {#}-{%}", "{}"], shell=False)
    assert opts.argv(3, 2, ("$(x)",)) == ["fish", "-c", "echo $argv 3-2", "$(x)"]


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


# Strings GNU parallel (without --plus) reads as replacement strings, but that are refused:
# {= perl =} expressions, and the positional forms of {#} and {%}, which it garbles.
REFUSED = ["{0#}", "{1%}", "{2 #}", "{-1%}", '{=$_.="z"=}', "{=1 $_=}"]


NOT_REPLACEMENT_STRINGS = ["{a,b}", "${HOME}", "{print $1}", "{..}", "{+/}", "{##}", "{ }",
                           "{ 1}", "{1..5}", "{+1}", "{1=$_=}", "{=", "{x}", "{1x}", "{-}",
                           "{1.1}", "{/..}", "{%%}", "{#1}"]  # fmt: skip


@pytest.mark.parametrize("brace", REFUSED)
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
    rc, out, err = run(capfd, "--", "printf", "%s|", brace, "{}", ":::", "a")
    assert (rc, out) == (0, f"{brace}|a|"), err


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
    Path("a.txt").write_text("A")
    Path("b").write_text("B")
    rc, _, err = run(capfd, "--shell", "--", "gzip -c {} > {.}.gz", ":::", "a.txt", "b")
    assert rc == 0, err
    assert sorted(os.listdir(".")) == ["a.gz", "a.txt", "b", "b.gz"]
    assert gzip.decompress(Path("a.gz").read_bytes()) == b"A"


def test_several_arguments_of_a_job() -> None:
    """``{}`` gives each argument as a word of its own where it stands as plain arguments
    or bare in shell code, one word inside quotes; a position past the end gives nothing
    (no word, where nothing else is in it), as in GNU parallel."""
    words = ["printf", "%s|", "{}", "x{}y", "{2}", "{3}", "{-3}", "{0}", "{00}", "{-0}", "{2.}",
             "x{3}y"]  # fmt: skip
    plain = _template.Template(words, shell=False)
    assert plain.argv(4, 1, ("a b", "c.d")) == [
        "printf", "%s|", "a b", "c.d", "xa b", "c.dy", "c.d", "c.d", "a b", "c.d", "c", "xy",
    ]  # fmt: skip
    shell = _template.Template(['echo {} "{}" \'{2}\' x{-1}y {#}{%} {3} "{3}"'], shell=True)
    assert shell.argv(4, 2, ("a b", "c")) == [
        "/bin/sh", "-c", "echo 'a b' c \"\"'a b c'\"\" ''c'' xcy 42  \"\"''\"\"",
    ]  # fmt: skip
    # No replacement string: each argument is appended as a word of its own.
    assert _template.Template(["echo"], shell=False).argv(1, 1, ("a b", "")) == ["echo", "a b", ""]
    appended = _template.Template(["echo"], shell=True).argv(1, 1, ("a b", ""))
    assert appended == ["/bin/sh", "-c", "echo 'a b' ''"]
    # A job without arguments (-n 0): {} gives no word, x{}y gives xy (GNU parallel's
    # `-n0 echo [{}] {} x` prints `[] x`).
    assert plain.argv(1, 1, ()) == ["printf", "%s|", "xy", "xy"]
    # A command of no words: an empty command line, which succeeds (as in GNU parallel).
    assert _template.Template(["{2}"], shell=False).argv(1, 1, ("a",)) == ["/bin/sh", "-c", ""]
    assert _template.Template(["", "{}"], shell=True).argv(1, 1, ("a",))[2] == " a"


def test_renamed_replacement_strings(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capfd, "--dry-run", "-I", "@", "--bnr", "{b}", "--seqreplace", "N", "--slotreplace", "{s}",
        "--", "echo", "@", "{b}", "{1b}", "N", "{s}", "{}", "{1}", ":::", "d/a.b",
    )  # fmt: skip
    assert (rc, out) == (0, "echo d/a.b a.b a.b 1 1 '{}' '{1}'\n"), err
    # A positional form of a renamed {#} or {%} is refused as theirs are.
    rc, out, err = run(capfd, "--slotreplace", "{s}", "--", "echo", "{1s}", ":::", "a")
    assert (rc, out) == (2, "")
    assert "the replacement string {1s} is not supported" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-I", ""], "-I: the replacement string must not be empty"),
        (["--er", ""], "--extensionreplace: the replacement string must not be empty"),
        (["--bnr", "{(x)}"], "--basenamereplace: parentheses in '{(x)}' are not supported"),
        (["-I", ":::"], "expected a value, got ':::'"),
    ],
)
def test_bad_replacement_string_names_are_refused(
    argv: list[str], message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capfd, *argv, "--", "echo", ":::", "a")
    assert (rc, out) == (2, "")
    assert message in err


def test_job_slots_reuse_the_slot_freed_first() -> None:
    slots = _feeder.JobSlots()
    assert [slots.take() for _ in range(3)] == [1, 2, 3]
    slots.free(3)
    slots.free(1)
    assert [slots.take() for _ in range(3)] == [3, 1, 4]


def test_job_slots_in_a_run(capfd: pytest.CaptureFixture[str]) -> None:
    """Never more slots than jobs at once; the dry run shows each job alone, in slot 1."""
    rc, out, err = run(capfd, "-j3", "--", "echo", "{%}", ":::", *map(str, range(30)))
    assert rc == 0, err
    assert set(out.split()) <= {"1", "2", "3"}
    rc, out, _ = run(capfd, "-j3", "--dry-run", "--", "echo", "{#}:{%}", ":::", "a", "b")
    assert out.splitlines() == ["echo 1:1", "echo 2:1"]
