"""The compaction scheduler and the merge runner.

Compactions owns what decides which compaction runs when: its lock, the list of
running compactions, the round-robin pointers, the garbage check; its jobs' step
(step()), and the manual entry points
(compact_range(), no_background()). run_compaction() is the reusable merge: a job
(lsmkv.engine.worker) that streams the inputs through lsmkv.core.table.write_tables,
in a worker process (the pool's, lsmkv.engine.pool: shared by the engines of
the process) or in the calling thread; bounded memory (one block per
input, one output block), outputs cut at target_file_size between user keys, then
one MANIFEST edit that removes the inputs and adds the outputs.

Thread safety: with max_background_jobs = N, N - 1 compaction jobs may merge
at once (fewer if the pool's compact lane has fewer threads). A background compaction is picked and registered in `running` under
`lock` and the engine mutex, then runs without either; a manual compaction holds
`lock` throughout and first waits until none is running. `running`, `pointers`,
`garbage_checked_version`, `next_expiry`, `held_until`, `worker_jobs` and `charged_l0` are
guarded by the engine mutex; the engine's read_charge (lsmkv.core.iterator.ReadCharge) is
added to by readers holding the GIL and read and restarted here with the mutex held;
`worker_fallback` is one reference assignment. Lock order: lock, then the engine mutex.

Invariants:
  1. Outputs become visible only through a durable MANIFEST edit; a crash
     before it leaves the DB as it was, and the partial outputs are orphans
     removed at the next open.
  2. Compactions running at once do not conflict (lsmkv.engine.compaction.conflicts):
     the output levels stay non-overlapping whatever order they finish in.
  3. While a manual compaction runs, no background compaction runs or starts.
  4. Output numbers are pending outputs from their reservation until the edit
     is installed or the job failed.
"""
import threading
from contextlib import contextmanager

from lsmkv.engine import background, filenames
from lsmkv.engine.compaction import (Running, is_bottommost, level_scores, output_compression_level,
                                     output_dict_bytes, pick_auto, pick_range, read_compaction_units,
                                     tombstone_coverage)
from lsmkv.engine.estimates import table_bytes
from lsmkv.engine.version import FileMeta, VersionEdit
from lsmkv.engine.worker import (WorkerUnavailable, interpreter_problem, make_job,
                                 numbers_needed, run_job, runs_in_process)
from lsmkv.errors import BackgroundError


class Compactions:
    def __init__(self, engine, n_threads):
        self.engine = engine
        opts = engine.options
        # -- constant
        self.lock = threading.Lock()          # picking a compaction; held throughout by manual ones
        self.use_workers = opts.compaction_worker == "process"
        # -- guarded by the engine mutex
        self.running = []                     # Running of merges in progress
        self.pointers = {}                    # level -> largest user key of its last compaction
        self.garbage_checked_version = None
        self.next_expiry = 0
        self.held_until = 0
        self.worker_jobs = 0                  # jobs this engine ran in a worker process
        self.charged_l0 = None                # the level-0 file numbers the read charge is against
        # -- one reference assignment: why compactions run in-process although
        #    compaction_worker='process' (None: they do not)
        self.worker_fallback = interpreter_problem() if self.use_workers else None

    # -- the background threads

    def garbage_check_due(self):
        """Should a compaction thread look for garbage-heavy files (mutex held)?
        Yes after a version change, when the clock passes the earliest expiry, and
        when the snapshots that held deletions back are released."""
        e = self.engine
        if e.versions.current is not self.garbage_checked_version:
            return True
        if self.held_until and e.snapshots.oldest() >= self.held_until:
            return True
        return bool(self.next_expiry) and e.now_ms() >= self.next_expiry

    def garbage_checked(self, version, oldest):
        """Nothing was due in version with oldest the oldest snapshot (mutex held):
        note when to look again (next_expiry; held_until, the smallest sequence
        above oldest of a deletion-heavy file or a range tombstone that a snapshot
        keeps from being collected: once oldest() reaches it, it may be)."""
        self.garbage_checked_version = version
        exps = [f.min_expiry for _, f in version.files() if f.min_expiry]
        self.next_expiry = min(exps) if exps else 0
        tables = self.engine.tables
        held = []
        for level, f in version.files():
            if f.num_entries and 2 * f.num_deletions >= f.num_entries and f.largest_seq > oldest:
                held.append(f.largest_seq)
            held.extend(q for _, _, q in tables.open(f.number, level).range_dels or () if q > oldest)
        self.held_until = min(held) if held else 0

    def tombstone_coverage(self, version, oldest):
        """coverage(level, f) for pick_auto: the bytes f's range tombstones (those
        every snapshot sees) delete in the tables under it
        (compaction.tombstone_coverage), 0 for a file without range tombstones
        (one dict lookup: its reader is open). Mutex held; computed only when the
        garbage pass asks, once per file."""
        tables = self.engine.tables
        levels = {}

        def table_bytes_of(g, start, stop):
            return table_bytes(tables.open(g.number, levels[g.number]), start, stop)

        def coverage(level, f):
            rd = tables.open(f.number, level).range_dels
            visible = [t for t in rd or () if t[2] <= oldest]
            if not visible:
                return 0
            if not levels:
                levels.update((g.number, lv) for lv, g in version.files())
            return tombstone_coverage(version, level, f, visible, table_bytes_of)
        return coverage

    def reads_due(self, version):
        """Have reads paid for merging level 0 into level 1 (mutex held)? The engine's
        read charge (lsmkv.core.iterator.ReadCharge) against what the merge would
        rewrite (lsmkv.engine.compaction.read_compaction_units). The charge counts
        only against the level 0 it was made on: when level 0's files are not the
        ones it last saw, or a merge would leave no fewer runs, it restarts. If
        not due yet, the charge is told when it will be, and whom to wake then."""
        e = self.engine
        if not e.options.read_triggered_compaction:
            return False
        need = read_compaction_units(version)
        l0 = tuple(f.number for f in version.levels[0])
        rc = e.read_charge
        if l0 != self.charged_l0:
            self.charged_l0 = l0
            self.restart_read_charge()
        elif not need and rc.units:
            self.restart_read_charge()
        if need and rc.units >= need:
            return True
        if rc.wake is None and e.threads.compaction_wakes:
            rc.wake = e.threads.compaction_wakes[0].set
        rc.due_at = need
        return False

    def restart_read_charge(self):
        """Start the read charge over (mutex held): units 0, and a new epoch, so the
        iterators made before (reading the level 0 they pinned) charge no more."""
        rc = self.engine.read_charge
        rc.units = 0
        rc.epoch += 1

    def needs_compaction(self):
        """Cheap check (mutex held) for the background thread's wait loop."""
        e = self.engine
        with_garbage = self.garbage_check_due()
        version = e.versions.current
        return max(level_scores(version, e.options)) >= 1 or with_garbage or self.reads_due(version)

    def step(self, i):
        """Compaction job i's step (in a thread of the pool's compact lane, merging in
        that thread's worker process). The job wakes on every version change and at
        least once a second, so expired data is collected without writes. When what
        is due conflicts with compactions other jobs are running, it waits for the
        next change."""
        e = self.engine
        with e.mutex:
            if e.shutting_down or e.bg_error is not None:
                return background.STOP
            if not self.needs_compaction():
                return background.IDLE
        try:
            pick = self.compact_auto()
        except BaseException as ex:   # noqa: BLE001 - surfaced to writers via bg_error
            e.fail_background(ex)
            return background.STOP
        if pick is None:
            return background.IDLE
        with e.mutex:
            e.cv.notify_all()
        return background.AGAIN

    def compact_auto(self):
        """Run one background compaction if one is due and does not conflict with the
        running ones. Returns the Pick run, or None."""
        e = self.engine
        with self.lock:            # not while a manual compaction holds it
            with e.mutex:
                if e.shutting_down:    # closing, or a column family dropped since step() looked
                    return None
                version = e.versions.current
                running = self.running
                oldest = e.snapshots.oldest()
                pick = pick_auto(version, e.options, self.pointers, e.now_ms(), oldest, running,
                                 self.tombstone_coverage(version, oldest), self.reads_due(version))
                if pick is None:
                    self.garbage_checked(version, oldest)
                    return None
                if 0 in pick.inputs:        # what reads spent on level 0 is bought back by this merge
                    self.restart_read_charge()
                src = pick.output_level - 1
                if src > 0 and src in pick.inputs:      # round robin within levels >= 1
                    self.pointers[src] = max(f.largest_user_key for f in pick.inputs[src])
                entry = Running(pick.inputs, pick.output_level)
                running.append(entry)
                e.stats.max_compactions_running = max(e.stats.max_compactions_running, len(running))
                bottommost = is_bottommost(version, pick.inputs, pick.output_level)
        try:
            self.run_compaction(pick.inputs, pick.output_level, bottommost)
        finally:
            with e.mutex:
                self.running.remove(entry)
                if 0 in pick.inputs:    # charged meanwhile against the level 0 it replaced
                    self.restart_read_charge()
                e.cv.notify_all()
        with e.mutex:
            by = e.stats.compactions_by_reason
            by[pick.reason] = by.get(pick.reason, 0) + 1
        return pick

    # -- manual compactions

    @contextmanager
    def no_background(self):
        """No background compaction runs within (DB.no_background_compactions)."""
        e = self.engine
        if e.state.forked:      # the lock and `running` are the parent's threads': no wait ends
            raise e.state.error()
        with self.lock:
            with e.mutex:
                while self.running:
                    if e.bg_error is not None:
                        raise BackgroundError(f"background work failed: {e.bg_error}")
                    e.cv.wait(1.0)
            yield

    def compact_range(self, start, stop):
        """Compact [start, stop] below level 0 (lock held, nothing running)."""
        e = self.engine
        with e.mutex:
            e.check_open()             # a column family dropped meanwhile: ClosedError naming it
            version = e.versions.current
            inputs, output_level = pick_range(version, start, stop)
        nfiles = sum(len(v) for v in inputs.values())
        if nfiles == 0:
            return None
        if nfiles == 1 and output_level in inputs and not any(
                f.num_deletions or f.min_expiry for f in inputs[output_level]):
            return None   # a single file already at the bottom with nothing to drop
        return self.run_compaction(inputs, output_level, is_bottommost(version, inputs, output_level))

    # -- the merge

    def run_job(self, job):
        """Run a compaction job (lsmkv.engine.worker) where options.compaction_worker says:
        in the calling pool thread's worker process (the pool's first one for a
        manual compaction). Where no worker can run (WorkerUnavailable), this engine
        compacts in the calling thread from then on; a job with a Python callable
        merge operator always runs in the calling thread (worker.runs_in_process)."""
        if self.use_workers and self.worker_fallback is None and not runs_in_process(job):
            w = self.engine.threads.worker()
            if w is not None:
                try:
                    result = w.run(job)
                except WorkerUnavailable as ex:
                    self.worker_fallback = str(ex)
                else:
                    with self.engine.mutex:
                        self.worker_jobs += 1
                    return result
        return run_job(job)

    def run_compaction(self, inputs, output_level, bottommost):
        """Merge inputs ({level: [FileMeta]}) into output_level. Returns the edit applied."""
        if not inputs:
            return None
        e = self.engine
        opts = e.options
        with e.mutex:
            snapshot = e.snapshots.oldest()
            covered = covered_inputs(inputs, e.tables, snapshot)
            # L0 newest first, then by level: newer data first
            paths = [(f.number, filenames.table_name(e.path, f.number))
                     for level in sorted(inputs) for f in inputs[level] if f.number not in covered]
            in_bytes = sum(f.file_size for files in inputs.values() for f in files)
            numbers = e.files.reserve_numbers(numbers_needed(in_bytes, opts.target_file_size_base))
            l0_files = len(e.versions.current.levels[0])
            dict_bytes = output_dict_bytes(opts, l0_files)
            job = make_job(paths, numbers, e.path, opts, snapshot, bottommost, e.now_ms(),
                           dict_bytes=dict_bytes,
                           compression_level=output_compression_level(opts, bottommost, l0_files),
                           merge_op=e.merge_op, column_family=e.cf_id)
        try:
            result = self.run_job(job)
            edit = VersionEdit()
            for level, files in inputs.items():
                for f in files:
                    edit.delete_file(level, f.number)
            for m in result["outputs"]:
                edit.add_file(output_level, FileMeta.from_meta(m["number"], m))
            e.tables.preopen([m["number"] for m in result["outputs"]], output_level)

            def installed():
                st = e.stats
                st.add_locked(**result["stats"])
                st.compaction_bytes_read += in_bytes
                st.compaction_bytes_written += sum(m["file_size"] for m in result["outputs"])
                st.compactions += 1
                st.range_files_dropped += len(covered)
                if dict_bytes < opts.compression_dict_bytes:
                    st.compactions_without_dict += 1
                sv = e.sv
                e.install(sv.mem, sv.imms)
                e.files.collect()    # the outputs are in the current version now

            e.log_and_apply(edit, installed)
            e.threads.janitor_wake.set()        # the inputs are unlinked by the janitor thread
        finally:
            with e.mutex:
                e.files.release_outputs(numbers)
        return edit

    def workers(self):
        """The worker processes this engine's compactions may run in: its pool's,
        shared with the other engines of the pool ([] when it runs none)."""
        if not self.use_workers:
            return []
        p = self.engine.threads.pool
        return list(p.workers) if p is not None else []

    def stats(self):
        """stats()["compaction_worker"]."""
        ws = self.workers()
        s = ({"mode": "process", "pid": ws[0].pid, "pids": [w.pid for w in ws],
              "jobs": self.worker_jobs, "restarts": sum(w.restarts for w in ws)}
             if ws and self.worker_fallback is None else {"mode": "thread"})
        s["requested"] = self.engine.options.compaction_worker
        if self.worker_fallback is not None:
            s["reason"] = self.worker_fallback
        return s


def covered_inputs(inputs, tables, snapshot):
    """Numbers of the compaction inputs ({level: [FileMeta]}) that a range tombstone
    of another input deletes whole: every key of the file within the tombstone's
    range, every entry older than it, and the tombstone visible to every snapshot
    (sequence <= snapshot). Such a file is dropped without being read (its
    entries would all be dropped); one holding tombstones itself is always read.
    tables: the engine's open readers (mutex held)."""
    readers = {f.number: tables.open(f.number, level) for level, files in inputs.items() for f in files}
    tombstones = [(s, e, q, n) for n, t in readers.items() for s, e, q in (t.range_dels or ()) if q <= snapshot]
    if not tombstones:
        return set()
    covered = set()
    for files in inputs.values():
        for f in files:
            if readers[f.number].range_dels is None and any(
                    n != f.number and s <= f.smallest_user_key and f.largest_user_key < e and f.largest_seq < q
                    for s, e, q, n in tombstones):
                covered.add(f.number)
    return covered
