/* jansson's parse and writers, run on the loop's own stack. jansson recurses
 * once per level of nesting (up to 2048 levels), which a coroutine's stack
 * (64 KiB by default) cannot hold: a body of "[[[[..." from an upstream or a
 * client would overflow it and kill the worker. Every parse of input that
 * fanout makes, and every write of a value a handler built, goes through
 * here. Cost: two stack switches, a few dozen instructions. */
#include "coro/coro.h"
#include "runtime/runtime.h"

typedef struct load_job {
    const char *buf;
    size_t len, flags;
    json_error_t *err;
    json_t *out;
} load_job;

static void load_on_main(void *arg)
{
    load_job *j = arg;
    j->out = json_loadb(j->buf, j->len, j->flags, j->err);
}

json_t *fan__json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err)
{
    load_job j = {buf, len, flags, err, NULL};
    fan__coro_call_main(load_on_main, &j);
    return j.out;
}

typedef struct dump_job {
    const json_t *json;
    char *buf;
    size_t size, flags, out;
    char *str;
} dump_job;

static void dumpb_on_main(void *arg)
{
    dump_job *j = arg;
    j->out = json_dumpb(j->json, j->buf, j->size, j->flags);
}

size_t fan__json_dumpb(const json_t *json, char *buf, size_t size, size_t flags)
{
    dump_job j = {json, buf, size, flags, 0, NULL};
    fan__coro_call_main(dumpb_on_main, &j);
    return j.out;
}

static void dumps_on_main(void *arg)
{
    dump_job *j = arg;
    j->str = json_dumps(j->json, j->flags);
}

char *fan__json_dumps(const json_t *json, size_t flags)
{
    dump_job j = {json, NULL, 0, flags, 0, NULL};
    fan__coro_call_main(dumps_on_main, &j);
    return j.str;
}

static void decref_on_main(void *arg)
{
    json_decref(arg);
}

void fan__json_decref(json_t *json)
{
    /* A value's last reference frees it level by level, recursively too. */
    if (json && json->refcount == 1)
        fan__coro_call_main(decref_on_main, json);
    else
        json_decref(json);
}
