"""Where each job's output goes, by output mode: kept whole (``--group``, the default),
written line by line (``--line-buffer``), passed straight through (``--ungroup``), or
saved in files (``--files``, ``--results DIR``), as GNU parallel lays them out.

`JobOutput` makes each attempt's `Attempt` (the descriptors its stdout and stderr get,
and what collects its pipes), and writes each job's output when it ends.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import tempfile
from typing import TYPE_CHECKING, Final

from ._errors import CannotStartError, UsageError
from ._output import LineStream, Ordered, Sink, Spool, Store
from ._output_options import LINE, UNGROUP
from ._table import kind
from ._template import Template

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._job import Job
    from ._options import Options

_OUT_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def _escape(arg: str) -> str:
    """An argument as one directory name, as GNU parallel's --results writes it: ``\\``,
    TAB, NUL and ``/`` as ``\\\\``, ``\\t``, ``\\0`` and ``\\_``. (Nothing else: ``.``,
    ``..`` and the empty string are kept, as parallel keeps them; they stay inside DIR.)"""
    return arg.replace("\\", "\\\\").replace("\t", "\\t").replace("\0", "\\0").replace("/", "\\_")


def results_dir(root: str, args: tuple[str, ...], name_max: int | None = None) -> str:
    """``root/1/ARG1/2/ARG2...``: each argument's directory, as GNU parallel makes it
    (``name_max``: each name cut to that many bytes, as parallel cuts them when one is too
    long for the file system)."""
    parts = [root]
    for n, arg in enumerate(args, 1):
        name = _escape(arg)
        if name_max is not None:
            name = os.fsdecode(os.fsencode(name)[:name_max])
        parts += [str(n), name]
    return "/".join(parts)


def tmpdir() -> str:
    """Where ``--files`` puts its files: ``$TMPDIR``, or /tmp, as GNU parallel does."""
    return os.environ.get("TMPDIR") or "/tmp"


def prepare(opts: Options) -> None:
    """Before the run: the directory ``--results`` and ``--files`` write in must be there
    (`UsageError` if not)."""
    if opts.results is not None and kind(opts.results) is not None:
        if not opts.results.startswith("-."):  # (-.csv: standard output)
            try:
                open(opts.results, "wb").close()  # (emptied now, as GNU parallel does)
            except OSError as exc:
                message = f"--results: cannot write {opts.results}: {exc.strerror}"
                raise UsageError(message) from None
    elif opts.results is not None:
        try:
            os.makedirs(opts.results, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--results: cannot create {opts.results}: {exc.strerror}") from None
    elif opts.files:
        where = tmpdir()
        if not (os.path.isdir(where) and os.access(where, os.W_OK | os.X_OK)):
            raise UsageError(f"--files: the temporary directory {where!r} is not writable")


class Tagger:
    """What starts each line of a job's output: ``--tagstring`` filled in (``{}`` for
    ``--tag``), its words joined by spaces as GNU parallel joins them (``{}`` of two
    arguments is ``a b``), and a TAB; nothing without a tag string. ``each``: ``-N``."""

    __slots__ = ("_template",)

    def __init__(self, tag: str | None, each: bool = False) -> None:
        self._template = None
        if tag is not None:
            self._template = Template([tag], shell=False, each=each, append=False)

    def __call__(self, job: Job) -> bytes:
        if self._template is None:
            return b""
        text = " ".join(self._template.words(job.seq, job.slot, job.args))
        return (text + "\t").encode(errors="surrogateescape")


class Attempt:
    """One attempt of a job: the stdout and stderr its process gets (a pipe, or a file
    descriptor), and what collects what comes through the pipes."""

    __slots__ = ("_fds", "err", "out", "stderr", "stdout")

    def __init__(
        self,
        out: Spool | LineStream,
        err: Spool | LineStream,
        stdout: int = subprocess.PIPE,
        stderr: int = subprocess.PIPE,
        fds: tuple[int, ...] = (),
    ) -> None:
        self.out, self.err = out, err
        self.stdout, self.stderr = stdout, stderr
        self._fds = fds  # ours to close once the process has them

    def started(self) -> None:
        """The process started (or did not): close our copies of its files."""
        for fd in self._fds:
            os.close(fd)
        self._fds = ()

    def output(self) -> tuple[Spool, Spool]:
        """The attempt is over: its output not written yet."""
        out, err = self.out, self.err
        return (
            out.done() if isinstance(out, LineStream) else out,
            err.done() if isinstance(err, LineStream) else err,
        )


class JobOutput:
    """Makes each attempt's `Attempt`, and writes each job's output when it ends (or in
    its turn, with ``--keep-order``)."""

    def __init__(self, opts: Options, sink: Sink, store: Store) -> None:
        self.sink = sink
        self.store = store
        self.mode = opts.output
        table = opts.results is not None and kind(opts.results) is not None
        self.results = None if table else opts.results  # --results DIR
        self.table = table  # the output goes to the --results table (`_table`), not here
        self.files = opts.files
        # GNU parallel ignores -k and --tag with -u: the output passes straight through.
        ordered = opts.keep_order and not opts.json and self.mode != UNGROUP
        self.ordered = Ordered(sink) if ordered else None
        self.tag = Tagger(opts.tag if self.mode != UNGROUP else None, opts.context_replace)
        self._names: dict[int, str] = {}  # --files, --results: the file with a job's stdout
        self._name_max: int | None = None  # once a --results name was too long

    def attempt(self, job: Job) -> Attempt:
        """Where the next attempt of ``job`` writes (`CannotStartError`: its files cannot
        be made)."""
        store = self.store
        if self.mode == UNGROUP:
            return Attempt(Spool(store), Spool(store), stdout=1, stderr=2)
        if self.results is not None:
            out, err = self._results_files(job)
            return Attempt(Spool(store), Spool(store), stdout=out, stderr=err, fds=(out, err))
        if self.files:
            out = self._temp_file(job)
            return Attempt(Spool(store), Spool(store), stdout=out, fds=(out,))
        if self.mode == LINE:
            return self._line_attempt(job)
        return Attempt(Spool(store), Spool(store))

    def attempt_ended(self, job: Job, attempt: Attempt) -> tuple[Spool, Spool, int | None]:
        """The attempt is over: its output not written yet (a live job's half lines are),
        and the bytes its standard output wrote to a file (None: not to a file)."""
        if self.ordered is not None and self.mode == LINE:
            self.ordered.turn(job.seq, None)  # (its turn now goes to the next attempt)
        name = self._names.get(job.seq)
        received = None
        if name is not None:  # --files, --results: the file's size, as GNU parallel counts
            try:
                received = os.stat(name).st_size
            except OSError:  # (the job removed it)
                received = 0
        return (*attempt.output(), received)

    def _line_attempt(self, job: Job) -> Attempt:
        tag = self.tag(job)
        out = LineStream(self.sink, self.store, err=False, tag=tag)
        err = LineStream(self.sink, self.store, err=True, tag=tag)

        def go_live() -> None:
            out.go_live()
            err.go_live()

        if self.ordered is None:
            go_live()
        else:
            self.ordered.turn(job.seq, go_live)
        return Attempt(out, err)

    def _temp_file(self, job: Job) -> int:
        """--files: the job's file, named as GNU parallel names them (parXXXXX.par), made
        at its first attempt and emptied at each."""
        name = self._names.get(job.seq)
        if name is not None:
            return _open("--files", name, 0o600)
        try:
            fd, name = tempfile.mkstemp(prefix="par", suffix=".par", dir=tmpdir())
        except OSError as exc:
            raise _cannot_write("--files", tmpdir(), exc) from None
        self._names[job.seq] = name
        return fd

    def _results_files(self, job: Job) -> tuple[int, int]:
        """--results: the job's directory, its seq file written, its stdout and stderr
        files opened (emptied)."""
        assert self.results is not None
        where = results_dir(self.results, job.args, self._name_max)
        try:
            os.makedirs(where, exist_ok=True)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG or self._name_max is not None:
                raise _cannot_write("--results", where, exc) from None
            # As GNU parallel: from now on each name is cut to the longest one allowed.
            self._name_max = 255
            with contextlib.suppress(OSError, ValueError):
                self._name_max = os.pathconf(self.results, "PC_NAME_MAX")
            return self._results_files(job)
        self._names[job.seq] = f"{where}/stdout"
        seq = _open("--results", f"{where}/seq")
        try:
            os.write(seq, str(job.seq).encode())
        finally:
            os.close(seq)
        out = _open("--results", f"{where}/stdout")
        try:
            return out, _open("--results", f"{where}/stderr")
        except BaseException:
            os.close(out)
            raise

    def ended(self, job: Job, then: Callable[[], None] | None = None) -> None:
        """The job ended: its output is written, or waits for its turn; then ``then()``
        (its joblog row: in the order of the output, as GNU parallel writes it)."""
        if self.mode == UNGROUP and job.returncode == -signal.SIGPIPE and _stdout_gone():
            self.sink.closed()  # (with -u only the jobs write there: they found it closed)
        out, err = job.out, job.err
        name = self._names.pop(job.seq, None)
        if self.results is not None or self.files or self.table:
            out = f"{name}\n".encode(errors="surrogateescape") if name and self.files else b""
            err = b"" if self.table else err
        tag = self.tag(job)
        if self.ordered is not None:
            self.ordered.turn(job.seq, None)  # (an attempt that did not start left it)
            self.ordered.put(job.seq, out, err, tag, then)  # (it releases them once written)
        else:
            self.sink.write(out, err=False, tag=tag)
            self.sink.write(err, err=True, tag=tag)
            job.set_output(b"", b"")
            if then is not None:
                then()

    def skip(self, seq: int) -> None:
        """Job ``seq`` is not run: its turn in the ordered output passes."""
        if self.ordered is not None:
            self.ordered.skip(seq)

    def flush(self) -> None:
        """The run is over: write the ordered output that still waits."""
        if self.ordered is not None:
            self.ordered.flush()


def _stdout_gone(fd: int = 1) -> bool:
    """Whether our stdout is a pipe that nobody reads any more (``| head`` ended)."""
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


def _open(flag: str, path: str, mode: int = 0o666) -> int:
    """``path`` opened to be written from its start (`CannotStartError` if it cannot)."""
    try:
        return os.open(path, _OUT_FLAGS, mode)
    except OSError as exc:
        raise _cannot_write(flag, path, exc) from None


def _cannot_write(flag: str, path: str, exc: OSError) -> CannotStartError:
    return CannotStartError(f"{flag}: cannot write {path}: {exc.strerror}")
