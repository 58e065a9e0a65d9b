#!/usr/bin/env python3
"""Import structure of a Python package: circles between modules and between subpackages.

Usage: python3 tools/import_graph.py [PACKAGE_DIR]   (default: plasticity_dist)

Every import counts, including imports inside functions and under TYPE_CHECKING: a lazy import hides a
circle from the interpreter, not from a reader. Prints each circle (strongly connected set) of modules and
of top-level subpackages (a module directly in the package is its own unit), the import edges between
subpackages, and exits 1 when any circle exists.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                result.append(sorted(members))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "plasticity_dist").resolve()
    files = {module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    known = set(files)
    graph = {name: imports_of(path, name, known) for name, path in files.items()}
    top = root.name

    def unit(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else top

    units: dict[str, set[str]] = defaultdict(set)
    for name, targets in graph.items():
        for target in targets:
            if unit(target) != unit(name):
                units[unit(name)].add(unit(target))
    module_circles = circles(graph)
    unit_circles = circles(units)
    print(f"{len(files)} modules, {sum(map(len, graph.values()))} imports between them")
    for members in module_circles:
        print("module circle: " + " <-> ".join(m.removeprefix(top + ".") for m in members))
    for members in unit_circles:
        print("subpackage circle: " + " <-> ".join(m.removeprefix(top + ".") for m in members))
    print("subpackage imports:")
    for name in sorted(units):
        print(f"  {name.removeprefix(top + '.') or top} -> {', '.join(sorted(t.removeprefix(top + '.') for t in units[name]))}")
    print(f"{len(module_circles)} module circles, {len(unit_circles)} subpackage circles")
    return 1 if module_circles or unit_circles else 0


if __name__ == "__main__":
    sys.exit(main())
