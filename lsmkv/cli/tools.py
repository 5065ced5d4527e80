"""File-level tools of the lsmkv shell: verify, sst-dump, manifest-dump and
wal-dump (the parts modeled on RocksDB's ldb and sst_dump; checkpoint is the
public lsmkv.DB.checkpoint, lsmkv/engine/checkpoint.py).

sst-dump, manifest-dump and wal-dump read files only: they take no lock and
open no DB, so they work on a database another process has open (a file the
owner deletes meanwhile is reported as an error). verify works
on an open DB and keep its background compaction out while they read its
files, so no file they need is deleted under them.

Every function writes through an Output (lsmkv.cli.shell) and raises
lsmkv.errors.LsmkvError or OSError on failure.
"""
import contextlib
import mmap
import os
import struct

from lsmkv.engine import filenames
from lsmkv.core.dbcore import decode_batch
from lsmkv.core.table import FOOTER_SIZE, TRAILER_SIZE, TableIterator, TableReader
from lsmkv.errors import CorruptionError, LsmkvError
from lsmkv.engine.logformat import read_log
from lsmkv.cli.format import Progress
from lsmkv.engine.version import VersionEdit

KIND_NAMES = {0: "DELETE", 1: "PUT", 2: "PUT_TTL", 3: "MERGE", 4: "RANGE_DELETE"}   # value of a RANGE_DELETE: its end


class VerifyFailed(LsmkvError):
    """verify found damage (already reported, one line each)."""


def _no_compaction(db):
    """No compaction runs or starts inside this block (compactions are the only
    deleters of live tables)."""
    return db.no_background_compactions()


def _live_files(db):
    """(level, FileMeta) of every table in the current version of db (a DB handle,
    or a column family's: its own version)."""
    return list(db.core.versions.current.files())


# ---------------------------------------------------------------- verify

def verify(db, out, codec, cf=None):
    """Check every live table (block checksums, key order, the key range the
    MANIFEST records) and the order of the keys the DB returns, of every column
    family (or of family cf only). Raises VerifyFailed after reporting each problem."""
    problems = []
    entries = 0
    names = db.list_column_families() if cf is None else [cf]
    handles = []
    for name in names:
        try:
            handles.append(db.column_family(name))
        except LsmkvError as e:
            raise LsmkvError(str(e)) from None
    files = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(_no_compaction(db))
        for h in handles:
            if h is not db:                    # a column family's compactions too
                stack.enter_context(h.core.compactions.no_background())
        per = [(h, _live_files(h)) for h in handles]
        files = [f for _, fs in per for f in fs]
        with Progress("verify", total=len(files), unit=" files") as prog:
            i = 0
            for h, fs in per:
                for level, meta in fs:
                    n, err = _verify_table(db.path, level, meta)
                    entries += n or 0
                    _report_table(out, level, meta, n, err)
                    if err is not None:
                        problems.append(err)
                    i += 1
                    prog.update(i)
                problems += _check_levels(db, fs)       # levels are per family
    if not problems:
        for h in handles:
            problems += _check_db_order(h, codec)
    for p in problems:
        out.error(p)
    out.emit(f"{'OK' if not problems else 'FAILED'}: {len(files)} files, {entries} entries, "
             f"{len(problems)} problems",
             {"summary": {"ok": not problems, "files": len(files), "entries": entries,
                          "problems": [str(p) for p in problems]}})
    if problems:
        raise VerifyFailed(f"verify found {len(problems)} problem(s)")


def _verify_table(dbpath, level, meta):
    """(entry count, None) or (None, the problem) for one table."""
    path = filenames.table_name(dbpath, meta.number)
    try:
        t = TableReader(path, meta.number, None, True)
        try:
            n = t.verify()
            _check_bounds(t, meta)
        finally:
            t.close()
    except CorruptionError as e:
        return None, e
    except FileNotFoundError:
        return None, CorruptionError(path, None, "table named by the manifest is missing")
    if meta.num_entries and n != meta.num_entries:
        return n, CorruptionError(path, None, f"holds {n} entries, the manifest says {meta.num_entries}")
    return n, None


def _check_bounds(t, meta):
    """The table's first and last internal keys are the ones the MANIFEST records."""
    it = TableIterator(t)
    it.py_seek_to_first()
    first = _ikey(it.py_entry())
    it.py_seek_to_last()
    last = _ikey(it.py_entry())
    if t.range_dels:      # the range covers the tombstones too (docs/format.md, "Range-del block")
        cands = [k for k in (first, last) if k is not None]
        cands += [s + ((q << 8) | 4).to_bytes(8, "little") for s, _, q in t.range_dels]
        cands += [e + b"\xff" * 8 for _, e, _ in t.range_dels]
        order = sorted(cands, key=lambda k: (k[:-8], -int.from_bytes(k[-8:], "little")))
        first, last = order[0], order[-1]
    if first != meta.smallest or last != meta.largest:
        raise CorruptionError(t.path, None, "key range differs from the one the manifest records")


def _ikey(entry):
    if entry is None:
        return None
    ukey, seq, kind = entry[:3]
    return ukey + ((seq << 8) | kind).to_bytes(8, "little")


def _report_table(out, level, meta, n, err):
    name = os.path.basename(filenames.table_name("", meta.number))
    status = "ok" if err is None else "CORRUPT"
    out.emit(f"L{level} {name} {meta.file_size} bytes, {n if n is not None else '?'} entries: {status}",
             {"file": name, "level": level, "bytes": meta.file_size, "entries": n,
              "ok": err is None, "error": None if err is None else str(err)})


def _check_levels(db, files):
    """Levels >= 1 hold sorted, non-overlapping key ranges."""
    problems = []
    by_level = {}
    for level, meta in files:
        by_level.setdefault(level, []).append(meta)
    for level, metas in by_level.items():
        if level == 0:
            continue
        for a, b in zip(metas, metas[1:]):
            if not a.largest_user_key < b.smallest_user_key:
                problems.append(CorruptionError(
                    db.path, None, f"level {level}: tables {a.number:06d}.sst and "
                                   f"{b.number:06d}.sst overlap or are out of order"))
    return problems


def _check_db_order(db, codec):
    """Keys come out of the DB strictly increasing."""
    prev = None
    try:
        for key in db.keys():
            if prev is not None and not prev < key:
                return [CorruptionError(db.core.path, None, f"keys out of order: {codec.encode(prev)} "
                                                       f"then {codec.encode(key)}")]
            prev = key
    except CorruptionError as e:
        return [e]
    return []


# ---------------------------------------------------------------- sst-dump

def resolve_table(path, dbpath=None):
    """A table path: path itself, or (given a DB) a file name or number in it."""
    if os.path.exists(path) or dbpath is None:
        return path
    if path.isdigit():
        return filenames.table_name(dbpath, int(path))
    return os.path.join(dbpath, path)


def sst_dump(path, out, codec, show_properties=False, scan=False, verify=False, layout=False):
    """Describe one table file, without opening a DB."""
    parsed = filenames.parse(os.path.basename(path))
    number = parsed[1] if parsed and parsed[0] == "sst" else 0
    t = TableReader(path, number, None, True)
    try:
        doc = {"file": path, "bytes": t.file_size, "dictionary": t.zdict is not None}
        out.text(f"{path}: {t.file_size} bytes, {t.properties.get('num_entries', '?')} entries")
        if show_properties or not (scan or verify or layout):
            doc["properties"] = _properties(t, out, codec)
        if layout:
            doc["layout"] = parts = table_layout(t)
            out.text("  layout: " + ", ".join(f"{k} {v}" for k, v in parts.items()))
        if scan:
            doc["entries"] = _scan_table(t, out, codec)
        if verify:
            n = t.verify()
            doc["verify"] = {"ok": True, "entries": n}
            out.text(f"verify: ok, {n} entries")
        out.json(doc)
    finally:
        t.close()


def table_layout(t):
    """What a table's bytes are (docs/format.md "SST file"), from its footer: a dict of
    data (the data blocks with their trailers), dictionary, filter, index, properties
    (each block with its trailer; 0 when absent) and footer, summing to the file's size.
    t: an open TableReader."""
    with open(t.path, "rb") as fh:
        fh.seek(t.file_size - FOOTER_SIZE)
        h = struct.unpack("<8Q", fh.read(64))

    def stored(size):
        return size + TRAILER_SIZE if size else 0
    parts = {"data": t.properties.get("data_size", 0), "dictionary": stored(h[7]),
             "filter": h[3] + TRAILER_SIZE, "index": h[1] + TRAILER_SIZE,
             "properties": h[5] + TRAILER_SIZE, "footer": FOOTER_SIZE}
    if "range_del_offset" in t.properties:      # format version 2: the range-del block
        parts["range_del"] = t.properties["range_del_size"] + TRAILER_SIZE
    return parts


def _properties(t, out, codec):
    props = {}
    for name in sorted(t.properties):
        v = t.properties[name]
        props[name] = codec.encode(v) if isinstance(v, bytes) else v
        out.text(f"  {name}: {props[name]}")
    out.text(f"  dictionary: {'yes' if t.zdict is not None else 'no'}")
    return props


def _scan_table(t, out, codec):
    entries = [] if out.json_mode else None
    it = TableIterator(t)
    it.py_seek_to_first()
    while it.py_valid():
        ukey, seq, kind, value, expiry = it.py_entry()
        e = _entry_doc(codec, ukey, seq, kind, value, expiry)
        if entries is not None:
            entries.append(e)
        else:
            out.text(_entry_text(e))
        it.py_next()
    for start, end, seq in t.range_dels or ():          # the range-del block (range tombstones)
        e = _entry_doc(codec, start, seq, 4, end, 0)
        if entries is not None:
            entries.append(e)
        else:
            out.text(_entry_text(e))
    return entries


def _entry_doc(codec, key, seq, kind, value, expiry):
    e = {"key": codec.encode(key), "seq": seq, "kind": KIND_NAMES.get(kind, str(kind))}
    return _with_value(e, codec, kind, value, expiry)


def _with_value(d, codec, kind, value, expiry):
    """d plus the value (not for a deletion) and the expiry (a put with TTL)."""
    if kind != 0:
        d["value"] = codec.encode(value)
    if kind == 2:
        d["expiry_ms"] = expiry
    return d


def _entry_text(e):
    parts = [e["key"], f"seq={e['seq']}", e["kind"]]
    if "value" in e:
        parts.append(e["value"])
    if "expiry_ms" in e:
        parts.append(f"expiry_ms={e['expiry_ms']}")
    return "\t".join(parts)


# ---------------------------------------------------------------- manifest-dump

def manifest_dump(dbpath, out, codec, path=None):
    """Every version edit of the MANIFEST CURRENT names (or of path)."""
    if path is None:
        path = _current_manifest(dbpath)
    with open(path, "rb") as fh:
        data = fh.read()
    res = read_log(path, data, wal=False)
    out.text(f"{path}: {len(res.records)} edits")
    for off, payload in res.records:
        e = VersionEdit.decode(payload, path, off)
        out.emit(_edit_text(off, e, codec), _edit_doc(off, e, codec))
    if res.dropped_bytes:
        out.warn(f"{path}: torn tail at offset {res.dropped_at} ({res.dropped_bytes} bytes) ignored")


def _current_manifest(dbpath):
    cur = filenames.current_name(dbpath)
    try:
        with open(cur, "rb") as fh:
            name = fh.read().decode("ascii", "replace").strip()
    except FileNotFoundError:
        raise LsmkvError(f"no database at {dbpath} (no CURRENT file)") from None
    parsed = filenames.parse(name)
    if parsed is None or parsed[0] != "manifest":
        raise CorruptionError(cur, 0, f"CURRENT does not name a manifest: {name[:64]!r}")
    return os.path.join(dbpath, name)


def _edit_doc(off, e, codec):
    return {"offset": off, "marker": bool(getattr(e, "marker", False)),
            "family": e.family,
            "create_family": None if e.create_family is None else
            {"id": e.create_family[0], "name": e.create_family[1], "options": e.create_family[2]},
            "drop_family": e.drop_family,
            "log_number": e.log_number, "next_file_number": e.next_file_number,
            "last_sequence": e.last_sequence,
            "deleted": [{"level": lv, "file": n} for lv, n in e.deleted],
            "added": [_file_doc(lv, f, codec) for lv, f in e.added]}


def _file_doc(level, f, codec):
    return {"level": level, "file": f.number, "bytes": f.file_size,
            "smallest": codec.encode(f.smallest_user_key), "largest": codec.encode(f.largest_user_key),
            "smallest_seq": f.smallest_seq, "largest_seq": f.largest_seq,
            "entries": f.num_entries, "deletions": f.num_deletions, "min_expiry_ms": f.min_expiry}


def _edit_text(off, e, codec):
    head = [f"@{off}"] + (["marker"] if getattr(e, "marker", False) else [])
    if e.create_family is not None:
        head.append(f"create_family={e.create_family[1]!r} id={e.create_family[0]} "
                    f"options={e.create_family[2]}")
    if e.family:
        head.append(f"family={e.family}")
    if e.drop_family is not None:
        head.append(f"drop_family={e.drop_family}")
    for name in ("log_number", "next_file_number", "last_sequence"):
        if getattr(e, name) is not None:
            head.append(f"{name}={getattr(e, name)}")
    lines = [" ".join(head)]
    for lv, n in e.deleted:
        lines.append(f"  delete L{lv} {n:06d}.sst")
    for lv, f in e.added:
        lines.append(f"  add L{lv} {f.number:06d}.sst {f.file_size} bytes, {f.num_entries} entries "
                     f"({f.num_deletions} deletions), seq {f.smallest_seq}..{f.largest_seq}, "
                     f"keys {codec.encode(f.smallest_user_key)} .. {codec.encode(f.largest_user_key)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- wal-dump

def wal_paths(dbpath, path=None):
    if path is not None:
        return [path]
    names = sorted(n for n in os.listdir(dbpath) if (filenames.parse(n) or ("",))[0] == "log")
    return [os.path.join(dbpath, n) for n in names]


def wal_dump(dbpath, out, codec, path=None):
    """The records (write batches) of every .log in the DB directory (or of path)."""
    if path is None and not os.path.exists(filenames.current_name(dbpath)):
        raise LsmkvError(f"no database at {dbpath} (no CURRENT file)")
    for p in wal_paths(dbpath, path):
        _dump_log(p, out, codec)


def _dump_log(path, out, codec):
    records, dropped_at, dropped, sealed = read_log_file(path)
    name = os.path.basename(path)
    out.text(f"{name}: {len(records)} records" + ("" if sealed is None else f", sealed at @{sealed}"))
    for off, payload in records:
        seq, ops = decode_batch(payload, path, off, True)
        doc = {"file": name, "offset": off, "sequence": seq, "count": len(ops),
               "ops": [_op_doc(op, codec) for op in ops]}
        out.emit(_record_text(doc), doc)
    if dropped:
        out.warn(f"{path}: torn tail at offset {dropped_at} ({dropped} bytes) ignored")


def read_log_file(path):
    """([(offset, payload bytes)], torn tail offset, dropped bytes, seal offset) of a
    log file. The file is mapped, not read: a live WAL is preallocated (mostly zeros)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return [], None, 0, None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            res = read_log(path, data)
            records = [(off, bytes(p)) for off, p in res.records]
            dropped_at, dropped, sealed = res.dropped_at, res.dropped_bytes, res.sealed_at
            for _, p in res.records:
                p.release()
            del res
    return records, dropped_at, dropped, sealed


def _op_doc(op, codec):
    kind, key, value, expiry, cf = op
    doc = {"op": KIND_NAMES[kind], "key": codec.encode(key)}
    if cf:
        doc["family"] = cf          # a column family's record (id; 0, the default, is not shown)
    return _with_value(doc, codec, kind, value, expiry)


def _record_text(doc):
    lines = [f"{doc['file']} @{doc['offset']} seq={doc['sequence']} count={doc['count']}"]
    for op in doc["ops"]:
        parts = ([f"family={op['family']}"] if "family" in op else []) + \
            [op["op"], op["key"]] + ([op["value"]] if "value" in op else [])
        if "expiry_ms" in op:
            parts.append(f"expiry_ms={op['expiry_ms']}")
        lines.append("  " + "\t".join(parts))
    return "\n".join(lines)
