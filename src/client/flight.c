/* Single-flight: identical GET and HEAD calls in flight in one worker share
 * one upstream exchange, and each waiting call gets its own copy of the
 * response. The exchange belongs to the worker, not to any request: it is a
 * request of its own (a runtime request with no handler, whose only op is
 * the upstream call), so that it outlives the request that started it, and
 * a background refresh (stale-while-revalidate) outlives every request. A
 * cancelled waiter leaves alone; the exchange is cancelled when its last
 * waiter left, unless it is a refresh, which runs to its end or its
 * timeout. The request, and the flight in its arena, are freed when the
 * upstream call ended and its waiters got their copies.
 *
 * Exchanges that may be joined live in a hash table by key (method, URL,
 * request headers, timeouts and body limit: see cache.c); every live one
 * is also on a list, for the shutdown. */
#include <stdlib.h>
#include <string.h>

#include "client/flight.h"
#include "core/log.h"

typedef struct fan__flight {
    fan__rt rt;               /* its request: first, so that a flight is a fan_req */
    struct fan__flight *next; /* hash chain, while joinable */
    fan__list all_link;       /* every live flight of the worker */
    unsigned hash;
    int joinable, background, done, cancelled;
    fan_call *up;      /* the upstream call, in rt */
    fan__list waiters; /* fan_call.flight_link */
    unsigned nwaiters;
    fan_call *first;  /* the waiter that started it, while it waits */
    char *key, *ckey; /* in rt's arena */
    size_t klen, cklen;
    int cache, shared; /* stored in the cache; and in its shared tier */
    unsigned ttl_ms, swr_ms, sie_ms;
    char *vary_names; /* the cache_vary names, as fan__cache_store() takes them */
    char *label;      /* for log lines: "shared call NAME" */
} fan__flight;

typedef struct flights {
    fan__flight **table;
    size_t nbuckets, njoinable;
    fan__list all;
} flights;

static _Thread_local flights F;

static int table_ready(void)
{
    if (F.table)
        return 1;
    F.nbuckets = 64;
    F.table = calloc(F.nbuckets, sizeof *F.table);
    fan__list_init(&F.all);
    return F.table != NULL;
}

static fan__flight **slot_of(const char *key, size_t klen, unsigned h)
{
    fan__flight **p = &F.table[h & (F.nbuckets - 1)];
    while (*p && !((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->key, key, klen) == 0))
        p = &(*p)->next;
    return p;
}

static void grow(void)
{
    size_t n = F.nbuckets * 2;
    fan__flight **t = calloc(n, sizeof *t);
    if (!t)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < F.nbuckets; i++)
        for (fan__flight *f = F.table[i], *next; f; f = next) {
            next = f->next;
            f->next = t[f->hash & (n - 1)];
            t[f->hash & (n - 1)] = f;
        }
    free(F.table);
    F.table = t;
    F.nbuckets = n;
}

static void make_joinable(fan__flight *f)
{
    if (F.njoinable >= F.nbuckets)
        grow();
    fan__flight **p = &F.table[f->hash & (F.nbuckets - 1)];
    f->next = *p;
    *p = f;
    f->joinable = 1;
    F.njoinable++;
}

/* No later call joins it: it ends, or ends without waiters. */
static void unjoin(fan__flight *f)
{
    if (!f->joinable)
        return;
    fan__flight **p = slot_of(f->key, f->klen, f->hash);
    if (*p == f)
        *p = f->next;
    f->joinable = 0;
    F.njoinable--;
}

static void flight_returned(fan_req *rq)
{
    (void)rq; /* it has no handler */
}

static void flight_finished(fan_req *rq)
{
    fan__flight *f = (fan__flight *)(void *)rq;
    fan__list_remove(&f->all_link);
    fan__rt_run_defers(rq);
    fan__rt_free(rq); /* the flight too: it is in the arena */
}

static const char *flight_describe(const fan_req *rq)
{
    return ((const fan__flight *)(const void *)rq)->label;
}

static const fan__rt_hooks flight_hooks = {
    .returned = flight_returned,
    .finished = flight_finished,
    .describe = flight_describe,
};

/* A new flight for the keys and cache settings of `model`, with its own
 * request (the model's limits and upstream settings) and nothing running
 * yet. NULL when out of memory. */
static fan__flight *flight_new(const fan_call *model)
{
    const fan__rt *from = fan__rt_of(model->rq);
    fan__flight *f = (fan__flight *)(void *)fan__rt_new(sizeof(fan__flight), 0, from->limits,
                                                        from->upstreams, &flight_hooks);
    if (!f)
        return NULL;
    fan__arena *fa = &f->rt.arena;
    fan__list_init(&f->waiters);
    f->key = fan__arena_strndup(fa, model->fkey, model->fklen);
    f->ckey = model->ckey ? fan__arena_strndup(fa, model->ckey, model->cklen) : NULL;
    f->label = fan_sprintf((fan_req *)(void *)f, "shared call %s", model->name);
    f->vary_names = model->vary_names ? fan__arena_strdup(fa, model->vary_names) : NULL;
    if (!f->key || (model->ckey && !f->ckey) || !f->label ||
        (model->vary_names && !f->vary_names)) {
        fan__rt_free((fan_req *)(void *)f);
        return NULL;
    }
    f->klen = model->fklen;
    f->cklen = model->cklen;
    f->hash = fan__origin_hash(f->key, f->klen);
    f->cache = model->use_cache;
    f->ttl_ms = model->cache_ttl_ms;
    f->shared = model->use_shared;
    f->swr_ms = model->swr_ms;
    f->sie_ms = model->sie_ms;
    fan__list_push(&F.all, &f->all_link);
    return f;
}

/* Starts the flight's upstream call, under a hold of its request: the call
 * may end at once (refused, busy), its waiters answered then, and the
 * flight must outlive this. Returns 0 or FAN_ENOMEM. The caller ends the
 * hold with release(), after which the flight may be gone. */
static int launch(fan__flight *f, const fan_call *model)
{
    f->rt.busy++;
    f->up = fan__call_start_shared((fan_req *)(void *)f, model, f);
    if (!f->up)
        unjoin(f);
    return f->up ? 0 : FAN_ENOMEM;
}

static void release(fan__flight *f)
{
    f->rt.busy--;
    fan__req_notify((fan_req *)(void *)f); /* frees it when its call ended or was never made */
}

static void add_waiter(fan__flight *f, fan_call *c)
{
    fan__list_push(&f->waiters, &c->flight_link);
    f->nwaiters++;
    c->flight = f;
}

static void remove_waiter(fan__flight *f, fan_call *c)
{
    fan__list_remove(&c->flight_link);
    f->nwaiters--;
    c->flight = NULL;
    if (f->first == c)
        f->first = NULL;
}

static fan__flight *joinable(const char *key, size_t klen)
{
    return *slot_of(key, klen, fan__origin_hash(key, klen));
}

int fan__flight_join(fan_call *c, int shared)
{
    if (!table_ready())
        return FAN_ENOMEM;
    fan_cache_counters *n = fan__cache_counters();
    fan__flight *f = shared ? joinable(c->fkey, c->fklen) : NULL;
    if (f) {
        add_waiter(f, c);
        n->coalesced++;
        fan_log(FAN_LOG_DEBUG, "call %s: joined the exchange in flight (%u waiting)", c->name,
                f->nwaiters);
        return 0;
    }
    if (!(f = flight_new(c)))
        return FAN_ENOMEM;
    if (shared)
        make_joinable(f);
    add_waiter(f, c);
    f->first = c;
    n->exchanges++;
    int rc = launch(f, c);
    if (rc != 0)
        remove_waiter(f, c);
    release(f);
    return rc;
}

void fan__flight_refresh(const fan_call *c)
{
    if (!table_ready() || joinable(c->fkey, c->fklen))
        return; /* its exchange in flight will store the response */
    fan__flight *f = flight_new(c);
    if (!f)
        return;
    f->background = 1;
    make_joinable(f);
    fan__cache_counters()->refreshes++;
    fan__cache_counters()->exchanges++;
    fan_log(FAN_LOG_DEBUG, "call %s: refreshing its stale cache entry in the background", c->name);
    launch(f, c);
    release(f);
}

void fan__flight_leave(fan_call *c)
{
    fan__flight *f = c->flight;
    remove_waiter(f, c);
    fan__call_finish(c, FAN_ECANCELED);
    if (f->nwaiters || f->background || f->done || f->cancelled)
        return;
    /* The last waiter went: nobody wants the response any more. */
    unjoin(f);
    f->cancelled = 1;
    fan_log(FAN_LOG_DEBUG, "%s: its last waiter left: cancelled", f->label);
    fan_call_cancel(f->up); /* may free the flight */
}

void fan__flight_done(fan_call *up)
{
    fan__flight *f = up->leads;
    f->done = 1;
    unjoin(f);
    if (f->cache && f->ckey)
        fan__cache_store(up, f->ckey, f->cklen, f->ttl_ms, f->swr_ms, f->sie_ms, f->vary_names,
                         f->shared);
    /* The waiters share the body, read-only, instead of a copy each: the
     * flight holds one reference while it hands them out. Out of memory:
     * each copies it. */
    fan__shared_body *body = NULL;
    if (f->nwaiters > 1 && up->resp_body.len && (body = malloc(sizeof *body))) {
        body->refs = 1;
        body->buf = up->resp_body;
        memset(&up->resp_body, 0, sizeof up->resp_body);
    }
    /* A waiter's end may resume its handler, which may cancel other
     * waiters of this flight (they leave the list) or start calls of the
     * same key (a new flight: this one is no longer joinable). */
    while (!fan__list_empty(&f->waiters)) {
        fan_call *w = fan__container_of(f->waiters.next, fan_call, flight_link);
        int first = w == f->first;
        remove_waiter(f, w);
        fan__cache_deliver(w, up, body, first);
    }
    if (body)
        fan__shared_body_unref(body);
}

void fan__shared_body_unref(fan__shared_body *b)
{
    if (--b->refs)
        return;
    fan__buf_free(&b->buf);
    free(b);
}

void fan__flight_cancel_all(int waited_for_too)
{
    if (!F.table)
        return;
    for (int again = 1; again;) {
        again = 0;
        fan__list *pos;
        fan__list_each(pos, &F.all)
        {
            fan__flight *f = fan__container_of(pos, fan__flight, all_link);
            if (f->done || f->cancelled || !f->up || (f->nwaiters && !waited_for_too))
                continue;
            unjoin(f);
            f->cancelled = 1;
            fan_call_cancel(f->up); /* may free it, and change the list */
            again = 1;
            break;
        }
    }
}

void fan__flight_shutdown(void)
{
    /* Every flight ended with the requests (each is one): only the table is left. */
    free(F.table);
    F.table = NULL;
    F.nbuckets = F.njoinable = 0;
}
