/* The mock upstream: answers after a delay, with a configurable status, body
 * size and jitter. It counts requests, and those whose client went away
 * before the delay ended, so tests can see that calls were aborted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static struct {
    unsigned long requests, completed, cancelled, in_flight;
    unsigned long peak; /* most requests in flight at once since /stats was last read */
} stats;

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

static void delay_view(fan_req *rq)
{
    const mock_opts *o = opts_of(rq);
    int ok1, ok2, ok3, ok4;
    long ms = fan_req_query_long(rq, "ms", o->delay_ms, &ok1);
    long status = fan_req_query_long(rq, "status", o->status, &ok2);
    long size = fan_req_query_long(rq, "size", (long)o->size, &ok3);
    long jitter = fan_req_query_long(rq, "jitter", o->jitter_ms, &ok4);
    if (bad_param(rq, "ms", ms, 0, 3600000, ok1) ||
        bad_param(rq, "status", status, 200, 599, ok2) ||
        bad_param(rq, "size", size, 0, 64 << 20, ok3) ||
        bad_param(rq, "jitter", jitter, 0, 3600000, ok4))
        return;
    stats.requests++;
    if (++stats.in_flight > stats.peak)
        stats.peak = stats.in_flight;
    unsigned wait = (unsigned)ms + (jitter ? (unsigned)(random_unit() * (double)jitter) : 0);
    int rc = wait ? fan_sleep(rq, wait) : 0;
    stats.in_flight--;
    if (rc != 0) {
        stats.cancelled++;
        fan_log(FAN_LOG_INFO, "mock: client went away before the %u ms delay ended", wait);
        return;
    }
    stats.completed++;
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
    fan_reply(rq, (int)status, "application/json", body, len);
}

/* The counters are the answering process's: with --workers, each worker
 * counts its own requests, and "pid" says which one answered. */
static void stats_view(fan_req *rq)
{
    fan_reply_json(rq, 200,
                   json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "requests",
                             (json_int_t)stats.requests, "completed", (json_int_t)stats.completed,
                             "cancelled", (json_int_t)stats.cancelled, "in_flight",
                             (json_int_t)stats.in_flight, "peak_in_flight", (json_int_t)stats.peak,
                             "pid", (json_int_t)getpid()));
    stats.peak = stats.in_flight;
}

int mock_routes(fan_app *app, const mock_opts *opts)
{
    fan_app_set_data(app, (void *)opts);
    int rc = fan_app_route(app, "GET", "/delay", delay_view);
    if (rc == 0)
        rc = fan_app_route(app, "GET", "/stats", stats_view);
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
           "A mock upstream API. GET /delay?ms=N&status=S&size=B&jitter=J answers\n"
           "{\"value\": <random float>} after N (+ up to J) ms with status S, padded to B\n"
           "bytes; the query overrides the defaults below. GET /stats reports counters\n"
           "and the pid of the process that answers: with workers, each counts its own.\n\n"
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
