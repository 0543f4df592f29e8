"""Every combination of the input sources' records, as GNU parallel combines them: a
source with no record counts as one empty record (`Padded`), linked sources are read along
together (`Chain`; with ``--link``, `Wrapped`), and the jobs' records are every combination
of the chains' elements, the last chain varying fastest (`Product`). Nothing here awaits:
what a source has not given yet is NOT_YET, and ``blocked`` says which source it waits for."""

from __future__ import annotations

from typing import Any

from ._records import NOT_YET, Lines, PipeLines


class Padded:
    """A source's records; one empty record if it has none (as GNU parallel counts)."""

    __slots__ = ("ended", "given", "lines", "padded")

    def __init__(self, lines: Lines | PipeLines) -> None:
        self.lines = lines
        self.given = False
        self.padded = False
        self.ended = False

    def get_nowait(self) -> Any:
        if self.ended:
            return None
        value = self.lines.get_nowait()
        if value is None:
            self.ended = True
            if self.given:
                return None
            self.padded = True
            value = ""
        if value is not NOT_YET:
            self.given = True
        return value


class Chain:
    """Linked sources, read along together: their ``i``-th records, up to the shortest.
    Kept as they are read (``keep``), or only the last one (the first chain)."""

    __slots__ = ("_pending", "blocked", "cache", "complete", "keep", "offset", "sources")

    def __init__(self, sources: list[Padded], keep: bool) -> None:
        self.sources = sources
        self.keep = keep
        self.cache: list[tuple[str, ...]] = []
        self.offset = 0  # the index of cache[0]
        self.complete = False
        self.blocked: Lines | PipeLines | None = None  # what the last NOT_YET waits for
        self._pending: list[str] = []  # an element read in part

    def at(self, i: int) -> Any:
        """Element ``i``: a tuple, None past the end, or NOT_YET (``blocked`` waits)."""
        j = i - self.offset
        if j < len(self.cache):
            return self.cache[j]
        if self.complete:
            return None
        pending = self._pending
        while len(pending) < len(self.sources):
            source = self.sources[len(pending)]
            value = source.get_nowait()
            if value is NOT_YET:
                self.blocked = source.lines
                return NOT_YET
            if value is None:
                self.complete = True
                pending.clear()
                return None
            pending.append(value)
        element = tuple(pending)
        pending.clear()
        if not self.keep:
            self.cache.clear()
            self.offset = i
        self.cache.append(element)
        return element


class Wrapped:
    """--link: the sources read along together, as GNU parallel's --link: their ``i``-th
    records up to the end of the longest, a shorter one starting again from its first. All
    are kept, as GNU parallel keeps them (a shorter one's length is known at its end)."""

    __slots__ = ("_ended", "_records", "blocked", "sources")

    def __init__(self, sources: list[Padded]) -> None:
        self.sources = sources
        self._records: list[list[str]] = [[] for _ in sources]
        self._ended = [False] * len(sources)
        self.blocked: Lines | PipeLines | None = None

    def at(self, i: int) -> Any:
        """Element ``i``: a tuple, None past the end, or NOT_YET (``blocked`` waits)."""
        for k, source in enumerate(self.sources):
            records = self._records[k]
            while len(records) <= i and not self._ended[k]:
                value = source.get_nowait()
                if value is NOT_YET:
                    self.blocked = source.lines
                    return NOT_YET
                if value is None:
                    self._ended[k] = True
                else:
                    records.append(value)
        if all(len(records) <= i for records in self._records):  # (all ended before i)
            return None
        return tuple(records[i % len(records)] for records in self._records)


class Product:
    """Every combination of the chains' elements, the last chain varying fastest."""

    __slots__ = ("_chains", "_done", "_index", "blocked", "padded")

    def __init__(self, chains: list[Chain | Wrapped], padded: list[Padded]) -> None:
        self._chains = chains
        self.padded = padded
        self._index: list[int] | None = None
        self._done = False
        self.blocked: Lines | PipeLines | None = None

    def _stop(self) -> Any:
        self._done = True
        return None

    def get_nowait(self) -> Any:
        """The next record (a tuple), None at the end, or NOT_YET."""
        if self._done:
            return None
        chains = self._chains
        if self._index is None:  # the first: a record of every source (none is None)
            for chain in chains:
                first = chain.at(0)
                if first is NOT_YET:
                    self.blocked = chain.blocked
                    return NOT_YET
            if all(source.padded for source in self.padded):
                return self._stop()  # every source is empty: no job at all
            self._index = [0] * len(chains)
            return self._record()
        index = self._index
        for k in range(len(chains) - 1, -1, -1):
            value = chains[k].at(index[k] + 1)
            if value is NOT_YET:
                self.blocked = chains[k].blocked
                return NOT_YET
            if value is not None:
                index[k] += 1
                index[k + 1 :] = [0] * (len(chains) - k - 1)
                return self._record()
        return self._stop()

    def _record(self) -> tuple[str, ...]:
        assert self._index is not None
        if len(self._chains) == 1:
            return self._chains[0].at(self._index[0])  # type: ignore[no-any-return]
        return tuple(v for c, i in zip(self._chains, self._index, strict=True) for v in c.at(i))
