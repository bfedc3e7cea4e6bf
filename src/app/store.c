/* The per-request store (Flask's `g`): values by key, visible to every task
 * of the request, destroyed when the request's memory is freed. */
#include <string.h>

#include "app/app.h"

static void destroy_all(void *arg)
{
    fan_req *rq = arg;
    for (fan__stored *s = rq->store; s; s = s->next)
        if (s->destroy && s->value)
            s->destroy(s->value);
    rq->store = NULL;
}

int fan_store_set(fan_req *rq, const char *key, void *value, void (*destroy)(void *value))
{
    for (fan__stored *s = rq->store; s; s = s->next)
        if (strcmp(s->key, key) == 0) {
            if (s->destroy && s->value && s->value != value)
                s->destroy(s->value);
            s->value = value;
            s->destroy = destroy;
            return 0;
        }
    fan__stored *s = fan__arena_alloc(&rq->rt.arena, sizeof *s);
    const char *k = fan__arena_strdup(&rq->rt.arena, key);
    if (!s || !k)
        return FAN_ENOMEM;
    /* The first value registers the cleanup that destroys them all. */
    if (!rq->store && fan_defer(rq, destroy_all, rq) != 0)
        return FAN_ENOMEM;
    s->key = k;
    s->value = value;
    s->destroy = destroy;
    s->next = rq->store;
    rq->store = s;
    return 0;
}

void *fan_store_get(const fan_req *rq, const char *key)
{
    for (const fan__stored *s = rq->store; s; s = s->next)
        if (strcmp(s->key, key) == 0)
            return s->value;
    return NULL;
}
