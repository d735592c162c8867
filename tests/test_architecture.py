"""The shape of the package, held by tests: no import cycles, small modules and functions, an
engine that imports without Qt, and a tests/ tree that mirrors src/.

Each rule reports every offender at once, so one run shows all that is left to fix.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import napari_asymseg

PACKAGE = "napari_asymseg"
SRC = Path(napari_asymseg.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# "package.module" (a module's lines) or "package.module:Qualified.name" (a function's lines,
# docstring and nested functions included) -> why it may stay over the limit. Keep it short:
# an entry that is back within the limit, or names nothing, fails test_exceptions_are_current.
EXCEPTIONS: dict[str, str] = {}


# -- import graph --------------------------------------------------------------------------


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package rooted at ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((package, *parts))] = path
    return modules


def _resolve(name: str, modules: Iterable[str]) -> str | None:
    """The module ``name`` names, or the nearest enclosing package's module; None outside."""
    known = set(modules)
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imported(node: ast.Import | ast.ImportFrom, here: str, is_package: bool, modules) -> set:
    """The package modules one import statement names explicitly (not the packages whose
    ``__init__`` Python runs on the way, which are only implicit)."""
    if isinstance(node, ast.Import):
        return {m for alias in node.names if (m := _resolve(alias.name, modules))}
    if node.level:  # relative: from the module's package, one level up per extra dot
        base = here if is_package else here.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module or ""
    if source != PACKAGE and not source.startswith(PACKAGE + "."):
        return set()
    found = set()
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        found.add(submodule if submodule in modules else _resolve(source, modules))
    return found - {None}


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}, counting every import in
    the file: at the top, inside functions and methods, and under ``if`` blocks."""
    files = module_files(root, package)
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges: dict[str, int] = {}
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(node, module, is_package, files):
                    if target != module:
                        edges[target] = min(edges.get(target, node.lineno), node.lineno)
        graph[module] = edges
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted:
    every import cycle lies inside one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _describe(component: list[str], graph: Mapping[str, Mapping[str, int]]) -> str:
    """One component as its imports (with their lines), for routing the fix."""
    edges = [
        f"    {a} -> {b} (line {line})"
        for a in component
        for b, line in sorted(graph[a].items())
        if b in component
    ]
    return " <-> ".join(component) + "\n" + "\n".join(edges)


def test_cycle_detector_finds_a_fabricated_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    assert cycles({"x": {"y"}, "y": {"x"}, "p": {"q"}, "q": {"p"}}) == [["p", "q"], ["x", "y"]]


def test_import_graph_counts_imports_inside_functions(tmp_path):
    """A fabricated package whose only cycle goes through a function-level, a relative and a
    ``from package import module`` import: the graph sees all three."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from napari_asymseg.a import thing\n")
    (pkg / "a.py").write_text("def thing():\n    from napari_asymseg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text(
        "import os\nif os.sep:\n    from napari_asymseg import a\nfrom ..a import thing\n"
    )
    graph = import_graph(pkg)
    assert graph[PACKAGE] == {f"{PACKAGE}.a": 1}
    assert graph[f"{PACKAGE}.sub.c"] == {f"{PACKAGE}.a": 3}
    assert graph[f"{PACKAGE}.sub"] == {}  # the implicit __init__ edges are not counted
    assert cycles(graph) == [[f"{PACKAGE}.a", f"{PACKAGE}.sub.b", f"{PACKAGE}.sub.c"]]


def test_no_import_cycles():
    graph = import_graph(SRC)
    assert len(graph) > 20 and any(graph.values()), "the package was not found or parsed"
    found = cycles(graph)
    assert not found, f"{len(found)} import cycle(s):\n" + "\n".join(
        _describe(c, graph) for c in found
    )


# -- sizes ---------------------------------------------------------------------------------


def functions(tree: ast.Module) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function with its qualified name (``Class.method``, ``outer.inner``)."""

    def walk(node: ast.AST, prefix: str):
        for child in ast.iter_child_nodes(node):
            name = getattr(child, "name", "")
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield prefix + name, child
                yield from walk(child, f"{prefix}{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def sizes(root: Path, package: str = PACKAGE) -> dict[str, int]:
    """``module`` -> its lines and ``module:function`` -> the function's lines, from ``def`` to
    its last line (docstring and nested functions included)."""
    found = {}
    for module, path in module_files(root, package).items():
        text = path.read_text()
        found[module] = len(text.splitlines())
        for name, node in functions(ast.parse(text, str(path))):
            assert node.end_lineno is not None
            found[f"{module}:{name}"] = node.end_lineno - node.lineno + 1
    return found


def offenders(found: Mapping[str, int]) -> dict[str, int]:
    return {
        key: n
        for key, n in found.items()
        if n > (MAX_FUNCTION_LINES if ":" in key else MAX_MODULE_LINES)
    }


def test_size_measure_on_a_fabricated_module(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    source = f'class K:\n    def long(self):\n        """Doc."""\n{textwrap.indent(body, "    ")}\n'
    source += "def outer():\n    def inner():\n        pass\n    return inner\n"
    (tmp_path / "m.py").write_text(source)
    found = sizes(tmp_path, "p")
    assert found["p.m:K.long"] == 62 and found["p.m:outer"] == 4 and found["p.m:outer.inner"] == 2
    assert offenders(found) == {"p.m:K.long": 62}


def test_modules_and_functions_stay_small():
    over = {k: n for k, n in offenders(sizes(SRC)).items() if k not in EXCEPTIONS}
    assert not over, (
        f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per function "
        "(split them, or add a reasoned entry to EXCEPTIONS):\n"
        + "\n".join(f"    {k}: {n} lines" for k, n in sorted(over.items()))
    )


def test_exceptions_are_current():
    found = sizes(SRC)
    stale = [k for k in EXCEPTIONS if k not in offenders(found)]
    assert not stale, f"within the limits now, or gone: remove from EXCEPTIONS: {stale}"


# -- Qt stays in _qt -----------------------------------------------------------------------


def test_engine_imports_without_qt():
    """``import napari_asymseg`` and every module outside ``_qt`` import without napari, Qt or
    magicgui, in a fresh interpreter; the first module that pulls one in is named."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        QT = ('napari', 'qtpy', 'magicgui', 'PyQt6')
        def qt():
            return [m for m in QT if m in sys.modules]
        import napari_asymseg
        if qt():
            sys.exit(f'import napari_asymseg pulled in {qt()}')
        for m in pkgutil.walk_packages(napari_asymseg.__path__, 'napari_asymseg.'):
            if '._qt' not in m.name and not m.name.endswith('__main__'):
                importlib.import_module(m.name)
                if qt():
                    sys.exit(f'import {m.name} pulled in {qt()}')
        print(len(sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- tests mirror src ----------------------------------------------------------------------


def test_test_folders_mirror_the_packages():
    folders = [p for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
    assert folders, "no test folders found"
    orphans = [p.name for p in folders if not (SRC / p.name / "__init__.py").is_file()]
    assert not orphans, f"tests/<name>/ must name a package src/{PACKAGE}/<name>/: {orphans}"


def test_test_file_names_are_unique():
    """Test modules are imported by basename (no ``__init__.py`` in tests), so two files of one
    name would collide."""
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert not [n for n, count in names.items() if count > 1], names.most_common(3)
    assert not list(TESTS.rglob("__init__.py")), "tests are rootless: no __init__.py"
