# SlabCache's size classes (included by cache.pyx, which has the cimports):
# class_sizes, the slot size of each class and how many pages a page of the class
# spans. Called once, by SlabCache.__cinit__.
#
# Where the memory of a cache of mixed block sizes goes, and what the classes do
# about each part: (1) a block rounded up to its slot: classes step by the growth
# factor; (2) the tail of a page that no further slot fits in: a slot is widened to
# the largest multiple of 16 that fits as many times, so no tail is left; (3) large
# slots few to a page, each class then much larger than the one below (20 KB
# blocks in 64 KiB pages: 3 slots of 21,840 B): such a class takes its pages in
# spans of 2, 4 or 8 contiguous pages, enough for SPAN_SLOTS slots, and its slots
# step finely again. The partly filled page (or span) of each class is the rest;
# defrag.pxi gives pages back after erasures.
#
# Thread safety: a pure function. Invariants: 1. slot sizes strictly increase and
# the last one is the page size; 2. a class's slots fill its span up to less than
# 16 bytes each: per_page * size <= units * page_size < per_page * (size + 16).

cdef uint32_t SPAN_SLOTS = 8       # a class spans pages until a span holds this many slots
cdef uint32_t SPAN_MAX = 8         # ... up to this many pages, and a 32nd of the cache's pages


cdef list class_sizes(size_t capacity, size_t ps, double g):
    """The size classes of a cache of `capacity` bytes in pages of ps bytes, as
    [(slot size, pages a span of the class takes)], smallest first; the last slot
    size is ps. A slot is the largest multiple of 16 that fits n times in a span
    (the span has no tail left over), each class at most g times the one below
    unless one slot fewer per span is already more than that. A class takes its
    pages in spans of 1, 2, 4 or 8 contiguous pages, the fewest that hold
    SPAN_SLOTS slots (up to a 32nd of the capacity): 20 KB blocks in 64 KiB pages
    get 13 slots of 20,160 B in 4 pages, not 3 slots of 21,840 B in one."""
    cdef size_t span_max = min(<size_t>SPAN_MAX, max(<size_t>1, capacity // ps // 32))
    cdef size_t size = MIN_SLOT if MIN_SLOT < ps else ps, units, span, n, m, fitted, last = 0
    cdef list out = []
    while True:
        units = 1
        while units * 2 <= span_max and units * ps // size < SPAN_SLOTS:
            units *= 2
        span = units * ps
        n = span // size                          # slots per span of at least `size`
        fitted = (span // n) // 16 * 16
        if fitted > last:                         # (wraparound is off: no out[-1])
            out.append((<uint32_t>fitted, <uint32_t>units))
            last = fitted
        if fitted >= ps:
            return out
        size = max(fitted + 16, (<size_t>(fitted * g) + 15) // 16 * 16)
        if span // size * (g - 1) < 2:            # few slots a span: one fewer is a large
            m = <size_t>(span / (fitted * g) + 0.5)   # step, take the count nearest g larger
            m = 1 if m < 1 else (m if m < n else n - 1)
            size = max(fitted + 16, (span // m) // 16 * 16)
        if size > ps:
            size = ps
