"""Encoding, escaping, the dump line format and the progress line of the lsmkv shell.

Keys and values are bytes. The shell reads and writes them in one of three
encodings (Codec): 'text' (UTF-8; output escapes anything unprintable, so a
terminal is never garbled), 'hex' and 'base64' (exact, for any bytes).

Dump format (what `dump` writes and `load` reads), one entry per line:

    # lsmkv-dump 1 encoding=base64
    KEY<TAB>VALUE
    KEY<TAB>VALUE<TAB>TTL

KEY and VALUE are in the header's encoding (base64, or hex); TTL is the number
of seconds the entry had left when it was dumped (a decimal). Lines starting
with '#' and empty lines are ignored. `dump --json` writes JSON Lines instead,
{"key": ..., "value": ..., "ttl": seconds or null} with base64 strings, which
`load` reads too.
"""
import base64
import binascii
import json
import sys
import threading
import time

from lsmkv.errors import LsmkvError

DUMP_MAGIC = "lsmkv-dump"
DUMP_VERSION = 1
DUMP_ENCODINGS = ("base64", "hex")

_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class InputError(ValueError):
    """A command-line argument that is not valid in its encoding (exit code 2)."""


class DumpFormatError(LsmkvError):
    """A line of a dump file that load cannot read (exit code 3)."""


def escape(data: bytes) -> str:
    """Printable text for data: UTF-8 where valid and printable, Python-style
    escapes otherwise (\\xNN for a byte that is not UTF-8 or a control char,
    \\uNNNN for an unprintable character, \\\\ for a backslash)."""
    text = bytes(data).decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape_char(c) for c in text)


def _escape_char(c: str) -> str:
    if c in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[c]
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:            # a byte that is not valid UTF-8
        return f"\\x{n - 0xDC00:02x}"
    if c.isprintable():
        return c
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


class Codec:
    """How keys and values are typed in and shown: 'text', 'hex' or 'base64'."""

    def __init__(self, name="text"):
        if name not in ("text", "hex", "base64"):
            raise ValueError(f"unknown encoding {name!r}")
        self.name = name

    def decode(self, s: str, what="key") -> bytes:
        """The bytes a command-line argument stands for."""
        try:
            if self.name == "text":
                return s.encode("utf-8", "surrogateescape")
            if self.name == "hex":
                return bytes.fromhex(s)
            return base64.b64decode(s.encode("ascii"), validate=True)
        except (ValueError, binascii.Error, UnicodeEncodeError):
            raise InputError(f"{what} {s!r} is not valid {self.name}") from None

    def encode(self, data: bytes) -> str:
        """How data is shown."""
        if self.name == "text":
            return escape(data)
        if self.name == "hex":
            return bytes(data).hex()
        return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------- dump lines

def dump_header(encoding="base64") -> str:
    return f"# {DUMP_MAGIC} {DUMP_VERSION} encoding={encoding}\n"


def dump_line(key, value, ttl, encoding="base64") -> str:
    enc = _raw_encoder(encoding)
    line = f"{enc(key)}\t{enc(value)}"
    if ttl is not None:
        line += f"\t{ttl:.3f}"
    return line + "\n"


def dump_json_line(key, value, ttl) -> str:
    return json.dumps({"key": base64.b64encode(key).decode("ascii"),
                       "value": base64.b64encode(value).decode("ascii"),
                       "ttl": None if ttl is None else round(ttl, 3)}) + "\n"


def _raw_encoder(encoding):
    if encoding == "hex":
        return lambda b: bytes(b).hex()
    return lambda b: base64.b64encode(b).decode("ascii")


def _raw_decoder(encoding):
    if encoding == "hex":
        return bytes.fromhex
    return lambda s: base64.b64decode(s.encode("ascii"), validate=True)


class DumpReader:
    """Parses dump lines (either format) into (key, value, ttl or None)."""

    def __init__(self, path="<dump>"):
        self.path = path
        self.encoding = "base64"

    def parse(self, lineno, line):
        """(key, value, ttl) for a data line, None for a header, comment or blank line."""
        line = line.strip("\r\n")
        if not line.strip():
            return None
        if line.startswith("#"):
            self._header(line)
            return None
        try:
            if line.startswith("{"):
                return self._json(line)
            return self._text(line)
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise DumpFormatError(f"{self.path}, line {lineno}: not a dump line ({e})") from None

    def _header(self, line):
        words = line[1:].split()
        if words[:1] != [DUMP_MAGIC]:
            return
        if len(words) < 2 or words[1] != str(DUMP_VERSION):
            raise DumpFormatError(f"{self.path}: unsupported dump version {' '.join(words[1:2])!r}")
        for w in words[2:]:
            if w.startswith("encoding="):
                enc = w.split("=", 1)[1]
                if enc not in DUMP_ENCODINGS:
                    raise DumpFormatError(f"{self.path}: unknown dump encoding {enc!r}")
                self.encoding = enc

    def _text(self, line):
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise ValueError(f"expected 2 or 3 tab-separated fields, got {len(fields)}")
        dec = _raw_decoder(self.encoding)
        ttl = _ttl(fields[2]) if len(fields) == 3 else None
        return dec(fields[0]), dec(fields[1]), ttl

    def _json(self, line):
        obj = json.loads(line)
        ttl = obj.get("ttl")
        return (base64.b64decode(obj["key"], validate=True),
                base64.b64decode(obj["value"], validate=True),
                None if ttl is None else _ttl(ttl))


def _ttl(v):
    t = float(v)
    if not t > 0:
        raise ValueError(f"ttl must be > 0, got {v!r}")
    return t


# ---------------------------------------------------------------- progress

class Progress:
    """A one-line progress indicator on stderr, drawn only when stderr is a TTY
    (redrawn at most 10 times a second, erased by done()). With spin=True a
    thread redraws it with the elapsed time, for work that reports no steps."""

    def __init__(self, label, total=None, unit="", stream=None, spin=False):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream)
        self.label, self.total, self.unit = label, total, unit
        self.count = 0
        self._t0 = time.monotonic()
        self._last = 0.0
        self._stop = threading.Event()
        self._thread = None
        if self.enabled and spin:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()

    def update(self, count):
        self.count = count
        if self.enabled and time.monotonic() - self._last >= 0.1:
            self._draw()

    def _spin(self):
        while not self._stop.wait(0.2):
            self._draw()

    def _draw(self):
        self._last = time.monotonic()
        elapsed = self._last - self._t0
        if self.total:
            what = f"{self.count}/{self.total}{self.unit} ({100 * self.count // self.total}%)"
        elif self.count:
            what = f"{self.count}{self.unit}"
        else:
            what = ""
        try:
            self.stream.write(f"\r{self.label}: {what} {elapsed:.1f}s\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False

    def done(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.enabled:
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.done()


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
