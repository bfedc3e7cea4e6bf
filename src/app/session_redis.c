/* Sessions kept in Redis (session.store "redis"): the cookie holds only a
 * signed random id (160 bits from RAND_bytes, signed and expiring as the
 * cookie sessions are, signed.c), and the values are a Redis hash under
 * redis.prefix "session:" id, with a TTL of session.max_age renewed at each
 * change. Clearing the session (logging out) deletes the hash. What Redis
 * being down does is session.redis_down: "503" answers 503 before the
 * handler runs (the gate, below), "none" serves the request as having no
 * session; either way a line says so in the log. */
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "core/log.h"

#define ID_BYTES 20 /* 160 bits */

int fan__session_in_redis(fan_req *rq)
{
    const char *store = fan__req_config(rq)->session_store;
    if (store && strcmp(store, "redis") == 0)
        return 1;
    if (store && strcmp(store, "cookie") != 0) {
        static _Thread_local int warned;
        if (!warned++)
            fan_log(FAN_LOG_ERROR,
                    "session.store must be \"cookie\" or \"redis\", not \"%s\": "
                    "sessions are kept in cookies",
                    store);
    }
    return 0;
}

static const char *hash_key(fan_req *rq, const char *id)
{
    return fan_redis_key(rq, fan_sprintf(rq, "session:%s", id));
}

/* At most one line per second per worker for an outage, not one per request. */
static void log_unavailable(fan_req *rq, int rc, const char *doing)
{
    static _Thread_local fan__log_quota quota;
    unsigned long quiet;
    if (!fan__log_quota_take(&quota, fan_now(), 1.0, &quiet))
        return;
    const char *policy = fan_config_str(rq, "session.redis_down");
    if (policy && strcmp(policy, "503") != 0 && strcmp(policy, "none") != 0) {
        static _Thread_local int warned;
        if (!warned++)
            fan_log(FAN_LOG_ERROR,
                    "session.redis_down must be \"503\" or \"none\", not "
                    "\"%s\": answering 503",
                    policy);
    }
    fan_log(FAN_LOG_WARN,
            "%s %s: sessions unavailable (%s %s: %s): %s (%lu more since the last "
            "line)",
            rq->method, rq->path, doing, "in Redis", fan_strerror(rc),
            policy && strcmp(policy, "none") == 0 ? "served without a session"
                                                  : "answered 503 (session.redis_down)",
            quiet);
}

/* The id in a signed cookie, or NULL (logged) when it is not one. */
static const char *id_of(fan_req *rq, const char *cookie)
{
    const char **secrets;
    size_t nsecrets = fan__session_secrets(rq, &secrets);
    char *payload = NULL;
    size_t len = 0;
    const char *why = NULL;
    if (nsecrets == 0) {
        why = "session.secrets is not configured";
    } else {
        int rc =
            fan__signed_decode(cookie, secrets, nsecrets, (long long)time(NULL), &payload, &len);
        if (rc)
            why = fan__signed_strerror(rc);
        else if (len != fan__b64url_len(ID_BYTES) || strspn(payload, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                                     "abcdefghijklmnopqrstuvwxyz"
                                                                     "0123456789-_") != len)
            why = "its payload is not a session id";
    }
    const char *id = why ? NULL : fan_sprintf(rq, "%s", payload);
    free(payload);
    if (why)
        fan_log(FAN_LOG_WARN, "%s %s: session cookie ignored: %s", rq->method, rq->path, why);
    return id;
}

void fan__session_redis_load(fan_req *rq, fan__session *s, const char *cookie)
{
    const char *id = id_of(rq, cookie);
    if (!id)
        return;
    fan_redis_reply *r;
    int rc = fan_redis_command(rq, &r, "HGETALL", hash_key(rq, id), NULL);
    if (rc == 0 && r->type == FAN_REDIS_ERROR) {
        fan_log(FAN_LOG_ERROR, "%s %s: session: Redis answered %s", rq->method, rq->path, r->str);
        rc = FAN_EPROTO;
    }
    if (rc != 0) {
        s->unavailable = rc;
        log_unavailable(rq, rc, "reading it");
        return;
    }
    if (r->type != FAN_REDIS_ARRAY || r->elements == 0)
        return; /* expired or deleted: an empty session (a new one gets a new id) */
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        json_object_set_new(s->data, r->element[i].str, json_string(r->element[i + 1].str));
    s->id = id;
}

/* A new random id: RAND_bytes, base64url. NULL when OpenSSL fails. */
static const char *new_id(fan_req *rq)
{
    unsigned char raw[ID_BYTES];
    char *id = fan_alloc(rq, fan__b64url_len(ID_BYTES) + 1);
    if (!id || RAND_bytes(raw, sizeof raw) != 1)
        return NULL;
    fan__b64url_encode(raw, sizeof raw, id);
    return id;
}

/* HSET or HDEL one field and renew the TTL, in one step. */
static const char write_script[] =
    "if ARGV[1] == 'set' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) "
    "else redis.call('HDEL', KEYS[1], ARGV[2]) end "
    "if redis.call('HLEN', KEYS[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end "
    "return 1";

/* The reply's failure as a FAN_E* code (a Redis error reply is
 * FAN_EPROTO, logged), or 0. */
static int failed(fan_req *rq, int rc, const fan_redis_reply *r)
{
    if (rc == 0 && r->type == FAN_REDIS_ERROR) {
        fan_log(FAN_LOG_ERROR, "%s %s: session: Redis answered %s", rq->method, rq->path, r->str);
        return FAN_EPROTO;
    }
    if (rc != 0)
        log_unavailable(rq, rc, "writing it");
    return rc;
}

int fan__session_redis_write(fan_req *rq, fan__session *s, int op, const char *key,
                             const char *value, json_t *next, char **cookie)
{
    *cookie = NULL;
    if (s->unavailable)
        return s->unavailable; /* never write over a session that could not be read */
    char *dumped = json_dumps(next, JSON_COMPACT);
    if (!dumped)
        return FAN_ENOMEM;
    size_t size = strlen(dumped);
    free(dumped);
    if ((long long)size > fan_config_int(rq, "session.max_size"))
        return FAN_ETOOLARGE;
    fan_redis_reply *r = NULL;
    int rc;
    if (op == FAN__SESSION_CLEAR || json_object_size(next) == 0) {
        if (s->id) {
            rc = fan_redis_command(rq, &r, "DEL", hash_key(rq, s->id), NULL);
            if ((rc = failed(rq, rc, r)) != 0)
                return rc;
        }
        s->id = NULL;
        return fan__session_cookie(rq, NULL, cookie); /* logging out: the cookie goes too */
    }
    const char *id = s->id ? s->id : new_id(rq);
    if (!id)
        return FAN_ENOMEM;
    char *set_cookie;
    if ((rc = fan__session_cookie(rq, id, &set_cookie)) !=
        0) /* a bad setting fails before any write */
        return rc;
    const char *ttl = fan_sprintf(rq, "%lld", fan_config_int(rq, "session.max_age"));
    rc = fan_redis_command(rq, &r, "EVAL", write_script, "1", hash_key(rq, id),
                           op == FAN__SESSION_SET ? "set" : "del", key, value ? value : "", ttl,
                           NULL);
    if ((rc = failed(rq, rc, r)) != 0)
        return rc;
    s->id = id;
    *cookie = set_cookie;
    return 0;
}
