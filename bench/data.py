"""db_bench's keys and values: db_bench's RandomGenerator buffer and the value pool
cut from it, and Data, the keys, values and random choices of one run (made from
--seed, outside the timed loops).

Part of bench/db_bench.py (see its docstring for the method).
"""

import array
import random

from .common import perf_counter


def random_generator_buffer(min_size, compression_ratio):
    """db_bench's RandomGenerator buffer: 100-byte compressible pieces, at least
    max(1 MiB, min_size) bytes."""
    rnd = random.Random(301)
    buf = bytearray()
    target = max(1 << 20, min_size)
    raw_len = max(1, int(100 * compression_ratio))
    while len(buf) < target:
        raw = bytes(32 + rnd.randrange(95) for _ in range(raw_len))   # ' ' + Uniform(95)
        piece = (raw * (100 // raw_len + 1))[:100]
        buf += piece
    return bytes(buf)


def make_value_pool(value_size, compression_ratio):
    """db_bench's RandomGenerator: 100-byte compressible pieces in a >= 1 MiB buffer,
    values are consecutive value_size slices (wrapping to the start). Returns the
    list of distinct values in generation order (the stream repeats with this period)."""
    data = random_generator_buffer(value_size, compression_ratio)
    pool, pos = [], 0
    while True:
        if pos + value_size > len(data):
            break
        pool.append(data[pos:pos + value_size])
        pos += value_size
    return pool


class Data:
    """Keys, values and the model of what the DB should hold (for verification)."""

    def __init__(self, args):
        self.args = args
        self.num = args.num
        width = args.key_size
        if len(str(args.num - 1)) > width:
            raise SystemExit(f"db_bench: --key_size {width} is too short for --num {args.num}")
        t = perf_counter()
        self.keys = [b"%0*d" % (width, i) for i in range(args.num)]
        self.pool = make_value_pool(args.value_size, args.compression_ratio)
        self.gen_seconds = perf_counter() - t
        self.model = None          # array('i'): value-pool index per key, -1 absent; None unknown
        self.occurrence = {}
        self.expires_at = None     # time.time() from which keys put with --ttl may have expired

    def reset_model(self, known):
        self.model = array.array("i", [-1]) * self.num if known else None
        self.expires_at = None

    def rng(self, name):
        k = self.occurrence.get(name, 0)
        self.occurrence[name] = k + 1
        return random.Random(f"{self.args.seed}:{name}:{k}")

    def values(self, n):
        p = self.pool
        reps = n // len(p) + 1
        return (p * reps)[:n]

    def random_indices(self, rng, n):
        return rng.choices(range(self.num), k=n)

    def apply_puts(self, idx_seq):
        m = self.model
        if m is None:
            return
        P = len(self.pool)
        for j, ki in enumerate(idx_seq):
            m[ki] = j % P

    def apply_deletes(self, idx_seq):
        m = self.model
        if m is None:
            return
        for ki in idx_seq:
            m[ki] = -1

    def present(self, idx_seq):
        m = self.model
        if m is None:
            return None
        return sum(1 for ki in idx_seq if m[ki] >= 0)

    def live(self):
        m = self.model
        return None if m is None else sum(1 for x in m if x >= 0)
