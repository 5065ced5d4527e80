"""Build the Cython extensions.

LSMKV_DEBUG=1 builds with bounds checks, assertions and -O0 -g (see docs/architecture.md).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LSMKV_DEBUG") == "1"
MODULES = ["_coding", "_fileio", "_zstd", "_memtable", "_iterator", "_table", "_wal", "_cache", "_engine"]

cflags = ["-O0", "-g"] if DEBUG else ["-O3"]
extensions = [
    Extension(f"lsmkv.{name}", [f"lsmkv/{name}.pyx"], extra_compile_args=cflags)
    for name in MODULES
]
directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            compile_time_env={"LSMKV_DEBUG": DEBUG}))
