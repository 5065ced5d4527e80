"""The engine in Python: the DB handle and Engine, recovery, flush, compaction, versions, files."""
