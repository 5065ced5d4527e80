# cython: language_level=3
"""Merge operators: db.merge(key, operand) stores an operand (a KIND_MERGE entry);
reads, flushes and compactions fold a key's operands with its base value through
the DB's MergeOperator.

Built-ins (by name in lsmkv.DB(path, merge_operator=...)), compiled:
  "uint64add"  8-byte little-endian unsigned integers added, wrapping at 2**64
               (RocksDB's UInt64AddOperator); a base or operand of another length
               raises MergeOperatorError
  "append"     concatenation, oldest first; ("append", delim) or
               AppendOperator(delim) puts delim between the pieces
  "max"        the bytewise largest of the base and the operands
and any callable f(key, existing, operands) -> bytes (existing: bytes or None,
operands: oldest first) that composes as invariant 2 says; see resolve() for
its name and partial merge.

Thread safety: operators hold no mutable state; full_merge and partial_merge may
run in several threads at once (a callable must allow that too).

Invariants:
  1. full_merge(key, existing, ops) is the value a read returns for a key whose
     newest visible entries are the operands ops (oldest first) over the base
     existing (None: no base, a deletion, or an expired TTL put).
  2. What an operator must satisfy (RocksDB's contract too), since flushes and
     compactions fold a key's operands at times the caller does not choose:
     full_merge(k, full_merge(k, e, a), b) == full_merge(k, e, a + b).
  3. Where can_partial: full_merge(k, e, a + [partial_merge(k, b)] + c) ==
     full_merge(k, e, a + b + c), and partial_merge returns bytes (never None).
"""
from libc.stdint cimport uint8_t, uint64_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from lsmkv.core.coding cimport load_u64, store_u64
from lsmkv.errors import MergeOperatorError


cdef class MergeOperator:
    """The base of every merge operator: a name recorded in the DB, full_merge and,
    where can_partial, partial_merge (see the module docstring). The built-ins
    are its subclasses; lsmkv.DB(path, merge_operator=...) takes one of them, or
    an instance of a Python subclass that sets `name` (and `can_partial` if it
    overrides partial_merge) and overrides full_merge.

    >>> import lsmkv, tempfile
    >>> op = lsmkv.AppendOperator(b"+")
    >>> isinstance(op, lsmkv.MergeOperator), op.name, op.can_partial
    (True, 'append:2b', True)
    >>> db = lsmkv.DB(tempfile.mkdtemp(), merge_operator=op)
    >>> db.merge(b"k", b"a"); db.merge(b"k", b"b")
    >>> db.get(b"k")
    b'a+b'
    >>> db.close()
    >>> class Longest(lsmkv.MergeOperator):
    ...     def __init__(self):
    ...         self.name = "longest"
    ...     def full_merge(self, key, existing, operands):
    ...         return max(([existing] if existing is not None else []) + operands, key=len)
    >>> db = lsmkv.DB(tempfile.mkdtemp(), merge_operator=Longest())
    >>> db.put(b"k", b"abc"); db.merge(b"k", b"x"); db.merge(b"k", b"wxyz")
    >>> db.get(b"k")
    b'wxyz'
    >>> db.close()
    """

    cpdef bytes full_merge(self, bytes key, object existing, list operands):
        raise NotImplementedError

    cpdef object partial_merge(self, bytes key, list operands):
        return None

    def __repr__(self):
        return f"<lsmkv merge operator {self.name!r}>"


cdef inline uint64_t _u64(bytes b, bytes key, str what) except? 0xFFFFFFFFFFFFFFFF:
    if PyBytes_GET_SIZE(b) != 8:
        raise MergeOperatorError(f"uint64add: the {what} of key {key!r} is {PyBytes_GET_SIZE(b)} bytes, "
                                 f"not 8 (an unsigned 64-bit little-endian integer)")
    return load_u64(<const uint8_t*>PyBytes_AS_STRING(b))


cdef bytes _u64_bytes(uint64_t v):
    cdef bytes r = PyBytes_FromStringAndSize(NULL, 8)
    store_u64(<uint8_t*>PyBytes_AS_STRING(r), v)
    return r


cdef class UInt64AddOperator(MergeOperator):
    """Adds 8-byte little-endian unsigned integers, wrapping (RocksDB's UInt64AddOperator).

    >>> op = UInt64AddOperator()
    >>> one = (1).to_bytes(8, "little")
    >>> int.from_bytes(op.full_merge(b"k", None, [one, one]), "little")
    2
    >>> int.from_bytes(op.full_merge(b"k", (2**64 - 1).to_bytes(8, "little"), [one]), "little")
    0
    """

    def __cinit__(self):
        self.name = "uint64add"
        self.builtin = True
        self.can_partial = True

    cpdef bytes full_merge(self, bytes key, object existing, list operands):
        cdef uint64_t s = 0
        cdef bytes b
        if existing is not None:
            s = _u64(<bytes>existing, key, "existing value")
        for b in operands:
            s += _u64(b, key, "merge operand")
        return _u64_bytes(s)

    cpdef object partial_merge(self, bytes key, list operands):
        return self.full_merge(key, None, operands)


cdef class AppendOperator(MergeOperator):
    """Concatenates the base and the operands, oldest first, with `delimiter`
    between two pieces (b"": none).

    >>> AppendOperator(b",").full_merge(b"k", b"a", [b"b", b"c"])
    b'a,b,c'
    >>> AppendOperator().full_merge(b"k", None, [b"x", b"y"]), AppendOperator(b",").name
    (b'xy', 'append:2c')
    """
    cdef readonly bytes delimiter

    def __cinit__(self, delimiter=b""):
        if not isinstance(delimiter, (bytes, bytearray, memoryview)):
            raise TypeError(f"the append operator's delimiter must be bytes, not {type(delimiter).__name__}")
        self.delimiter = bytes(delimiter)
        self.name = "append" if not self.delimiter else "append:" + self.delimiter.hex()
        self.builtin = True
        self.can_partial = True

    cpdef bytes full_merge(self, bytes key, object existing, list operands):
        if existing is None:
            return self.delimiter.join(operands)
        return self.delimiter.join([existing] + operands)

    cpdef object partial_merge(self, bytes key, list operands):
        return self.delimiter.join(operands)


cdef class MaxOperator(MergeOperator):
    """The bytewise largest of the base and the operands.

    >>> MaxOperator().full_merge(b"k", b"b", [b"a", b"c", b"bb"])
    b'c'
    """

    def __cinit__(self):
        self.name = "max"
        self.builtin = True
        self.can_partial = True

    cpdef bytes full_merge(self, bytes key, object existing, list operands):
        cdef bytes best = <bytes>existing if existing is not None else None
        cdef bytes b
        for b in operands:
            if best is None or b > best:
                best = b
        return best

    cpdef object partial_merge(self, bytes key, list operands):
        return self.full_merge(key, None, operands)


cdef class CallableOperator(MergeOperator):
    """A Python callable f(key, existing, operands) -> bytes as a merge operator
    (see resolve())."""
    cdef readonly object func
    cdef object partial

    def __cinit__(self, func, str name):
        self.func = func
        self.name = name
        self.builtin = False
        self.partial = getattr(func, "partial_merge", None)
        self.can_partial = self.partial is not None and callable(self.partial)

    cpdef bytes full_merge(self, bytes key, object existing, list operands):
        r = self.func(key, existing, operands)
        if not PyBytes_CheckExact(r):
            if isinstance(r, (bytes, bytearray, memoryview)):
                return bytes(r)
            raise MergeOperatorError(f"merge operator {self.name!r} returned {type(r).__name__} for key "
                                     f"{key!r}, not bytes")
        return r

    cpdef object partial_merge(self, bytes key, list operands):
        if not self.can_partial:
            return None
        r = self.partial(key, operands)
        if r is None or PyBytes_CheckExact(r):
            return r
        if isinstance(r, (bytes, bytearray, memoryview)):
            return bytes(r)
        raise MergeOperatorError(f"merge operator {self.name!r}: partial_merge returned "
                                 f"{type(r).__name__} for key {key!r}, not bytes or None")


_BUILTIN = {"uint64add": UInt64AddOperator, "append": AppendOperator, "max": MaxOperator}


def resolve(spec):
    """The MergeOperator for the merge_operator option: None; a built-in's name
    ("uint64add", "append", "max", or as recorded: "append:<delimiter in hex>");
    ("append", delimiter); a MergeOperator; or a
    callable f(key, existing, operands) -> bytes, named by its `name` attribute,
    else its __name__ (a lambda has none that means anything: give it a `name`).
    A callable with a partial_merge(key, operands) -> bytes | None method is
    partially merged in compactions too.

    >>> resolve("max").name, resolve(("append", b"|")).name, resolve("append:7c").delimiter, resolve(None)
    ('max', 'append:7c', b'|', None)
    >>> def concat(key, existing, operands):
    ...     return (existing or b"") + b"".join(operands)
    >>> resolve(concat).name
    'concat'
    >>> resolve("sum")
    Traceback (most recent call last):
      ...
    ValueError: option merge_operator: unknown built-in 'sum' (built-ins: 'uint64add', 'append', 'max'; or a callable)
    """
    if spec is None:
        return None
    if isinstance(spec, MergeOperator):
        if not isinstance((<MergeOperator>spec).name, str) or not (<MergeOperator>spec).name:
            raise TypeError("option merge_operator: a MergeOperator needs a name (set self.name): "
                            "the name is recorded in the database")
        return spec
    if isinstance(spec, str):
        if spec.startswith("append:"):          # a recorded name: append with a delimiter, in hex
            try:
                return AppendOperator(bytes.fromhex(spec[len("append:"):]))
            except ValueError:
                raise ValueError(f"option merge_operator: {spec!r} is not 'append:' and a delimiter "
                                 f"in hex") from None
        if spec not in _BUILTIN:
            raise ValueError(f"option merge_operator: unknown built-in {spec!r} "
                             f"(built-ins: 'uint64add', 'append', 'max'; or a callable)")
        return _BUILTIN[spec]()
    if isinstance(spec, tuple):
        if len(spec) == 2 and spec[0] == "append":
            return AppendOperator(spec[1])
        raise ValueError(f"option merge_operator: a tuple must be ('append', delimiter), got {spec!r}")
    if callable(spec):
        name = getattr(spec, "name", None)
        if name is None:
            name = getattr(spec, "__name__", None)
        if not isinstance(name, str) or not name or name == "<lambda>":
            raise TypeError("option merge_operator: a callable needs a name (set its `name` attribute): "
                            "the name is recorded in the database, and reopening it needs the same one")
        if name in _BUILTIN or name.startswith("append:"):
            raise ValueError(f"option merge_operator: the callable's name {name!r} is a built-in's")
        return CallableOperator(spec, name)
    raise TypeError(f"option merge_operator must be a built-in's name, ('append', delimiter), a "
                    f"MergeOperator or a callable, not {type(spec).__name__}")
