/* What an app says about its upstreams: the CA file, the client
 * certificate, and per-origin settings (HTTP version, a cap on connections,
 * verification off). The app layer owns one fan__upstreams per app and
 * registers it here under the address of the app's limits, which is what a
 * request's runtime carries (fan__rt.limits): the client finds a call's
 * settings from it without knowing the app.
 *
 * TODO: the runtime should carry the app's upstream settings beside its
 * limits (fan__rt_init() in src/http/request.c) instead of this registry;
 * not done while src/http is being changed on another branch. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static fan__upstreams *registry; /* every app's, linked by `next` */

fan__upstreams *fan__upstreams_new(const fan_limits *key)
{
    fan__upstreams *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->key = key;
    pthread_mutex_lock(&registry_lock);
    u->next = registry;
    registry = u;
    pthread_mutex_unlock(&registry_lock);
    return u;
}

void fan__upstreams_free(fan__upstreams *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&registry_lock);
    fan__upstreams **p = &registry;
    while (*p && *p != u)
        p = &(*p)->next;
    if (*p)
        *p = u->next;
    pthread_mutex_unlock(&registry_lock);
    for (fan__origin_cfg *o = u->origins, *next; o; o = next) {
        next = o->next;
        free(o);
    }
    free(u->ca_file);
    free(u->client_cert);
    free(u->client_key);
    free(u);
}

/* Apps are made and set up before their workers run, and freed after:
 * the lock only guards the list against apps made in other threads. */
const fan__upstreams *fan__upstreams_of(const fan_limits *key)
{
    pthread_mutex_lock(&registry_lock);
    fan__upstreams *u = registry;
    while (u && u->key != key)
        u = u->next;
    pthread_mutex_unlock(&registry_lock);
    return u;
}

int fan__upstreams_set_origin(fan__upstreams *u, const char *origin, size_t len,
                              const fan_origin_opts *opts)
{
    fan__origin_cfg *o = u->origins;
    while (o && !(o->len == len && memcmp(o->key, origin, len) == 0))
        o = o->next;
    if (!o) {
        if (!(o = calloc(1, sizeof *o + len + 1)))
            return FAN_ENOMEM;
        memcpy(o->key, origin, len);
        o->len = len;
        o->next = u->origins;
        u->origins = o;
    }
    /* Replaced in place: a call that runs keeps a pointer to it. */
    o->opts = *opts;
    return 0;
}

const fan__origin_cfg *fan__upstreams_origin(const fan__upstreams *u, const char *url)
{
    if (!u || !u->origins)
        return NULL;
    char key[512];
    size_t len = fan__origin_key(url, key, sizeof key);
    for (const fan__origin_cfg *o = u->origins; len && o; o = o->next)
        if (o->len == len && memcmp(o->key, key, len) == 0)
            return o;
    return NULL;
}
