/* The app layer's per-request state: created on first use in the request's
 * arena, released with the request by a deferred cleanup. */
#include <string.h>

#include "app/app.h"

static void ctx_release(void *arg)
{
    fan__reqctx *ctx = arg;
    json_decref(ctx->session.data);
    fan__json_decref(ctx->json);
    if (ctx->config)
        fan__snap_release(ctx->config);
}

fan__reqctx *fan__ctx(const fan_req *crq)
{
    /* Every fan_req is allocated mutable; the const of the accessors is a
     * promise about what the handler sees, not about this cache. */
    fan_req *rq = (fan_req *)crq;
    if (rq->ctx)
        return rq->ctx;
    fan__reqctx *ctx = fan_alloc(rq, sizeof *ctx);
    if (!ctx)
        return NULL;
    memset(ctx, 0, sizeof *ctx);
    if (fan_defer(rq, ctx_release, ctx) != 0)
        return NULL;
    rq->ctx = ctx;
    return ctx;
}

fan__snap *fan__req_config(const fan_req *rq)
{
    fan__snap *current = rq->app->config->snap;
    fan__reqctx *ctx = fan__ctx(rq);
    if (!ctx)
        return current; /* out of memory: read unpinned rather than fail */
    if (!ctx->config) {
        ctx->config = current;
        current->refs++;
    }
    return ctx->config;
}
