"""Code versions from the import graph: what a cache key must cover, found, never listed.

A stage's result depends on the source of every project module its code can
reach and on the versions of the libraries those modules import. Both are read
from the source with ``ast``: nothing is imported, so computing the version of
the training stage never imports TensorFlow. Imports inside functions count,
since the project imports heavy libraries lazily.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

PROJECT_PACKAGES = ("mnist_autoencoder", "tasks", "flows")


def _source(name: str) -> Path | None:
    """The source file of module ``name``, found on disk without importing anything.

    (``importlib.util.find_spec("a.b")`` would import ``a``, and ``a.b.c`` would
    import ``a.b``: for ``tasks.train`` that is Prefect, for a model module TensorFlow.)
    """
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for location in spec.submodule_search_locations or ():
        base = Path(location, *rest)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def module_path(name: str) -> Path:
    path = _source(name)
    if path is None:
        raise ModuleNotFoundError(f"cannot locate the source of module {name!r}")
    return path


def _is_module(name: str) -> bool:
    return _source(name) is not None


def _nodes(tree: ast.AST, into_functions: bool) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        yield node
        if into_functions or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _nodes(node, into_functions)


_PARSING = threading.Lock()


def _parse(path: Path, attempts: int = 5) -> ast.Module:
    """``ast.parse`` of a file, one thread at a time and retried: on CPython 3.11 the AST
    constructor's recursion counter is shared by the interpreter's threads, so a parse in
    another thread during ours (two stages keyed at once on a Dask worker) fails it with
    "AST constructor recursion depth mismatch" (python/cpython#106905; seen on a Dask
    worker in tests/test_multihost.py, reproduced with two threads here)."""
    source = path.read_bytes()
    for _ in range(attempts - 1):
        try:
            with _PARSING:
                return ast.parse(source, filename=str(path))
        except SystemError:
            pass
    with _PARSING:
        return ast.parse(source, filename=str(path))


def imports_of(name: str, into_functions: bool = True) -> set[str]:
    """Every module name that the source of module ``name`` imports, anywhere in it.

    ``from package import x`` yields both ``package`` and ``package.x``: ``x`` may be
    a module. Callers keep the names that are modules. With ``into_functions``
    false, only what importing the module runs (a package's lazy ``__getattr__``
    imports only when asked).
    """
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _nodes(_parse(path), into_functions):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .a import b
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _is_project(name: str, project: tuple[str, ...]) -> bool:
    return name.split(".")[0] in project


def reachable(roots: tuple[str, ...],
              project: tuple[str, ...] = PROJECT_PACKAGES) -> tuple[list[str], set[str]]:
    """(project modules reachable from ``roots``, top-level names of the others they import).

    The roots themselves count as project modules, and so does each module's
    parent package, whose ``__init__`` runs first. A package's ``__init__`` is
    followed through its top-level imports only: those inside its functions (a
    lazy ``__getattr__``) run when a name is asked for, not on import. That rule
    depends on the file alone, never on the order of the walk, so the result is
    the same in every process.
    """
    seen: set[str] = set()
    external: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parents = [name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)]
        todo += [p for p in parents if p not in seen]
        package = module_path(name).name == "__init__.py"
        for imported in sorted(imports_of(name, into_functions=not package)):
            if not _is_project(imported, project):
                external.add(imported.split(".")[0])  # never imported: find_spec would
            elif _is_module(imported):
                todo.append(imported)
    return sorted(seen), external - set(sys.stdlib_module_names)


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def library_versions(top_level: set[str]) -> list[str]:
    """``name==version`` of the installed distributions that provide ``top_level`` modules."""
    names = {dist for module in top_level for dist in _distributions().get(module, [])}
    return sorted(f"{dist}=={importlib.metadata.version(dist)}" for dist in names)


def code_version(roots: tuple[str, ...], project: tuple[str, ...] = PROJECT_PACKAGES) -> str:
    """Hash the source of every project module reachable from ``roots`` and their libraries."""
    modules, external = reachable(roots, project)
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode() + b"\0" + module_path(name).read_bytes() + b"\0")
    for line in library_versions(external):
        digest.update(line.encode() + b"\0")
    return digest.hexdigest()
