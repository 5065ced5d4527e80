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
