/* faultinject.c: an LD_PRELOAD shim that journals durability events and injects
 * I/O errors for files under one directory (docs/reliability.md).
 *
 * Built and driven by tools/faultinject.py; nothing here is part of the engine.
 * Every libc file call of the process goes through the wrappers below (the
 * engine's Cython modules and the interpreter's os module both call libc);
 * only paths under $LSMKV_FI_ROOT are affected, everything else passes through.
 *
 * Environment:
 *   LSMKV_FI_ROOT     absolute directory; the shim is inert without it
 *   LSMKV_FI_JOURNAL  path prefix of the journal: each process appends durability
 *                     events and injected faults to <prefix>.<pid>
 *   LSMKV_FI_KEEP     directory (same file system as ROOT) where a file about to
 *                     be unlinked or replaced by a rename is first hard-linked
 *                     as KEEP/<inode>, so a simulated power loss can bring it back
 *   LSMKV_FI_RULES    fault rules (below)
 *   LSMKV_FI_CONTROL  a file holding fault rules; re-read whenever its inode,
 *                     size or mtime changes (the parent replaces it atomically
 *                     to set or clear a fault); counters restart on each load
 *
 * Journal records: what a sync makes durable is captured when the wrapped call
 * starts (sizes, directory listings, page images) and written with one write(2)
 * on an O_APPEND descriptor after the call succeeded, before it returns (a
 * SIGKILL can lose or tear the record of a sync in flight, never invent one).
 * Each record is a header line starting with a CLOCK_MONOTONIC timestamp in ns
 * (taken with the capture; the reader merges the processes' files by it), then
 * the fields below, maybe a payload:
 *   S <ino> <size> <path>                 fsync/fdatasync of a regular file; size then
 *   M <ino> <path>                        the inode is mapped MAP_SHARED + PROT_WRITE
 *   P <ino> <off> <len> <fsize> <Z|D>     a durable image of [off, off+len) (page
 *                                         aligned off) of a mapped inode: Z all zero,
 *                                         D followed by len raw bytes; fsize = file size
 *   DIR <n> <path>                        fsync of a directory, then n lines
 *                                         "<ino> <name>" of its regular files then
 *   K <ino> <keep path>                   inode kept before an unlink/rename removed it
 *   U <ino> <path> / R <path> -> <path>   an unlink / rename done (for counts)
 *   F <op> <errno> <path>                 a fault injected
 *   C <rule index> <count>                at a normal exit: how many calls each rule
 *                                         matched (calibrates nth for a workload)
 *
 * Rules: separated by ';' or newlines, each a comma list of key=value:
 *   op=write|pwrite|read|pread|fsync|fdatasync|msync|rename|unlink|open|fallocate|ftruncate|any
 *   path=GLOB   fnmatch on the base name (on the whole path if GLOB has a '/'); default *
 *   nth=N       the Nth matching call fails (N >= 1; default 1)
 *   errno=EIO|ENOSPC|EDQUOT|EROFS (default EIO)
 *   mode=once|persistent   only the Nth call, or the Nth and every later one (default once)
 * A rule that does not parse prints a message to stderr and aborts the process
 * (tools/faultinject.py validates rules with the same grammar before using them).
 * Counters are per process (a forked worker counts from its parent's values).
 *
 * Not intercepted: reads and writes through a mapping (memcpy), dup'ed
 * descriptors, stdio (fopen), writev/readv, and glibc-internal calls.
 */
#define _GNU_SOURCE
#include <sys/uio.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MAX_FD 65536
#define MAX_MAPS 1024
#define MAX_RULES 32

/* ---------------------------------------------------------------- real calls */

static int (*r_open)(const char *, int, ...);
static int (*r_open64)(const char *, int, ...);
static int (*r_openat)(int, const char *, int, ...);
static int (*r_openat64)(int, const char *, int, ...);
static int (*r_close)(int);
static ssize_t (*r_write)(int, const void *, size_t);
static ssize_t (*r_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*r_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*r_read)(int, void *, size_t);
static ssize_t (*r_pread)(int, void *, size_t, off_t);
static ssize_t (*r_pread64)(int, void *, size_t, off_t);
static ssize_t (*r_preadv)(int, const struct iovec *, int, off_t);
static ssize_t (*r_preadv64)(int, const struct iovec *, int, off_t);
static ssize_t (*r_preadv2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*r_preadv64v2)(int, const struct iovec *, int, off_t, int);
static int (*r_fsync)(int);
static int (*r_fdatasync)(int);
static int (*r_msync)(void *, size_t, int);
static void *(*r_mmap)(void *, size_t, int, int, int, off_t);
static void *(*r_mmap64)(void *, size_t, int, int, int, off_t);
static int (*r_munmap)(void *, size_t);
static void *(*r_mremap)(void *, size_t, size_t, int, ...);
static int (*r_posix_fallocate)(int, off_t, off_t);
static int (*r_posix_fallocate64)(int, off_t, off_t);
static int (*r_fallocate)(int, int, off_t, off_t);
static int (*r_fallocate64)(int, int, off_t, off_t);
static int (*r_ftruncate)(int, off_t);
static int (*r_ftruncate64)(int, off_t);
static int (*r_rename)(const char *, const char *);
static int (*r_renameat)(int, const char *, int, const char *);
static int (*r_renameat2)(int, const char *, int, const char *, unsigned);
static int (*r_unlink)(const char *);
static int (*r_unlinkat)(int, const char *, int);

/* ---------------------------------------------------------------- state */

static char g_root[PATH_MAX];
static size_t g_root_len;
static char g_keep[PATH_MAX];
static size_t g_keep_len;
static int g_journal = -1;            /* this process's journal (g_journal_pid) */
static pid_t g_journal_pid;
static char g_journal_base[PATH_MAX];
static const char *g_control;
static int g_active;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char *g_fd_path[MAX_FD];        /* tracked descriptors: their absolute path */

struct mapping { char *addr; size_t len; off_t off; ino_t ino; char *path; };
static struct mapping g_maps[MAX_MAPS];
static ino_t *g_mapped;                /* inodes ever mapped shared-writable */
static size_t g_nmapped, g_capmapped;

enum { OP_WRITE, OP_PWRITE, OP_READ, OP_PREAD, OP_FSYNC, OP_FDATASYNC, OP_MSYNC, OP_RENAME,
       OP_UNLINK, OP_OPEN, OP_FALLOCATE, OP_FTRUNCATE, OP_ANY, N_OPS };
static const char *OP_NAMES[N_OPS] = {"write", "pwrite", "read", "pread", "fsync", "fdatasync",
                                      "msync", "rename", "unlink", "open", "fallocate",
                                      "ftruncate", "any"};
struct rule { int op; char glob[256]; long nth; int err; int persistent; long count; };
static struct rule g_rules[MAX_RULES];
static int g_nrules;
static struct stat g_control_st;
static int g_control_seen;

/* ---------------------------------------------------------------- helpers */

static void die(const char *msg, const char *detail) {
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "faultinject: %s: %s\n", msg, detail);
    if (r_write && n > 0) r_write(2, buf, (size_t)n);
    abort();
}

static int journal_fd(void) {
    if (!g_journal_base[0]) return -1;
    pid_t pid = getpid();
    pthread_mutex_lock(&g_lock);
    if (g_journal_pid != pid) {          /* first record, or a forked child's */
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s.%d", g_journal_base, (int)pid);
        int fd = r_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) { pthread_mutex_unlock(&g_lock); die("cannot open the journal", path); }
        g_journal = fd;
        g_journal_pid = pid;
    }
    int fd = g_journal;
    pthread_mutex_unlock(&g_lock);
    return fd;
}

static void jwrite(const char *buf, size_t n) {
    int fd = journal_fd();
    if (fd < 0) return;
    while (n > 0) {           /* O_APPEND: a short write would split a record; retry the rest */
        ssize_t w = r_write(fd, buf, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("cannot write the journal", strerror(errno));
        }
        buf += w;
        n -= (size_t)w;
    }
}

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

/* a record (or several) built before the wrapped call, written after it succeeded */
struct rec { char *buf; size_t len, cap; };

static void rec_raw(struct rec *r, const void *p, size_t n) {
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2 + 256;
        r->buf = realloc(r->buf, r->cap);
        if (!r->buf) die("out of memory", "journal record");
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
}

__attribute__((format(printf, 2, 3))) static void rec_fmt(struct rec *r, const char *fmt, ...) {
    char tmp[2 * PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    rec_raw(r, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void rec_write(struct rec *r) {
    if (r->len) jwrite(r->buf, r->len);
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = 0;
}

/* absolute form of path relative to dirfd (AT_FDCWD or an open directory) */
static int abs_path(int dirfd, const char *path, char *out) {
    if (!path) return -1;
    if (path[0] == '/') {
        if (strlen(path) >= PATH_MAX) return -1;
        strcpy(out, path);
        return 0;
    }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) return -1;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        if (n < 0) return -1;
        base[n] = 0;
    }
    if (snprintf(out, PATH_MAX, "%s/%s", base, path) >= PATH_MAX) return -1;
    return 0;
}

static int under(const char *p, const char *dir, size_t len) {
    return len && strncmp(p, dir, len) == 0 && (p[len] == '/' || p[len] == 0);
}

static int tracked_path(const char *abs) {
    return g_active && under(abs, g_root, g_root_len) && !under(abs, g_keep, g_keep_len);
}

static char *fd_path_copy(int fd, char *out) {   /* the tracked path of fd, or NULL */
    if (!g_active || fd < 0 || fd >= MAX_FD) return NULL;
    char *r = NULL;
    pthread_mutex_lock(&g_lock);
    if (g_fd_path[fd]) {
        strcpy(out, g_fd_path[fd]);
        r = out;
    }
    pthread_mutex_unlock(&g_lock);
    return r;
}

static void fd_set_path(int fd, const char *abs) {
    if (fd < 0 || fd >= MAX_FD) return;
    char *p = abs ? strdup(abs) : NULL;
    pthread_mutex_lock(&g_lock);
    free(g_fd_path[fd]);
    g_fd_path[fd] = p;
    pthread_mutex_unlock(&g_lock);
}

static int is_mapped_ino(ino_t ino) {
    int r = 0;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_nmapped; i++)
        if (g_mapped[i] == ino) { r = 1; break; }
    pthread_mutex_unlock(&g_lock);
    return r;
}

/* ---------------------------------------------------------------- rules */

static int parse_errno(const char *s) {
    if (!strcmp(s, "EIO")) return EIO;
    if (!strcmp(s, "ENOSPC")) return ENOSPC;
    if (!strcmp(s, "EDQUOT")) return EDQUOT;
    if (!strcmp(s, "EROFS")) return EROFS;
    return -1;
}

static void parse_rules(const char *text) {
    g_nrules = 0;
    char *copy = strdup(text), *save1 = NULL;
    for (char *r = strtok_r(copy, ";\n", &save1); r; r = strtok_r(NULL, ";\n", &save1)) {
        while (*r == ' ' || *r == '\t') r++;
        if (!*r || *r == '#') continue;
        if (g_nrules == MAX_RULES) die("too many rules (at most 32)", text);
        struct rule *ru = &g_rules[g_nrules];
        memset(ru, 0, sizeof *ru);
        ru->op = -1; ru->nth = 1; ru->err = EIO; strcpy(ru->glob, "*");
        char *save2 = NULL;
        for (char *kv = strtok_r(r, ",", &save2); kv; kv = strtok_r(NULL, ",", &save2)) {
            while (*kv == ' ') kv++;
            char *eq = strchr(kv, '=');
            if (!eq) die("rule field is not key=value", kv);
            *eq = 0;
            char *v = eq + 1;
            char *end = v + strlen(v);
            while (end > v && (end[-1] == ' ' || end[-1] == '\r')) *--end = 0;
            if (!strcmp(kv, "op")) {
                for (int i = 0; i < N_OPS; i++) if (!strcmp(v, OP_NAMES[i])) ru->op = i;
                if (ru->op < 0) die("unknown op", v);
            } else if (!strcmp(kv, "path")) {
                if (strlen(v) >= sizeof ru->glob) die("path glob too long", v);
                strcpy(ru->glob, v);
            } else if (!strcmp(kv, "nth")) {
                char *e; ru->nth = strtol(v, &e, 10);
                if (*e || ru->nth < 1) die("nth must be an integer >= 1", v);
            } else if (!strcmp(kv, "errno")) {
                ru->err = parse_errno(v);
                if (ru->err < 0) die("errno must be EIO, ENOSPC, EDQUOT or EROFS", v);
            } else if (!strcmp(kv, "mode")) {
                if (!strcmp(v, "once")) ru->persistent = 0;
                else if (!strcmp(v, "persistent")) ru->persistent = 1;
                else die("mode must be once or persistent", v);
            } else {
                die("unknown rule key (op, path, nth, errno, mode)", kv);
            }
        }
        if (ru->op < 0) die("rule without op=", text);
        g_nrules++;
    }
    free(copy);
}

static void reload_control_locked(void) {
    if (!g_control) return;
    struct stat st;
    if (stat(g_control, &st) != 0) {
        if (g_control_seen) { g_nrules = 0; g_control_seen = 0; }
        return;
    }
    if (g_control_seen && st.st_ino == g_control_st.st_ino && st.st_size == g_control_st.st_size &&
        st.st_mtim.tv_sec == g_control_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == g_control_st.st_mtim.tv_nsec)
        return;
    int fd = r_open(g_control, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[8192];
    ssize_t n = r_read(fd, buf, sizeof buf - 1);
    r_close(fd);
    if (n < 0) return;
    buf[n] = 0;
    parse_rules(buf);
    g_control_st = st;
    g_control_seen = 1;
}

/* 0, or the errno to fail this call with (and the fault is journaled) */
static int fault_for(int op, const char *abs) {
    if (!g_active || (!g_control && g_nrules == 0)) return 0;
    int err = 0;
    pthread_mutex_lock(&g_lock);
    reload_control_locked();
    const char *base = strrchr(abs, '/');
    base = base ? base + 1 : abs;
    for (int i = 0; i < g_nrules; i++) {
        struct rule *ru = &g_rules[i];
        if (ru->op != op && ru->op != OP_ANY) continue;
        if (fnmatch(ru->glob, strchr(ru->glob, '/') ? abs : base, 0) != 0) continue;
        ru->count++;
        if (ru->count == ru->nth || (ru->persistent && ru->count > ru->nth)) {
            err = ru->err;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (err) {
        struct rec r = {0};
        rec_fmt(&r, "%llu F %s %d %s\n", now_ns(), OP_NAMES[op], err, abs);
        rec_write(&r);
    }
    return err;
}

/* ---------------------------------------------------------------- journal records */

/* Durable images of [off, off+len) of inode ino, read from src (a mapping) or,
 * with src NULL, from fd; runs of zero pages and of data pages, one record each. */
static void rec_pages(struct rec *r, unsigned long long ts, ino_t ino, int fd, const char *src,
                      off_t off, size_t len, off_t fsize) {
    if (g_journal_base[0] == 0 || len == 0) return;
    char *buf = malloc(len);
    if (!buf) die("out of memory", "journal pages");
    if (src) {
        memcpy(buf, src, len);
    } else {
        size_t done = 0;
        while (done < len) {
            ssize_t n = r_pread(fd, buf + done, len - done, off + (off_t)done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            done += (size_t)n;
        }
        len = done;
    }
    static const char zero[PAGE];
    size_t i = 0;
    while (i < len) {
        size_t pl = len - i < PAGE ? len - i : PAGE;
        int z = memcmp(buf + i, zero, pl) == 0;
        size_t j = i + pl;
        while (j < len) {
            size_t ql = len - j < PAGE ? len - j : PAGE;
            if ((memcmp(buf + j, zero, ql) == 0) != z) break;
            j += ql;
        }
        rec_fmt(r, "%llu P %lu %lld %zu %lld %c\n", ts, (unsigned long)ino,
                (long long)(off + (off_t)i), j - i, (long long)fsize, z ? 'Z' : 'D');
        if (!z) rec_raw(r, buf + i, j - i);
        i = j;
    }
    free(buf);
}

static void rec_dir(struct rec *r, unsigned long long ts, const char *abs) {
    DIR *d = opendir(abs);
    if (!d) return;
    struct rec list = {0};
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (strchr(e->d_name, '\n')) continue;
        rec_fmt(&list, "%lu %s\n", (unsigned long)st.st_ino, e->d_name);
        n++;
    }
    closedir(d);
    rec_fmt(r, "%llu DIR %d %s\n", ts, n, abs);
    if (list.len) rec_raw(r, list.buf, list.len);
    free(list.buf);
}

/* hard-link abs to KEEP/<ino> (once) so a power loss can bring the inode back */
static void keep_inode(const char *abs) {
    if (!g_journal_base[0] || !g_keep_len) return;
    struct stat st;
    if (lstat(abs, &st) != 0 || !S_ISREG(st.st_mode)) return;
    char kp[PATH_MAX + 32];
    snprintf(kp, sizeof kp, "%s/%lu", g_keep, (unsigned long)st.st_ino);
    if (link(abs, kp) != 0 && errno != EEXIST) return;
    struct rec r = {0};
    rec_fmt(&r, "%llu K %lu %s\n", now_ns(), (unsigned long)st.st_ino, kp);
    rec_write(&r);
}

/* what a sync of a tracked descriptor is about to make durable */
static void rec_sync(struct rec *r, int fd, const char *abs) {
    struct stat st;
    if (!g_journal_base[0] || fstat(fd, &st) != 0) return;
    unsigned long long ts = now_ns();
    if (S_ISDIR(st.st_mode)) {
        rec_dir(r, ts, abs);
        return;
    }
    if (!S_ISREG(st.st_mode)) return;
    if (is_mapped_ino(st.st_ino))
        rec_pages(r, ts, st.st_ino, fd, NULL, 0, (size_t)st.st_size, st.st_size);
    rec_fmt(r, "%llu S %lu %lld %s\n", ts, (unsigned long)st.st_ino, (long long)st.st_size, abs);
}

/* ---------------------------------------------------------------- init */

#define LOAD(name) do { r_##name = dlsym(RTLD_NEXT, #name); } while (0)

__attribute__((constructor)) static void fi_init(void) {
    LOAD(open); LOAD(open64); LOAD(openat); LOAD(openat64); LOAD(close); LOAD(write);
    LOAD(pwrite); LOAD(pwrite64); LOAD(read); LOAD(pread); LOAD(pread64); LOAD(fsync);
    LOAD(preadv); LOAD(preadv64); LOAD(preadv2); LOAD(preadv64v2);
    LOAD(fdatasync); LOAD(msync); LOAD(mmap); LOAD(mmap64); LOAD(munmap); LOAD(mremap);
    LOAD(posix_fallocate); LOAD(posix_fallocate64); LOAD(fallocate); LOAD(fallocate64);
    LOAD(ftruncate); LOAD(ftruncate64); LOAD(rename); LOAD(renameat); LOAD(renameat2);
    LOAD(unlink); LOAD(unlinkat);
    const char *root = getenv("LSMKV_FI_ROOT");
    if (!root || !*root) return;
    if (root[0] != '/' || strlen(root) >= PATH_MAX) die("LSMKV_FI_ROOT must be an absolute path", root);
    strcpy(g_root, root);
    g_root_len = strlen(g_root);
    while (g_root_len > 1 && g_root[g_root_len - 1] == '/') g_root[--g_root_len] = 0;
    const char *keep = getenv("LSMKV_FI_KEEP");
    if (keep && *keep) {
        if (keep[0] != '/' || strlen(keep) >= PATH_MAX) die("LSMKV_FI_KEEP must be an absolute path", keep);
        strcpy(g_keep, keep);
        g_keep_len = strlen(g_keep);
    }
    const char *journal = getenv("LSMKV_FI_JOURNAL");
    if (journal && *journal) {
        if (journal[0] != '/' || strlen(journal) >= PATH_MAX - 16)
            die("LSMKV_FI_JOURNAL must be an absolute path", journal);
        strcpy(g_journal_base, journal);
    }
    const char *rules = getenv("LSMKV_FI_RULES");
    if (rules && *rules) parse_rules(rules);
    const char *control = getenv("LSMKV_FI_CONTROL");
    if (control && *control) g_control = strdup(control);
    g_active = 1;
}

__attribute__((destructor)) static void fi_fini(void) {
    if (!g_active || !g_journal_base[0]) return;
    struct rec r = {0};
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < g_nrules; i++)
        rec_fmt(&r, "%llu C %d %ld\n", now_ns(), i, g_rules[i].count);
    pthread_mutex_unlock(&g_lock);
    rec_write(&r);
}

/* ---------------------------------------------------------------- wrappers */

static int do_open(int dirfd, const char *path, int flags, mode_t mode, int at, int is64) {
    char abs[PATH_MAX];
    int tracked = g_active && abs_path(dirfd, path, abs) == 0 && tracked_path(abs);
    if (tracked) {
        int err = fault_for(OP_OPEN, abs);
        if (err) { errno = err; return -1; }
    }
    int fd;
    if (at) fd = is64 ? r_openat64(dirfd, path, flags, mode) : r_openat(dirfd, path, flags, mode);
    else fd = is64 ? r_open64(path, flags, mode) : r_open(path, flags, mode);
    if (fd >= 0 && g_active) {
        int e = errno;
        fd_set_path(fd, tracked ? abs : NULL);
        errno = e;
    }
    return fd;
}

#define MODE_ARG(flags) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, int); va_end(ap); }

int open(const char *path, int flags, ...) { MODE_ARG(flags); return do_open(AT_FDCWD, path, flags, mode, 0, 0); }
int open64(const char *path, int flags, ...) { MODE_ARG(flags); return do_open(AT_FDCWD, path, flags, mode, 0, 1); }
int openat(int d, const char *path, int flags, ...) { MODE_ARG(flags); return do_open(d, path, flags, mode, 1, 0); }
int openat64(int d, const char *path, int flags, ...) { MODE_ARG(flags); return do_open(d, path, flags, mode, 1, 1); }

int close(int fd) {
    if (g_active && fd >= 0 && fd < MAX_FD) fd_set_path(fd, NULL);
    return r_close(fd);
}

#define FD_FAULT(op, fd, failval) do { \
    char _p[PATH_MAX]; \
    if (fd_path_copy(fd, _p)) { int _e = fault_for(op, _p); if (_e) { errno = _e; return failval; } } \
} while (0)

ssize_t write(int fd, const void *b, size_t n) { FD_FAULT(OP_WRITE, fd, -1); return r_write(fd, b, n); }
ssize_t pwrite(int fd, const void *b, size_t n, off_t o) { FD_FAULT(OP_PWRITE, fd, -1); return r_pwrite(fd, b, n, o); }
ssize_t pwrite64(int fd, const void *b, size_t n, off_t o) { FD_FAULT(OP_PWRITE, fd, -1); return r_pwrite64(fd, b, n, o); }
ssize_t read(int fd, void *b, size_t n) { FD_FAULT(OP_READ, fd, -1); return r_read(fd, b, n); }
ssize_t pread(int fd, void *b, size_t n, off_t o) { FD_FAULT(OP_PREAD, fd, -1); return r_pread(fd, b, n, o); }
ssize_t pread64(int fd, void *b, size_t n, off_t o) { FD_FAULT(OP_PREAD, fd, -1); return r_pread64(fd, b, n, o); }
/* the vector forms count as op "pread" too (table reads try preadv2(RWF_NOWAIT) first) */
ssize_t preadv(int fd, const struct iovec *v, int c, off_t o) { FD_FAULT(OP_PREAD, fd, -1); return r_preadv(fd, v, c, o); }
ssize_t preadv64(int fd, const struct iovec *v, int c, off_t o) { FD_FAULT(OP_PREAD, fd, -1); return r_preadv64(fd, v, c, o); }
ssize_t preadv2(int fd, const struct iovec *v, int c, off_t o, int f) { FD_FAULT(OP_PREAD, fd, -1); return r_preadv2(fd, v, c, o, f); }
ssize_t preadv64v2(int fd, const struct iovec *v, int c, off_t o, int f) { FD_FAULT(OP_PREAD, fd, -1); return r_preadv64v2(fd, v, c, o, f); }
int ftruncate(int fd, off_t l) { FD_FAULT(OP_FTRUNCATE, fd, -1); return r_ftruncate(fd, l); }
int ftruncate64(int fd, off_t l) { FD_FAULT(OP_FTRUNCATE, fd, -1); return r_ftruncate64(fd, l); }
/* posix_fallocate returns the error number instead of setting errno */
int posix_fallocate(int fd, off_t o, off_t l) {
    char p[PATH_MAX];
    if (fd_path_copy(fd, p)) { int e = fault_for(OP_FALLOCATE, p); if (e) return e; }
    return r_posix_fallocate(fd, o, l);
}
int posix_fallocate64(int fd, off_t o, off_t l) {
    char p[PATH_MAX];
    if (fd_path_copy(fd, p)) { int e = fault_for(OP_FALLOCATE, p); if (e) return e; }
    return r_posix_fallocate64(fd, o, l);
}
int fallocate(int fd, int m, off_t o, off_t l) { FD_FAULT(OP_FALLOCATE, fd, -1); return r_fallocate(fd, m, o, l); }
int fallocate64(int fd, int m, off_t o, off_t l) { FD_FAULT(OP_FALLOCATE, fd, -1); return r_fallocate64(fd, m, o, l); }

static int do_sync(int fd, int op) {
    char p[PATH_MAX];
    if (!fd_path_copy(fd, p)) return op == OP_FSYNC ? r_fsync(fd) : r_fdatasync(fd);
    int err = fault_for(op, p);
    if (err) { errno = err; return -1; }
    struct rec r = {0};
    rec_sync(&r, fd, p);       /* what is there when the sync starts is made durable */
    int ret = op == OP_FSYNC ? r_fsync(fd) : r_fdatasync(fd);
    int e = errno;
    if (ret == 0) rec_write(&r);
    else free(r.buf);
    errno = e;
    return ret;
}
int fsync(int fd) { return do_sync(fd, OP_FSYNC); }
int fdatasync(int fd) { return do_sync(fd, OP_FDATASYNC); }

static void *do_mmap(void *a, size_t len, int prot, int flags, int fd, off_t off, int is64) {
    void *m = is64 ? r_mmap64(a, len, prot, flags, fd, off) : r_mmap(a, len, prot, flags, fd, off);
    char p[PATH_MAX];
    if (m == MAP_FAILED || !(flags & MAP_SHARED) || !(prot & PROT_WRITE) || !fd_path_copy(fd, p))
        return m;
    int e = errno;
    struct stat st;
    if (fstat(fd, &st) == 0) {
        pthread_mutex_lock(&g_lock);
        int i;
        for (i = 0; i < MAX_MAPS && g_maps[i].addr; i++) {}
        if (i == MAX_MAPS) { pthread_mutex_unlock(&g_lock); die("too many tracked mappings", p); }
        g_maps[i] = (struct mapping){(char *)m, len, off, st.st_ino, strdup(p)};
        size_t k;
        for (k = 0; k < g_nmapped && g_mapped[k] != st.st_ino; k++) {}
        int fresh = k == g_nmapped;
        if (fresh) {
            if (g_nmapped == g_capmapped) {
                g_capmapped = g_capmapped ? 2 * g_capmapped : 256;
                g_mapped = realloc(g_mapped, g_capmapped * sizeof *g_mapped);
            }
            g_mapped[g_nmapped++] = st.st_ino;
        }
        pthread_mutex_unlock(&g_lock);
        if (fresh) {
            struct rec r = {0};
            rec_fmt(&r, "%llu M %lu %s\n", now_ns(), (unsigned long)st.st_ino, p);
            rec_write(&r);
        }
    }
    errno = e;
    return m;
}
void *mmap(void *a, size_t l, int p, int f, int fd, off_t o) { return do_mmap(a, l, p, f, fd, o, 0); }
void *mmap64(void *a, size_t l, int p, int f, int fd, off_t o) { return do_mmap(a, l, p, f, fd, o, 1); }

int munmap(void *a, size_t len) {
    int r = r_munmap(a, len);
    if (r == 0 && g_active) {
        pthread_mutex_lock(&g_lock);
        for (int i = 0; i < MAX_MAPS; i++)
            if (g_maps[i].addr == (char *)a) {   /* the engine unmaps whole mappings */
                free(g_maps[i].path);
                memset(&g_maps[i], 0, sizeof g_maps[i]);
            }
        pthread_mutex_unlock(&g_lock);
    }
    return r;
}

void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...) {
    void *na = NULL;
    if (flags & MREMAP_FIXED) { va_list ap; va_start(ap, flags); na = va_arg(ap, void *); va_end(ap); }
    void *m = (flags & MREMAP_FIXED) ? r_mremap(old, old_len, new_len, flags, na)
                                     : r_mremap(old, old_len, new_len, flags);
    if (m != MAP_FAILED && g_active) {
        pthread_mutex_lock(&g_lock);
        for (int i = 0; i < MAX_MAPS; i++)
            if (g_maps[i].addr == (char *)old) { g_maps[i].addr = m; g_maps[i].len = new_len; }
        pthread_mutex_unlock(&g_lock);
    }
    return m;
}

int msync(void *a, size_t len, int flags) {
    char p[PATH_MAX];
    struct mapping mp = {0};
    if (g_active) {
        pthread_mutex_lock(&g_lock);
        for (int i = 0; i < MAX_MAPS; i++)
            if (g_maps[i].addr && (char *)a >= g_maps[i].addr &&
                (char *)a < g_maps[i].addr + g_maps[i].len) {
                mp = g_maps[i];
                strcpy(p, mp.path);
                break;
            }
        pthread_mutex_unlock(&g_lock);
    }
    if (!mp.addr) return r_msync(a, len, flags);
    int err = fault_for(OP_MSYNC, p);
    if (err) { errno = err; return -1; }
    struct rec rc = {0};
    if (flags & MS_SYNC) {     /* the pages as they are when the sync starts */
        size_t start = (size_t)((char *)a - mp.addr);
        size_t end = start + len;
        if (end > mp.len) end = mp.len;
        end = (end + PAGE - 1) & ~(size_t)(PAGE - 1);    /* msync writes whole pages */
        if (end > mp.len) end = mp.len;
        struct stat st;
        off_t fsize = stat(p, &st) == 0 && st.st_ino == mp.ino ? st.st_size : -1;
        size_t s0 = start & ~(size_t)(PAGE - 1);
        if (fsize >= 0 && mp.off + (off_t)end > fsize)          /* no bytes past the end of file */
            end = fsize > mp.off + (off_t)s0 ? (size_t)(fsize - mp.off) : s0;
        rec_pages(&rc, now_ns(), mp.ino, -1, mp.addr + s0, mp.off + (off_t)s0, end - s0, fsize);
    }
    int r = r_msync(a, len, flags);
    int e = errno;
    if (r == 0) rec_write(&rc);
    else free(rc.buf);
    errno = e;
    return r;
}

static int do_rename(int od, const char *o, int nd, const char *n, unsigned fl, int kind) {
    char ao[PATH_MAX], an[PATH_MAX];
    int to = g_active && abs_path(od, o, ao) == 0 && tracked_path(ao);
    int tn = g_active && abs_path(nd, n, an) == 0 && tracked_path(an);
    if (to || tn) {
        int err = fault_for(OP_RENAME, tn ? an : ao);
        if (err) { errno = err; return -1; }
        if (tn) keep_inode(an);
    }
    int r = kind == 0 ? r_rename(o, n) : kind == 1 ? r_renameat(od, o, nd, n)
                                                   : r_renameat2(od, o, nd, n, fl);
    if (r == 0 && (to || tn)) {
        int e = errno;
        struct rec rc = {0};
        rec_fmt(&rc, "%llu R %s -> %s\n", now_ns(), ao, an);
        rec_write(&rc);
        errno = e;
    }
    return r;
}
int rename(const char *o, const char *n) { return do_rename(AT_FDCWD, o, AT_FDCWD, n, 0, 0); }
int renameat(int od, const char *o, int nd, const char *n) { return do_rename(od, o, nd, n, 0, 1); }
int renameat2(int od, const char *o, int nd, const char *n, unsigned f) { return do_rename(od, o, nd, n, f, 2); }

static int do_unlink(int d, const char *path, int flags, int at) {
    char a[PATH_MAX];
    int t = g_active && !(flags & AT_REMOVEDIR) && abs_path(d, path, a) == 0 && tracked_path(a);
    struct stat st;
    int have = 0;
    if (t) {
        int err = fault_for(OP_UNLINK, a);
        if (err) { errno = err; return -1; }
        have = lstat(a, &st) == 0;
        keep_inode(a);
    }
    int r = at ? r_unlinkat(d, path, flags) : r_unlink(path);
    if (r == 0 && t && have) {
        int e = errno;
        struct rec rc = {0};
        rec_fmt(&rc, "%llu U %lu %s\n", now_ns(), (unsigned long)st.st_ino, a);
        rec_write(&rc);
        errno = e;
    }
    return r;
}
int unlink(const char *p) { return do_unlink(AT_FDCWD, p, 0, 0); }
int unlinkat(int d, const char *p, int f) { return do_unlink(d, p, f, 1); }
