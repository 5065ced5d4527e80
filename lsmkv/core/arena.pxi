# arena.pxi: the memtable's allocator (Arena: bump allocation over mapped chunks,
# all freed at once with the memtable; invariants 1 and 3 of memtable.pyx).
# A part of lsmkv/core/memtable.pyx (included there; not compiled on its own): its
# names are the memtable module's, its thread safety that module's docstring's.

cdef inline size_t _align(size_t n) noexcept nogil:
    return (n + ALIGN - 1) & ~(<size_t>ALIGN - 1)


cdef class Arena:
    """Bump-pointer allocator over large chunks, freed all at once.

    Chunks are anonymous mappings, not malloc: a flushed memtable's chunks go back
    to the OS when it is freed. With malloc, glibc's dynamic mmap threshold rises
    to the chunk size after the first free, later chunks come from the heap, and
    a freed memtable stayed in the process (measured: RSS grew 131 MB for 85 MB
    accounted after a 40 MB fill and reads; docs/tuning.md, fragmentation row).
    Pages are first touched by the writer thread that fills them.

    Huge pages: once an arena has mapped HUGE_AFTER bytes, its next chunks are
    HUGE_CHUNK long, aligned to it and madvise(MADV_HUGEPAGE)'d, so the kernel backs
    each with one 2 MiB page (when transparent huge pages are `madvise` or
    `always`; with `never` they are ordinary chunks). An insert into a large
    skiplist is a chain of random reads over the whole arena: on 4 KiB pages, past
    the TLB's reach (a few MiB) each hop is also a page walk. Measured: 1M random
    16-byte keys with 100-byte values into 64 MiB memtables, 2.1-2.25 s on 1 MiB
    chunks, 1.6-1.9 s on huge ones; bench/families.py puts/s, one family 387k ->
    440-497k, 8 families 309k -> 392k. A small memtable (a quiet column family, a
    DB that holds a few keys) never reaches HUGE_AFTER and keeps 4 KiB pages: a
    huge chunk is resident as a whole from its first byte, so it costs up to
    HUGE_CHUNK more than it holds, and that is worth it only past HUGE_AFTER.

    Complexity: allocate() is O(1). Allocations larger than a quarter chunk get a
    chunk of their own so the current chunk's tail is not wasted."""

    def __cinit__(self, size_t chunk_size=1 << 20):
        if chunk_size < 4096:
            raise ValueError("arena chunk_size must be >= 4096")
        self.chunk_size = chunk_size
        self.chunks = NULL
        self.sizes = NULL
        self.nchunks = self.cap_chunks = 0
        self.ptr = NULL
        self.remaining = 0
        self.allocated = 0
        self.used = 0

    def __dealloc__(self):
        cdef size_t i
        for i in range(self.nchunks):
            munmap(self.chunks[i], self.sizes[i])
        free(self.chunks)
        free(self.sizes)

    cdef char* _new_chunk(self, size_t n, bint huge=False) except NULL:
        """Map a chunk of n bytes (rounded up to pages), or with huge, a HUGE_CHUNK
        aligned to its size and advised as a huge page (n is then HUGE_CHUNK)."""
        cdef void* c
        cdef size_t head
        cdef char** grown
        cdef size_t* gs
        if self.nchunks == self.cap_chunks:
            grown = <char**>realloc(self.chunks, (self.cap_chunks * 2 + 8) * sizeof(char*))
            if grown == NULL:
                raise MemoryError()
            self.chunks = grown
            gs = <size_t*>realloc(self.sizes, (self.cap_chunks * 2 + 8) * sizeof(size_t))
            if gs == NULL:
                raise MemoryError()
            self.sizes = gs
            self.allocated += (self.cap_chunks + 8) * (sizeof(char*) + sizeof(size_t))
            self.cap_chunks = self.cap_chunks * 2 + 8
        n = (n + 4095) & ~(<size_t>4095)
        if huge:
            # Map twice the size, keep the aligned middle, give back the rest.
            c = mmap(NULL, 2 * HUGE_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if c == MAP_FAILED:
                raise MemoryError(f"arena: cannot map {2 * HUGE_CHUNK} bytes")
            head = (HUGE_CHUNK - (<size_t>c & (HUGE_CHUNK - 1))) & (HUGE_CHUNK - 1)
            if head:
                munmap(c, head)
            munmap(<char*>c + head + HUGE_CHUNK, HUGE_CHUNK - head)
            c = <char*>c + head
            n = HUGE_CHUNK
            madvise(c, n, MADV_HUGEPAGE)    # EINVAL without THP: the chunk is an ordinary one
        else:
            c = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if c == MAP_FAILED:
                raise MemoryError(f"arena: cannot map {n} bytes")
        self.chunks[self.nchunks] = <char*>c
        self.sizes[self.nchunks] = n
        self.nchunks += 1
        self.allocated += n
        return <char*>c

    cdef char* allocate(self, size_t n) except NULL:
        cdef char* r
        n = _align(n)
        if n > self.remaining:
            if n > self.chunk_size // 4:
                self.used += n
                return self._new_chunk(n)
            self.cur_huge = self.allocated >= HUGE_AFTER and self.chunk_size <= HUGE_CHUNK
            self.ptr = self._new_chunk(self.chunk_size, self.cur_huge)
            self.remaining = HUGE_CHUNK if self.cur_huge else self.chunk_size
        r = self.ptr
        self.ptr += n
        self.remaining -= n
        self.used += n
        return r

    def alloc(self, size_t n):
        """Allocate n bytes (tests only); returns the address as an int."""
        return <size_t>self.allocate(n)
