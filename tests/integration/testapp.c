/* A test application driving every server and client feature the
 * integration tests check over real sockets. Written only against fanout.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <fanout.h>

static json_t *headers_json(fan_req *rq, const char *names)
{
    /* names: comma-separated header names to report */
    json_t *o = json_object();
    char *copy = fan_sprintf(rq, "%s", names ? names : "");
    for (char *save, *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        const char *v = fan_header(rq, n);
        json_object_set_new(o, n, v ? json_string(v) : json_null());
    }
    return o;
}

/* Reports what the server parsed: method, path, query, body, chosen headers
 * (?h=Name,Other) and query values (?q=a,b). */
static void echo(fan_req *rq)
{
    size_t len;
    const char *body = fan_body(rq, &len);
    json_t *q = json_object();
    const char *names = fan_query(rq, "q");
    char *copy = fan_sprintf(rq, "%s", names ? names : "");
    for (char *save, *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        const char *v = fan_query(rq, n);
        json_object_set_new(q, n, v ? json_string(v) : json_null());
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:s%, s:I, s:o, s:o}", "method", fan_method(rq), "path",
                          fan_path(rq), "query", fan_query_string(rq), "body", body, len,
                          "body_len", (json_int_t)len, "headers",
                          headers_json(rq, fan_query(rq, "h")), "values", q);
    fan_reply_json(rq, 200, j);
}

static void user(fan_req *rq)
{
    fan_reply_json(rq, 200, json_pack("{s:s}", "id", fan_param(rq, "id")));
}

static void user_post(fan_req *rq)
{
    fan_reply_json(rq, 201, json_pack("{s:s, s:s}", "id", fan_param(rq, "id"), "post", fan_param(rq, "post")));
}

static void files(fan_req *rq)
{
    fan_reply_json(rq, 200, json_pack("{s:s}", "rest", fan_param(rq, "*")));
}

static void sleep_view(fan_req *rq)
{
    long ms = fan_query_long(rq, "ms", 100, NULL);
    double t0 = fan_now();
    int rc = fan_sleep(rq, (unsigned)ms);
    fan_reply_json(rq, 200, json_pack("{s:s, s:f}", "error", fan_errname(rc), "slept", fan_now() - t0));
}

static void noreply(fan_req *rq)
{
    (void)rq;
}

static json_t *call_json(fan_call *c)
{
    size_t len;
    const char *body = fan_call_body(c, &len);
    json_t *j = json_pack("{s:s, s:i, s:I, s:f, s:s?}", "error", fan_errname(fan_call_error(c)),
                          "status", fan_call_status(c), "body_len", (json_int_t)len, "duration",
                          fan_call_finished(c) - fan_call_started(c), "content_type",
                          fan_call_header(c, "Content-Type"));
    json_t *v = json_object_get(fan_call_json(c), "value");
    if (v)
        json_object_set(j, "value", v);
    if (len && len < 256)
        json_object_set_new(j, "body", json_stringn(body, len));
    return j;
}

/* One call: ?url=&timeout=ms&max=bytes&method=&body= */
static void fetch(fan_req *rq)
{
    const char *url = fan_query(rq, "url");
    const char *body = fan_query(rq, "body");
    if (!url) {
        fan_reply_error(rq, 400, "url is required");
        return;
    }
    fan_call_opts o = {
        .method = fan_query(rq, "method"),
        .timeout_ms = (unsigned)fan_query_long(rq, "timeout", 0, NULL),
        .max_body_bytes = (size_t)fan_query_long(rq, "max", 0, NULL),
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    fan_call *c = fan_call_start(rq, url, &o);
    double t0 = fan_now();
    int rc = fan_await(rq, c);
    json_t *j = call_json(c);
    json_object_set_new(j, "await", json_string(fan_errname(rc)));
    json_object_set_new(j, "elapsed", json_real(fan_now() - t0));
    fan_reply_json(rq, 200, j);
}

/* n concurrent calls to url (each with ?ms=...), gathered in completion order
 * with fan_await_any, then fan_await_all. ?deadline=ms sets the request's. */
static void fanout_view(fan_req *rq)
{
    const char *url = fan_query(rq, "url");
    long n = fan_query_long(rq, "n", 2, NULL);
    long deadline = fan_query_long(rq, "deadline", 0, NULL);
    if (!url || n < 1 || n > 1000) {
        fan_reply_error(rq, 400, "url and n in 1..1000 are required");
        return;
    }
    if (deadline)
        fan_set_deadline(rq, (unsigned)deadline);
    double t0 = fan_now();
    for (long i = 0; i < n; i++)
        fan_call_start(rq, url, NULL);
    json_t *order = json_array();
    for (fan_call *c; (c = fan_await_any(rq));)
        json_array_append_new(order, json_real(fan_call_finished(c) - t0));
    int all = fan_await_all(rq);
    json_t *j = json_pack("{s:s, s:s, s:o, s:f}", "all", fan_errname(all), "cancelled",
                          fan_errname(fan_cancelled(rq)), "finished", order, "elapsed", fan_now() - t0);
    fan_reply_json(rq, all == 0 ? 200 : 502, j);
}

static void big(fan_req *rq)
{
    long n = fan_query_long(rq, "n", 1 << 20, NULL);
    char *b = fan_alloc(rq, (size_t)n);
    memset(b, 'x', (size_t)n);
    fan_reply(rq, 200, "text/plain", b, (size_t)n);
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    fan_route(app, "*", "/echo", echo);
    fan_route(app, "GET", "/users/:id", user);
    fan_route(app, "POST", "/users/:id/posts/:post", user_post);
    fan_route(app, "GET", "/files/*", files);
    fan_route(app, "GET", "/sleep", sleep_view);
    fan_route(app, "GET", "/noreply", noreply);
    fan_route(app, "GET", "/fetch", fetch);
    fan_route(app, "GET", "/fanout", fanout_view);
    fan_route(app, "GET", "/big", big);
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
