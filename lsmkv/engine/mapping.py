"""The dict methods of lsmkv.DB beyond get/[]/in/del: pop, setdefault, update,
reversed() (a mixin of DB; the per-operation ones are compiled in CoreDB).

Where a dict's meaning holds, DB keeps it: pop and `del db[k]` raise KeyError
for an absent key, update takes a mapping or an iterable of pairs. What DB is
not: a collections.abc.MutableMapping. That contract needs len(), and an exact
count of an LSM tree is a scan of every key (overwrites and deletions are only
resolved by reading), so len(db) would be O(n) where every caller expects O(1)
(and bool(db) would call it). DB has no len(); estimate_num_keys() is the
O(tables) estimate RocksDB users know, and sum(1 for _ in db) the exact scan.

Thread safety: each method is a read then a write, not atomic against another
writer of the same key (as with a dict shared by threads without a lock).
"""
from collections.abc import Mapping

_MISSING = object()


class MappingMethods:
    """pop, setdefault, update, iteration and reversed() over get/put/delete/keys/write_batch."""

    __slots__ = ()

    def pop(self, key, default=_MISSING):
        """Remove key and return its value; default if it is absent (KeyError
        without a default). One get, then a delete if it was there.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db[b"k"] = b"v"
        >>> db.pop(b"k"), db.pop(b"k", None), b"k" in db
        (b'v', None, False)
        >>> db.close()
        """
        v = self.get(key)
        if v is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self.delete(key)
        return v

    def setdefault(self, key, default):
        """db[key] if present, else store default (bytes: a DB holds no None) and
        return it.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.setdefault(b"k", b"first"), db.setdefault(b"k", b"second")
        (b'first', b'first')
        >>> db.close()
        """
        v = self.get(key)
        if v is None:
            self.put(key, default)
            return default
        return v

    def update(self, other=(), /):
        """Store every (key, value) of other (a mapping, or an iterable of pairs)
        in one atomic batch. Keys are bytes, so keyword arguments are not taken.

        >>> import lsmkv, tempfile
        >>> db = lsmkv.DB(tempfile.mkdtemp())
        >>> db.update({b"a": b"1"}); db.update([(b"b", b"2"), (b"c", b"3")])
        >>> list(db.items())
        [(b'a', b'1'), (b'b', b'2'), (b'c', b'3')]
        >>> db.close()
        """
        wb = self.write_batch()
        pairs = other.items() if isinstance(other, Mapping) else other
        for k, v in pairs:
            wb.put(k, v)
        self.write(wb)

    def __iter__(self):
        return self.keys()

    def __reversed__(self):
        return self.keys(reverse=True)
