/* The response cache's shared tier in Redis: a store (client/store.h) over
 * the redis layer's callback commands, registered by the app with the
 * client's cache (fan__cache_set_shared()), so that client and redis stay
 * side by side and only the app sees both. It owns the entry's format in
 * Redis, its key and expiry, the per-entry size cap
 * (cache.shared_max_entry_bytes), and what a failing Redis does: a miss,
 * counted (fan_cache_counters.shared_errors) and logged once a second.
 *
 * An entry is a Redis string under redis.prefix "cache:" key, with a PX
 * expiry at the end of its last stale window. Its bytes, integers little
 * endian:
 *   "FC1"  magic and version
 *   u32    status
 *   f64 x4 stored at (wall clock, seconds since the epoch), then fresh,
 *          stale-while-revalidate and stale-if-error ends relative to it
 *   u32    header count, then for each: u32 name length, the name and a
 *          NUL, u32 value length, the value and a NUL
 *   u32    body length, the body
 * Times are kept against the wall clock because fan_now() is this
 * process's own; an instance whose clock is off sees entries as older or
 * younger by as much. */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "client/flight.h"
#include "client/store.h"
#include "core/log.h"
#include "redis/redis.h"

#define MAGIC "FC1"
#define MAGIC_LEN 3

typedef struct redis_store {
    fan__store base;
    fan__redis_opts opts; /* opts.url is `url` */
    char *url, *prefix;   /* malloc'd copies of the last request's settings */
    size_t max_entry;
} redis_store;

/* A lookup waiting for its reply. */
typedef struct lookup {
    fan__store_get_cb cb;
    void *arg;
    void *command; /* fan__redis_send()'s handle */
} lookup;

/* While the worker's store is gone (it stops), replies still in flight are
 * not counted. */
static _Thread_local int stopped;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* At most one line a second per worker for an outage, not one per call. */
static void failed(int rc, const char *doing)
{
    fan__cache_counters()->shared_errors++;
    static _Thread_local fan__log_quota quota;
    unsigned long quiet;
    if (!fan__log_quota_take(&quota, fan_now(), 1.0, &quiet))
        return;
    fan_log(FAN_LOG_WARN,
            "cache: the shared tier in Redis failed (%s: %s): served as a miss, from the "
            "upstream (%lu more since the last line)",
            doing, fan_strerror(rc), quiet);
}

/* The Redis key of cache key `key`, malloc'd, its length in *len. */
static char *redis_key(const redis_store *r, const char *key, size_t klen, size_t *len)
{
    static const char tag[] = "cache:";
    size_t plen = strlen(r->prefix), tlen = sizeof tag - 1;
    char *k = malloc(plen + tlen + klen + 1);
    if (!k)
        return NULL;
    memcpy(k, r->prefix, plen);
    memcpy(k + plen, tag, tlen);
    memcpy(k + plen + tlen, key, klen);
    *len = plen + tlen + klen;
    return k;
}

static void put_u32(char **p, size_t v)
{
    uint32_t u = (uint32_t)v;
    unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                          (unsigned char)(u >> 24)};
    memcpy(*p, b, 4);
    *p += 4;
}

static void put_f64(char **p, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    for (int i = 0; i < 8; i++)
        (*p)[i] = (char)(unsigned char)(u >> (8 * i));
    *p += 8;
}

static void put_bytes(char **p, const char *s, size_t n, int nul)
{
    put_u32(p, n);
    memcpy(*p, s, n);
    *p += n;
    if (nul)
        *(*p)++ = '\0';
}

/* A reader over a reply's bytes: every get fails once one ran past them. */
typedef struct reader {
    const char *p, *end;
    int bad;
} reader;

static size_t get_u32(reader *r)
{
    if (r->bad || r->end - r->p < 4) {
        r->bad = 1;
        return 0;
    }
    const unsigned char *b = (const unsigned char *)r->p;
    r->p += 4;
    return (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16 | (size_t)b[3] << 24;
}

static double get_f64(reader *r)
{
    if (r->bad || r->end - r->p < 8) {
        r->bad = 1;
        return 0;
    }
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)(unsigned char)r->p[i] << (8 * i);
    r->p += 8;
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* n bytes, and a NUL after them when `nul`. */
static const char *get_bytes(reader *r, size_t n, int nul)
{
    if (r->bad || (size_t)(r->end - r->p) < n + (nul ? 1 : 0) || (nul && r->p[n] != '\0')) {
        r->bad = 1;
        return NULL;
    }
    const char *s = r->p;
    r->p += n + (nul ? 1 : 0);
    return s;
}

/* Decodes `s` (n bytes) and calls cb with it; with NULL when it is not an
 * entry (of another version, or cut). */
static void answer(const lookup *l, const char *s, size_t n)
{
    reader r = {s, s + n, 0};
    const char *magic = get_bytes(&r, MAGIC_LEN, 0);
    if (!magic || memcmp(magic, MAGIC, MAGIC_LEN) != 0) {
        l->cb(l->arg, NULL);
        return;
    }
    fan__store_entry e = {0};
    e.status = (int)get_u32(&r);
    double at = get_f64(&r), fresh = get_f64(&r), swr = get_f64(&r), sie = get_f64(&r);
    size_t nh = get_u32(&r);
    fan__header *h = NULL;
    if (!r.bad && nh <= (size_t)(r.end - r.p) / 10) /* each takes 10 bytes at least */
        h = malloc((nh ? nh : 1) * sizeof *h);
    if (!h)
        r.bad = 1;
    for (size_t i = 0; !r.bad && i < nh; i++) {
        h[i].name = get_bytes(&r, get_u32(&r), 1);
        h[i].value = get_bytes(&r, get_u32(&r), 1);
    }
    e.body_len = get_u32(&r);
    e.body = get_bytes(&r, e.body_len, 0);
    if (r.bad) {
        free(h);
        l->cb(l->arg, NULL);
        return;
    }
    e.headers = h;
    e.nheaders = (unsigned)nh;
    /* Its times, from the wall clock to this process's. */
    double base = fan_now() - (wall_now() - at);
    e.fresh_until = base + fresh;
    e.swr_until = base + swr;
    e.sie_until = base + sie;
    l->cb(l->arg, &e);
    free(h);
}

static void got(void *arg, const redisReply *reply, int rc)
{
    lookup *l = arg;
    if (rc == 0 && reply->type == REDIS_REPLY_ERROR)
        rc = FAN_EIO;
    if (rc != 0)
        failed(rc, "GET");
    if (rc == 0 && reply->type == REDIS_REPLY_STRING)
        answer(l, reply->str, reply->len);
    else
        l->cb(l->arg, NULL); /* nil: not there; or the failure, a miss */
    free(l);
}

static int store_get(fan__store *s, const char *key, size_t klen, fan__store_get_cb cb, void *arg,
                     void **pending)
{
    redis_store *r = (redis_store *)s;
    size_t len;
    char *k = redis_key(r, key, klen, &len);
    lookup *l = malloc(sizeof *l);
    if (!k || !l) {
        free(k);
        free(l);
        return FAN_ENOMEM;
    }
    l->cb = cb;
    l->arg = arg;
    const char *argv[] = {"GET", k};
    size_t lens[] = {3, len};
    int rc = fan__redis_send(&r->opts, 2, argv, lens, got, l, &l->command);
    free(k);
    if (rc != 0) {
        free(l);
        failed(rc, "GET");
        return rc;
    }
    *pending = l;
    return 1;
}

static void store_cancel(fan__store *s, void *pending)
{
    (void)s;
    lookup *l = pending;
    fan__redis_cancel(l->command);
    free(l);
}

/* A SET's or DEL's reply: nobody waits for it. */
static void written(void *arg, const redisReply *reply, int rc)
{
    if (stopped)
        return;
    if (rc != 0)
        failed(rc, (const char *)arg);
    else if (reply->type == REDIS_REPLY_ERROR)
        failed(FAN_EIO, (const char *)arg);
}

static int store_put(fan__store *s, const char *key, size_t klen, const fan__store_entry *v)
{
    redis_store *r = (redis_store *)s;
    size_t n = MAGIC_LEN + 4 + 4 * 8 + 4 + 4 + v->body_len;
    for (unsigned i = 0; i < v->nheaders; i++)
        n += 4 + strlen(v->headers[i].name) + 1 + 4 + strlen(v->headers[i].value) + 1;
    if (n > r->max_entry) {
        fan__cache_counters()->shared_too_large++;
        return 1;
    }
    double now = fan_now(), last = v->fresh_until;
    last = v->swr_until > last ? v->swr_until : last;
    last = v->sie_until > last ? v->sie_until : last;
    long long px = (long long)((last - now) * 1000.0 + 0.999);
    if (px < 1)
        return 0; /* unusable already */
    size_t klen2;
    char *k = redis_key(r, key, klen, &klen2);
    char *buf = malloc(n);
    if (!k || !buf) {
        free(k);
        free(buf);
        return FAN_ENOMEM;
    }
    char *p = buf;
    memcpy(p, MAGIC, MAGIC_LEN);
    p += MAGIC_LEN;
    put_u32(&p, (size_t)v->status);
    put_f64(&p, wall_now());
    put_f64(&p, v->fresh_until - now);
    put_f64(&p, v->swr_until - now);
    put_f64(&p, v->sie_until - now);
    put_u32(&p, v->nheaders);
    for (unsigned i = 0; i < v->nheaders; i++) {
        put_bytes(&p, v->headers[i].name, strlen(v->headers[i].name), 1);
        put_bytes(&p, v->headers[i].value, strlen(v->headers[i].value), 1);
    }
    put_bytes(&p, v->body ? v->body : "", v->body_len, 0);
    char pxs[24];
    int pxn = snprintf(pxs, sizeof pxs, "%lld", px);
    const char *argv[] = {"SET", k, buf, "PX", pxs};
    size_t lens[] = {3, klen2, n, 2, (size_t)pxn};
    void *handle;
    int rc = fan__redis_send(&r->opts, 5, argv, lens, written, (void *)"SET", &handle);
    free(k);
    free(buf);
    if (rc != 0) {
        failed(rc, "SET");
        return rc; /* lost: the next instance's lookup is a miss */
    }
    return 0;
}

static void store_del(fan__store *s, const char *key, size_t klen)
{
    redis_store *r = (redis_store *)s;
    size_t len;
    char *k = redis_key(r, key, klen, &len);
    if (!k)
        return;
    const char *argv[] = {"DEL", k};
    size_t lens[] = {3, len};
    void *handle;
    int rc = fan__redis_send(&r->opts, 2, argv, lens, written, (void *)"DEL", &handle);
    free(k);
    if (rc != 0)
        failed(rc, "DEL");
}

static void store_free(fan__store *s)
{
    redis_store *r = (redis_store *)s;
    stopped = 1;
    free(r->url);
    free(r->prefix);
    free(r);
}

static const fan__store_ops redis_ops = {
    .name = "Redis",
    .get = store_get,
    .cancel_get = store_cancel,
    .put = store_put,
    .del = store_del,
    .free = store_free,
};

/* Replaces *dst with a copy of src unless they are equal. 0 or FAN_ENOMEM. */
static int keep(char **dst, const char *src)
{
    if (*dst && strcmp(*dst, src) == 0)
        return 0;
    char *c = strdup(src);
    if (!c)
        return FAN_ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/* fan__store_shared_fn: the shared tier for rq's app, this thread's
 * `current` one set to rq's settings. */
static fan__store *shared_for(fan_req *rq, fan__store *current)
{
    if (!fan__redis_on(rq) || !fan_config_bool(rq, "cache.shared"))
        return NULL;
    redis_store *r = (redis_store *)current;
    if (!r) {
        if (!(r = calloc(1, sizeof *r)))
            return NULL;
        r->base.ops = &redis_ops;
        stopped = 0;
    }
    fan__redis_opts o;
    fan__redis_opts_of(rq, &o);
    const char *prefix = fan_config_str(rq, "redis.prefix");
    if (keep(&r->url, o.url) || keep(&r->prefix, prefix ? prefix : "")) {
        if (!current)
            store_free(&r->base);
        return current;
    }
    r->opts = o;
    r->opts.url = r->url;
    long long max = fan_config_int(rq, "cache.shared_max_entry_bytes");
    r->max_entry = max > 0 ? (size_t)max : 0;
    return &r->base;
}

void fan__cache_redis_register(void)
{
    fan__cache_set_shared(shared_for);
}
