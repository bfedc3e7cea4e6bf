/* The mock upstream: answers after a delay, with a configurable status, body
 * size and jitter, and fails on request in the ways real upstreams do (an
 * error status, a reset before or in the middle of the response, a slow
 * tail), so that tests can drive retries, hedges, breakers and caches. It
 * counts requests, per path and per key, and those whose client went away
 * before the delay ended, so tests can see what reached it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static struct {
    unsigned long requests, completed, cancelled, in_flight, failed;
    unsigned long peak; /* most requests in flight at once since /stats was last read */
} stats;

/* Requests counted by name: one table for paths, one for keys. Bounded, so
 * that a client naming endless keys cannot grow the mock without end. */
#define MAX_NAMES 4096

typedef struct counter {
    struct counter *next;
    unsigned long n;
    char name[];
} counter;

typedef struct counters {
    counter *head;
    unsigned count;
} counters;

static counters by_path, by_key;

static uint64_t rng_state;

/* xorshift64*: fast, and good enough for simulated API values. */
static double random_unit(void)
{
    if (!rng_state)
        rng_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* Counts one request of `name` and returns its number (1 for the first),
 * or 0 when the table is full and `name` is new. */
static unsigned long count(counters *t, const char *name)
{
    counter *c = t->head;
    while (c && strcmp(c->name, name) != 0)
        c = c->next;
    if (!c) {
        size_t len = strlen(name);
        if (t->count >= MAX_NAMES || !(c = calloc(1, sizeof *c + len + 1)))
            return 0;
        memcpy(c->name, name, len + 1);
        c->next = t->head;
        t->head = c;
        t->count++;
    }
    return ++c->n;
}

static void counters_clear(counters *t)
{
    for (counter *c = t->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    t->head = NULL;
    t->count = 0;
}

static json_t *counters_json(const counters *t)
{
    json_t *o = json_object();
    for (const counter *c = t->head; o && c; c = c->next)
        json_object_set_new(o, c->name, json_integer((json_int_t)c->n));
    return o;
}

static const mock_opts *opts_of(fan_req *rq)
{
    return fan_app_data(fan_req_app(rq));
}

static int bad_param(fan_req *rq, const char *name, long v, long min, long max, int ok)
{
    if (ok && v >= min && v <= max)
        return 0;
    fan_reply_error(rq, 400, fan_sprintf(rq, "query parameter '%s' must be a whole number from "
                                             "%ld to %ld", name, min, max));
    return 1;
}

/* A share from 0 to 1 (query parameter `name`), or -1 after a 400. */
static double share(fan_req *rq, const char *name)
{
    const char *v = fan_req_query(rq, name);
    if (!v)
        return 0;
    char *end;
    double p = strtod(v, &end);
    if (end == v || *end || !(p >= 0 && p <= 1)) {
        fan_reply_error(rq, 400,
                        fan_sprintf(rq, "query parameter '%s' must be a number from 0 to 1", name));
        return -1;
    }
    return p;
}

/* The faults a request asks for (see mock_usage()). */
typedef struct fault {
    int status;         /* the failure's status, or 0 for a reset */
    int mid;            /* reset in the middle of the body, after the head */
    long first;         /* fail the first N requests of the key */
    double rate;        /* fail this share of requests */
    double tail_p;      /* this share of requests takes tail_ms longer */
    long tail_ms;
    long tail_first;    /* the first N requests of the key take tail_ms longer */
    long retry_after;   /* seconds, -1 for none */
    const char *cache_control;
} fault;

/* Reads the fault parameters; returns -1 after a 400. */
static int read_fault(fan_req *rq, fault *f)
{
    int ok1 = 1, ok2 = 1, ok3 = 1;
    const char *fail = fan_req_query(rq, "fail");
    f->status = 503;
    f->mid = 0;
    if (fail && strcmp(fail, "reset") == 0) {
        f->status = 0;
    } else if (fail && strcmp(fail, "reset_mid") == 0) {
        f->status = 0;
        f->mid = 1;
    } else if (fail) {
        char *end;
        long st = strtol(fail, &end, 10);
        if (end == fail || *end || st < 200 || st > 599) {
            fan_reply_error(rq, 400, "query parameter 'fail' must be a status from 200 to 599, "
                                     "'reset' or 'reset_mid'");
            return -1;
        }
        f->status = (int)st;
    }
    f->first = fan_req_query_long(rq, "fail_first", 0, &ok1);
    f->tail_ms = fan_req_query_long(rq, "tail_ms", 0, &ok2);
    f->retry_after = fan_req_query_long(rq, "retry_after", -1, &ok3);
    int ok4 = 1;
    f->tail_first = fan_req_query_long(rq, "tail_first", 0, &ok4);
    if (bad_param(rq, "tail_first", f->tail_first, 0, 1000000000, ok4))
        return -1;
    if (bad_param(rq, "fail_first", f->first, 0, 1000000000, ok1) ||
        bad_param(rq, "tail_ms", f->tail_ms, 0, 3600000, ok2) ||
        bad_param(rq, "retry_after", f->retry_after, -1, 86400, ok3))
        return -1;
    if ((f->rate = share(rq, "fail_rate")) < 0 || (f->tail_p = share(rq, "tail_p")) < 0)
        return -1;
    f->cache_control = fan_req_query(rq, "cache_control");
    if (f->cache_control && fan_resp_set_header(rq, "Cache-Control", f->cache_control) != 0) {
        fan_reply_error(rq, 400, "query parameter 'cache_control' is not a header value");
        return -1;
    }
    return 0;
}

/* Answers with the fault: an error status with a JSON body, or a reset. */
static void fail_now(fan_req *rq, const fault *f)
{
    stats.failed++;
    if (f->retry_after >= 0)
        fan_resp_set_header(rq, "Retry-After", fan_sprintf(rq, "%ld", f->retry_after));
    if (f->status) {
        fan_reply_error(rq, f->status, "mock: injected failure");
    } else if (!f->mid) {
        fan_reply_drop(rq);
    } else if (fan_resp_start(rq, 200, "application/json") == 0) {
        fan_resp_write(rq, "{\"value\": 0.", 12);
        fan_resp_abort(rq); /* the client sees a truncated chunked body */
    }
}

/* The request as the mock saw it: method, path, query (decoded), headers
 * and body (parsed if JSON), for ?echo=1. */
static json_t *echo_json(fan_req *rq)
{
    json_t *q = json_object(), *h = json_object();
    const char *qs = fan_req_query_string(rq);
    while (*qs) {
        size_t len = strcspn(qs, "&"), nlen = strcspn(qs, "=&");
        char *name = fan_sprintf(rq, "%.*s", (int)nlen, qs);
        const char *v = name ? fan_req_query(rq, name) : NULL;
        if (v)
            json_object_set_new(q, name, json_string(v));
        qs += len + (qs[len] == '&');
    }
    size_t i = 0;
    const char *name, *value;
    while (fan_req_header_next(rq, &i, &name, &value))
        json_object_set_new(h, name, json_string(value));
    size_t blen;
    const char *body = fan_req_body(rq, &blen);
    json_t *bj = fan_req_json(rq);
    return json_pack("{s:s, s:s, s:o, s:o, s:o}", "method", fan_req_method(rq), "path",
                     fan_req_path(rq), "query", q, "headers", h, "body",
                     bj ? json_incref(bj) : json_stringn(body, blen));
}

/* A list of items: ?items=N gives ids 1..N; ?ids=a,b,c gives those, less the
 * ones of ?drop=b (an id the upstream does not know). */
static json_t *items_json(fan_req *rq)
{
    json_t *items = json_array();
    int ok;
    long n = fan_req_query_long(rq, "items", 0, &ok);
    for (long k = 1; ok && k <= n && k <= 100000; k++)
        json_array_append_new(items,
                              json_pack("{s:I, s:f}", "id", (json_int_t)k, "value", random_unit()));
    const char *ids = fan_req_query(rq, "ids"), *drop = fan_req_query(rq, "drop");
    while (ids && *ids) {
        size_t len = strcspn(ids, ",");
        char *id = fan_sprintf(rq, "%.*s", (int)len, ids);
        int dropped = 0;
        for (const char *d = drop; id && d && *d;) {
            size_t dl = strcspn(d, ",");
            dropped |= dl == len && memcmp(d, id, len) == 0;
            d += dl + (d[dl] == ',');
        }
        if (id && !dropped)
            json_array_append_new(items, json_pack("{s:s, s:f}", "id", id, "value", random_unit()));
        ids += len + (ids[len] == ',');
    }
    return items;
}

/* ?items, ?ids and ?echo: a JSON answer built from the request. */
static void reply_rich(fan_req *rq, int status)
{
    json_t *o = json_pack("{s:f}", "value", random_unit());
    if (fan_req_query(rq, "items") || fan_req_query(rq, "ids"))
        json_object_set_new(o, "items", items_json(rq));
    if (fan_req_query(rq, "echo"))
        json_object_set_new(o, "echo", echo_json(rq));
    fan_reply_json(rq, status, o);
}

static void delay_view(fan_req *rq)
{
    const mock_opts *o = opts_of(rq);
    int ok1, ok2, ok3, ok4;
    long ms = fan_req_query_long(rq, "ms", o->delay_ms, &ok1);
    long status = fan_req_query_long(rq, "status", o->status, &ok2);
    long size = fan_req_query_long(rq, "size", (long)o->size, &ok3);
    long jitter = fan_req_query_long(rq, "jitter", o->jitter_ms, &ok4);
    fault f;
    if (bad_param(rq, "ms", ms, 0, 3600000, ok1) ||
        bad_param(rq, "status", status, 200, 599, ok2) ||
        bad_param(rq, "size", size, 0, 64 << 20, ok3) ||
        bad_param(rq, "jitter", jitter, 0, 3600000, ok4) || read_fault(rq, &f) != 0)
        return;
    const char *key = fan_req_query(rq, "key");
    if (!key)
        key = fan_req_path(rq);
    stats.requests++;
    count(&by_path, fan_req_path(rq));
    unsigned long nth = count(&by_key, key);
    int failing = (f.first && nth && (long)nth <= f.first) || (f.rate > 0 && random_unit() < f.rate);
    if (++stats.in_flight > stats.peak)
        stats.peak = stats.in_flight;
    unsigned wait = (unsigned)ms + (jitter ? (unsigned)(random_unit() * (double)jitter) : 0);
    if ((f.tail_first && nth && (long)nth <= f.tail_first) ||
        (f.tail_p > 0 && random_unit() < f.tail_p))
        wait += (unsigned)f.tail_ms;
    int rc = wait ? fan_sleep(rq, wait) : 0;
    stats.in_flight--;
    if (rc != 0) {
        stats.cancelled++;
        fan_log(FAN_LOG_INFO, "mock: client went away before the %u ms delay ended", wait);
        return;
    }
    if (failing) {
        fail_now(rq, &f);
        return;
    }
    stats.completed++;
    if (fan_req_query(rq, "items") || fan_req_query(rq, "ids") || fan_req_query(rq, "echo")) {
        reply_rich(rq, (int)status);
        return;
    }
    char head[64];
    int n = snprintf(head, sizeof head, "{\"value\": %.17g", random_unit());
    size_t len = (size_t)n + 1 > (size_t)size ? (size_t)n + 1 : (size_t)size;
    char *body = fan_alloc(rq, len + 16);
    if (!body) {
        fan_reply_error(rq, 503, "out of memory");
        return;
    }
    memcpy(body, head, (size_t)n);
    if (len > (size_t)n + 1) {
        /* Pad to the requested size with a string member: {"value": x, "pad": "xxx"} */
        const char *pad = ", \"pad\": \"";
        size_t plen = strlen(pad);
        if (len >= (size_t)n + plen + 2) {
            memcpy(body + n, pad, plen);
            memset(body + n + plen, 'x', len - (size_t)n - plen - 2);
            memcpy(body + len - 2, "\"}", 2);
        } else {
            memset(body + n, ' ', len - (size_t)n - 1);
            body[len - 1] = '}';
        }
    } else {
        body[n] = '}';
    }
    if (f.retry_after >= 0 && status >= 400)
        fan_resp_set_header(rq, "Retry-After", fan_sprintf(rq, "%ld", f.retry_after));
    fan_reply(rq, (int)status, "application/json", body, len);
}

/* The counters are the answering process's: with --workers, each worker
 * counts its own requests, and "pid" says which one answered. ?reset=1
 * clears them after the answer is made, except "connections": the client
 * connections accepted since the start, which a reader subtracts. */
static void stats_view(fan_req *rq)
{
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "requests",
                          (json_int_t)stats.requests, "completed", (json_int_t)stats.completed,
                          "cancelled", (json_int_t)stats.cancelled, "failed",
                          (json_int_t)stats.failed, "in_flight", (json_int_t)stats.in_flight,
                          "peak_in_flight", (json_int_t)stats.peak, "pid", (json_int_t)getpid(),
                          "connections",
                          (json_int_t)fan_app_connections_accepted(fan_req_app(rq)),
                          "paths", counters_json(&by_path), "keys", counters_json(&by_key));
    fan_reply_json(rq, 200, j);
    stats.peak = stats.in_flight;
    const char *reset = fan_req_query(rq, "reset");
    if (reset && strcmp(reset, "1") == 0) {
        unsigned long in_flight = stats.in_flight;
        memset(&stats, 0, sizeof stats);
        stats.in_flight = stats.peak = in_flight;
        counters_clear(&by_path);
        counters_clear(&by_key);
    }
}

int mock_routes(fan_app *app, const mock_opts *opts)
{
    fan_app_set_data(app, (void *)opts);
    int rc = fan_app_route(app, "GET", "/stats", stats_view);
    if (rc == 0)
        rc = fan_app_route(app, "*", "/*", delay_view);
    if (rc == 0)
        rc = fan_app_route(app, "*", "/", delay_view);
    return rc;
}

int mock_option(mock_opts *o, int argc, char **argv, int *argi)
{
    const char *v;
    long n;
    if (fan_flag("--delay", argc, argv, argi, &v)) {
        if (cli_number("--delay", v, 0, 3600000, &n))
            return -1;
        o->delay_ms = (unsigned)n;
    } else if (fan_flag("--jitter", argc, argv, argi, &v)) {
        if (cli_number("--jitter", v, 0, 3600000, &n))
            return -1;
        o->jitter_ms = (unsigned)n;
    } else if (fan_flag("--status", argc, argv, argi, &v)) {
        if (cli_number("--status", v, 200, 599, &n))
            return -1;
        o->status = (int)n;
    } else if (fan_flag("--size", argc, argv, argi, &v)) {
        if (cli_number("--size", v, 0, 64 << 20, &n))
            return -1;
        o->size = (size_t)n;
    } else {
        return 0;
    }
    return 1;
}

static void mock_usage(void)
{
    printf("usage: fanout mock [options]\n\n"
           "A mock upstream API. Any method and path (/delay, say) with the query\n"
           "?ms=N&status=S&size=B&jitter=J answers {\"value\": <random float>} after N\n"
           "(+ up to J) ms with status S, padded to B bytes; the query overrides the\n"
           "defaults below. Faults, in the query too:\n"
           "  fail=STATUS|reset|reset_mid   how a failing request fails (503): an error\n"
           "                                status, a reset before any byte, or a\n"
           "                                truncated body after the head\n"
           "  fail_first=N                  the first N requests of the key fail\n"
           "  fail_rate=P                   a share P (0..1) of requests fails\n"
           "  key=K                         the key requests are counted under (the path)\n"
           "  tail_p=P&tail_ms=MS           a share P of requests takes MS longer\n"
           "  tail_first=N&tail_ms=MS       the first N requests of the key take MS longer\n"
           "  retry_after=S                 Retry-After: S on failures and status >= 400\n"
           "  cache_control=V               Cache-Control: V on the response\n"
           "Lists and echoes, for gateways (the answer is then not padded):\n"
           "  items=N                       \"items\": [{\"id\": 1, \"value\": ...}, ... N]\n"
           "  ids=A,B,C&drop=B              \"items\" for ids A and C (B dropped)\n"
           "  echo=1                        \"echo\": the method, path, query, headers\n"
           "                                and body (parsed when JSON) it received\n"
           "GET /stats reports counters (requests, per path and per key, completed,\n"
           "cancelled, failed, peak in flight since the last read), the client\n"
           "connections accepted since the start (the read's own included; never\n"
           "reset) and the pid of the process that answers: with workers, each\n"
           "counts its own. /stats?reset=1 clears the request counts after answering.\n\n"
           "  --delay MS       default delay (0)\n"
           "  --jitter MS      up to this much more delay, at random (0)\n"
           "  --status N       default status (200)\n"
           "  --size BYTES     default body size (the bare JSON object)\n"
           "  --port N         port (8081)\n\n");
    fan_print_main_options(stdout);
}

int cmd_mock(int argc, char **argv)
{
    static mock_opts opts = {.status = 200};
    fan_app *app = fan_app_new();
    if (!app || mock_routes(app, &opts) != 0 || fan_app_set_address(app, "0.0.0.0", 8081) != 0)
        return 1;
    int rc = 0, workers = -1; /* as fan_main(): one per CPU unless given */
    for (int i = 1; i < argc && rc == 0;) {
        if (strcmp(argv[i], "--help") == 0) {
            mock_usage();
            fan_app_free(app);
            return 0;
        }
        int got = mock_option(&opts, argc, argv, &i);
        if (got == 0)
            got = fan_main_option(app, argc, argv, &i, &workers);
        if (got == 0)
            fprintf(stderr, "fanout mock: unknown option '%s' (see --help)\n", argv[i]);
        if (got <= 0) /* a configuration that cannot be used is not a usage error */
            rc = got < 0 && fan_app_config_error(app) ? 1 : 2;
    }
    if (rc == 0)
        rc = fan_serve(app, workers); /* returns in the master and in each worker */
    fan_app_free(app);
    return rc;
}
