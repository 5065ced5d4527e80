"""Build the Cython extensions.

LSMKV_DEBUG=1 builds with bounds checks, assertions and -O0 -g (see docs/architecture.md).
LSMKV_SANITIZE=address (or address,undefined, ...) builds with -fsanitize=... -fno-omit-frame-pointer
-g -O1, for running under the sanitizer's runtime (docs/reliability.md).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LSMKV_DEBUG") == "1"
MODULES = ["coding", "fileio", "zstd", "memtable", "merge", "iterator", "bloom", "builder", "output", "table", "wal",
           "cache", "cursor", "rangedel", "dbcore"]   # lsmkv/core/ (table.pyx includes its .pxi parts)

SANITIZE = os.environ.get("LSMKV_SANITIZE", "")
cflags = ["-O0", "-g"] if DEBUG else ["-O3"]
ldflags = []
if SANITIZE:
    cflags = [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer", "-g", "-O0" if DEBUG else "-O1"]
    ldflags = [f"-fsanitize={SANITIZE}"]
extensions = [
    Extension(f"lsmkv.core.{name}", [f"lsmkv/core/{name}.pyx"], extra_compile_args=cflags, extra_link_args=ldflags)
    for name in MODULES
] + [Extension("lsmkv.server.fast", ["lsmkv/server/fast.pyx"], extra_compile_args=cflags,
               extra_link_args=ldflags)]      # the server's GET/SET fast path
directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
    "autotestdict": False,     # doctest finds the methods' docstrings itself (tests/test_docstrings.py)
}
setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            compile_time_env={"LSMKV_DEBUG": DEBUG}))
