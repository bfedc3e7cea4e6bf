/* Metrics and the waterfall's records in memory that every worker of a
 * master shares (metrics.c). The master maps one region (MAP_SHARED |
 * MAP_ANONYMOUS) before it forks; each worker writes to its own lane, with
 * relaxed atomic adds (two generations of a slot share a lane during a
 * reload), so a scrape served by any worker sums every lane, and a
 * restarted worker's counts stay in the lane its successor goes on with.
 * The label sets are bounded: the series of each family live in a table of
 * the region (fan__metrics_region.max_series entries), which new label sets
 * enter under a lock and which then only grows; a label set beyond it is
 * counted in the family's overflow series. A process that serves without a
 * master maps a region of one lane on first use. Internal to libfanout. */
#ifndef FAN_RUNTIME_METRICS_H
#define FAN_RUNTIME_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/trace.h"

/* OpenTelemetry's default buckets of http.*.request.duration, in seconds. */
#define FAN__M_NBUCKETS 14
extern const double fan__metrics_bounds[FAN__M_NBUCKETS];

#define FAN__M_LABEL 96 /* bytes of a label value kept (route, address) */
#define FAN__M_DEFAULT_SERIES 500
#define FAN__M_MAX_SERIES 100000

/* The families of labelled histograms. */
enum { FAN__M_SERVER, FAN__M_CLIENT, FAN__M_NFAMILIES };

/* Plain counters and gauges of a lane. */
enum {
    FAN__M_REQUESTS_ACTIVE, /* gauge */
    FAN__M_CALLS_ACTIVE,    /* gauge */
    FAN__M_QUEUE_WAITS,
    FAN__M_QUEUE_REFUSALS,
    FAN__M_RETRIES,
    FAN__M_HEDGES,
    FAN__M_BUDGET_REFUSALS,
    FAN__M_BREAKER_CHANGES,
    FAN__M_CACHE_HITS,
    FAN__M_CACHE_MISSES,
    FAN__M_COALESCED,
    FAN__M_SPANS_EXPORTED,
    FAN__M_SPANS_DROPPED,
    FAN__M_NCOUNTERS
};

/* A series' labels. For FAN__M_SERVER: a = method, b = route, status; for
 * FAN__M_CLIENT: a = error kind ("" for none), b = upstream address, status
 * (0 when no response). overflow marks the family's series of label sets
 * beyond the table. */
typedef struct fan__m_key {
    char a[16];
    char b[FAN__M_LABEL];
    int status;
    int overflow;
} fan__m_key;

/* A histogram: counts per bucket (not cumulative), the count and the sum
 * in microseconds. */
typedef struct fan__m_hist {
    uint64_t buckets[FAN__M_NBUCKETS + 1]; /* the last: above every bound */
    uint64_t count, sum_us;
} fan__m_hist;

/* The waterfall's record of a request: its calls as offsets from its
 * start, the allow-listed headers. The path (with its query) and the call
 * names are kept as they were, cut to fit: whatever shows them redacts
 * them (core/redact.h), which costs the request path nothing. */
#define FAN__WF_CALLS 24
#define FAN__WF_RECENT 32  /* per lane */
#define FAN__WF_SLOWEST 32 /* routes per lane */

typedef struct fan__wf_call {
    char name[64];
    float start_ms, dur_ms;
    int status;
    char error[16];
    unsigned short attempts, hedges;
} fan__wf_call;

typedef struct fan__wf_req {
    unsigned seq; /* odd while written: readers skip or retry */
    unsigned used;
    double wall; /* when it started, seconds since the epoch */
    char method[16];
    char route[FAN__M_LABEL];
    char path[160];
    char headers[256]; /* "name: value\n" of the allow-list */
    char trace_id[33];
    int status;
    float dur_ms;
    unsigned ncalls; /* made; at most FAN__WF_CALLS kept */
    unsigned pid;
    fan__wf_call calls[FAN__WF_CALLS];
} fan__wf_req;

typedef struct fan__m_lane {
    int64_t counters[FAN__M_NCOUNTERS];
    uint64_t wf_next; /* the next of recent[] to write */
    fan__wf_req recent[FAN__WF_RECENT];
    fan__wf_req slowest[FAN__WF_SLOWEST];
    /* then FAN__M_NFAMILIES * max_series fan__m_hist */
} fan__m_lane;

typedef struct fan__metrics_region {
    uint64_t magic;
    size_t size, lane_size;
    unsigned nlanes, max_series;
    int lock; /* taken to add a series */
    unsigned nseries[FAN__M_NFAMILIES];
    uint64_t worker_restarts;
    double started; /* wall time the region was made */
    /* then FAN__M_NFAMILIES * max_series fan__m_key, then the lanes */
} fan__metrics_region;

/* Maps a region of `nlanes` lanes and `max_series` series per family.
 * Returns NULL (logged) when mmap fails. Freed with fan__metrics_unmap(). */
fan__metrics_region *fan__metrics_map(unsigned nlanes, unsigned max_series);
void fan__metrics_unmap(fan__metrics_region *r);

/* This process writes to lane `lane` of `r` from now on (a worker, after
 * fork). */
void fan__metrics_attach(fan__metrics_region *r, unsigned lane);

/* The region this process writes to: the attached one, or a private one of
 * one lane mapped on first use (NULL if that fails: nothing is counted). */
fan__metrics_region *fan__metrics_current(void);

/* The max_series a region mapped on first use gets (set before). */
void fan__metrics_set_max_series(unsigned n);

/* Access to the region's parts, for the renderers. */
fan__m_key *fan__metrics_keys(fan__metrics_region *r, int family);
fan__m_lane *fan__metrics_lane(fan__metrics_region *r, unsigned lane);
fan__m_hist *fan__metrics_hists(fan__metrics_region *r, fan__m_lane *l, int family);

/* A label set's series remembered by the object its labels come from (a
 * route's handler, an origin), so that observing it again costs neither a
 * key nor a lookup: the series' index in the region this process writes to,
 * and `tag`, what tells apart the label sets the object may be asked about
 * (the method and the status). Zeroed: remembers nothing. Read and written
 * with relaxed atomics, as one word. */
typedef struct fan__m_memo {
    uint64_t v;
} fan__m_memo;

/* Counting, from the request and call paths: cheap, never fails. The
 * common case inline: the counters of this process's lane, once it has
 * one (fan__metrics_add_slow() maps a region on first use). */
extern int64_t *fan__metrics_counters;
void fan__metrics_add_slow(int counter, int64_t n);

static inline void fan__metrics_add(int counter, int64_t n)
{
    if (fan__metrics_counters)
        __atomic_fetch_add(&fan__metrics_counters[counter], n, __ATOMIC_RELAXED);
    else
        fan__metrics_add_slow(counter, n);
}

/* Adds `seconds` to the series of `k` in `family`. With a memo (NULL for
 * none), remembers the series in it for `tag` (below 65536). */
void fan__metrics_observe(int family, const fan__m_key *k, double seconds, fan__m_memo *memo,
                          uint32_t tag);

/* Adds `seconds` to the series `memo` remembers for `tag` in `family` and
 * returns 0; returns -1, counting nothing, when it remembers none for `tag`
 * (or another region's): the caller then makes the key and calls
 * fan__metrics_observe(). */
int fan__metrics_observe_memo(int family, const fan__m_memo *memo, uint32_t tag, double seconds);

/* Zeroes the gauges of `lane`: its worker ended, perhaps with requests in
 * flight; counts a worker restart when `restarted`. */
void fan__metrics_lane_died(fan__metrics_region *r, unsigned lane, int restarted);

/* Reads `src` into `dst` consistently (the writer may be another process):
 * returns 0, or -1 if it kept changing or is unused. */
int fan__wf_read(const fan__wf_req *src, fan__wf_req *dst);

/* Recording a finished request: fan__wf_begin() returns the next record
 * of this lane's recent ring, marked as being written (or NULL when there
 * is no region), which the caller fills in whole, seq aside; then
 * fan__wf_commit() publishes it, and copies it as its route's slowest if it
 * is. */
fan__wf_req *fan__wf_begin(void);
void fan__wf_commit(fan__wf_req *w);

#endif
