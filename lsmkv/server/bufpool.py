"""A bounded pool of reusable byte buffers in size classes (the server's read buffers).

A connection borrows a buffer when its socket has data, parses the requests in
place, and gives the buffer back as soon as nothing in it is still needed, so an
idle connection holds no buffer and a busy server cycles the same few.

Size classes are powers of two from min_size to max_pooled; acquire(n) returns
a bytearray of the smallest class >= n (or exactly n bytes, unpooled, above
max_pooled). Buffers are never resized, so memoryviews of them stay valid.

Ownership (the rule that makes reuse safe): a buffer has one owner at a time,
from acquire() to release(). The owner must hold no memoryview of it past
release(): the next owner overwrites it. The server keeps a buffer borrowed
while any command parsed from it is still running (docs/server.md).

Invariants:
  1. held_bytes (buffers idle in the pool) <= capacity: a release that would
     exceed it drops the buffer to the allocator instead.
  2. out_bytes counts the bytes of buffers borrowed and not yet released.
  3. Every pooled buffer has exactly a class size; a buffer of another size is
     never put in a free list.

Thread safety: none; the server uses one pool from its event loop thread only.
"""


class BufferPool:
    """Free lists of bytearrays per size class, with at most `capacity` bytes idle.

    >>> p = BufferPool(min_size=1024, max_pooled=65536, capacity=1 << 20)
    >>> b = p.acquire(3000); len(b)
    4096
    >>> p.release(b); p.acquire(4000) is b
    True
    """

    __slots__ = ("min_size", "max_pooled", "capacity", "free", "held_bytes", "out_bytes",
                 "out_count", "hits", "misses", "dropped", "peak_out_bytes")

    def __init__(self, min_size=512, max_pooled=1 << 20, capacity=8 << 20):
        for name, v in (("min_size", min_size), ("max_pooled", max_pooled), ("capacity", capacity)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"BufferPool {name} must be an int >= 0, got {v!r}")
        if min_size < 16 or min_size & (min_size - 1):
            raise ValueError(f"BufferPool min_size must be a power of two >= 16, got {min_size}")
        if max_pooled < min_size or max_pooled & (max_pooled - 1):
            raise ValueError(f"BufferPool max_pooled must be a power of two >= min_size, got {max_pooled}")
        self.min_size = min_size
        self.max_pooled = max_pooled
        self.capacity = capacity
        self.free = {}                     # class size -> list of idle bytearrays
        size = min_size
        while size <= max_pooled:
            self.free[size] = []
            size <<= 1
        self.held_bytes = self.out_bytes = self.out_count = 0
        self.hits = self.misses = self.dropped = self.peak_out_bytes = 0

    def class_size(self, n):
        """The size acquire(n) returns: the smallest class >= n, or n above max_pooled."""
        if n <= self.min_size:
            return self.min_size
        if n > self.max_pooled:
            return n
        return 1 << (n - 1).bit_length()

    def acquire(self, n):
        """A bytearray of class_size(n) bytes (contents undefined), now owned by the caller."""
        size = self.class_size(n)
        lst = self.free.get(size)
        if lst:
            buf = lst.pop()
            self.held_bytes -= size
            self.hits += 1
        else:
            buf = bytearray(size)
            self.misses += 1
        self.out_bytes += size
        self.out_count += 1
        if self.out_bytes > self.peak_out_bytes:
            self.peak_out_bytes = self.out_bytes
        return buf

    def release(self, buf):
        """Give back a buffer from acquire(); the caller must keep no view of it."""
        size = len(buf)
        self.out_bytes -= size
        self.out_count -= 1
        lst = self.free.get(size)
        if lst is None or self.held_bytes + size > self.capacity:
            self.dropped += 1
            return
        lst.append(buf)
        self.held_bytes += size

    def trim(self):
        """Drop every idle buffer (returns the bytes dropped)."""
        n = self.held_bytes
        for lst in self.free.values():
            lst.clear()
        self.held_bytes = 0
        return n

    def stats(self):
        return {"held_bytes": self.held_bytes, "capacity": self.capacity,
                "out_bytes": self.out_bytes, "out_buffers": self.out_count,
                "peak_out_bytes": self.peak_out_bytes, "hits": self.hits,
                "misses": self.misses, "dropped": self.dropped,
                "idle_buffers": {size: len(lst) for size, lst in self.free.items() if lst}}
