/* A backend's resilience settings: retries and hedging (a
 * fan_retry_policy), the response cache and single-flight, checked at load
 * and handed to each of its calls (docs/resilience.md); and its breaker,
 * which fanout keeps per origin: the backend's url names the origin, and
 * the breakers of a file are gathered per origin (gw_breakers_collect()). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static const char *const RETRY_KEYS[] = {"max", "base_ms",        "cap_ms", "per_try_timeout_ms",
                                         "on",  "non_idempotent", NULL};
static const char *const HEDGE_KEYS[] = {"after_ms", "p95", NULL};
static const char *const BREAKER_KEYS[] = {"failures",  "error_percent", "window_ms",
                                           "min_calls", "cooldown_ms",   NULL};
static const char *const CACHE_KEYS[] = {"ttl_ms", "stale_while_revalidate_ms", "stale_if_error_ms",
                                         "vary", NULL};

static fan_retry_policy *policy(gw_pool *pool, gw_backend *b)
{
    if (!b->retry && (b->retry = gw_alloc(pool, sizeof *b->retry)))
        memset(b->retry, 0, sizeof *b->retry);
    return b->retry;
}

static int load_retries(gw_pool *pool, gw_errs *e, const char *where, json_t *v, gw_backend *b)
{
    fan_retry_policy *p = policy(pool, b);
    if (json_is_integer(v)) {
        json_t *o = json_pack("{s:O}", "max", v);
        int rc = gw_get_uint(e, where, o, "max", 0, 10, &p->max_retries);
        json_decref(o);
        return rc;
    }
    if (!json_is_object(v)) {
        gw_error(e, where, "'retries' is a number of retries (0 to 10) or an object with \"max\"");
        return -1;
    }
    int rc = gw_check_keys(e, where, v, RETRY_KEYS, "retries");
    rc |= gw_get_uint(e, where, v, "max", 0, 10, &p->max_retries);
    rc |= gw_get_uint(e, where, v, "base_ms", 1, 60000, &p->base_ms);
    rc |= gw_get_uint(e, where, v, "cap_ms", 1, 600000, &p->cap_ms);
    rc |= gw_get_uint(e, where, v, "per_try_timeout_ms", 1, 3600000, &p->per_try_timeout_ms);
    rc |= gw_get_bool(e, where, v, "non_idempotent", &p->non_idempotent);
    json_t *on = json_object_get(v, "on");
    if (on) {
        char w[1100];
        snprintf(w, sizeof w, "%s.on", where);
        size_t n = json_array_size(on), i;
        json_t *st;
        if (!json_is_array(on) || n > 7) {
            gw_error(e, w, "'on' is an array of up to 7 statuses to retry ([] for none)");
            return -1;
        }
        if (n == 0)
            p->retry_on[0] = -1;
        json_array_foreach(on, i, st)
        {
            if (!json_is_integer(st) || json_integer_value(st) < 400 ||
                json_integer_value(st) > 599) {
                gw_error(e, w, "a status to retry is from 400 to 599");
                rc = -1;
                continue;
            }
            p->retry_on[i] = (int)json_integer_value(st);
        }
    }
    return rc;
}

static int load_hedge(gw_pool *pool, gw_errs *e, const char *where, json_t *v, gw_backend *b)
{
    fan_retry_policy *p = policy(pool, b);
    if (!json_is_object(v)) {
        gw_error(e, where, "'hedge' is an object: {\"after_ms\": N} and/or {\"p95\": true}");
        return -1;
    }
    int rc = gw_check_keys(e, where, v, HEDGE_KEYS, "hedge");
    rc |= gw_get_uint(e, where, v, "after_ms", 1, 3600000, &p->hedge_after_ms);
    rc |= gw_get_bool(e, where, v, "p95", &p->hedge_p95);
    return rc;
}

static int load_cache(gw_pool *pool, gw_errs *e, const char *where, json_t *v, gw_backend *b)
{
    if (json_is_boolean(v)) {
        b->cache = json_is_true(v) ? 1 : -1;
        return 0;
    }
    if (!json_is_object(v)) {
        gw_error(e, where, "'cache' is true, false or an object with \"ttl_ms\"");
        return -1;
    }
    b->cache = 1;
    int rc = gw_check_keys(e, where, v, CACHE_KEYS, "cache");
    rc |= gw_get_uint(e, where, v, "ttl_ms", 1, 86400000, &b->cache_ttl_ms);
    rc |= gw_get_uint(e, where, v, "stale_while_revalidate_ms", 1, 86400000, &b->cache_swr_ms);
    rc |= gw_get_uint(e, where, v, "stale_if_error_ms", 1, 86400000, &b->cache_sie_ms);
    json_t *vary = json_object_get(v, "vary");
    if (vary) {
        char w[1100];
        snprintf(w, sizeof w, "%s.vary", where);
        if (!json_is_array(vary)) {
            gw_error(e, w, "'vary' is an array of request header names");
            return -1;
        }
        b->cache_vary = gw_alloc(pool, (json_array_size(vary) + 1) * sizeof *b->cache_vary);
        size_t i;
        json_t *h;
        json_array_foreach(vary, i, h)
        {
            if (!json_is_string(h) || !gw_is_token(json_string_value(h))) {
                gw_error(e, w, "a header name is a token such as \"Accept-Language\"");
                rc = -1;
                continue;
            }
            b->cache_vary[i] = json_string_value(h);
        }
    }
    return rc;
}

/* The origin of `url` (its literal start: backend.c refuses a templated
 * scheme or host) as "scheme://host:port", lowercase, without credentials
 * (an origin has none: fan_app_set_origin() refuses them), with the
 * scheme's port when none is written, so that one origin has one spelling.
 * NULL for a url that is not http:// or https:// (backend.c says so). */
static const char *origin_of(gw_pool *pool, const char *url)
{
    int tls = strncasecmp(url, "https://", 8) == 0;
    if (!tls && strncasecmp(url, "http://", 7) != 0)
        return NULL;
    const char *host = url + (tls ? 8 : 7);
    size_t n = strcspn(host, "/?#{");
    for (const char *at; (at = memchr(host, '@', n));) { /* user:password@ */
        n -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    const char *bracket = memchr(host, ']', n);
    const char *after = bracket ? bracket + 1 : host;
    int has_port = memchr(after, ':', n - (size_t)(after - host)) != NULL;
    char buf[600];
    if (n == 0 || n > 512)
        return NULL;
    int len = snprintf(buf, sizeof buf, "%s://%.*s%s", tls ? "https" : "http", (int)n, host,
                       has_port ? "" : tls ? ":443" : ":80");
    for (int i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)buf[i]);
    return gw_strdup(pool, buf);
}

static int load_breaker(gw_pool *pool, gw_errs *e, const char *where, json_t *v, json_t *o,
                        gw_backend *b)
{
    if (!json_is_object(v)) {
        gw_error(e, where, "'breaker' is an object: {\"failures\": N} and/or "
                           "{\"error_percent\": P}, with window_ms, min_calls, cooldown_ms");
        return -1;
    }
    gw_breaker *br = gw_alloc(pool, sizeof *br);
    if (!br)
        return -1;
    memset(br, 0, sizeof *br);
    int rc = gw_check_keys(e, where, v, BREAKER_KEYS, "breaker");
    rc |= gw_get_uint(e, where, v, "failures", 1, 1000000, &br->failures);
    rc |= gw_get_uint(e, where, v, "error_percent", 1, 100, &br->error_percent);
    rc |= gw_get_uint(e, where, v, "window_ms", 1, 3600000, &br->window_ms);
    rc |= gw_get_uint(e, where, v, "min_calls", 1, 1000000, &br->min_calls);
    rc |= gw_get_uint(e, where, v, "cooldown_ms", 1, 3600000, &br->cooldown_ms);
    if (rc == 0 && !br->failures && !br->error_percent) {
        gw_error(e, where, "a breaker opens on \"failures\" in a row or an \"error_percent\": "
                           "set one of them");
        rc = -1;
    }
    json_t *url = json_object_get(o, "url");
    br->origin = json_is_string(url) ? origin_of(pool, json_string_value(url)) : NULL;
    br->where = gw_strdup(pool, where);
    if (rc == 0 && br->origin && br->where)
        b->breaker = br;
    return rc;
}

static int same_breaker(const gw_breaker *a, const gw_breaker *b)
{
    return a->failures == b->failures && a->error_percent == b->error_percent &&
           a->window_ms == b->window_ms && a->min_calls == b->min_calls &&
           a->cooldown_ms == b->cooldown_ms;
}

int gw_breakers_collect(gw_errs *e, gw *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        for (size_t k = 0; g->eps[i].backends && k < g->eps[i].nb; k++)
            n += g->eps[i].backends[k].breaker != NULL;
    if (!n)
        return 0;
    if (!(g->breakers = gw_alloc(g->pool, n * sizeof *g->breakers)))
        return -1;
    int rc = 0;
    for (size_t i = 0; i < g->n; i++)
        for (size_t k = 0; g->eps[i].backends && k < g->eps[i].nb; k++) {
            gw_breaker *br = g->eps[i].backends[k].breaker;
            size_t j = 0;
            while (br && j < g->nbreakers && strcmp(g->breakers[j]->origin, br->origin) != 0)
                j++;
            if (!br) {
                continue;
            } else if (j == g->nbreakers) {
                g->breakers[g->nbreakers++] = br;
            } else if (!same_breaker(g->breakers[j], br)) {
                gw_error(e, br->where,
                         "the breaker of %s is set otherwise at %s: a breaker is its origin's, "
                         "and the backends of one origin share it",
                         br->origin, g->breakers[j]->where);
                rc = -1;
            }
        }
    return rc;
}

int gw_load_resilience(gw_pool *pool, gw_errs *e, const char *where, json_t *o, gw_backend *b)
{
    char buf[1024];
    int rc = 0;
    json_t *v;
    if ((v = json_object_get(o, "retries")))
        rc |= load_retries(pool, e, gw_sub(buf, sizeof buf, where, "retries"), v, b);
    if ((v = json_object_get(o, "hedge")))
        rc |= load_hedge(pool, e, gw_sub(buf, sizeof buf, where, "hedge"), v, b);
    if ((v = json_object_get(o, "cache")))
        rc |= load_cache(pool, e, gw_sub(buf, sizeof buf, where, "cache"), v, b);
    if ((v = json_object_get(o, "single_flight"))) {
        int on = 0;
        rc |= gw_get_bool(e, where, o, "single_flight", &on);
        b->coalesce = on ? 1 : -1;
    }
    if ((v = json_object_get(o, "breaker")))
        rc |= load_breaker(pool, e, gw_sub(buf, sizeof buf, where, "breaker"), v, o, b);
    return rc;
}
