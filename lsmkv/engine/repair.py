"""Repair: salvage what can be read from a damaged database into a consistent one
(LevelDB's RepairDB, RocksDB's `ldb repair`), and report what was lost.

    report = repair("/path/to/db", progress=None)

The DB must not be open (repair takes its LOCK, as an open does). Two modes:

  * "manifest": the MANIFEST that CURRENT names (or, CURRENT gone or damaged, the
    newest MANIFEST-NNNNNN) replays cleanly. Its levels are kept: a table that
    reads cleanly stays as it is; a damaged one is rewritten, at the same level,
    with the entries of its readable blocks (its key range can only shrink, so
    the level invariants of lsmkv.engine.version still hold); an unreadable or missing
    one is dropped. Tables the MANIFEST does not name are leftovers (an output
    never installed, or a compacted input not yet deleted): moved to lost/, never
    added, since an obsolete table can hold puts whose deletions compaction has
    already dropped. Logs numbered >= its log_number are replayed.
  * "rebuild": no MANIFEST replays. Every table on disk and every log is read
    and the whole lot is merged (lsmkv.core.table.write_tables, newest version of
    each key wins by sequence number) into non-overlapping tables placed in the
    last level. A deleted key can come back only if a table that compaction had
    already made obsolete was still on disk (the engine deletes those promptly).

In both modes sequence numbers are kept, so a newer version still hides an
older one; the new MANIFEST records last_sequence >= every sequence kept.

Invariants (what repair guarantees):
  1. Nothing is deleted before the new state is durable: a damaged original is
     hard-linked (or copied) into lost/ before CURRENT switches, and unlinked
     from the DB directory only after. Repairing again after a crash is safe.
  2. CURRENT is replaced atomically (lsmkv.engine.filenames.set_current), naming a new
     MANIFEST written whole and fsynced (VersionSet.write_snapshot).
  3. The new MANIFEST's log_number is above every log repair read, so the next
     open replays none of them twice.
  4. A WAL is replayed up to its first bad record; the batches after it are
     dropped and reported (a batch is applied whole or not at all).
  5. A block whose checksum (or decompression, or decoding) fails is dropped
     whole and reported with its file and offset. When a block is lost, the
     versions of its keys in older tables become visible again: the report gives
     the lost key range (lost_ranges) so that can be checked.

Thread safety: one call at a time per directory (lsmkv.engine.dirlock: the LOCK sees to
other processes, its registry to this one).
"""
import os
import re
import tempfile
from typing import Callable, Optional, Union

import zstandard

from lsmkv.engine import filenames
from lsmkv.core.coding import crc32c_py, decode_varint
from lsmkv.core.dbcore import decode_batch, replay_batch_cf
from lsmkv.core.iterator import MergingIterator
from lsmkv.core.memtable import MemTable, MemTableIterator
from lsmkv.core.table import (BLOCK_RAW, TRAILER_SIZE, TableBuilder, TableIterator, TableReader,
                              block_entries, decompress_block, write_tables)
from lsmkv.engine.dirlock import DirLock
from lsmkv.errors import CorruptionError, LsmkvError
from lsmkv.engine.logformat import HEADER, is_seal, next_valid, valid_at, read_log
from lsmkv.options import Options
from lsmkv.engine.version import NUM_LEVELS, FamilyState, FileMeta, Version, VersionEdit, VersionSet
from lsmkv.core.rangedel import fragment

KIND_RANGE_DELETE = 4     # lsmkv/core/coding.pxd: a range tombstone (docs/format.md)

LOST_DIR = "lost"
MAX_SEQ = (1 << 56) - 1
_NO_LIMIT = (1 << 63) - 1
_DICT_MAGIC = b"\x37\xa4\x30\xec"      # a zstd dictionary's first bytes (little-endian 0xEC30A437)
_LOW_BYTE = re.compile(rb"[\x00-\x02]")  # a block type byte


class RepairReport:
    """What repair did and what it lost. Every list holds dicts (JSON-ready).

    mode            "manifest" or "rebuild" (see the module docstring)
    manifest_problem  why no MANIFEST could be used (rebuild mode), else None
    tables_kept     names of the tables kept as they were (manifest mode)
    tables_merged   names of the clean tables merged into new ones (rebuild mode)
    tables_rewritten  {file, new_file, entries, blocks_lost, reason}: damaged tables
                    whose readable entries were kept (new_file None in rebuild
                    mode, where they went into the merge)
    tables_dropped  {file, reason}: nothing of them could be read, or missing
    tables_not_in_manifest  names of leftover tables moved to lost/ (manifest mode)
    blocks_lost     {file, offset, detail}
    lost_ranges     {file, after, through}: user keys whose newest version may
                    have been in a lost block (after exclusive, through inclusive;
                    None = open end), as bytes
    entries_salvaged  entries read from damaged tables into their replacements
    wal_replayed    {file, records, entries}
    wal_dropped     {file, offset, detail, records_dropped, bytes_dropped}
    wal_family_records_skipped  log records of a dropped column family, left out
                    (rebuild mode: a family a readable MANIFEST record drops; its
                    tables go to lost/)
    tables_written  names of the tables repair wrote that the new MANIFEST names
    moved_to_lost   names (relative to the DB directory) of the originals moved
    manifest        name of the new MANIFEST; last_sequence its last sequence
    """

    def __init__(self, path):
        self.path = path
        self.mode = None
        self.manifest_problem = None
        self.tables_kept = []
        self.tables_merged = []
        self.tables_rewritten = []
        self.tables_dropped = []
        self.tables_not_in_manifest = []
        self.blocks_lost = []
        self.lost_ranges = []
        self.entries_salvaged = 0
        self.wal_replayed = []
        self.wal_dropped = []
        self.wal_family_records_skipped = 0
        self.tables_written = []
        self.moved_to_lost = []
        self.manifest = None
        self.last_sequence = 0

    @property
    def lost_anything(self):
        """True when some stored data could not be carried over (a rebuilt MANIFEST
        alone loses none: the tables and logs hold the data)."""
        return bool(self.tables_dropped or self.blocks_lost or self.wal_dropped)

    def to_dict(self, encode=None):
        """The report as a dict; encode(bytes) -> str turns the user keys of
        lost_ranges into text (JSON-ready then; left as bytes when None)."""
        d = {k: v for k, v in self.__dict__.items()}
        d["lost_anything"] = self.lost_anything
        if encode is not None:
            d["lost_ranges"] = [{k: (encode(v) if isinstance(v, bytes) else v) for k, v in r.items()}
                                for r in self.lost_ranges]
        return d

    def lines(self, encode=repr):
        """The report as text, one finding per line; encode(bytes) -> str shows keys."""
        out = [f"mode: {self.mode}" + (f" (no usable MANIFEST: {self.manifest_problem})"
                                       if self.manifest_problem else "")]
        out += [f"{n}: kept" for n in self.tables_kept]
        out += [f"{n}: merged" for n in self.tables_merged]
        for r in self.tables_rewritten:
            into = f" as {r['new_file']}" if r["new_file"] else " into the merge"
            out.append(f"{r['file']}: rewritten{into}, {r['entries']} entries kept, "
                       f"{r['blocks_lost']} blocks lost ({r['reason']})")
        out += [f"{r['file']}: dropped ({r['reason']})" for r in self.tables_dropped]
        out += [f"{n}: not in the MANIFEST, set aside" for n in self.tables_not_in_manifest]
        for b in self.blocks_lost:
            out.append(f"block lost: {b['file']} at offset {b['offset']} ({b['detail']})")
        for r in self.lost_ranges:
            lo = "the first key" if r["after"] is None else f"after {encode(r['after'])}"
            hi = "the last key" if r["through"] is None else f"{encode(r['through'])}"
            out.append(f"keys from {lo} through {hi} ({r['file']}): may be missing or show an "
                       f"older version")
        dropped = {w["file"] for w in self.wal_dropped}
        for w in self.wal_replayed:
            if not w["records"] and w["file"] not in dropped:
                continue            # an empty log (the spare one made ahead)
            out.append(f"{w['file']}: {w['records']} records ({w['entries']} entries) replayed")
        for w in self.wal_dropped:
            out.append(f"{w['file']}: dropped from offset {w['offset']} ({w['detail']}): "
                       f"{w['records_dropped']} later records, {w['bytes_dropped']} bytes")
        if self.wal_family_records_skipped:
            out.append(f"{self.wal_family_records_skipped} log records of column families the "
                       f"MANIFEST does not name left out")
        out += [f"moved to {n}" for n in self.moved_to_lost]
        status = "LOST DATA" if self.lost_anything else "REBUILT" if self.mode == "rebuild" else "OK"
        out.append(f"{status}: {len(self.tables_written)} "
                   f"tables written, {self.entries_salvaged} entries salvaged from damaged tables, "
                   f"{self.manifest}, last sequence {self.last_sequence}")
        return out

    def __repr__(self):
        return (f"RepairReport({self.mode}, kept={len(self.tables_kept)}, "
                f"rewritten={len(self.tables_rewritten)}, dropped={len(self.tables_dropped)}, "
                f"blocks_lost={len(self.blocks_lost)}, wal_dropped={len(self.wal_dropped)})")


# ---------------------------------------------------------------- entry point

def repair(path: "Union[str, os.PathLike[str]]", *,
           progress: "Optional[Callable[[int, int], object]]" = None) -> "RepairReport":
    """Salvage the database at `path` into a consistent one; returns a RepairReport.

    progress: None, or a callable progress(done, total) called as files are read.
    Raises LockError if the DB is open (in this or another process), LsmkvError
    if `path` holds no database files, OSError on I/O failure (the directory is
    then as consistent as before: nothing is removed until the new MANIFEST is
    durable).

    Example:
        >>> report = repair("/tmp/damaged-db")        # doctest: +SKIP
        >>> report.blocks_lost
        [{'file': '000012.sst', 'offset': 4096, 'detail': 'block checksum mismatch'}]
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise LsmkvError(f"no database at {path}")
    with DirLock.acquire(path, "a repair"):
        return _Repair(path, progress).run()


# ---------------------------------------------------------------- the repair

class _Repair:
    def __init__(self, path, progress):
        self.path = path
        self.progress = progress
        self.report = RepairReport(path)
        self.opts = Options()
        self.next_number = 1
        self.last_seq = 0
        self.to_lost = []          # names to move into lost/ once the new state is durable
        self.to_delete = []        # table numbers to unlink once it is (merged, or merge inputs)
        self.rebuild = False
        self.vs = None
        self.known_families = ({}, set())      # rebuild mode: (id -> (name, options), dropped ids)
        self.rebuilt_families = {}             # rebuild mode: id -> Version of each family but the default

    # -- plan

    def run(self):
        names = os.listdir(self.path)
        parsed = {n: filenames.parse(n) for n in names}
        kinds = {k: sorted(p[1] for p in parsed.values() if p and p[0] == k)
                 for k in ("sst", "log", "manifest")}
        if not any(kinds.values()) and "CURRENT" not in names:
            raise LsmkvError(f"no database at {self.path}")
        self.next_number = max([n for ns in kinds.values() for n in ns], default=1) + 1
        vs, problem = self._usable_manifest(kinds["manifest"])
        logs = kinds["log"] if vs is None else [n for n in kinds["log"] if n >= vs.min_log_number()]
        self.done = 0
        self.total = len(set(kinds["sst"]) | (set() if vs is None else vs.live_numbers())) + len(logs)
        self.vs = vs
        if vs is not None:
            self.report.mode = "manifest"
            self.next_number = max(self.next_number, vs.next_file_number)
            self.last_seq = vs.last_sequence
            # column families (lsmkv/engine/family.py): each family's tables are
            # repaired in its version, each log record replayed into its family
            named = {0: vs.current, **{fid: f.current for fid, f in vs.families.items()}}
            self.family_of = {f.number: fid for fid, v in named.items() for _, f in v.files()}
            versions = self._repair_tables(named, set(kinds["sst"]))
            for fid, edit in self._replay_logs(logs).items():
                versions[fid] = versions[fid].apply(edit)
            version = versions.pop(0)
            for fid, v in versions.items():
                vs.families[fid].current = v
        else:
            self.report.mode = "rebuild"
            self.rebuild = True
            self.report.manifest_problem = problem
            self.to_lost += [os.path.basename(filenames.manifest_name("", n)) for n in kinds["manifest"]]
            self.known_families = _families_in_manifests(self.path, kinds["manifest"])
            versions = self._rebuild(kinds["sst"], logs)
            version = versions.pop(0, None) or Version()
            self.rebuilt_families = versions
        self._install(version)
        return self.report

    def _tick(self):
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def _new_number(self):
        n = self.next_number
        self.next_number += 1
        return n

    def _new_builder(self, cf=0):
        number = self._new_number()
        o = self.opts
        b = TableBuilder(filenames.table_name(self.path, number), o.block_size, o.compression,
                         o.compression_level, o.bloom_bits_per_key, o.block_restart_interval, 0)
        b.column_family = cf           # a column family's tables say whose they are
        return b

    # -- the manifest

    def _usable_manifest(self, manifests):
        """(VersionSet, None) for the MANIFEST to trust, or (None, why not)."""
        cur = filenames.current_name(self.path)
        if os.path.exists(cur):
            vs = VersionSet(self.path)
            try:
                vs.recover()
                return vs, None
            except (CorruptionError, OSError) as e:
                problem = str(e)
            finally:
                vs.close()
            with open(cur, "rb") as fh:
                named = fh.read().decode("ascii", "replace").strip()
            if filenames.parse(named) is not None and os.path.exists(os.path.join(self.path, named)):
                return None, problem        # CURRENT is fine: its MANIFEST is damaged
        else:
            problem = "CURRENT is missing"
        if not manifests:
            return None, f"{problem}; no MANIFEST file"
        # CURRENT is gone or names nothing: the newest MANIFEST is the live one (numbers
        # only grow). An older one would describe tables compaction has since deleted.
        name = os.path.basename(filenames.manifest_name("", manifests[-1]))
        try:
            return _recover_manifest(self.path, name), None
        except (CorruptionError, OSError) as e:
            return None, f"{problem}; {e}"

    # -- manifest mode: tables

    def _repair_tables(self, versions, on_disk):
        """versions: family id -> Version; returns each family's repaired Version."""
        named = set()
        out = {}
        for fid, version in versions.items():
            out[fid] = self._repair_version(version, on_disk, named)
        for number in sorted(on_disk - named):
            self.report.tables_not_in_manifest.append(_table_file(number))
            self.to_lost.append(_table_file(number))
            self._tick()
        return out

    def _repair_version(self, version, on_disk, named):
        edit = VersionEdit()
        for level, meta in version.files():
            named.add(meta.number)
            name = _table_file(meta.number)
            if meta.number not in on_disk:
                self.report.tables_dropped.append({"file": name, "reason": "missing"})
                edit.delete_file(level, meta.number)
                self._tick()
                continue
            err = _table_error(filenames.table_name(self.path, meta.number), meta.number)
            if err is not None:
                edit.delete_file(level, meta.number)
                for m in self._salvage_table(meta.number, err):
                    edit.add_file(level, m)
            else:
                self.report.tables_kept.append(name)
            self._tick()
        return version.apply(edit)

    def _salvage_table(self, number, err, cf=None):
        """Rewrite the readable entries of a damaged table (of column family cf;
        None: the one the MANIFEST says); [FileMeta] (empty if nothing could be
        read). The original goes to lost/."""
        src = filenames.table_name(self.path, number)
        name = _table_file(number)
        self.to_lost.append(name)
        losses, ranges = [], []
        tb = self._new_builder(getattr(self, "family_of", {}).get(number, 0) if cf is None else cf)
        n = 0
        tombstones = _salvage_range_dels(src, number)
        try:
            prev = None
            for ikey, value in _salvage_entries(src, number, err, losses, ranges):
                tag = int.from_bytes(ikey[-8:], "little")
                if tag & 0xFF == KIND_RANGE_DELETE:
                    # a range-del block found by its checksum (footer or properties lost)
                    tombstones.add((ikey[:-8], value, tag >> 8))
                    continue
                if prev is not None and _ikey_order(ikey) <= _ikey_order(prev):
                    continue          # out of order: only possible in a block whose checksum held
                tb.py_add(ikey, value)
                prev = ikey
                n += 1
            if tombstones:
                tb.add_range_dels(fragment_triples(tombstones))
            if n == 0 and not tombstones:
                tb.abandon()
                meta = None
            else:
                meta = tb.finish()
        except BaseException:
            tb.abandon()
            raise
        self.report.blocks_lost += [dict(file=name, **loss) for loss in losses]
        self.report.lost_ranges += [dict(file=name, **r) for r in ranges]
        if meta is None:
            self.report.tables_dropped.append({"file": name, "reason": str(err)})
            return []
        new_number = filenames.parse(os.path.basename(tb.path))[1]
        self.report.entries_salvaged += n
        self.report.tables_rewritten.append({
            "file": name, "new_file": None if self.rebuild else _table_file(new_number),
            "entries": n, "blocks_lost": len(losses), "reason": str(err)})
        if self.rebuild:
            self.to_delete.append(new_number)       # a merge input only
        else:
            self.report.tables_written.append(_table_file(new_number))
        return [FileMeta.from_meta(new_number, meta)]

    # -- logs

    def _replay_logs(self, logs):
        """Replay logs (oldest first) into new level-0 tables; the edit adding them
        per column family id (0: the default). A family takes the records of logs
        from its log_number on; records of families the MANIFEST does not name (a
        dropped one; every family in rebuild mode) are left out, counted in
        wal_family_records_skipped."""
        vs = self.vs
        floors = {0: 0 if vs is None else vs.log_number}
        if vs is not None:
            floors.update({fid: f.log_number for fid, f in vs.families.items()})
        else:
            # rebuild mode: every family the logs name and no readable MANIFEST record dropped
            named, dropped = self.known_families
            floors.update({fid: 0 for fid in _families_in_logs(self.path, logs) if fid not in dropped})
        edits = {fid: VersionEdit() for fid in floors}
        mems = {fid: MemTable() for fid in floors}
        for number in logs:
            takes = {fid: m for fid, m in mems.items() if number >= floors[fid]}
            self._replay_log(number, takes)
            for fid, m in takes.items():
                if m.arena_used >= self.opts.write_buffer_size:
                    self._flush(m, edits[fid], fid)
                    mems[fid] = MemTable()
            self._tick()
        for fid, m in mems.items():
            if len(m) or m.range_dels:
                self._flush(m, edits[fid], fid)
        return edits

    def _replay_log(self, number, mems):
        path = filenames.log_name(self.path, number)
        name = os.path.basename(path)
        with open(path, "rb") as fh:
            data = fh.read()
        bad = None                       # (offset, detail)
        try:
            res = read_log(path, data)
        except CorruptionError as e:     # damage in the middle: keep what comes before it
            bad = (e.offset, e.detail)
            res = read_log(path, data[:e.offset])
        if bad is None and res.dropped_at is not None:
            bad = (res.dropped_at, "torn tail")
        records = entries = 0
        for off, payload in res.records:
            try:
                seq, ops = decode_batch(payload, path, off)
            except CorruptionError as e:
                bad = (off, e.detail)
                break
            if not ops:
                continue        # the log's seal (lsmkv.engine.logs.seal): no writes
            replay_batch_cf({fid: m for fid, m in mems.items() if fid}, mems.get(0), payload, path, off)
            skipped = sum(1 for op in decode_batch(payload, path, off, True)[1] if op[4] not in mems)
            if skipped:
                self.report.wal_family_records_skipped += skipped
            records += 1
            entries += len(ops)
            if ops:
                self.last_seq = max(self.last_seq, seq + len(ops) - 1)
        self.report.wal_replayed.append({"file": name, "records": records, "entries": entries})
        if bad is not None:
            off, detail = bad
            self.report.wal_dropped.append({"file": name, "offset": off, "detail": detail,
                                            "records_dropped": _records_after(data, off),
                                            "bytes_dropped": _nonzero(data, off)})
            self.to_lost.append(name)

    def _flush(self, mem, edit, cf=0):
        metas = write_tables(MemTableIterator(mem), lambda: self._new_builder(cf), MAX_SEQ, False, 0,
                             _NO_LIMIT)
        for m in metas:
            number = filenames.parse(os.path.basename(m["path"]))[1]
            edit.add_file(0, FileMeta.from_meta(number, m))
            if self.rebuild:
                self.to_delete.append(number)           # a merge input only
            else:
                self.report.tables_written.append(_table_file(number))

    # -- rebuild mode

    def _rebuild(self, tables, logs):
        """Every readable table and log merged into one sorted run per column family
        (a table's family is its column_family property: docs/format.md); returns
        id -> Version. A dropped family's tables (a readable MANIFEST record says
        so) go to lost/."""
        named, dropped = self.known_families
        inputs = {}            # family id -> numbers of the tables to merge
        for number in tables:
            path = filenames.table_name(self.path, number)
            cf = _table_family(path, number)
            if cf is None:      # its properties are unreadable: the default's, unless families exist
                cf = None if named else 0
            err = _table_error(path, number)
            if cf is None:      # its family unknown: not guessed (lost/, not the default), and lost
                self.to_lost.append(_table_file(number))
                self.report.tables_dropped.append({"file": _table_file(number),
                                                   "reason": "unreadable: its column family is unknown"})
            elif cf in dropped:
                self.to_lost.append(_table_file(number))
            elif err is None:
                inputs.setdefault(cf, []).append(number)
                self.report.tables_merged.append(_table_file(number))
                self.to_delete.append(number)     # its entries are all in the merged tables
            else:
                inputs.setdefault(cf, []).extend(m.number for m in self._salvage_table(number, err, cf))
            self._tick()
        for cf, edit in self._replay_logs(logs).items():
            inputs.setdefault(cf, []).extend(f.number for _, f in edit.added)
        out = {0: Version()}
        for cf, numbers in inputs.items():
            readers = [TableReader(filenames.table_name(self.path, n), n, None, True) for n in numbers]
            try:
                it = MergingIterator([TableIterator(t) for t in readers])
                metas = write_tables(it, lambda: self._new_builder(cf), MAX_SEQ, False, 0,
                                     self.opts.target_file_size_base)
            finally:
                for t in readers:
                    t.close()
            edit = VersionEdit()
            for m in metas:
                number = filenames.parse(os.path.basename(m["path"]))[1]
                edit.add_file(NUM_LEVELS - 1, FileMeta.from_meta(number, m))
                self.report.tables_written.append(_table_file(number))
            out[cf] = Version().apply(edit)
        return out

    # -- install

    def _install(self, version):
        """Make `version` the DB's state: lost/ links, new MANIFEST + CURRENT,
        then the originals leave the directory (module invariants 1-3)."""
        for _, f in version.files():
            self.last_seq = max(self.last_seq, f.largest_seq)
        lost = os.path.join(self.path, LOST_DIR)
        moves = []
        for name in dict.fromkeys(self.to_lost):
            src = os.path.join(self.path, name)
            if not os.path.exists(src):
                continue
            os.makedirs(lost, exist_ok=True)
            dst = _free_name(os.path.join(lost, name))
            filenames.link_or_copy(src, dst)
            moves.append((src, dst))
        if moves:
            filenames.fsync_dir(lost)
        vs = VersionSet(self.path)
        vs.current = version
        vs.log_number = self._new_number()      # above every log read (invariant 3)
        if self.vs is not None:                 # the column families, with their repaired versions
            vs.families = self.vs.families
            for f in vs.families.values():
                f.log_number = vs.log_number
        named, _ = self.known_families
        for fid, v in self.rebuilt_families.items():   # rebuild mode: named as a MANIFEST record says
            name, opts = named.get(fid, (f"recovered-{fid}", {}))
            fs = vs.families[fid] = FamilyState(fid, name, opts, vs.log_number)
            fs.current = v
            vs.next_family_id = max(vs.next_family_id, fid + 1)
        vs.next_file_number = self.next_number
        vs.last_sequence = self.last_seq
        try:
            vs.write_snapshot()
        finally:
            vs.close()
        self.report.manifest = os.path.basename(filenames.manifest_name("", vs.manifest_number))
        self.report.last_sequence = self.last_seq
        for src, dst in moves:
            os.unlink(src)
            self.report.moved_to_lost.append(os.path.relpath(dst, self.path))
        for number in self.to_delete:
            try:
                os.unlink(filenames.table_name(self.path, number))
            except FileNotFoundError:
                pass
        filenames.fsync_dir(self.path)


# ---------------------------------------------------------------- column families

def _table_family(path, number):
    """A table's column family id (its column_family property; 0: the default's),
    or None if its properties cannot be read."""
    try:
        t = TableReader(path, number, None, True)
    except CorruptionError:
        return None
    try:
        return t.properties.get("column_family", 0)
    finally:
        t.close()


def _families_in_logs(dbpath, logs):
    """Ids of the column families the records of logs name."""
    ids = set()
    for number in logs:
        path = filenames.log_name(dbpath, number)
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            res = read_log(path, data)
        except CorruptionError as e:
            res = read_log(path, data[:e.offset])
        for off, payload in res.records:
            try:
                ids.update(op[4] for op in decode_batch(payload, path, off, True)[1])
            except CorruptionError:
                break
    ids.discard(0)
    return ids


def _families_in_manifests(dbpath, numbers):
    """What the readable records of every MANIFEST say of column families:
    (id -> (name, options) of the families created, ids of those dropped)."""
    created, dropped = {}, set()
    for number in numbers:
        path = filenames.manifest_name(dbpath, number)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            try:
                res = read_log(path, data, wal=False)
            except CorruptionError as e:
                res = read_log(path, data[:e.offset], wal=False)
        except (OSError, CorruptionError):
            continue
        for off, payload in res.records:
            try:
                e = VersionEdit.decode(payload, path, off)
            except CorruptionError:
                continue
            if e.create_family is not None:
                fid, name, opts = e.create_family
                created[fid] = (name, opts)
                dropped.discard(fid)
            if e.drop_family is not None:
                dropped.add(e.drop_family)
    return created, dropped


# ---------------------------------------------------------------- tables

def _table_file(number):
    return os.path.basename(filenames.table_name("", number))


def _table_error(path, number):
    """None if the table opens and every block reads back in order, else the error."""
    try:
        t = TableReader(path, number, None, True)
    except CorruptionError as e:
        return e
    try:
        t.verify()
    except CorruptionError as e:
        return e
    finally:
        t.close()
    return None


def _ikey_order(ikey):
    """A sort key giving the internal-key order: user key ascending, tag descending."""
    return ikey[:-8], -int.from_bytes(ikey[-8:], "little")


def _after(ikey):
    """The smallest internal key greater than ikey (a seek target)."""
    tag = int.from_bytes(ikey[-8:], "little")
    if tag:
        return ikey[:-8] + (tag - 1).to_bytes(8, "little")
    return ikey[:-8] + b"\0" + (2 ** 64 - 1).to_bytes(8, "little")


def _salvage_range_dels(path, number):
    """The range tombstones of a damaged table whose footer, properties and
    range-del block still read (a set of (start, end, seq)), else an empty set."""
    try:
        t = TableReader(path, number, None, True)
    except CorruptionError:
        return set()
    try:
        return set(t.range_dels or ())
    finally:
        t.close()


def fragment_triples(tombstones):
    """(start, end, seq) fragments of tombstones, as a table's range-del block holds them."""
    return [(s, e, q) for s, e, seqs in fragment(tombstones) for q in seqs]


def _salvage_entries(path, number, err, losses, ranges):
    """(internal key, stored value) of every entry in a readable block of a damaged
    table, in order. Appends {offset, detail} to losses per lost block and the
    user-key range it covered to ranges."""
    try:
        t = TableReader(path, number, None, True)
    except CorruptionError as e:
        # footer, index or a meta block is unreadable: find the blocks by their checksums
        yield from _scan_blocks(path, e, losses, ranges)
        return
    try:
        yield from _entries_by_index(t, losses, ranges)
    finally:
        t.close()


def index_blocks(t):
    """[(last internal key, offset)] of a table's data blocks, from its index block
    (read raw at the handle the reader exposes; the reader verified its checksum)."""
    with open(t.path, "rb") as fh:
        fh.seek(t.index_offset)
        raw = fh.read(t.index_size)
    blocks = []
    for key, handle in block_entries(raw, t.path):
        boff, _ = decode_varint(handle, 0)
        blocks.append((key, boff))
    return blocks


def _entries_by_index(t, losses, ranges):
    """Walk the data blocks the index lists with the table's own iterator, block by
    block; a block that fails is skipped by seeking past its last key."""
    blocks = index_blocks(t)
    it = TableIterator(t)
    prev_last = None
    for last, off in blocks:
        got = []
        try:
            if prev_last is None:
                it.py_seek_to_first()
            else:
                it.py_seek(_after(prev_last))
            limit = _ikey_order(last)
            while it.py_valid():
                ukey, seq, kind, value, expiry = it.py_entry()
                ikey = ukey + ((seq << 8) | kind).to_bytes(8, "little")
                order = _ikey_order(ikey)
                if order > limit:
                    break
                if kind == 2:
                    value = (expiry & (2 ** 64 - 1)).to_bytes(8, "little") + value
                got.append((ikey, value))
                if order == limit:
                    break
                it.py_next()
        except CorruptionError as e:
            if e.offset == off or not got:
                losses.append({"offset": e.offset if e.offset is not None else off,
                               "detail": e.detail})
                ranges.append({"after": None if prev_last is None else prev_last[:-8],
                               "through": last[:-8]})
                got = []
        yield from got
        prev_last = last


def _scan_blocks(path, err, losses, ranges):
    """A table whose footer or index cannot be used: find its blocks from the start
    of the file (a block ends where a type byte and a CRC-32C matching everything
    since the block's start follow) and decode them in order. The data blocks come
    first; the first block that does not decode, or whose keys do not follow the
    previous ones, or that is the properties block (every tag zero), ends them.
    Data is lost unless that first non-data block is followed, as the format
    says, by the meta blocks up to a properties block (a damaged footer alone)."""
    with open(path, "rb") as fh:
        data = fh.read()
    found = []                  # (offset, type, body)
    off = 0
    while off + TRAILER_SIZE <= len(data):
        end = _block_end(data, off)
        if end is None:
            break
        found.append((off, data[end], data[off:end]))
        off = end + TRAILER_SIZE
    zdict = next((zstandard.ZstdCompressionDict(b) for _, typ, b in found
                  if typ == BLOCK_RAW and b.startswith(_DICT_MAGIC)), None)
    prev = None
    stop = len(found)           # index of the first block that is not a readable data block
    for i, (boff, typ, body) in enumerate(found):
        entries = _data_block(body, typ, zdict, path, boff)
        if entries is None or (prev is not None and _ikey_order(entries[0][0]) <= _ikey_order(prev)):
            stop = i
            break
        yield from entries
        prev = entries[-1][0]
    meta = found[stop:]
    for boff, typ, body in meta:          # a range-del block (format version 2): its tombstones
        entries = _data_block(body, typ, zdict, path, boff)
        if entries and all(k[-8] == KIND_RANGE_DELETE for k, _ in entries):
            yield from entries
    if 2 <= len(meta) <= 5 and _is_properties(meta[-1]):
        return                  # only the footer (or what follows the blocks) was lost
    lost_at = found[stop][0] if stop < len(found) else off
    losses.append({"offset": lost_at,
                   "detail": f"{err.detail}; the file could be read only up to here"})
    ranges.append({"after": None if prev is None else prev[:-8], "through": None})


def _data_block(body, typ, zdict, path, off):
    """The entries of a data block, or None if it is not a readable data block."""
    try:
        entries = block_entries(decompress_block(body, typ, zdict, path, off), path)
    except CorruptionError:
        return None
    if not entries or any(len(k) < 8 for k, _ in entries) or all(k[-8:] == bytes(8) for k, _ in entries):
        return None
    if any(_ikey_order(a[0]) >= _ikey_order(b[0]) for a, b in zip(entries, entries[1:])):
        return None
    return entries


def _is_properties(block):
    _, typ, body = block
    try:
        entries = block_entries(bytes(body), "<properties>") if typ == BLOCK_RAW else []
    except CorruptionError:
        return False
    return bool(entries) and all(k[-8:] == bytes(8) for k, _ in entries) and \
        any(k[:-8] == b"num_entries" for k, _ in entries)


def _block_end(data, off):
    """Offset of the type byte of the block starting at off, or None. The CRC-32C of
    the body is carried forward between candidate type bytes (0, 1 or 2)."""
    crc = 0
    pos = off
    n = len(data)
    for m in _LOW_BYTE.finditer(data, off, n - TRAILER_SIZE + 1):
        e = m.start()
        crc = crc32c_py(data[pos:e], crc)
        pos = e
        if crc32c_py(data[e:e + 1], crc) == int.from_bytes(data[e + 1:e + 5], "little"):
            return e
    return None


# ---------------------------------------------------------------- logs

def _records_after(data, off):
    """Good records in data after the bad one at off (dropped with it): each run of
    good records is followed to its end, the next run found as the reader does."""
    count = 0
    pos = off
    while pos + HEADER <= len(data):
        n = int.from_bytes(data[pos + 4:pos + 8], "little")
        pos = next_valid(data, pos, pos + HEADER + n)
        if pos is None:
            break
        while valid_at(data, pos):
            n = int.from_bytes(data[pos + 4:pos + 8], "little")
            if not is_seal(data[pos + HEADER:pos + HEADER + n]):
                count += 1          # (the log's seal holds no writes)
            pos += HEADER + n
        if data[pos:pos + HEADER] == bytes(HEADER) or pos + HEADER > len(data):
            break
    return count


def _nonzero(data, off):
    tail = data[off:]
    return len(tail) - tail.count(0)


# ---------------------------------------------------------------- files

def _recover_manifest(dbpath, name):
    """VersionSet.recover() of MANIFEST `name` when CURRENT cannot name it: recover()
    finds its MANIFEST through CURRENT, so a scratch directory holds a CURRENT naming
    it and a symlink to it (the same checks as an open, nothing duplicated)."""
    with tempfile.TemporaryDirectory(prefix="lsmkv-repair-") as tmp:
        os.symlink(os.path.join(dbpath, name), os.path.join(tmp, name))
        with open(os.path.join(tmp, "CURRENT"), "w") as fh:
            fh.write(name + "\n")
        vs = VersionSet(tmp)
        try:
            vs.recover()
        finally:
            vs.close()
    vs.dbpath = dbpath
    return vs


def _free_name(path):
    """path, or path.1, path.2, ... : the first that does not exist."""
    if not os.path.exists(path):
        return path
    i = 1
    while os.path.exists(f"{path}.{i}"):
        i += 1
    return f"{path}.{i}"

