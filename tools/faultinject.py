"""Driver of the fault-injection shim tools/faultinject.c (docs/reliability.md).

    fs = FaultFS(workdir)               # files under workdir/root are watched
    fs.reset()                          # the state on disk now counts as durable
    env = fs.env(rules=None)            # LD_PRELOAD + LSMKV_FI_* for a child process
    ... start the child with env, SIGKILL it ...
    res = fs.power_loss(random.Random(1))   # drop what was not synced; res.as_dict()
    fs.set_rules("op=fsync,path=*.log,nth=3,errno=EIO")   # a running child sees it
    fs.clear_rules()

build() compiles the shim with gcc into a cache directory (LSMKV_FI_CACHE, else
~/.cache/lsmkv-faultinject), keyed by a hash of the source, and returns the .so.

The power-loss model (applied by power_loss() to the files under root, from the
journal the shim wrote and the baseline taken by reset()):
  1. A directory's regular files are those named in its last fsync (the DIR
     record), or in the baseline if it was never fsynced: a file created since
     disappears, a file unlinked or replaced comes back (the shim kept its inode
     as KEEP/<ino>), a rename is undone.
  2. A file written with write()/pwrite() keeps the bytes below its size at its
     last fsync/fdatasync (the baseline size if none; 0 for a new file). With
     tail="pages", a random whole-page prefix of the unsynced tail survives too.
  3. A file mapped MAP_SHARED|PROT_WRITE (the WAL) keeps the size it had at its
     last sync (fsync, fdatasync or msync; 0 if never synced), and page by page
     (4 KiB): the image of its last sync if the page did not change since, else,
     at random (p = 1/2), either that image (zeros if never synced) or the
     current content: the kernel writes back dirty pages in any order.
What it does not model: reordering or tearing inside a page or sector (a page
is all old or all new), a file's data reaching the disk before its size for
write() files (rule 2 cuts at the synced size, or keeps a page prefix), lost
writes after an fsync error (Linux may drop the dirty pages), and directories
themselves (created once, before a run, and never removed). Files written below
their synced size after the sync are reported as PowerLossError (the engine
never does that; the model could not restore the old bytes).
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "faultinject.c")
PAGE = 4096

OPS = ("write", "pwrite", "read", "pread", "fsync", "fdatasync", "msync", "rename", "unlink",
       "open", "fallocate", "ftruncate", "any")
ERRNOS = ("EIO", "ENOSPC", "EDQUOT", "EROFS")


class PowerLossError(Exception):
    """The journal describes a state the model cannot rebuild."""


# ---------------------------------------------------------------- building

def build(cache_dir=None):
    """Path of the compiled shim; compiles it (gcc) if the cache lacks this source's build."""
    with open(SOURCE, "rb") as fh:
        src = fh.read()
    digest = hashlib.sha256(src).hexdigest()[:16]
    cache_dir = cache_dir or os.environ.get("LSMKV_FI_CACHE") or \
        os.path.join(os.path.expanduser("~"), ".cache", "lsmkv-faultinject")
    os.makedirs(cache_dir, exist_ok=True)
    out = os.path.join(cache_dir, f"faultinject-{digest}.so")
    if os.path.exists(out):
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("faultinject: no C compiler (gcc or cc) on PATH")
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache_dir)
    os.close(fd)
    r = subprocess.run([gcc, "-O2", "-Wall", "-shared", "-fPIC", "-o", tmp, SOURCE, "-ldl", "-lpthread"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"faultinject: compiling {SOURCE} failed:\n{r.stderr}")
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------- rules

def parse_rules(text):
    """The rules in text (the shim's grammar) as dicts; ValueError naming what is wrong."""
    rules = []
    for part in text.replace("\n", ";").split(";"):
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        r = {"op": None, "path": "*", "nth": 1, "errno": "EIO", "mode": "once"}
        for kv in part.split(","):
            kv = kv.strip()
            if "=" not in kv:
                raise ValueError(f"fault rule field {kv!r} is not key=value (in {part!r})")
            k, v = (s.strip() for s in kv.split("=", 1))
            if k == "op":
                if v not in OPS:
                    raise ValueError(f"fault rule op {v!r} is not one of {', '.join(OPS)}")
            elif k == "nth":
                if not v.isdigit() or int(v) < 1:
                    raise ValueError(f"fault rule nth must be an integer >= 1, got {v!r}")
                v = int(v)
            elif k == "errno":
                if v not in ERRNOS:
                    raise ValueError(f"fault rule errno {v!r} is not one of {', '.join(ERRNOS)}")
            elif k == "mode":
                if v not in ("once", "persistent"):
                    raise ValueError(f"fault rule mode must be once or persistent, got {v!r}")
            elif k == "path":
                if not v or len(v) > 255:
                    raise ValueError(f"fault rule path glob must be 1-255 characters, got {v!r}")
            else:
                raise ValueError(f"unknown fault rule key {k!r} (op, path, nth, errno, mode)")
            r[k] = v
        if r["op"] is None:
            raise ValueError(f"fault rule {part!r} has no op=")
        rules.append(r)
    if len(rules) > 32:
        raise ValueError("at most 32 fault rules")
    return rules


def rule(op, path="*", nth=1, errno="EIO", mode="once"):
    """One rule as text (validated)."""
    text = f"op={op},path={path},nth={nth},errno={errno},mode={mode}"
    parse_rules(text)
    return text


# ---------------------------------------------------------------- the journal

def read_journal(path):
    """One process's journal file as [(ts, record)], in file order; a record is a
    tuple: ("S", ino, size, path), ("M", ino, path), ("P", ino, off, length, fsize,
    data|None), ("DIR", path, {name: ino}), ("K", ino, keep_path), ("U", ino, path),
    ("R", old, new), ("F", op, errno, path), ("C", rule index, matching calls). A torn last record (cut by the SIGKILL
    while its wrapped call had not returned) is left out."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    out, pos, n = [], 0, len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        line = data[pos:nl].decode("utf-8", "surrogateescape")
        pos = nl + 1
        ts, kind, rest = line.split(" ", 2)
        ts = int(ts)
        if kind == "S":
            ino, size, p = rest.split(" ", 2)
            rec = ("S", int(ino), int(size), p)
        elif kind == "M":
            ino, p = rest.split(" ", 1)
            rec = ("M", int(ino), p)
        elif kind == "P":
            ino, off, length, fsize, z = rest.split(" ")
            length = int(length)
            payload = None
            if z == "D":
                payload = data[pos:pos + length]
                if len(payload) != length:
                    break
                pos += length
            rec = ("P", int(ino), int(off), length, int(fsize), payload)
        elif kind == "DIR":
            count, p = rest.split(" ", 1)
            entries = {}
            for _ in range(int(count)):
                nl = data.find(b"\n", pos)
                if nl < 0:
                    break
                ino, name = data[pos:nl].decode("utf-8", "surrogateescape").split(" ", 1)
                entries[name] = int(ino)
                pos = nl + 1
            if len(entries) != int(count):
                break
            rec = ("DIR", p, entries)
        elif kind == "K":
            ino, p = rest.split(" ", 1)
            rec = ("K", int(ino), p)
        elif kind == "U":
            ino, p = rest.split(" ", 1)
            rec = ("U", int(ino), p)
        elif kind == "R":
            old, new = rest.split(" -> ", 1)
            rec = ("R", old, new)
        elif kind == "F":
            op, err, p = rest.split(" ", 2)
            rec = ("F", op, int(err), p)
        elif kind == "C":
            i, count = rest.split(" ")
            rec = ("C", int(i), int(count))
        else:
            raise PowerLossError(f"journal {path}: unknown record {line[:60]!r}")
        out.append((ts, rec))
    return out


def read_journals(directory):
    """The records of every process's journal in directory, merged in timestamp order."""
    merged = []
    if os.path.isdir(directory):
        for i, name in enumerate(sorted(os.listdir(directory))):
            for j, (ts, rec) in enumerate(read_journal(os.path.join(directory, name))):
                merged.append((ts, i, j, rec))
    merged.sort(key=lambda t: t[:3])
    return [t[3] for t in merged]


# ---------------------------------------------------------------- the file system

class PowerLossResult:
    def __init__(self):
        self.files_removed = []      # names whose directory entry was never synced
        self.files_restored = []     # names brought back (an unsynced unlink or rename)
        self.bytes_dropped = 0       # bytes cut from write() files
        self.pages_lost = 0          # changed pages of mapped files that went back to their synced image
        self.pages_written_back = 0  # changed pages of mapped files that kept their new content
        self.syncs = 0               # fsync/fdatasync/msync records in the journal
        self.dir_syncs = 0
        self.faults = 0

    def as_dict(self):
        return {"files_removed": len(self.files_removed), "files_restored": len(self.files_restored),
                "bytes_dropped": self.bytes_dropped, "pages_lost": self.pages_lost,
                "pages_written_back": self.pages_written_back, "syncs": self.syncs,
                "dir_syncs": self.dir_syncs, "faults": self.faults}


class FaultFS:
    """The watched tree workdir/root, its journal, keep directory and control file."""

    def __init__(self, workdir, cache_dir=None):
        self.workdir = os.path.realpath(workdir)
        self.root = os.path.join(self.workdir, "root")
        self.keep = os.path.join(self.workdir, "keep")      # same file system, outside root
        self.journal_dir = os.path.join(self.workdir, "journal")   # one file per process
        self.journal = os.path.join(self.journal_dir, "j")
        self.control = os.path.join(self.workdir, "control")
        self.lib = build(cache_dir)
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.keep, exist_ok=True)
        os.makedirs(self.journal_dir, exist_ok=True)
        self.baseline = None
        self.reset()

    def env(self, rules=None, base=None):
        """Environment for a child: the shim preloaded, watching root. With rules,
        those rules, fixed; else the rules of the control file (set_rules())."""
        env = dict(os.environ if base is None else base)
        pre = env.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = self.lib + (" " + pre if pre else "")
        env["LSMKV_FI_ROOT"] = self.root
        env["LSMKV_FI_KEEP"] = self.keep
        env["LSMKV_FI_JOURNAL"] = self.journal
        env["LSMKV_FI_CONTROL"] = self.control
        env.pop("LSMKV_FI_RULES", None)
        if rules:            # fixed rules: the control file (which would replace them) is not used
            parse_rules(rules)
            env["LSMKV_FI_RULES"] = rules
            del env["LSMKV_FI_CONTROL"]
        return env

    def set_rules(self, text):
        """Replace the control file's rules (a running child reloads them, counters at 0)."""
        parse_rules(text)
        tmp = self.control + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text + "\n")
        os.replace(tmp, self.control)

    def clear_rules(self):
        self.set_rules("")

    def events(self):
        return read_journals(self.journal_dir)

    def rule_counts(self):
        """{rule index: calls it matched} summed over the processes that exited normally."""
        out = {}
        for e in self.events():
            if e[0] == "C":
                out[e[1]] = out.get(e[1], 0) + e[2]
        return out

    def faults(self):
        """The faults the shim injected since the last reset(): [(op, errno, path)]."""
        return [e[1:] for e in self.events() if e[0] == "F"]

    def _dirs(self):
        for d, subdirs, _ in os.walk(self.root):
            yield d

    def reset(self):
        """Take what is on disk now as durable (the baseline); empty the journal and keep dir."""
        dirs, sizes = {}, {}
        for d in self._dirs():
            entries = {}
            for e in os.scandir(d):
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    entries[e.name] = st.st_ino
                    sizes[st.st_ino] = st.st_size
            dirs[d] = entries
        self.baseline = {"dirs": dirs, "sizes": sizes}
        for d in (self.keep, self.journal_dir):
            for name in os.listdir(d):
                os.unlink(os.path.join(d, name))

    def power_loss(self, rng, tail="truncate", writeback=None):
        """Simulate a power loss (module docstring) on the files under root, after
        the child is dead; then reset(). Returns a PowerLossResult. writeback, if
        given, replaces the coin flip for a changed page of a mapped file:
        writeback(names, page) -> True if the new content reached the disk, where
        names are the file's durable names (base names)."""
        if tail not in ("truncate", "pages"):
            raise ValueError(f"tail must be 'truncate' or 'pages', got {tail!r}")
        res = PowerLossResult()
        dirs = {d: dict(e) for d, e in self.baseline["dirs"].items()}
        sizes = dict(self.baseline["sizes"])
        mapped, images = set(), {}
        for ev in self.events():
            kind = ev[0]
            if kind == "S":
                sizes[ev[1]] = ev[2]
                res.syncs += 1
            elif kind == "M":
                mapped.add(ev[1])
            elif kind == "P":
                _, ino, off, length, fsize, payload = ev
                img = images.setdefault(ino, {})
                for k in range(0, length, PAGE):
                    img[(off + k) // PAGE] = None if payload is None else payload[k:k + PAGE]
                if fsize >= 0:
                    sizes[ino] = fsize
                res.syncs += 1
            elif kind == "DIR":
                dirs[ev[1]] = ev[2]
                res.dir_syncs += 1
            elif kind == "F":
                res.faults += 1
        # where each inode's content is now
        where = {}
        for name in os.listdir(self.keep):
            where[int(name)] = os.path.join(self.keep, name)
        on_disk = {}
        for d in self._dirs():
            on_disk[d] = {}
            for e in os.scandir(d):
                if e.is_file(follow_symlinks=False):
                    ino = e.stat(follow_symlinks=False).st_ino
                    on_disk[d][e.name] = ino
                    where.setdefault(ino, e.path)
        stage = tempfile.mkdtemp(prefix="stage-", dir=self.workdir)
        try:
            needed = {}
            for d in on_disk:
                for name, ino in dirs.get(d, {}).items():
                    if ino not in where:
                        raise PowerLossError(f"{os.path.join(d, name)}: its durable inode {ino} is "
                                             f"gone (unlinked outside the shim?)")
                    if ino not in needed:
                        needed[ino] = os.path.join(stage, str(ino))
                        os.link(where[ino], needed[ino])
            for d, entries in on_disk.items():
                durable = dirs.get(d, {})
                for name, ino in entries.items():
                    if durable.get(name) != ino:
                        res.files_removed.append(os.path.join(d, name))
                    os.unlink(os.path.join(d, name))
                for name, ino in durable.items():
                    if entries.get(name) != ino:
                        res.files_restored.append(os.path.join(d, name))
                    os.link(needed[ino], os.path.join(d, name))
            names = {}
            for d in on_disk:
                for name, ino in dirs.get(d, {}).items():
                    names.setdefault(ino, []).append(name)
            for ino, path in needed.items():
                if ino in mapped and ino in self.baseline["sizes"]:
                    raise PowerLossError(f"{path}: a file from before the run was mapped for writing "
                                         f"(the model knows no synced image of its pages)")
                if ino in mapped:
                    choose = (lambda p, _n=names[ino]: writeback(_n, p)) if writeback else \
                        (lambda p: rng.random() < 0.5)
                    self._mapped_content(path, sizes.get(ino, 0), images.get(ino, {}), choose, res)
                else:
                    self._regular_content(path, sizes.get(ino, 0), rng, tail, res)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        last = self.journal_dir + ".last"           # kept for a post-mortem until the next one
        shutil.rmtree(last, ignore_errors=True)
        os.rename(self.journal_dir, last)
        os.makedirs(self.journal_dir)
        self.reset()
        return res

    @staticmethod
    def _regular_content(path, synced, rng, tail, res):
        cur = os.path.getsize(path)
        if cur < synced:
            raise PowerLossError(f"{path}: {cur} bytes, below its synced size {synced} (a truncation "
                                 f"the model cannot undo)")
        new = synced
        if tail == "pages" and cur > synced:
            top = -(-cur // PAGE)
            k = rng.randint(synced // PAGE, top)
            new = max(synced, min(cur, k * PAGE))
        if new < cur:
            os.truncate(path, new)
            res.bytes_dropped += cur - new

    @staticmethod
    def _mapped_content(path, size, image, choose, res):
        with open(path, "rb") as fh:
            cur = fh.read()
        out = bytearray()
        for p in range(-(-size // PAGE)):
            lo, hi = p * PAGE, min(size, (p + 1) * PAGE)
            synced = image.get(p)
            synced = bytes(hi - lo) if synced is None else synced[:hi - lo].ljust(hi - lo, b"\0")
            now = cur[lo:hi].ljust(hi - lo, b"\0")
            if now == synced:
                out += now
            elif choose(p):
                out += now
                res.pages_written_back += 1
            else:
                out += synced
                res.pages_lost += 1
        if bytes(out) != cur:
            with open(path, "r+b") as fh:
                fh.write(out)
                fh.truncate(len(out))
