/* Requests as the server makes them: a new request for a connection,
 * routing, the handler (after the before-request hooks) handed to the
 * runtime as the request's main task, a default answer when a handler
 * returns without one, and the request's end: its access-log line and the
 * connection told. Tasks, waits and cancellation are the runtime's
 * (src/runtime/request.c). */
#include <string.h>

#include "core/log.h"
#include "http/http.h"

_Static_assert(offsetof(struct fan_req, rt) == 0, "a fan_req * must be a fan__rt *");

static void req_returned(fan_req *rq);
static void req_finished(fan_req *rq);
static const char *req_describe(const fan_req *rq);

static const fan__rt_hooks req_hooks = {
    .returned = req_returned,
    .finished = req_finished,
    .describe = req_describe,
};

fan_req *fan__req_new(fan__conn *conn)
{
    const fan__site *site = fan__site_of(conn->app);
    fan_req *rq = fan__rt_new(sizeof *rq, 1, &site->limits, site->upstreams, &req_hooks);
    if (!rq)
        return NULL;
    rq->conn = conn;
    rq->app = conn->app;
    rq->client.peer = conn->peer; /* the access log needs it once conn is gone */
    rq->started = fan_now();
    rq->rt.obs = fan__site_of(conn->app)->obs;
    return rq;
}

/* The access log's line, written when the request ends: its response has
 * been handed to the socket by then (or the client went away). A request
 * never answered (parsed partially, then its connection closed or was
 * refused with a raw 4xx by conn.c) has no line. */
static void access_log(const fan_req *rq)
{
    if (!fan__access_log_on() || !rq->status || !rq->method)
        return;
    char trace[33];
    fan__req_trace_id(rq, trace);
    fan__access_entry e = {
        .trace_id = trace[0] ? trace : NULL,
        .client = fan_req_client_addr(rq), /* what handlers see, proxies believed */
        .method = rq->method,
        .path = rq->raw_path ? rq->raw_path : "",
        .status = rq->status,
        .ms = (fan_now() - rq->started) * 1000.0,
        .bytes = rq->out_bytes,
        .calls = rq->rt.ncalls,
        .failed = rq->rt.ncalls_failed,
    };
    fan__access_log(&e);
}

/* Every task and op of the request ended: release it. */
static void req_finished(fan_req *rq)
{
    fan__conn *conn = rq->conn;
    int h2 = rq->h2 != NULL;
    if (h2)
        fan__h2_request_done(rq); /* before the arena goes: its stream lets go */
    fan__req_observe_end(rq);
    access_log(rq);
    fan__rt_run_defers(rq);
    fan__buf_free(&rq->body);
    fan__rt_free(rq);
    if (conn && !h2)
        fan__conn_request_done(conn);
}

/* The handler returned: answer if it did not, end its stream if it did not. */
static void req_returned(fan_req *rq)
{
    fan__stream_handler_returned(rq);
    if (rq->replied)
        return;
    if (rq->rt.cancelled == FAN_ETIMEDOUT)
        fan_reply_error(rq, 504, "request deadline exceeded");
    else
        fan_reply_error(rq, 500, "handler returned without a response");
}

static const char *req_describe(const fan_req *rq)
{
    const char *route = rq->match.pattern ? rq->match.pattern : rq->path;
    return fan_sprintf((fan_req *)rq, "%s %s", rq->method ? rq->method : "-",
                       route ? route : "-");
}

static void run_handler(void *arg)
{
    fan_req *rq = arg;
    /* The before-request hooks run here, in the handler's coroutine, so that
     * they may await; one that replies answers in the handler's place. */
    if (fan__hooks_before(rq))
        return;
    rq->handler(rq);
}

void fan__req_start(fan_req *rq)
{
    const fan__site *site = fan__site_of(rq->app);
    fan__route_match *m = &rq->match;
    fan__req_observe_start(rq);
    int rc = fan__router_match(site->router, rq->method, rq->raw_path, m, &rq->rt.arena);
    if (rc == FAN_EINVAL) {
        fan_reply_error(rq, 400, "malformed escape in the path");
    } else if (rc != 0) {
        fan_reply_error(rq, 503, "out of memory");
    } else if (m->status == 404) {
        fan_reply_error(rq, 404, "no route for this path");
    } else if (m->status == 405) {
        fan_resp_set_header(rq, "Allow", m->allow);
        fan_reply_error(rq, 405, "method not allowed on this path");
    } else {
        rq->handler = (fan_handler)m->handler;
        if (fan__rt_run(rq, run_handler, site->limits.request_timeout_ms) != 0)
            fan_reply_error(rq, 503, "out of memory for a coroutine");
    }
    fan__req_notify(rq);
}

void fan__req_conn_gone(fan_req *rq)
{
    rq->conn = NULL;
    fan__req_cancel(rq, FAN_ECANCELED);
}
