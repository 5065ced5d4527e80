"""The engines db_bench knows, by name: one adapter module each (lsmkv, plyvel,
rocksdict, lmdb, sqlite), all on the interface of base.Engine.

Part of bench/db_bench.py (see its docstring for the method).
"""

from .base import Engine, engine_available, import_lsmkv  # noqa: F401 (the package's interface)
from .lmdb import LmdbEngine
from .lsmkv import LsmkvEngine
from .plyvel import PlyvelEngine
from .rocksdict import RocksdictEngine
from .sqlite import SqliteEngine


ENGINE_CLASSES = {"lsmkv": LsmkvEngine, "plyvel": PlyvelEngine, "rocksdict": RocksdictEngine,
                  "lmdb": LmdbEngine, "sqlite3": SqliteEngine}


__all__ = ["ENGINE_CLASSES", "Engine", "engine_available", "import_lsmkv"]
