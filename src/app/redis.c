/* The app's Redis: the redis.* settings of the request's configuration,
 * fan_redis_command() and fan_redis_key(). The connection itself is the
 * redis layer's (src/redis/client.c). */
#include <stdarg.h>
#include <string.h>

#include "app/app.h"
#include "redis/redis.h"

#define MAX_ARGS 64

/* A setting that is a count, kept within [lo, hi]. */
static unsigned setting(fan_req *rq, const char *key, long long lo, long long hi)
{
    long long v = fan_config_int(rq, key);
    return (unsigned)(v < lo ? lo : v > hi ? hi : v);
}

void fan__redis_opts_of(fan_req *rq, fan__redis_opts *o)
{
    o->url = fan_config_str(rq, "redis.url");
    o->connect_timeout_ms = setting(rq, "redis.connect_timeout_ms", 1, 600000);
    o->command_timeout_ms = setting(rq, "redis.command_timeout_ms", 1, 600000);
    o->max_in_flight = setting(rq, "redis.max_in_flight", 1, 1000000);
    o->backoff_max_ms = setting(rq, "redis.backoff_max_ms", 50, 600000);
}

int fan__redis_on(fan_req *rq)
{
    const char *url = fan_config_str(rq, "redis.url");
    return url && *url;
}

int fan_redis_command_argv(fan_req *rq, fan_redis_reply **out, int argc, const char *const *argv,
                           const size_t *lens)
{
    *out = NULL;
    fan__redis_opts o;
    fan__redis_opts_of(rq, &o);
    if (!o.url || !*o.url) {
        static _Thread_local int warned;
        if (!warned++)
            fan_log(FAN_LOG_ERROR, "a Redis command, but redis.url (--redis) is not set");
        return FAN_EINVAL;
    }
    return fan__redis_exec(rq, &o, argc, (const char **)argv, lens, out);
}

int fan_redis_command(fan_req *rq, fan_redis_reply **out, const char *arg, ...)
{
    const char *argv[MAX_ARGS];
    int argc = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a; a = va_arg(ap, const char *)) {
        if (argc == MAX_ARGS) {
            va_end(ap);
            *out = NULL;
            return FAN_EINVAL;
        }
        argv[argc++] = a;
    }
    va_end(ap);
    if (argc == 0) {
        *out = NULL;
        return FAN_EINVAL;
    }
    return fan_redis_command_argv(rq, out, argc, argv, NULL);
}

const char *fan_redis_key(fan_req *rq, const char *key)
{
    const char *prefix = fan_config_str(rq, "redis.prefix");
    return fan_sprintf(rq, "%s%s", prefix ? prefix : "", key);
}
