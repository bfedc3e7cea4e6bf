/* A backend's resilience settings: retries and hedging (a
 * fan_retry_policy), the response cache and single-flight, checked at load
 * and handed to each of its calls (docs/resilience.md). A
 * circuit breaker is kept per origin in fanout, not per call, so a
 * backend's "breaker" is refused with how to set it. */
#include <stdio.h>
#include <string.h>

#include "check.h"

static const char *const RETRY_KEYS[] = {"max", "base_ms",        "cap_ms", "per_try_timeout_ms",
                                         "on",  "non_idempotent", NULL};
static const char *const HEDGE_KEYS[] = {"after_ms", "p95", NULL};
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
    if (json_object_get(o, "breaker")) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "breaker"),
                 "a circuit breaker is kept per origin: set it with --origin "
                 "ORIGIN,breaker-failures=N (fanout serve --help, docs/resilience.md)");
        rc = -1;
    }
    return rc;
}
