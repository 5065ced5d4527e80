"""Findings of the review of lsmkv/core/txn.pxi and snaplist.pxi, each with the
test that failed before its fix."""
import textwrap

import pytest

import lsmkv
from conftest import lsmkv_import_path, run_child


def test_an_interpreter_running_without_the_gil_refuses_to_load_the_core():
    # snaplist.pxi's registry (and the engine's other GIL-atomic steps) are
    # correct only under the GIL; a free-threaded interpreter turns it on for a
    # module that does not declare itself compatible, unless forced off
    # (PYTHON_GIL=0): that is simulated here (sys._is_gil_enabled() False).
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {lsmkv_import_path()!r})
        sys._is_gil_enabled = lambda: False
        try:
            import lsmkv
        except ImportError as e:
            assert "GIL" in str(e) and "PYTHON_GIL=0" in str(e), e
            print("refused")
        else:
            print("loaded")
    """)
    assert run_child(code).stdout.strip() == "refused"
    code = code.replace("lambda: False", "lambda: True")
    assert run_child(code).stdout.strip() == "loaded"


def test_a_transaction_iterator_answers_nothing_once_the_db_is_closed(tmp_path):
    # it answered valid(), key(), value() and item() from where it stood, where
    # lsmkv.Iterator (and the transaction's own methods) raise ClosedError
    db = lsmkv.DB(str(tmp_path / "db"))
    db.put(b"a", b"1")
    txn = db.transaction()
    txn.put(b"b", b"2")
    it = txn.iterator()
    it.seek_to_first()
    assert it.item() == (b"a", b"1")
    plain = db.iterator()
    plain.seek_to_first()
    db.close()
    for name in ("valid", "key", "value", "item", "seek_to_first", "seek_to_last", "next", "prev"):
        with pytest.raises(lsmkv.ClosedError, match="closed"):
            getattr(plain, name)()
        with pytest.raises(lsmkv.ClosedError, match="database is closed"):
            getattr(it, name)()
    with pytest.raises(lsmkv.ClosedError):
        next(iter(it))
    txn.rollback()
    with pytest.raises(lsmkv.ClosedError, match="rolled back"):
        it.valid()
    it.close()


@pytest.mark.parametrize("with_txn", [False, True])
def test_an_open_transaction_in_a_reference_cycle_is_collected_with_its_db(tmp_path, with_txn):
    # Transactions were untracked by the cyclic collector (no_gc) on the claim that no
    # cycle goes through one; but one does when the DB's clock (or merge operator)
    # is a bound method of the object that holds the transaction. The collector
    # then took the transaction's references for outside ones, and the DB was never
    # collected: never closed, its directory locked, the snapshot held.
    import gc
    import weakref

    class App:
        def __init__(self, path):
            self.db = lsmkv.DB(path, clock=self.now, merge_operator=self.concat)
            if with_txn:
                self.txn = self.db.transaction()
                self.txn.put(b"k", b"v")
                self.txn.merge(b"m", b"x")

        def now(self):
            return 1000.0

        def concat(self, key, existing, operands):
            return (existing or b"") + b"".join(operands)

    path = str(tmp_path / "db")
    app = App(path)
    gone = weakref.ref(app)
    del app
    gc.collect()
    assert gone() is None
    with lsmkv.DB(path, merge_operator=App.concat.__get__(object())) as db:    # not locked any more
        assert db.get(b"k") is None                    # the open transaction wrote nothing
