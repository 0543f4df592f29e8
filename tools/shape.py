"""The code-shape limits of src/asynctasklib, checked: module and function sizes (the CLI's
modules, src/asynctasklib/_cli, have a lower limit of their own), radon cyclomatic
complexity, import cycles (type-only imports included), and attribute accesses to another
module's private names.

    python tools/shape.py            # report; exit 1 if a limit is broken
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 700
MAX_CLI_MODULE_LINES = 400  # src/asynctasklib/_cli: one concept a module
MAX_FUNCTION_LINES = 80
MAX_COMPLEXITY = 25

SRC = Path(__file__).resolve().parent.parent / "src" / "asynctasklib"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``name`` imports, at run time or for typing alike."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                full = f"{mod}.{alias.name}"
                if full in known:
                    out.add(full)
                elif mod in known:
                    out.add(mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def package_edges_ignored(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ re-exporting its own submodules is not a cycle of concepts:
    drop the edges from a package to its own submodules."""
    return {v: {w for w in ws if not w.startswith(v + ".")} for v, ws in graph.items()}


def defined_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, slots, class attributes and
    ``self._x =`` stores."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def foreign_private(mods: dict[str, Path]) -> dict[str, list[str]]:
    """Per module: accesses ``x._name`` (x not self/cls) to a private name that only other
    modules of ours define (a lower bound: a name both define is not counted)."""
    trees = {name: ast.parse(path.read_text()) for name, path in mods.items()}
    defs = {name: defined_names(tree) for name, tree in trees.items()}
    out: dict[str, list[str]] = {}
    for name, tree in trees.items():
        others = set().union(*(d for m, d in defs.items() if m != name))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and node.attr not in defs[name]
                and node.attr in others
            ):
                out.setdefault(name, []).append(f"{node.lineno}:{node.attr}")
    return out


def problems(mods: dict[str, Path]) -> list[str]:
    """Every limit that ``mods`` break, one line each."""
    from radon.complexity import cc_visit

    problems: list[str] = []
    for path in mods.values():
        text = path.read_text()
        n = len(text.splitlines())
        limit = MAX_CLI_MODULE_LINES if path.is_relative_to(SRC / "_cli") else MAX_MODULE_LINES
        if n > limit:
            problems.append(f"{path.relative_to(SRC.parent)}: {n} lines > {limit}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(
                        f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name}: "
                        f"{length} lines > {MAX_FUNCTION_LINES}"
                    )
        seen: set[tuple[int, str]] = set()
        for block in cc_visit(text):
            for b in [block, *getattr(block, "methods", [])]:
                if (b.lineno, b.name) in seen:
                    continue
                seen.add((b.lineno, b.name))
                if b.complexity > MAX_COMPLEXITY:
                    problems.append(
                        f"{path.relative_to(SRC.parent)}:{b.lineno} {b.name}: "
                        f"complexity {b.complexity} > {MAX_COMPLEXITY}"
                    )
    graph = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    for cycle in cycles(package_edges_ignored(graph)):
        problems.append("import cycle: " + " <-> ".join(cycle))
    return problems


def main() -> int:
    mods = modules()
    found = problems(mods)
    foreign = foreign_private(mods)
    total = sum(len(v) for v in foreign.values())
    print(f"accesses to another module's private names: {total}")
    for name, hits in sorted(foreign.items()):
        print(f"  {name}: {len(hits)}: {' '.join(hits)}")
    for p in found:
        print(p)
    print(f"{len(found)} problem(s) in {len(mods)} modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
