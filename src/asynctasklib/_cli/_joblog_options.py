"""The options of ``--halt`` and of the joblog: writing it, and reading it back
(``--resume``, ``--resume-failed``, ``--retry-failed``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ._argtypes import value
from ._errors import UsageError

if TYPE_CHECKING:
    from ._halt import HaltSpec


def add_halt_and_joblog(p: argparse.ArgumentParser) -> None:
    """--halt, --halt-on-error, --joblog and the options that read a joblog back."""
    p.add_argument(
        "--halt", type=value, metavar="WHEN,WHAT=N",
        help="stop the run early, as GNU parallel: WHEN now (cancel the running jobs) or "
        "soon (let them finish), WHAT fail, success or done, N jobs or N%% of them; "
        "also never, 0, 1, 2, -1, -2 and N%%",
    )  # fmt: skip
    p.add_argument(
        "--halt-on-error", action="store_true",
        help="the first job that fails cancels the others and stops the run: "
        "--halt now,fail=1",
    )  # fmt: skip
    p.add_argument(
        "--joblog", type=value, metavar="FILE",
        help="write GNU parallel's joblog, one tab-separated row per job that ended "
        "('-': standard output; +FILE: append to FILE)",
    )  # fmt: skip
    p.add_argument(
        "--resume", action="store_true",
        help="skip the jobs with a row in --joblog FILE; append the others' rows",
    )  # fmt: skip
    p.add_argument(
        "--resume-failed", action="store_true",
        help="skip the jobs that succeeded in --joblog FILE; run the failed ones again, "
        "and those not in it",
    )  # fmt: skip
    p.add_argument(
        "--retry-failed", action="store_true",
        help="run again the command lines of the failed jobs in --joblog FILE (the "
        "command and inputs given are ignored)",
    )  # fmt: skip


def halt_of(ns: argparse.Namespace) -> HaltSpec | None:
    from ._halt import HaltSpec, parse_halt  # (not for --help)

    if ns.halt_on_error:
        if ns.halt is not None:
            raise UsageError("give --halt or --halt-on-error, not both")
        return HaltSpec("now", "fail", 1, None)
    return None if ns.halt is None else parse_halt(ns.halt)


def check_joblog_reuse(ns: argparse.Namespace) -> None:
    """--resume, --resume-failed and --retry-failed read the --joblog FILE: one at most."""
    given = [
        f"--{n}"
        for n in ("resume", "resume-failed", "retry-failed")
        if getattr(ns, n.replace("-", "_"))
    ]
    if not given:
        return
    if len(given) > 1:
        raise UsageError(f"give only one of {', '.join(given)}")
    if ns.joblog is None or ns.joblog == "-":
        raise UsageError(f"{given[0]} needs --joblog FILE (the joblog of the earlier run)")
