/* The request's timers: fan_sleep() for its tasks, and its deadline, which
 * cancels the whole request when it passes. A sleep's timer is an op, so
 * that its handle is closed before the request's memory goes; the deadline
 * (the site's request_timeout_ms, or the handler's own) is a timeout
 * (timeouts.h) instead, which one timer per thread and duration serves (no
 * handle, no memory of the request's: a waiting request costs less, and
 * starting one costs no timer). */
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

/* ---- the deadline: a timeout of the thread's queues (timeouts.h) ------- */

static void deadline_passed(fan__timeout *t)
{
    fan_req *rq = (fan_req *)fan__container_of(t, fan__rt, deadline);
    fan_log(FAN_LOG_WARN, "%s: deadline passed, cancelling its calls", fan__req_name(rq));
    fan__req_cancel(rq, FAN_ETIMEDOUT);
}

int fan__deadline_start(fan_req *rq, unsigned ms)
{
    return fan__timeout_start(&fan__rt_of(rq)->deadline, ms, ms, deadline_passed);
}

int fan_req_set_deadline(fan_req *rq, unsigned ms)
{
    fan__rt *rt = fan__rt_of(rq);
    if (rt->cancelled || rt->handler_done)
        return FAN_ESTATE;
    if (ms == 0) {
        fan__timeout_stop(&rt->deadline);
        return 0;
    }
    return fan__deadline_start(rq, ms); /* replaces the site's, or the one set before */
}
