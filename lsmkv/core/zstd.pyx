# cython: language_level=3
"""Direct calls into libzstd, without the GIL and without a Python object per block.

Why: python-zstandard releases and re-takes the GIL around every compress()
call and returns a new bytes object each time. A background flush compressing a
4 MiB memtable's ~800 blocks one call at a time hands the GIL back and forth
with a busy writer ~800 times, and each hand-over delays the writer's current
put (measured: 50 us-1 ms; docs/tuning.md, row 1). Calling libzstd
directly lets a whole memtable flush run inside one `with nogil:` block.

How: python-zstandard links its own libzstd statically and exports none of its
symbols, so this module dlopen()s the system's shared libzstd (Debian's
libzstd1; the soname is libzstd.so.1) once at import and resolves the stable
API functions it needs (zstd >= 1.4.0). The environment variable LSMKV_LIBZSTD
names another library file, or "none" to not load one. When no library loads,
zstd_loaded() is False and callers fall back to python-zstandard; both write
the same zstd frame format, so tables stay readable either way.

Invariants:
  1. Every function here is nogil and never touches a Python object.
  2. A ZComp or a decompression context is used by one thread at a time
     (libzstd contexts are not thread-safe); a ZComp owns its CDict; a DDict is
     read-only and shared by the threads reading one table.
  3. Frames are written with their content size and without a dictionary id
     or checksum (the block trailer carries a CRC32C): the same frames
     python-zstandard writes with write_dict_id=False.
"""
from libc.stdlib cimport getenv

from lsmkv.core.includes.dlfcn cimport dlopen, dlsym, dlerror, RTLD_NOW, RTLD_LOCAL

# ZSTD_cParameter values of the stable API (zstd.h)
DEF ZSTD_c_compressionLevel = 100
DEF ZSTD_c_contentSizeFlag = 200
DEF ZSTD_c_checksumFlag = 201
DEF ZSTD_c_dictIDFlag = 202
DEF ZSTD_MIN_VERSION = 10400          # ZSTD_compress2 and CCtx parameters are stable from 1.4.0

ctypedef unsigned (*f_version)() noexcept nogil
ctypedef void* (*f_new)() noexcept nogil
ctypedef size_t (*f_free)(void*) noexcept nogil
ctypedef size_t (*f_set_param)(void*, int, int) noexcept nogil
ctypedef void* (*f_create_cdict)(const void*, size_t, int) noexcept nogil
ctypedef void* (*f_create_ddict)(const void*, size_t) noexcept nogil
ctypedef size_t (*f_ref)(void*, const void*) noexcept nogil
ctypedef size_t (*f_compress2)(void*, void*, size_t, const void*, size_t) noexcept nogil
ctypedef size_t (*f_bound)(size_t) noexcept nogil
ctypedef unsigned long long (*f_content_size)(const void*, size_t) noexcept nogil
ctypedef size_t (*f_decompress_dctx)(void*, void*, size_t, const void*, size_t) noexcept nogil
ctypedef size_t (*f_decompress_ddict)(void*, void*, size_t, const void*, size_t, const void*) noexcept nogil
ctypedef unsigned (*f_is_error)(size_t) noexcept nogil
ctypedef const char* (*f_error_name)(size_t) noexcept nogil

cdef struct Api:
    f_version versionNumber
    f_new createCCtx
    f_free freeCCtx
    f_set_param CCtx_setParameter
    f_create_cdict createCDict
    f_free freeCDict
    f_ref CCtx_refCDict
    f_compress2 compress2
    f_bound compressBound
    f_new createDCtx
    f_free freeDCtx
    f_create_ddict createDDict
    f_free freeDDict
    f_content_size getFrameContentSize
    f_decompress_dctx decompressDCtx
    f_decompress_ddict decompress_usingDDict
    f_is_error isError
    f_error_name getErrorName

cdef Api api
cdef bint loaded = False
_info = {"loaded": False, "library": None, "version": None, "reason": "not tried"}


cdef void* _sym(void* h, const char* name, list missing):
    cdef void* p = dlsym(h, name)
    if p == NULL:
        missing.append(name.decode())
    return p


cdef _load():
    global loaded
    cdef void* h = NULL
    cdef const char* env = getenv("LSMKV_LIBZSTD")
    names = [env.decode()] if env != NULL else ["libzstd.so.1", "libzstd.so"]
    if names == ["none"]:
        _info["reason"] = "disabled by LSMKV_LIBZSTD=none"
        return
    errors = []
    for name in names:
        h = dlopen(name.encode(), RTLD_NOW | RTLD_LOCAL)
        if h != NULL:
            _info["library"] = name
            break
        errors.append((dlerror() or b"?").decode(errors="replace"))
    if h == NULL:
        _info["reason"] = "; ".join(errors)
        return
    missing = []
    api.versionNumber = <f_version>_sym(h, b"ZSTD_versionNumber", missing)
    api.createCCtx = <f_new>_sym(h, b"ZSTD_createCCtx", missing)
    api.freeCCtx = <f_free>_sym(h, b"ZSTD_freeCCtx", missing)
    api.CCtx_setParameter = <f_set_param>_sym(h, b"ZSTD_CCtx_setParameter", missing)
    api.createCDict = <f_create_cdict>_sym(h, b"ZSTD_createCDict", missing)
    api.freeCDict = <f_free>_sym(h, b"ZSTD_freeCDict", missing)
    api.CCtx_refCDict = <f_ref>_sym(h, b"ZSTD_CCtx_refCDict", missing)
    api.compress2 = <f_compress2>_sym(h, b"ZSTD_compress2", missing)
    api.compressBound = <f_bound>_sym(h, b"ZSTD_compressBound", missing)
    api.createDCtx = <f_new>_sym(h, b"ZSTD_createDCtx", missing)
    api.freeDCtx = <f_free>_sym(h, b"ZSTD_freeDCtx", missing)
    api.createDDict = <f_create_ddict>_sym(h, b"ZSTD_createDDict", missing)
    api.freeDDict = <f_free>_sym(h, b"ZSTD_freeDDict", missing)
    api.getFrameContentSize = <f_content_size>_sym(h, b"ZSTD_getFrameContentSize", missing)
    api.decompressDCtx = <f_decompress_dctx>_sym(h, b"ZSTD_decompressDCtx", missing)
    api.decompress_usingDDict = <f_decompress_ddict>_sym(h, b"ZSTD_decompress_usingDDict", missing)
    api.isError = <f_is_error>_sym(h, b"ZSTD_isError", missing)
    api.getErrorName = <f_error_name>_sym(h, b"ZSTD_getErrorName", missing)
    if missing:
        _info["reason"] = f"{_info['library']} lacks {', '.join(missing)}"
        return
    cdef unsigned v = api.versionNumber()
    _info["version"] = f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    if v < ZSTD_MIN_VERSION:
        _info["reason"] = f"{_info['library']} is zstd {_info['version']}; 1.4.0 or newer is needed"
        return
    loaded = True
    _info["loaded"] = True
    _info["reason"] = None

_load()


def libzstd_info():
    """How block compression is done: {'loaded', 'library', 'version', 'reason'}."""
    return dict(_info)


cdef bint zstd_loaded() noexcept nogil:
    return loaded


cdef bint zstd_is_error(size_t code) noexcept nogil:
    return api.isError(code) != 0


cdef const char* zstd_error_name(size_t code) noexcept nogil:
    return api.getErrorName(code)


cdef size_t zstd_bound(size_t n) noexcept nogil:
    return api.compressBound(n)


cdef int zcomp_init(ZComp* z, int level, const void* dict_data, size_t dict_len) noexcept nogil:
    """A compression context at `level`, with a dictionary when dict_len > 0.
    Returns 0, or -1 (out of memory or bad parameters; z is left empty)."""
    z.cctx = NULL
    z.cdict = NULL
    if not loaded:
        return -1
    cdef void* c = api.createCCtx()
    if c == NULL:
        return -1
    if (api.isError(api.CCtx_setParameter(c, ZSTD_c_compressionLevel, level))
            or api.isError(api.CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1))
            or api.isError(api.CCtx_setParameter(c, ZSTD_c_checksumFlag, 0))
            or api.isError(api.CCtx_setParameter(c, ZSTD_c_dictIDFlag, 0))):
        api.freeCCtx(c)
        return -1
    if dict_len:
        z.cdict = api.createCDict(dict_data, dict_len, level)
        if z.cdict == NULL or api.isError(api.CCtx_refCDict(c, z.cdict)):
            if z.cdict != NULL:
                api.freeCDict(z.cdict)
                z.cdict = NULL
            api.freeCCtx(c)
            return -1
    z.cctx = c
    return 0


cdef void zcomp_free(ZComp* z) noexcept nogil:
    if z.cctx != NULL:
        api.freeCCtx(z.cctx)
        z.cctx = NULL
    if z.cdict != NULL:
        api.freeCDict(z.cdict)
        z.cdict = NULL


cdef size_t zcomp_compress(ZComp* z, void* dst, size_t cap, const void* src, size_t n) noexcept nogil:
    """One frame of src into dst; the frame's size, or an error code (zstd_is_error)."""
    return api.compress2(z.cctx, dst, cap, src, n)


cdef void* zdctx_new() noexcept nogil:
    """A decompression context (NULL if libzstd is not loaded or memory ran out)."""
    if not loaded:
        return NULL
    return api.createDCtx()


cdef void zdctx_free(void* dctx) noexcept nogil:
    if dctx != NULL:
        api.freeDCtx(dctx)


cdef void* zddict_new(const void* dict_data, size_t dict_len) noexcept nogil:
    """A digested dictionary (a table's), which any number of threads may share."""
    if not loaded:
        return NULL
    return api.createDDict(dict_data, dict_len)


cdef void zddict_free(void* ddict) noexcept nogil:
    if ddict != NULL:
        api.freeDDict(ddict)


cdef long long zstd_content_size(const void* src, size_t n) noexcept nogil:
    """The decompressed size a frame declares: >= 0, -1 if it declares none, -2 if
    src is not a valid frame header."""
    return <long long>api.getFrameContentSize(src, n)


cdef size_t zstd_decompress(void* dctx, void* dst, size_t cap, const void* src, size_t n,
                            const void* ddict) noexcept nogil:
    """Decompress one frame (with ddict, or none); its decompressed size, or an
    error code (zstd_is_error)."""
    if ddict != NULL:
        return api.decompress_usingDDict(dctx, dst, cap, src, n, ddict)
    return api.decompressDCtx(dctx, dst, cap, src, n)
