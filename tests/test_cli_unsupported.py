"""GNU parallel's options that ``asynctasklib run`` does not have (``_cli/_unsupported.py``):
each refused by name with exit status 2, and none of its man page left unknown."""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

import pytest

from asynctasklib._cli import _argparser, _options, _unsupported, main
from asynctasklib._cli._errors import UsageError

MAN_PAGE = Path("/usr/share/man/man1/parallel.1.gz")
PARALLEL = Path("/usr/bin/parallel")


def _documented() -> set[str]:
    """The options GNU parallel's man page describes (each item's first word)."""
    roff = gzip.decompress(MAN_PAGE.read_bytes()).decode(errors="replace")
    items = re.findall(r'^\.IP "\\fB(\\-[^"\\ \[]*(?:\\-[^"\\ \[]*)*)', roff, re.MULTILINE)
    return {item.replace("\\-", "-") for item in items}


@pytest.mark.skipif(not MAN_PAGE.exists(), reason="needs GNU parallel's man page")
def test_every_option_of_gnu_parallels_man_page_is_ours_or_refused() -> None:
    documented = _documented()
    assert {"--pipe", "-S", "--jobs", "-0", "--term-seq", "--_parset"} <= documented
    parser = _argparser.parser()
    known = {name for action in parser._actions for name in action.option_strings}
    known.add("-0")  # (read as --null before argparse sees it)
    assert sorted(documented - known) == []


@pytest.mark.skipif(not PARALLEL.exists(), reason="needs GNU parallel")
def test_each_option_refused_is_one_of_gnu_parallels() -> None:
    """Each name is in the table of options of GNU parallel's own source (a Perl script)."""
    script = PARALLEL.read_text(errors="replace")
    missing = [
        name for name in _unsupported.names()
        if not re.search(r"(?:[\"'|(]|--)" + re.escape(name.lstrip("-")) + r"[|=:\"'\[ ]", script)
    ]  # fmt: skip
    assert missing == []


@pytest.mark.parametrize("name", _unsupported.names())
def test_each_unsupported_option_is_refused_by_name(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in ([name, "touch", "ran", ":::", "a"], ["-k", name, "value", "touch", "ran"]):
        rc = main(argv)
        out, err = capfd.readouterr()
        assert (rc, out) == (2, "")
        assert f"error: option {name} of GNU parallel is not supported" in err
    if name.startswith("--"):
        assert main([f"{name}=value", "touch", "ran"]) == 2
        assert "not supported" in capfd.readouterr().err
    assert not (tmp_path / "ran").exists()


def test_a_hint_says_what_to_do_instead(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["--replace", "echo", ":::", "a"]) == 2
    assert "option --replace of GNU parallel is not supported (use -I STR)" in (
        capfd.readouterr().err
    )


def test_gnu_parallels_other_names_of_our_options(capfd: pytest.CaptureFixture[str]) -> None:
    opts = _options.parse(["-P", "3", "--jl", "log", "--bar", "--outputasfiles", "-q", "echo"])
    assert (opts.jobs, opts.joblog, opts.progress, opts.files) == (3, "log", True, True)
    assert _options.parse(["--eta", "--will-cite", "--gnu", "--silent", "echo"]).progress
    with pytest.raises(UsageError, match="-q/--quote runs the command without a shell"):
        _options.parse(["-q", "--shell", "echo"])
    with pytest.raises(SystemExit):
        _options.parse(["-V"])
    assert capfd.readouterr().out.startswith("asynctasklib ")


def test_docs_list_each_option_refused() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    section = docs[docs.index("## Not supported") : docs.index("## Exit status")]
    assert [name for name in _unsupported.names() if f"`{name}`" not in section] == []


def test_an_option_refused_elsewhere_keeps_its_own_action() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tf", dest="own")
    _unsupported.add_refusals(parser)  # (no conflicting option string)
    assert parser.parse_args(["--tf", "file"]).own == "file"
    with pytest.raises(UsageError, match="option --transferfile of GNU parallel"):
        parser.parse_args(["--transferfile", "file"])
