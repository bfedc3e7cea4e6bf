/*
 * Awaiting other libuv clients from a handler: a uv timer and a DNS lookup
 * (uv_getaddrinfo), through fanout's wakers. The same pattern awaits
 * anything that reports through a callback on the worker's loop: hiredis's
 * libuv adapter, a database driver, a file read with uv_fs_*.
 *
 *   await_libuv --port 8080
 *   curl 'localhost:8080/resolve?host=localhost&delay_ms=200'
 *   {"host": "localhost", "addresses": ["127.0.0.1"], "elapsed": 0.2003}
 *
 * GET /resolve?host=NAME&delay_ms=N waits N ms on a uv timer (it stands for
 * any timer-driven wait: a backoff, a rate limit), then resolves NAME.
 *
 * The pattern, for every operation:
 *   1. fan_waker_new(rq, on_cancel, arg): a waker for the running task;
 *   2. start the operation on fan_loop(), with a callback that records the
 *      result and calls fan_wake() once libuv no longer uses the memory:
 *      a request's callback, or a handle's close callback;
 *   3. fan_suspend(rq, waker): the loop serves everything else meanwhile.
 * When the task is cancelled (the client leaves, the deadline passes, the
 * server stops), on_cancel asks the operation to stop, and fan_suspend()
 * returns FAN_ECANCELED once the callback woke the waker: so the uv_timer_t
 * and the uv_getaddrinfo_t below may live in the caller's frame.
 */
#include <string.h>

#include <fanout.h>
#include <uv.h>

/* ---- A uv timer -------------------------------------------------------- */

/* Everything the timer's callbacks need, in the waiting task's frame. */
typedef struct timer_wait {
    uv_timer_t timer;
    fan_waker *waker;
} timer_wait;

/* The last callback libuv makes for the handle: after it, libuv no longer
 * touches `timer`, so this is where the task may be woken. */
static void timer_closed(uv_handle_t *h)
{
    timer_wait *tw = h->data;
    fan_wake(tw->waker);
}

/* The timer fired: close its handle, whose close callback wakes the task. */
static void timer_fired(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, timer_closed);
}

/* The task was cancelled: closing an active timer stops it. The handle may
 * be closing already (it fired, its close callback has not run yet), and a
 * handle is closed only once. */
static void timer_cancel(void *arg)
{
    timer_wait *tw = arg;
    if (!uv_is_closing((uv_handle_t *)&tw->timer))
        uv_close((uv_handle_t *)&tw->timer, timer_closed);
}

/* Suspends the running task for `ms` on a uv timer. Returns 0, FAN_ECANCELED
 * if the task was cancelled (the timer is then stopped early), or
 * FAN_ENOMEM. */
static int await_timer(fan_req *rq, unsigned ms)
{
    timer_wait tw;
    tw.waker = fan_waker_new(rq, timer_cancel, &tw);
    if (!tw.waker)
        return FAN_ENOMEM; /* start nothing: no callback would wake it */
    uv_timer_init(fan_loop(), &tw.timer);
    tw.timer.data = &tw;
    uv_timer_start(&tw.timer, timer_fired, ms, 0);
    return fan_suspend(rq, tw.waker);
}

/* ---- A DNS lookup ------------------------------------------------------ */

typedef struct lookup {
    uv_getaddrinfo_t req;
    fan_waker *waker;
    int status;           /* libuv's: 0 or a UV_EAI_* code */
    struct addrinfo *res; /* the answer when status is 0 */
} lookup;

/* A request's callback is libuv's last use of it: record, then wake. */
static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    lookup *l = req->data;
    l->status = status;
    l->res = res;
    fan_wake(l->waker);
}

/* uv_cancel() stops a lookup still queued for the thread pool: its callback
 * then runs with UV_EAI_CANCELED. One that is running cannot be stopped
 * (uv_cancel() fails): fan_suspend() waits for it to end. */
static void lookup_cancel(void *arg)
{
    lookup *l = arg;
    uv_cancel((uv_req_t *)&l->req);
}

static void free_addrinfo(void *res)
{
    uv_freeaddrinfo(res);
}

/* Resolves `host` for TCP. Returns 0 and the answer in *res, which the
 * running task owns: it is freed when the task ends (fan_task_defer()),
 * whichever way it ends. Else FAN_ECANCELED, FAN_ENOMEM, or FAN_EDNS with
 * libuv's reason in *why. */
static int await_lookup(fan_req *rq, const char *host, struct addrinfo **res, const char **why)
{
    lookup l = {.status = 0, .res = NULL};
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    l.waker = fan_waker_new(rq, lookup_cancel, &l);
    if (!l.waker)
        return FAN_ENOMEM;
    l.req.data = &l;
    int rc = uv_getaddrinfo(fan_loop(), &l.req, resolved, host, NULL, &hints);
    if (rc != 0) {
        /* It did not start, so no callback will come: wake the waker here,
         * as every waker must be woken once. */
        fan_wake(l.waker);
        *why = uv_strerror(rc);
        return FAN_EDNS;
    }
    int cancelled = fan_suspend(rq, l.waker);
    /* Whatever happened, the answer (which may have arrived even though the
     * task was cancelled) is released when the task ends. */
    if (l.res && fan_task_defer(rq, free_addrinfo, l.res) != 0) {
        uv_freeaddrinfo(l.res);
        return FAN_ENOMEM;
    }
    if (cancelled)
        return cancelled;
    if (l.status != 0) {
        *why = uv_strerror(l.status);
        return FAN_EDNS;
    }
    *res = l.res;
    return 0;
}

/* ---- The handler ------------------------------------------------------- */

static void resolve(fan_req *rq)
{
    const char *host = fan_req_query(rq, "host");
    if (!host || !*host) {
        fan_reply_error(rq, 400, "give a host: /resolve?host=NAME");
        return;
    }
    double t0 = fan_now();
    /* Cancelled: the client is gone or the deadline passed. Returning
     * without a reply answers 504 or 500, if anyone still listens. */
    if (await_timer(rq, (unsigned)fan_req_query_long(rq, "delay_ms", 0, NULL)) != 0)
        return;
    struct addrinfo *res = NULL;
    const char *why = NULL;
    int rc = await_lookup(rq, host, &res, &why);
    if (rc == FAN_EDNS) {
        fan_reply_json(rq, 502, json_pack("{s:s, s:s}", "error", "lookup failed", "why", why));
        return;
    }
    if (rc != 0)
        return;
    json_t *addresses = json_array();
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char name[64] = "";
        if (ai->ai_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, name, sizeof name);
        else if (ai->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, name, sizeof name);
        if (*name)
            json_array_append_new(addresses, json_string(name));
    }
    fan_reply_json(rq, 200,
                   json_pack("{s:s, s:o, s:f}", "host", host, "addresses", addresses, "elapsed",
                             fan_now() - t0));
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    fan_app_route(app, "GET", "/resolve", resolve);
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
