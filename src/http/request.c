/* The request lifecycle: routing, the handler's coroutine, waiting and
 * waking, cancellation, and freeing once everything the request owns ended. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static void settle(fan_req *rq);

fan_req *fan__req_new(fan__conn *conn)
{
    fan__arena a;
    fan__arena_init(&a);
    fan_req *rq = fan__arena_alloc(&a, sizeof *rq);
    if (!rq) {
        fan__arena_free(&a);
        return NULL;
    }
    memset(rq, 0, sizeof *rq);
    rq->arena = a;
    rq->conn = conn;
    rq->app = conn->app;
    rq->status = 0;
    fan__list_init(&rq->ops);
    fan__list_init(&rq->calls);
    fan__list_init(&rq->completed);
    fan__srv()->nreqs++;
    return rq;
}

static void req_free(fan_req *rq)
{
    fan__conn *conn = rq->conn;
    /* Deferred cleanups run last-registered first, like unwinding. */
    while (rq->defers) {
        fan__defer *d = rq->defers;
        rq->defers = d->next;
        d->fn(d->arg);
    }
    fan__buf_free(&rq->body);
    fan__arena a = rq->arena;
    fan__arena_free(&a);
    fan__srv()->nreqs--;
    if (conn)
        fan__conn_request_done(conn);
}

int fan_defer(fan_req *rq, void (*fn)(void *), void *arg)
{
    fan__defer *d = fan__arena_alloc(&rq->arena, sizeof *d);
    if (!d)
        return FAN_ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = rq->defers;
    rq->defers = d;
    return 0;
}

void fan__op_begin(fan_req *rq, fan__op *op)
{
    fan__list_push(&rq->ops, &op->link);
    rq->nops++;
}

void fan__op_end(fan_req *rq, fan__op *op)
{
    assert(rq->nops > 0);
    fan__list_remove(&op->link);
    rq->nops--;
    settle(rq);
}

static void cancel_ops(fan_req *rq)
{
    /* Cancelling an op may end it (and unlink it) at once; the busy count keeps
     * settle() from resuming the handler or freeing the request meanwhile. */
    rq->busy++;
    fan__list *pos = rq->ops.next;
    while (pos != &rq->ops) {
        fan__list *next = pos->next;
        fan__op *op = fan__container_of(pos, fan__op, link);
        if (op->cancel)
            op->cancel(op);
        pos = next;
    }
    rq->busy--;
}

static void run_handler(void *arg)
{
    fan_req *rq = arg;
    rq->handler(rq);
}

/* Called on the loop's stack once the handler's function returned. */
static void handler_finished(fan_req *rq)
{
    fan__coro_free(rq->co);
    rq->co = NULL;
    rq->handler_done = 1;
    if (!rq->replied) {
        if (rq->cancelled == FAN_ETIMEDOUT)
            fan_reply_error(rq, 504, "request deadline exceeded");
        else
            fan_reply_error(rq, 500, "handler returned without a response");
    }
    /* Structured concurrency: nothing the handler started outlives it. */
    cancel_ops(rq);
}

static void resume(fan_req *rq)
{
    rq->busy++;
    fan__coro_resume(rq->co);
    if (fan__coro_done(rq->co))
        handler_finished(rq);
    rq->busy--;
}

/* Moves the request forward after anything it depends on changed: wakes the
 * handler if what it waits for is ready, frees the request once its handler
 * returned and every op ended. */
static void settle(fan_req *rq)
{
    if (rq->busy)
        return;
    if (rq->waiting && fan__coro_current() == NULL &&
        (rq->cancelled || rq->ready(rq, rq->ready_arg))) {
        resume(rq);
    }
    if (!rq->busy && rq->handler_done && rq->nops == 0)
        req_free(rq);
}

void fan__req_notify(fan_req *rq)
{
    settle(rq);
}

int fan__req_wait(fan_req *rq, fan__ready_fn ready, void *arg)
{
    assert(rq->co != NULL && fan__coro_current() == rq->co);
    while (!rq->cancelled && !ready(rq, arg)) {
        rq->ready = ready;
        rq->ready_arg = arg;
        rq->waiting = 1;
        fan__coro_yield();
        rq->waiting = 0;
    }
    return rq->cancelled ? FAN_ECANCELED : 0;
}

void fan__req_cancel(fan_req *rq, int reason)
{
    if (rq->cancelled)
        return;
    rq->cancelled = reason;
    if (rq->deadline)
        uv_timer_stop(rq->deadline);
    cancel_ops(rq);
    settle(rq);
}

void fan__req_conn_gone(fan_req *rq)
{
    rq->conn = NULL;
    fan__req_cancel(rq, FAN_ECANCELED);
}

static void deadline_fired(uv_timer_t *t)
{
    fan_req *rq = t->data;
    fan_log(FAN_LOG_WARN, "%s %s: deadline passed, cancelling its calls", rq->method, rq->path);
    fan__req_cancel(rq, FAN_ETIMEDOUT);
}

typedef struct deadline_op {
    fan__op op;
    uv_timer_t timer;
    fan_req *rq;
} deadline_op;

static void deadline_closed(uv_handle_t *h)
{
    deadline_op *d = fan__container_of((uv_timer_t *)h, deadline_op, timer);
    fan__op_end(d->rq, &d->op);
}

/* The deadline timer is an op: its handle must be closed before the request's
 * memory goes, so the request waits for the close callback. Cancelling the
 * request only stops it; the handler's return closes it. */
static void deadline_cancel(fan__op *op)
{
    deadline_op *d = fan__container_of(op, deadline_op, op);
    if (!d->rq->handler_done)
        return; /* cancelling the request only stops the timer */
    d->rq->deadline = NULL;
    uv_close((uv_handle_t *)&d->timer, deadline_closed);
}

int fan_set_deadline(fan_req *rq, unsigned ms)
{
    if (rq->cancelled || rq->handler_done)
        return FAN_ESTATE;
    if (!rq->deadline) {
        if (ms == 0)
            return 0;
        deadline_op *d = fan__arena_alloc(&rq->arena, sizeof *d);
        if (!d)
            return FAN_ENOMEM;
        d->rq = rq;
        d->op.cancel = deadline_cancel;
        uv_timer_init(fan__srv()->loop, &d->timer);
        d->timer.data = rq;
        rq->deadline = &d->timer;
        fan__op_begin(rq, &d->op);
    }
    if (ms == 0)
        uv_timer_stop(rq->deadline);
    else
        uv_timer_start(rq->deadline, deadline_fired, ms, 0);
    return 0;
}

int fan_cancelled(const fan_req *rq)
{
    return rq->cancelled;
}

void fan__req_start(fan_req *rq)
{
    fan__route_match *m = &rq->match;
    int rc = fan__router_match(rq->app->router, rq->method, rq->raw_path, m, &rq->arena);
    rq->handler_done = 1; /* until a coroutine runs it */
    if (rc == FAN_EINVAL) {
        fan_reply_error(rq, 400, "malformed escape in the path");
    } else if (rc != 0) {
        fan_reply_error(rq, 503, "out of memory");
    } else if (m->status == 404) {
        fan_reply_error(rq, 404, "no route for this path");
    } else if (m->status == 405) {
        fan_set_header(rq, "Allow", m->allow);
        fan_reply_error(rq, 405, "method not allowed on this path");
    } else {
        rq->handler = (fan_handler)m->handler;
        rq->co = fan__coro_new(run_handler, rq, rq->app->limits.stack_size);
        if (!rq->co) {
            fan_reply_error(rq, 503, "out of memory for a coroutine");
        } else {
            rq->handler_done = 0;
            if (rq->app->limits.request_timeout_ms)
                fan_set_deadline(rq, rq->app->limits.request_timeout_ms);
            resume(rq);
        }
    }
    settle(rq);
}
