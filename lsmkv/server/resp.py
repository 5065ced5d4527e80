"""RESP2 (the Redis protocol, version 2): a request parser that works in place and
reply encoders.

Requests
--------
A request is a multibulk frame, ``*<n>\\r\\n`` followed by n bulk strings
``$<len>\\r\\n<len bytes>\\r\\n``, or an inline command (one line of words
separated by spaces, as typed into telnet). parse() reads the complete frames of
``buf[pos:end]`` and returns each as a list of arguments:

  * from a read of more than SPLIT_MAX bytes, memoryview slices of ``buf``:
    nothing is copied (a large value reaches the engine without a copy), and the
    slices are valid only while the buffer is not reused (the caller owns the
    buffer until every command parsed from it has run);
  * from a read of at most SPLIT_MAX bytes (the common small request), bytes:
    one C-level split copies at most SPLIT_MAX bytes, which costs less than
    creating one memoryview object per argument (measured: docs/server.md).

Invariants:
  1. A bulk length is checked against max_bulk before anything is sized from it:
     a longer one is a protocol error, so no buffer is ever grown for it.
  2. parse() consumes whole frames only: on return, ``pos`` is the start of the
     first incomplete frame (or end), and ``need`` is the total size of that
     frame as far as its headers tell (0 when unknown), so the caller can
     borrow one buffer large enough for it instead of growing step by step.
  3. A malformed frame ends parsing with a ProtocolError message (Redis's words);
     the frames before it are returned and may be executed.

Replies
-------
Encoders return bytes, or for a long bulk string a list of pieces (header,
value, CRLF) so the value is written without being copied into a new string.
"""

MAX_MULTIBULK = (1 << 31) - 1       # Redis: INT_MAX arguments (the query buffer limit bounds them)
MAX_INLINE = 64 * 1024               # Redis: PROTO_INLINE_MAX_SIZE
UNAUTH_MAX_ARGS = 10                 # Redis: an unauthenticated client's multibulk count at most
UNAUTH_MAX_BULK = 16 * 1024          # Redis: an unauthenticated client's bulk length at most
ARG_OVERHEAD = 41                    # bytes a held argument costs beside its data (object, list slot)
GATHER_MIN = 16 * 1024               # bulk values at least this long are sent as separate pieces
SPLIT_MAX = 4096                     # reads up to this size take the split fast path (_parse_small)

CRLF = b"\r\n"
OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NULL = b"$-1\r\n"
NULL_ARRAY = b"*-1\r\n"
EMPTY_ARRAY = b"*0\r\n"
_INTS = [b":%d\r\n" % i for i in range(-2, 1025)]


class ProtocolError(Exception):
    """A malformed request; str(e) is Redis's reply text without the leading '-'."""


class Frame:
    """A multibulk request read in part: its arguments so far (bytes, copied out
    of the read buffer so the buffer can move or be released), how many are still
    to come, and the bytes they hold (for the query-buffer limits). A request with
    a million arguments is parsed as its bytes arrive, never re-read from its start."""
    __slots__ = ("args", "left", "size")

    def __init__(self):
        self.args = None          # None: no request in progress
        self.left = 0
        self.size = 0


def _length(t):
    """A non-negative length from a header's digits, as Redis's string2ll: digits
    only, no sign, no leading zero; -1 if malformed."""
    if not t.isdigit() or len(t) > 19 or (t[0] == 48 and len(t) > 1):
        return -1
    return int(t)


def parse(buf, pos, end, max_bulk, out, copy=False, frame=None, unauth=False):
    """Append the complete requests in buf[pos:end] to out (lists of arguments;
    copy=True: always bytes, never views of buf).

    frame (a Frame): a request left incomplete is kept there (its complete
    arguments copied, pos moved past them) and continued by the next call; without
    one, pos stays at the request's start (invariant 2). unauth: Redis's limits for
    a client that has not authenticated (UNAUTH_MAX_ARGS, UNAUTH_MAX_BULK).

    Returns (pos, need, error): pos as invariant 2, need the size hint of the
    incomplete frame (from pos), error None or a ProtocolError (invariant 3).
    Complexity: O(frames + arguments) of the new bytes; bulk contents are skipped.
    """
    resume = frame is not None and frame.args is not None
    if not resume and not unauth and end - pos <= SPLIT_MAX and max_bulk >= SPLIT_MAX:
        pos = _parse_small(buf, pos, end, out)
        if pos == end:
            return pos, 0, None
    find = buf.find
    mv = memoryview(buf)
    append = out.append
    while pos < end or resume:
        if resume:
            args, left, p = frame.args, frame.left, pos
            held = len(args)                     # arguments already copied and counted
            frame.args = None
            resume = False
        elif buf[pos] != 42:                     # not '*': an inline command
            eol = find(b"\n", pos, end)
            if eol < 0:
                if end - pos > MAX_INLINE:
                    return pos, 0, ProtocolError("ERR Protocol error: too big inline request")
                return pos, 0, None
            line = bytes(mv[pos:eol])
            pos = eol + 1
            words = split_args(line[:-1] if line[-1:] == b"\r" else line)
            if words is None:
                return pos, 0, ProtocolError("ERR Protocol error: unbalanced quotes in request")
            if words:
                append(words)
            continue
        else:
            eol = find(b"\r\n", pos, end)
            if eol < 0:
                if end - pos > MAX_INLINE:
                    return pos, 0, ProtocolError("ERR Protocol error: too big mbulk count string")
                return pos, 0, None
            t = buf[pos + 1:eol]
            left = _length(t)
            if left < 0:
                if t[:1] == b"-" and _length(t[1:]) > 0:
                    pos = eol + 2                # *-1: nothing to run (as Redis)
                    continue
                return pos, 0, ProtocolError("ERR Protocol error: invalid multibulk length")
            if left > MAX_MULTIBULK:
                return pos, 0, ProtocolError("ERR Protocol error: invalid multibulk length")
            if unauth and left > UNAUTH_MAX_ARGS:
                return pos, 0, ProtocolError("ERR Protocol error: unauthenticated multibulk length")
            p = eol + 2
            if left == 0:
                pos = p
                continue
            args = []
            held = 0
            if frame is not None:
                frame.size = 0
        need = 0
        while left:
            if p >= end:
                break
            if buf[p] != 36:                     # '$'
                return pos, 0, ProtocolError(
                    "ERR Protocol error: expected '$', got '%s'" % chr(buf[p]))
            eol = find(b"\r\n", p, end)
            if eol < 0:
                if end - p > 32:
                    return pos, 0, ProtocolError("ERR Protocol error: too big bulk count string")
                break
            ln = _length(buf[p + 1:eol])
            if ln < 0 or ln > max_bulk:
                return pos, 0, ProtocolError("ERR Protocol error: invalid bulk length")
            if unauth and ln > UNAUTH_MAX_BULK:
                return pos, 0, ProtocolError("ERR Protocol error: unauthenticated bulk length")
            s = eol + 2
            e = s + ln
            if e + 2 > end:
                need = e + 2 - p
                break
            # as Redis: the two bytes after the data are skipped, whatever they are
            args.append(bytes(mv[s:e]) if copy else mv[s:e])
            left -= 1
            p = e + 2
        if left:                                 # incomplete
            if frame is None:
                return pos, (need + p - pos) if need else 0, None
            if not copy:                         # only the new ones: O(new arguments)
                args[held:] = [bytes(a) for a in args[held:]]
            frame.size += sum(map(len, args[held:])) + ARG_OVERHEAD * (len(args) - held)
            frame.args = args
            frame.left = left
            return p, need, None
        append(args)
        pos = p
    return pos, 0, None


_SPACE = frozenset(b" \t\n\v\f\r")
_ESC = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def split_args(line):
    """An inline command's words as Redis's sdssplitargs: "double quotes" with
    \\xHH, \\n, \\r, \\t, \\b, \\a escapes, 'single quotes' with \\' only; a
    closing quote must be followed by a space or the end. None: unbalanced quotes.
    (A NUL byte ends the line, as it ends Redis's C string.)"""
    z = line.find(b"\0")
    if z >= 0:
        line = line[:z]
    n = len(line)
    i = 0
    out = []
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return out
        cur = bytearray()
        inq = insq = False
        while True:
            if i >= n:
                if inq or insq:
                    return None
                break
            c = line[i]
            if inq:
                if (c == 92 and i + 3 < n and line[i + 1] == 120 and line[i + 2] in _HEX
                        and line[i + 3] in _HEX):
                    cur.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 92 and i + 1 < n:
                    i += 1
                    cur.append(_ESC.get(line[i], line[i]))
                elif c == 34:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    i += 1
                    break
                else:
                    cur.append(c)
            elif insq:
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    i += 1
                    cur.append(39)
                elif c == 39:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    i += 1
                    break
                else:
                    cur.append(c)
            elif c in _SPACE:
                break
            elif c == 34:
                inq = True
            elif c == 39:
                insq = True
            else:
                cur.append(c)
            i += 1
        out.append(bytes(cur))


def _parse_small(buf, pos, end, out):
    """The fast path for a read of at most SPLIT_MAX bytes: one split at CRLF (a C
    call) turns the requests into bytes tokens, and each frame is accepted only
    if every $len header equals its token's length (arguments of 1 KiB or more
    are left to the general parser). Returns the position of the first frame it
    did not take (incomplete, inline, a value containing CRLF, or malformed: the
    general parser then reads it and reports any error)."""
    toks = bytes(buf[pos:end]).split(b"\r\n")
    last = len(toks) - 1                  # toks[last] is what follows the last CRLF
    i = 0
    append = out.append
    hdr = _HDR.get
    while i < last:
        h = toks[i]
        if h[:1] != b"*":
            break
        try:
            n = int(h[1:])
        except ValueError:
            break
        j = i + 1 + 2 * n
        if n <= 0 or j > last or _MBH.get(n) != h:    # '*01', '*+1': the general parser's error
            break
        if n == 2:                       # GET k, INCR k, ...: unrolled (no list building)
            a, b = toks[i + 2], toks[i + 4]
            if hdr(len(a)) != toks[i + 1] or hdr(len(b)) != toks[i + 3]:
                break
            append([a, b])
        elif n == 3:                     # SET k v, INCRBY k n, ...
            a, b, c = toks[i + 2], toks[i + 4], toks[i + 6]
            if hdr(len(a)) != toks[i + 1] or hdr(len(b)) != toks[i + 3] or hdr(len(c)) != toks[i + 5]:
                break
            append([a, b, c])
        else:
            args = toks[i + 2:j:2]
            if [hdr(len(a)) for a in args] != toks[i + 1:j:2]:
                break
            append(args)
        i = j
    if i == last:                         # everything taken (the usual case)
        return end - len(toks[last])
    # the tokens from i on, with their CRLFs, are the bytes not taken
    return end - sum(map(len, toks[i:])) - 2 * (last - i)


_HDR = {i: b"$%d" % i for i in range(1024)}
_MBH = {i: b"*%d" % i for i in range(1, 256)}


# ---------------------------------------------------------------- replies

def simple(s):
    """A status reply (+s); s must not contain CR or LF."""
    return b"+%s\r\n" % (s.encode() if isinstance(s, str) else s)


def error(msg):
    """An error reply; msg starts with its code (ERR, WRONGPASS, ...). Line breaks
    become spaces, as Redis does, so the reply stays one line."""
    if isinstance(msg, str):
        msg = msg.encode("utf-8", "replace")
    return b"-%s\r\n" % msg.replace(b"\r", b" ").replace(b"\n", b" ")


def integer(n):
    if -2 <= n <= 1024:
        return _INTS[n + 2]
    return b":%d\r\n" % n


def bulk(v):
    """A bulk string reply (None: the null bulk). bytes, or [header, v, CRLF]
    for a value of GATHER_MIN bytes or more (written without a copy). v is bytes
    or any buffer (a ValueView from DB.get_view: a gathered reply holds it, and
    so its cache pin, until the transport has sent it)."""
    if v is None:
        return NULL
    n = len(v)
    if n < GATHER_MIN:
        return b"$%d\r\n%b\r\n" % (n, v)
    return [b"$%d\r\n" % n, v if v.__class__ is bytes else memoryview(v), CRLF]


def array(items):
    """An array reply of bulk strings (None items are null bulks), as one bytes."""
    parts = [b"*%d\r\n" % len(items)]
    for v in items:
        if v is None:
            parts.append(NULL)
        else:
            parts.append(b"$%d\r\n%b\r\n" % (len(v), v))
    return b"".join(parts)


def encode(obj):
    """Any reply from Python values: int, bytes/str (bulk), None (null), list
    (array, nested), or an Exception (error reply with its text). As bytes."""
    if obj is None:
        return NULL
    if isinstance(obj, bool):
        return integer(int(obj))
    if isinstance(obj, int):
        return integer(obj)
    if isinstance(obj, str):
        obj = obj.encode()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return b"$%d\r\n%b\r\n" % (len(obj), obj)
    if isinstance(obj, (list, tuple)):
        return b"*%d\r\n" % len(obj) + b"".join(encode(x) for x in obj)
    if isinstance(obj, Exception):
        return error(str(obj))
    raise TypeError(f"cannot encode {type(obj).__name__} as a RESP reply")


def command(*args):
    """A request frame (for clients and tests): command(b'SET', b'k', b'v')."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = b"%d" % a
        parts.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(parts)
