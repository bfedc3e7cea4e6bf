/* The test application of streamed responses (test_stream.py), written
 * only against fanout.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fanout.h>

/* What /slow?slot=S managed so far, for /progress?slot=S: a client that
 * does not read shows how far the writer got before it was suspended. */
#define SLOTS 8
typedef struct progress {
    long writes;
    int done;
    int rc;
} progress;
static progress progresses[SLOTS];

static progress *progress_of(fan_req *rq)
{
    long slot = fan_req_query_long(rq, "slot", 0, NULL);
    return &progresses[slot >= 0 && slot < SLOTS ? slot : 0];
}

/* Calls `base`/delay?ms=fast and ?ms=slow and streams each result the
 * moment its call completes (?fmt=ndjson or sse), then a summary. */
static void fanout_view(fan_req *rq)
{
    const char *base = fan_req_query(rq, "base");
    const char *fmt = fan_req_query(rq, "fmt");
    int sse = fmt && strcmp(fmt, "sse") == 0;
    if (!base) {
        fan_reply_error(rq, 400, "base is required");
        return;
    }
    fan_call_opts fast = {.name = "fast"}, slow = {.name = "slow"};
    fan_call_start(
        rq, fan_sprintf(rq, "%s/delay?ms=%ld", base, fan_req_query_long(rq, "fast", 100, NULL)),
        &fast);
    fan_call_start(
        rq, fan_sprintf(rq, "%s/delay?ms=%ld", base, fan_req_query_long(rq, "slow", 1000, NULL)),
        &slow);
    double t0 = fan_now();
    if (fan_resp_start(rq, 200, sse ? "text/event-stream" : "application/x-ndjson") != 0)
        return;
    int parts = 0;
    for (fan_call *c; (c = fan_call_await_any(rq));) {
        json_t *j = json_pack("{s:s, s:s, s:i, s:f}", "name", fan_call_name(c), "error",
                              fan_errname(fan_call_error(c)), "status", fan_call_status(c), "at",
                              fan_now() - t0);
        int rc;
        if (sse) {
            char *text = json_dumps(j, JSON_COMPACT);
            json_decref(j);
            rc = fan_resp_sse(rq, "part", NULL, text);
            free(text);
        } else {
            rc = fan_resp_ndjson(rq, j);
        }
        if (rc != 0)
            return; /* the client left: the other call is cancelled */
        parts++;
    }
    json_t *summary = json_pack("{s:b, s:i}", "done", 1, "parts", parts);
    if (sse) {
        char *text = json_dumps(summary, JSON_COMPACT);
        json_decref(summary);
        fan_resp_sse(rq, "summary", NULL, text);
        free(text);
    } else {
        fan_resp_ndjson(rq, summary);
    }
    fan_resp_end(rq);
}

/* ?n= pieces of ?size= bytes, as fast as the client takes them. */
static void slow_view(fan_req *rq)
{
    long n = fan_req_query_long(rq, "n", 100, NULL);
    long size = fan_req_query_long(rq, "size", 65536, NULL);
    char *piece = fan_alloc(rq, (size_t)size);
    if (!piece || n < 1 || size < 1) {
        fan_reply_error(rq, 400, "n and size must be positive");
        return;
    }
    memset(piece, 'x', (size_t)size);
    progress *p = progress_of(rq);
    p->writes = 0;
    p->done = 0;
    p->rc = 0;
    fan_req_set_deadline(rq, 0);
    int rc = fan_resp_start(rq, 200, "application/octet-stream");
    for (long i = 0; rc == 0 && i < n; i++) {
        rc = fan_resp_write(rq, piece, (size_t)size);
        if (rc == 0)
            p->writes++;
    }
    if (rc == 0)
        rc = fan_resp_end(rq);
    p->rc = rc;
    p->done = 1;
}

static void progress_view(fan_req *rq)
{
    const progress *p = progress_of(rq);
    fan_reply_json(rq, 200,
                   json_pack("{s:I, s:b, s:s}", "writes", (json_int_t)p->writes, "done", p->done,
                             "rc", fan_errname(p->rc)));
}

/* SSE framing: a retry, an event with an id and data whose lines end with
 * LF, CR and CRLF, and a plain data event. */
static void sse_view(fan_req *rq)
{
    fan_resp_start(rq, 200, "text/event-stream");
    fan_resp_sse_retry(rq, 1500);
    fan_resp_sse(rq, "greeting", "1", "one\ntwo\rthree\r\nfour");
    fan_resp_sse(rq, NULL, NULL, "last line ends\n");
    int bad = fan_resp_sse(rq, "bad\nevent", NULL, "x");
    fan_resp_sse(rq, "result", NULL, fan_errname(bad));
    fan_resp_end(rq);
}

/* Heartbeats every ?hb= ms while it sleeps ?idle= ms, then one event. */
static void heartbeat_view(fan_req *rq)
{
    fan_resp_start(rq, 200, "text/event-stream");
    fan_resp_sse_heartbeat(rq, (unsigned)fan_req_query_long(rq, "hb", 100, NULL));
    fan_sleep(rq, (unsigned)fan_req_query_long(rq, "idle", 550, NULL));
    fan_resp_sse(rq, "done", NULL, "");
    fan_resp_end(rq);
}

/* ?n= NDJSON lines {"i": i}; with ?noend=1 the handler returns without
 * fan_resp_end(). */
static void ndjson_view(fan_req *rq)
{
    long n = fan_req_query_long(rq, "n", 3, NULL);
    fan_resp_set_header(rq, "X-Before", "set before the head");
    fan_resp_start(rq, 200, "application/x-ndjson");
    for (long i = 0; i < n; i++)
        fan_resp_ndjson(rq, json_pack("{s:I}", "i", (json_int_t)i));
    if (!fan_req_query(rq, "noend"))
        fan_resp_end(rq);
}

/* Writes a line, then fails: with ?how=reply through fan_reply_error(),
 * else through fan_resp_abort(). */
static void fail_view(fan_req *rq)
{
    fan_resp_start(rq, 200, "application/x-ndjson");
    fan_resp_ndjson(rq, json_pack("{s:s}", "part", "first"));
    fan_sleep(rq, 50);
    const char *how = fan_req_query(rq, "how");
    if (how && strcmp(how, "reply") == 0)
        fan_reply_error(rq, 502, "upstream failed mid-stream");
    else
        fan_resp_abort(rq);
}

/* Reports after-request hooks run on the stream: its status and whether it
 * is one. A stream of /replaced is replaced by a 403 reply. */
static void tag_stream(fan_req *rq)
{
    fan_resp_set_header(
        rq, "X-Hook",
        fan_sprintf(rq, "status=%d streaming=%d", fan_resp_status(rq), fan_resp_streaming(rq)));
    if (fan_resp_streaming(rq) && strcmp(fan_req_path(rq), "/replaced") == 0)
        fan_reply_error(rq, 403, "replaced by a hook");
}

static void replaced_view(fan_req *rq)
{
    int rc = fan_resp_start(rq, 200, "text/plain");
    int wrc = fan_resp_write(rq, "x", 1);
    fan_log(FAN_LOG_INFO, "replaced: start %s, write %s", fan_errname(rc), fan_errname(wrc));
}

static void pid_view(fan_req *rq)
{
    fan_reply_json(rq, 200, json_pack("{s:i}", "pid", (int)getpid()));
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    fan_app_route(app, "GET", "/fanout", fanout_view);
    fan_app_route(app, "GET", "/slow", slow_view);
    fan_app_route(app, "GET", "/progress", progress_view);
    fan_app_route(app, "GET", "/sse", sse_view);
    fan_app_route(app, "GET", "/heartbeat", heartbeat_view);
    fan_app_route(app, "GET", "/ndjson", ndjson_view);
    fan_app_route(app, "GET", "/fail", fail_view);
    fan_app_route(app, "GET", "/replaced", replaced_view);
    fan_app_route(app, "GET", "/pid", pid_view);
    fan_app_after_request(app, tag_stream);
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
