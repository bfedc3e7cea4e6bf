/* The response cache of a worker, and the front of single-flight: which
 * calls they apply to (GET and HEAD without a body, as the call and its
 * origin ask), their keys, the lookup, what a response's Cache-Control
 * lets it store and for how long (RFC 9111, and RFC 5861's
 * stale-while-revalidate and stale-if-error), and each call's own copy of
 * what it is answered with. Entries are kept by a store (store.h): this
 * worker's memory store (L1), and behind it, when a layer above registers
 * one, a shared tier (L2, fan__cache_set_shared()): a lookup that L1 cannot
 * answer asks L2, whose hit is copied into L1; a stored response goes to
 * both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/flight.h"
#include "client/store.h"
#include "core/log.h"
#include "runtime/metrics.h"

static _Thread_local fan_cache_counters counters;
static _Thread_local fan__store *store;
static _Thread_local fan__store *shared; /* L2, or NULL */
static fan__store_shared_fn shared_fn;

void fan__cache_set_shared(fan__store_shared_fn fn)
{
    shared_fn = fn;
}

fan_cache_counters *fan__cache_counters(void)
{
    return &counters;
}

void fan_cache_get_counters(fan_cache_counters *out)
{
    *out = counters;
    out->entries = out->bytes = 0;
    if (store) {
        unsigned long long ev;
        fan__memstore_usage(store, &out->entries, &out->bytes, &ev);
        out->evictions = ev;
    }
}

/* The worker's store, bounded by the limits of the call's app. NULL when
 * out of memory. */
static fan__store *store_for(const fan_limits *lim)
{
    if (!store)
        store = fan__memstore_new(lim->max_cache_bytes);
    else
        fan__memstore_set_max(store, lim->max_cache_bytes);
    return store;
}

void fan__cache_shutdown(void)
{
    if (store)
        store->ops->free(store);
    store = NULL;
    if (shared)
        shared->ops->free(shared);
    shared = NULL;
    fan__flight_shutdown();
}

void fan__cache_settle(fan_call *c)
{
    const fan_origin_opts *o = c->origin_cfg ? &c->origin_cfg->opts : NULL;
    if (o) {
        c->use_cache = c->use_cache ? c->use_cache : o->cache;
        c->use_coalesce = c->use_coalesce ? c->use_coalesce : o->coalesce;
        c->cache_ttl_ms = c->cache_ttl_ms ? c->cache_ttl_ms : o->cache_ttl_ms;
        c->swr_ms = c->swr_ms ? c->swr_ms : o->stale_while_revalidate_ms;
        c->sie_ms = c->sie_ms ? c->sie_ms : o->stale_if_error_ms;
    }
    /* Only what is safe to repeat and to share: a GET or a HEAD without a
     * body (the method is case-sensitive: "get" is another one). */
    int safe = (strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0) && !c->body_len;
    c->use_cache = safe && c->use_cache > 0;
    c->use_coalesce = safe ? c->use_coalesce : -1;
}

/* Appends s[0..n) to the key being built at *k (length *len, room *cap),
 * growing it in the arena. Returns 0 or FAN_ENOMEM. */
static int key_add(fan__arena *a, char **k, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = (*len + n + 1) * 2;
        char *nk = fan__arena_alloc(a, ncap);
        if (!nk)
            return FAN_ENOMEM;
        if (*len)
            memcpy(nk, *k, *len);
        *k = nk;
        *cap = ncap;
    }
    memcpy(*k + *len, s, n);
    *len += n;
    (*k)[*len] = '\0';
    return 0;
}

/* The value of request header `name` of the call, or NULL. */
static const char *request_header(const fan_call *c, const char *name, size_t nlen)
{
    for (unsigned i = 0; c->headers && c->headers[i]; i++)
        if (strncasecmp(c->headers[i], name, nlen) == 0 && c->headers[i][nlen] == ':')
            return c->headers[i] + nlen + 1 + strspn(c->headers[i] + nlen + 1, " \t");
    return NULL;
}

/* The single-flight key: the method, URL and every request header line
 * the caller gave,
 * then the settings that shape the exchange (a waiter must not get less
 * time or a smaller body limit than it asked for). The cache key: the
 * method, the URL and the request headers that vary it (all of them when
 * the call names none), a name lower-cased and its value. Fields are
 * separated by a NUL, which none of them contains. */
static int make_keys(fan_call *c)
{
    fan__arena *a = fan__req_arena(c->rq);
    char *k = NULL, num[64];
    size_t len = 0, cap = 0;
    int rc = key_add(a, &k, &len, &cap, c->method, strlen(c->method) + 1);
    rc = rc ? rc : key_add(a, &k, &len, &cap, c->url, strlen(c->url) + 1);
    size_t base = len;
    /* The caller's lines only: the trace context lines after them
     * (call_observe.c) differ for every call and say nothing of the answer. */
    for (unsigned i = 0; !rc && c->headers && c->headers[i] && i < c->nchecked; i++)
        rc = key_add(a, &k, &len, &cap, c->headers[i], strlen(c->headers[i]) + 1);
    int n =
        snprintf(num, sizeof num, "%u %u %zu", c->timeout_ms, c->connect_timeout_ms, c->max_body);
    rc = rc ? rc : key_add(a, &k, &len, &cap, num, (size_t)n);
    if (rc)
        return rc;
    c->fkey = k;
    c->fklen = len;
    if (!c->use_cache)
        return 0;
    if (!c->cache_vary) { /* every header: the single-flight key without the settings */
        c->ckey = k;
        c->cklen = len - (size_t)n;
        return 0;
    }
    char *ck = NULL, *vn = NULL;
    size_t clen = 0, ccap = 0, vlen = 0, vcap = 0;
    rc = key_add(a, &ck, &clen, &ccap, k, base);
    rc = rc ? rc : key_add(a, &vn, &vlen, &vcap, ",", 1);
    for (unsigned i = 0; !rc && c->cache_vary[i]; i++) {
        const char *name = c->cache_vary[i];
        size_t nlen = strlen(name);
        const char *v = request_header(c, name, nlen);
        for (size_t j = 0; !rc && j < nlen; j++) {
            char ch = name[j] >= 'A' && name[j] <= 'Z' ? (char)(name[j] + 32) : name[j];
            rc = key_add(a, &ck, &clen, &ccap, &ch, 1);
            rc = rc ? rc : key_add(a, &vn, &vlen, &vcap, &ch, 1);
        }
        rc = rc ? rc : key_add(a, &vn, &vlen, &vcap, ",", 1);
        rc = rc ? rc : key_add(a, &ck, &clen, &ccap, v ? ":" : "!", 1); /* absent: not "" */
        rc = rc ? rc : key_add(a, &ck, &clen, &ccap, v ? v : "", (v ? strlen(v) : 0) + 1);
    }
    c->ckey = ck;
    c->cklen = clen;
    c->vary_names = vn;
    return rc;
}

/* Gives the call its own copy of a response: status, headers, body.
 * Returns 0 or FAN_ENOMEM. */
static int copy_response(fan_call *c, int status, const fan__header *h, unsigned nh,
                         const char *body, size_t len)
{
    c->status = status;
    c->nresp = 0;
    c->resp_header_bytes = 0;
    c->resp_body.len = 0;
    for (unsigned i = 0; i < nh; i++) {
        int rc = fan__call_header(c, h[i].name, strlen(h[i].name), h[i].value, strlen(h[i].value));
        if (rc)
            return rc;
    }
    return len ? fan__buf_append(&c->resp_body, body, len) : 0;
}

static void serve_stored(fan_call *c, const fan__store_entry *hit, int stale)
{
    int rc = copy_response(c, hit->status, hit->headers, hit->nheaders, hit->body, hit->body_len);
    c->flags |= FAN_CALL_CACHED | (stale ? FAN_CALL_STALE : 0);
    if (stale)
        counters.stale_hits++;
    else
        counters.hits++;
    fan_log(FAN_LOG_DEBUG, "call %s: answered from the cache (%s)", c->name,
            stale ? "stale" : "fresh");
    fan__call_finish(c, rc);
}

/* What the call does with the entry its lookup found (NULL: none). */
static void decide(fan_call *c, const fan__store_entry *hit)
{
    double now = fan_now();
    if (hit && now < hit->fresh_until) {
        serve_stored(c, hit, 0);
        return;
    }
    if (hit && now < hit->swr_until) {
        fan__flight_refresh(c);
        serve_stored(c, hit, 1);
        return;
    }
    counters.misses++;
    if (fan__rt_of(c->rq)->obs & FAN__OBS_METRICS)
        fan__metrics_add(FAN__M_CACHE_MISSES, 1); /* a hit is counted when the call ends */
    if (hit && now < hit->sie_until) {
        /* Kept for the case the exchange fails (stale-if-error). */
        int rc =
            copy_response(c, hit->status, hit->headers, hit->nheaders, hit->body, hit->body_len);
        if (rc) {
            fan__call_finish(c, rc);
            return;
        }
        c->stale_fallback = 1;
    }
    int rc = fan__flight_join(c, c->use_coalesce >= 0);
    if (rc)
        fan__call_finish(c, rc);
}

/* The shared tier's answer: a usable entry is copied into L1 first. */
static void looked_up_shared(void *arg, const fan__store_entry *hit)
{
    fan_call *c = arg;
    c->lookup = NULL;
    double now = fan_now();
    if (hit && (now < hit->fresh_until || now < hit->swr_until || now < hit->sie_until)) {
        counters.shared_hits++;
        fan__store *s = store_for(fan__rt_of(c->rq)->limits);
        if (s)
            s->ops->put(s, c->ckey, c->cklen, hit);
    }
    decide(c, hit);
}

/* L1's answer. With nothing usable in it, the shared tier is asked, when
 * there is one (a stale entry of L1 is used as it is: its refresh updates
 * both tiers). */
static void looked_up(void *arg, const fan__store_entry *hit)
{
    fan_call *c = arg;
    c->lookup = NULL;
    double now = fan_now();
    int usable = hit && (now < hit->fresh_until || now < hit->swr_until || now < hit->sie_until);
    if (!usable && c->use_shared && shared) {
        void *pending = NULL;
        int rc = shared->ops->get(shared, c->ckey, c->cklen, looked_up_shared, c, &pending);
        if (rc == 1)
            c->lookup = pending; /* answered later, from the loop */
        if (rc >= 0)
            return;
        hit = NULL; /* it failed (counted and logged by it): a miss */
    }
    decide(c, hit);
}

int fan__cache_start(fan_call *c)
{
    if (!c->use_cache && c->use_coalesce <= 0)
        return 0;
    /* The origin's breaker and budget count the shared exchange's call, not
     * the calls it answers: this one is not one of their calls. */
    c->health = NULL;
    int rc = make_keys(c);
    fan__store *s = rc || !c->use_cache ? NULL : store_for(fan__rt_of(c->rq)->limits);
    fan__store *l2 = s && shared_fn ? shared_fn(c->rq, shared) : NULL;
    if (l2) { /* else this call's app has none; another's stays this thread's */
        shared = l2;
        c->use_shared = 1;
    }
    if (rc == 0 && s) {
        void *pending = NULL;
        rc = s->ops->get(s, c->ckey, c->cklen, looked_up, c, &pending);
        if (rc == 1)
            c->lookup = pending; /* answered later, from the loop */
        if (rc >= 0)
            return 1;
        rc = 0; /* the store failed: the call goes to the upstream */
    }
    if (rc == 0)
        rc = fan__flight_join(c, c->use_coalesce >= 0);
    if (rc)
        fan__call_finish(c, rc);
    return 1;
}

void fan__cache_cancel(fan_call *c)
{
    if (c->flight) {
        fan__flight_leave(c);
        return;
    }
    /* Only the shared tier answers later: L1 answers within its get(). */
    shared->ops->cancel_get(shared, c->lookup);
    c->lookup = NULL;
    fan__call_finish(c, FAN_ECANCELED);
}

/* What a response's Cache-Control says, -1 for a directive it lacks. */
typedef struct cache_control {
    int no_store, private_, no_cache;
    long max_age, s_maxage, swr, sie;
} cache_control;

/* The number of a "name=delta-seconds" directive, quoted or not, or -1
 * when it is not a number. */
static long delta_seconds(const char *v, size_t n)
{
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    long s = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        s = s < 100000000 ? s * 10 + (v[i] - '0') : s; /* beyond three years: the same */
    }
    return n ? s : -1;
}

static void parse_directive(cache_control *cc, const char *d, size_t n)
{
    const char *eq = memchr(d, '=', n);
    size_t name = eq ? (size_t)(eq - d) : n;
    const char *v = eq ? eq + 1 : "";
    size_t vn = eq ? n - name - 1 : 0;
#define IS(s) (name == sizeof s - 1 && strncasecmp(d, s, name) == 0)
    if (IS("no-store"))
        cc->no_store = 1;
    else if (IS("private"))
        cc->private_ = 1;
    else if (IS("no-cache"))
        cc->no_cache = 1;
    else if (IS("max-age"))
        cc->max_age = delta_seconds(v, vn);
    else if (IS("s-maxage"))
        cc->s_maxage = delta_seconds(v, vn);
    else if (IS("stale-while-revalidate"))
        cc->swr = delta_seconds(v, vn);
    else if (IS("stale-if-error"))
        cc->sie = delta_seconds(v, vn);
#undef IS
}

/* Calls fn(arg, item, len) for each item of every `field` of the
 * response: a comma-separated list, items trimmed, empty ones skipped. */
static void each_item(const fan_call *up, const char *field,
                      void (*fn)(void *arg, const char *item, size_t len), void *arg)
{
    for (unsigned i = 0; i < up->nresp; i++) {
        if (strcasecmp(up->resp_headers[i].name, field) != 0)
            continue;
        for (const char *p = up->resp_headers[i].value; *p;) {
            p += strspn(p, " \t,");
            size_t n = strcspn(p, ",");
            size_t m = n;
            while (m && (p[m - 1] == ' ' || p[m - 1] == '\t'))
                m--;
            if (m)
                fn(arg, p, m);
            p += n;
        }
    }
}

static void directive_item(void *cc, const char *d, size_t n)
{
    parse_directive(cc, d, n);
}

static cache_control parse_cache_control(const fan_call *up)
{
    cache_control cc = {0, 0, 0, -1, -1, -1, -1};
    each_item(up, "Cache-Control", directive_item, &cc);
    return cc;
}

/* RFC 9110 15.1: the statuses a cache may store by default. */
static int cacheable_status(int s)
{
    static const int statuses[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        if (s == statuses[i])
            return 1;
    return 0;
}

typedef struct vary_check {
    const char *names; /* ",name,...," lower-case */
    int keyed;
} vary_check;

static void vary_item(void *arg, const char *name, size_t n)
{
    vary_check *v = arg;
    char want[128];
    if (n + 3 > sizeof want) {
        v->keyed = 0; /* too long to be one of ours */
        return;
    }
    want[0] = ',';
    for (size_t j = 0; j < n; j++)
        want[j + 1] = name[j] >= 'A' && name[j] <= 'Z' ? (char)(name[j] + 32) : name[j];
    want[n + 1] = ',';
    want[n + 2] = '\0';
    if (!strstr(v->names, want))
        v->keyed = 0;
}

/* Whether every header the response's Vary names is one of `names`: else
 * a later call that differs in it would get this response. */
static int vary_is_keyed(const fan_call *up, const char *names)
{
    vary_check v = {names, 1};
    each_item(up, "Vary", vary_item, &v);
    return v.keyed;
}

/* Why the response of `up` must not be stored, or NULL when it may be. */
static const char *not_storable(const fan_call *up, const cache_control *cc)
{
    if (up->error || up->too_large || up->bad_head)
        return "the exchange failed";
    if (!cacheable_status(up->status))
        return "its status is not cacheable";
    if (cc->no_store)
        return "Cache-Control: no-store";
    if (cc->private_)
        return "Cache-Control: private";
    if (cc->no_cache)
        return "Cache-Control: no-cache (revalidation is not supported)";
    if (fan_call_header(up, "Set-Cookie"))
        return "it sets a cookie";
    const char *vary = fan_call_header(up, "Vary");
    if (vary && strchr(vary, '*'))
        return "Vary: *";
    return NULL;
}

void fan__cache_store(const fan_call *up, const char *ckey, size_t cklen, unsigned ttl_ms,
                      unsigned swr_ms, unsigned sie_ms, const char *vary_names, int to_shared)
{
    cache_control cc = parse_cache_control(up);
    const char *why = not_storable(up, &cc);
    if (!why && vary_names && !vary_is_keyed(up, vary_names))
        why = "it varies on a request header that is not in the key (Vary)";
    double ttl = ttl_ms / 1000.0;
    if (!why && !ttl_ms) {
        long s = cc.s_maxage >= 0 ? cc.s_maxage : cc.max_age; /* s-maxage: for shared caches */
        const char *age = fan_call_header(up, "Age");
        long a = age ? delta_seconds(age, strlen(age)) : 0;
        if (s < 0)
            why = "no TTL: neither the call, its origin nor Cache-Control gives one";
        ttl = s - (a > 0 ? a : 0);
        ttl = ttl > 0 ? ttl : 0;
    }
    if (why) {
        fan_log(FAN_LOG_DEBUG, "call %s: response not cached: %s", up->name, why);
        return;
    }
    double swr = swr_ms ? swr_ms / 1000.0 : cc.swr > 0 ? (double)cc.swr : 0;
    double sie = sie_ms ? sie_ms / 1000.0 : cc.sie > 0 ? (double)cc.sie : 0;
    if (ttl <= 0 && swr <= 0 && sie <= 0)
        return; /* already stale, and no use stale */
    double now = fan_now();
    fan__store_entry v = {
        .status = up->status,
        .headers = up->resp_headers,
        .nheaders = up->nresp,
        .body = up->resp_body.data,
        .body_len = up->resp_body.len,
        .fresh_until = now + ttl,
        .swr_until = now + ttl + swr,
        .sie_until = now + ttl + sie,
    };
    fan__store *s = store_for(fan__rt_of(up->rq)->limits);
    int rc = s ? s->ops->put(s, ckey, cklen, &v) : FAN_ENOMEM;
    if (rc == 0)
        counters.stores++;
    fan_log(FAN_LOG_DEBUG, "call %s: response %s (fresh %.3f s, then stale for %.3f s / %.3f s)",
            up->name,
            rc == 0   ? "cached"
            : rc == 1 ? "larger than the cache: not cached"
                      : "not cached: out of memory",
            ttl, swr, sie);
    if (to_shared && shared) {
        rc = shared->ops->put(shared, ckey, cklen, &v);
        if (rc == 0)
            counters.shared_stores++;
        else if (rc == 1)
            fan_log(FAN_LOG_DEBUG,
                    "call %s: response larger than the shared tier's entry cap: "
                    "not put in %s",
                    up->name, shared->ops->name);
    }
}

/* RFC 5861 4: an error is a 500, 502, 503 or 504 response, or none. */
static int failed(const fan_call *up)
{
    return up->error || up->status == 500 || up->status == 502 || up->status == 503 ||
           up->status == 504;
}

void fan__cache_deliver(fan_call *w, const fan_call *up, fan__shared_body *body, int first)
{
    if (w->stale_fallback && failed(up)) {
        w->flags |= FAN_CALL_CACHED | FAN_CALL_STALE;
        counters.stale_hits++;
        fan_log(FAN_LOG_DEBUG,
                "call %s: the exchange failed (%s, status %d): answered from "
                "the stale cache entry",
                w->name, fan_errname(up->error), up->status);
        fan__call_finish(w, 0);
        return;
    }
    int rc = copy_response(w, up->status, up->resp_headers, up->nresp, up->resp_body.data,
                           body ? 0 : up->resp_body.len);
    if (body) {
        body->refs++;
        w->shared_body = body;
    }
    w->too_large = up->too_large;
    w->bad_head = up->bad_head;
    if (first) {
        w->attempts = up->attempts;
        w->flags |= up->flags;
    } else {
        w->flags |= FAN_CALL_COALESCED;
    }
    fan__call_finish(w, up->error ? up->error : rc);
}
