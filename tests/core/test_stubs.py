"""Every compiled module ships a .pyi stub that matches what Python can reach in it.

For each of the compiled modules (lsmkv/core/*.pyx) the stub lsmkv/core/<name>.pyi is
parsed with ast and compared with the imported module, both ways:
  (a) every public name the module exposes is declared in the stub;
  (b) every public name the stub declares exists in the module;
  (c) the same for each class: the public attributes in the class's own __dict__
      (methods, properties, readonly/public cdef attributes) against the names the
      stub's class body declares; a dunder the stub declares (__init__, __len__, ...)
      must exist on the class too.

Definitions:
  * public = not starting with "_".
  * A module "exposes" a name unless it is an imported module (os, threading, ...)
    or a class/function from outside lsmkv (collections.OrderedDict): those are the
    module's own imports, not its API. Re-exports from lsmkv (CorruptionError from
    lsmkv.errors, DBIterator from lsmkv.core.iterator) are API and must be declared.
  * The stub "declares" a name by a class, a def, an annotated or plain assignment,
    or an explicit re-export `from m import X as X` (PEP 484); a plain import is not
    a declaration.
  * PEP 688's __buffer__ is a Python-level attribute only from Python 3.12; a stub
    may declare it for a class with the C buffer protocol on older Pythons.
Each module must have at least MIN_CHECKED names checked (module level plus class
members), so a filter that silently drops everything fails.
"""
import ast
import importlib
import inspect
import importlib.machinery
import os
import sys
import types

import pytest

import lsmkv

COMPILED = ("coding", "fileio", "zstd", "memtable", "merge", "iterator", "bloom", "builder", "output",
            "table", "wal", "cache", "cursor", "rangedel", "dbcore")

# Names checked per module (module-level names plus class members, from the runtime
# side) when this test was written. Lower one when an API is removed on purpose.
# (table's BlockBuilder and TableBuilder members moved to builder, write_tables to output)
MIN_CHECKED = {"coding": 6, "merge": 10, "fileio": 2, "zstd": 1, "memtable": 18, "iterator": 11,
               "bloom": 2, "builder": 21, "output": 1, "table": 39, "wal": 10, "cache": 46,
               "cursor": 19, "rangedel": 9, "dbcore": 61}

_PKG_DIR = os.path.join(os.path.dirname(lsmkv.__file__), "core")


def _public(name):
    return not name.startswith("_")


def exposed_names(mod):
    """Public names of module `mod` that are its API (see the module docstring)."""
    out = set()
    for name, obj in vars(mod).items():
        if not _public(name) or isinstance(obj, types.ModuleType):
            continue
        if (inspect.isclass(obj) or callable(obj)) and \
                not (getattr(obj, "__module__", None) or "").startswith("lsmkv"):
            continue
        out.add(name)
    return out


def _targets(node):
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    return []


def declared_names(body):
    """{name: ast node} for what a module or class body declares (all names, private too)."""
    out = {}
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.asname is not None and alias.asname == alias.name.rpartition(".")[2]:
                    out[alias.asname] = node
        else:
            for name in _targets(node):
                out[name] = node
    return out


def class_members(cls):
    """Public names in the class's own __dict__ (what its stub class body must list)."""
    return {name for name in vars(cls) if _public(name)}


def _exists_on_class(cls, name):
    if hasattr(cls, name):
        return True
    return name == "__buffer__" and sys.version_info < (3, 12)


def compare(mod, stub_source):
    """Problems found comparing module `mod` with stub text; and how many names were checked."""
    problems = []
    tree = ast.parse(stub_source)
    declared = declared_names(tree.body)
    exposed = exposed_names(mod)
    public_declared = {n for n in declared if _public(n)}
    missing = sorted(exposed - public_declared)
    extra = sorted(n for n in public_declared if not hasattr(mod, n))
    if missing:
        problems.append(f"{mod.__name__}: not in the stub: {', '.join(missing)}")
    if extra:
        problems.append(f"{mod.__name__}: in the stub but not in the module: {', '.join(extra)}")
    checked = len(exposed)
    for name in sorted(exposed):
        cls = getattr(mod, name)
        if inspect.isclass(cls) and cls.__module__ == mod.__name__ and \
                not isinstance(declared.get(name), ast.ClassDef):
            problems.append(f"{mod.__name__}: class {name} has no class body in the stub")
    for name, node in sorted(declared.items()):
        if not isinstance(node, ast.ClassDef) or not hasattr(mod, name):
            continue
        cls = getattr(mod, name)
        if not inspect.isclass(cls):
            problems.append(f"{mod.__name__}: {name} is a class in the stub but "
                            f"{type(cls).__name__} in the module")
            continue
        body = declared_names(node.body)
        real = class_members(cls)
        cmissing = sorted(real - {n for n in body if _public(n)})
        cextra = sorted(n for n in body if not _exists_on_class(cls, n))
        if cmissing:
            problems.append(f"{mod.__name__}.{name}: not in the stub: {', '.join(cmissing)}")
        if cextra:
            problems.append(f"{mod.__name__}.{name}: in the stub but not on the class: "
                            f"{', '.join(cextra)}")
        checked += len(real)
    return problems, checked


def _stub_source(modname):
    path = os.path.join(_PKG_DIR, modname + ".pyi")
    assert os.path.isfile(path), f"lsmkv/core/{modname}.pyi is missing"
    with open(path, encoding="utf-8") as fh:
        return fh.read()


@pytest.mark.parametrize("modname", COMPILED)
def test_stub_matches_compiled_module(modname):
    mod = importlib.import_module("lsmkv.core." + modname)
    assert not mod.__file__.endswith(".py"), f"lsmkv.{modname} is not the compiled module"
    problems, checked = compare(mod, _stub_source(modname))
    assert not problems, "\n".join(problems)
    assert checked >= MIN_CHECKED[modname], \
        f"lsmkv.{modname}: only {checked} names checked, expected >= {MIN_CHECKED[modname]}"


def test_every_compiled_module_is_covered():
    # the compiled modules the package holds (an install ships no .pyx, only the built modules)
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    built = {f.split(".")[0] for f in os.listdir(_PKG_DIR) if f.endswith(suffixes)}
    assert built == set(COMPILED), f"compiled modules not covered: {sorted(built - set(COMPILED))}"
    assert os.path.isfile(os.path.join(os.path.dirname(lsmkv.__file__), "py.typed"))


def test_compare_reports_missing_and_extra_names():
    """The checker itself: a stub that drifted is reported by name, both ways."""
    class Widget:
        size = 0

        def grow(self):
            pass

    Widget.__module__ = "lsmkv._fake"
    mod = types.ModuleType("lsmkv._fake")
    mod.Widget = Widget
    mod.LIMIT = 3
    mod.os = os                                  # an import: not API
    mod.OrderedDict = __import__("collections").OrderedDict   # foreign class: not API

    def helper():
        pass
    helper.__module__ = "lsmkv._fake"
    mod.helper = helper
    stub = ("from lsmkv.errors import CorruptionError as CorruptionError\n"
            "from typing import Any\n"
            "_Alias = int\n"
            "LIMIT: int\n"
            "def gone() -> None: ...\n"
            "class Widget:\n"
            "    size: int\n"
            "    def shrink(self) -> None: ...\n"
            "    def __len__(self) -> int: ...\n")
    problems, checked = compare(mod, stub)
    text = "\n".join(problems)
    assert "lsmkv._fake: not in the stub: helper" in text
    assert "lsmkv._fake: in the stub but not in the module: CorruptionError, gone" in text
    assert "lsmkv._fake.Widget: not in the stub: grow" in text
    assert "lsmkv._fake.Widget: in the stub but not on the class: __len__, shrink" in text
    assert len(problems) == 4, text
    assert checked == 3 + 2                      # helper, LIMIT, Widget; size, grow

    good = ("LIMIT: int\n"
            "def helper() -> None: ...\n"
            "class Widget:\n"
            "    size: int\n"
            "    def grow(self) -> None: ...\n")
    assert compare(mod, good) == ([], 5)
    problems, _ = compare(mod, "LIMIT: int\ndef helper() -> None: ...\nWidget: Any\n")
    assert problems == ["lsmkv._fake: class Widget has no class body in the stub"]
