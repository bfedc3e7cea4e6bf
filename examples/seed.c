/*
 * The seed, in C: a view that calls two upstream APIs concurrently and
 * answers in about the time of the slower one. It mirrors the Python (Quart)
 * program function by function; see the README for the two side by side.
 *
 *   fanout mock --port 8081 &
 *   seed --port 8080 --set api_a=http://127.0.0.1:8081 --set api_b=http://127.0.0.1:8081
 *   curl localhost:8080/            # Result: 1.23; Processing time: 2.00
 *   curl 'localhost:8080/?format=json'
 *   curl -N 'localhost:8080/?stream=ndjson'   # each API's result as it completes
 *   curl -N 'localhost:8080/?stream=sse'      # the same as Server-Sent Events
 *
 * Settings: api_a, api_b (base URLs of the two APIs), delay_a and delay_b (the
 * simulated work of each API, in ms: 2000 and 1000 as in the seed).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fanout.h>

#include "seed.h"

static const char *setting(fan_req *rq, const char *key, const char *def)
{
    const char *v = fan_config_str(rq, key);
    return v ? v : def;
}

/* async def contact_api_a(): starts the call to API A. It runs concurrently
 * with everything else until it is awaited. */
static fan_call *contact_api_a(fan_req *rq)
{
    fan_log(FAN_LOG_INFO, "%.6f: Start request 1", fan_now());
    fan_call_opts opts = {.name = "api_a"};
    const char *url = fan_sprintf(rq, "%s/delay?ms=%s", setting(rq, "api_a", SEED_DEFAULT_API),
                                  setting(rq, "delay_a", "2000"));
    return fan_call_start(rq, url, &opts);
}

/* async def contact_api_b(): the same for API B. */
static fan_call *contact_api_b(fan_req *rq)
{
    fan_log(FAN_LOG_INFO, "%.6f: Start request 2", fan_now());
    fan_call_opts opts = {.name = "api_b"};
    const char *url = fan_sprintf(rq, "%s/delay?ms=%s", setting(rq, "api_b", SEED_DEFAULT_API),
                                  setting(rq, "delay_b", "1000"));
    return fan_call_start(rq, url, &opts);
}

/* The simulated API's reply: {"value": <random float>}. NAN when the call
 * failed or the reply is not what we expect. */
static double api_result(fan_call *call)
{
    if (fan_call_error(call) != 0 || fan_call_status(call) != 200)
        return NAN;
    return fan_call_json_number(call, "value");
}

/* async def contact_apis(): create both tasks, then gather them. Each finish
 * is logged as it happens (fan_call_await_any returns calls as they complete).
 * Returns the call that failed, or NULL. */
static fan_call *contact_apis(fan_req *rq, fan_call **a, fan_call **b)
{
    *a = contact_api_a(rq);
    *b = contact_api_b(rq);
    if (!*a || !*b)
        return *a ? *b : *a;
    for (fan_call *done; (done = fan_call_await_any(rq));)
        fan_log(FAN_LOG_INFO, "%.6f: Finish request %d", fan_now(), done == *a ? 1 : 2);
    fan_call_await_all(rq);
    fan_log(FAN_LOG_INFO, "%.6f: Finish both requests", fan_now());
    if (isnan(api_result(*a)))
        return *a;
    if (isnan(api_result(*b)))
        return *b;
    return NULL;
}

static json_t *call_json(fan_call *c, double t0)
{
    return json_pack("{s:s, s:s, s:i, s:s, s:f, s:f, s:f, s:f}", "name", fan_call_name(c), "url",
                     fan_call_url(c), "status", fan_call_status(c), "error",
                     fan_errname(fan_call_error(c)), "value", api_result(c), "started",
                     fan_call_started(c) - t0, "finished", fan_call_finished(c) - t0, "duration",
                     fan_call_finished(c) - fan_call_started(c));
}

static void upstream_failed(fan_req *rq, fan_call *failed)
{
    int err = failed ? fan_call_error(failed) : FAN_ENOMEM;
    const char *name = failed ? fan_call_name(failed) : "?";
    const char *why = err ? fan_strerror(err)
                          : fan_sprintf(rq, "answered HTTP %d", fan_call_status(failed));
    fan_log(FAN_LOG_WARN, "upstream %s failed: %s", name, why);
    json_t *body = json_pack("{s:s, s:i, s:s, s:s}", "error",
                             fan_sprintf(rq, "upstream %s failed: %s", name, why), "status", 502,
                             "upstream", name, "kind", err ? fan_errname(err) : "status");
    fan_reply_json(rq, 502, body);
}

/* Sends one part of a stream: NDJSON line or SSE event `event`. */
static int send_part(fan_req *rq, int sse, const char *event, json_t *part)
{
    if (!sse)
        return fan_resp_ndjson(rq, part);
    char *text = part ? json_dumps(part, JSON_COMPACT) : NULL;
    json_decref(part);
    int rc = text ? fan_resp_sse(rq, event, NULL, text) : FAN_ENOMEM;
    free(text);
    return rc;
}

/* /?stream=ndjson and /?stream=sse: each API's result the moment its call
 * completes, then a summary with the result (or the error: the head, and
 * its 200, went out before the calls ended). */
static void hello_stream(fan_req *rq, int sse)
{
    double start_time = fan_now();
    fan_call *a = contact_api_a(rq), *b = contact_api_b(rq);
    if (!a || !b) {
        upstream_failed(rq, NULL);
        return;
    }
    if (fan_resp_start(rq, 200, sse ? "text/event-stream" : "application/x-ndjson") != 0)
        return;
    for (fan_call *done; (done = fan_call_await_any(rq));) {
        fan_log(FAN_LOG_INFO, "%.6f: Finish request %d", fan_now(), done == a ? 1 : 2);
        if (send_part(rq, sse, "call", call_json(done, start_time)) != 0)
            return; /* the client left: the other call is cancelled */
    }
    fan_call *failed = isnan(api_result(a)) ? a : isnan(api_result(b)) ? b : NULL;
    json_t *summary;
    if (failed)
        summary =
            json_pack("{s:s, s:s}", "error", "upstream failed", "upstream", fan_call_name(failed));
    else
        summary = json_pack("{s:f, s:f}", "result", api_result(a) + api_result(b),
                            "processing_time", fan_now() - start_time);
    send_part(rq, sse, "summary", summary);
    fan_resp_end(rq);
}

/* @app.route('/') async def hello_world() */
static void hello_world(fan_req *rq)
{
    const char *stream = fan_req_query(rq, "stream");
    if (stream && (strcmp(stream, "ndjson") == 0 || strcmp(stream, "sse") == 0)) {
        hello_stream(rq, stream[0] == 's');
        return;
    }
    double start_time = fan_now();
    fan_call *a, *b;
    fan_call *failed = contact_apis(rq, &a, &b);
    if (failed || !a || !b) {
        upstream_failed(rq, failed);
        return;
    }
    double final_result = api_result(a) + api_result(b);
    double processing_time = fan_now() - start_time;
    const char *format = fan_req_query(rq, "format");
    if (format && format[0] == 'j') {
        json_t *j = json_pack("{s:f, s:f, s:[o,o]}", "result", final_result, "processing_time",
                              processing_time, "calls", call_json(a, start_time),
                              call_json(b, start_time));
        fan_reply_json(rq, 200, j);
        return;
    }
    fan_reply_printf(rq, 200, "Result: %.2f; Processing time: %.2f", final_result, processing_time);
}

int seed_routes(fan_app *app)
{
    return fan_app_route(app, "GET", "/", hello_world);
}

#ifndef SEED_NO_MAIN
int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app || seed_routes(app) != 0)
        return 1;
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
#endif
