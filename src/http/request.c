/* The request lifecycle: routing, the handler's coroutine, waiting and
 * waking, cancellation, and freeing once everything the request owns ended. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
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
    rq->started = fan_now();
    fan__list_init(&rq->ops);
    fan__list_init(&rq->tasks);
    fan__task_init(&rq->main, rq, NULL);
    fan__srv()->nreqs++;
    return rq;
}

/* The client's address into `out`, or NULL once the connection is gone. */
static const char *client_address(const fan__conn *conn, char *out, size_t len)
{
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    if (!conn || uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&sa, &salen) != 0)
        return NULL;
    int rc = sa.ss_family == AF_INET6 ? uv_ip6_name((const struct sockaddr_in6 *)&sa, out, len)
           : sa.ss_family == AF_INET  ? uv_ip4_name((const struct sockaddr_in *)&sa, out, len)
                                      : -1; /* a Unix socket handed to the server */
    return rc == 0 ? out : NULL;
}

/* The access log's line, written when the request ends: its response has
 * been handed to the socket by then (or the client went away). A request
 * never answered (parsed partially, then its connection closed or was
 * refused with a raw 4xx by conn.c) has no line. */
static void access_log(const fan_req *rq)
{
    if (!fan__access_log_on() || !rq->status || !rq->method)
        return;
    char addr[64];
    fan__access_entry e = {
        .client = client_address(rq->conn, addr, sizeof addr),
        .method = rq->method,
        .path = rq->raw_path ? rq->raw_path : "",
        .status = rq->status,
        .ms = (fan_now() - rq->started) * 1000.0,
        .bytes = rq->out_bytes,
        .calls = rq->ncalls,
        .failed = rq->ncalls_failed,
    };
    fan__access_log(&e);
}

static void req_free(fan_req *rq)
{
    fan__conn *conn = rq->conn;
    assert(rq->main.co == NULL); /* every task ended, so every stack is back */
    access_log(rq);
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

void fan__op_begin(fan_req *rq, fan__op *op, fan__task *owner)
{
    op->owner = owner;
    op->cancel_epoch = 0;
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

/* Cancels the ops `owner` owns (every op with a cancel function when owner is
 * NULL). Cancelling an op may end it (and unlink it) at once; the busy count
 * keeps settle() from resuming tasks or freeing the request meanwhile. The
 * walk restarts after each cancel because one may end several ops. */
static void cancel_ops(fan_req *rq, fan__task *owner)
{
    rq->busy++;
    unsigned long long epoch = ++rq->cancel_epoch;
    for (int again = 1; again;) {
        again = 0;
        fan__list *pos;
        fan__list_each(pos, &rq->ops)
        {
            fan__op *op = fan__container_of(pos, fan__op, link);
            if (!op->cancel || op->cancel_epoch == epoch || (owner && op->owner != owner))
                continue;
            op->cancel_epoch = epoch;
            op->cancel(op);
            again = 1;
            break;
        }
    }
    rq->busy--;
}

static _Thread_local fan__task *current_task;

fan__task *fan__task_of(fan_req *rq)
{
    fan__task *t = current_task;
    return t && t->rq == rq ? t : &rq->main;
}

void fan__task_init(fan__task *t, fan_req *rq, fan__task *parent)
{
    memset(t, 0, sizeof *t);
    t->rq = rq;
    t->parent = parent;
    t->result = 1;
    fan__list_init(&t->link);
    fan__list_init(&t->children);
    fan__list_init(&t->child_link);
    fan__list_init(&t->done_children);
    fan__list_init(&t->done_link);
    fan__list_init(&t->calls);
    fan__list_init(&t->completed);
}

int fan__task_start(fan__task *t, void (*entry)(void *), void *arg)
{
    t->co = fan__coro_new(entry, arg, t->rq->app->limits.stack_size);
    if (!t->co)
        return FAN_ENOMEM;
    fan__list_push(&t->rq->tasks, &t->link);
    /* A new task runs as soon as the loop gets control: it "waits" for
     * nothing. */
    t->waiting = 1;
    t->ready = NULL;
    return 0;
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

/* The main task's function returned: answer if it did not, and cancel what
 * the request still runs (its children, their calls, the deadline timer). */
static void handler_finished(fan_req *rq)
{
    rq->handler_done = 1;
    if (!rq->replied) {
        if (rq->cancelled == FAN_ETIMEDOUT)
            fan_reply_error(rq, 504, "request deadline exceeded");
        else
            fan_reply_error(rq, 500, "handler returned without a response");
    }
    cancel_ops(rq, NULL);
}

/* One line per second at most, with the count of the ones kept quiet. */
static void warn_orphans(fan__task *t)
{
    static _Thread_local double warned_at;
    static _Thread_local unsigned long quiet;
    double now = fan_now();
    if (warned_at && now - warned_at < 1.0) {
        quiet++;
        return;
    }
    fan_req *rq = t->rq;
    const char *route = rq->match.pattern ? rq->match.pattern : rq->path;
    fan_log(FAN_LOG_WARN,
            "%s %s: a %s returned with %u child task%s still running: cancelled them, its "
            "stack is kept until they end (await them before returning; %lu more since "
            "the last line)",
            rq->method, route, t == &rq->main ? "handler" : "task", t->children_running,
            t->children_running == 1 ? "" : "s", quiet);
    warned_at = now;
    quiet = 0;
}

/* The task ended: its function returned and so did every child's. Only now
 * is its stack released (a child may have pointed into it), its result
 * visible and its parent told. The parent's own end, when this was the
 * last child it waited for, comes first: ending this task's op may free
 * the request. */
static void task_end(fan__task *t)
{
    fan_req *rq = t->rq;
    fan__coro_free(t->co);
    t->co = NULL;
    if (t == &rq->main)
        return;
    t->result = t->fn_result;
    fan__task *p = t->parent;
    fan__list_push(&p->done_children, &t->done_link);
    rq->busy++;
    if (--p->children_running == 0 && p->returned)
        task_end(p);
    rq->busy--;
    fan__op_end(rq, &t->op);
}

/* The task's function returned: cancel what it left running (structured
 * concurrency: nothing outlives the task that started it), and end it once
 * its children ended. */
static void task_returned(fan__task *t)
{
    fan_req *rq = t->rq;
    t->returned = 1;
    t->waiting = 0;
    fan__list_remove(&t->link);
    if (t == &rq->main)
        handler_finished(rq);
    else
        cancel_ops(rq, t); /* its calls, children and timeout timer */
    if (t->children_running) {
        warn_orphans(t);
        return;
    }
    task_end(t);
}

static void resume(fan__task *t)
{
    fan__task *prev = current_task;
    current_task = t;
    t->waiting = 0;
    fan__coro_resume(t->co);
    current_task = prev;
    if (fan__coro_done(t->co))
        task_returned(t);
}

static int task_ready(fan__task *t)
{
    if (!t->waiting)
        return 0;
    if (t->cancelled && !t->shielded)
        return 1;
    return !t->ready || t->ready(t->rq, t->ready_arg);
}

/* Moves the request forward after anything it depends on changed: resumes
 * every task whose wait is over (resuming one may make another ready, so it
 * loops), then frees the request once its handler returned and every op
 * ended. Coroutines are only resumed from the loop's own stack. */
static void settle(fan_req *rq)
{
    if (rq->busy)
        return;
    if (fan__coro_current() == NULL) {
        rq->busy++;
        for (int progress = 1; progress;) {
            progress = 0;
            fan__list *pos;
            fan__list_each(pos, &rq->tasks)
            {
                fan__task *t = fan__container_of(pos, fan__task, link);
                if (task_ready(t)) {
                    resume(t);
                    progress = 1;
                    break; /* the list may have changed */
                }
            }
        }
        rq->busy--;
    }
    if (!rq->busy && rq->handler_done && rq->nops == 0)
        req_free(rq);
}

void fan__req_notify(fan_req *rq)
{
    settle(rq);
}

static int wait(fan_req *rq, fan__ready_fn ready, void *arg, int shielded)
{
    fan__task *t = current_task;
    assert(t != NULL && t->rq == rq && fan__coro_current() == t->co);
    while ((shielded || !t->cancelled) && !ready(rq, arg)) {
        t->ready = ready;
        t->ready_arg = arg;
        t->shielded = shielded;
        t->waiting = 1;
        fan__coro_yield();
    }
    t->shielded = 0;
    return t->cancelled ? FAN_ECANCELED : 0;
}

int fan__req_wait(fan_req *rq, fan__ready_fn ready, void *arg)
{
    return wait(rq, ready, arg, 0);
}

int fan__req_wait_shielded(fan_req *rq, fan__ready_fn ready, void *arg)
{
    return wait(rq, ready, arg, 1);
}

void fan__task_cancel(fan__task *t, int reason)
{
    if (t->result != 1 || t->cancelled)
        return;
    t->cancelled = reason;
    cancel_ops(t->rq, t); /* its calls, sleeps and child tasks */
    settle(t->rq);
}

void fan__req_cancel(fan_req *rq, int reason)
{
    if (rq->cancelled)
        return;
    rq->cancelled = reason;
    if (rq->deadline)
        uv_timer_stop(rq->deadline);
    rq->busy++;
    fan__task_cancel(&rq->main, reason);
    rq->busy--;
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
    if (!d->rq->handler_done || uv_is_closing((uv_handle_t *)&d->timer))
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
        fan__op_begin(rq, &d->op, NULL);
    }
    if (ms == 0)
        uv_timer_stop(rq->deadline);
    else
        uv_timer_start(rq->deadline, deadline_fired, ms, 0);
    return 0;
}

int fan_cancelled(const fan_req *rq)
{
    fan__task *t = current_task;
    return t && t->rq == rq ? t->cancelled : rq->main.cancelled;
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
        if (fan__task_start(&rq->main, run_handler, rq) != 0) {
            fan_reply_error(rq, 503, "out of memory for a coroutine");
        } else {
            rq->handler_done = 0;
            if (rq->app->limits.request_timeout_ms)
                fan_set_deadline(rq, rq->app->limits.request_timeout_ms);
        }
    }
    settle(rq);
}
