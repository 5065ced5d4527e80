"""NUMA topology and CPU affinity for background threads (Linux).

The topology comes from /sys/devices/system/node/node*/cpulist. Options
background_cpus (a set of CPU ids) and numa_node (a node id, meaning its CPUs)
choose where the flush, compaction and janitor threads and the compaction
worker processes run; os.sched_setaffinity(0, cpus) binds the calling thread
only. Memory follows the threads by the kernel's first-touch placement: arena
chunks are first written by the writer thread, slab pages by the thread that
fills them, compaction buffers by the worker process.

On a machine with one node (most laptops and small VMs) the options still bind
CPUs, but there is no remote memory to avoid: docs/tuning.md says what such a
machine can and cannot show.
"""
import os

NODE_ROOT = "/sys/devices/system/node"


def parse_cpulist(text):
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11] (the kernel's cpulist format)."""
    cpus = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def topology(root=NODE_ROOT):
    """{node id: [cpu ids]}; one node holding every usable CPU when the kernel
    exposes no NUMA information."""
    nodes = {}
    try:
        names = os.listdir(root)
    except OSError:
        names = []
    for name in names:
        if name.startswith("node") and name[4:].isdigit():
            try:
                with open(os.path.join(root, name, "cpulist")) as f:
                    nodes[int(name[4:])] = parse_cpulist(f.read())
            except OSError:
                continue
    if not nodes:
        nodes[0] = sorted(os.sched_getaffinity(0))
    return dict(sorted(nodes.items()))


def resolve_cpus(background_cpus, numa_node, root=NODE_ROOT):
    """The CPU set background work is bound to, or None (no binding). Raises
    ValueError naming the option when a CPU or node does not exist or is not
    usable by this process."""
    usable = os.sched_getaffinity(0)
    cpus = None
    if numa_node is not None:
        nodes = topology(root)
        if numa_node not in nodes:
            raise ValueError(f"option numa_node: no node {numa_node} (nodes: {sorted(nodes)})")
        cpus = set(nodes[numa_node]) & usable
        if not cpus:
            raise ValueError(f"option numa_node: none of node {numa_node}'s CPUs is usable by this process")
    if background_cpus is not None:
        want = set(background_cpus)
        bad = sorted(want - usable)
        if bad:
            raise ValueError(f"option background_cpus: CPUs {bad} are not usable by this process "
                             f"(usable: {sorted(usable)})")
        cpus = want if cpus is None else cpus & want
        if not cpus:
            raise ValueError("options background_cpus and numa_node have no CPU in common")
    return frozenset(cpus) if cpus is not None else None


def bind_current_thread(cpus):
    """Bind the calling thread to cpus (None: leave it). True if applied."""
    if cpus is None:
        return False
    try:
        os.sched_setaffinity(0, cpus)
        return True
    except OSError:
        return False


def thread_affinity(native_id):
    """The CPU set of a thread (by native id) or process, read back from the kernel."""
    try:
        return sorted(os.sched_getaffinity(native_id))
    except OSError:
        return None
