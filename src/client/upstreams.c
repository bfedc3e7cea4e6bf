/* What an app says about its upstreams: the CA file, the client
 * certificate, and per-origin settings (HTTP version, a cap on connections,
 * verification off). The app layer owns one fan__upstreams per app and
 * points its fan__site at it; every request's runtime carries that pointer
 * (fan__rt.upstreams), so a call finds its settings without knowing the
 * app. */
#include <stdlib.h>
#include <string.h>

#include "client/client.h"

fan__upstreams *fan__upstreams_new(void)
{
    return calloc(1, sizeof(fan__upstreams));
}

void fan__upstreams_free(fan__upstreams *u)
{
    if (!u)
        return;
    for (fan__origin_cfg *o = u->origins, *next; o; o = next) {
        next = o->next;
        free(o);
    }
    free(u->ca_file);
    free(u->client_cert);
    free(u->client_key);
    free(u);
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
