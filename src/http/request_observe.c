/* What the inbound server tells observability of each request: its trace
 * context taken from traceparent and tracestate (or a new trace), requests
 * in flight, http_server_request_duration_seconds by method, route and
 * status, and the waterfall's record of the request and its calls (the
 * query's values redacted, only the allow-listed headers). */
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/redact.h"
#include "http/http.h"
#include "runtime/metrics.h"

/* The one value of header `name`, or NULL when it is absent or repeated
 * (two traceparent headers make neither valid). */
static const char *single_header(const fan_req *rq, const char *name)
{
    const char *v = NULL;
    char first = name[0]; /* lower-case: a cheap first test, for every request */
    for (unsigned i = 0; i < rq->nheaders; i++) {
        if ((rq->headers[i].name[0] | 0x20) != first || strcasecmp(rq->headers[i].name, name) != 0)
            continue;
        if (v)
            return NULL;
        v = rq->headers[i].value;
    }
    return v;
}

static void take_trace(fan_req *rq)
{
    fan__trace *t = &rq->rt.trace;
    const char *tp = single_header(rq, "traceparent");
    if (tp && fan__trace_parse(t, tp, strlen(tp)) == 0) {
        const char *ts = single_header(rq, "tracestate");
        if (ts && fan__tracestate_ok(ts, strlen(ts)))
            t->tracestate = ts; /* the header lives in the arena as long as the request */
    }
    fan__trace_begin(t);
}

void fan__req_observe_start(fan_req *rq)
{
    if (rq->rt.obs & FAN__OBS_TRACE)
        take_trace(rq);
    if (rq->rt.obs & FAN__OBS_METRICS) {
        fan__metrics_add(FAN__M_REQUESTS_ACTIVE, 1);
        rq->observed = 1;
    }
}

void fan__req_trace_id(const fan_req *rq, char out[33])
{
    if (rq->rt.trace.begun) {
        memcpy(out, rq->rt.trace.prefix + 3, 32);
        out[32] = '\0';
    } else {
        out[0] = '\0';
    }
}

/* The method as a bounded label: a standard one, else "_OTHER" (as the
 * OpenTelemetry conventions say); its index among them in *index. */
static const char *method_label(const char *m, unsigned *index)
{
    static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER"};
    size_t i = 0;
    while (i < sizeof known / sizeof known[0] - 1 && strcmp(m, known[i]) != 0)
        i++;
    *index = (unsigned)i;
    return known[i];
}

/* Copies src to dst[cap], cut to fit; returns the length copied. */
static size_t copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

static void record_headers(const fan_req *rq, char *out, size_t cap)
{
    size_t n = 0;
    for (unsigned i = 0; i < rq->nheaders; i++) {
        const fan__header *h = &rq->headers[i];
        if (!fan__header_recordable(h->name)) /* most are not: measured only if */
            continue;
        size_t nl = strlen(h->name), vl = strlen(h->value);
        if (n + nl + vl + 4 > cap)
            continue;
        memcpy(out + n, h->name, nl);
        memcpy(out + n + nl, ": ", 2);
        memcpy(out + n + nl + 2, h->value, vl);
        out[n + nl + vl + 2] = '\n';
        n += nl + vl + 3;
    }
    out[n] = '\0';
}

static void record_calls(const fan_req *rq, fan__wf_req *w)
{
    fan__list *pos;
    w->ncalls = 0;
    fan__list_each(pos, &rq->rt.call_recs)
    {
        const fan__call_rec *r = fan__container_of(pos, fan__call_rec, link);
        if (w->ncalls++ >= FAN__WF_CALLS)
            continue;
        fan__wf_call *c = &w->calls[w->ncalls - 1];
        copy(c->name, sizeof c->name, r->name);
        c->start_ms = (float)((r->started - rq->started) * 1000);
        c->dur_ms = (float)(((r->finished ? r->finished : fan_now()) - r->started) * 1000);
        c->status = r->status;
        if (r->error)
            copy(c->error, sizeof c->error, fan_errname(r->error));
        else
            c->error[0] = '\0';
        c->attempts = (unsigned short)r->attempts;
        c->hedges = (unsigned short)r->hedges;
    }
}

/* getpid() is a system call: once per process, again in a forked child. */
static pid_t self_pid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forget_pid(void)
{
    self_pid = 0;
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

static unsigned pid_of_self(void)
{
    if (!self_pid) {
        pthread_once(&atfork_once, register_atfork);
        self_pid = getpid();
    }
    return (unsigned)self_pid;
}

static double wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fills the ring's next record in place: the path and call names as they
 * are (the admin listener redacts them when it shows them). */
static void record_waterfall(const fan_req *rq, const char *method, const char *route,
                             double seconds)
{
    fan__wf_req *w = fan__wf_begin();
    if (!w)
        return;
    w->used = 1;
    w->wall = wall_time() - seconds;
    copy(w->method, sizeof w->method, method);
    copy(w->route, sizeof w->route, route);
    size_t n = copy(w->path, sizeof w->path, rq->raw_path ? rq->raw_path : "");
    if (rq->query && n + 2 < sizeof w->path) {
        w->path[n] = '?';
        copy(w->path + n + 1, sizeof w->path - n - 1, rq->query);
    }
    record_headers(rq, w->headers, sizeof w->headers);
    fan__req_trace_id(rq, w->trace_id);
    w->status = rq->status;
    w->dur_ms = (float)(seconds * 1000);
    w->pid = pid_of_self();
    record_calls(rq, w);
    fan__wf_commit(w);
}

static void export_span(const fan_req *rq, double wall_start)
{
    fan__span_req r = {
        .trace = &rq->rt.trace,
        .method = rq->method,
        .route = rq->match.pattern,
        .path = rq->raw_path,
        .client = NULL,
        .status = rq->status,
        .wall_start = wall_start,
        .started = rq->started,
        .finished = fan_now(),
        .calls = &rq->rt.call_recs,
    };
    fan__span_sink(&r);
}

void fan__req_observe_end(fan_req *rq)
{
    if (fan__span_sink && rq->rt.trace.begun && rq->status && rq->method)
        export_span(rq, wall_time() - (fan_now() - rq->started));
    if (!rq->observed)
        return;
    fan__metrics_add(FAN__M_REQUESTS_ACTIVE, -1);
    if (!rq->status)
        return; /* never answered: the client left before */
    double seconds = fan_now() - rq->started;
    unsigned mi;
    const char *method = method_label(rq->method ? rq->method : "", &mi);
    const char *route = rq->match.pattern ? rq->match.pattern : "";
    /* The route's handler remembers the series of its last method and
     * status (a status has three digits: 1000 apart is room enough). */
    uint32_t tag = mi * 1000 + (unsigned)rq->status;
    fan__m_memo *memo =
        rq->match.pattern && rq->status > 0 && rq->status <= 999 ? rq->match.memo : NULL;
    if (!memo || fan__metrics_observe_memo(FAN__M_SERVER, memo, tag, seconds) != 0) {
        fan__m_key k; /* only the strings up to their NUL count */
        k.overflow = 0;
        copy(k.a, sizeof k.a, method);
        copy(k.b, sizeof k.b, route);
        k.status = rq->status;
        fan__metrics_observe(FAN__M_SERVER, &k, seconds, memo, tag);
    }
    record_waterfall(rq, method, route, seconds);
}
