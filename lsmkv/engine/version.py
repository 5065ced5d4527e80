"""Versions (the set of live tables per level) and the MANIFEST that records them.

A Version is immutable. VersionSet.log_and_apply(edit) makes the next one:
it writes the edit to the MANIFEST, fsyncs, and only then makes the new
version current. CURRENT names the MANIFEST in use; open() replays it.

MANIFEST record payload (docs/format.md): a sequence of fields, each a varint
tag followed by its data:
    1 log_number varint          2 next_file_number varint
    3 last_sequence varint       4 deleted file: level varint, number varint
    5 new file: level, number, file_size, smallest_seq, largest_seq,
      num_entries, num_deletions, min_expiry (varints),
      smallest (varint length + internal key), largest (likewise)
    6 format marker: varint length + b"lsmkv-manifest-1" (first record only)
    7 family: varint id (the column family the edit's fields 1, 4, 5 are about;
      absent: the default family, id 0)
    8 create family: varint id, varint length + name (UTF-8), varint length +
      its options (JSON object, UTF-8)
    9 drop family: varint id
Fields 7-9 appear only in a DB that has had column families; a reader from
before them refuses such a MANIFEST ("unknown field tag").

Thread safety: VersionSet methods are called with the DB mutex held.

Invariants:
  1. Level 0 is ordered newest first (by largest sequence, then number); its
     files may overlap. Levels >= 1 are ordered by smallest key and their
     files' user-key ranges do not overlap.
  2. current is the state the MANIFEST on disk describes (after replay).
  3. next_file_number is larger than every file number in use or on disk.
"""
import json
import os

from lsmkv.engine import filenames
from lsmkv.core.coding import crc32c_py, decode_varint, encode_varint
from lsmkv.core.fileio import append_sync
from lsmkv.errors import ClosedError, CorruptionError
from lsmkv.engine.killpoint import killpoint
from lsmkv.engine.logformat import frame, read_log

NUM_LEVELS = 7
_SECTOR = 512


def torn_append(data, off):
    """Can the bad record at off be what a crash during its append left? Either the
    record runs past the end of the file (a short write), or the file is zero from
    a sector boundary inside the record to its end (space whose data never reached
    the disk). Anything else in a MANIFEST is damage."""
    size = len(data)
    if off + 8 > size:
        return True
    n = int.from_bytes(data[off + 4:off + 8], "little")
    if off + 8 + n > size:
        # a short write, unless the bytes to the end are the whole record and only its
        # length field was damaged (its checksum then matches the true length)
        rest = size - off - 8
        whole = rest.to_bytes(4, "little") + bytes(data[off + 8:size])
        return crc32c_py(whole) != int.from_bytes(data[off:off + 4], "little")
    zero_from = len(bytes(data[off:]).rstrip(b"\0")) + off     # the file is zero from here
    first = (max(zero_from, off) + _SECTOR - 1) // _SECTOR * _SECTOR
    return first < size
MARKER = b"lsmkv-manifest-1"

TAG_LOG, TAG_NEXT_FILE, TAG_LAST_SEQ, TAG_DELETED, TAG_NEW_FILE, TAG_MARKER = 1, 2, 3, 4, 5, 6
TAG_FAMILY, TAG_CREATE_FAMILY, TAG_DROP_FAMILY, TAG_NEXT_FAMILY = 7, 8, 9, 10


class FileMeta:
    __slots__ = ("number", "file_size", "smallest", "largest", "smallest_seq", "largest_seq",
                 "num_entries", "num_deletions", "min_expiry")

    def __init__(self, number, file_size, smallest, largest, smallest_seq=0, largest_seq=0,
                 num_entries=0, num_deletions=0, min_expiry=0):
        self.number = number
        self.file_size = file_size
        self.smallest = bytes(smallest)     # internal keys
        self.largest = bytes(largest)
        self.smallest_seq = smallest_seq
        self.largest_seq = largest_seq
        self.num_entries = num_entries
        self.num_deletions = num_deletions
        self.min_expiry = min_expiry

    @property
    def smallest_user_key(self):
        return self.smallest[:-8]

    @property
    def largest_user_key(self):
        return self.largest[:-8]

    @classmethod
    def from_meta(cls, number, m):
        return cls(number, m["file_size"], m["smallest"], m["largest"], m["smallest_seq"],
                   m["largest_seq"], m["num_entries"], m["num_deletions"], m["min_expiry"])

    def __repr__(self):
        return (f"FileMeta({self.number}, {self.file_size}B, {self.smallest_user_key!r}.."
                f"{self.largest_user_key!r})")


class VersionEdit:
    def __init__(self):
        self.log_number = None
        self.next_file_number = None
        self.last_sequence = None
        self.deleted = []        # (level, number)
        self.added = []          # (level, FileMeta)
        self.family = 0          # the column family of log_number, deleted and added
        self.create_family = None    # (id, name, options dict): a new family (its id is `family`)
        self.drop_family = None      # id of a family dropped
        self.next_family_id = None   # the id the next family created gets (a new MANIFEST's first record)

    def delete_file(self, level, number):
        self.deleted.append((level, number))

    def add_file(self, level, meta):
        self.added.append((level, meta))

    def encode(self, marker=False):
        out = bytearray()
        v = encode_varint
        if marker:
            out += v(TAG_MARKER) + v(len(MARKER)) + MARKER
        if self.create_family is not None:
            fid, name, opts = self.create_family
            nb = name.encode("utf-8")
            ob = json.dumps(opts, sort_keys=True).encode("utf-8")
            out += v(TAG_CREATE_FAMILY) + v(fid) + v(len(nb)) + nb + v(len(ob)) + ob
        if self.family:
            out += v(TAG_FAMILY) + v(self.family)
        if self.drop_family is not None:
            out += v(TAG_DROP_FAMILY) + v(self.drop_family)
        if self.next_family_id is not None:
            out += v(TAG_NEXT_FAMILY) + v(self.next_family_id)
        if self.log_number is not None:
            out += v(TAG_LOG) + v(self.log_number)
        if self.next_file_number is not None:
            out += v(TAG_NEXT_FILE) + v(self.next_file_number)
        if self.last_sequence is not None:
            out += v(TAG_LAST_SEQ) + v(self.last_sequence)
        for level, number in self.deleted:
            out += v(TAG_DELETED) + v(level) + v(number)
        for level, f in self.added:
            out += v(TAG_NEW_FILE) + v(level) + v(f.number) + v(f.file_size) + v(f.smallest_seq)
            out += v(f.largest_seq) + v(f.num_entries) + v(f.num_deletions) + v(f.min_expiry)
            out += v(len(f.smallest)) + f.smallest + v(len(f.largest)) + f.largest
        return bytes(out)

    @classmethod
    def decode(cls, data, path, offset):
        e = cls()
        data = bytes(data)
        pos = 0

        def num():
            nonlocal pos
            try:
                val, pos = decode_varint(data, pos)
            except ValueError as exc:
                raise CorruptionError(path, offset, f"manifest record: {exc}") from None
            return val

        def blob():
            nonlocal pos
            n = num()
            if pos + n > len(data):
                raise CorruptionError(path, offset, "manifest record: truncated field")
            b = data[pos:pos + n]
            pos += n
            return b

        e.marker = False
        while pos < len(data):
            tag = num()
            if tag == TAG_LOG:
                e.log_number = num()
            elif tag == TAG_NEXT_FILE:
                e.next_file_number = num()
            elif tag == TAG_LAST_SEQ:
                e.last_sequence = num()
            elif tag == TAG_DELETED:
                level, number = num(), num()
                if level >= NUM_LEVELS:
                    raise CorruptionError(path, offset, f"manifest record: bad level {level}")
                e.deleted.append((level, number))
            elif tag == TAG_NEW_FILE:
                level = num()
                if level >= NUM_LEVELS:
                    raise CorruptionError(path, offset, f"manifest record: bad level {level}")
                vals = [num() for _ in range(7)]
                smallest, largest = blob(), blob()
                if len(smallest) < 8 or len(largest) < 8:
                    raise CorruptionError(path, offset, "manifest record: key shorter than its tag")
                e.added.append((level, FileMeta(vals[0], vals[1], smallest, largest, *vals[2:])))
            elif tag == TAG_MARKER:
                if blob() != MARKER:
                    raise CorruptionError(path, offset, "not an lsmkv manifest (bad marker)")
                e.marker = True
            elif tag == TAG_FAMILY:
                e.family = num()
            elif tag == TAG_CREATE_FAMILY:
                fid = num()
                try:
                    name = blob().decode("utf-8")
                    opts = json.loads(blob().decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    raise CorruptionError(path, offset, "manifest record: bad column family") from None
                if fid == 0 or not isinstance(opts, dict):
                    raise CorruptionError(path, offset, "manifest record: bad column family")
                e.create_family = (fid, name, opts)
            elif tag == TAG_DROP_FAMILY:
                e.drop_family = num()
            elif tag == TAG_NEXT_FAMILY:
                e.next_family_id = num()
            else:
                raise CorruptionError(path, offset, f"manifest record: unknown field tag {tag}")
        if e.create_family is not None:
            e.family = e.create_family[0]
        return e


class Version:
    """An immutable list of files per level."""

    def __init__(self, levels=None):
        self.levels = levels or [[] for _ in range(NUM_LEVELS)]

    def apply(self, edit):
        levels = [list(files) for files in self.levels]
        gone = set(edit.deleted)
        if gone:
            levels = [[f for f in files if (lvl, f.number) not in gone] for lvl, files in enumerate(levels)]
        for level, f in edit.added:
            levels[level].append(f)
        levels[0].sort(key=lambda f: (f.largest_seq, f.number), reverse=True)
        for files in levels[1:]:
            files.sort(key=lambda f: f.smallest_user_key)
        return Version(levels)

    def files(self):
        for level, files in enumerate(self.levels):
            for f in files:
                yield level, f

    def numbers(self):
        return {f.number for _, f in self.files()}

    def check(self):
        """Assert the level invariants (tests)."""
        for level, files in enumerate(self.levels[1:], start=1):
            for a, b in zip(files, files[1:]):
                assert a.largest_user_key < b.smallest_user_key, f"overlap in L{level}: {a} {b}"
        return True


class FamilyState:
    """A column family's part of the MANIFEST's state: its name, the options it was
    created with, its Version and log_number (logs below it hold none of its unflushed writes)."""
    __slots__ = ("id", "name", "options", "current", "log_number")

    def __init__(self, fid, name, options, log_number):
        self.id = fid
        self.name = name
        self.options = options
        self.current = Version()
        self.log_number = log_number


class VersionSet:
    """The MANIFEST's state. The default family's Version and log_number are
    `current` and `log_number` (as before families); the other families' are in
    `families` (id -> FamilyState)."""

    def __init__(self, dbpath):
        self.dbpath = dbpath
        self.current = Version()
        self.next_file_number = 2
        self.last_sequence = 0
        self.log_number = 0
        self.manifest_number = 0
        self._manifest_fd = None
        self.families = {}           # id -> FamilyState (the default family is not in it)
        self.next_family_id = 1

    def version_of(self, fid):
        return self.current if fid == 0 else self.families[fid].current

    def log_number_of(self, fid):
        return self.log_number if fid == 0 else self.families[fid].log_number

    def live_numbers(self):
        """Numbers of every table a family's current version names."""
        live = self.current.numbers()
        for f in self.families.values():
            live |= f.current.numbers()
        return live

    def min_log_number(self):
        """The smallest log_number of any family: replay starts there."""
        return min([self.log_number] + [f.log_number for f in self.families.values()])

    def _apply_state(self, edit, path=None, off=None):
        """Apply edit to the family state it names (recovery and apply)."""
        if edit.next_family_id is not None:
            self.next_family_id = max(self.next_family_id, edit.next_family_id)
        if edit.create_family is not None:
            fid, name, opts = edit.create_family
            if fid in self.families or any(f.name == name for f in self.families.values()):
                raise CorruptionError(path, off, f"manifest record: column family {name!r} (id {fid}) "
                                      f"created twice")
            self.families[fid] = FamilyState(fid, name, opts, edit.log_number or 0)
            self.next_family_id = max(self.next_family_id, fid + 1)
        if edit.drop_family is not None:
            if self.families.pop(edit.drop_family, None) is None:
                raise CorruptionError(path, off, f"manifest record: drops unknown column family "
                                      f"{edit.drop_family}")
            return
        fid = edit.family
        if fid == 0:
            self.current = self.current.apply(edit)
            if edit.log_number is not None:
                self.log_number = edit.log_number
            return
        f = self.families.get(fid)
        if f is None:
            raise CorruptionError(path, off, f"manifest record: edit of unknown column family {fid}")
        f.current = f.current.apply(edit)
        if edit.log_number is not None:
            f.log_number = edit.log_number

    def new_file_number(self):
        n = self.next_file_number
        self.next_file_number += 1
        return n

    def recover(self):
        """Replay CURRENT -> MANIFEST. CorruptionError on any damage."""
        cur = filenames.current_name(self.dbpath)
        with open(cur, "rb") as fh:
            line = fh.read()
        name = line.decode("ascii", "replace").strip()
        parsed = filenames.parse(name)
        if not line.endswith(b"\n") or parsed is None or parsed[0] != "manifest":
            raise CorruptionError(cur, 0, f"CURRENT does not name a manifest: {line[:64]!r}")
        path = os.path.join(self.dbpath, name)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise CorruptionError(path, None, "the manifest named by CURRENT is missing") from None
        res = read_log(path, data, wal=False)
        if res.dropped_at is not None and not torn_append(data, res.dropped_at):
            # every edit is appended and fsynced before the DB acts on it (deletes the
            # log it flushed, the files it compacted): a complete record that fails its
            # check is damage to a durable edit, not a crashed append, and dropping it
            # would lose data silently (docs/reliability.md)
            raise CorruptionError(path, res.dropped_at, "manifest record checksum mismatch")
        if not res.records:
            raise CorruptionError(path, 0, "manifest has no valid record")
        self.current = Version()
        self.families = {}
        have = {"log": False, "next": False, "seq": False}
        for i, (off, payload) in enumerate(res.records):
            e = VersionEdit.decode(payload, path, off)
            if i == 0 and not e.marker:
                raise CorruptionError(path, off, "not an lsmkv manifest (missing marker)")
            if e.deleted:
                if e.family and e.family not in self.families:
                    raise CorruptionError(path, off, f"manifest record: edit of unknown column family "
                                          f"{e.family}")
                live = self.version_of(e.family).numbers()
                for level, number in e.deleted:
                    if number not in live:
                        raise CorruptionError(path, off, f"edit deletes unknown file {number}")
            self._apply_state(e, path, off)
            if e.log_number is not None and e.family == 0 and e.create_family is None:
                have["log"] = True
            if e.next_file_number is not None:
                self.next_file_number = e.next_file_number
                have["next"] = True
            if e.last_sequence is not None:
                # the largest: a family's edit may carry an older one than the default's
                self.last_sequence = max(self.last_sequence, e.last_sequence) if have["seq"] \
                    else e.last_sequence
                have["seq"] = True
        missing = [k for k, v in have.items() if not v]
        if missing:
            raise CorruptionError(path, None, f"manifest lacks {', '.join(missing)}")
        if any(n >= self.next_file_number for n in self.live_numbers()):
            raise CorruptionError(path, None, "file number beyond next_file_number")
        version = self.current
        self.manifest_number = parsed[1]
        self.recovered_manifest_dropped = res.dropped_bytes
        return version

    def write_snapshot(self, edit=None):
        """Start a new MANIFEST holding the whole current state (plus `edit`, applied
        first), then switch CURRENT to it. Returns the old manifest number."""
        if edit is not None:
            self._apply_state(edit)
            if edit.last_sequence is not None:
                self.last_sequence = edit.last_sequence
        old = self.manifest_number
        number = self.new_file_number()
        snap = VersionEdit()
        snap.log_number = self.log_number
        snap.next_file_number = self.next_file_number
        snap.last_sequence = self.last_sequence
        if self.next_family_id > 1:     # ids of dropped families are never given again
            snap.next_family_id = self.next_family_id
        for level, f in self.current.files():
            snap.add_file(level, f)
        data = frame(snap.encode(marker=True))
        for fam in sorted(self.families.values(), key=lambda f: f.id):
            # one record per family: created (with its log_number) and its files
            fe = VersionEdit()
            fe.create_family = (fam.id, fam.name, fam.options)
            fe.family = fam.id
            fe.log_number = fam.log_number
            for level, f in fam.current.files():
                fe.add_file(level, f)
            data += frame(fe.encode())
        path = filenames.manifest_name(self.dbpath, number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
            killpoint("manifest.snapshot_before_sync")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        killpoint("current.before_rename")
        filenames.set_current(self.dbpath, number)
        killpoint("current.after_rename")
        # the field changes before os.close releases the GIL (a fork() child's copy
        # must not close the number again: see close())
        old_fd, self._manifest_fd = self._manifest_fd, fd
        if old_fd is not None:
            os.close(old_fd)
        self.manifest_number = number
        return old

    def log_and_apply(self, edit):
        """Durably append edit to the MANIFEST, then make it current."""
        self.log(edit)
        self.apply(edit)

    def log(self, edit):
        """Durably append edit to the MANIFEST (the slow half: a directory fsync when
        the edit adds files, and the MANIFEST fsync). Callers serialize log+apply
        pairs, so edits are applied in the order they are logged."""
        if self._manifest_fd is None:    # the DB closed while the edit waited for manifest_lock
            raise ClosedError("the database is closed")
        edit.next_file_number = self.next_file_number
        if edit.last_sequence is None:
            edit.last_sequence = self.last_sequence
        # the new tables' directory entries must be durable before the MANIFEST
        # names them; both fsyncs happen in one GIL release (lsmkv.core.fileio)
        append_sync(self._manifest_fd, frame(edit.encode()),
                    filenames.manifest_name(self.dbpath, self.manifest_number),
                    sync_dir=self.dbpath if edit.added else None)
        killpoint("manifest.after_append")

    def apply(self, edit):
        """Make a logged edit current."""
        self._apply_state(edit)
        self.last_sequence = max(self.last_sequence, edit.last_sequence)

    def close(self):
        # None before os.close releases the GIL: a fork() by another thread meanwhile
        # must not leave the child a copy that closes the number again (reused by then)
        fd, self._manifest_fd = self._manifest_fd, None
        if fd is not None:
            os.close(fd)
