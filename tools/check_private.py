"""Usage: python tools/check_private.py [paths...] (default: lsmkv), from the repository root.

Print every access to another module's underscore name in the given trees
(`x._name` where x is not self/cls, `from m import _name`, `import m._x`), and every
import cycle among lsmkv modules. Prints nothing when clean."""
import ast
import os
import sys

ALLOWED_BASES = {"self", "cls"}
PKG = "lsmkv"


def names(paths):
    for root in paths:
        if root.endswith(".py"):
            yield root
            continue
        for d, _, fs in os.walk(root):
            if ".venv" in d or "build" in d.split(os.sep):
                continue
            for f in sorted(fs):
                if f.endswith(".py"):
                    yield os.path.join(d, f)


def private(n):
    return n.startswith("_") and not (n.startswith("__") and n.endswith("__"))


def module_of(path):
    rel = os.path.relpath(path)
    if not rel.startswith(PKG + os.sep):
        return None
    m = rel[:-3].replace(os.sep, ".")
    return m[:-len(".__init__")] if m.endswith(".__init__") else m


imports = {}
for path in names(sys.argv[1:] or [PKG]):
    tree = ast.parse(open(path).read(), path)
    mod = module_of(path)
    deps = imports.setdefault(mod, set()) if mod else set()
    # underscore names this module defines itself (self._x = ..., def _x, class _X,
    # _x = ...): an access to one of them on another instance of its own class is
    # not another module's name
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and private(node.name):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                isinstance(node.value, ast.Name) and node.value.id in ALLOWED_BASES:
            own.add(node.attr)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            if not (isinstance(base, ast.Name) and base.id in ALLOWED_BASES) and node.attr not in own:
                print(f"{path}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if private(a.name):
                    print(f"{path}:{node.lineno}: from {node.module} import {a.name}")
            if node.module and node.module.startswith(PKG):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    deps.add(full if os.path.exists(full.replace(".", "/") + ".py") else node.module)
            if any(private(p) for p in (node.module or "").split(".")):
                print(f"{path}:{node.lineno}: from {node.module}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if any(private(p) for p in a.name.split(".")):
                    print(f"{path}:{node.lineno}: import {a.name}")
                if a.name.startswith(PKG):
                    deps.add(a.name)

# import cycles among the package's modules (every import, also those inside functions)
graph = {m: {d for d in ds if d in imports and d != m and not m.startswith(d + ".")}
         for m, ds in imports.items() if m}
state = {}


def visit(m, stack):
    state[m] = 1
    stack.append(m)
    for d in sorted(graph.get(m, ())):
        if state.get(d) == 1:
            print("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
        elif d not in state:
            visit(d, stack)
    stack.pop()
    state[m] = 2


for m in sorted(graph):
    if m not in state:
        visit(m, [])
