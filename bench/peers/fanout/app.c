/* The fanout peer of the benchmark: GET /fanout?n=N&ms=D[,D2,...] calls
 * UPSTREAM/delay?ms=D n times concurrently, sums their "value" fields and
 * answers {"sum": S, "n": N}. Written as a fanout user would write it.
 *
 *   fanout-peer --port P --upstream http://127.0.0.1:U [--workers W]
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <fanout.h>

#define MAX_CALLS 64

static void fanout_view(fan_req *rq)
{
    const char *upstream = fan_config_str(rq, "upstream");
    int ok;
    long n = fan_req_query_long(rq, "n", 2, &ok);
    const char *ms = fan_req_query(rq, "ms");
    if (!ok || n < 1 || n > MAX_CALLS) {
        fan_reply_error(rq, 400, "n must be a whole number from 1 to 64");
        return;
    }
    /* ms is one delay for every call, or one per call: "200,100". */
    const char *d = ms ? ms : "0";
    for (long i = 0; i < n; i++) {
        size_t len = strcspn(d, ",");
        fan_get(rq, "%s/delay?ms=%.*s", upstream, (int)len, d);
        if (d[len] == ',')
            d += len + 1;
    }
    fan_call_await_all(rq);
    double sum = 0;
    for (fan_call *c; (c = fan_call_await_any(rq));) {
        double v = fan_call_json_number(c, "value");
        if (fan_call_error(c) || isnan(v)) {
            fan_reply_error(rq, 502, fan_sprintf(rq, "upstream call failed: %s",
                                                 fan_strerror(fan_call_error(c))));
            return;
        }
        sum += v;
    }
    fan_reply_json(rq, 200, json_pack("{s:f, s:i}", "sum", sum, "n", (int)n));
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    /* --upstream URL is ours; everything else goes to fan_main(). */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--upstream") == 0 && i + 1 < argc)
            fan_app_set(app, "upstream", argv[++i]);
        else
            rest[nrest++] = argv[i];
    }
    if (!fan_app_get(app, "upstream"))
        fan_app_set(app, "upstream", "http://127.0.0.1:9001");
    fan_app_route(app, "GET", "/fanout", fanout_view);
    fan_log_set_level(FAN_LOG_WARN);
    int rc = fan_main(app, nrest, rest);
    free(rest);
    fan_app_free(app);
    return rc;
}
