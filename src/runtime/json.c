/* jansson's parse and writers, run on the loop's own stack. jansson recurses
 * once per level of nesting (up to 2048 levels), which a coroutine's stack
 * (64 KiB by default) cannot hold: a body of "[[[[..." from an upstream or a
 * client would overflow it and kill the worker. Every parse of input that
 * fanout makes, and every write of a value a handler built, goes through
 * here. Cost: two stack switches, a few dozen instructions.
 *
 * Also the arena parse: a value fanout reads itself and never hands out
 * (fan_call_json_number()) is parsed into the request's arena, with no
 * malloc or free per node and no json_decref() walk. jansson's allocation
 * functions are process-wide, so fan__json_install() puts in a pair that
 * passes to the ones it found (malloc and free, or the program's own)
 * except while this thread is inside fan__json_loadb_arena(): only then do
 * allocations come from the arena and frees do nothing, and only jansson's
 * own parse runs then. */
#include <pthread.h>

#include "coro/coro.h"
#include "runtime/runtime.h"

static json_malloc_t heap_malloc;
static json_free_t heap_free;
static _Thread_local fan__arena *parse_arena; /* non-NULL inside an arena parse */

static void *json_alloc(size_t size)
{
    return parse_arena ? fan__arena_alloc(parse_arena, size) : heap_malloc(size);
}

static void json_free(void *p)
{
    if (!parse_arena)
        heap_free(p);
}

static void install(void)
{
    json_get_alloc_funcs(&heap_malloc, &heap_free);
    json_set_alloc_funcs(json_alloc, json_free);
}

void fan__json_install(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install);
}

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

json_t *fan__json_loadb_arena(fan__arena *a, const char *buf, size_t len, int *in_arena)
{
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    *in_arena = m == json_alloc && f == json_free; /* else the program replaced them */
    if (!*in_arena)
        return fan__json_loadb(buf, len, 0, NULL);
    parse_arena = a;
    json_t *j = fan__json_loadb(buf, len, 0, NULL);
    parse_arena = NULL;
    return j;
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
