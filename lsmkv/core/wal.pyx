# cython: language_level=3
"""Write-ahead log writer: appends records into an mmap'd file allocated in steps.

Record framing (shared with the MANIFEST; docs/format.md):
    crc32c(length bytes + payload) u32 LE | length u32 LE | payload

The file is allocated ahead of the writer with posix_fallocate (so a write into
the mapping can never hit ENOSPC and raise SIGBUS) and mapped MAP_SHARED: an
append is a memcpy into the page cache, with no system call, and survives a kill
of the process. sync() msyncs the written range (MS_SYNC) so the records survive
power loss. Zero bytes follow the last record; a reader stops at a zero header.

What a log costs grows with what it holds, not with write_buffer_size: the file
starts at `prealloc` bytes (64 KiB in the engine) and is extended in steps that
double up to max_step (1 MiB), so at most one step is allocated ahead of the
data. The mapping reserves address space for `reserve` bytes (the expected size
of the log; mremap'd larger if the log outgrows it) but only the current step is
populated (MADV_POPULATE_WRITE: the put path takes no page fault either); at each
step the pages already written are dropped from the mapping (MADV_DONTNEED: they
stay in the page cache, dirty until written back), so the process holds about one
step of the log in its RSS. One fallocate and two madvise calls per step: at 1 MiB
steps and 130-byte records, one set per ~8,000 puts.

With use_mmap=False (option wal_mmap=False) the writer is the classic one instead:
each record is written with one write() system call from a private buffer and
sync() is fdatasync(); the file has no preallocated zero tail. Both modes write
the same bytes, and the reader does not care which wrote a log.

Thread safety: one thread at a time (the DB's write mutex).

Invariants:
  1. A record's payload is written before its header, and the length before the
     CRC, so a record torn by a kill is either all-zero (the end of the log) or
     fails its CRC (a torn tail).
  2. pos <= cap <= map_len; the file is cap bytes long and bytes [pos, cap) are
     zero; only [0, cap) of the mapping is ever touched (beyond it: SIGBUS).
  3. synced <= pos; records in [0, synced) are on stable storage.
  4. dropped <= pos (page aligned): mapping pages below dropped were given back
     (MADV_DONTNEED) and are not written again; mapped_bytes = cap - dropped.
"""
import os

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from libc.errno cimport errno
from posix.unistd cimport close, fsync, ftruncate, write, unlink
from posix.fcntl cimport open as c_open, O_RDWR, O_CREAT, O_EXCL, O_CLOEXEC
from lsmkv.core.fileio cimport c_fsync_dir
from libc.stdlib cimport malloc, realloc, free
from lsmkv.core.coding cimport crc32c, store_u32

from lsmkv.core.includes.fcntl cimport posix_fallocate
from lsmkv.core.includes.mman cimport (mmap, mremap, munmap, msync, madvise, PROT_READ, PROT_WRITE,
                                       MAP_SHARED, MS_SYNC, MREMAP_MAYMOVE, MAP_FAILED, MADV_DONTNEED,
                                       MADV_POPULATE_WRITE)

DEF PAGE = 4096
DEF HEADER = 8
HEADER_SIZE = HEADER   # a record's header (crc32c u32, length u32): lsmkv.engine.logformat reads it here

cdef inline size_t _round_page(size_t n) noexcept nogil:
    return (n + PAGE - 1) & ~(<size_t>PAGE - 1)


cdef class LogWriter:
    """Appends framed records to a new log file `path`.

    Example:
        w = LogWriter(path, 7, 1 << 20); w.append(b"payload"); w.sync(); w.close()
    """

    def __cinit__(self):
        self.fd = -1
        self.base = NULL
        self.cap = 0
        self.map_len = 0
        self.pos = 0
        self.synced = 0
        self.dropped = 0

    def __init__(self, path, uint64_t number, size_t prealloc=1 << 16, bint use_mmap=True,
                 sync_dir=None, size_t reserve=0, size_t max_step=1 << 20):
        """Create the log (it must not exist), `prealloc` bytes long (whole pages),
        mapped with address space for `reserve` bytes (at least prealloc), growing
        in steps of at most max_step. With sync_dir, that directory is fsynced too,
        so the new file's entry is durable. All the system calls run in one GIL
        release (see lsmkv.core.fileio for why that matters)."""
        self.path = str(path)
        self.number = number
        self.use_mmap = use_mmap
        prealloc = _round_page(max(prealloc, PAGE))
        reserve = _round_page(max(reserve, prealloc))
        self.max_step = _round_page(max(max_step, PAGE))
        cdef bytes p = os.fsencode(self.path)
        cdef bytes d = os.fsencode(sync_dir) if sync_dir is not None else None
        cdef const char* cp = p
        cdef const char* dp = NULL
        cdef int fd = -1, stage = 0, err = 0, r
        cdef void* m = MAP_FAILED
        if d is not None:
            dp = d
        if not use_mmap:
            self.base = <uint8_t*>malloc(PAGE)
            if self.base == NULL:
                raise MemoryError()
            self.cap = PAGE
        with nogil:
            fd = c_open(cp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd < 0:
                stage = 1
                err = errno
            elif use_mmap:
                r = posix_fallocate(fd, 0, prealloc)
                if r != 0:
                    stage = 2
                    err = r
                else:
                    m = mmap(NULL, reserve, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                    if m == MAP_FAILED:
                        stage = 3
                        err = errno
                    elif fsync(fd) != 0:        # the file's size and extents are durable
                        stage = 4
                        err = errno
                    else:                       # failure is harmless (an older kernel): pages fault in
                        madvise(m, prealloc, MADV_POPULATE_WRITE)
            if stage == 0 and dp != NULL:
                err = c_fsync_dir(dp)
                if err:
                    stage = 5
            if stage >= 2:
                if m != MAP_FAILED:
                    munmap(m, reserve)
                close(fd)
                unlink(cp)
        if stage:
            what = {1: "cannot create", 2: "cannot preallocate", 3: "cannot mmap",
                    4: "cannot fsync", 5: "cannot fsync the directory of"}[stage]
            raise OSError(err, f"{what} log {self.path}: {os.strerror(err)}", self.path)
        self.fd = fd
        if use_mmap:
            self.base = <uint8_t*>m
            self.cap = prealloc
            self.map_len = reserve

    def __dealloc__(self):
        if self.base != NULL:
            if self.use_mmap:
                munmap(self.base, self.map_len)
            else:
                free(self.base)
        if self.fd >= 0:
            close(self.fd)

    @property
    def mapped_bytes(self):
        """Bytes of the file mapped and populated for appends (the current step,
        not the pages already given back); 0 for write() logs and once closed."""
        return self.cap - self.dropped if self.use_mmap and self.base != NULL else 0

    cdef int _grow(self, size_t need) except -1:
        """Extend the file to hold `need` bytes: by one step (the file's size,
        between a page and max_step) or to need if larger. Gives the pages behind
        the writer back first, then populates the new step."""
        cdef size_t step = min(max(self.cap, <size_t>PAGE), self.max_step)
        cdef size_t new_cap = _round_page(max(self.cap + step, need))
        cdef size_t new_len = self.map_len
        cdef size_t keep = self.pos & ~(<size_t>PAGE - 1)
        cdef int r, stage = 0, err = 0
        cdef uint8_t* old = self.base
        cdef void* m = old
        while new_len < new_cap:
            new_len *= 2
        # mremap may move the mapping while the GIL is released: a fork() by another
        # thread meanwhile leaves the child no address to unmap (it may be reused)
        self.base = NULL
        with nogil:
            r = posix_fallocate(self.fd, self.cap, new_cap - self.cap)
            if r != 0:
                stage = 1
                err = r
            elif new_len != self.map_len:
                m = mremap(old, self.map_len, new_len, MREMAP_MAYMOVE)
                if m == MAP_FAILED:
                    m = old             # unchanged on failure
                    stage = 2
                    err = errno
            if stage == 0:
                if keep > self.dropped:
                    madvise(<uint8_t*>m + self.dropped, keep - self.dropped, MADV_DONTNEED)
                madvise(<uint8_t*>m + self.cap, new_cap - self.cap, MADV_POPULATE_WRITE)
        self.base = <uint8_t*>m
        if stage == 1:
            raise OSError(err, f"cannot grow log {self.path}: {os.strerror(err)}")
        if stage == 2:
            raise OSError(err, f"cannot remap log {self.path}: {os.strerror(err)}")
        self.base = <uint8_t*>m
        self.map_len = new_len
        if keep > self.dropped:
            self.dropped = keep
        self.cap = new_cap
        return 0

    cdef uint8_t* begin(self, size_t n) except NULL:
        """Room for a payload of n bytes; returns where to write it. Nothing is
        visible to a reader until commit(n)."""
        if self.base == NULL:
            raise ValueError(f"log {self.path} is closed")
        if n > 0xFFFFFFFFU:
            raise ValueError("log record larger than 4 GiB")
        cdef uint8_t* g
        if not self.use_mmap:
            if HEADER + n > self.cap:
                g = <uint8_t*>realloc(self.base, HEADER + n)
                if g == NULL:
                    raise MemoryError()
                self.base = g
                self.cap = HEADER + n
            return self.base + HEADER
        if self.pos + HEADER + n > self.cap:
            self._grow(self.pos + HEADER + n)
        return self.base + self.pos + HEADER

    cdef int commit(self, size_t n) except -1:
        cdef uint8_t* h = self.base if not self.use_mmap else self.base + self.pos
        cdef ssize_t w
        cdef size_t done = 0
        store_u32(h + 4, <uint32_t>n)
        store_u32(h, crc32c(h + 4, n + 4, 0))
        if not self.use_mmap:
            while done < HEADER + n:
                w = write(self.fd, h + done, HEADER + n - done)
                if w < 0:
                    if done:   # cut the partial record so later ones do not follow it
                        ftruncate(self.fd, self.pos)
                    raise OSError(errno, f"write failed: {self.path}: {os.strerror(errno)}")
                done += w
        self.pos += HEADER + n
        return 0

    cdef int sync_c(self) except -1:
        cdef size_t start = self.synced & ~(<size_t>PAGE - 1)
        cdef int r
        if self.synced == self.pos:
            return 0
        if not self.use_mmap:
            with nogil:
                r = fsync(self.fd)
            if r != 0:
                raise OSError(errno, f"fsync failed: {self.path}: {os.strerror(errno)}")
            self.synced = self.pos
            return 0
        with nogil:
            r = msync(self.base + start, self.pos - start, MS_SYNC)
        if r != 0:
            raise OSError(errno, f"msync failed: {self.path}: {os.strerror(errno)}")
        self.synced = self.pos
        return 0

    def append(self, payload):
        """Append one record (Python API; the DB writes in place via begin/commit)."""
        cdef const uint8_t[::1] v = payload
        cdef size_t n = v.shape[0]
        cdef uint8_t* p = self.begin(n)
        if n:
            memcpy(p, &v[0], n)
        self.commit(n)

    def sync(self):
        self.sync_c()

    @property
    def capacity(self):
        """Bytes of the file allocated for records (its size while open)."""
        return self.cap

    def close(self, bint truncate=True, bint sync=True):
        """Sync, unmap, drop the unused preallocated tail, fsync and close, in one
        GIL release. sync=False (a log whose data is already in an SST) only
        unmaps and closes."""
        if self.base == NULL:
            return
        cdef size_t start = self.synced & ~(<size_t>PAGE - 1)
        cdef int stage = 0, err = 0
        # the object lets go of the mapping and the descriptor before the GIL is
        # released: a fork() by another thread meanwhile must not leave the child a
        # copy that unmaps or closes them again (the number may be reused by then:
        # a fork child's release closed the pipe its parent had just made)
        cdef uint8_t* base = self.base
        cdef int fd = self.fd
        self.base = NULL
        self.fd = -1
        if not sync:
            truncate = False
        with nogil:
            if self.use_mmap:
                if sync and self.synced != self.pos and \
                        msync(base + start, self.pos - start, MS_SYNC) != 0:
                    stage = 1
                munmap(base, self.map_len)
                if stage == 0 and truncate and ftruncate(fd, self.pos) != 0:
                    stage = 2
                if stage == 0 and truncate and fsync(fd) != 0:
                    stage = 3
            else:
                free(base)
                if sync and self.synced != self.pos and fsync(fd) != 0:
                    stage = 3
            err = errno
            close(fd)
        if stage == 0 and sync:
            self.synced = self.pos
        if stage:
            what = {1: "msync", 2: "truncate", 3: "fsync"}[stage]
            raise OSError(err, f"{what} failed closing log {self.path}: {os.strerror(err)}", self.path)

    def abandon(self):
        """Unmap and close without syncing (simulated crash; tests)."""
        cdef uint8_t* base = self.base
        cdef int fd = self.fd
        self.base = NULL            # before os.close releases the GIL (see close())
        self.fd = -1
        if base != NULL:
            if self.use_mmap:
                munmap(base, self.map_len)
            else:
                free(base)
        if fd >= 0:
            os.close(fd)
