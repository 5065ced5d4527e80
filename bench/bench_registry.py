"""The engines db_bench knows, by name.

Part of bench/db_bench.py (see its docstring for the method).
"""

from bench_engine_lmdb import LmdbEngine
from bench_engine_lsmkv import LsmkvEngine
from bench_engine_plyvel import PlyvelEngine
from bench_engine_rocksdict import RocksdictEngine
from bench_engine_sqlite import SqliteEngine


ENGINE_CLASSES = {"lsmkv": LsmkvEngine, "plyvel": PlyvelEngine, "rocksdict": RocksdictEngine,
                  "lmdb": LmdbEngine, "sqlite3": SqliteEngine}
