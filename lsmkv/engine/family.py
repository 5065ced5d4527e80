"""Column families: key spaces of one DB that share its log, sequence numbers and mutex.

The model is RocksDB's. The engine (lsmkv.engine.engine.Engine) is the DB and its
default family, exactly as before families existed. Every other family is a Family:
a compiled Core of its own (lsmkv.core.dbcore: its SuperVersion, memtables, merge
operator, write_buffer_size, level-0 count, counters) whose writes go through the
engine's log at the engine's next sequence under the engine's mutex (Core.db is the
engine), with its own Version (VersionSet.families), flush (Flusher) and compactions
(Compactions), and its options. ColumnFamily is the handle users get: CoreDB's
compiled methods over the Family's Core. Which families exist, and the rules
across them, are the engine's Families (lsmkv.engine.families).

  Family            owns                                   shares (the engine's)
  sv, memtables     its SuperVersion, installed by itself  mutex, cv, wal, last_seq
  versions          FamilyVersions: its Version, log_number MANIFEST, file numbers
  flusher           Flusher(family)                        tables, files, snapshots
  compactions       Compactions(family)                    threads (its jobs run in the engine's steps)
  writes            WriteController(family)                logs, stats, state

Thread safety: everything a Family changes is guarded by the engine mutex (it is
the same lock object), as in the engine; creating and dropping a family log a
MANIFEST edit under the engine's manifest_lock first. Lock order as the engine's.

Invariants:
  1. A family's id is never reused while the DB is open, and a family created
     later starts with log_number = the log active at its creation, so a replay
     never gives it a record of an older family with the same id.
  2. A log is obsolete only when every family has flushed past it: below the
     oldest log a memtable holding data still needs (Families.log_bound).
  3. Every record of a batch that spans families is in one log record, and the
     families' last_seq move together with the DB's under the mutex
     (Core._write_batch_cf), so a batch is seen whole or not at all, also after
     a crash.
  4. A dropped family's tables are deleted once no iterator pins its version
     (lsmkv.engine.files: only live families' versions and pins are live).
"""
from collections.abc import Mapping

from lsmkv.core import merge
from lsmkv.core.dbcore import Core, CoreDB, WriteBatch, check_bound
from lsmkv.core.memtable import MemTable
from lsmkv.engine import estimates
from lsmkv.engine.mapping import MappingMethods
from lsmkv.engine.flush import Flusher, flush_and_wait
from lsmkv.engine.scheduler import Compactions
from lsmkv.engine.version import Version
from lsmkv.engine.writes import WriteController
from lsmkv.errors import ClosedError, ColumnFamilyError
from lsmkv.options import Options

# Options a family may set for itself (the rest are the DB's).
FAMILY_OPTIONS = frozenset((
    "write_buffer_size", "max_write_buffer_number", "block_size", "block_restart_interval",
    "compression", "compression_level", "compression_dict_bytes", "bottommost_compression_level",
    "bloom_bits_per_key", "target_file_size_base", "level0_file_num_compaction_trigger",
    "level0_slowdown_writes_trigger", "level0_stop_writes_trigger", "max_bytes_for_level_base",
    "max_bytes_for_level_multiplier", "merge_operator", "default_ttl"))


def check_options(name, options):
    """The options of a new family, as the MANIFEST records them (a JSON object)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a column family's name must be a non-empty str, not {name!r}")
    if name == "default":
        raise ColumnFamilyError("'default' is the DB itself (its default family)")
    for k, v in options.items():
        if k not in FAMILY_OPTIONS:
            if k in Options.names():
                raise ValueError(f"option {k!r} is the DB's, not a column family's")
            raise TypeError(f"unknown option {k!r}")
    out = dict(options)
    mo = out.get("merge_operator")
    if mo is not None:
        if isinstance(mo, tuple):
            mo = list(mo)
        if isinstance(mo, list) and len(mo) == 2 and isinstance(mo[1], (bytes, bytearray)):
            mo = [mo[0], bytes(mo[1]).hex()]
            out["merge_operator_delim_hex"] = True
        if not isinstance(mo, (str, list)):
            raise TypeError("a column family's merge_operator must be a built-in operator's name "
                            "('uint64add', 'append', ('append', b','), 'max'): it is recorded in the "
                            "MANIFEST")
        out["merge_operator"] = mo
    return out


def build_options(base, recorded):
    """The Options of a family: the DB's, with what the family was created with."""
    rec = dict(recorded)
    hexed = rec.pop("merge_operator_delim_hex", False)
    mo = rec.get("merge_operator")
    if isinstance(mo, list):
        rec["merge_operator"] = (mo[0], bytes.fromhex(mo[1])) if hexed else tuple(mo)
    rec["memory_budget"] = 0           # the budget is the default family's (lsmkv.engine.writes)
    return Options.build(base, **rec)


class FamilyVersions:
    """A family's view of the engine's VersionSet (what Flusher and Compactions use
    as engine.versions): its Version and log_number; file numbers and the MANIFEST
    are the engine's."""

    def __init__(self, engine, fid):
        self.engine = engine
        self.fid = fid

    @property
    def vs(self):
        return self.engine.versions     # replaced whole by a read-only or secondary engine's reload

    @property
    def current(self):
        return self.vs.families[self.fid].current

    @property
    def log_number(self):
        return self.vs.families[self.fid].log_number

    def new_file_number(self):
        return self.vs.new_file_number()

    def log(self, edit):
        edit.family = self.fid
        self.vs.log(edit)

    def apply(self, edit):
        self.vs.apply(edit)


class Family(Core):
    """A column family other than the default (see the module docstring)."""

    def __init__(self, engine, fid, name, options):
        self.engine = engine
        self.db = engine
        self.cf_id = fid
        self.cf_name = name
        self.options = options
        self.path = engine.path
        self.clock = engine.clock
        self.mutex = engine.mutex
        self.state = engine.state
        self.read_only = engine.read_only
        self.write_buffer_size = options.write_buffer_size
        self.merge_op = merge.resolve(options.merge_operator)
        self.default_ttl = options.default_ttl
        self.l0_slowdown = max(options.level0_slowdown_writes_trigger,
                               options.level0_file_num_compaction_trigger)
        self.l0_stop = max(options.level0_stop_writes_trigger, self.l0_slowdown)
        self.files = engine.files
        self.tables = engine.tables
        self.snapshots = engine.snapshots
        self.stats = engine.stats
        self.threads = engine.threads
        self.logs = engine.logs
        self.manifest_lock = engine.manifest_lock
        self.versions = FamilyVersions(engine, fid)
        self.writes = WriteController(self)
        self.flusher = Flusher(self)
        self.compactions = Compactions(self, engine.compactions_n)
        self.last_seq = engine.last_seq
        self.dropped = False
        self.closed = False

    # -- what the components use of "their engine", the engine's where DB-wide

    @property
    def cv(self):
        return self.engine.cv

    @property
    def shutting_down(self):
        return self.engine.shutting_down or self.dropped

    @property
    def bg_error(self):
        return self.engine.bg_error

    def holds_lock(self):
        return self.engine.holds_lock()

    def now_ms(self):
        return self.engine.now_ms()

    def fail_background(self, e):
        self.engine.fail_background(e)

    def janitor_pass(self):
        self.engine.janitor_pass()

    def check_open(self):
        if self.dropped and not self.engine.closed:
            raise ClosedError(f"column family {self.cf_name!r} was dropped")
        self.engine.check_open()

    def install(self, mem, imms):
        """Publish a new SuperVersion from the family's current version (mutex held)."""
        self.sv = self.engine.super_version(mem, imms, self.versions.current)
        self.l0_files = len(self.sv.l0)

    def release_all(self):
        """Once dropped (mutex held): an empty SuperVersion, so that a handle the user
        keeps holds no memtable and no open table (the deleted files' disk space);
        reads already running hold the SuperVersion they took."""
        self.sv = self.engine.super_version(MemTable(log_number=self.engine.wal.number), (), Version())
        self.l0_files = 0

    def switch_memtable(self):
        """Make the family's memtable immutable (mutex held): the DB's log is switched
        too, so the new memtable's writes are in logs from the new one on (the other
        families' memtables go on, holding the older logs: Families.log_bound)."""
        e = self.engine
        e.switch_log()
        sv = self.sv
        self.install(MemTable(log_number=e.wal.number), (sv.mem,) + sv.imms)
        e.families.release_old_logs()
        e.cv.notify_all()

    def log_and_apply(self, edit, installed=None):
        """As Engine.log_and_apply, for an edit of this family."""
        e = self.engine
        with e.manifest_lock:
            edit.last_sequence = e.last_seq
            self.versions.log(edit)
            with e.mutex:
                self.versions.apply(edit)
                if installed is not None:
                    installed()

    def wait_bg(self):
        self.engine.wait_bg()
        self.check_open()

    def flush(self):
        """Write the family's memtable to a level-0 table and wait."""
        flush_and_wait(self, self.engine.janitor_pass)

    def compact_range(self, start=None, stop=None):
        start = check_bound("start", start)
        stop = check_bound("stop", stop)
        self.flush()
        with self.compactions.no_background():
            self.compactions.compact_range(start, stop)
        self.engine.janitor_pass()

    def holds_data(self):
        return holds_data(self)


class ColumnFamily(MappingMethods, CoreDB):
    """A column family's handle: the DB's read and write API over the family's key
    space (get, put(ttl=), delete, delete_range, merge, multi_get, items, keys,
    values, iterator, ...: CoreDB's compiled methods; pop, setdefault, update,
    reversed(): the DB's mapping methods), plus flush(), compact_range(),
    approximate_size(), estimate_num_keys() and stats(). Batches across families
    are written with the DB's write() (wb.put(k, v, cf=handle)). It keeps its DB
    handle open while it is referenced; closing the DB closes it."""

    def __init__(self, family, db=None):
        CoreDB.__init__(self, family)
        # the DB handle, kept open while this handle is referenced (as an iterator or
        # a snapshot keeps it): lsmkv.DB(path).column_family(name) stays usable
        self._db = db

    @property
    def name(self):
        return self.core.cf_name

    @property
    def id(self):
        return self.core.cf_id

    @property
    def last_seq(self):
        return self.core.last_seq

    def flush(self):
        self.core.flush()

    def compact_range(self, start=None, stop=None):
        self.core.compact_range(start, stop)

    def approximate_size(self, start=None, stop=None):
        """Bytes of the family's table files holding keys in [start, stop) (DB.approximate_size)."""
        return estimates.approximate_size(self.core, start, stop)

    def estimate_num_keys(self):
        """An estimate of the family's live keys (DB.estimate_num_keys)."""
        return estimates.estimate_num_keys(self.core)

    def update(self, other=(), /):
        """Store every (key, value) of other (a mapping, or an iterable of pairs)
        in the family, in one atomic batch (DB.update)."""
        wb = WriteBatch(clock=self.core.clock)
        for k, v in (other.items() if isinstance(other, Mapping) else other):
            wb.put(k, v, cf=self)
        self.core.write_through_db(wb)

    def stats(self):
        """The family's counters, memtables and levels (the DB-wide counters,
        flushes, compactions, stalls, are in db.stats())."""
        from lsmkv.engine.compaction import level_scores
        c = self.core
        c.check_open()
        with c.mutex:
            sv = c.sv
            v = sv.version
            scores = level_scores(v, c.options)
            levels = [{"level": i, "files": len(files), "bytes": sum(f.file_size for f in files),
                       "score": round(scores[i], 3)} for i, files in enumerate(v.levels)]
            return {
                "name": c.cf_name, "id": c.cf_id,
                "puts": c.n_puts, "deletes": c.n_deletes, "gets": c.n_gets, "get_hits": c.n_get_hits,
                "writes": c.n_writes, "wal_bytes": c.n_wal_bytes, "user_bytes": c.n_user_bytes,
                "bloom_checks": c.n_bloom_checks, "bloom_useful": c.n_bloom_useful,
                "last_sequence": c.last_seq,
                "memtable_bytes": sv.mem.memory_usage, "memtable_entries": len(sv.mem),
                "immutable_memtables": len(sv.imms),
                "immutable_memtable_bytes": sum(m.memory_usage for m in sv.imms),
                "levels": levels, "files_per_level": [lv["files"] for lv in levels],
                "live_sst_bytes": sum(lv["bytes"] for lv in levels),
                "compactions_running": len(c.compactions.running),
                "read_charge": c.read_charge.units,
                "write_buffer_size": c.write_buffer_size,
                "compression": c.options.compression,
                "bloom_bits_per_key": c.options.bloom_bits_per_key,
                "merge_operator": None if c.merge_op is None else c.merge_op.name,
                "default_ttl": c.default_ttl,
            }

    def write(self, batch, *, sync=False):
        raise TypeError("write a batch with the DB's write(): its records name their families "
                        "(wb.put(k, v, cf=handle))")

    def write_batch(self, *, sync=False):
        raise TypeError("make batches with db.write_batch() and name the family per record "
                        "(wb.put(k, v, cf=handle))")

    batch = write_batch

    def write_if_unchanged(self, batch, keys, seq, *, sync=False):
        raise TypeError("transactions are the DB's (db.transaction())")

    def transaction(self, **kw):
        raise TypeError("transactions are the DB's (db.transaction())")

    def __repr__(self):
        return f"<lsmkv column family {self.name!r} of {self.core.path!r}>"

    def __reduce__(self):
        raise TypeError("a column family handle cannot be pickled or sent to another process: "
                        "open the database by its path in that process and call column_family(name) "
                        "(docs/getting-started.md, \"Processes\")")


def holds_data(core):
    """The number of the oldest log that a memtable with data of core's family (the
    engine for the default) still needs, or None (mutex held)."""
    sv = core.sv
    if sv.imms:
        return sv.imms[-1].log_number
    if len(sv.mem) or sv.mem.range_dels:
        return sv.mem.log_number
    return None
