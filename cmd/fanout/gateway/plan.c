/* An endpoint's dependency graph: a backend depends on the backends its
 * templates and for_each read. Checked for cycles at load; each backend's
 * stage (the longest chain of inputs before it) is what the plan shows. At
 * run time there are no stages: a backend starts as soon as its own inputs
 * are there (run.c). */
#include <stdio.h>
#include <string.h>

#include "gateway.h"

/* Depth-first: 0 unvisited, 1 on the path, 2 done. */
static int visit(gw_errs *e, const char *where, gw_endpoint *ep, int i, int *mark, int *stack,
                 int depth)
{
    gw_backend *b = &ep->backends[i];
    if (mark[i] == 2)
        return 0;
    stack[depth] = i;
    if (mark[i] == 1) {
        char chain[1024];
        size_t n = 0;
        int from = depth - 1;
        while (from > 0 && stack[from] != i)
            from--;
        for (int k = from; k <= depth && n < sizeof chain - 80; k++)
            n += (size_t)snprintf(chain + n, sizeof chain - n, "%s%s", k > from ? " -> " : "",
                                  ep->backends[stack[k]].name);
        char w[1024];
        snprintf(w, sizeof w, "%s.backends[%d]", where, i);
        gw_error(e, w, "a cycle of dependencies: %s", chain);
        return -1;
    }
    mark[i] = 1;
    int d = 0;
    for (size_t k = 0; k < b->ndeps; k++) {
        if (visit(e, where, ep, b->deps[k], mark, stack, depth + 1) != 0)
            return -1;
        if (ep->backends[b->deps[k]].depth + 1 > d)
            d = ep->backends[b->deps[k]].depth + 1;
    }
    b->depth = d;
    mark[i] = 2;
    return 0;
}

int gw_plan_check(gw_errs *e, const char *where, gw_endpoint *ep)
{
    int mark[64] = {0}, stack[66];
    for (size_t i = 0; i < ep->nb; i++)
        if (visit(e, where, ep, (int)i, mark, stack, 0) != 0)
            return -1;
    ep->max_calls = 0;
    for (size_t i = 0; i < ep->nb; i++) {
        const gw_backend *b = &ep->backends[i];
        ep->max_calls += b->each ? b->concurrency : 1;
    }
    return 0;
}

static json_t *strings_of(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static const char *tmpl_text(char *buf, size_t cap, const gw_tmpl *t)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < t->n && n + 8 < cap; i++) {
        const gw_part *p = &t->parts[i];
        if (p->lit)
            n += (size_t)snprintf(buf + n, cap - n, "%.*s", (int)p->len, p->lit);
        else
            n += (size_t)snprintf(buf + n, cap - n, "{%s}", p->ref.text);
    }
    return buf;
}

static json_t *backend_json(const gw_endpoint *ep, const gw_backend *b)
{
    char url[4096];
    json_t *deps = json_array();
    for (size_t k = 0; k < b->ndeps; k++)
        json_array_append_new(deps, json_string(ep->backends[b->deps[k]].name));
    json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:b, s:i}", "name", b->name, "method", b->method,
                          "url", tmpl_text(url, sizeof url, &b->url), "depends_on", deps,
                          "required", b->required, "stage", b->depth);
    if (b->timeout_ms)
        json_object_set_new(o, "timeout_ms", json_integer(b->timeout_ms));
    if (b->each) {
        json_t *fe = json_pack("{s:s, s:s, s:i, s:i}", "over", b->each_text, "as", b->as,
                               "concurrency", b->concurrency, "max_items", b->max_items);
        if (b->batch_max)
            json_object_set_new(fe, "batch", json_integer(b->batch_max));
        json_object_set_new(o, "for_each", fe);
    }
    if (b->merge)
        json_object_set_new(o, "merge", json_true());
    if (b->retry && b->retry->max_retries)
        json_object_set_new(o, "retries", json_integer(b->retry->max_retries));
    if (b->retry && (b->retry->hedge_after_ms || b->retry->hedge_p95))
        json_object_set_new(o, "hedge",
                            json_pack("{s:i, s:b}", "after_ms", b->retry->hedge_after_ms, "p95",
                                      b->retry->hedge_p95));
    if (b->nforward)
        json_object_set_new(o, "forward_headers", strings_of(b->forward, b->nforward));
    return o;
}

json_t *gw_plan_endpoint(const gw_endpoint *ep)
{
    json_t *stages = json_array(), *bs = json_array();
    int top = 0;
    for (size_t i = 0; i < ep->nb; i++)
        if (ep->backends[i].depth > top)
            top = ep->backends[i].depth;
    for (int d = 0; d <= top; d++) {
        json_t *s = json_array();
        for (size_t i = 0; i < ep->nb; i++)
            if (ep->backends[i].depth == d)
                json_array_append_new(s, json_string(ep->backends[i].name));
        json_array_append_new(stages, s);
    }
    for (size_t i = 0; i < ep->nb; i++)
        json_array_append_new(bs, backend_json(ep, &ep->backends[i]));
    json_t *o = json_pack("{s:s, s:s, s:i, s:o, s:o}", "method", ep->method, "path", ep->path,
                          "timeout_ms", ep->timeout_ms, "stages", stages, "backends", bs);
    if (ep->stream)
        json_object_set_new(o, "stream",
                            json_string(ep->stream == GW_STREAM_SSE ? "sse" : "ndjson"));
    return o;
}

json_t *gw_plan_json(const gw *g)
{
    json_t *eps = json_array();
    for (size_t i = 0; i < g->n; i++)
        json_array_append_new(eps, gw_plan_endpoint(&g->eps[i]));
    json_t *plan = json_pack("{s:s, s:o, s:b}", "file", g->file, "endpoints", eps, "debug", g->debug);
    if (plan && g->nbreakers) {
        json_t *brs = json_object();
        for (size_t i = 0; i < g->nbreakers; i++) {
            const gw_breaker *b = g->breakers[i];
            json_object_set_new(brs, b->origin,
                                json_pack("{s:i, s:i, s:i, s:i, s:i}", "failures", b->failures,
                                          "error_percent", b->error_percent, "window_ms",
                                          b->window_ms, "min_calls", b->min_calls, "cooldown_ms",
                                          b->cooldown_ms));
        }
        json_object_set_new(plan, "breakers", brs);
    }
    return plan;
}
