/* What the client layer tells observability of each upstream call: the
 * child traceparent and the tracestate it carries (W3C Trace Context), its
 * record for Server-Timing and the waterfall, and the client metrics
 * (calls in flight, http_client_request_duration_seconds). */
#include <string.h>
#include <strings.h>

#include "client/client.h"
#include "runtime/metrics.h"

static int has_traceparent(const char *const *h)
{
    for (; h && *h; h++)
        if (strncasecmp(*h, "traceparent:", 12) == 0)
            return 1;
    return 0;
}

void fan__call_trace_headers(fan_call *c, const char *const *headers)
{
    fan__rt *rt = fan__rt_of(c->rq);
    if (!(rt->obs & FAN__OBS_TRACE) || !rt->trace.begun)
        return;
    fan__trace_random(c->rec.span_id, 8);
    c->sends_trace = !has_traceparent(headers); /* else the caller continues a trace of its own */
}

/* The call whose trace context a call sends: a try sends its call's. */
static const fan_call *trace_owner(const fan_call *c)
{
    return c->parent ? c->parent : c;
}

size_t fan__call_traceparent(const fan_call *c, char out[FAN__TRACEPARENT_LINE + 1])
{
    const fan_call *o = trace_owner(c);
    if (!o->sends_trace)
        return 0;
    memcpy(out, "traceparent: ", 13);
    fan__traceparent_format(&fan__rt_of(o->rq)->trace, o->rec.span_id, out + 13);
    return FAN__TRACEPARENT_LINE;
}

const char *fan__call_tracestate(const fan_call *c)
{
    const fan_call *o = trace_owner(c);
    return o->sends_trace ? fan__rt_of(o->rq)->trace.tracestate : NULL;
}

void fan__call_observe_start(fan_call *c)
{
    fan__rt *rt = fan__rt_of(c->rq);
    c->rec.name = c->name;
    c->rec.url = c->url;
    c->rec.method = c->method;
    c->rec.started = c->started;
    c->rec.attempts = 1;
    fan__list_push(&rt->call_recs, &c->rec.link);
    if (rt->obs & FAN__OBS_METRICS)
        fan__metrics_add(FAN__M_CALLS_ACTIVE, 1);
}

void fan__call_observe_end(fan_call *c)
{
    fan__rt *rt = fan__rt_of(c->rq);
    c->rec.finished = c->finished;
    c->rec.status = c->status;
    c->rec.error = c->error;
    c->rec.attempts = c->attempts ? (unsigned)c->attempts : 1;
    c->rec.hedges = c->flags & FAN_CALL_HEDGED ? 1 : 0; /* at most one hedge per call */
    if (!(rt->obs & FAN__OBS_METRICS))
        return;
    if (c->flags & FAN_CALL_CACHED)
        fan__metrics_add(FAN__M_CACHE_HITS, 1);
    if (c->flags & FAN_CALL_COALESCED)
        fan__metrics_add(FAN__M_COALESCED, 1);
    fan__metrics_add(FAN__M_CALLS_ACTIVE, -1);
    /* The origin remembers the series of its last status without an error
     * (the address is the origin's). */
    fan__m_memo *memo = c->error || c->status < 0 || c->status > 999 ? NULL : fan__slots_memo(c);
    double seconds = c->finished - c->started;
    if (memo && fan__metrics_observe_memo(FAN__M_CLIENT, memo, (uint32_t)c->status, seconds) == 0)
        return;
    fan__m_key k; /* only the strings up to their NUL count */
    k.overflow = 0;
    k.a[0] = k.b[0] = '\0';
    if (c->error) {
        const char *e = fan_errname(c->error);
        size_t el = strlen(e) < sizeof k.a - 1 ? strlen(e) : sizeof k.a - 1;
        memcpy(k.a, e, el);
        k.a[el] = '\0';
    }
    const char *origin;
    size_t n = fan__slots_origin(c, &origin);
    const char *host = n ? memchr(origin, ':', n) : NULL; /* "scheme://host[:port]" */
    if (host && (size_t)(host - origin) + 3 <= n) {
        size_t skip = (size_t)(host - origin) + 3, len = n - skip; /* the server address */
        len = len < sizeof k.b - 1 ? len : sizeof k.b - 1;
        memcpy(k.b, origin + skip, len);
        k.b[len] = '\0';
    }
    k.status = c->error ? 0 : c->status;
    fan__metrics_observe(FAN__M_CLIENT, &k, seconds, memo, (uint32_t)k.status);
}
