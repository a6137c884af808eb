/* The Vortex CUDA driver emulator: a libcuda.so.1 for machines without a GPU, built by
 * `cargo xtask cuda-emu`, which appends an aborting definition of every other entry point
 * that cust_raw declares. Prototypes follow NVIDIA's cuda.h (CUDA 12); arguments this file
 * does not read are still declared so that a wrong call shape shows in review.
 *
 * Device memory: one sparse memfd the size of the address span, mapped read/write once (the
 * emulator's view), and a PROT_NONE reservation of the same size whose addresses are handed
 * out, so the host faults on any dereference of a device pointer. Allocations are carved by a
 * bump pointer and never reused, so a use after free is found by address. Zeros are never
 * written: copies and memsets of zeros punch holes, reads skip holes (SEEK_DATA/SEEK_HOLE),
 * so a 12 GiB capacity of mostly unwritten weights costs what was written.
 *
 * Streams run their work in order on a worker thread each; events take CLOCK_MONOTONIC
 * timestamps when their record runs. VORTEX_EMU_DEFERRED=1 runs queued work only when
 * something waits for it (a synchronize, or an event query, which answers NOT_READY first).
 *
 * Environment: VORTEX_EMU_CAPACITY (bytes, default 12884901888), VORTEX_EMU_RESERVE (bytes the
 * context holds, default 322122547 = 0.3 GiB), VORTEX_EMU_DEFERRED, VORTEX_EMU_MISUSE
 * (abort, the default, or error: misuse returns an error code instead), VORTEX_EMU_LEAKS
 * (abort, the default, or report).
 *
 * Fault injection and counters: `long long vortex_emu_control(const char *key, long long v)`,
 * found with dlsym; a real driver does not have it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct emu_ctx *CUcontext;
typedef struct emu_stream *CUstream;
typedef struct emu_event *CUevent;

#define EMU_DEVICE_NAME "Vortex CUDA emulator"

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_UNKNOWN = 999,
};

static const struct {
    int code;
    const char *name, *text;
} ERRORS[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {34, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {46, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {600, "CUDA_ERROR_NOT_READY", "device not ready"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
    {804, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", "forward compatibility was attempted on non supported HW"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

/* ---------------------------------------------------------------------------------------- */
/* State                                                                                    */

struct alloc {
    CUdeviceptr addr;
    size_t size, charged;
    int live;
};

struct pinned {
    char *ptr;
    size_t size;
    int live;
};

enum op_kind { OP_H2D, OP_D2H, OP_D2D, OP_MEMSET, OP_RECORD };

struct op {
    struct op *next;
    enum op_kind kind;
    unsigned long long seq;
    CUdeviceptr dst, src;
    void *host;   /* OP_H2D source, OP_D2H destination */
    void *owned;  /* a snapshot of pageable memory, freed after the op */
    size_t len;
    unsigned char value;
    struct emu_event *event;
};

#define STREAM_MAGIC 0x5354524du
#define EVENT_MAGIC 0x45564e54u

struct emu_stream {
    unsigned magic;
    int destroyed;
    pthread_mutex_t m;
    pthread_cond_t cv;
    struct op *head, *tail;
    unsigned long long enqueued, completed, flush_to;
    struct emu_stream *next_all;
};

struct emu_event {
    unsigned magic;
    int destroyed, timing, recorded, done;
    struct emu_stream *stream;
    unsigned long long seq;
    int queried; /* deferred mode: the first query of a record answers NOT_READY */
    struct timespec at;
    struct emu_event *next_all;
};

struct emu_ctx {
    int unused;
};

static struct emu_ctx g_ctx;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static __thread int t_current;

static struct {
    unsigned long long capacity, reserve, allocated;
    int deferred, misuse_abort, leak_abort;
    int initialized, init_error;
    int driver_version;
    int refs;
    /* device memory */
    int fd;
    char *view, *base;
    size_t span, bump;
    struct alloc *allocs;
    size_t nallocs, cap_allocs;
    struct pinned *pinned;
    size_t npinned, cap_pinned;
    /* faults */
    long long fail_alloc_at, lost_after;
    int lost, lost_code, sticky;
    /* counters */
    long long misuse_reports, leak_reports, live_streams, live_events, calls;
    struct emu_stream *streams;
    struct emu_event *events;
    struct emu_stream *null_stream;
} g;

static unsigned long long env_u64(const char *name, unsigned long long fallback) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end) {
        fprintf(stderr, "vortex-emu: %s=%s is not a number of bytes\n", name, v);
        abort();
    }
    return n;
}

static int env_is(const char *name, const char *value) {
    const char *v = getenv(name);
    return v && strcmp(v, value) == 0;
}

static void configure(void) {
    g.capacity = env_u64("VORTEX_EMU_CAPACITY", 12884901888ull);
    g.reserve = env_u64("VORTEX_EMU_RESERVE", 322122547ull);
    g.deferred = env_is("VORTEX_EMU_DEFERRED", "1");
    g.misuse_abort = !env_is("VORTEX_EMU_MISUSE", "error");
    g.leak_abort = !env_is("VORTEX_EMU_LEAKS", "report");
    g.lost_after = -1;
    g.lost_code = CUDA_ERROR_UNKNOWN;
    g.fd = -1;
    /* A CUDA 13.0 driver (r580), what ONNX Runtime 1.31's CUDA provider needs. */
    g.driver_version = 13000;
}

__attribute__((noreturn)) void vortex_emu_unimplemented(const char *name) {
    fprintf(stderr,
            "vortex-emu: %s is not emulated: emulate it in xtask/src/cuda_emu.c, or run on a GPU\n",
            name);
    abort();
}

/* A misuse a real driver would fault on, or silently corrupt memory with. */
__attribute__((format(printf, 3, 4))) static CUresult misuse(const char *fn, CUresult code,
                                                             const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vortex-emu: MISUSE in %s: ", fn);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    __atomic_add_fetch(&g.misuse_reports, 1, __ATOMIC_SEQ_CST);
    if (g.misuse_abort) {
        fprintf(stderr, "vortex-emu: aborting (VORTEX_EMU_MISUSE=error returns %d instead)\n", code);
        abort();
    }
    return code;
}

enum { NEED_INIT = 1, NEED_CTX = 2, RELEASE = 4 };

/* Every emulated entry point starts here: counts the call, answers for a lost device, checks
 * that the driver is initialized and a live context is current. */
static CUresult enter(const char *fn, int needs) {
    pthread_once(&g_once, configure);
    pthread_mutex_lock(&g_lock);
    g.calls++;
    CUresult r = CUDA_SUCCESS;
    if (!(needs & RELEASE)) {
        if (g.lost_after == 0) {
            g.lost = 1;
            g.lost_after = -1;
        } else if (g.lost_after > 0) {
            g.lost_after--;
        }
        if (g.lost) r = g.lost_code;
    }
    int initialized = g.initialized, refs = g.refs;
    pthread_mutex_unlock(&g_lock);
    if (r) return r;
    if ((needs & (NEED_INIT | NEED_CTX)) && !initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if ((needs & NEED_CTX) && !(t_current && refs > 0))
        return misuse(fn, CUDA_ERROR_INVALID_CONTEXT,
                      t_current ? "the current context was released (primary context not retained)"
                                : "no context is current on this thread");
    return CUDA_SUCCESS;
}

#define ENTER(needs)                                                                            \
    do {                                                                                        \
        CUresult entered_ = enter(__func__, needs);                                             \
        if (entered_) return entered_;                                                          \
    } while (0)

/* ---------------------------------------------------------------------------------------- */
/* Device memory                                                                            */

#define GRANULE (64ull << 10)

static int memory_ready(void) {
    if (g.fd >= 0) return 1;
    int fd = memfd_create("vortex-emu-device-memory", MFD_CLOEXEC);
    if (fd < 0) return 0;
    for (size_t span = 1ull << 40; span >= (64ull << 30); span /= 2) {
        if (ftruncate(fd, (off_t)span)) continue;
        void *view = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (view == MAP_FAILED) continue;
        void *base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) {
            munmap(view, span);
            continue;
        }
        g.fd = fd;
        g.view = view;
        g.base = base;
        g.span = span;
        g.bump = GRANULE; /* never hand out the base: offset 0 stays a gap */
        return 1;
    }
    close(fd);
    return 0;
}

/* The allocation holding `addr` (live or freed), or NULL. Allocations are sorted by address. */
static struct alloc *find_alloc(CUdeviceptr addr) {
    size_t lo = 0, hi = g.nallocs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        struct alloc *a = &g.allocs[mid];
        if (addr < a->addr) hi = mid;
        else if (addr >= a->addr + a->size) lo = mid + 1;
        else return a;
    }
    return NULL;
}

static struct pinned *find_pinned(const void *p) {
    for (size_t i = 0; i < g.npinned; i++) {
        struct pinned *h = &g.pinned[i];
        if (h->live && (const char *)p >= h->ptr && (const char *)p < h->ptr + h->size) return h;
    }
    return NULL;
}

/* Checks that [d, d + len) lies in one live allocation; its offset in the view. Call locked. */
static CUresult device_range(const char *fn, CUdeviceptr d, size_t len, size_t *off) {
    struct alloc *a = find_alloc(d);
    if (!a) {
        if (g.base && d >= (CUdeviceptr)(uintptr_t)g.base && d < (CUdeviceptr)(uintptr_t)g.base + g.span)
            return misuse(fn, CUDA_ERROR_INVALID_VALUE,
                          "0x%llx is between allocations (out of bounds of its neighbours)", d);
        return misuse(fn, CUDA_ERROR_INVALID_VALUE, "0x%llx is not a device address", d);
    }
    if (!a->live)
        return misuse(fn, CUDA_ERROR_INVALID_VALUE,
                      "use after free: 0x%llx lies in the freed allocation [0x%llx, +%zu)", d, a->addr,
                      a->size);
    if (len > a->addr + a->size - d)
        return misuse(fn, CUDA_ERROR_INVALID_VALUE,
                      "out of bounds: %zu bytes at 0x%llx run %llu bytes past the allocation "
                      "[0x%llx, +%zu)",
                      len, d, (unsigned long long)(d + len - (a->addr + a->size)), a->addr, a->size);
    *off = (size_t)(d - (CUdeviceptr)(uintptr_t)g.base);
    return CUDA_SUCCESS;
}

static void punch(size_t off, size_t len) {
    if (len && fallocate(g.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len)) {
        fprintf(stderr, "vortex-emu: fallocate(PUNCH_HOLE) failed: %s\n", strerror(errno));
        abort();
    }
}

static int all_zero(const unsigned char *p, size_t n) {
    for (; n && ((uintptr_t)p & 7); n--, p++)
        if (*p) return 0;
    for (; n >= 8; n -= 8, p += 8)
        if (*(const uint64_t *)p) return 0;
    for (; n; n--, p++)
        if (*p) return 0;
    return 1;
}

/* The next data extent at or after `pos` before `end`: [*data, *hole). */
static void next_extent(size_t pos, size_t end, size_t *data, size_t *hole) {
    off_t d = lseek(g.fd, (off_t)pos, SEEK_DATA);
    if (d < 0 || (size_t)d >= end) {
        *data = *hole = end;
        return;
    }
    off_t h = lseek(g.fd, d, SEEK_HOLE);
    *data = (size_t)d;
    *hole = (h < 0 || (size_t)h > end) ? end : (size_t)h;
}

/* Host to device: zero chunks become holes, so unwritten weights stay unbacked. */
static void write_device(size_t off, const void *src, size_t len) {
    const unsigned char *s = src;
    size_t zero_from = 0, i = 0;
    int in_zero = 0;
    while (i < len) {
        size_t n = len - i < GRANULE ? len - i : GRANULE;
        int zero = all_zero(s + i, n);
        if (zero && !in_zero) {
            zero_from = i;
            in_zero = 1;
        } else if (!zero) {
            if (in_zero) punch(off + zero_from, i - zero_from);
            in_zero = 0;
            memcpy(g.view + off + i, s + i, n);
        }
        i += n;
    }
    if (in_zero) punch(off + zero_from, len - zero_from);
}

/* Device to host: holes read as zeros without being touched. */
static void read_device(void *dst, size_t off, size_t len) {
    unsigned char *d = dst;
    size_t pos = off, end = off + len;
    while (pos < end) {
        size_t data, hole;
        next_extent(pos, end, &data, &hole);
        memset(d + (pos - off), 0, data - pos);
        if (hole > data) memcpy(d + (data - off), g.view + data, hole - data);
        pos = hole;
    }
}

static void copy_device(size_t dst, size_t src, size_t len) {
    size_t pos = src, end = src + len;
    while (pos < end) {
        size_t data, hole;
        next_extent(pos, end, &data, &hole);
        punch(dst + (pos - src), data - pos);
        if (hole > data) memmove(g.view + dst + (data - src), g.view + data, hole - data);
        pos = hole;
    }
}

static void set_device(size_t off, unsigned char value, size_t len) {
    if (value == 0) punch(off, len);
    else memset(g.view + off, value, len);
}

/* ---------------------------------------------------------------------------------------- */
/* Streams and events                                                                       */

static void now(struct timespec *t) { clock_gettime(CLOCK_MONOTONIC, t); }

/* Runs one queued op. Device ranges are checked again: the memory may have been freed since. */
static void run_op(struct emu_stream *s, struct op *op) {
    static const char *names[] = {"cuMemcpyHtoDAsync", "cuMemcpyDtoHAsync", "cuMemcpyDtoDAsync",
                                  "cuMemsetD8Async", "cuEventRecord"};
    const char *fn = names[op->kind];
    size_t d = 0, s_off = 0;
    pthread_mutex_lock(&g_lock);
    CUresult r = CUDA_SUCCESS;
    switch (op->kind) {
    case OP_H2D:
        if (!op->owned && !find_pinned(op->host))
            r = misuse(fn, CUDA_ERROR_ILLEGAL_ADDRESS, "queued copy from pinned memory freed since");
        if (!r) r = device_range(fn, op->dst, op->len, &d);
        if (!r) write_device(d, op->owned ? op->owned : op->host, op->len);
        break;
    case OP_D2H:
        if (!find_pinned(op->host))
            r = misuse(fn, CUDA_ERROR_ILLEGAL_ADDRESS, "queued copy into pinned memory freed since");
        if (!r) r = device_range(fn, op->src, op->len, &s_off);
        if (!r) read_device(op->host, s_off, op->len);
        break;
    case OP_D2D:
        r = device_range(fn, op->dst, op->len, &d);
        if (!r) r = device_range(fn, op->src, op->len, &s_off);
        if (!r) copy_device(d, s_off, op->len);
        break;
    case OP_MEMSET:
        r = device_range(fn, op->dst, op->len, &d);
        if (!r) set_device(d, op->value, op->len);
        break;
    case OP_RECORD:
        if (op->event->stream == s && op->event->seq == op->seq) {
            now(&op->event->at);
            op->event->done = 1;
        }
        break;
    }
    if (r) g.sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
    pthread_mutex_unlock(&g_lock);
    (void)s;
}

static void *worker(void *arg) {
    struct emu_stream *s = arg;
    pthread_mutex_lock(&s->m);
    for (;;) {
        while (!(s->head && s->head->seq <= s->flush_to) && !(s->destroyed && !s->head))
            pthread_cond_wait(&s->cv, &s->m);
        if (!s->head) break;
        struct op *op = s->head;
        pthread_mutex_unlock(&s->m);
        run_op(s, op);
        pthread_mutex_lock(&s->m);
        s->head = op->next;
        if (!s->head) s->tail = NULL;
        s->completed = op->seq;
        free(op->owned);
        free(op);
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->m);
    return NULL;
}

static struct emu_stream *new_stream(void) {
    struct emu_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->magic = STREAM_MAGIC;
    pthread_mutex_init(&s->m, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->flush_to = g.deferred ? 0 : ~0ull;
    pthread_t t;
    if (pthread_create(&t, NULL, worker, s)) {
        free(s);
        return NULL;
    }
    pthread_detach(t);
    s->next_all = g.streams;
    g.streams = s;
    return s;
}

/* Resolves a stream handle (NULL: the context's default stream). Call locked. */
static CUresult stream_of(const char *fn, CUstream h, struct emu_stream **out) {
    if (!h) {
        if (!g.null_stream && !(g.null_stream = new_stream())) return CUDA_ERROR_OUT_OF_MEMORY;
        *out = g.null_stream;
        return CUDA_SUCCESS;
    }
    for (struct emu_stream *s = g.streams; s; s = s->next_all)
        if (s == h) {
            if (s->destroyed)
                return misuse(fn, CUDA_ERROR_INVALID_HANDLE, "stream %p was destroyed", (void *)h);
            *out = s;
            return CUDA_SUCCESS;
        }
    return misuse(fn, CUDA_ERROR_INVALID_HANDLE, "%p is not a stream", (void *)h);
}

static CUresult event_of(const char *fn, CUevent h, struct emu_event **out) {
    for (struct emu_event *e = g.events; e; e = e->next_all)
        if (e == h) {
            if (e->destroyed)
                return misuse(fn, CUDA_ERROR_INVALID_HANDLE, "event %p was destroyed", (void *)h);
            *out = e;
            return CUDA_SUCCESS;
        }
    return misuse(fn, CUDA_ERROR_INVALID_HANDLE, "%p is not an event", (void *)h);
}

/* Queues an op; returns its sequence number. */
static unsigned long long enqueue(struct emu_stream *s, struct op *op) {
    pthread_mutex_lock(&s->m);
    op->seq = ++s->enqueued;
    if (s->tail) s->tail->next = op;
    else s->head = op;
    s->tail = op;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->m);
    return op->seq;
}

/* Lets the worker run up to `seq` (deferred mode holds it back until then). */
static void release_to(struct emu_stream *s, unsigned long long seq) {
    pthread_mutex_lock(&s->m);
    if (s->flush_to < seq) s->flush_to = seq;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->m);
}

static void wait_for(struct emu_stream *s, unsigned long long seq) {
    release_to(s, seq);
    pthread_mutex_lock(&s->m);
    while (s->completed < seq) pthread_cond_wait(&s->cv, &s->m);
    pthread_mutex_unlock(&s->m);
}

static void wait_all(void) {
    pthread_mutex_lock(&g_lock);
    struct emu_stream *list = g.streams;
    pthread_mutex_unlock(&g_lock);
    for (struct emu_stream *s = list; s; s = s->next_all) {
        pthread_mutex_lock(&s->m);
        unsigned long long seq = s->enqueued;
        pthread_mutex_unlock(&s->m);
        wait_for(s, seq);
    }
}

/* Whether queued, unfinished work touches [addr, addr + size). Call with g_lock held. */
static struct emu_stream *pending_on(CUdeviceptr addr, size_t size) {
    for (struct emu_stream *s = g.streams; s; s = s->next_all) {
        pthread_mutex_lock(&s->m);
        for (struct op *op = s->head; op; op = op->next) {
            int dst = op->kind != OP_D2H && op->kind != OP_RECORD && op->dst >= addr && op->dst < addr + size;
            int src = (op->kind == OP_D2D || op->kind == OP_D2H) && op->src >= addr && op->src < addr + size;
            if (dst || src) {
                pthread_mutex_unlock(&s->m);
                return s;
            }
        }
        pthread_mutex_unlock(&s->m);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Initialization, device, context                                                          */

CUresult cuInit(unsigned int flags) {
    ENTER(0);
    if (flags) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    CUresult r = g.init_error;
    if (!r) g.initialized = 1;
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuDriverGetVersion(int *version) {
    ENTER(0);
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    pthread_once(&g_once, configure);
    pthread_mutex_lock(&g_lock);
    *version = g.driver_version;
    pthread_mutex_unlock(&g_lock);
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
    ENTER(NEED_INIT);
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    ENTER(NEED_INIT);
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice device) {
    ENTER(NEED_INIT);
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "%s", EMU_DEVICE_NAME);
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice device) {
    ENTER(NEED_INIT);
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = g.capacity;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice device) {
    ENTER(NEED_INIT);
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&g_lock);
    int ready = memory_ready();
    if (ready) g.refs++;
    pthread_mutex_unlock(&g_lock);
    if (!ready) {
        fprintf(stderr, "vortex-emu: could not reserve the device address span: %s\n", strerror(errno));
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *ctx = &g_ctx;
    return CUDA_SUCCESS;
}

/* The last release destroys the primary context: whatever it still holds is a leak. */
static void context_destroyed(void) {
    wait_all();
    pthread_mutex_lock(&g_lock);
    long long leaks = 0;
    for (size_t i = 0; i < g.nallocs; i++) {
        struct alloc *a = &g.allocs[i];
        if (!a->live) continue;
        fprintf(stderr, "vortex-emu: LEAK at context release: device allocation [0x%llx, +%zu) never freed\n",
                a->addr, a->size);
        a->live = 0;
        g.allocated -= a->charged;
        punch((size_t)(a->addr - (CUdeviceptr)(uintptr_t)g.base), a->size);
        leaks++;
    }
    for (size_t i = 0; i < g.npinned; i++) {
        struct pinned *h = &g.pinned[i];
        if (!h->live) continue;
        fprintf(stderr, "vortex-emu: LEAK at context release: pinned host memory %p (+%zu) never freed\n",
                (void *)h->ptr, h->size);
        h->live = 0;
        munmap(h->ptr, h->size);
        leaks++;
    }
    for (struct emu_stream *s = g.streams; s; s = s->next_all) {
        if (s->destroyed || s == g.null_stream) continue;
        fprintf(stderr, "vortex-emu: LEAK at context release: stream %p never destroyed\n", (void *)s);
        pthread_mutex_lock(&s->m);
        s->destroyed = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->m);
        g.live_streams--;
        leaks++;
    }
    for (struct emu_event *e = g.events; e; e = e->next_all) {
        if (e->destroyed) continue;
        fprintf(stderr, "vortex-emu: LEAK at context release: event %p never destroyed\n", (void *)e);
        e->destroyed = 1;
        g.live_events--;
        leaks++;
    }
    g.leak_reports += leaks;
    int lost = g.lost;
    pthread_mutex_unlock(&g_lock);
    if (leaks && g.leak_abort && !lost) {
        fprintf(stderr, "vortex-emu: aborting on %lld leak(s) (VORTEX_EMU_LEAKS=report only reports)\n", leaks);
        abort();
    }
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
    ENTER(NEED_INIT | RELEASE);
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&g_lock);
    if (g.refs == 0) {
        pthread_mutex_unlock(&g_lock);
        return misuse(__func__, CUDA_ERROR_INVALID_CONTEXT, "the primary context is not retained");
    }
    int last = --g.refs == 0;
    pthread_mutex_unlock(&g_lock);
    if (last) context_destroyed();
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
    ENTER(NEED_INIT);
    if (ctx && ctx != &g_ctx)
        return misuse(__func__, CUDA_ERROR_INVALID_CONTEXT, "%p is not a context", (void *)ctx);
    t_current = ctx != NULL;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *ctx) {
    ENTER(NEED_INIT);
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    *ctx = t_current ? &g_ctx : NULL;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) {
    ENTER(NEED_CTX);
    wait_all();
    pthread_mutex_lock(&g_lock);
    CUresult r = g.sticky;
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuGetErrorName(CUresult error, const char **out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++)
        if (ERRORS[i].code == error) {
            *out = ERRORS[i].name;
            return CUDA_SUCCESS;
        }
    *out = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char **out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++)
        if (ERRORS[i].code == error) {
            *out = ERRORS[i].text;
            return CUDA_SUCCESS;
        }
    *out = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

/* ---------------------------------------------------------------------------------------- */
/* Memory                                                                                   */

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    ENTER(NEED_CTX);
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    unsigned long long used = g.reserve + g.allocated;
    *free_bytes = used >= g.capacity ? 0 : g.capacity - used;
    *total = g.capacity;
    pthread_mutex_unlock(&g_lock);
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes) {
    ENTER(NEED_CTX);
    if (!dptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    size_t charged = (bytes + GRANULE - 1) / GRANULE * GRANULE;
    unsigned long long used = g.reserve + g.allocated;
    int injected = g.fail_alloc_at > 0 && --g.fail_alloc_at == 0;
    /* a one-granule gap after each allocation: an overrun lands in no allocation */
    if (injected || charged > g.capacity || used + charged > g.capacity ||
        g.bump + charged + GRANULE > g.span) {
        pthread_mutex_unlock(&g_lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (g.nallocs == g.cap_allocs) {
        size_t cap = g.cap_allocs ? 2 * g.cap_allocs : 64;
        struct alloc *grown = realloc(g.allocs, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&g_lock);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        g.allocs = grown;
        g.cap_allocs = cap;
    }
    CUdeviceptr addr = (CUdeviceptr)(uintptr_t)g.base + g.bump;
    g.allocs[g.nallocs++] = (struct alloc){addr, bytes, charged, 1};
    g.bump += charged + GRANULE;
    g.allocated += charged;
    pthread_mutex_unlock(&g_lock);
    *dptr = addr;
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr dptr) {
    ENTER(NEED_CTX | RELEASE);
    if (!dptr) return CUDA_SUCCESS;
    pthread_mutex_lock(&g_lock);
    struct alloc *a = find_alloc(dptr);
    CUresult r = CUDA_SUCCESS;
    struct emu_stream *busy;
    if (!a)
        r = misuse(__func__, CUDA_ERROR_INVALID_VALUE, "0x%llx was never allocated", dptr);
    else if (!a->live)
        r = misuse(__func__, CUDA_ERROR_INVALID_VALUE, "double free of 0x%llx", dptr);
    else if (a->addr != dptr)
        r = misuse(__func__, CUDA_ERROR_INVALID_VALUE,
                   "interior free: 0x%llx is %llu bytes into the allocation at 0x%llx", dptr,
                   dptr - a->addr, a->addr);
    else if ((busy = pending_on(a->addr, a->size)))
        r = misuse(__func__, CUDA_ERROR_INVALID_VALUE,
                   "0x%llx freed while work queued on stream %p still uses it", dptr, (void *)busy);
    else {
        a->live = 0;
        g.allocated -= a->charged;
        punch((size_t)(a->addr - (CUdeviceptr)(uintptr_t)g.base), a->size);
    }
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuMemAllocHost_v2(void **pp, size_t bytes) {
    ENTER(NEED_CTX);
    if (!pp || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_lock(&g_lock);
    if (g.npinned == g.cap_pinned) {
        size_t cap = g.cap_pinned ? 2 * g.cap_pinned : 16;
        struct pinned *grown = realloc(g.pinned, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&g_lock);
            munmap(p, bytes);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        g.pinned = grown;
        g.cap_pinned = cap;
    }
    g.pinned[g.npinned++] = (struct pinned){p, bytes, 1};
    pthread_mutex_unlock(&g_lock);
    *pp = p;
    return CUDA_SUCCESS;
}

CUresult cuMemFreeHost(void *p) {
    ENTER(NEED_CTX | RELEASE);
    pthread_mutex_lock(&g_lock);
    struct pinned *h = find_pinned(p);
    CUresult r = CUDA_SUCCESS;
    if (!h)
        r = misuse(__func__, CUDA_ERROR_INVALID_VALUE, "%p is not live pinned memory (double free?)", p);
    else if (h->ptr != (char *)p)
        r = misuse(__func__, CUDA_ERROR_INVALID_VALUE, "interior free: %p is inside pinned %p", p,
                   (void *)h->ptr);
    else {
        h->live = 0;
        munmap(h->ptr, h->size);
    }
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t len) {
    ENTER(NEED_CTX);
    if (!len) return CUDA_SUCCESS;
    pthread_mutex_lock(&g_lock);
    size_t off;
    CUresult r = device_range(__func__, dst, len, &off);
    if (!r) write_device(off, src, len);
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t len) {
    ENTER(NEED_CTX);
    if (!len) return CUDA_SUCCESS;
    pthread_mutex_lock(&g_lock);
    size_t off;
    CUresult r = device_range(__func__, src, len, &off);
    if (!r) read_device(dst, off, len);
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t len) {
    ENTER(NEED_CTX);
    if (!len) return CUDA_SUCCESS;
    pthread_mutex_lock(&g_lock);
    size_t d, s;
    CUresult r = device_range(__func__, dst, len, &d);
    if (!r) r = device_range(__func__, src, len, &s);
    if (!r) copy_device(d, s, len);
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t len) {
    ENTER(NEED_CTX);
    if (!len) return CUDA_SUCCESS;
    pthread_mutex_lock(&g_lock);
    size_t off;
    CUresult r = device_range(__func__, dst, len, &off);
    if (!r) set_device(off, value, len);
    pthread_mutex_unlock(&g_lock);
    return r;
}

/* Checks and queues an async op (the op is freed on failure). */
static CUresult queue_op(const char *fn, CUstream h, struct op *op) {
    pthread_mutex_lock(&g_lock);
    struct emu_stream *s;
    size_t off;
    CUresult r = stream_of(fn, h, &s);
    if (!r && op->kind != OP_D2H) r = device_range(fn, op->dst, op->len, &off);
    if (!r && (op->kind == OP_D2D || op->kind == OP_D2H)) r = device_range(fn, op->src, op->len, &off);
    pthread_mutex_unlock(&g_lock);
    if (r) {
        free(op->owned);
        free(op);
        return r;
    }
    enqueue(s, op);
    return CUDA_SUCCESS;
}

static struct op *new_op(enum op_kind kind, CUdeviceptr dst, CUdeviceptr src, size_t len) {
    struct op *op = calloc(1, sizeof *op);
    if (op) {
        op->kind = kind;
        op->dst = dst;
        op->src = src;
        op->len = len;
    }
    return op;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t len, CUstream stream) {
    ENTER(NEED_CTX);
    if (!len) return CUDA_SUCCESS;
    struct op *op = new_op(OP_H2D, dst, 0, len);
    if (!op) return CUDA_ERROR_OUT_OF_MEMORY;
    op->host = (void *)src;
    pthread_mutex_lock(&g_lock);
    int pinned = find_pinned(src) != NULL;
    pthread_mutex_unlock(&g_lock);
    if (!pinned) {
        /* pageable memory: the driver copies it out before returning */
        if (!(op->owned = malloc(len))) {
            free(op);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        memcpy(op->owned, src, len);
    }
    return queue_op(__func__, stream, op);
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t len, CUstream stream) {
    ENTER(NEED_CTX);
    if (!len) return CUDA_SUCCESS;
    pthread_mutex_lock(&g_lock);
    int pinned = find_pinned(dst) != NULL;
    struct emu_stream *s = NULL;
    CUresult r = stream_of(__func__, stream, &s);
    pthread_mutex_unlock(&g_lock);
    if (r) return r;
    if (!pinned) {
        /* pageable memory: the driver returns once the copy is done */
        pthread_mutex_lock(&s->m);
        unsigned long long seq = s->enqueued;
        pthread_mutex_unlock(&s->m);
        wait_for(s, seq);
        return cuMemcpyDtoH_v2(dst, src, len);
    }
    struct op *op = new_op(OP_D2H, 0, src, len);
    if (!op) return CUDA_ERROR_OUT_OF_MEMORY;
    op->host = dst;
    return queue_op(__func__, stream, op);
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t len, CUstream stream) {
    ENTER(NEED_CTX);
    if (!len) return CUDA_SUCCESS;
    struct op *op = new_op(OP_D2D, dst, src, len);
    return op ? queue_op(__func__, stream, op) : CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t len, CUstream stream) {
    ENTER(NEED_CTX);
    if (!len) return CUDA_SUCCESS;
    struct op *op = new_op(OP_MEMSET, dst, 0, len);
    if (!op) return CUDA_ERROR_OUT_OF_MEMORY;
    op->value = value;
    return queue_op(__func__, stream, op);
}

enum { CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 2, CU_MEMORYTYPE_HOST = 1, CU_MEMORYTYPE_DEVICE = 2 };

CUresult cuPointerGetAttribute(void *data, int attribute, CUdeviceptr ptr) {
    ENTER(NEED_CTX);
    if (attribute != CU_POINTER_ATTRIBUTE_MEMORY_TYPE) {
        fprintf(stderr, "vortex-emu: cuPointerGetAttribute: attribute %d is not emulated\n", attribute);
        abort();
    }
    if (!data) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct alloc *a = find_alloc(ptr);
    unsigned type = 0;
    if (a && a->live) type = CU_MEMORYTYPE_DEVICE;
    else if (find_pinned((const void *)(uintptr_t)ptr)) type = CU_MEMORYTYPE_HOST;
    pthread_mutex_unlock(&g_lock);
    if (!type) return CUDA_ERROR_INVALID_VALUE;
    *(unsigned *)data = type;
    return CUDA_SUCCESS;
}

/* ---------------------------------------------------------------------------------------- */
/* Streams and events: entry points                                                         */

CUresult cuStreamCreate(CUstream *out, unsigned int flags) {
    ENTER(NEED_CTX);
    if (!out || flags > 1) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_stream *s = new_stream();
    if (s) g.live_streams++;
    pthread_mutex_unlock(&g_lock);
    if (!s) return CUDA_ERROR_OUT_OF_MEMORY;
    *out = s;
    return CUDA_SUCCESS;
}

CUresult cuStreamDestroy_v2(CUstream h) {
    ENTER(NEED_CTX | RELEASE);
    pthread_mutex_lock(&g_lock);
    struct emu_stream *s;
    CUresult r = h ? stream_of(__func__, h, &s) : CUDA_ERROR_INVALID_HANDLE;
    if (!r) {
        /* work already queued still runs; the worker exits when it is done */
        pthread_mutex_lock(&s->m);
        s->destroyed = 1;
        s->flush_to = ~0ull;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->m);
        g.live_streams--;
    }
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuStreamSynchronize(CUstream h) {
    ENTER(NEED_CTX);
    pthread_mutex_lock(&g_lock);
    struct emu_stream *s;
    CUresult r = stream_of(__func__, h, &s);
    pthread_mutex_unlock(&g_lock);
    if (r) return r;
    pthread_mutex_lock(&s->m);
    unsigned long long seq = s->enqueued;
    pthread_mutex_unlock(&s->m);
    wait_for(s, seq);
    pthread_mutex_lock(&g_lock);
    r = g.sticky;
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuStreamQuery(CUstream h) {
    ENTER(NEED_CTX);
    pthread_mutex_lock(&g_lock);
    struct emu_stream *s;
    CUresult r = stream_of(__func__, h, &s);
    pthread_mutex_unlock(&g_lock);
    if (r) return r;
    pthread_mutex_lock(&s->m);
    int done = s->completed == s->enqueued;
    unsigned long long seq = s->enqueued;
    pthread_mutex_unlock(&s->m);
    if (!done) release_to(s, seq);
    return done ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

enum { CU_EVENT_BLOCKING_SYNC = 1, CU_EVENT_DISABLE_TIMING = 2, CU_EVENT_INTERPROCESS = 4 };

CUresult cuEventCreate(CUevent *out, unsigned int flags) {
    ENTER(NEED_CTX);
    if (!out || (flags & ~(unsigned)(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING))) return CUDA_ERROR_INVALID_VALUE;
    struct emu_event *e = calloc(1, sizeof *e);
    if (!e) return CUDA_ERROR_OUT_OF_MEMORY;
    e->magic = EVENT_MAGIC;
    e->timing = !(flags & CU_EVENT_DISABLE_TIMING);
    pthread_mutex_lock(&g_lock);
    e->next_all = g.events;
    g.events = e;
    g.live_events++;
    pthread_mutex_unlock(&g_lock);
    *out = e;
    return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent h) {
    ENTER(NEED_CTX | RELEASE);
    pthread_mutex_lock(&g_lock);
    struct emu_event *e;
    CUresult r = event_of(__func__, h, &e);
    if (!r) {
        e->destroyed = 1; /* kept: a pending record still names it, and reuse is reported */
        g.live_events--;
    }
    pthread_mutex_unlock(&g_lock);
    return r;
}

CUresult cuEventRecord(CUevent h, CUstream stream) {
    ENTER(NEED_CTX);
    struct op *op = new_op(OP_RECORD, 0, 0, 0);
    if (!op) return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_lock(&g_lock);
    struct emu_event *e;
    struct emu_stream *s;
    CUresult r = event_of(__func__, h, &e);
    if (!r) r = stream_of(__func__, stream, &s);
    if (r) {
        pthread_mutex_unlock(&g_lock);
        free(op);
        return r;
    }
    op->event = e;
    /* the event now stands for this record: stream and seq are set before the worker sees it */
    pthread_mutex_lock(&s->m);
    op->seq = ++s->enqueued;
    e->stream = s;
    e->seq = op->seq;
    e->recorded = 1;
    e->done = 0;
    e->queried = 0;
    if (s->tail) s->tail->next = op;
    else s->head = op;
    s->tail = op;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->m);
    pthread_mutex_unlock(&g_lock);
    return CUDA_SUCCESS;
}

CUresult cuEventQuery(CUevent h) {
    ENTER(NEED_CTX);
    pthread_mutex_lock(&g_lock);
    struct emu_event *e;
    CUresult r = event_of(__func__, h, &e);
    struct emu_stream *s = NULL;
    unsigned long long seq = 0;
    int first = 0;
    if (!r && e->recorded && !e->done) {
        r = CUDA_ERROR_NOT_READY;
        s = e->stream;
        seq = e->seq;
        first = !e->queried;
        e->queried = 1;
    }
    pthread_mutex_unlock(&g_lock);
    /* deferred mode: the first query answers NOT_READY and lets the work run */
    if (s && first) release_to(s, seq);
    return r;
}

CUresult cuEventSynchronize(CUevent h) {
    ENTER(NEED_CTX);
    pthread_mutex_lock(&g_lock);
    struct emu_event *e;
    CUresult r = event_of(__func__, h, &e);
    struct emu_stream *s = NULL;
    unsigned long long seq = 0;
    if (!r && e->recorded) {
        s = e->stream;
        seq = e->seq;
    }
    pthread_mutex_unlock(&g_lock);
    if (s) wait_for(s, seq);
    return r;
}

CUresult cuEventElapsedTime(float *ms, CUevent start, CUevent end) {
    ENTER(NEED_CTX);
    if (!ms) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g_lock);
    struct emu_event *a, *b;
    CUresult r = event_of(__func__, start, &a);
    if (!r) r = event_of(__func__, end, &b);
    if (!r && (!a->timing || !b->timing)) r = CUDA_ERROR_INVALID_HANDLE; /* timing disabled */
    else if (!r && (!a->recorded || !b->recorded)) r = CUDA_ERROR_INVALID_HANDLE; /* never recorded */
    else if (!r && (!a->done || !b->done)) r = CUDA_ERROR_NOT_READY;
    else if (!r)
        *ms = (float)((double)(b->at.tv_sec - a->at.tv_sec) * 1e3 +
                      (double)(b->at.tv_nsec - a->at.tv_nsec) / 1e6);
    pthread_mutex_unlock(&g_lock);
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Control: fault injection and counters for tests                                          */

long long vortex_emu_control(const char *key, long long value) {
    pthread_once(&g_once, configure);
    long long out = 0;
    pthread_mutex_lock(&g_lock);
    if (!strcmp(key, "fail_alloc_at")) g.fail_alloc_at = value;      /* Nth cuMemAlloc from now */
    else if (!strcmp(key, "init_error")) g.init_error = (int)value;  /* what cuInit returns */
    else if (!strcmp(key, "device_lost_after")) g.lost_after = value; /* after N more calls */
    else if (!strcmp(key, "device_lost_code")) g.lost_code = (int)value;
    else if (!strcmp(key, "deferred")) g.deferred = value != 0;     /* for streams made later */
    else if (!strcmp(key, "misuse_abort")) g.misuse_abort = value != 0;
    else if (!strcmp(key, "driver_version")) g.driver_version = (int)value; /* 12040 = 12.4 */
    else if (!strcmp(key, "reset")) {
        g.fail_alloc_at = 0;
        g.init_error = 0;
        g.lost_after = -1;
        g.lost = 0;
        g.lost_code = CUDA_ERROR_UNKNOWN;
        g.sticky = 0;
        g.driver_version = 13000;
    } else if (!strcmp(key, "live_allocations")) {
        for (size_t i = 0; i < g.nallocs; i++) out += g.allocs[i].live;
    } else if (!strcmp(key, "live_pinned")) {
        for (size_t i = 0; i < g.npinned; i++) out += g.pinned[i].live;
    } else if (!strcmp(key, "live_streams")) out = g.live_streams;
    else if (!strcmp(key, "live_events")) out = g.live_events;
    else if (!strcmp(key, "misuse_reports")) out = g.misuse_reports;
    else if (!strcmp(key, "leak_reports")) out = g.leak_reports;
    else if (!strcmp(key, "context_refs")) out = g.refs;
    else if (!strcmp(key, "calls")) out = g.calls;
    else {
        fprintf(stderr, "vortex-emu: vortex_emu_control: unknown key %s\n", key);
        out = -1;
    }
    pthread_mutex_unlock(&g_lock);
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* Every other entry point cust_raw declares, appended by `cargo xtask cuda-emu`: each aborts
 * with its own name.                                                                       */
