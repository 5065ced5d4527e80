"""Compaction jobs, and the worker process that can run them.

A compaction job is self-contained: the input tables' paths (newest data
first), the options that shape the outputs, the oldest snapshot, the clock
reading and the file numbers the outputs may take. run_job() merges the
inputs into new tables with lsmkv.core.table.write_tables and returns their
metadata; it touches no DB state, so the DB runs it either in its compaction
thread (compaction_worker='thread') or in a child process
(compaction_worker='process', the default), where the merge loop has a core
and a GIL of its own and foreground writes are not slowed by it (measured in
docs/tuning.md).

Protocol (parent <-> a `python -c` child running lsmkv.engine.worker.main, over the child's stdin and
stdout): the parent sends one pickled job; the child answers with one pickled
("ok", result) or ("err", exception). The child exits on EOF, and stops before
creating another file once its parent is gone.

Invariants:
  1. The worker only creates files with the numbers it was given (O_EXCL), so
     it never touches a file the DB or another process owns; it never deletes,
     renames or syncs the directory: the DB installs outputs through its
     MANIFEST, exactly as for a compaction run in a thread.
  2. A worker that dies mid-job leaves only unreferenced outputs, removed by
     the DB (or at the next open); the DB restarts it and retries the job once.
  3. Where no worker can run, the job runs in the DB's thread instead: at open
     when sys.executable does not look like a Python interpreter
     (interpreter_problem: frozen applications, uWSGI, embedded Python), and
     for good once a worker could not be started or died, twice, before it had
     ever answered a job (WorkerUnavailable). A worker that has answered jobs
     and then dies twice fails the job, as any background error does.

Thread safety: a Worker runs one job at a time (its own lock); run_job and
interpreter_problem share no state.
"""
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import threading

from lsmkv.engine import filenames
from lsmkv.engine.compaction import output_compression_level
from lsmkv.core.iterator import MergingIterator
from lsmkv.core.merge import resolve as resolve_merge
from lsmkv.core.table import TableBuilder, TableIterator, TableReader, write_tables

_STAT_KEYS = ("dropped_hidden", "dropped_deletes", "ttl_dropped", "range_dropped", "range_tombstones_dropped",
              "merges_folded")


def numbers_needed(input_bytes, target_file_size):
    """File numbers to reserve for a job's outputs: outputs are cut only after
    passing target_file_size, and a merge writes at most about what it reads
    (dropping entries, recompressing with a fresh dictionary); the margin covers
    a worse compression ratio."""
    return 2 * math.ceil(input_bytes / max(1, target_file_size)) + 4


def make_job(inputs, numbers, dbdir, options, snapshot, bottommost, now_ms, dict_bytes=None,
             compression_level=None, merge_op=None, column_family=0):
    """The job for merging `inputs` (TableReader paths, newer data first). dict_bytes:
    the outputs' zstd dictionary size (None: options.compression_dict_bytes);
    compression_level: their zstd level (None: output_compression_level's choice);
    merge_op: the DB's merge operator (lsmkv.core.merge), in the job as its name
    when a built-in (a worker process makes its own), else as the object itself:
    such a job runs in the DB's process (needs_process below); column_family: the
    id the outputs record (0: the default family's)."""
    o = options
    if dict_bytes is None:
        dict_bytes = o.compression_dict_bytes
    if compression_level is None:
        compression_level = output_compression_level(o, bottommost)
    return {"inputs": list(inputs), "numbers": list(numbers), "dir": dbdir,
            "block_size": o.block_size, "compression": o.compression,
            "compression_level": compression_level, "bloom_bits": o.bloom_bits_per_key,
            "restart_interval": o.block_restart_interval, "dict_bytes": dict_bytes,
            "mmap_reads": True,   # merges read their inputs once, sequentially: mapped (unmapped at the end)
            "target_file_size": o.target_file_size_base,
            "snapshot": snapshot, "bottommost": bottommost, "now_ms": now_ms,
            "merge_operator": (merge_op.name if merge_op is not None and merge_op.builtin else merge_op),
            "column_family": column_family}


def runs_in_process(job):
    """Whether the job must run in the DB's process: its merge operator is a
    Python callable, which a worker process cannot be sent."""
    return job.get("merge_operator") is not None and not isinstance(job["merge_operator"], str)


def _merge_op(spec):
    """The job's merge operator: a built-in's recorded name resolved, else as sent."""
    return resolve_merge(spec) if isinstance(spec, str) else spec


def run_job(job, should_continue=None):
    """Merge the job's inputs. Returns {"outputs": [meta dicts with "number"],
    "stats": {dropped_hidden, dropped_deletes, ttl_dropped}}."""
    numbers = list(reversed(job["numbers"]))

    def new_table():
        if should_continue is not None and not should_continue():
            raise RuntimeError("compaction worker: the database process is gone")
        if not numbers:
            raise RuntimeError(f"compaction job ran out of its {len(job['numbers'])} reserved file numbers")
        number = numbers.pop()
        b = TableBuilder(filenames.table_name(job["dir"], number), job["block_size"],
                         job["compression"], job["compression_level"], job["bloom_bits"],
                         job["restart_interval"], job["dict_bytes"])
        b.column_family = job.get("column_family", 0)
        return b

    readers = [TableReader(path, number, None, job["mmap_reads"]) for number, path in job["inputs"]]
    try:
        it = MergingIterator([TableIterator(t) for t in readers])
        stats = {}
        metas = write_tables(it, new_table, job["snapshot"], job["bottommost"], job["now_ms"],
                             job["target_file_size"], stats, _merge_op(job.get("merge_operator")))
        it = None
    finally:
        for t in readers:
            t.close()
    outputs = []
    for m in metas:
        m.pop("builder", None)
        m["number"] = filenames.parse(os.path.basename(m["path"]))[1]
        outputs.append(m)
    return {"outputs": outputs, "stats": {k: stats.get(k, 0) for k in _STAT_KEYS}}


# ---------------------------------------------------------------- parent side

# python, python3, python3.11, python3.13t, python3.11d, pythonw, pypy3, pypy3.10, python.exe
_PYTHON_NAME = re.compile(r"^(?:python|pypy)(?:\d+(?:\.\d+)*)?[dmtuw]*(?:\.exe)?$", re.I)


def interpreter_problem(executable=None, frozen=None):
    """Why a worker process cannot be started from `executable` (default
    sys.executable), or None if it looks like a Python interpreter. A cheap
    check that starts nothing: a frozen application (PyInstaller and the like set
    sys.frozen; `frozen` defaults to it), an empty executable (embedded Python),
    a path that is not an executable file, or a file whose real name is not a
    Python interpreter's (uWSGI, mod_wsgi and other hosts put their own binary
    in sys.executable). The DB then compacts in its threads (stats()
    ["compaction_worker"]["reason"] says why).

    >>> from lsmkv.engine.worker import interpreter_problem
    >>> interpreter_problem() is None             # this interpreter
    True
    >>> interpreter_problem("/usr/sbin/uwsgi-that-is-not-here")
    "sys.executable '/usr/sbin/uwsgi-that-is-not-here' is not an executable file"
    >>> interpreter_problem("/bin/false")
    "sys.executable '/bin/false' is not a Python interpreter (its file is named 'false')"
    >>> interpreter_problem("", frozen=False), interpreter_problem(frozen=True)
    ('sys.executable is empty', 'sys.frozen is set (a frozen application, not a Python interpreter)')
    """
    if frozen is None:
        frozen = getattr(sys, "frozen", False)
    if frozen:
        return "sys.frozen is set (a frozen application, not a Python interpreter)"
    if executable is None:
        executable = sys.executable
    if not executable:
        return "sys.executable is empty"
    real = os.path.realpath(executable)
    if not (os.path.isfile(real) and os.access(real, os.X_OK)):
        return f"sys.executable {executable!r} is not an executable file"
    name = os.path.basename(real)
    if not _PYTHON_NAME.match(name):
        return f"sys.executable {executable!r} is not a Python interpreter (its file is named {name!r})"
    return None


def _package_root():
    """The directory lsmkv is imported from (lsmkv/engine/worker.py is two below it)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _remove_outputs(job):
    for number in job["numbers"]:
        try:
            os.unlink(filenames.table_name(job["dir"], number))
        except FileNotFoundError:
            pass


def set_nice(tid, nice):
    """Lower a thread's or process's CPU priority (Linux: per thread, by native id),
    as RocksDB's Env::LowerThreadPoolCPUPriority does for its background pools.
    Returns whether it took effect."""
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
        return True
    except (OSError, AttributeError):
        return False


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class WorkerDied(RuntimeError):
    """The worker process exited (killed, or out of memory) before answering."""


class WorkerUnavailable(RuntimeError):
    """No worker process can run here: starting one failed (OSError), or it died
    on the job and on its retry without having ever answered a job (an
    executable that is not the Python it claims, an import failing in the
    child). The job's partial outputs are removed; the caller runs it in-process.

    >>> import lsmkv.engine.worker as worker
    >>> w = worker.Worker(executable="/nonexistent/python3")
    >>> try:
    ...     w.run({"numbers": [], "dir": "/nonexistent"})
    ... except worker.WorkerUnavailable as e:
    ...     print(e)
    cannot start a compaction worker: [Errno 2] No such file or directory: '/nonexistent/python3'
    """


class Worker:
    """A child process running compaction jobs, one at a time (thread-safe)."""

    def __init__(self, nice=0, cpus=None, executable=None):
        self._nice = nice          # the child's CPU priority (0: inherit)
        self._cpus = cpus          # the child's CPU set (None: inherit)
        self._executable = executable    # the interpreter to run (None: sys.executable when started)
        self._proc = None
        self._lock = threading.Lock()
        self.jobs = 0
        self.restarts = 0

    def start(self):
        """Start the worker process now (run() starts it when needed)."""
        root = _package_root()
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # cwd=root: `-c` puts the cwd first on sys.path, so the child imports this very lsmkv
        try:
            self._proc = subprocess.Popen([self._executable or sys.executable, "-c", "import sys; from lsmkv.engine.worker import main; sys.exit(main())", str(os.getpid())],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root, env=env,
                                          close_fds=True)
        except OSError as e:      # nothing was started
            raise WorkerUnavailable(f"cannot start a compaction worker: {e}") from e
        if self._nice:
            set_nice(self._proc.pid, self._nice)
        if self._cpus is not None:
            try:
                os.sched_setaffinity(self._proc.pid, self._cpus)
            except OSError:
                pass

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None else None

    def _call(self, job):
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                self.restarts += 1
            self.start()
        try:
            # written past the pipe's buffer (os.write), which stays empty: a fork()
            # child inheriting this object flushes nothing into the worker's stdin
            _write_all(self._proc.stdin.fileno(), pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            reply = pickle.load(self._proc.stdout)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as e:
            code = self._proc.wait()
            self._proc = None
            raise WorkerDied(f"compaction worker exited with status {code} during a job") from e
        return reply

    def run(self, job):
        """Run job in the worker; re-raise its exception. A worker that died is
        restarted and the job retried once (its outputs have fresh numbers).
        WorkerUnavailable if no worker could be started, or if the retry died too
        and no worker has ever answered a job."""
        with self._lock:
            try:
                try:
                    reply = self._call(job)
                except WorkerDied:
                    self.restarts += 1
                    _remove_outputs(job)     # the dead worker's partial outputs: the numbers are reused
                    reply = self._call(job)
            except WorkerDied as e:
                if self.jobs:
                    raise
                _remove_outputs(job)
                raise WorkerUnavailable(f"the compaction worker died before answering any job, "
                                        f"twice ({e})") from e
            self.jobs += 1
        status, value = reply
        if status == "ok":
            return value
        raise value

    def forget(self):
        """In a fork() child: drop the parent's worker without a word to it (the
        child's copies of the pipes close when collected; nothing is flushed)."""
        self._proc = None

    def close(self):
        with self._lock:
            p, self._proc = self._proc, None
        if p is None:
            return
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()


# ---------------------------------------------------------------- child side

def _die_with_parent():
    """Linux: SIGKILL this process when the thread that started it exits."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parent = int(argv[0]) if argv else os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent decides when we stop
    _die_with_parent()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr        # nothing else may write into the reply stream
    alive = lambda: os.getppid() == parent        # noqa: E731
    while alive():
        try:
            job = pickle.load(stdin)
        except EOFError:
            return 0
        try:
            reply = ("ok", run_job(job, alive))
        except BaseException as e:  # noqa: BLE001 - sent to the parent, which raises it
            try:
                pickle.loads(pickle.dumps(e))
                reply = ("err", e)
            except Exception:   # noqa: BLE001
                reply = ("err", RuntimeError(f"{type(e).__name__}: {e}"))
        pickle.dump(reply, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()
    return 1


if __name__ == "__main__":
    sys.exit(main())
