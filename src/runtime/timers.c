/* The request's timers: fan_sleep() for its tasks, and its deadline, which
 * cancels the whole request when it passes. A request's own timers are
 * ops, so that their handles are closed before the request's memory goes;
 * the deadline a site gives every request is a timeout (timeouts.h)
 * instead, which one timer per thread serves (no handle, no memory of the
 * request's: a waiting request costs less, and starting one costs no timer). */
#include "runtime/runtime.h"

typedef struct sleeper {
    fan__op op;
    uv_timer_t timer;
    fan_req *rq;
    int fired;
} sleeper;

static void sleep_fired(uv_timer_t *t)
{
    sleeper *s = t->data;
    s->fired = 1;
    fan__req_notify(s->rq);
}

static void sleep_closed(uv_handle_t *h)
{
    sleeper *s = h->data;
    fan__op_end(s->rq, &s->op);
}

static void sleep_cancel(fan__op *op)
{
    sleeper *s = fan__container_of(op, sleeper, op);
    uv_timer_stop(&s->timer);
}

static int sleep_ready(fan_req *rq, void *arg)
{
    (void)rq;
    return ((sleeper *)arg)->fired;
}

int fan_sleep(fan_req *rq, unsigned ms)
{
    fan__rt *rt = fan__rt_of(rq);
    if (rt->cancelled)
        return FAN_ECANCELED;
    sleeper *s = fan__arena_alloc(&rt->arena, sizeof *s);
    if (!s)
        return FAN_ENOMEM;
    s->rq = rq;
    s->fired = 0;
    s->op.cancel = sleep_cancel;
    uv_timer_init(fan__loop(), &s->timer);
    s->timer.data = s;
    fan__op_begin(rq, &s->op, fan__task_of(rq));
    uv_timer_start(&s->timer, sleep_fired, ms, 0);
    int rc = fan__req_wait(rq, sleep_ready, s);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sleep_closed);
    return rc;
}

typedef struct deadline_op {
    fan__op op;
    uv_timer_t timer;
    fan_req *rq;
} deadline_op;

static void deadline_fired_for(fan_req *rq)
{
    fan_log(FAN_LOG_WARN, "%s: deadline passed, cancelling its calls", fan__req_name(rq));
    fan__req_cancel(rq, FAN_ETIMEDOUT);
}

static void deadline_fired(uv_timer_t *t)
{
    deadline_fired_for(t->data);
}

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
    fan__rt *rt = fan__rt_of(d->rq);
    if (!rt->handler_done || uv_is_closing((uv_handle_t *)&d->timer))
        return; /* cancelling the request only stops the timer */
    rt->deadline = NULL;
    uv_close((uv_handle_t *)&d->timer, deadline_closed);
}

int fan_req_set_deadline(fan_req *rq, unsigned ms)
{
    fan__rt *rt = fan__rt_of(rq);
    if (rt->cancelled || rt->handler_done)
        return FAN_ESTATE;
    fan__deadline_drop(rq); /* its own deadline replaces the site's */
    if (!rt->deadline) {
        if (ms == 0)
            return 0;
        deadline_op *d = fan__arena_alloc(&rt->arena, sizeof *d);
        if (!d)
            return FAN_ENOMEM;
        d->rq = rq;
        d->op.cancel = deadline_cancel;
        uv_timer_init(fan__loop(), &d->timer);
        d->timer.data = rq;
        rt->deadline = &d->timer;
        fan__op_begin(rq, &d->op, NULL);
    }
    if (ms == 0)
        uv_timer_stop(rt->deadline);
    else
        uv_timer_start(rt->deadline, deadline_fired, ms, 0);
    return 0;
}

/* ---- the site's deadline: a timeout of the thread's queues -------------- */

static void site_deadline_passed(fan__timeout *t)
{
    deadline_fired_for((fan_req *)fan__container_of(t, fan__rt, site_deadline));
}

void fan__deadline_default(fan_req *rq, unsigned ms)
{
    if (fan__timeout_start(&fan__rt_of(rq)->site_deadline, ms, ms, site_deadline_passed) != 0)
        fan_req_set_deadline(rq, ms); /* no memory for the queue: its own timer */
}

void fan__deadline_drop(fan_req *rq)
{
    fan__timeout_stop(&fan__rt_of(rq)->site_deadline);
}
