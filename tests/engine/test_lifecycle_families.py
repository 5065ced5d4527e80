"""Process lifecycles (tests/engine/test_lifecycle.py) with what came later: column
families, transactions, and multi_get's fetch helper threads (pthreads that no
fork() child inherits). Each scenario runs in a child interpreter, with real
fork() children inside it where it forks.
"""
import pytest
from test_lifecycle import run_script

# In the fork child: SIGALRM ends an operation that waits on a lock no thread of
# the child will ever release (a lock a parent thread held at the fork).
CHILD_OPS = """
def hung(sig, frame):
    raise TimeoutError("hung")

def forked_errors(ops):
    \"\"\"Run each op in the fork child: what did not raise ForkedError, as text.\"\"\"
    signal.signal(signal.SIGALRM, hung)
    bad = []
    for name, op in ops.items():
        signal.alarm(3)
        try:
            op()
            bad.append(name + ": no error")
        except lsmkv.ForkedError as e:
            if str(os.getppid()) not in str(e):
                bad.append(name + ": unclear message " + str(e))
        except BaseException as e:   # noqa: BLE001 - every failure is reported
            bad.append(name + ": " + repr(e))
        finally:
            signal.alarm(0)
    return bad
"""


@pytest.mark.parametrize("lock", ["manifest_lock", "compaction_lock"])
def test_fork_child_never_waits_for_a_lock_a_parent_thread_held(dbpath, lock):
    """A parent thread in a MANIFEST edit (a flush, a compaction) or a manual
    compaction at the fork: the child's create_column_family and
    no_background_compactions() waited forever on the lock it had held."""
    body = CHILD_OPS + """
import threading
from lsmkv import testing
db = lsmkv.DB(path)
a = db.create_column_family("a")
a.put(b"k", b"v")
held, release = threading.Event(), threading.Event()

def hold(lock):
    with lock:
        held.set()
        release.wait()

t = threading.Thread(target=hold, args=(getattr(testing, LOCK)(db),))
t.start()
held.wait()
pid = os.fork()
if pid == 0:
    bad = forked_errors({
        "create_column_family": lambda: db.create_column_family("c"),
        "drop_column_family": lambda: db.drop_column_family("a"),
        "column_family": lambda: db.column_family("a"),
        "family flush": lambda: a.flush(),
        "family compact_range": lambda: a.compact_range(),
        "flush": lambda: db.flush(),
        "no_background_compactions": lambda: db.no_background_compactions().__enter__(),
        "compact_range": lambda: db.compact_range(),
    })
    print("bad:", bad, flush=True)
    os._exit(0 if not bad else 5)
status = exit_status(pid)
release.set()
t.join()
assert status == 0, status
db.create_column_family("c").put(b"k", b"c")
a.flush()
db.close()
with lsmkv.DB(path) as db:
    assert db.list_column_families() == ["default", "a", "c"]
    assert db.column_family("a").get(b"k") == b"v"
print("ok")
"""
    assert "ok" in run_script(body.replace("LOCK", repr(lock)), dbpath)


def test_a_family_used_while_its_db_closes_says_the_db_is_closed(dbpath):
    """Threads still using a family while the DB closes (interpreter exit closes it
    under daemon threads): they were told the family had been dropped."""
    import threading
    import lsmkv
    from lsmkv import testing
    db = lsmkv.DB(dbpath)
    a = db.create_column_family("a")
    a.put(b"k", b"v")
    release = threading.Event()
    testing.run_in_pool(db, release.wait)       # close() waits for this step
    closer = threading.Thread(target=db.close)
    closer.start()
    try:
        errors = []
        for _ in range(2000):
            try:
                a.get(b"k")
            except lsmkv.ClosedError as e:
                errors.append(str(e))
                break
            closer.join(0.001)
        assert closer.is_alive(), "close() did not wait for the running step"
        for op in (lambda: a.put(b"k", b"w"), lambda: a.multi_get([b"k", b"j"]), lambda: a.items(),
                   lambda: db.transaction().get(b"k", cf=a), lambda: a.flush()):
            with pytest.raises(lsmkv.ClosedError) as e:
                op()
            errors.append(str(e.value))
    finally:
        release.set()
        closer.join()
    assert errors and all(e == "the database is closed" for e in errors), errors


def test_no_handle_can_be_pickled_for_another_process(dbpath):
    """multiprocessing's spawn and forkserver pickle a Process's arguments: each kind
    of handle is a TypeError there. Pickling an items() iterator crashed the
    interpreter (SIGSEGV): Cython's generated pickling read its C fields."""
    body = """
import pickle
db = lsmkv.DB(path)
a = db.create_column_family("a")
a.put(b"k", b"v")
db.put(b"k", b"v")
txn = db.transaction()
handles = {
    "DB": db, "column family": a, "snapshot": db.snapshot(), "transaction": txn,
    "items()": db.items(), "a family's items()": a.items(), "keys() begun": db.keys(),
    "iterator()": db.iterator(), "a family's iterator()": a.iterator(),
    "a transaction's iterator()": txn.iterator(cf=a),
}
next(handles["keys() begun"])
out = {}
for name, h in handles.items():
    print("pickling", name, flush=True)
    try:
        pickle.dumps(h)
        out[name] = "pickled"
    except TypeError as e:
        out[name] = "clear" if "cannot be pickled" in str(e) else "unclear: " + str(e)
print(out)
"""
    out = eval(run_script(body, dbpath).strip().splitlines()[-1])
    assert all(v == "clear" for v in out.values()), out
