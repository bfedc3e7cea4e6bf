/* The rate limiter: a token bucket per client key (the client's address,
 * or a header's value), kept in Redis and updated by one Lua script, so that
 * every instance and worker sharing the Redis shares each bucket. Refused
 * requests get 429 with a JSON body and Retry-After. When Redis fails, the
 * declared ratelimit.redis_down applies: "allow" lets the request through,
 * "deny" answers 503, "local" (the default) takes a token from this
 * worker's own bucket for the key (a bounded table, ratelimit.max_local_keys:
 * each worker then allows the full rate on its own). Each outage is logged,
 * a line per second at most. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "core/log.h"

#define MAX_KEY 256

/* Refills at ARGV[1] tokens per second up to ARGV[2], by Redis's own clock
 * (the instances' clocks need not agree), and takes one token if there is
 * one. Returns {allowed, milliseconds until a token, tokens left}. */
static const char bucket_script[] =
    "local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]) "
    "local t = redis.call('TIME') "
    "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts') "
    "local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now "
    "if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end "
    "local allowed, wait = 0, 0 "
    "if tokens >= 1 then tokens = tokens - 1 allowed = 1 "
    "else wait = math.ceil((1 - tokens) * 1000 / rate) end "
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts))) "
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000) "
    "return {allowed, wait, math.floor(tokens)}";

typedef struct bucket {
    char key[MAX_KEY + 1];
    double tokens, at;
} bucket;

/* This worker's buckets for "local": open addressing, emptied when full. */
static _Thread_local bucket *local;
static _Thread_local size_t nlocal, caplocal;
static _Thread_local int bad_key, bad_policy; /* warned of a bad setting */

static unsigned long hash(const char *s)
{
    unsigned long h = 1469598103934665603UL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211UL;
    return h;
}

/* Takes a token from the worker's bucket for key; returns 1 if there was
 * one, else 0 with the seconds until one in *wait. -1 when out of memory. */
static int take_local(fan_req *rq, const char *key, double rate, double burst, double *wait)
{
    size_t cap = (size_t)fan_config_int(rq, "ratelimit.max_local_keys");
    cap = cap < 16 ? 16 : cap;
    if (!local || caplocal != cap * 2 || nlocal >= cap) {
        if (local && nlocal >= cap)
            fan_log(FAN_LOG_WARN,
                    "rate limit: %zu keys in this worker's local table "
                    "(ratelimit.max_local_keys): emptied it",
                    nlocal);
        free(local);
        caplocal = cap * 2;
        nlocal = 0;
        if (!(local = calloc(caplocal, sizeof *local)))
            return -1;
    }
    size_t i = hash(key) % caplocal;
    while (local[i].key[0] && strcmp(local[i].key, key) != 0)
        i = (i + 1) % caplocal;
    bucket *b = &local[i];
    double now = fan_now();
    if (!b->key[0]) {
        strcpy(b->key, key);
        b->tokens = burst;
        b->at = now;
        nlocal++;
    }
    b->tokens = fmin(burst, b->tokens + (now - b->at) * rate);
    b->at = now;
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 1;
    }
    *wait = (1 - b->tokens) / rate;
    return 0;
}

static void log_down(int rc, const char *policy)
{
    static _Thread_local fan__log_quota quota;
    unsigned long quiet;
    if (!fan__log_quota_take(&quota, fan_now(), 1.0, &quiet))
        return;
    fan_log(FAN_LOG_WARN,
            "rate limit: Redis failed (%s): ratelimit.redis_down is \"%s\" (%lu "
            "more requests since the last line)",
            fan_strerror(rc), policy, quiet);
}

/* Once per worker and setting (*warned): a value it cannot have. */
static void warn_setting(int *warned, const char *key, const char *value, const char *expected,
                         const char *used)
{
    if (!(*warned)++)
        fan_log(FAN_LOG_ERROR, "%s must be %s, not \"%s\": using \"%s\"", key, expected, value,
                used);
}

/* The client key of the request, or NULL after answering 400. */
static const char *client_key(fan_req *rq)
{
    const char *how = fan_config_str(rq, "ratelimit.key");
    const char *key = NULL;
    if (how && strncmp(how, "header:", 7) == 0 && how[7])
        key = fan_req_header(rq, how + 7);
    else if (how && strcmp(how, "addr") != 0)
        warn_setting(&bad_key, "ratelimit.key", how, "\"addr\" or \"header:NAME\"", "addr");
    if (!key || !*key)
        key = fan_sprintf(rq, "addr:%s", fan_req_client_addr(rq));
    else
        key = fan_sprintf(rq, "hdr:%s", key);
    if (!key || strlen(key) > MAX_KEY) {
        fan_reply_error(rq, 400, "rate limit key too long");
        return NULL;
    }
    return key;
}

static int applies(fan_req *rq)
{
    const char *path = fan_req_path(rq);
    for (size_t i = 0;; i++) {
        const char *prefix = fan_config_strings(rq, "ratelimit.paths", i);
        if (!prefix)
            return 0;
        if (path && strncmp(path, prefix, strlen(prefix)) == 0)
            return 1;
    }
}

static int refuse(fan_req *rq, double wait_s, long long left)
{
    long retry = (long)ceil(wait_s);
    retry = retry < 1 ? 1 : retry;
    fan_resp_set_header(rq, "Retry-After", fan_sprintf(rq, "%ld", retry));
    fan_reply_json(rq, 429,
                   json_pack("{s:s, s:i, s:i, s:I}", "error", "rate limit exceeded", "status", 429,
                             "retry_after", (int)retry, "remaining", (json_int_t)left));
    return 1;
}

int fan__ratelimit_check(fan_req *rq)
{
    double rate = fan__req_config(rq)->ratelimit_rate;
    if (!(rate > 0) || !applies(rq))
        return 0;
    long long burst = fan_config_int(rq, "ratelimit.burst");
    burst = burst < 1 ? 1 : burst;
    const char *key = client_key(rq);
    if (!key)
        return 1;
    double wait = 0;
    int ok;
    if (!fan__redis_on(rq)) { /* no Redis: each worker limits on its own */
        if ((ok = take_local(rq, key, rate, (double)burst, &wait)) < 0)
            return fan_reply_error(rq, 503, "out of memory"), 1;
        return ok ? 0 : refuse(rq, wait, 0);
    }
    fan_redis_reply *r = NULL;
    int rc = fan_redis_command(
        rq, &r, "EVAL", bucket_script, "1", fan_redis_key(rq, fan_sprintf(rq, "rl:%s", key)),
        fan_sprintf(rq, "%.17g", rate), fan_sprintf(rq, "%lld", burst), NULL);
    if (rc == 0 && (r->type != FAN_REDIS_ARRAY || r->elements != 3)) {
        fan_log(FAN_LOG_ERROR, "rate limit: Redis answered %s", r->str ? r->str : "not 3 numbers");
        rc = FAN_EPROTO;
    }
    if (rc == 0) {
        if (r->element[0].integer == 1)
            return 0;
        return refuse(rq, r->element[1].integer / 1000.0, r->element[2].integer);
    }
    if (rc == FAN_ECANCELED)
        return 1;
    const char *policy = fan_config_str(rq, "ratelimit.redis_down");
    policy = policy ? policy : "local";
    if (strcmp(policy, "allow") != 0 && strcmp(policy, "deny") != 0 &&
        strcmp(policy, "local") != 0) {
        warn_setting(&bad_policy, "ratelimit.redis_down", policy,
                     "\"allow\", \"deny\" or \"local\"", "local");
        policy = "local";
    }
    log_down(rc, policy);
    if (strcmp(policy, "allow") == 0)
        return 0;
    if (strcmp(policy, "deny") == 0) {
        fan_resp_set_header(rq, "Retry-After", "1");
        fan_reply_error(rq, 503, "rate limiter unavailable");
        return 1;
    }
    if ((ok = take_local(rq, key, rate, (double)burst, &wait)) < 0)
        return fan_reply_error(rq, 503, "out of memory"), 1;
    return ok ? 0 : refuse(rq, wait, 0);
}
