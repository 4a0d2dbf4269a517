"""The house's floors hold: every import of `cli/`, `registry/` and `storage/` (eager, lazy inside a
function, or under TYPE_CHECKING) points to the importer's own room or to a floor below it, no
modules import each other through any path, and torch is imported at module level only in
`registry/tensors/`.

The floors are read from docs/architecture.md, the page a reader trusts, so that the page and the
code cannot drift apart: a room the page does not name fails here too. The graph is built from the
source (ast), not by importing it, so a lazy import inside a function counts like any other."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cli", "registry", "storage")
FLOOR_LINE = re.compile(r"^(\d+)\. (.+)$")


@cache
def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _owner(dotted: str) -> str | None:
    """The module of ours that `dotted` (a module, or a name inside one) lives in; None if not ours."""
    mods = modules()
    while dotted and dotted not in mods:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def imports_of(name: str) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import statement in module `name`."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from registry import bounds` imports the module registry.bounds.
            targets = [f"{source}.{alias.name}" for alias in node.names] or [source]
        for target in targets:
            owner = _owner(target)
            if owner is not None and owner != name:
                yield owner, node.lineno


@cache
def floors() -> dict[str, int]:
    """Room (a module or package path prefix, dotted) -> its floor number, from the docs' list."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rooms: dict[str, int] = {}
    for line in text.splitlines():
        match = FLOOR_LINE.match(line)
        if match is None:
            continue
        for path in re.findall(r"`([^`]+)`", match[2].split(" (")[0]):
            dotted = path.removesuffix("/").removesuffix(".py").replace("/", ".")
            rooms[dotted.removesuffix(".__init__")] = int(match[1])
    assert rooms, "docs/architecture.md lost its numbered list of floors"
    return rooms


def room_of(name: str) -> str | None:
    """The longest room of the docs' list that `name` is or lives in (`registry` is the package's
    own __init__, named on its own line; a submodule of `registry` must be named by its room)."""
    rooms = floors()
    if name in rooms:
        return name
    candidates = [room for room in rooms if room != "registry" and name.startswith(room + ".")]
    return max(candidates, key=len) if candidates else None


def test_every_room_is_on_a_floor() -> None:
    unnamed = sorted({name for name in modules() if room_of(name) is None})
    assert not unnamed, f"modules in no room of docs/architecture.md's floors: {unnamed}"


def test_imports_point_down() -> None:
    rooms = floors()
    upward = []
    for name in modules():
        mine = room_of(name)
        for target, line in imports_of(name):
            theirs = room_of(target)
            if mine is None or theirs is None or mine == theirs:
                continue
            if rooms[theirs] <= rooms[mine]:
                upward.append(f"{name}:{line} imports {target} (floor {rooms[theirs]} from {rooms[mine]})")
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = {name: {target for target, _ in imports_of(name)} for name in modules()}
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"modules that import each other (through the others listed): {cycles}"


def test_torch_only_in_tensors_at_module_level() -> None:
    """Everywhere else torch is imported inside the function that needs it, so that the server,
    the CLI's start-up and the client never load it for a command that does no tensor work."""
    eager = []
    for name, path in modules().items():
        if name.startswith("registry.tensors"):
            continue
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
                eager.append(f"{name}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
                eager.append(f"{name}:{node.lineno}")
    assert not eager, f"torch imported at module level outside registry/tensors: {eager}"


def test_the_checker_sees_lazy_and_type_checking_imports() -> None:
    """The checks are only as good as the graph: the package root's facade import (under
    TYPE_CHECKING and inside its PEP 562 hook) must be seen twice, a room's submodules must land in
    it, and a cycle must be found."""
    lines = {line for target, line in imports_of("registry") if target == "registry.facade"}
    assert len(lines) == 2
    assert room_of("registry.api.hub.xet.routes") == "registry.api"
    assert room_of("registry.services.jobs") == "registry.services"
    assert room_of("registry.servicesx") is None
    found = _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(map(sorted, found)) == [["a", "b", "c"], ["d"]]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has ~200 nodes; recursion would do too)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found
