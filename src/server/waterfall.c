/* The waterfall: the admin listener's page of the recent requests and the
 * slowest request of each route, each drawn with its upstream calls as bars
 * on a time axis (plain HTML and inline SVG, no script, no external asset),
 * and the same records as JSON. The records come from the shared region
 * (src/http/request_observe.c) and are redacted as they are read: query
 * values and URL credentials replaced (core/redact.h); every text is
 * escaped here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/redact.h"
#include "server/admin.h"

#define SHOWN_MAX 64
#define WIDTH 900   /* the SVG's width in px */
#define LABEL_W 260 /* the call names' column */
#define ROW_H 18
#define MARK_W 150 /* room right of the axis for the longest bar's mark */
#define PLOT_W (WIDTH - LABEL_W - MARK_W)

typedef struct page {
    fan__buf b;
    int failed;
} page;

static void put(page *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(page *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (fan__buf_vprintf(&p->b, fmt, ap) != 0)
        p->failed = 1;
    va_end(ap);
}

/* HTML-escaped `s` (also fit for attribute values) into buf. */
static const char *html(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        const char *e = *s == '<'    ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '&'  ? "&amp;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&#39;"
                                     : NULL;
        if (e) {
            memcpy(buf + n, e, strlen(e));
            n += strlen(e);
        } else {
            buf[n++] = (unsigned char)*s < 0x20 && *s != '\n' ? ' ' : *s;
        }
    }
    buf[n] = '\0';
    return buf;
}

static int newer(const void *a, const void *b)
{
    const fan__wf_req *x = a, *y = b;
    return x->wall < y->wall ? 1 : x->wall > y->wall ? -1 : 0;
}

static int slower(const void *a, const void *b)
{
    const fan__wf_req *x = a, *y = b;
    return x->dur_ms < y->dur_ms ? 1 : x->dur_ms > y->dur_ms ? -1 : 0;
}

static void redact(char *s, size_t cap)
{
    char tmp[512];
    fan__redact_url(s, tmp, sizeof tmp < cap ? sizeof tmp : cap);
    strcpy(s, tmp);
}

/* A record as it may be shown: its path and call names redacted. */
static void redact_record(fan__wf_req *w)
{
    redact(w->path, sizeof w->path);
    for (unsigned i = 0; i < w->ncalls && i < FAN__WF_CALLS; i++)
        redact(w->calls[i].name, sizeof w->calls[i].name);
}

size_t fan__waterfall_collect(fan__metrics_region *r, int recent, fan__wf_req *out, size_t cap)
{
    size_t n = 0;
    unsigned per = recent ? FAN__WF_RECENT : FAN__WF_SLOWEST;
    for (unsigned l = 0; l < r->nlanes; l++) {
        fan__m_lane *lane = fan__metrics_lane(r, l);
        for (unsigned i = 0; i < per && n < cap; i++) {
            if (fan__wf_read(recent ? &lane->recent[i] : &lane->slowest[i], &out[n]) != 0)
                continue;
            redact_record(&out[n]);
            size_t j = 0; /* the slowest of a route over every lane */
            while (!recent && j < n &&
                   (strcmp(out[j].route, out[n].route) || strcmp(out[j].method, out[n].method)))
                j++;
            if (recent || j == n)
                n++;
            else if (out[j].dur_ms < out[n].dur_ms)
                out[j] = out[n];
        }
    }
    qsort(out, n, sizeof *out, recent ? newer : slower);
    return n;
}

static const char *bar_class(const fan__wf_call *c)
{
    if (c->error[0])
        return "err";
    return c->status >= 500 ? "s5" : c->status >= 400 ? "s4" : "ok";
}

/* One request: its line, then an SVG with the request's own bar and one
 * bar per call (in start order), and a tick every tenth of the axis. */
static void draw(page *p, const fan__wf_req *w, int idx)
{
    char a[512], b[512], c[512];
    double span = w->dur_ms > 0 ? w->dur_ms : 1;
    for (unsigned i = 0; i < w->ncalls && i < FAN__WF_CALLS; i++)
        if (w->calls[i].start_ms + w->calls[i].dur_ms > span)
            span = w->calls[i].start_ms + w->calls[i].dur_ms;
    unsigned shown = w->ncalls < FAN__WF_CALLS ? w->ncalls : FAN__WF_CALLS;
    time_t t = (time_t)w->wall;
    struct tm tm;
    char when[32];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    put(p, "<div class=\"req\" id=\"r%d\" data-trace=\"%s\" data-route=\"%s\" data-calls=\"%u\">\n",
        idx, w->trace_id, html(w->route, a, sizeof a), w->ncalls);
    put(p,
        "<p><b>%s %s</b> &rarr; %d in %.1f ms &middot; %s UTC &middot; route %s &middot; "
        "trace <code>%s</code> &middot; %u call%s%s</p>\n",
        html(w->method, a, sizeof a), html(w->path, b, sizeof b), w->status, w->dur_ms, when,
        html(w->route[0] ? w->route : "(none)", c, sizeof c), w->trace_id[0] ? w->trace_id : "-",
        w->ncalls, w->ncalls == 1 ? "" : "s", w->ncalls > shown ? " (first ones drawn)" : "");
    if (w->headers[0])
        put(p, "<pre class=\"hdr\">%s</pre>\n", html(w->headers, a, sizeof a));
    int h = (int)(shown + 2) * ROW_H;
    double scale = PLOT_W / span;
    put(p, "<svg width=\"%d\" height=\"%d\" role=\"img\">\n", WIDTH, h);
    for (int k = 0; k <= 10; k++) {
        double x = LABEL_W + k * PLOT_W / 10.0;
        put(p,
            "<line class=\"tick\" x1=\"%.1f\" y1=\"0\" x2=\"%.1f\" y2=\"%d\"/>"
            "<text class=\"axis\" x=\"%.1f\" y=\"%d\">%.0f ms</text>\n",
            x, x, h - ROW_H, x + 2, h - 4, span * k / 10);
    }
    put(p,
        "<text x=\"4\" y=\"%d\">request</text><rect class=\"total\" x=\"%d\" y=\"%d\" "
        "width=\"%.1f\" height=\"%d\"/>\n",
        ROW_H - 5, LABEL_W, 3, w->dur_ms * scale > 1 ? w->dur_ms * scale : 1, ROW_H - 6);
    for (unsigned i = 0; i < shown; i++) {
        const fan__wf_call *cl = &w->calls[i];
        int y = (int)(i + 1) * ROW_H;
        char mark[96];
        int m = cl->error[0] ? snprintf(mark, sizeof mark, "%s", cl->error)
                             : snprintf(mark, sizeof mark, "%d", cl->status);
        unsigned retries = cl->attempts > 1u + cl->hedges ? cl->attempts - 1u - cl->hedges : 0;
        if (retries && m > 0 && (size_t)m < sizeof mark)
            m += snprintf(mark + m, sizeof mark - (size_t)m, " retries %u", retries);
        if (cl->hedges && m > 0 && (size_t)m < sizeof mark)
            snprintf(mark + m, sizeof mark - (size_t)m, " hedges %u", cl->hedges);
        double x = LABEL_W + cl->start_ms * scale,
               bw = cl->dur_ms * scale > 1 ? cl->dur_ms * scale : 1;
        put(p, "<text x=\"4\" y=\"%d\">%.40s</text>", y + ROW_H - 5, html(cl->name, a, sizeof a));
        put(p,
            "<rect class=\"bar %s\" data-name=\"%s\" data-status=\"%d\" data-error=\"%s\" "
            "data-attempts=\"%u\" data-hedges=\"%u\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
            "height=\"%d\"><title>%s: %s, %.1f ms from %.1f ms</title></rect>",
            bar_class(cl), a, cl->status, cl->error, cl->attempts, cl->hedges, x, y + 3, bw,
            ROW_H - 6, a, mark, cl->dur_ms, cl->start_ms);
        put(p, "<text class=\"mark\" x=\"%.1f\" y=\"%d\">%s %.1f ms</text>\n", x + bw + 3,
            y + ROW_H - 5, mark, cl->dur_ms);
    }
    put(p, "</svg></div>\n");
}

static const char style[] =
    "body{font:13px sans-serif;margin:16px;color:#222}h1{font-size:18px}h2{font-size:15px;"
    "margin-top:24px}.req{border-top:1px solid #ddd;padding:4px 0}.req p{margin:4px 0}"
    "pre.hdr{margin:2px 0;color:#666;font-size:11px}svg text{font:11px sans-serif;fill:#333}"
    "svg text.axis{fill:#999;font-size:10px}line.tick{stroke:#eee}rect.total{fill:#cfd8e3}"
    "rect.ok{fill:#3a8fd9}rect.s4{fill:#e0a030}rect.s5{fill:#d9603a}rect.err{fill:#c0392b}"
    "text.mark{fill:#555}";

static void section(page *p, const char *title, const char *id, fan__wf_req *w, size_t n, int *idx)
{
    put(p, "<h2 id=\"%s\">%s (%zu)</h2>\n<div class=\"section\" id=\"%s-list\">\n", id, title, n,
        id);
    for (size_t i = 0; i < n; i++)
        draw(p, &w[i], (*idx)++);
    put(p, "</div>\n");
}

void fan__waterfall_page(fan_req *rq)
{
    fan__metrics_region *r = fan__admin_region();
    fan__wf_req *w = malloc(SHOWN_MAX * 2 * sizeof *w);
    page p = {FAN__BUF_INIT, 0};
    if (!w) {
        fan_reply_error(rq, 503, "out of memory");
        return;
    }
    size_t nr = fan__waterfall_collect(r, 1, w, SHOWN_MAX);
    size_t ns = fan__waterfall_collect(r, 0, w + SHOWN_MAX, SHOWN_MAX);
    put(&p,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>fanout waterfall</title>"
        "<style>%s</style></head><body>\n<h1>fanout: requests and their upstream calls</h1>\n"
        "<p>Bars: blue answered 2xx/3xx, orange 4xx, red-orange 5xx, red failed (the error "
        "kind is written beside). Query values are redacted; only allow-listed headers "
        "are shown.</p>\n",
        style);
    int idx = 0;
    section(&p, "Recent requests", "recent", w, nr, &idx);
    section(&p, "Slowest request of each route", "slowest", w + SHOWN_MAX, ns, &idx);
    put(&p, "</body></html>\n");
    free(w);
    if (p.failed)
        fan_reply_error(rq, 503, "out of memory");
    else
        fan_reply(rq, 200, "text/html; charset=utf-8", p.b.data, p.b.len);
    fan__buf_free(&p.b);
}

static json_t *record_json(const fan__wf_req *w)
{
    json_t *calls = json_array();
    for (unsigned i = 0; i < w->ncalls && i < FAN__WF_CALLS; i++) {
        const fan__wf_call *c = &w->calls[i];
        json_array_append_new(
            calls, json_pack("{s:s, s:f, s:f, s:i, s:s?, s:i, s:i}", "name", c->name, "start_ms",
                             (double)c->start_ms, "duration_ms", (double)c->dur_ms, "status",
                             c->status, "error", c->error[0] ? c->error : NULL, "attempts",
                             (int)c->attempts, "hedges", (int)c->hedges));
    }
    return json_pack("{s:f, s:s, s:s, s:s, s:s, s:i, s:f, s:i, s:s, s:o}", "time", w->wall,
                     "method", w->method, "route", w->route, "path", w->path, "trace_id",
                     w->trace_id, "status", w->status, "duration_ms", (double)w->dur_ms,
                     "calls_made", (int)w->ncalls, "headers", w->headers, "calls", calls);
}

void fan__waterfall_json(fan_req *rq)
{
    fan__metrics_region *r = fan__admin_region();
    fan__wf_req *w = malloc(SHOWN_MAX * sizeof *w);
    json_t *out = json_object();
    if (!w || !out) {
        free(w);
        json_decref(out);
        fan_reply_error(rq, 503, "out of memory");
        return;
    }
    for (int recent = 1; recent >= 0; recent--) {
        json_t *list = json_array();
        size_t n = fan__waterfall_collect(r, recent, w, SHOWN_MAX);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, record_json(&w[i]));
        json_object_set_new(out, recent ? "recent" : "slowest", list);
    }
    free(w);
    fan_reply_json(rq, 200, out); /* takes the reference */
}
