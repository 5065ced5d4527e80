"""C declarations shared by the compiled core (lsmkv/core/*.pyx), one place each.

Each .pxd here is a `cdef extern` contract for one system header (plus the small
shims where a platform lacks a call), cimported as lsmkv.core.includes.<name>:

    mman     mmap, munmap, mremap, msync, madvise and their flags (sys/mman.h)
    uio      preadv2 and RWF_NOWAIT, with a shim returning ENOSYS where glibc lacks them
    fcntl    posix_fallocate (fcntl.h)
    pthread  thread-specific keys, threads, mutexes, condition variables (pthread.h)
    unistd   SEEK_END (unistd.h)
    dlfcn    dlopen, dlsym, dlerror (dlfcn.h)

Nothing here is compiled on its own: each declaration becomes part of the module
that cimports it. Thread safety: declarations only, no state.
"""
