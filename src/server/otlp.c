/* Span export over OTLP/HTTP JSON (--otlp-endpoint URL): one span per
 * traced request (kind SERVER) and one per upstream call (kind CLIENT, its
 * parent the request's span, its id the one its traceparent carried).
 * Finished requests hand their spans to a bounded queue of the worker; a
 * timer on the worker's own loop sends them in batches, one POST at a time
 * over a fresh connection, so no request ever waits for the collector.
 * Spans beyond the queue, and the batches the collector refuses or never
 * answers, are counted in fanout_spans_dropped_total. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/redact.h"
#include "server/admin.h"
#include "server/otlp.h"

#define FLUSH_MS 1000
#define EXPORT_TIMEOUT_MS 5000
#define BATCH_MAX 512

static struct {
    int on;
    char host[256], path[512];
    struct sockaddr_storage addr;
    unsigned max_queued;
} cfg;

typedef struct exporter {
    uv_timer_t flush;
    json_t *queue; /* spans waiting */
    int running;   /* started on this thread */
    int in_flight; /* a POST under way */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t deadline;
    char *request; /* the POST, head and body */
    size_t request_len;
    char reply[64]; /* the start of the answer: its status line */
    size_t reply_len;
    size_t batch; /* spans in the POST */
    int closing;
} exporter;

static _Thread_local exporter *X;

int fan__otlp_configure(const char *url, unsigned max_queued)
{
    char host[256], port[16] = "80";
    const char *p;
    if (!url || strncasecmp(url, "http://", 7) != 0) {
        fan_log(FAN_LOG_ERROR, "--otlp-endpoint: expected an http:// URL, got '%s'",
                url ? url : "");
        return FAN_EINVAL;
    }
    p = url + 7;
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof host) {
        fan_log(FAN_LOG_ERROR, "--otlp-endpoint: no host in '%s'", url);
        return FAN_EINVAL;
    }
    memcpy(host, p, hl);
    host[hl] = '\0';
    p += hl;
    if (*p == ':') {
        size_t pl = strcspn(p + 1, "/");
        if (pl == 0 || pl >= sizeof port) {
            fan_log(FAN_LOG_ERROR, "--otlp-endpoint: bad port in '%s'", url);
            return FAN_EINVAL;
        }
        memcpy(port, p + 1, pl);
        port[pl] = '\0';
        p += 1 + pl;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        fan_log(FAN_LOG_ERROR, "--otlp-endpoint: cannot resolve '%s'", host);
        return FAN_EINVAL;
    }
    memcpy(&cfg.addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    snprintf(cfg.host, sizeof cfg.host, "%s", host);
    snprintf(cfg.path, sizeof cfg.path, "%s", *p ? p : "/v1/traces");
    cfg.max_queued = max_queued;
    cfg.on = 1;
    fan__span_sink = fan__otlp_sink;
    return 0;
}

static void hexid(const unsigned char *b, size_t n, char *out)
{
    fan__hex(b, n, out);
}

static json_t *attr_s(const char *k, const char *v)
{
    return json_pack("{s:s, s:{s:s}}", "key", k, "value", "stringValue", v);
}

static json_t *attr_i(const char *k, long long v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", v); /* OTLP JSON writes 64-bit integers as strings */
    return json_pack("{s:s, s:{s:s}}", "key", k, "value", "intValue", buf);
}

static json_t *nanos(double seconds)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.0f", seconds * 1e9);
    return json_string(buf);
}

static json_t *span(const fan__trace *t, const unsigned char *id, const unsigned char *parent,
                    const char *name, int kind, double start, double end, json_t *attrs, int error)
{
    char tid[33], sid[17], pid[17];
    hexid(t->trace_id, 16, tid);
    hexid(id, 8, sid);
    json_t *s =
        json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:{s:i}}", "traceId", tid, "spanId", sid,
                  "name", name, "kind", kind, "startTimeUnixNano", nanos(start), "endTimeUnixNano",
                  nanos(end), "attributes", attrs, "status", "code", error ? 2 : 0);
    if (s && parent) {
        hexid(parent, 8, pid);
        json_object_set_new(s, "parentSpanId", json_string(pid));
    }
    return s;
}

static void enqueue(json_t *s)
{
    if (!s)
        return;
    if (json_array_size(X->queue) >= cfg.max_queued) {
        fan__metrics_add(FAN__M_SPANS_DROPPED, 1);
        json_decref(s);
        return;
    }
    json_array_append_new(X->queue, s);
}

static void call_span(const fan__span_req *r, const fan__call_rec *c)
{
    char url[512], cname[256], name[160], addr[256] = "";
    fan__redact_url(c->url, url, sizeof url);
    fan__redact_url(c->name, cname, sizeof cname);
    const char *h = strstr(c->url, "://");
    if (h) {
        size_t n = strcspn(h + 3, "/?#");
        snprintf(addr, sizeof addr, "%.*s", (int)(n < 255 ? n : 255), h + 3);
    }
    snprintf(name, sizeof name, "%s", c->method);
    json_t *a = json_array();
    json_array_append_new(a, attr_s("http.request.method", c->method));
    json_array_append_new(a, attr_s("url.full", url));
    json_array_append_new(a, attr_s("server.address", addr));
    json_array_append_new(a, attr_s("fanout.call.name", cname));
    if (c->status)
        json_array_append_new(a, attr_i("http.response.status_code", c->status));
    if (c->error)
        json_array_append_new(a, attr_s("error.type", fan_errname(c->error)));
    double end = c->finished ? c->finished : r->finished;
    enqueue(span(r->trace, c->span_id, r->trace->span_id, name, 3,
                 r->wall_start + (c->started - r->started), r->wall_start + (end - r->started), a,
                 c->error != 0 || c->status >= 500));
}

void fan__otlp_sink(const fan__span_req *r)
{
    if (!X || !X->running)
        return;
    char path[512], name[160];
    fan__redact_url(r->path ? r->path : "", path, sizeof path);
    snprintf(name, sizeof name, "%s%s%s", r->method, r->route ? " " : "", r->route ? r->route : "");
    json_t *a = json_array();
    json_array_append_new(a, attr_s("http.request.method", r->method));
    json_array_append_new(a, attr_s("url.path", path));
    if (r->route)
        json_array_append_new(a, attr_s("http.route", r->route));
    json_array_append_new(a, attr_i("http.response.status_code", r->status));
    enqueue(span(r->trace, r->trace->span_id, r->trace->has_parent ? r->trace->parent_id : NULL,
                 name, 2, r->wall_start, r->wall_start + (r->finished - r->started), a,
                 r->status >= 500));
    fan__list *pos, *calls = (fan__list *)r->calls;
    fan__list_each(pos, calls)
    {
        call_span(r, fan__container_of(pos, fan__call_rec, link));
    }
}

/* The export's end: the batch counted as exported or dropped, the
 * connection closed. */
static void closed(uv_handle_t *h)
{
    (void)h;
    if (--X->closing == 0)
        X->in_flight = 0;
}

static void finish(int ok)
{
    if (X->closing)
        return;
    int status = 0;
    if (X->reply_len > 12 && memcmp(X->reply, "HTTP/1.", 7) == 0)
        status = atoi(X->reply + 9);
    ok = ok && status >= 200 && status < 300;
    if (ok) {
        fan__metrics_add(FAN__M_SPANS_EXPORTED, (int64_t)X->batch);
    } else {
        fan__metrics_add(FAN__M_SPANS_DROPPED, (int64_t)X->batch);
        fan_log(FAN_LOG_WARN, "otlp: %zu spans dropped: the collector %s", X->batch,
                status ? "refused them" : "did not answer");
    }
    free(X->request);
    X->request = NULL;
    X->closing = 2;
    uv_close((uv_handle_t *)&X->tcp, closed);
    uv_close((uv_handle_t *)&X->deadline, closed);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static _Thread_local char scratch[4096];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof scratch);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)s;
    if (n > 0) {
        size_t room = sizeof X->reply - 1 - X->reply_len,
               take = (size_t)n < room ? (size_t)n : room;
        memcpy(X->reply + X->reply_len, buf->base, take);
        X->reply_len += take;
        X->reply[X->reply_len] = '\0';
        if (strstr(X->reply, "\r\n"))
            finish(1); /* the status line is all we need */
    } else if (n < 0) {
        finish(1);
    }
}

static void written(uv_write_t *w, int status)
{
    (void)w;
    if (status < 0)
        finish(0);
    else
        uv_read_start((uv_stream_t *)&X->tcp, alloc_cb, read_cb);
}

static void connected(uv_connect_t *c, int status)
{
    (void)c;
    if (status < 0 || X->closing) {
        finish(0);
        return;
    }
    uv_buf_t b = uv_buf_init(X->request, (unsigned)X->request_len);
    if (uv_write(&X->write, (uv_stream_t *)&X->tcp, &b, 1, written) != 0)
        finish(0);
}

static void timed_out(uv_timer_t *t)
{
    (void)t;
    finish(0);
}

/* The pending spans as one OTLP ExportTraceServiceRequest, POSTed. */
static void send_batch(void)
{
    size_t n = json_array_size(X->queue), take = n < BATCH_MAX ? n : BATCH_MAX;
    json_t *spans = json_array();
    for (size_t i = 0; i < take; i++)
        json_array_append(spans, json_array_get(X->queue, i));
    for (size_t i = 0; i < take; i++)
        json_array_remove(X->queue, 0);
    json_t *body =
        json_pack("{s:[{s:{s:[{s:s, s:{s:s}}]}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceSpans",
                  "resource", "attributes", "key", "service.name", "value", "stringValue", "fanout",
                  "scopeSpans", "scope", "name", "fanout", "version", FAN_VERSION, "spans", spans);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    X->batch = take;
    if (!text) {
        fan__metrics_add(FAN__M_SPANS_DROPPED, (int64_t)take);
        return;
    }
    size_t blen = strlen(text), cap = blen + strlen(cfg.host) + strlen(cfg.path) + 160;
    X->request = malloc(cap);
    if (!X->request) {
        free(text);
        fan__metrics_add(FAN__M_SPANS_DROPPED, (int64_t)take);
        return;
    }
    int hl = snprintf(X->request, cap,
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      cfg.path, cfg.host, blen);
    memcpy(X->request + hl, text, blen);
    X->request_len = (size_t)hl + blen;
    free(text);
    X->reply_len = 0;
    X->in_flight = 1;
    uv_tcp_init(fan__loop(), &X->tcp);
    uv_timer_init(fan__loop(), &X->deadline);
    uv_timer_start(&X->deadline, timed_out, EXPORT_TIMEOUT_MS, 0);
    if (uv_tcp_connect(&X->connect, &X->tcp, (const struct sockaddr *)&cfg.addr, connected) != 0)
        finish(0);
}

static void flush_cb(uv_timer_t *t)
{
    (void)t;
    if (!X->in_flight && json_array_size(X->queue))
        send_batch();
}

void fan__otlp_start(void)
{
    if (!cfg.on || X)
        return;
    X = calloc(1, sizeof *X);
    if (!X || !(X->queue = json_array())) {
        fan_log(FAN_LOG_ERROR, "otlp: out of memory: no spans are exported");
        free(X);
        X = NULL;
        return;
    }
    uv_timer_init(fan__loop(), &X->flush);
    uv_timer_start(&X->flush, flush_cb, FLUSH_MS, FLUSH_MS);
    uv_unref((uv_handle_t *)&X->flush); /* spans never keep a stopping worker alive */
    X->running = 1;
}

static void flush_closed(uv_handle_t *h)
{
    (void)h;
}

void fan__otlp_stop(void)
{
    if (!X)
        return;
    X->running = 0;
    uv_close((uv_handle_t *)&X->flush, flush_closed);
    /* A POST under way ends by itself (at most EXPORT_TIMEOUT_MS); what
     * waits is dropped, and counted. */
    fan__metrics_add(FAN__M_SPANS_DROPPED, (int64_t)json_array_size(X->queue));
}

void fan__otlp_free(void)
{
    if (!X)
        return;
    json_decref(X->queue);
    free(X->request);
    free(X);
    X = NULL;
}
