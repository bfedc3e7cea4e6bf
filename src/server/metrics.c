/* The Prometheus text exposition of the shared metrics region
 * (runtime/metrics.h): every lane summed, so one scrape of any worker sees
 * the whole server. Names follow the OpenTelemetry semantic conventions as
 * Prometheus spells them (dots as underscores, units as suffixes). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/admin.h"

typedef struct out {
    fan__buf b;
    int failed;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (fan__buf_vprintf(&o->b, fmt, ap) != 0)
        o->failed = 1;
    va_end(ap);
}

/* A label value as the text format escapes it (backslash, quote, LF). */
static const char *esc(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            buf[n++] = '\\';
            buf[n++] = *s;
        } else if (*s == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
    return buf;
}

/* The labels of series `k` of `family`, without braces. */
static void labels(const fan__m_key *k, int family, char *buf, size_t cap)
{
    char a[64], b[2 * FAN__M_LABEL + 1];
    if (k->overflow) {
        snprintf(buf, cap, "otel_metric_overflow=\"true\"");
    } else if (family == FAN__M_SERVER) {
        snprintf(buf, cap,
                 "http_request_method=\"%s\",http_route=\"%s\",http_response_status_code=\"%d\"",
                 esc(k->a, a, sizeof a), esc(k->b, b, sizeof b), k->status);
    } else {
        int n = snprintf(buf, cap, "server_address=\"%s\"", esc(k->b, b, sizeof b));
        if (k->status && n > 0 && (size_t)n < cap)
            n += snprintf(buf + n, cap - (size_t)n, ",http_response_status_code=\"%d\"", k->status);
        if (k->a[0] && n > 0 && (size_t)n < cap)
            snprintf(buf + n, cap - (size_t)n, ",error_type=\"%s\"", esc(k->a, a, sizeof a));
    }
}

static void histogram(out *o, fan__metrics_region *r, int family, const char *name,
                      const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    fan__m_key *keys = fan__metrics_keys(r, family);
    unsigned n = __atomic_load_n(&r->nseries[family], __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i <= r->max_series; i++) {
        if (i >= n && i != r->max_series)
            continue; /* the overflow series is the table's last */
        fan__m_hist sum;
        memset(&sum, 0, sizeof sum);
        for (unsigned l = 0; l < r->nlanes; l++) {
            fan__m_hist *h = fan__metrics_hists(r, fan__metrics_lane(r, l), family) + i;
            for (int b = 0; b <= FAN__M_NBUCKETS; b++)
                sum.buckets[b] += __atomic_load_n(&h->buckets[b], __ATOMIC_RELAXED);
            sum.count += __atomic_load_n(&h->count, __ATOMIC_RELAXED);
            sum.sum_us += __atomic_load_n(&h->sum_us, __ATOMIC_RELAXED);
        }
        if (sum.count == 0)
            continue;
        char lab[512];
        labels(&keys[i], family, lab, sizeof lab);
        unsigned long long cum = 0;
        for (int b = 0; b < FAN__M_NBUCKETS; b++) {
            cum += sum.buckets[b];
            put(o, "%s_bucket{%s,le=\"%g\"} %llu\n", name, lab, fan__metrics_bounds[b], cum);
        }
        cum += sum.buckets[FAN__M_NBUCKETS];
        put(o, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, lab, cum);
        put(o, "%s_sum{%s} %.6f\n", name, lab, (double)sum.sum_us / 1e6);
        put(o, "%s_count{%s} %llu\n", name, lab, (unsigned long long)sum.count);
    }
}

static long long total(fan__metrics_region *r, int counter)
{
    long long t = 0;
    for (unsigned l = 0; l < r->nlanes; l++)
        t += __atomic_load_n(&fan__metrics_lane(r, l)->counters[counter], __ATOMIC_RELAXED);
    return t;
}

static const struct {
    int counter;
    const char *name, *type, *help;
} plain[] = {
    {FAN__M_REQUESTS_ACTIVE, "http_server_active_requests", "gauge", "Requests being served."},
    {FAN__M_CALLS_ACTIVE, "http_client_active_requests", "gauge",
     "Upstream calls in flight, waiting in the call queue included."},
    {FAN__M_QUEUE_WAITS, "fanout_call_queue_waits_total", "counter",
     "Upstream calls that waited in the call queue for a slot."},
    {FAN__M_QUEUE_REFUSALS, "fanout_call_queue_refusals_total", "counter",
     "Upstream calls refused by the call queue (full, or no slot in time)."},
    {FAN__M_SPANS_EXPORTED, "fanout_spans_exported_total", "counter",
     "Spans the OTLP collector took (--otlp-endpoint)."},
    {FAN__M_SPANS_DROPPED, "fanout_spans_dropped_total", "counter",
     "Spans dropped: the export queue was full, or the collector refused or did not answer."},
    {FAN__M_RETRIES, "fanout_call_retries_total", "counter",
     "Retries sent (a try failed and another went out)."},
    {FAN__M_HEDGES, "fanout_call_hedges_total", "counter", "Hedges sent beside a slow first try."},
    {FAN__M_BUDGET_REFUSALS, "fanout_retry_budget_refusals_total", "counter",
     "Retries and hedges not sent: their origin's retry budget was spent."},
    {FAN__M_BREAKER_CHANGES, "fanout_breaker_state_changes_total", "counter",
     "Circuit breaker state changes (opened, half-open, closed)."},
    {FAN__M_CACHE_HITS, "fanout_cache_hits_total", "counter",
     "Calls answered from the response cache."},
    {FAN__M_CACHE_MISSES, "fanout_cache_misses_total", "counter",
     "Calls the response cache had no usable entry for (they went on to the upstream)."},
    {FAN__M_COALESCED, "fanout_coalesced_calls_total", "counter",
     "Calls that shared another identical call's exchange."},
};

int fan__metrics_render(fan__metrics_region *r, fan__buf *b)
{
    out o = {FAN__BUF_INIT, 0};
    histogram(&o, r, FAN__M_SERVER, "http_server_request_duration_seconds",
              "Duration of HTTP server requests.");
    histogram(&o, r, FAN__M_CLIENT, "http_client_request_duration_seconds",
              "Duration of upstream HTTP calls (the wait for a call slot included).");
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        put(&o, "# HELP %s %s\n# TYPE %s %s\n", plain[i].name, plain[i].help, plain[i].name,
            plain[i].type);
        long long v = total(r, plain[i].counter);
        put(&o, "%s %lld\n", plain[i].name, v < 0 ? 0 : v);
    }
    put(&o,
        "# HELP fanout_worker_restarts_total Workers that died unasked and were restarted.\n"
        "# TYPE fanout_worker_restarts_total counter\nfanout_worker_restarts_total %llu\n",
        (unsigned long long)__atomic_load_n(&r->worker_restarts, __ATOMIC_RELAXED));
    put(&o,
        "# HELP fanout_build_info The fanout library serving.\n"
        "# TYPE fanout_build_info gauge\nfanout_build_info{version=\"%s\"} 1\n",
        FAN_VERSION);
    if (o.failed) {
        fan__buf_free(&o.b);
        return FAN_ENOMEM;
    }
    *b = o.b;
    return 0;
}
