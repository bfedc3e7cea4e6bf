/* Sessions: in signed cookies (the format is in signed.c), loaded from the
 * request's cookie on first use, re-encoded at each change (so that a change
 * that would not fit fails at once), sent once when the reply is made; or,
 * with session.store "redis", a signed id in the cookie and the values in
 * Redis (session_redis.c), behind the same functions. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "app/app.h"

size_t fan__session_secrets(fan_req *rq, const char ***out)
{
    size_t n = 0;
    while (fan_config_strings(rq, "session.secrets", n))
        n++;
    const char **list = n ? fan_alloc(rq, n * sizeof *list) : NULL;
    size_t kept = 0;
    for (size_t i = 0; list && i < n; i++) {
        const char *s = fan_config_strings(rq, "session.secrets", i);
        if (*s)
            list[kept++] = s;
    }
    *out = list;
    return kept;
}

/* Replaces an empty session with the one in `cookie`, if it is valid. */
static void load_cookie(fan_req *rq, fan__session *s, const char *name, const char *cookie)
{
    const char **secrets;
    size_t nsecrets = fan__session_secrets(rq, &secrets);
    long long max_size = fan_config_int(rq, "session.max_size");
    const char *why = NULL;
    char *payload = NULL;
    size_t len;
    json_t *data = NULL;
    if (strlen(name) + 1 + strlen(cookie) > (size_t)(max_size > 0 ? max_size : 0)) {
        why = "larger than session.max_size";
    } else if (nsecrets == 0) {
        why = "session.secrets is not configured";
    } else {
        int rc = fan__signed_decode(cookie, secrets, nsecrets, (long long)time(NULL), &payload,
                                    &len);
        why = rc ? fan__signed_strerror(rc) : NULL;
    }
    if (!why) {
        json_error_t err;
        data = fan__json_loadb(payload, len, 0, &err);
        const char *key;
        json_t *v;
        json_object_foreach(data, key, v) {
            if (!json_is_string(v))
                why = "its payload is not an object of strings";
        }
        if (!json_is_object(data))
            why = "its payload is not an object of strings";
    }
    free(payload);
    if (why) {
        fan_log(FAN_LOG_WARN, "%s %s: session cookie ignored: %s", rq->method, rq->path, why);
        json_decref(data);
        return;
    }
    json_decref(s->data);
    s->data = data;
}

/* The request's session, loaded on first use; NULL when out of memory. */
static fan__session *session_of(fan_req *rq)
{
    fan__reqctx *ctx = fan__ctx(rq);
    if (!ctx)
        return NULL;
    fan__session *s = &ctx->session;
    if (s->data)
        return s;
    if (!(s->data = json_object()))
        return NULL;
    const char *name = fan_config_str(rq, "session.cookie_name");
    const char *cookie = name ? fan_req_cookie(rq, name) : NULL;
    if (cookie) {
        s->incoming = 1;
        if (fan__session_in_redis(rq))
            fan__session_redis_load(rq, s, cookie);
        else
            load_cookie(rq, s, name, cookie);
    }
    return s;
}

const char *fan_session_get(fan_req *rq, const char *key)
{
    fan__session *s = session_of(rq);
    const char *v = s ? json_string_value(json_object_get(s->data, key)) : NULL;
    /* A copy, so that it outlives a later change of the key. */
    return v ? fan__arena_strdup(&rq->rt.arena, v) : NULL;
}

int fan__session_cookie_opts(fan_req *rq, fan_cookie_opts *o)
{
    static const char *const same_sites[] = {"Strict", "Lax", "None"};
    const char *same_site = fan_config_str(rq, "session.samesite");
    memset(o, 0, sizeof *o);
    o->path = "/";
    o->max_age = fan_config_int(rq, "session.max_age");
    o->secure = fan_config_bool(rq, "session.secure");
    o->http_only = 1;
    for (int i = 0; i < 3 && same_site; i++)
        if (strcasecmp(same_site, same_sites[i]) == 0)
            o->same_site = same_sites[i];
    if (o->max_age < 1) {
        fan_log(FAN_LOG_ERROR, "session.max_age must be at least 1 second");
        return FAN_EINVAL;
    }
    if (!o->same_site || (o->same_site == same_sites[2] && !o->secure)) {
        fan_log(FAN_LOG_ERROR, "session.samesite must be Strict, Lax or None (None needs "
                               "session.secure)");
        return FAN_EINVAL;
    }
    return 0;
}

int fan__session_cookie(fan_req *rq, const char *payload, char **out)
{
    const char **secrets;
    fan_cookie_opts o;
    const char *name = fan_config_str(rq, "session.cookie_name");
    int rc = fan__session_cookie_opts(rq, &o);
    if (rc != 0)
        return rc;
    if (fan__session_secrets(rq, &secrets) == 0) {
        fan_log(FAN_LOG_ERROR, "cannot write the session: session.secrets is not configured");
        return FAN_ESTATE;
    }
    char *value = NULL;
    if (!payload) {
        o.max_age = -1; /* an empty session deletes the cookie */
    } else {
        long long expires;
        if (__builtin_add_overflow((long long)time(NULL), o.max_age, &expires))
            expires = LLONG_MAX; /* fan__signed_encode() cuts it to the latest it can say */
        if (!(value = fan__signed_encode(payload, strlen(payload), expires, secrets[0])))
            return FAN_ENOMEM;
    }
    rc = fan__cookie_format(rq, name ? name : "", value ? value : "", &o, out);
    free(value);
    if (rc == FAN_EINVAL)
        fan_log(FAN_LOG_ERROR, "session.cookie_name '%s' is not a valid cookie name",
                name ? name : "");
    if (rc == 0 && (long long)strlen(*out) > fan_config_int(rq, "session.max_size"))
        rc = FAN_ETOOLARGE;
    return rc;
}

/* Encodes `data` as the Set-Cookie value of the session. Returns as
 * fan__session_cookie(). */
static int encode(fan_req *rq, json_t *data, char **out)
{
    if (json_object_size(data) == 0)
        return fan__session_cookie(rq, NULL, out);
    char *payload = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
    int rc = payload ? fan__session_cookie(rq, payload, out) : FAN_ENOMEM;
    free(payload);
    return rc;
}

enum { SET = FAN__SESSION_SET, DELETE = FAN__SESSION_DELETE, CLEAR = FAN__SESSION_CLEAR };

/* Applies a change to a copy of the session and keeps it only if it
 * encodes within the limits, so a failed change leaves the session as it
 * was. */
static int change(fan_req *rq, int op, const char *key, const char *value)
{
    if (rq->sent)
        return FAN_ESTATE;
    if ((op != CLEAR && !key) || (op == SET && !value))
        return FAN_EINVAL;
    fan__session *s = session_of(rq);
    if (!s)
        return FAN_ENOMEM;
    json_t *old = op == CLEAR ? NULL : json_object_get(s->data, key);
    if ((op == SET && old && strcmp(json_string_value(old), value) == 0) ||
        (op == DELETE && !old) ||
        (op == CLEAR && json_object_size(s->data) == 0 && !s->incoming))
        return 0; /* nothing changes: no cookie to send */
    json_t *next = op == CLEAR ? json_object() : json_copy(s->data);
    if (!next)
        return FAN_ENOMEM;
    int rc = 0;
    if (op == SET) /* jansson refuses text that is not UTF-8 */
        rc = json_object_set_new(next, key, json_string(value)) ? FAN_EINVAL : 0;
    else if (op == DELETE)
        json_object_del(next, key);
    char *cookie = NULL;
    if (rc == 0 && fan__session_in_redis(rq))
        rc = fan__session_redis_write(rq, s, op, key, value, next, &cookie);
    else if (rc == 0)
        rc = encode(rq, next, &cookie);
    if (rc != 0) {
        json_decref(next);
        return rc;
    }
    json_decref(s->data);
    s->data = next;
    s->set_cookie = cookie;
    s->changed = 1;
    return 0;
}

int fan_session_set(fan_req *rq, const char *key, const char *value)
{
    return change(rq, SET, key, value);
}

int fan_session_delete(fan_req *rq, const char *key)
{
    return change(rq, DELETE, key, NULL);
}

int fan_session_clear(fan_req *rq)
{
    return change(rq, CLEAR, NULL, NULL);
}

void fan__session_commit(fan_req *rq)
{
    fan__session *s = rq->ctx ? &rq->ctx->session : NULL;
    if (!s || !s->changed)
        return;
    s->changed = 0;
    if (fan_resp_set_header(rq, "Set-Cookie", s->set_cookie) != 0)
        fan_log(FAN_LOG_ERROR, "%s %s: the session cookie could not be set", rq->method, rq->path);
}
