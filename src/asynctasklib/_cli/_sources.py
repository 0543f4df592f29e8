"""The input sources as the command line gives them: ``-a FILE`` and the groups after the
command (``:::``, ``:::+``, ``::::``, ``::::+``), in GNU parallel's order."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ._errors import UsageError

STDIN: Final = "standard input"
SEPARATORS: Final = frozenset({":::", ":::+", "::::", "::::+"})


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One input source as the command line gives it."""

    given: str  # how, for messages: "-a/--arg-file", "::::", ":::", "" (stdin by default)
    values: tuple[str, ...] | None = None  # a ::: group
    path: str | None = None  # a file; "-" (or None) is standard input
    linked: bool = False  # :::+ or ::::+: goes along with the source before it

    @property
    def name(self) -> str:
        return STDIN if self.path in (None, "-") else str(self.path)

    @property
    def stdin(self) -> bool:
        return self.values is None and self.path in (None, "-")


def _groups(words: list[str]) -> list[SourceSpec]:
    """The sources of the groups in ``words``, which starts with a separator."""
    specs: list[SourceSpec] = []
    i = 0
    while i < len(words):
        sep = words[i]
        j = i + 1
        while j < len(words) and words[j] not in SEPARATORS:
            j += 1
        group, linked = words[i + 1 : j], sep.endswith("+")
        if sep.startswith("::::"):
            if not group:
                raise UsageError(f"{sep} needs at least one file name after it")
            # (each file of a ::::+ group is linked: to the source before, then in turn)
            specs += [SourceSpec(sep, path=path, linked=linked) for path in group]
        else:
            specs.append(SourceSpec(sep, values=tuple(group), linked=linked))
        i = j
    return specs


def split_sources(
    words: list[str], arg_files: list[str], link: bool = False
) -> tuple[list[str], tuple[SourceSpec, ...]]:
    """The command in ``words``, and every input source: each ``-a`` file, then each group
    after the command, or standard input when there is none. ``link`` (--link): each
    source is linked to the one before it."""
    cut = next((i for i, word in enumerate(words) if word in SEPARATORS), len(words))
    words, groups = words[:cut], _groups(words[cut:])
    if arg_files and any(spec.linked for spec in groups):
        # GNU parallel 20221122 links such a group to the wrong source: refused, not copied.
        raise UsageError(
            ":::+ and ::::+ cannot be used with -a/--arg-file (give those files with :::: instead)"
        )
    specs = [SourceSpec("-a/--arg-file", path=path) for path in arg_files] + groups
    if link:
        specs = [SourceSpec(s.given, s.values, s.path, linked=bool(i)) for i, s in enumerate(specs)]
    if specs and specs[0].linked:  # linked to nothing: a source as any other
        specs[0] = SourceSpec(specs[0].given, specs[0].values, specs[0].path)
    if not specs:
        specs = [SourceSpec("")]
    if sum(spec.stdin for spec in specs) > 1:
        raise UsageError("standard input ('-') is given as more than one input source")
    return words, tuple(specs)


def known_total(
    specs: tuple[SourceSpec, ...], max_args: int | None, link: bool = False
) -> int | None:
    """How many jobs there are, if every source is a ``:::`` group (None: not known).
    ``link`` (--link): linked sources end with the longest."""
    chains: list[list[int]] = []
    for spec in specs:
        if spec.values is None:
            return None
        if spec.linked:
            chains[-1].append(len(spec.values))
        else:
            chains.append([len(spec.values)])
    if not any(any(chain) for chain in chains):
        return 0  # every source is empty
    # (an empty source counts as one empty value; linked sources end with the shortest)
    end = max if link else min
    records = math.prod(end(n or 1 for n in chain) for chain in chains)
    return math.ceil(records / max_args) if max_args else records
