"""GNU parallel's options that ``asynctasklib run`` does not have (those of its man page,
version 20221122): each one is refused by name, with exit status 2, rather than taken for
the command or met with argparse's generic error."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Final

from ._errors import UsageError

# Each option by all its names, and what to do instead, where there is something.
UNSUPPORTED: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    # Remote computers.
    (("--ssh",), ""),  # (-S and --slf: refused by _remote_options, pointing to --scheduler)
    (("--ssh-delay",), ""), (("-M", "--controlmaster"), ""), (("--filter-hosts",), ""),
    (("--hostgroups", "--hgrp"), ""), (("--onall",), ""), (("--nonall",), ""),
    (("--transfer",), ""), (("--transferfile", "--tf"), ""), (("--return",), ""),
    (("--trc",), ""), (("--cleanup",), ""), (("--basefile", "--bf"), ""),
    (("--rsync-opts",), ""),
    # Standard input cut into blocks for the jobs.
    (("--pipe", "--spreadstdin"), ""), (("--pipe-part", "--pipepart"), ""),
    (("--block", "--block-size"), ""), (("--block-timeout", "--bt"), ""),
    (("--recstart",), ""), (("--recend",), ""), (("--regexp",), ""),
    (("--remove-rec-sep", "--removerecsep", "--rrs"), ""), (("--round-robin", "--round"), ""),
    (("--cat",), ""), (("--fifo",), ""), (("--tee",), ""), (("--shard",), ""),
    (("--bin",), ""), (("--group-by",), ""),
    # Inputs and replacement strings.
    (("-i", "--replace"), "use -I STR"),
    (("--header",), ""), (("--csv",), "use --colsep ,"), (("--skip-first-line",), ""),
    (("--trim",), "--colsep trims each column"), (("--shuf",), ""), (("-E",), ""),
    (("-e", "--eof"), ""), (("--arg-sep",), ""), (("--arg-file-sep",), ""),
    (("--plus",), ""), (("--rpl",), ""), (("--parens",), ""), (("-L", "--max-lines"), ""),
    (("-l",), ""), (("-x", "--exit"), ""),
    (("-r", "--no-run-if-empty"), ""), (("--filter",), ""), (("--template", "--tmpl"), ""),
    (("--process-slot-var",), ""), (("--total-jobs", "--total"), ""),
    # Running the jobs.
    (("--workdir", "--wd"), "cd to the directory first"),
    (("--env",), "the jobs get the runner's environment"), (("--record-env",), ""),
    (("--session",), ""), (("--tmpdir",), "set TMPDIR"),
    (("--memsuspend",), ""), (("--limit",), ""),
    (("--nice",), "run nice asynctasklib run ..."), (("--noswap",), ""),
    (("--fg",), ""), (("--bg",), ""), (("--semaphore",), ""),
    (("--semaphore-name", "--id"), ""), (("--semaphore-timeout", "--st"), ""),
    (("--wait",), ""), (("--sql",), ""), (("--sqlmaster", "--sql-master"), ""),
    (("--sqlworker", "--sql-worker"), ""), (("--sqlandworker", "--sql-and-worker"), ""),
    (("-p", "--interactive"), ""), (("-o", "--open-tty"), ""), (("--tty",), ""),
    (("--number-of-cpus",), ""), (("--number-of-cores",), ""),
    (("--number-of-sockets",), ""), (("--number-of-threads",), ""),
    (("--use-sockets-instead-of-threads",), ""), (("--use-cores-instead-of-threads",), ""),
    (("--use-cpus-instead-of-cores",), ""), (("--max-line-length-allowed",), ""),
    (("--show-limits",), ""),
    # Output.
    (("-t", "--verbose"), "--dry-run prints the commands"), (("-v",), ""),
    (("--ctag",), ""), (("--ctagstring",), ""), (("--color",), ""),
    (("--color-failed", "--cf"), ""), (("--latest-line", "--ll"), ""), (("--compress",), ""),
    (("--compress-program",), ""), (("--decompress-program",), ""),
    (("--tmux",), ""), (("--tmuxpane",), ""), (("--no-keep-order", "--nok"), ""),
    # The program itself.
    (("--shebang", "--hashbang"), ""), (("--shebang-wrap",), ""), (("--embed",), ""),
    (("--shell-completion",), ""), (("--shell-quote",), ""), (("--profile", "-J"), ""),
    (("--plain",), ""), (("--minversion", "--min-version"), ""), (("--citation",), ""),
    (("--_parset",), ""),
)  # fmt: skip


class _Refuse(argparse.Action):
    """An option of GNU parallel's that is not supported: refused as soon as it is met."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        hint = f" ({self.const})" if self.const else ""
        raise UsageError(f"option {option_string} of GNU parallel is not supported{hint}")


def add_refusals(parser: argparse.ArgumentParser) -> None:
    """Each option of `UNSUPPORTED`, to be refused by name (hidden from the help).

    Each takes an optional value, so that a value given to it (``-S host``) is not read as
    the command, and it is refused before anything else. A name the parser has already (an
    option refused elsewhere with a message of its own) is left to it."""
    known = {name for action in parser._actions for name in action.option_strings}
    for names, hint in UNSUPPORTED:
        if unknown := [name for name in names if name not in known]:
            parser.add_argument(
                *unknown, nargs="?", const=hint, action=_Refuse, dest="_unsupported",
                help=argparse.SUPPRESS,
            )  # fmt: skip


def names() -> list[str]:
    """Every name of every option refused, as listed in docs/cli.md."""
    return [name for option, _ in UNSUPPORTED for name in option]
