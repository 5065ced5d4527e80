"""Every public name has a docstring with a runnable example, and the examples run.

  * doctest.testmod runs over lsmkv, lsmkv.engine.db, lsmkv.options, lsmkv.errors,
    lsmkv.engine.dirlock, lsmkv.engine.worker and the compiled lsmkv.core.dbcore (with
    the .pxi parts it includes) and lsmkv.core.cursor (ELLIPSIS | NORMALIZE_WHITESPACE). For a cdef class doctest
    finds the methods through the class __dict__ but skips properties (getset
    descriptors), so their docstrings are run here explicitly.
  * A module must run every example its source holds (the `>>>` prompts of the .py or
    .pyx, less those marked +SKIP) and at least MIN_EXAMPLES of them: a finder that
    sees nothing, or a compiled module built before its docstrings changed, fails.
  * Each example makes its DB in tempfile.mkdtemp(); the tests point tempfile at
    tmp_path so nothing is left behind.
  * Every name in lsmkv.__all__ (but __version__) and every public method or property
    of DB, CoreDB, WriteBatch, Snapshot, Iterator and Transaction (DB's dict methods from
    lsmkv.engine.mapping included) has '>>>' in its docstring.
  * lsmkv/core/dbcore.pyi carries the same docstrings as the compiled WriteBatch and CoreDB.
"""
import ast
import doctest
import importlib
import inspect
import os
import re
import tempfile

import pytest

import lsmkv
from lsmkv.core import dbcore as _engine
from lsmkv.engine.db import DB, Snapshot

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# examples written when issue 5 was closed; a module may gain more, never fewer
MIN_EXAMPLES = {"lsmkv": 3, "lsmkv.engine.db": 105, "lsmkv.options": 16, "lsmkv.errors": 21,
                "lsmkv.core.dbcore": 181, "lsmkv.engine.dirlock": 28, "lsmkv.engine.worker": 8,
                "lsmkv.engine.mapping": 11, "lsmkv.engine.destroy": 7, "lsmkv.core.cursor": 20}
# lsmkv.Transaction's 81 examples moved with it from lsmkv.engine.transaction (which now
# only states its guarantees and exports it) to lsmkv/core/txn.pxi, part of lsmkv.core.dbcore

_PROMPT = re.compile(r"^\s*>>> ", re.M)
_SKIPPED = re.compile(r"^\s*>>> .*#\s*doctest:.*\+SKIP", re.M)
_INCLUDE = re.compile(r'^include "([\w.]+\.pxi)"', re.M)


@pytest.fixture
def tmp_tempdir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _source_of(module):
    """The .py or .pyx text a module was built from, or None if not shipped."""
    base = os.path.splitext(module.__file__)[0]
    if module.__file__.endswith((".so", ".pyd")):
        base = base.split(".")[0]           # dbcore.cpython-311-x86_64-linux-gnu
        path = base + ".pyx"
    else:
        path = module.__file__
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if path.endswith(".pyx"):          # and the parts it includes (dbcore.pyx: txn.pxi)
        for name in _INCLUDE.findall(text):
            with open(os.path.join(os.path.dirname(path), name), encoding="utf-8") as fh:
                text += fh.read()
    return text


def _property_tests(module):
    """DocTests of the properties of module's cdef classes (doctest.DocTestFinder
    skips getset descriptors)."""
    parser = doctest.DocTestParser()
    out = []
    for cname, cls in vars(module).items():
        if not inspect.isclass(cls) or cls.__module__ != module.__name__:
            continue
        for name, attr in vars(cls).items():
            if inspect.isgetsetdescriptor(attr) and attr.__doc__ and ">>>" in attr.__doc__:
                out.append(parser.get_doctest(attr.__doc__, {}, f"{module.__name__}.{cname}.{name}",
                                              None, None))
    return out


@pytest.mark.parametrize("name", sorted(MIN_EXAMPLES))
def test_doctests(name, tmp_tempdir):
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=FLAGS, report=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for t in _property_tests(module):
        runner.run(t)
    failed += runner.failures
    attempted += runner.tries
    assert failed == 0, f"{failed} of {attempted} doctest examples of {name} failed (output above)"
    assert attempted >= MIN_EXAMPLES[name], (
        f"{name}: only {attempted} examples ran, expected at least {MIN_EXAMPLES[name]}")
    source = _source_of(module)
    if source is not None:
        written = len(_PROMPT.findall(source)) - len(_SKIPPED.findall(source))
        assert attempted == written, (
            f"{name}: {written} examples in its source but {attempted} ran "
            f"(a compiled module older than its .pyx? rebuild it)")


def test_a_failing_example_is_reported():
    """The harness above can fail: a wrong expected output counts as a failure."""
    t = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, None)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(t, out=lambda s: None)
    assert (runner.failures, runner.tries) == (1, 1)


def _public_members(cls):
    """Public methods and Python properties defined by cls itself. A cdef class's
    attributes and properties are getset descriptors, the C attributes among them
    (`cdef readonly ...`: counters, internals) with no docstring but their type;
    _missing_examples names the one cdef property of the API (WriteBatch.data_size)."""
    out = {}
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, classmethod):
            attr = attr.__func__
        if callable(attr) or isinstance(attr, property):
            out[name] = attr
    return out


def _missing_examples():
    missing = []
    for name in lsmkv.__all__:
        if name == "__version__":
            continue
        if ">>>" not in (getattr(lsmkv, name).__doc__ or ""):
            missing.append(f"lsmkv.{name}")
    from lsmkv.engine.mapping import MappingMethods
    for cls in (DB, _engine.CoreDB, lsmkv.WriteBatch, Snapshot, lsmkv.Iterator, MappingMethods,
                lsmkv.Transaction):
        for name, attr in _public_members(cls).items():
            if ">>>" not in (attr.__doc__ or ""):
                missing.append(f"{cls.__name__}.{name}")
    if ">>>" not in (lsmkv.WriteBatch.data_size.__doc__ or ""):    # a property
        missing.append("WriteBatch.data_size")
    return missing


def test_every_public_name_has_an_example():
    assert _missing_examples() == []


def test_count_is_shown_in_the_class_docstring():
    """WriteBatch.count is a cdef readonly attribute, which cannot have a docstring."""
    assert ">>> wb.count" in lsmkv.WriteBatch.__doc__


def test_the_check_sees_the_members():
    """The public-member check looks at the real methods (not an empty list)."""
    assert {"snapshot", "flush", "no_background_compactions", "compact_range", "stats", "close",
            "checkpoint", "approximate_size", "estimate_num_keys"} <= set(_public_members(DB))
    assert {"put", "delete", "get", "get_at", "ttl", "ttl_at", "items", "keys", "values",
            "write", "write_batch", "batch", "multi_get", "multi_get_at"} <= set(_public_members(_engine.CoreDB))
    assert {"put", "delete", "clear", "append"} <= set(_public_members(lsmkv.WriteBatch))
    assert {"get", "ttl", "items", "keys", "values", "iterator", "close", "multi_get"} <= set(_public_members(Snapshot))


def _strip_signature(doc, qualname):
    """A compiled docstring without the `Class.method(...)` line embedsignature puts first."""
    lines = inspect.cleandoc(doc).splitlines()
    if lines and lines[0].startswith(qualname + "("):
        lines = lines[1:]
    return "\n".join(lines).strip()


def test_stub_mirrors_the_compiled_docstrings():
    path = os.path.join(os.path.dirname(_engine.__file__), "dbcore.pyi")
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    checked = 0
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name not in ("WriteBatch", "CoreDB"):
            continue
        cls = getattr(_engine, node.name)
        members = [(node.name, node, cls)] + [
            (f"{node.name}.{f.name}", f, vars(cls)[f.name]) for f in node.body
            if isinstance(f, ast.FunctionDef) and ast.get_docstring(f)]
        for qual, stub, real in members:
            stub_doc = ast.get_docstring(stub)
            if stub_doc is None:
                continue
            assert stub_doc == _strip_signature(real.__doc__ or "", qual), f"{qual}: .pyi docstring differs"
            checked += 1
    assert checked == 20         # WriteBatch, 5 of its members, 14 of CoreDB's methods
