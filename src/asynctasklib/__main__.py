"""``python -m asynctasklib`` and the ``asynctasklib`` console script."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``asynctasklib demo`` or ``asynctasklib run``, or print the usage or version.

    Args:
        argv: The arguments after the program's name; None for ``sys.argv[1:]``.

    Returns:
        The exit status: 0, 2 for a usage error, else the command's own.
    """
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--version":
        from . import __version__

        print(f"asynctasklib {__version__}")
        return 0
    if not args or args[0] in {"-h", "--help"}:
        # Asked for (--help): on stdout, exit 0; a missing command: on stderr, exit 2.
        print(
            "usage: asynctasklib {demo,run} ...\n"
            "  demo  run a simulated workload through a pool and print its stats\n"
            "  run   run a command once per input, in parallel: "
            "asynctasklib run [OPTIONS] -- COMMAND [ARGS...] [::: INPUT...]\n"
            "        (asynctasklib run --help for the options)\n"
            "  --version  print the version",
            file=sys.stdout if args else sys.stderr,
        )
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from ._demo import main as demo

        return demo(rest)
    if command == "run":
        from ._cli import main as run

        return run(rest)
    print(f"asynctasklib: unknown command {command!r} (try demo or run)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
