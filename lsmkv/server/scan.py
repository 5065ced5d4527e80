"""SCAN's cursor and MATCH patterns.

Cursor format: "0" is the start (and, in a reply, the end). Every cursor fits in
an unsigned 64-bit integer, as Redis's: clients parse it so (redis-cli --scan
with strtoull, go-redis as a uint64, redis-py with int()). A scan resuming at a
key of at most 6 bytes gets a stateless cursor: "1" followed by three decimal
digits per byte (b"ab" -> "1097098"; at most 19 digits). A longer key cannot be
carried in 64 bits, so the server holds it (Cursors): the cursor is 10^19 + an
id (20 digits, never a stateless cursor's length), good while the server keeps
it (the newest MAX_HELD of them, MAX_HELD_BYTES of keys; not across a restart),
"ERR invalid cursor" after. (The stateless cursor of a long key, once used for
every key, passed 2^64 and broke redis-cli --scan.)

MATCH follows Redis's glob rules (stringmatchlen): * any run, ? one byte,
[abc] [^abc] [a-z] classes, backslash escapes the next byte. Its literal prefix
(the bytes before the first special character) bounds the key range scanned.
"""
import random
import re
import threading
from collections import OrderedDict

_DIGITS = [b"%03d" % i for i in range(256)]
STATELESS_MAX = 6                  # longest key a stateless cursor carries (19 digits < 2^64)
HELD_BASE = 10 ** 19               # held cursors are HELD_BASE + id: 20 digits, below 2^64
HELD_IDS = 2 ** 64 - HELD_BASE     # ids in [0, HELD_IDS)
MAX_HELD = 65536                   # held cursors a server keeps, newest first
MAX_HELD_BYTES = 16 << 20          # and the bytes of their keys


def encode_cursor(key):
    """The cursor that resumes a scan at key (bytes)."""
    return b"1" + b"".join([_DIGITS[c] for c in key])


def decode_cursor(c):
    """The key a cursor resumes at: None for "0", False if it is not a cursor."""
    b = bytes(c)
    if b == b"0":
        return None
    n = len(b)
    if n < 1 or n % 3 != 1 or b[:1] != b"1" or not b.isdigit():
        return False
    out = bytearray(n // 3)
    for i in range(n // 3):
        v = int(b[1 + 3 * i: 4 + 3 * i])
        if v > 255:
            return False
        out[i] = v
    return bytes(out)


class Cursors:
    """The keys of a server's held cursors (module docstring), newest last.

    Thread safety: one lock (a SCAN with a large COUNT runs on a reader thread).
    Ids start at a random point and count up, so a cursor from before a restart
    is unknown (ERR invalid cursor), not another scan's key."""

    def __init__(self, max_held=MAX_HELD, max_bytes=MAX_HELD_BYTES):
        self.max_held, self.max_bytes = max_held, max_bytes
        self.held = OrderedDict()          # id -> key
        self.bytes = 0
        self.next_id = random.randrange(HELD_IDS)
        self.lock = threading.Lock()

    def encode(self, key):
        """The cursor that resumes a scan at key (bytes)."""
        if len(key) <= STATELESS_MAX:
            return encode_cursor(key)
        with self.lock:
            cid = self.next_id
            self.next_id = (cid + 1) % HELD_IDS
            self.held[cid] = key
            self.bytes += len(key)
            while len(self.held) > self.max_held or (self.bytes > self.max_bytes and len(self.held) > 1):
                _, old = self.held.popitem(last=False)
                self.bytes -= len(old)
        return b"%d" % (HELD_BASE + cid)

    def decode(self, c):
        """The key a cursor resumes at: None for "0", False if it is not a cursor
        (or a held one this server no longer has)."""
        b = bytes(c)
        if len(b) != 20:
            return decode_cursor(b)
        if not b.isdigit() or not HELD_BASE <= int(b) < HELD_BASE + HELD_IDS:
            return False
        with self.lock:
            key = self.held.get(int(b) - HELD_BASE)
            if key is None:
                return False
            self.held.move_to_end(int(b) - HELD_BASE)
            return key


_SPECIAL = b"*?[\\"


def compile_match(pattern):
    """(compiled regex for fullmatch, literal prefix) of a Redis glob pattern."""
    out = []
    prefix = bytearray()
    literal = True
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i:i + 1]
        if c == b"*":
            literal = False
            out.append(b".*")
        elif c == b"?":
            literal = False
            out.append(b".")
        elif c == b"\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i:i + 1]))
            if literal:
                prefix += pattern[i:i + 1]
        elif c == b"[":
            literal = False
            j = i + 1
            neg = False
            if j < n and pattern[j:j + 1] == b"^":
                neg = True
                j += 1
            items = []
            while j < n and pattern[j:j + 1] != b"]":
                if pattern[j:j + 1] == b"\\" and j + 1 < n:
                    j += 1
                    items.append(re.escape(pattern[j:j + 1]))
                elif j + 2 < n and pattern[j + 1:j + 2] == b"-" and pattern[j + 2:j + 3] != b"]":
                    lo, hi = pattern[j], pattern[j + 2]
                    if lo > hi:
                        lo, hi = hi, lo
                    items.append(b"\\x%02x-\\x%02x" % (lo, hi))
                    j += 2
                else:
                    items.append(re.escape(pattern[j:j + 1]))
                j += 1
            # Redis treats an unterminated class as running to the end of the pattern
            body = b"".join(items)
            if not body:
                out.append(b"(?!)" if not neg else b".")
            else:
                out.append(b"[" + (b"^" if neg else b"") + body + b"]")
            i = j
        else:
            out.append(re.escape(c))
            if literal:
                prefix += c
        i += 1
    return re.compile(b"".join(out), re.DOTALL), bytes(prefix)


def prefix_stop(prefix):
    """The smallest key greater than every key starting with prefix (None: no bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)
