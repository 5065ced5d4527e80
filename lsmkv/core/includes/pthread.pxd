# pthread.h: thread-specific keys (per-thread decompression contexts).
cdef extern from "pthread.h" nogil:
    ctypedef unsigned int pthread_key_t
    int pthread_key_create(pthread_key_t* key, void (*destructor)(void*) noexcept nogil)
    void* pthread_getspecific(pthread_key_t key)
    int pthread_setspecific(pthread_key_t key, const void* value)
