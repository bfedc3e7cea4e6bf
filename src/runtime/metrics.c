/* The shared metrics region (metrics.h): mapping it, its lanes, the bounded
 * series tables, counting and the waterfall's records. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "core/log.h"
#include "fanout.h"
#include "runtime/metrics.h"

#define MAGIC 0x66616e6f75746d31ull /* "fanoutm1" */
#define CACHE 4096                  /* per family, a power of two */

const double fan__metrics_bounds[FAN__M_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                                     0.5,   0.75, 1,     2.5,  5,     7.5, 10};

/* The header is followed by the key tables, then the lanes: keep both
 * aligned for their 64-bit atomics. */
typedef struct region_head {
    fan__metrics_region r;
    pthread_mutex_t mutex; /* process-shared and robust: a worker that dies
                            * holding it does not stop the others */
} region_head;

typedef struct cache_slot {
    uint32_t hash;
    int32_t idx1; /* index + 1; 0 for empty */
} cache_slot;

static fan__metrics_region *region; /* what this process writes to */
static fan__m_lane *lane;
int64_t *fan__metrics_counters; /* lane's */
static fan__m_hist *hists[FAN__M_NFAMILIES]; /* lane's, per family */
static uint64_t generation;                  /* of region: memos of an earlier one do not match */
static unsigned default_series = FAN__M_DEFAULT_SERIES;
static _Thread_local cache_slot (*cache)[CACHE];

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static size_t keys_offset(void)
{
    return align64(sizeof(region_head));
}

static size_t lanes_offset(unsigned max_series)
{
    return keys_offset() +
           align64((size_t)FAN__M_NFAMILIES * (max_series + 1) * sizeof(fan__m_key));
}

fan__metrics_region *fan__metrics_map(unsigned nlanes, unsigned max_series)
{
    if (max_series < 1)
        max_series = 1;
    size_t lane_size = align64(sizeof(fan__m_lane)) +
                       (size_t)FAN__M_NFAMILIES * (max_series + 1) * sizeof(fan__m_hist);
    lane_size = align64(lane_size);
    size_t size = lanes_offset(max_series) + (size_t)nlanes * lane_size;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fan_log(FAN_LOG_ERROR, "metrics: cannot map %zu bytes of shared memory", size);
        return NULL;
    }
    region_head *h = p; /* zeroed by mmap */
    h->r.magic = MAGIC;
    h->r.size = size;
    h->r.lane_size = lane_size;
    h->r.nlanes = nlanes;
    h->r.max_series = max_series;
    h->r.started = (double)time(NULL);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&h->mutex, &a);
    pthread_mutexattr_destroy(&a);
    for (int f = 0; f < FAN__M_NFAMILIES; f++)
        fan__metrics_keys(&h->r, f)[max_series].overflow = 1;
    return &h->r;
}

void fan__metrics_unmap(fan__metrics_region *r)
{
    if (!r)
        return;
    if (r == region)
        fan__metrics_attach(NULL, 0);
    munmap(r, r->size);
}

void fan__metrics_attach(fan__metrics_region *r, unsigned l)
{
    region = r;
    lane = r ? fan__metrics_lane(r, l % r->nlanes) : NULL;
    fan__metrics_counters = lane ? lane->counters : NULL;
    for (int f = 0; f < FAN__M_NFAMILIES; f++)
        hists[f] = lane ? fan__metrics_hists(r, lane, f) : NULL;
    generation = (generation + 1) & 0xffff; /* 16 bits of a memo; 0 is never a region's */
    if (!generation)
        generation = 1;
    free(cache);
    cache = NULL; /* indexes of another region */
}

void fan__metrics_set_max_series(unsigned n)
{
    default_series = n;
}

fan__metrics_region *fan__metrics_current(void)
{
    if (!region) {
        fan__metrics_region *r = fan__metrics_map(1, default_series);
        if (r)
            fan__metrics_attach(r, 0);
    }
    return region;
}

fan__m_key *fan__metrics_keys(fan__metrics_region *r, int family)
{
    return (fan__m_key *)((char *)r + keys_offset()) + (size_t)family * (r->max_series + 1);
}

fan__m_lane *fan__metrics_lane(fan__metrics_region *r, unsigned l)
{
    return (fan__m_lane *)((char *)r + lanes_offset(r->max_series) + (size_t)l * r->lane_size);
}

fan__m_hist *fan__metrics_hists(fan__metrics_region *r, fan__m_lane *l, int family)
{
    return (fan__m_hist *)((char *)l + align64(sizeof(fan__m_lane))) +
           (size_t)family * (r->max_series + 1);
}

void fan__metrics_add_slow(int counter, int64_t n)
{
    if (lane || fan__metrics_current())
        __atomic_fetch_add(&lane->counters[counter], n, __ATOMIC_RELAXED);
}

static uint32_t key_hash(const fan__m_key *k)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *s = k->a; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    for (const char *s = k->b; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (h ^ (uint32_t)k->status) * 16777619u;
}

static int key_eq(const fan__m_key *x, const fan__m_key *y)
{
    return x->status == y->status && !x->overflow && strcmp(x->a, y->a) == 0 &&
           strcmp(x->b, y->b) == 0;
}

static int find_shared(fan__m_key *keys, unsigned n, const fan__m_key *k)
{
    for (unsigned i = 0; i < n; i++)
        if (key_eq(&keys[i], k))
            return (int)i;
    return -1;
}

/* The series of `k` in `family`: found or added under the region's lock,
 * or the overflow series when the table is full. */
static unsigned series_shared(int family, const fan__m_key *k)
{
    fan__m_key *keys = fan__metrics_keys(region, family);
    unsigned *np = &region->nseries[family];
    int i = find_shared(keys, __atomic_load_n(np, __ATOMIC_ACQUIRE), k);
    if (i >= 0)
        return (unsigned)i;
    pthread_mutex_t *m = &((region_head *)(void *)region)->mutex;
    if (pthread_mutex_lock(m) == EOWNERDEAD)
        pthread_mutex_consistent(m); /* the tables are only appended to: still whole */
    unsigned n = *np;
    i = find_shared(keys, n, k);
    if (i < 0 && n < region->max_series) {
        keys[n] = *k;
        keys[n].overflow = 0;
        __atomic_store_n(np, n + 1, __ATOMIC_RELEASE);
        i = (int)n;
    }
    pthread_mutex_unlock(m);
    return i < 0 ? region->max_series : (unsigned)i;
}

static unsigned series_of(int family, const fan__m_key *k)
{
    if (!cache)
        cache = calloc(FAN__M_NFAMILIES, sizeof *cache);
    if (!cache)
        return series_shared(family, k);
    fan__m_key *keys = fan__metrics_keys(region, family);
    uint32_t h = key_hash(k);
    cache_slot *c = cache[family];
    for (uint32_t j = 0; j < CACHE; j++) {
        cache_slot *s = &c[(h + j) & (CACHE - 1)];
        if (s->idx1 == 0) {
            unsigned i = series_shared(family, k);
            if (i < region->max_series) { /* overflow is looked up again: the table may free */
                s->hash = h;
                s->idx1 = (int32_t)i + 1;
            }
            return i;
        }
        if (s->hash == h && key_eq(&keys[s->idx1 - 1], k))
            return (unsigned)(s->idx1 - 1);
    }
    return series_shared(family, k);
}

static void record(fan__m_hist *hist, double seconds)
{
    unsigned b = 0;
    while (b < FAN__M_NBUCKETS && seconds > fan__metrics_bounds[b])
        b++;
    __atomic_fetch_add(&hist->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&hist->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&hist->sum_us, (uint64_t)(seconds > 0 ? seconds * 1e6 : 0),
                       __ATOMIC_RELAXED);
}

/* A memo's word: the region's generation, the tag, the index + 1. */
static uint64_t memo_word(uint32_t tag, unsigned i)
{
    return generation << 48 | (uint64_t)tag << 32 | (uint64_t)(i + 1);
}

void fan__metrics_observe(int family, const fan__m_key *k, double seconds, fan__m_memo *memo,
                          uint32_t tag)
{
    if (!lane && !fan__metrics_current())
        return;
    unsigned i = series_of(family, k);
    record(hists[family] + i, seconds);
    /* Not the overflow series: the table may have room for it later. */
    if (memo && tag <= 0xffff && i < region->max_series)
        __atomic_store_n(&memo->v, memo_word(tag, i), __ATOMIC_RELAXED);
}

int fan__metrics_observe_memo(int family, const fan__m_memo *memo, uint32_t tag, double seconds)
{
    uint64_t v = __atomic_load_n(&memo->v, __ATOMIC_RELAXED);
    if (!lane || tag > 0xffff || v >> 32 != memo_word(tag, 0) >> 32)
        return -1;
    record(hists[family] + (uint32_t)v - 1, seconds);
    return 0;
}

void fan__metrics_lane_died(fan__metrics_region *r, unsigned l, int restarted)
{
    fan__m_lane *ln = fan__metrics_lane(r, l % r->nlanes);
    __atomic_store_n(&ln->counters[FAN__M_REQUESTS_ACTIVE], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&ln->counters[FAN__M_CALLS_ACTIVE], 0, __ATOMIC_RELAXED);
    if (restarted)
        __atomic_fetch_add(&r->worker_restarts, 1, __ATOMIC_RELAXED);
}

int fan__wf_read(const fan__wf_req *src, fan__wf_req *dst)
{
    for (int tries = 0; tries < 8; tries++) {
        unsigned s = __atomic_load_n(&src->seq, __ATOMIC_ACQUIRE);
        if (s & 1)
            continue;
        memcpy(dst, src, sizeof *dst); /* may tear: the second read of seq says */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&src->seq, __ATOMIC_RELAXED) == s)
            return dst->used ? 0 : -1;
    }
    return -1;
}

static void wf_write(fan__wf_req *dst, const fan__wf_req *rec)
{
    unsigned s = dst->seq;
    __atomic_store_n(&dst->seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy((char *)dst + sizeof dst->seq, (const char *)rec + sizeof rec->seq,
           sizeof *rec - sizeof rec->seq);
    __atomic_store_n(&dst->seq, s + 2, __ATOMIC_RELEASE);
}

fan__wf_req *fan__wf_begin(void)
{
    if (!lane && !fan__metrics_current())
        return NULL;
    uint64_t i = __atomic_fetch_add(&lane->wf_next, 1, __ATOMIC_RELAXED);
    fan__wf_req *w = &lane->recent[i % FAN__WF_RECENT];
    __atomic_store_n(&w->seq, w->seq | 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return w;
}

void fan__wf_commit(fan__wf_req *rec)
{
    __atomic_store_n(&rec->seq, rec->seq + 1, __ATOMIC_RELEASE);
    /* The slowest of its route: the route's entry, or an empty one, or the
     * fastest of the routes when all are taken. */
    fan__wf_req *slot = NULL, *fastest = NULL;
    for (unsigned j = 0; j < FAN__WF_SLOWEST; j++) {
        fan__wf_req *s = &lane->slowest[j];
        if (!s->used) {
            slot = slot ? slot : s;
            continue;
        }
        if (strcmp(s->route, rec->route) == 0 && strcmp(s->method, rec->method) == 0) {
            if (s->dur_ms < rec->dur_ms)
                wf_write(s, rec);
            return;
        }
        if (!fastest || s->dur_ms < fastest->dur_ms)
            fastest = s;
    }
    if (!slot && fastest && fastest->dur_ms < rec->dur_ms)
        slot = fastest;
    if (slot)
        wf_write(slot, rec);
}
