/* The request's timers: fan_sleep() for its tasks, and its deadline, which
 * cancels the whole request when it passes. A request's own timers are
 * ops, so that their handles are closed before the request's memory goes;
 * the deadline a site gives every request is a place in the thread's queue
 * of them instead, which one timer serves (no handle, no memory of the
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

/* ---- the site's deadline: one queue and one timer per thread ------------ */

static _Thread_local struct {
    fan__list queue; /* fan__rt.deadline_link, the first to pass first */
    uv_timer_t timer;
    int open;        /* the timer is initialised and not closed */
} deadlines;

static void deadlines_fired(uv_timer_t *t);

/* Arms the timer for the queue's first deadline, if there is one. */
static void deadlines_arm(void)
{
    if (fan__list_empty(&deadlines.queue))
        return;
    fan__rt *first = fan__container_of(deadlines.queue.next, fan__rt, deadline_link);
    uint64_t now = uv_now(fan__loop());
    uv_timer_start(&deadlines.timer, deadlines_fired,
                   first->deadline_at > now ? first->deadline_at - now : 0, 0);
}

/* Cancels every request whose deadline passed, first to last, then waits
 * for the next one. The first is taken out of the queue before it is
 * cancelled: cancelling may free it. */
static void deadlines_fired(uv_timer_t *t)
{
    uint64_t now = uv_now(t->loop);
    while (!fan__list_empty(&deadlines.queue)) {
        fan__rt *first = fan__container_of(deadlines.queue.next, fan__rt, deadline_link);
        if (first->deadline_at > now)
            break;
        fan__list_remove(&first->deadline_link);
        deadline_fired_for((fan_req *)first);
    }
    deadlines_arm();
}

void fan__deadline_default(fan_req *rq, unsigned ms)
{
    fan__rt *rt = fan__rt_of(rq);
    uv_loop_t *loop = fan__loop();
    if (!deadlines.open) {
        fan__list_init(&deadlines.queue);
        uv_timer_init(loop, &deadlines.timer);
        deadlines.open = 1;
    }
    uint64_t at = uv_now(loop) + ms;
    int was_empty = fan__list_empty(&deadlines.queue);
    if (!was_empty &&
        fan__container_of(deadlines.queue.prev, fan__rt, deadline_link)->deadline_at > at) {
        fan_req_set_deadline(rq, ms); /* out of order: its own timer */
        return;
    }
    rt->deadline_at = at;
    fan__list_push(&deadlines.queue, &rt->deadline_link);
    /* The timer runs while the queue has requests (and keeps the loop
     * running, as a request's own timer would): it is armed for a new first
     * one only; a first one taken out early leaves it armed for a deadline
     * that finds no request, and it re-arms then. */
    if (was_empty)
        deadlines_arm();
}

void fan__deadline_drop(fan_req *rq)
{
    fan__list *link = &fan__rt_of(rq)->deadline_link;
    if (fan__list_empty(link))
        return; /* not queued */
    fan__list_remove(link);
    if (fan__list_empty(&deadlines.queue))
        uv_timer_stop(&deadlines.timer);
}

void fan__deadlines_shutdown(void)
{
    if (!deadlines.open)
        return;
    deadlines.open = 0;
    uv_close((uv_handle_t *)&deadlines.timer, NULL);
}
