"""SCAN's cursor and MATCH patterns.

Cursor format: "0" is the start (and, in a reply, the end). Any other cursor is
"1" followed by three decimal digits per byte of the next key to return
(b"ab" -> "1097098"): stateless, ordered like the keys, and decimal because
clients such as redis-py convert the cursor with int(). (Python limits int() to
4300 digits by default, so redis-py itself cannot carry the cursor of a key
longer than 1,433 bytes; redis-cli and raw clients can.)

MATCH follows Redis's glob rules (stringmatchlen): * any run, ? one byte,
[abc] [^abc] [a-z] classes, backslash escapes the next byte. Its literal prefix
(the bytes before the first special character) bounds the key range scanned.
"""
import re

_DIGITS = [b"%03d" % i for i in range(256)]


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
