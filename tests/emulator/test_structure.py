"""The project's modules form no import cycle and use no other module's private names.

Read with `ast` (nothing is imported), so a cycle that only `TYPE_CHECKING` or a function-level import
hides is still found. Test modules and `bench/` are out of scope, and so are third-party packages'
private names: only names of this project's own modules are checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "models_config", "replicate_emulator", "staging", "stagingsite")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_test_file(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return "tests" in parts or path.name.startswith("test_") or path.name == "conftest.py"


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module = field(repr=False)

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def discover(root: Path, packages: Iterable[str]) -> dict[str, Module]:
    """Every non-test module of `packages` under `root`, by dotted name."""
    modules: dict[str, Module] = {}
    for package in packages:
        if not (root / package / "__init__.py").is_file():
            continue
        for path in sorted((root / package).rglob("*.py")):
            if _is_test_file(path, root):
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            relative = path.relative_to(root)
            modules[name] = Module(name, relative, is_package, ast.parse(path.read_text(), str(relative)))
    return modules


@dataclass
class Analysis:
    """The import graph between the given modules and the private names each uses of another."""

    modules: dict[str, Module]
    edges: dict[str, set[str]] = field(default_factory=dict)
    private_uses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for module in self.modules.values():
            self.edges[module.name] = set()
            self._scan(module)

    def _absolute(self, module: Module, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = module.package.split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    @staticmethod
    def _where(module: Module, node: ast.expr | ast.stmt) -> str:
        return f"{module.path}:{node.lineno}"

    def _scan(self, module: Module) -> None:
        aliases: dict[str, str] = {}  # local name -> project module it is bound to
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in self.modules:
                        self.edges[module.name].add(alias.name)
                    if alias.asname:
                        if alias.name in self.modules:
                            aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        if top in self.modules:
                            aliases[top] = top
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(module, node)
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in self.modules:  # `from package import module`
                        self.edges[module.name].add(submodule)
                        aliases[alias.asname or alias.name] = submodule
                    elif source in self.modules:
                        self.edges[module.name].add(source)
                        if _is_private(alias.name) and source != module.name:
                            self.private_uses.append(f"{self._where(module, node)}: from {source} import {alias.name}")
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                target = self._module_of(node.value, aliases)
                if target is not None and target != module.name:
                    self.private_uses.append(f"{self._where(module, node)}: {target}.{node.attr}")
        self.edges[module.name].discard(module.name)

    def _module_of(self, node: ast.expr, aliases: dict[str, str]) -> str | None:
        """The project module an expression like `services` or `staging.services` names, if any."""
        if isinstance(node, ast.Name):
            return aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            parent = self._module_of(node.value, aliases)
            if parent is not None and f"{parent}.{node.attr}" in self.modules:
                return f"{parent}.{node.attr}"
        return None

    def cycles(self) -> list[list[str]]:
        """One cycle (a path back to its start) per strongly connected group of modules, sorted."""
        found = []
        for group in _strongly_connected(self.edges):
            if len(group) > 1:
                start = min(group)
                found.append(_path_back(self.edges, start, group))
        return sorted(found)


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion limits are not worth the risk)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _path_back(edges: dict[str, set[str]], start: str, group: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside `group`."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node] & group):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a cycle group but no path leads back to it")


def analyse(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> Analysis:
    return Analysis(discover(root, packages))


# --- the project ---------------------------------------------------------------------------------


def test_the_scan_sees_every_project_package():
    modules = analyse().modules
    assert {"models_config.registry", "replicate_emulator.app", "staging.services", "stagingsite.settings"} <= set(
        modules
    )
    assert not [name for name in modules if name.split(".")[-1].startswith("test_")]


def test_no_import_cycle_between_project_modules():
    cycles = analyse().cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_module_uses_another_modules_private_name():
    uses = analyse().private_uses
    assert not uses, "private names used from another module:\n" + "\n".join(uses)


# --- the checker itself, on a made-up package ----------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_a_cycle_hidden_behind_type_checking_or_a_function_is_found(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import A\n",
            "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nA = 1\n",
            "pkg/b.py": "from . import c\nB = 2\n",
            "pkg/c.py": "def f():\n    from pkg.a import A\n    return A\n",
            "pkg/d.py": "import pkg.c\nfrom pkg import a\n",
            "pkg/tests/test_x.py": "from pkg.d import x\n",
        },
    )
    analysis = analyse(tmp_path, ["pkg", "missing"])
    assert set(analysis.modules) == {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"}
    assert analysis.edges["pkg.d"] == {"pkg.c", "pkg.a"}
    assert analysis.cycles() == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_private_names_of_other_project_modules_are_found_but_not_third_party_ones(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "_hidden = 1\n__version__ = '1'\ndef _own():\n    return _hidden\n",
            "pkg/b.py": (
                "import json\nimport pkg.a\nfrom pkg import a as alias\nfrom .a import _hidden, __version__\n"
                "x = pkg.a._own() + alias._hidden + json._default_decoder + alias.__doc__\n"
                "class C:\n    def m(self):\n        return self._own\n"
            ),
        },
    )
    uses = analyse(tmp_path, ["pkg"]).private_uses
    assert sorted(use.split(": ", 1)[1] for use in uses) == [
        "from pkg.a import _hidden",
        "pkg.a._hidden",
        "pkg.a._own",
    ]
    assert all(use.startswith("pkg/b.py:") for use in uses)
