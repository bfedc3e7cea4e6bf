/* Limits on upstream calls in flight, per worker and per origin, whatever
 * the transport: a call beyond them waits in a bounded FIFO queue until a
 * call ends, and fails with FAN_EBUSY when the queue is full or when it
 * waited longer than the queue timeout. They keep one slow upstream from
 * taking every socket and file descriptor of the worker, and a burst of
 * requests from opening more connections than the upstreams can take.
 *
 * An origin is the URL's scheme, host and port, lower-cased, with the
 * scheme's default port dropped: "HTTP://Api:80/x" counts with
 * "http://api/y". Origins live in a hash table while they have a call
 * running or waiting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "core/log.h"
#include "runtime/metrics.h"

typedef struct origin {
    struct origin *next;   /* hash chain */
    fan__list queued;      /* its waiting calls (fan_call.queue_link), FIFO */
    fan__list wait_link;   /* in slots.waiting while `queued` is not empty */
    size_t running;
    unsigned hash;
    size_t len;
    fan__m_memo memo; /* its series of the client metrics */
    char key[];
} origin;

typedef struct queue_timer {
    uv_timer_t timer;
    fan_call *call;
} queue_timer;

typedef struct slots {
    origin **table;
    size_t nbuckets, norigins;
    size_t running, nqueued;
    fan__list waiting;     /* origins with waiting calls */
    unsigned long long seq;
    int dispatching, again;
    double refused_logged; /* when a refusal was last logged */
    unsigned long refused_quiet; /* refusals not logged since */
    /* The origin of the latest call, by the bytes of its URL up to the
     * path: the calls of a fan-out mostly go to one origin, and comparing
     * those bytes costs a fifth of building the key and looking it up. */
    struct {
        origin *o; /* NULL once freed */
        size_t len;
        char raw[96];
    } last;
} slots;

static _Thread_local slots *S;

static void count(const fan_call *c, int counter);

unsigned fan__origin_hash(const char *s, size_t n)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/* One pass, no library string search: this runs for every call. */
size_t fan__origin_key(const char *url, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = url;
    for (; *p && *p != ':'; p++)
        if (n < cap)
            out[n++] = lower(*p);
    if (p[0] != ':' || p[1] != '/' || p[2] != '/')
        return 0;
    size_t slen = n;
    if (n + 3 > cap)
        return 0;
    memcpy(out + n, "://", 3);
    n += 3;
    size_t auth = n;
    for (p += 3; *p && *p != '/' && *p != '?' && *p != '#'; p++) {
        if (*p == '@') { /* credentials are not part of the origin */
            n = auth;
            continue;
        }
        if (n == cap)
            return 0;
        out[n++] = lower(*p);
    }
    if (slen == 4 && memcmp(out, "http", 4) == 0 && n > auth + 3 &&
        memcmp(out + n - 3, ":80", 3) == 0)
        n -= 3;
    else if (slen == 5 && memcmp(out, "https", 5) == 0 && n > auth + 4 &&
             memcmp(out + n - 4, ":443", 4) == 0)
        n -= 4;
    return n;
}

static slots *get_slots(void)
{
    if (!S && (S = calloc(1, sizeof *S))) {
        S->nbuckets = 16;
        S->table = calloc(S->nbuckets, sizeof *S->table);
        if (!S->table) {
            free(S);
            S = NULL;
            return NULL;
        }
        fan__list_init(&S->waiting);
    }
    return S;
}

static void grow(void)
{
    size_t n = S->nbuckets * 2;
    origin **t = calloc(n, sizeof *t);
    if (!t)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < S->nbuckets; i++)
        for (origin *o = S->table[i], *next; o; o = next) {
            next = o->next;
            o->next = t[o->hash & (n - 1)];
            t[o->hash & (n - 1)] = o;
        }
    free(S->table);
    S->table = t;
    S->nbuckets = n;
}

static origin *origin_get(const char *key, size_t len)
{
    unsigned h = fan__origin_hash(key, len);
    for (origin *o = S->table[h & (S->nbuckets - 1)]; o; o = o->next)
        if (o->hash == h && o->len == len && memcmp(o->key, key, len) == 0)
            return o;
    origin *o = malloc(sizeof *o + len + 1);
    if (!o)
        return NULL;
    memcpy(o->key, key, len);
    o->key[len] = '\0';
    o->hash = h;
    o->len = len;
    o->running = 0;
    o->memo.v = 0;
    fan__list_init(&o->queued);
    fan__list_init(&o->wait_link);
    if (++S->norigins > S->nbuckets)
        grow();
    o->next = S->table[h & (S->nbuckets - 1)];
    S->table[h & (S->nbuckets - 1)] = o;
    return o;
}

/* The length of url's "scheme://authority", or 0 without "://": the bytes
 * fan__origin_key() makes the key of. */
static size_t raw_origin_len(const char *url)
{
    const char *colon = strchr(url, ':');
    if (!colon || colon[1] != '/' || colon[2] != '/')
        return 0;
    const char *auth = colon + 3;
    return (size_t)(auth - url) + strcspn(auth, "/?#");
}

static void origin_put(origin *o)
{
    if (o->running || !fan__list_empty(&o->queued))
        return;
    if (S->last.o == o)
        S->last.o = NULL;
    origin **p = &S->table[o->hash & (S->nbuckets - 1)];
    while (*p != o)
        p = &(*p)->next;
    *p = o->next;
    S->norigins--;
    free(o);
}

/* Whether c may start now on its origin. 0 means no limit. */
static int may_run(const fan_call *c, const origin *o)
{
    const fan_limits *lim = fan__rt_of(c->rq)->limits;
    return (!lim->max_calls || S->running < lim->max_calls) &&
           (!lim->max_calls_per_host || o->running < lim->max_calls_per_host) &&
           (!c->conn_cap || o->running < c->conn_cap);
}

/* One line per second at most: a saturated worker refuses calls by the
 * thousand. */
static void log_refusal(const fan_call *c, const char *why)
{
    double now = fan_now();
    if (S->refused_logged && now - S->refused_logged < 1.0) {
        S->refused_quiet++;
        return;
    }
    fan_log(FAN_LOG_WARN, "upstream call %s refused: %s (%zu in flight, %zu waiting; "
            "%lu more refused since the last line)", c->name, why, S->running, S->nqueued,
            S->refused_quiet);
    S->refused_logged = now;
    S->refused_quiet = 0;
}

/* Takes a waiting call out of the queue. */
static void unqueue(fan_call *c)
{
    origin *o = c->origin;
    fan__list_remove(&c->queue_link);
    S->nqueued--;
    if (fan__list_empty(&o->queued))
        fan__list_remove(&o->wait_link);
    queue_timer *qt = c->queue_timer;
    c->queue_timer = NULL;
    c->queued = 0;
    if (qt) {
        uv_timer_stop(&qt->timer);
        uv_close((uv_handle_t *)&qt->timer, fan__free_handle_data);
    }
}

/* Starts the waiting calls that fit, oldest first. A call that ends at once
 * while starting releases its slot here again: the flag turns that into one
 * more turn of the loop instead of a recursion. */
static void dispatch(void)
{
    if (S->dispatching) {
        S->again = 1;
        return;
    }
    S->dispatching = 1;
    do {
        S->again = 0;
        for (;;) {
            fan_call *best = NULL;
            fan__list *pos;
            fan__list_each(pos, &S->waiting)
            {
                origin *o = fan__container_of(pos, origin, wait_link);
                fan_call *c = fan__container_of(o->queued.next, fan_call, queue_link);
                if (may_run(c, o) && (!best || c->queue_seq < best->queue_seq))
                    best = c;
            }
            if (!best)
                break;
            unqueue(best);
            best->origin->running++;
            S->running++;
            best->holds_slot = 1;
            fan__call_launch(best);
        }
    } while (S->again);
    S->dispatching = 0;
}

static void queue_timed_out(uv_timer_t *t)
{
    queue_timer *qt = t->data;
    fan_call *c = qt->call;
    const fan_limits *lim = fan__rt_of(c->rq)->limits;
    unsigned waited = (unsigned)((fan_now() - c->started) * 1000 + 0.5);
    int queue_limit = lim->call_queue_timeout_ms && lim->call_queue_timeout_ms <= c->timeout_ms;
    origin *o = c->origin;
    unqueue(c);
    c->origin = NULL;
    origin_put(o);
    if (queue_limit) {
        count(c, FAN__M_QUEUE_REFUSALS);
        char why[96];
        snprintf(why, sizeof why, "no slot within call_queue_timeout_ms (%u ms waited)", waited);
        log_refusal(c, why);
    }
    fan__call_finish(c, queue_limit ? FAN_EBUSY : FAN_ETIMEDOUT);
}

/* Counts an event of the call queue in the metrics, if its request is counted. */
static void count(const fan_call *c, int counter)
{
    if (fan__rt_of(c->rq)->obs & FAN__OBS_METRICS)
        fan__metrics_add(counter, 1);
}

size_t fan__slots_origin(const fan_call *c, const char **key)
{
    if (!c->origin)
        return 0;
    *key = c->origin->key;
    return c->origin->len;
}

fan__m_memo *fan__slots_memo(const fan_call *c)
{
    return c->origin ? &c->origin->memo : NULL;
}

int fan__slots_acquire(fan_call *c)
{
    if (!get_slots())
        return FAN_ENOMEM;
    size_t raw = raw_origin_len(c->url);
    origin *o = NULL;
    if (S->last.o && raw == S->last.len && memcmp(c->url, S->last.raw, raw) == 0) {
        o = S->last.o;
    } else {
        char stack_key[256];
        char *key = stack_key;
        size_t cap = sizeof stack_key, len;
        while (!(len = fan__origin_key(c->url, key, cap))) {
            if (cap > strlen(c->url) + 1)
                return FAN_EINVAL; /* no "scheme://" */
            cap = strlen(c->url) + 1;
            if (!(key = fan__arena_alloc(fan__req_arena(c->rq), cap)))
                return FAN_ENOMEM;
        }
        if (!(o = origin_get(key, len)))
            return FAN_ENOMEM;
        if (raw && raw <= sizeof S->last.raw) {
            memcpy(S->last.raw, c->url, raw);
            S->last.len = raw;
            S->last.o = o;
        }
    }
    c->origin = o;
    if (may_run(c, o) && fan__list_empty(&o->queued)) {
        o->running++;
        S->running++;
        c->holds_slot = 1;
        return 0;
    }
    const fan_limits *lim = fan__rt_of(c->rq)->limits;
    int full = S->nqueued >= lim->max_queued_calls;
    queue_timer *qt = full ? NULL : malloc(sizeof *qt);
    if (!qt) {
        c->origin = NULL;
        origin_put(o);
        if (full)
            count(c, FAN__M_QUEUE_REFUSALS);
        if (full)
            log_refusal(c, lim->max_queued_calls ? "the call queue is full (max_queued_calls)"
                                                 : "no free slot, and max_queued_calls is 0");
        return full ? FAN_EBUSY : FAN_ENOMEM;
    }
    qt->call = c;
    uv_timer_init(fan__loop(), &qt->timer);
    qt->timer.data = qt;
    unsigned wait = c->timeout_ms;
    if (lim->call_queue_timeout_ms && lim->call_queue_timeout_ms < wait)
        wait = lim->call_queue_timeout_ms;
    uv_timer_start(&qt->timer, queue_timed_out, wait, 0);
    c->queue_timer = qt;
    c->queued = 1;
    c->queue_seq = ++S->seq;
    if (fan__list_empty(&o->queued))
        fan__list_push(&S->waiting, &o->wait_link);
    fan__list_push(&o->queued, &c->queue_link);
    S->nqueued++;
    count(c, FAN__M_QUEUE_WAITS);
    return 1;
}

void fan__slots_release(fan_call *c)
{
    origin *o = c->origin;
    if (!o)
        return;
    if (c->queued)
        unqueue(c);
    if (c->holds_slot) {
        c->holds_slot = 0;
        o->running--;
        S->running--;
    }
    c->origin = NULL;
    origin_put(o);
    if (!fan__list_empty(&S->waiting))
        dispatch();
}

void fan__slots_shutdown(void)
{
    if (!S)
        return;
    /* Every request has ended by now, and with it every call: nothing is
     * left in the table but what a failed allocation may have stranded. */
    for (size_t i = 0; i < S->nbuckets; i++)
        for (origin *o = S->table[i], *next; o; o = next) {
            next = o->next;
            free(o);
        }
    free(S->table);
    free(S);
    S = NULL;
}
