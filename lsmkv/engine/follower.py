"""Read-only and secondary opens: a database another process may be writing, read
without writing anything (RocksDB's OpenForReadOnly and OpenAsSecondary +
TryCatchUpWithPrimary).

A follower engine takes no LOCK and writes nothing to the database's directory:
no MANIFEST, no log, no table, no deletion. It reads CURRENT, the MANIFEST it
names and the tables that MANIFEST lists (each held open from then on, so a table
the primary deletes stays readable), and replays the primary's live logs into one
memtable of its own. Writes raise ReadOnlyError.

  read_only   the state as of the open, for as long as the handle lives.
  secondary   the same, plus catch_up(): if the MANIFEST changed (a flush, a
              restart of the primary), the whole state is loaded again (after
              a compaction alone, only the version: the logs are the same);
              then the logs are read on from where the last read stopped. Either way what becomes visible is a prefix of the
              primary's write order: batches whole, in sequence, stopping at the
              first record not yet complete (a torn or half-written tail is picked
              up once the primary finishes it).

A primary moves under a follower while it loads (a flush deletes the log it
replaced, a compaction its inputs, a restart the MANIFEST): any file named but
gone, or a MANIFEST that changed while the logs were read, restarts the load
(up to LOAD_ATTEMPTS times, then FollowerError naming the file).

Thread safety: load() runs in the opening thread before anyone sees the engine;
catch_up() is serialized by `lock` and installs its state under the engine mutex,
in the order the primary's write path does (memtable entries, then last_seq), so
readers, which take no lock, never see half a batch.

Invariants:
  1. Nothing under the database's directory is created, written or removed by a
     follower (the secondary's own directory is the only one it writes).
  2. last_seq is the last sequence of a whole batch read in order: every batch
     up to it is visible and none after it.
  3. `offsets[n]` is where the next unread record of log n starts: the end of
     the last record applied from it.
"""
import dataclasses
import os
import threading
import time

from lsmkv.core.dbcore import replay_batch, replay_batch_cf
from lsmkv.core.memtable import MemTable
from lsmkv.engine import filenames, lifecycle, recovery
from lsmkv.engine.dirlock import DirLock
from lsmkv.engine.logformat import HEADER, batch_header, read_log
from lsmkv.engine.version import VersionSet
from lsmkv.errors import CorruptionError, DatabasePermissionError, FollowerError, OpenError

LOAD_ATTEMPTS = 20


class Moved(Exception):
    """The primary changed a file this load needed: start again."""


class Follower:
    """The primary's files a read-only or secondary engine follows (module docstring)."""

    def __init__(self, engine, mode, own_dir=None):
        self.engine = engine
        self.mode = mode                      # 'read_only' | 'secondary'
        self.own_dir = own_dir                # a secondary's private directory
        self.dirlock = None                   # the LOCK of own_dir, while open
        # -- constant
        self.lock = threading.Lock()          # one catch_up() at a time
        # -- guarded by lock (read by stats() as single attribute reads)
        self.manifest = None                  # (number, size) of the MANIFEST the state came from
        self.manifest_fd = None               # that MANIFEST, held open (hold_manifest), or None
        self.offsets = {}                     # log number -> end of its last applied record
        self.catch_ups = 0
        self.reloads = 0
        self.applied_batches = 0
        self.last_catch_up = None             # time.time() of the last catch_up()
        self.last_error = None                # the last background catch_up()'s failure

    def open(self):
        """Open the engine read-only or as a secondary: no LOCK on the database,
        nothing written there; a secondary locks its own directory."""
        e = self.engine
        opts = e.options
        if opts.memory_budget or opts.adaptive_memory or opts.write_buffer_manager is not None:
            raise ValueError("a read-only or secondary DB holds no memtable budget: memory_budget, "
                             "adaptive_memory and write_buffer_manager do not apply to it")
        try:
            recovery.check_directory(e.path, dataclasses.replace(opts, create_if_missing=False))
            if self.own_dir is not None:
                own, db = os.path.realpath(self.own_dir), os.path.realpath(e.path)
                if os.path.commonpath([own, db]) == db:
                    raise ValueError(f"option secondary must be a directory of its own, outside "
                                     f"the database's ({self.own_dir})")
                os.makedirs(self.own_dir, exist_ok=True)
                self.dirlock = DirLock.acquire(self.own_dir, "a secondary")
            self.load()
        except BaseException as err:
            self.release()
            e.tables.close()
            if isinstance(err, PermissionError) and not isinstance(err, OpenError):
                raise DatabasePermissionError(e.path, f"cannot open the database at {e.path}: "
                                              f"permission denied on {err.filename}", err.filename,
                                              err.errno) from err
            raise

    def close(self):
        """The engine's close(): nothing to sync or write; a catch-up job, if any, is
        cancelled first."""
        e = self.engine
        with e.mutex:
            if e.closed:
                return
            e.shutting_down = True
            e.state.closed = True
        e.threads.join()
        with e.mutex:
            try:
                e.tables.close()
                e.versions.close()
            finally:
                e.closed = True
                self.release()
                lifecycle.unregister(e)
        with self.lock:
            if self.manifest_fd is not None:
                os.close(self.manifest_fd)
                self.manifest_fd = None

    def release(self):
        """Let go of the secondary's directory."""
        if self.dirlock is not None:
            self.dirlock.release()
            self.dirlock = None

    # ------------------------------------------------------------------ the primary's files

    def manifest_id(self):
        """(number, size, inode, device) of the MANIFEST CURRENT names now: a
        MANIFEST with the same number and size in a database made again is another
        file, and has another inode, since the one loaded is held open
        (hold_manifest)."""
        path = self.engine.path
        try:
            with open(filenames.current_name(path), "rb") as fh:
                line = fh.read()
        except FileNotFoundError:
            raise Moved(filenames.current_name(path)) from None
        p = filenames.parse(line.decode("ascii", "replace").strip())
        if p is None or p[0] != "manifest" or not line.endswith(b"\n"):
            raise Moved(filenames.current_name(path))      # being replaced: read again
        try:
            st = os.stat(filenames.manifest_name(path, p[1]))
            return p[1], st.st_size, st.st_ino, st.st_dev
        except FileNotFoundError:
            raise Moved(filenames.manifest_name(path, p[1])) from None

    def live_logs(self, log_number):
        """Numbers of the logs at or above log_number, oldest first."""
        out = []
        for name in os.listdir(self.engine.path):
            p = filenames.parse(name)
            if p and p[0] == "log" and p[1] >= log_number:
                out.append(p[1])
        return sorted(out)

    def read_log_from(self, number, offset):
        """The records of log `number` after offset, as (offset, payload); a record
        being written (torn, or followed by one already complete: the copy raced
        the writer) ends the list, to be read again next time."""
        path = filenames.log_name(self.engine.path, number)
        for attempt in range(3):
            try:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read()
            except FileNotFoundError:
                raise Moved(path) from None
            try:
                res = read_log(path, data)
            except CorruptionError as err:
                # a copy taken while the primary wrote may hold a record half written
                # and the next one whole; read again before calling it damage
                if attempt == 2:
                    at = None if err.offset is None else err.offset + offset   # in the file
                    raise CorruptionError(path, at, err.detail) from None
                time.sleep(0.001)
                continue
            return [(offset + off, p) for off, p in res.records], offset + res.end
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ load and catch up

    def load(self):
        """Read the whole state (at open, and when the MANIFEST changed)."""
        last = None
        for attempt in range(LOAD_ATTEMPTS):
            try:
                self.load_once()
                return
            except Moved as m:
                last = m
                time.sleep(0.001 * attempt)
        raise FollowerError(self.engine.path, f"the database at {self.engine.path} changed under "
                            f"every one of {LOAD_ATTEMPTS} reads (last: {last.args[0]} vanished or "
                            f"moved); try again", str(last.args[0]))

    def load_once(self):
        e = self.engine
        before = self.manifest_id()
        vs = VersionSet(e.path)
        try:
            vs.recover()
        except (CorruptionError, FileNotFoundError):
            if self.manifest_id()[0] != before[0]:
                raise Moved(filenames.manifest_name(e.path, before[0])) from None
            raise
        old = self.manifest
        # the database was made again (destroyed and created, or restored): its file
        # numbers name other files now, so no reader or cached block is reused
        replaced = old is not None and (
            (before[0] == old[0] and before[2:] != old[2:]) or
            vs.next_file_number < e.versions.next_file_number or
            vs.last_sequence < e.versions.last_sequence)
        opened = {}
        with e.mutex:
            if e.shutting_down:
                raise e.state.error()
            if replaced:
                e.tables.forget_all()
            for v in [vs.current] + [f.current for f in vs.families.values()]:
                for level, f in v.files():
                    try:
                        opened[f.number] = e.tables.open(f.number, level)
                    except FileNotFoundError:
                        raise Moved(filenames.table_name(e.path, f.number)) from None
        fmems = {fid: MemTable() for fid in vs.families}      # column families' memtables
        if old is not None and not replaced and vs.log_number == e.versions.log_number \
                and not vs.families and not e.cfs:
            # no flush since (a compaction, say): the same logs hold what no table
            # does, and the memtable already has it; only the version changes (new
            # tables hold nothing newer than the tables they replace)
            mem, offsets, last_seq = e.sv.mem, self.offsets, e.last_seq
        else:
            mem = MemTable()
            offsets = {}
            # as recovery replays: every record of the live logs (the MANIFEST's
            # last_sequence counts writes still only in a log), in sequence from
            # the first one on
            last = None
            for number in self.live_logs(vs.min_log_number()):
                records, end = self.read_log_from(number, 0)
                last, applied, complete = self.apply(self.takes(vs, number, mem, fmems), records, last,
                                                     number, 0)
                offsets[number] = end if complete else applied
                if not complete:
                    break          # a gap: later logs wait for it
            last_seq = vs.last_sequence if last is None else max(last, vs.last_sequence)
        if self.manifest_id() != before:
            raise Moved(filenames.manifest_name(e.path, before[0]))   # a flush or compaction finished
        with e.mutex:
            if e.shutting_down:
                raise e.state.error()       # closed meanwhile (a background catch_up)
            for n, t in opened.items():     # a collect() meanwhile (an iterator closed)
                e.tables.readers.setdefault(n, t)   # judged them by the old version
            # last_seq first: a reader that sees it with the old state sees the old
            # state (nothing there is newer), and one that sees the new state sees
            # it whole (with sequences zeroed at the bottom, the reverse order
            # could show a new value without the writes before it)
            if last_seq >= e.last_seq:
                e.last_seq = last_seq
            e.versions = vs
            e.families.reload(vs, fmems, last_seq)
            e.install(mem, ())
            e.last_seq = last_seq
            e.files.collect()             # readers of tables no version needs now
        self.manifest = before
        self.hold_manifest(before)
        self.offsets = offsets
        self.reloads += 1

    def hold_manifest(self, mid):
        """Keep the MANIFEST the state came from open (mid: its manifest_id()), so
        that no file made later can take its inode: a database destroyed and made
        again lays out the same names, sizes and sequences, and its MANIFEST could
        otherwise get the freed inode number and look like the same file (a CI run
        saw a secondary keep reading the old data so). Lock held, or the opening
        thread alone."""
        try:
            fd = os.open(filenames.manifest_name(self.engine.path, mid[0]), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = None               # gone already: the next catch_up() sees another MANIFEST
        else:
            st = os.fstat(fd)
            if (st.st_ino, st.st_dev) != tuple(mid[2:]):      # replaced since: hold nothing
                os.close(fd)
                fd = None
        old, self.manifest_fd = self.manifest_fd, fd
        if old is not None:
            os.close(old)

    @staticmethod
    def takes(vs, number, mem, fmems):
        """The memtables log `number`'s records go to: the default's (mem, None if
        its tables hold that log) and each family's whose log_number is at most number."""
        if not fmems:
            return mem
        return (mem if number >= vs.log_number else None,
                {fid: m for fid, m in fmems.items() if number >= vs.families[fid].log_number})

    def apply(self, mem, records, last, number, start):
        """Apply the batches of log `number` (read from offset start) that continue
        sequence `last` (None: any first one); stop at one that does not. A batch
        already applied (at or below last) is skipped. Returns (the last sequence
        applied, or last; where the next unread record starts; whether every
        record was applied or already there)."""
        applied = start
        path = filenames.log_name(self.engine.path, number)
        for off, payload in records:
            first, count = batch_header(path, off, payload)
            if count and last is not None and first + count - 1 <= last:
                applied = off + HEADER + len(payload)     # applied before
                continue
            if count and last is not None and first != last + 1:
                return last, applied, False          # a gap: wait for the earlier log
            if type(mem) is tuple:        # with column families (takes())
                replay_batch_cf(mem[1], mem[0], payload, path, off)
            else:
                replay_batch(mem, payload, path, off)
            if count:
                last = first + count - 1
                self.applied_batches += 1
            applied = off + HEADER + len(payload)
        return last, applied, True

    def catch_up(self):
        """A secondary reads what the primary made durable-in-the-log since the
        last call (module docstring). Returns the number of sequence numbers that
        became visible."""
        e = self.engine
        with self.lock:
            before = e.last_seq
            try:
                if self.manifest_id() != self.manifest:
                    self.load()
                self.tail()
            except Moved:
                self.load()
            self.catch_ups += 1
            self.last_catch_up = time.time()
            return e.last_seq - before

    def tail(self):
        """Read the live logs on from their offsets into the active memtable."""
        e = self.engine
        vs = e.versions
        log_number = vs.min_log_number()
        mem = e.sv.mem
        cfs = e.cfs or {}
        fmems = {fid: f.sv.mem for fid, f in cfs.items()}
        last_seq = e.last_seq
        for number in self.live_logs(log_number):
            start = self.offsets.get(number, 0)
            records, end = self.read_log_from(number, start)
            with e.mutex:
                if e.shutting_down:
                    raise e.state.error()
                # entries first, last_seq after: a reader sees whole batches
                last_seq, applied, complete = self.apply(self.takes(vs, number, mem, fmems), records,
                                                         last_seq, number, start)
                for f in cfs.values():
                    f.last_seq = last_seq
                e.last_seq = last_seq
            self.offsets[number] = end if complete else applied
            if not complete:
                break

    def background_catch_up(self):
        """catch_up() from the pool (option catch_up_interval): an error is kept
        for stats() instead of raised, and the next interval tries again."""
        try:
            self.catch_up()
            self.last_error = None
        except Exception as e:      # noqa: BLE001 - reported in stats(); retried next interval
            self.last_error = f"{type(e).__name__}: {e}"

    # ------------------------------------------------------------------ stats

    def report(self):
        """stats()["follower"]: the mode and, for a secondary, how far behind the
        logs it follows are (bytes and sequence numbers written but not applied)."""
        out = {"mode": self.mode, "last_sequence": self.engine.last_seq, "reloads": self.reloads,
               "catch_ups": self.catch_ups, "applied_batches": self.applied_batches,
               "last_catch_up": self.last_catch_up, "last_error": self.last_error}
        if self.mode == "secondary":
            pending_bytes, pending_seq = 0, self.engine.last_seq
            try:
                for number in self.live_logs(self.engine.versions.min_log_number()):
                    records, _ = self.read_log_from(number, self.offsets.get(number, 0))
                    path = filenames.log_name(self.engine.path, number)
                    for off, payload in records:
                        pending_bytes += HEADER + len(payload)
                        first, count = batch_header(path, off, payload)
                        if count:
                            pending_seq = max(pending_seq, first + count - 1)
            except (Moved, CorruptionError, OSError):
                pending_bytes = pending_seq = None      # the primary moved on: catch_up() reloads
            out["behind_bytes"] = pending_bytes
            out["behind_sequences"] = None if pending_seq is None else pending_seq - self.engine.last_seq
            out["directory"] = self.own_dir
        return out
