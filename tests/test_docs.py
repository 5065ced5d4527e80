"""docs/getting-started.md runs as written, so it cannot go stale.

  * Each ```python block runs on its own, in an empty temporary directory (its cwd).
    A `print(...)` line with a trailing `# EXPECTED` comment must print EXPECTED (the
    comment up to the first ": ", which starts an explanation; a comment starting
    with "..." must match the end of what was printed).
  * The ```console blocks run in order in one shared temporary directory: each
    `$ COMMAND` line is run (`lsmkv` as `python -m lsmkv`, `python` as this
    interpreter, `bench/...` paths from the repository) and must exit 0 and print
    the lines that follow it (a line `...` matches any number of lines).
  * ```sh blocks (installing) are not run.
"""
import io
import os
import re
import shlex
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

from conftest import lsmkv_import_path

ROOT = lsmkv_import_path()      # where the lsmkv under test is imported from (children too)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # docs/ and bench/
DOC = os.path.join(REPO, "docs", "getting-started.md")
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def _blocks(kind):
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    out = []
    for m in _FENCE.finditer(text):
        if m.group(1) == kind:
            out.append((text.count("\n", 0, m.start()) + 2, m.group(2)))   # (first code line, code)
    return out


PYTHON_BLOCKS = _blocks("python")


def test_the_doc_has_examples():
    assert len(PYTHON_BLOCKS) >= 8
    assert len(_blocks("console")) >= 2


def _expected_prints(code):
    """{line number in the block: expected output} for `print(...)  # X` lines."""
    out = {}
    for i, line in enumerate(code.splitlines(), start=1):
        m = re.match(r"\s*print\(.*\)\s+# (.+)$", line)
        if m:
            out[i] = m.group(1).split(": ")[0].strip()
    return out


@pytest.mark.parametrize("first_line,code", PYTHON_BLOCKS,
                         ids=[f"line{n}" for n, _ in PYTHON_BLOCKS])
def test_python_example(first_line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed = {}

    def recording_print(*args, **kwargs):
        line = sys._getframe(1).f_lineno
        buf = io.StringIO()
        print(*args, file=buf, **{k: v for k, v in kwargs.items() if k != "file"})
        printed.setdefault(line, []).append(buf.getvalue().rstrip("\n"))

    name = f"{DOC}:{first_line}"
    ns = {"__name__": "__main__", "print": recording_print}
    with redirect_stdout(io.StringIO()):
        exec(compile(code, name, "exec"), ns)
    for line, want in _expected_prints(code).items():
        assert line in printed, f"{name}: line {line} printed nothing"
        for got in printed[line]:
            if want.startswith("..."):
                assert got.endswith(want[3:]), f"{name}: line {line}: {got!r} does not end with {want[3:]!r}"
            else:
                assert got == want, f"{name}: line {line}: printed {got!r}, the doc says {want!r}"


def _commands(block):
    """[(argv words, expected output lines)] of a console block."""
    out = []
    for line in block.splitlines():
        if line.startswith("$ "):
            out.append((shlex.split(line[2:]), []))
        else:
            out[-1][1].append(line)
    return out


def _argv(words):
    if words[0] == "lsmkv":
        return [sys.executable, "-m", "lsmkv", *words[1:]]
    if words[0] == "python":
        return [sys.executable] + [os.path.join(REPO, w) if w.startswith("bench/") else w
                                   for w in words[1:]]
    raise AssertionError(f"the test does not know how to run {words[0]!r}")


def _matches(got, want):
    """got (lines) matches want (lines, where '...' stands for any number of lines)."""
    if not want:
        return not got
    if want[0] == "...":
        return any(_matches(got[i:], want[1:]) for i in range(len(got) + 1))
    return bool(got) and got[0] == want[0] and _matches(got[1:], want[1:])


def test_console_examples(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    for first_line, block in _blocks("console"):
        for words, want in _commands(block):
            r = subprocess.run(_argv(words), cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=120)
            where = f"{DOC}:{first_line}: $ {shlex.join(words)}"
            assert r.returncode == 0, f"{where}: exit {r.returncode}\n{r.stderr}"
            got = r.stdout.splitlines()
            assert _matches(got, want), f"{where}: printed\n{r.stdout}\nthe doc says\n" + "\n".join(want)
