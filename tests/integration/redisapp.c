/* The app of the Redis tests (test_redis.py, test_scale.py): Redis commands
 * from handlers and tasks, sessions and the rate limiter, an upstream call,
 * and one through the response cache (/api/cached), run with --redis and
 * the redis.*, session.* and ratelimit.* settings the tests give. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fanout.h"

static json_t *reply_json(const fan_redis_reply *r)
{
    if (!r)
        return json_null();
    switch (r->type) {
    case FAN_REDIS_STRING:
    case FAN_REDIS_STATUS:
        return json_stringn(r->str, r->len);
    case FAN_REDIS_ERROR:
        return json_pack("{s:s%}", "error", r->str, r->len);
    case FAN_REDIS_INTEGER:
        return json_integer(r->integer);
    case FAN_REDIS_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; i < r->elements; i++)
            json_array_append_new(a, reply_json(&r->element[i]));
        return a;
    }
    default:
        return json_null();
    }
}

/* ?args=SET @k v: the words of a command; a word "@name" is the key
 * fan_redis_key("name"). */
static int command_of(fan_req *rq, const char *args, const char **argv, int max)
{
    char *copy = fan_sprintf(rq, "%s", args ? args : "");
    int argc = 0;
    for (char *save, *w = strtok_r(copy, " ", &save); w && argc < max;
         w = strtok_r(NULL, " ", &save))
        argv[argc++] = w[0] == '@' ? fan_redis_key(rq, w + 1) : w;
    return argc;
}

static void redis_cmd(fan_req *rq)
{
    const char *argv[16];
    int argc = command_of(rq, fan_req_query(rq, "args"), argv, 16);
    fan_redis_reply *r;
    int rc = fan_redis_command_argv(rq, &r, argc, argv, NULL);
    fan_reply_json(rq, 200,
                   json_pack("{s:s, s:o, s:i}", "rc", fan_errname(rc), "reply", reply_json(r),
                             "pid", (int)getpid()));
}

typedef struct blocked {
    const char *key, *seconds;
    fan_redis_reply *reply;
} blocked;

static int blpop_task(fan_req *rq, void *arg)
{
    blocked *b = arg;
    return fan_redis_command(rq, &b->reply, "BLPOP", b->key, b->seconds, NULL);
}

/* A child task blocks on BLPOP @key for ?block_s seconds and is cancelled
 * after ?cancel_ms; then the handler GETs @get on the same connection. The
 * BLPOP's reply, when it comes, must reach nobody: the GET gets its own. */
static void redis_cancel(fan_req *rq)
{
    blocked *b = fan_alloc(rq, sizeof *b);
    b->key = fan_redis_key(rq, fan_req_query(rq, "key"));
    b->seconds = fan_req_query(rq, "block_s");
    b->reply = NULL;
    fan_task *t = fan_spawn(rq, blpop_task, b);
    fan_task_set_timeout(t, (unsigned)fan_req_query_long(rq, "cancel_ms", 100, NULL));
    int rc = fan_task_await(rq, t);
    double cancelled_at = fan_now();
    fan_redis_reply *g;
    int grc = fan_redis_command(rq, &g, "GET", fan_redis_key(rq, fan_req_query(rq, "get")), NULL);
    fan_reply_json(rq, 200,
                   json_pack("{s:s, s:o, s:s, s:o, s:f}", "blpop", fan_errname(rc), "blpop_reply",
                             reply_json(b->reply), "get_rc", fan_errname(grc), "get",
                             reply_json(grc == 0 ? g : NULL), "get_wait",
                             fan_now() - cancelled_at));
}

/* ---- Sessions (session.store "redis" in the tests) ---- */

static void session_set(fan_req *rq)
{
    int rc = fan_session_set(rq, fan_req_query(rq, "key"), fan_req_query(rq, "value"));
    fan_reply_json(rq, rc == 0 ? 200 : 500,
                   json_pack("{s:s, s:i}", "rc", fan_errname(rc), "pid", (int)getpid()));
}

static void session_get(fan_req *rq)
{
    const char *v = fan_session_get(rq, fan_req_query(rq, "key"));
    fan_reply_json(rq, 200, json_pack("{s:s?, s:i}", "value", v, "pid", (int)getpid()));
}

static void session_clear(fan_req *rq)
{
    int rc = fan_session_clear(rq);
    fan_reply_json(rq, rc == 0 ? 200 : 500,
                   json_pack("{s:s, s:i}", "rc", fan_errname(rc), "pid", (int)getpid()));
}

/* ---- Served behind a load balancer (ratelimit.paths ["/api/"]) ---- */

static void api_ping(fan_req *rq)
{
    fan_reply_json(rq, 200, json_pack("{s:i}", "pid", (int)getpid()));
}

/* ?ms=N: answers after N ms, for requests in flight when a process dies. */
static void api_slow(fan_req *rq)
{
    fan_sleep(rq, (unsigned)fan_req_query_long(rq, "ms", 100, NULL));
    fan_reply_json(rq, 200, json_pack("{s:i}", "pid", (int)getpid()));
}

/* ?url=U&ttl=MS: one GET of U through the response cache (and its shared
 * tier in Redis); answers its status, whether the cache answered it, and
 * this process's pid. */
static void api_cached(fan_req *rq)
{
    const char *url = fan_req_query(rq, "url");
    if (!url) {
        fan_reply_error(rq, 400, "query parameter 'url' is missing");
        return;
    }
    fan_call_opts o = {.cache = 1,
                       .cache_ttl_ms = (unsigned)fan_req_query_long(rq, "ttl", 30000, NULL)};
    fan_call *c = fan_call_start(rq, url, &o);
    int rc = fan_call_await(rq, c);
    fan_reply_json(rq, 200,
                   json_pack("{s:s, s:i, s:b, s:i}", "error", fan_errname(rc), "status",
                             fan_call_status(c), "cached",
                             (fan_call_flags(c) & FAN_CALL_CACHED) != 0, "pid", (int)getpid()));
}

static void health(fan_req *rq)
{
    fan_reply(rq, 200, "text/plain", "ok\n", 3);
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    fan_app_route(app, "GET", "/redis/cmd", redis_cmd);
    fan_app_route(app, "GET", "/redis/cancel", redis_cancel);
    fan_app_route(app, "GET", "/session/set", session_set);
    fan_app_route(app, "GET", "/session/get", session_get);
    fan_app_route(app, "GET", "/session/clear", session_clear);
    fan_app_route(app, "GET", "/api/ping", api_ping);
    fan_app_route(app, "GET", "/api/slow", api_slow);
    fan_app_route(app, "GET", "/api/cached", api_cached);
    fan_app_route(app, "GET", "/health", health);
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
