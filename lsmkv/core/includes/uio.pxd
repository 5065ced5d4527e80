# sys/uio.h: preadv2 with RWF_NOWAIT (a read that copies only what the page cache
# holds). Where glibc lacks preadv2 (< 2.26, or not Linux) the shim fails with ENOSYS
# and RWF_NOWAIT is 0, so callers take their plain pread path.
from posix.uio cimport iovec

cdef extern from *:
    """
    #include <sys/uio.h>
    #if defined(__linux__) && defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 26)
    #  ifndef RWF_NOWAIT
    #    define RWF_NOWAIT 0x00000008
    #  endif
    #  define lsmkv_preadv2 preadv2
    #else   /* no preadv2: every read takes the plain pread path */
    #  include <errno.h>
    #  define RWF_NOWAIT 0
    static ssize_t lsmkv_preadv2(int fd, const struct iovec* iov, int n, off_t off, int flags) {
        (void)fd; (void)iov; (void)n; (void)off; (void)flags; errno = ENOSYS; return -1;
    }
    #endif
    """
    ssize_t preadv2 "lsmkv_preadv2" (int fd, const iovec* iov, int iovcnt, long offset, int flags) nogil
    int RWF_NOWAIT
