"""``--executor`` and ``--scheduler``: where the jobs' commands run (see `_remote`)."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Final

from ._errors import UsageError
from ._output_options import LINE, UNGROUP, value

LOCAL: Final = "local"
DASK: Final = "dask"
EXTRA: Final = "pip install 'asynctasklib[dask]'"


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


def check_remote(ns: argparse.Namespace) -> str | None:
    """The Dask scheduler's address to run the jobs on (None: they run here); what a
    remote run cannot do refused."""
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
