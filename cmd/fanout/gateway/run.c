/* A request of a gateway endpoint: the route is matched, every backend
 * whose inputs are there is started at once, and each completion
 * (fan_call_await_any()) starts what it unblocked, so that a chain of
 * dependencies never waits for unrelated calls. The endpoint's timeout
 * bounds everything: each call gets what is left of it. A required backend
 * that fails ends the request at once (502, 504, or its 4xx passed on). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

/* Splits the request's path and finds its endpoint; *params gets the values
 * of its :parameters. The path is split as the client sent it, and each
 * segment decoded then, so that a "%2F" is a '/' inside a segment (a
 * parameter "a/b"), not a boundary. NULL after a 404 or 405. */
static const gw_endpoint *route(fan_req *rq, const gw *g, const char ***params)
{
    const char *path = fan_req_raw_path(rq);
    const char *segs[64];
    size_t n = 0;
    for (const char *c = path + (*path == '/'); *c;) {
        if (n == 64) { /* deeper than any endpoint can be */
            fan_reply_error(rq, 404, "not found");
            return NULL;
        }
        size_t len = strcspn(c, "/");
        char *seg = fan_alloc(rq, len + 1);
        if (!seg)
            return NULL;
        memcpy(seg, c, len);
        seg[len] = 0;
        /* The whole path decoded (the server answers 400 otherwise), so
         * each of its segments does: only memory can fail here. */
        if (memchr(seg, '%', len) && !(seg = fan_url_decode(rq, seg)))
            return NULL;
        segs[n++] = seg;
        c += len + (c[len] == '/');
    }
    const char *method = fan_req_method(rq);
    const gw_endpoint *best = NULL;
    int best_score = -1, other_method = 0;
    char allow[256] = "";
    for (size_t i = 0; i < g->n; i++) {
        const gw_endpoint *ep = &g->eps[i];
        if (ep->nsegs != n)
            continue;
        int score = 0;
        size_t k = 0;
        for (; k < n; k++) {
            if (ep->segs[k][0] == ':')
                continue;
            if (strcmp(ep->segs[k], segs[k]) != 0)
                break;
            score++;
        }
        if (k < n)
            continue;
        if (strcmp(ep->method, method) != 0 &&
            !(strcmp(method, "HEAD") == 0 && strcmp(ep->method, "GET") == 0)) {
            other_method = 1;
            size_t len = strlen(allow);
            snprintf(allow + len, sizeof allow - len, "%s%s", len ? ", " : "", ep->method);
            continue;
        }
        if (score > best_score) {
            best = ep;
            best_score = score;
        }
    }
    if (!best) {
        if (other_method) {
            fan_resp_set_header(rq, "Allow", allow);
            fan_reply_error(rq, 405, "method not allowed");
        } else {
            fan_reply_error(rq, 404, "not found");
        }
        return NULL;
    }
    *params = fan_alloc(rq, (n + 1) * sizeof **params);
    size_t p = 0;
    for (size_t k = 0; *params && k < n; k++)
        if (best->segs[k][0] == ':')
            (*params)[p++] = segs[k];
    return *params ? best : NULL;
}

void gw_fail(gw_run *r, int i, const char *kind, int status, const char *message)
{
    gw_bstate *s = &r->bs[i];
    if (s->state == B_OK || s->state == B_FAILED)
        return;
    s->state = B_FAILED;
    s->kind = kind;
    s->status = status;
    s->message = message;
    s->t1 = fan_now();
    if (!s->t0)
        s->t0 = s->t1;
    r->left--;
    if (r->ep->stream)
        gw_stream_part(r, i);
}

void gw_succeed(gw_run *r, int i, json_t *result)
{
    gw_bstate *s = &r->bs[i];
    s->state = B_OK;
    s->result = result;
    s->t1 = fan_now();
    r->scope.results[i] = result;
    r->left--;
    if (r->ep->stream)
        gw_stream_part(r, i);
}

/* Milliseconds left of the endpoint's timeout at `now`, 0 when none. */
static unsigned time_left(gw_run *r, double now)
{
    double left = r->ep->timeout_ms - (now - r->t0) * 1000.0;
    return left >= 1 ? (unsigned)left : 0;
}

/* Starts one call of backend `i` (for items first..first+n of a for_each).
 * Returns 0, or -1 when it could not (the reason is in *why). */
int gw_start_call(gw_run *r, int i, size_t first, size_t n, const char **why)
{
    const gw_backend *b = &r->ep->backends[i];
    gw_bstate *s = &r->bs[i];
    gw_scope *sc = &r->scope;
    fan_req *rq = r->rq;
    double now = fan_now();
    unsigned left = time_left(r, now);
    if (!left) {
        *why = "timeout";
        return -1;
    }
    sc->item = NULL;
    json_t *ids = NULL;
    if (b->each && !b->batch_max)
        sc->item = gw_path_get(json_array_get(s->items, first), &b->each_sub, 0, b->each_sub.n);
    char *url = gw_tmpl_render(sc, &b->url, 1);
    const char **headers = fan_alloc(rq, (b->nhdr + b->nforward + 1) * sizeof *headers);
    size_t nh = 0;
    for (size_t k = 0; url && headers && k < b->nhdr; k++) {
        char *v = gw_tmpl_render(sc, &b->hdr_vals[k], 0);
        if (!v) {
            url = NULL;
            break;
        }
        headers[nh++] = fan_sprintf(rq, "%s: %s", b->hdr_names[k], v);
    }
    for (size_t k = 0; url && headers && k < b->nforward; k++) {
        const char *v = fan_req_header(rq, b->forward[k]);
        if (v)
            headers[nh++] = fan_sprintf(rq, "%s: %s", b->forward[k], v);
    }
    json_t *body = url && b->body ? gw_jt_render(sc, b->body) : NULL;
    if (!url || (b->body && !body)) {
        *why = "missing_input";
        json_decref(body);
        return -1;
    }
    headers[nh] = NULL;
    if (b->batch_max) {
        ids = json_array();
        char *list = fan_alloc(rq, 1);
        if (!list)
            return -1;
        *list = 0;
        for (size_t k = first; k < first + n; k++) {
            json_t *id = gw_path_get(json_array_get(s->items, k), &b->each_sub, 0, b->each_sub.n);
            json_array_append(ids, id ? id : json_null());
            const char *t = json_is_string(id) ? json_string_value(id)
                            : json_is_integer(id)
                                ? fan_sprintf(rq, "%" JSON_INTEGER_FORMAT, json_integer_value(id))
                                : "";
            list = fan_sprintf(rq, "%s%s%s", list, k > first ? "," : "", fan_url_escape(rq, t));
        }
        if (b->batch_param)
            url = fan_sprintf(rq, "%s%c%s=%s", url, strchr(url, '?') ? '&' : '?', b->batch_param,
                              list);
        else {
            if (!body)
                body = json_object();
            json_object_set(body, b->batch_field, ids);
        }
        json_decref(ids);
    }
    unsigned timeout = b->timeout_ms && b->timeout_ms < left ? b->timeout_ms : left;
    fan_call_opts o = {.method = b->method,
                       .headers = headers,
                       .json = body,
                       .timeout_ms = timeout,
                       .name = b->name,
                       .retry = b->retry,
                       .cache = b->cache,
                       .cache_ttl_ms = b->cache_ttl_ms,
                       .stale_while_revalidate_ms = b->cache_swr_ms,
                       .stale_if_error_ms = b->cache_sie_ms,
                       .cache_vary = b->cache_vary,
                       .coalesce = b->coalesce};
    fan_call *c = fan_call_start(rq, url, &o);
    json_decref(body);
    if (!c) {
        *why = "nomem";
        return -1;
    }
    gw_slot *slot = NULL;
    for (size_t k = 0; k < r->nslots && !slot; k++)
        if (!r->slots[k].call)
            slot = &r->slots[k];
    if (!slot) { /* cannot happen: the endpoint has a slot for each call it may run at once */
        fan_call_cancel(c);
        *why = "nomem";
        return -1;
    }
    *slot = (gw_slot){c, i, first, n};
    if (!s->t0)
        s->t0 = now;
    s->calls++;
    return 0;
}

/* Starts every waiting backend whose inputs are all there; fails those with
 * a failed input. Repeats while that changes anything. */
static void start_ready(gw_run *r)
{
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < r->ep->nb; i++) {
            const gw_backend *b = &r->ep->backends[i];
            if (r->bs[i].state != B_WAITING)
                continue;
            int ready = 1;
            const char *failed = NULL;
            for (size_t k = 0; k < b->ndeps; k++) {
                int st = r->bs[b->deps[k]].state;
                if (st == B_FAILED)
                    failed = r->ep->backends[b->deps[k]].name;
                else if (st != B_OK)
                    ready = 0;
            }
            if (failed) {
                gw_fail(r, (int)i, "dependency", 0,
                        fan_sprintf(r->rq, "its input '%s' failed", failed));
            } else if (!ready) {
                continue;
            } else if (b->each) {
                gw_start_each(r, (int)i);
            } else {
                const char *why = "nomem";
                if (gw_start_call(r, (int)i, 0, 0, &why) == 0)
                    r->bs[i].state = B_RUNNING;
                else
                    gw_fail(r, (int)i, why, 0,
                            strcmp(why, "missing_input") == 0
                                ? fan_sprintf(r->rq, "{%s} has no value", r->scope.missing)
                                : "the endpoint's timeout passed before it could start");
            }
            changed = 1;
        }
    }
}

/* Classifies a finished call: 0 with *json borrowed (jansson's parse of
 * the body, fan_call_json()), or -1 with *kind. With `unique`, the body is
 * parsed first as fan_call_json_unique() does, and *exact says whether its
 * text says exactly what *json does. */
static int outcome(fan_call *c, int unique, json_t **json, int *exact, const char **kind,
                   int *status)
{
    int err = fan_call_error(c);
    *status = fan_call_status(c);
    if (err) {
        *kind = fan_errname(err);
        return -1;
    }
    if (*status >= 400) {
        *kind = "status";
        return -1;
    }
    *exact = unique && fan_call_json_unique(c);
    if (!(*json = fan_call_json(c))) {
        *kind = "not_json";
        return -1;
    }
    return 0;
}

/* A call ended: records it, and ends its backend when that was its last. */
static void call_done(gw_run *r, gw_slot *sl)
{
    int i = sl->b;
    const gw_backend *b = &r->ep->backends[i];
    gw_bstate *s = &r->bs[i];
    json_t *j = NULL;
    const char *kind = NULL;
    int status;
    int exact = 0;
    int rc = outcome(sl->call, b->whole, &j, &exact, &kind, &status);
    fan_call *c = sl->call;
    sl->call = NULL;
    s->attempts += (unsigned)fan_call_attempts(c);
    s->flags |= fan_call_flags(c);
    if (!b->each) {
        if (rc == 0 && exact) {
            /* Its keys are unique, and a NUL byte jansson let through after
             * a literal ("[1\0]") is not in it: the body's text says what j
             * says, and the answer may carry it as it came. */
            s->text = fan_call_body(c, &s->text_len);
            if (memchr(s->text, 0, s->text_len))
                s->text = NULL;
        }
        if (rc == 0) {
            gw_succeed(r, i, json_incref(j));
        } else {
            s->call = c;
            gw_fail(r, i, kind, status, NULL);
        }
        return;
    }
    s->inflight--;
    if (rc == 0 && b->batch_max) {
        gw_join_batch(r, b, s, sl, j);
    } else if (rc == 0) {
        json_array_set_new(s->result, sl->first, gw_shape(b, j));
    } else {
        if (!s->item_errors)
            s->item_errors = json_array();
        for (size_t k = sl->first; k < sl->first + (sl->n ? sl->n : 1); k++) {
            json_t *e = json_pack("{s:I, s:s}", "item", (json_int_t)k, "error", kind);
            if (status)
                json_object_set_new(e, "status", json_integer(status));
            json_array_append_new(s->item_errors, e);
        }
    }
    gw_each_more(r, i);
}

/* The first required backend that failed, or -1. */
static int required_failure(gw_run *r)
{
    for (size_t i = 0; i < r->ep->nb; i++)
        if (r->bs[i].state == B_FAILED && r->ep->backends[i].required)
            return (int)i;
    return -1;
}

static void reply_failure(gw_run *r, int i)
{
    const gw_backend *b = &r->ep->backends[i];
    gw_bstate *s = &r->bs[i];
    int status = strcmp(s->kind, "timeout") == 0 ? 504 : 502;
    if (r->ep->stream) {
        gw_stream_end(r, status, b->name);
        return;
    }
    if (b->pass_4xx && s->call && s->status >= 400 && s->status < 500) {
        size_t len;
        const char *body = fan_call_body(s->call, &len);
        const char *type = fan_call_header(s->call, "Content-Type");
        fan_resp_set_header(r->rq, "Fanout-Failed", b->name);
        fan_reply(r->rq, s->status, type, body, len);
        return;
    }
    json_t *o = json_pack("{s:s, s:i, s:s, s:s}", "error",
                          fan_sprintf(r->rq, "backend '%s' failed: %s", b->name, s->kind), "status",
                          status, "backend", b->name, "kind", s->kind);
    if (s->status)
        json_object_set_new(o, "upstream_status", json_integer(s->status));
    if (s->message)
        json_object_set_new(o, "message", json_string(s->message));
    if (r->timing)
        json_object_set_new(o, "_fanout", json_pack("{s:o}", "timing", gw_timing_json(r)));
    fan_resp_set_header(r->rq, "Fanout-Failed", b->name);
    fan_reply_json(r->rq, status, o);
}

static void release(void *arg)
{
    gw_run *r = arg;
    for (size_t i = 0; i < r->ep->nb; i++) {
        json_decref(r->bs[i].result);
        json_decref(r->bs[i].item_errors);
    }
}

/* Fanout-Debug: "plan" answers the plan, "timing" adds each backend's. */
static int debug(gw_run *r)
{
    const char *d = r->g->debug ? fan_req_header(r->rq, "Fanout-Debug") : NULL;
    if (!d)
        return 0;
    if (strcmp(d, "timing") == 0) {
        r->timing = 1;
        return 0;
    }
    if (strcmp(d, "plan") == 0) {
        json_t *p = gw_plan_endpoint(r->ep), *params = json_object();
        size_t k = 0;
        for (size_t i = 0; i < r->ep->nsegs; i++)
            if (r->ep->segs[i][0] == ':')
                json_object_set_new(params, r->ep->segs[i] + 1, json_string(r->scope.params[k++]));
        json_object_set_new(p, "params", params);
        /* What the backends without inputs would call for this request. */
        json_t *bs = json_object_get(p, "backends");
        for (size_t i = 0; i < r->ep->nb; i++) {
            const gw_backend *b = &r->ep->backends[i];
            char *url = b->ndeps ? NULL : gw_tmpl_render(&r->scope, &b->url, 1);
            if (url)
                json_object_set_new(json_array_get(bs, i), "request_url", json_string(url));
        }
        fan_reply_json(r->rq, 200, p);
        return 1;
    }
    fan_reply_error(r->rq, 400, "Fanout-Debug is 'plan' or 'timing'");
    return 1;
}

/* Fanout-Partial: the backends with a missing part, when there is one. */
static void partial_header(gw_run *r)
{
    char names[512];
    size_t n = 0;
    for (size_t i = 0; i < r->ep->nb; i++) {
        const char *name = r->ep->backends[i].name;
        if ((r->bs[i].state == B_FAILED || json_array_size(r->bs[i].item_errors)) &&
            n + strlen(name) + 2 < sizeof names)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? "," : "", name);
    }
    if (n)
        fan_resp_set_header(r->rq, "Fanout-Partial", names);
}

static void unhold(void *arg)
{
    gw_release(arg, 0);
}

void gw_handler(fan_req *rq)
{
    gw *g = fan_app_data(fan_req_app(rq));
    /* A reload in this process (--workers 0) may replace the gateway while
     * the request runs: it holds this one until it ends. */
    if (fan_defer(rq, unhold, g) != 0) {
        fan_reply_error(rq, 503, "out of memory");
        return;
    }
    g->refs++;
    const char **params = NULL;
    const gw_endpoint *ep = route(rq, g, &params);
    if (!ep)
        return;
    gw_run *r = fan_alloc(rq, sizeof *r);
    gw_bstate *bs = fan_alloc(rq, ep->nb * sizeof *bs);
    json_t **results = fan_alloc(rq, ep->nb * sizeof *results);
    gw_slot *slots = fan_alloc(rq, ep->max_calls * sizeof *slots);
    if (!r || !bs || !results || !slots || fan_defer(rq, release, r) != 0) {
        fan_reply_error(rq, 503, "out of memory");
        return;
    }
    memset(bs, 0, ep->nb * sizeof *bs);
    memset(results, 0, ep->nb * sizeof *results);
    memset(slots, 0, ep->max_calls * sizeof *slots);
    *r = (gw_run){.rq = rq,
                  .g = g,
                  .ep = ep,
                  .bs = bs,
                  .slots = slots,
                  .nslots = ep->max_calls,
                  .t0 = fan_now(),
                  .left = ep->nb};
    r->scope = (gw_scope){.rq = rq, .ep = ep, .params = params, .results = results};
    if (debug(r))
        return;
    /* The endpoint's timeout, not the server's request timeout, is what ends
     * it: its 504 names the backend. The second more is for that answer. */
    fan_req_set_deadline(rq, ep->timeout_ms + 1000);
    if (ep->stream && gw_stream_start(r) != 0)
        return;
    start_ready(r);
    int bad;
    while ((bad = required_failure(r)) < 0 && r->left > 0) {
        fan_call *c = fan_call_await_any(rq);
        if (!c)
            return; /* cancelled: the client left, or the server stops */
        for (size_t k = 0; k < r->nslots; k++)
            if (r->slots[k].call == c) {
                call_done(r, &r->slots[k]);
                break;
            }
        start_ready(r);
    }
    if (bad >= 0) {
        reply_failure(r, bad);
        return;
    }
    if (ep->stream) {
        gw_stream_end(r, 200, NULL);
        return;
    }
    partial_header(r);
    if (gw_reply_answer(r) != 0)
        fan_reply_error(rq, 503, "out of memory");
}
