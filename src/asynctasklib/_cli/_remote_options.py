"""``--executor`` and ``--scheduler``: where the jobs' commands run (see `_remote`)."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Final

from ._argtypes import value
from ._errors import UsageError
from ._output_options import LINE, UNGROUP

LOCAL: Final = "local"
DASK: Final = "dask"
EXTRA: Final = "pip install 'asynctasklib[dask]'"
_SSH: Final = (("-S", "--sshlogin"), ("--slf", "--sshloginfile"))  # GNU parallel's


def add_remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor", choices=(LOCAL, DASK), metavar="{local,dask}",
        help="where the jobs' commands run: here (local, the default) or on the workers of "
        "a Dask cluster (dask, with --scheduler)",
    )  # fmt: skip
    p.add_argument(
        "--scheduler", type=value, metavar="ADDRESS",
        help="the Dask scheduler to send the jobs' commands to (tcp://HOST:8786); implies "
        "--executor dask",
    )  # fmt: skip
    for flags in _SSH:  # refused (see check_remote)
        p.add_argument(*flags, type=value, dest=_dest(flags), help=argparse.SUPPRESS)


def check_remote(ns: argparse.Namespace) -> str | None:
    """The Dask scheduler's address to run the jobs on (None: they run here); what a
    remote run cannot do refused."""
    for flags in _SSH:
        if getattr(ns, _dest(flags)) is not None:
            raise UsageError(f"GNU parallel's {'/'.join(flags)} is not supported: run the jobs "
                             "on a Dask cluster's workers with --scheduler ADDRESS")  # fmt: skip
    executor = ns.executor or (DASK if ns.scheduler is not None else LOCAL)
    if executor == LOCAL:
        if ns.scheduler is not None:
            raise UsageError("--scheduler sends the jobs to a Dask cluster, not --executor local")
        return None
    if not ns.scheduler:
        raise UsageError("--executor dask needs --scheduler ADDRESS (the Dask scheduler's)")
    # The output comes back whole when the remote command ends: none can be live.
    for flag, on in (("--line-buffer", ns.output == LINE), ("-u", ns.output == UNGROUP)):
        if on:
            raise UsageError(f"--executor dask cannot be combined with {flag} (a job's output "
                             "comes back whole when its command ends)")  # fmt: skip
    if not ns.dry_run and importlib.util.find_spec("distributed") is None:
        raise UsageError(f"--executor dask needs Dask's distributed package: {EXTRA}")
    scheduler: str = ns.scheduler
    return scheduler


def _dest(flags: tuple[str, str]) -> str:
    return flags[1].lstrip("-")
