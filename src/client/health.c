/* What a worker knows of each upstream origin that retries, hedges or a
 * breaker act on: its calls and retries in flight (the retry budget), the
 * latencies of its successful tries (the p95 that adaptive hedging waits
 * for) and its breaker's counts (breaker.c reads them). One table per
 * worker thread, no locks: each worker has its own loop and its own view,
 * as Envoy's per-thread circuit breakers do. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client/resilience.h"
#include "core/log.h"
#include "runtime/metrics.h"

#define HIST_DECAY 1024 /* the histogram halves its counts at this many */
#define P95_MIN_SAMPLES 20

typedef struct health_table {
    fan__health **table;
    size_t nbuckets, n;
    double full_logged;
} health_table;

static _Thread_local health_table *T;

static int grow(void)
{
    size_t n = T->nbuckets ? T->nbuckets * 2 : 64;
    fan__health **t = calloc(n, sizeof *t);
    if (!t)
        return T->nbuckets ? 0 : -1; /* longer chains, still correct */
    for (size_t i = 0; i < T->nbuckets; i++)
        for (fan__health *h = T->table[i], *next; h; h = next) {
            next = h->next;
            h->next = t[h->hash & (n - 1)];
            t[h->hash & (n - 1)] = h;
        }
    free(T->table);
    T->table = t;
    T->nbuckets = n;
    return 0;
}

fan__health *fan__health_of(const char *url, size_t max_origins)
{
    char key[512];
    size_t len = fan__origin_key(url, key, sizeof key);
    if (!len || (!T && !(T = calloc(1, sizeof *T))) || (!T->table && grow() != 0))
        return NULL;
    unsigned hash = fan__origin_hash(key, len);
    for (fan__health *h = T->table[hash & (T->nbuckets - 1)]; h; h = h->next)
        if (h->hash == hash && h->len == len && memcmp(h->key, key, len) == 0)
            return h;
    if (T->n >= max_origins) {
        double now = fan_now();
        if (!T->full_logged || now - T->full_logged >= 1) {
            T->full_logged = now;
            fan_log(FAN_LOG_WARN,
                    "calls to %.*s are tried once, unhedged and without a breaker: the worker "
                    "keeps state for %zu origins already (max_origins)",
                    (int)len, key, T->n);
        }
        return NULL;
    }
    fan__health *h = calloc(1, sizeof *h + len + 1);
    if (!h)
        return NULL;
    memcpy(h->key, key, len);
    h->len = len;
    h->hash = hash;
    if (++T->n > T->nbuckets)
        grow();
    h->next = T->table[hash & (T->nbuckets - 1)];
    T->table[hash & (T->nbuckets - 1)] = h;
    return h;
}

void fan__health_shutdown(void)
{
    if (!T)
        return;
    for (size_t i = 0; i < T->nbuckets; i++)
        for (fan__health *h = T->table[i], *next; h; h = next) {
            next = h->next;
            free(h);
        }
    free(T->table);
    free(T);
    T = NULL;
}

int fan__health_budget_take(fan__health *h, const fan_call *c, const char *what)
{
    const fan_origin_opts *o = c->origin_cfg ? &c->origin_cfg->opts : NULL;
    size_t percent = o && o->budget_percent ? o->budget_percent : 20;
    size_t min = o && o->budget_min ? o->budget_min : 3;
    size_t allowed = h->calls * percent / 100;
    if (allowed < min)
        allowed = min;
    if (h->retries < allowed) {
        h->retries++;
        return 1;
    }
    h->refused++;
    fan__metrics_add(FAN__M_BUDGET_REFUSALS, 1);
    fan_log(FAN_LOG_DEBUG,
            "call %s: no %s: the retry budget of %s is spent (%zu retries and hedges in "
            "flight of %zu allowed for %zu calls); %lu refused in this worker",
            c->name, what, h->key, h->retries, allowed, h->calls, h->refused);
    return 0;
}

void fan__health_budget_put(fan__health *h)
{
    h->retries--;
}

/* Bucket i holds latencies below 2^((i+1)/4) ms. */
static unsigned bucket_of(double ms)
{
    if (ms < 1)
        return 0;
    double b = floor(4 * log2(ms));
    return b >= FAN__HEALTH_BUCKETS - 1 ? FAN__HEALTH_BUCKETS - 1 : (unsigned)b;
}

static void record_latency(fan__health *h, double ms)
{
    if (++h->hist_n > HIST_DECAY) { /* the recent past counts most */
        h->hist_n = 0;
        for (unsigned i = 0; i < FAN__HEALTH_BUCKETS; i++)
            h->hist_n += h->hist[i] /= 2;
        h->hist_n++;
    }
    h->hist[bucket_of(ms)]++;
}

unsigned fan__health_p95_ms(const fan__health *h)
{
    if (h->hist_n < P95_MIN_SAMPLES)
        return 0;
    unsigned need = h->hist_n - h->hist_n / 20, seen = 0;
    for (unsigned i = 0; i < FAN__HEALTH_BUCKETS; i++)
        if ((seen += h->hist[i]) >= need)
            return (unsigned)ceil(exp2((i + 1) / 4.0));
    return (unsigned)exp2(FAN__HEALTH_BUCKETS / 4.0);
}

/* Errors of our own making say nothing about the origin. */
static int local_error(int error)
{
    return error == FAN_ECANCELED || error == FAN_EINVAL || error == FAN_ENOMEM ||
           error == FAN_EBUSY || error == FAN_ETOOLARGE || error == FAN_EOPEN;
}

void fan__health_exchange_end(fan__health *h, fan_call *x)
{
    if (x->error == FAN_ECANCELED || local_error(x->error)) {
        if (x->probe)
            fan__breaker_record(h, x, -1);
        return;
    }
    int failed = x->error != 0 || x->status >= 500;
    if (!failed)
        record_latency(h, (x->finished - x->started) * 1000);
    fan__breaker_record(h, x, failed);
}
