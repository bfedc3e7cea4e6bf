/* A request's life as the runtime runs it: its tasks on coroutines, the
 * operations it owns, waiting and waking, cancellation, and its end once
 * every task and operation ended. The layer that made the request (the
 * server) is told through its fan__rt_hooks. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "runtime/runtime.h"

static void settle(fan_req *rq);

const char *fan__req_name(const fan_req *rq)
{
    const fan__rt *rt = fan__rt_of_const(rq);
    const char *name = rt->hooks && rt->hooks->describe ? rt->hooks->describe(rq) : NULL;
    return name ? name : "a request"; /* NULL: out of memory for the text */
}

fan_req *fan__rt_new(size_t size, int home, const fan_limits *limits,
                     const struct fan__upstreams *upstreams, const fan__rt_hooks *hooks)
{
    fan__coro *co = NULL;
    fan__arena a;
    if (home) {
        if (!(co = fan__coro_new(NULL, NULL, limits->stack_size)))
            return NULL;
        fan__arena_init_in(&a, fan__coro_top(co), FAN__CORO_TOP);
    } else {
        fan__arena_init(&a);
    }
    fan_req *rq = fan__arena_alloc(&a, size);
    if (!rq) {
        fan__arena_free(&a);
        fan__coro_free(co);
        return NULL;
    }
    memset(rq, 0, size);
    fan__rt *rt = fan__rt_of(rq);
    rt->arena = a;
    rt->home = co;
    rt->limits = limits;
    rt->upstreams = upstreams;
    rt->hooks = hooks;
    rt->handler_done = 1; /* until a coroutine runs it */
    fan__list_init(&rt->ops);
    fan__list_init(&rt->tasks);
    fan__list_init(&rt->call_recs);
    fan__timeout_init(&rt->deadline);
    fan__task_init(&rt->main, rq, NULL);
    fan__worker_request_born();
    return rq;
}

void fan__rt_run_defers(fan_req *rq)
{
    fan__rt *rt = fan__rt_of(rq);
    assert(rt->main.co == NULL); /* every task ended, so every stack is back */
    /* Last registered first, like unwinding. */
    while (rt->defers) {
        fan__defer *d = rt->defers;
        rt->defers = d->next;
        d->fn(d->arg);
    }
}

void fan__rt_free(fan_req *rq)
{
    fan__arena a = fan__rt_of(rq)->arena;
    fan__timeout_stop(&fan__rt_of(rq)->deadline); /* unset already when its handler returned */
    fan__coro *home = fan__rt_of(rq)->home; /* the arena holds rq: read first */
    fan__arena_free(&a);
    fan__coro_free(home); /* after the arena, whose first chunk it holds */
    fan__worker_request_gone();
}

int fan_defer(fan_req *rq, void (*fn)(void *), void *arg)
{
    fan__rt *rt = fan__rt_of(rq);
    fan__defer *d = fan__arena_alloc(&rt->arena, sizeof *d);
    if (!d)
        return FAN_ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = rt->defers;
    rt->defers = d;
    return 0;
}

void fan__op_begin(fan_req *rq, fan__op *op, fan__task *owner)
{
    fan__rt *rt = fan__rt_of(rq);
    op->owner = owner;
    op->cancel_epoch = 0;
    fan__list_push(&rt->ops, &op->link);
    rt->nops++;
}

void fan__op_end(fan_req *rq, fan__op *op)
{
    fan__rt *rt = fan__rt_of(rq);
    assert(rt->nops > 0);
    fan__list_remove(&op->link);
    rt->nops--;
    settle(rq);
}

/* Cancels the ops `owner` owns (every op with a cancel function when owner is
 * NULL). Cancelling an op may end it (and unlink it) at once; the busy count
 * keeps settle() from resuming tasks or freeing the request meanwhile. The
 * walk restarts after each cancel because one may end several ops. */
static void cancel_ops(fan_req *rq, fan__task *owner)
{
    fan__rt *rt = fan__rt_of(rq);
    rt->busy++;
    unsigned long long epoch = ++rt->cancel_epoch;
    for (int again = 1; again;) {
        again = 0;
        fan__list *pos;
        fan__list_each(pos, &rt->ops)
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
    rt->busy--;
}

static _Thread_local fan__task *current_task;

fan__task *fan__task_of(fan_req *rq)
{
    fan__task *t = current_task;
    return t && t->rq == rq ? t : &fan__rt_of(rq)->main;
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
    fan__rt *rt = fan__rt_of(t->rq);
    if (t == &rt->main && rt->home)
        fan__coro_set_fn(t->co = rt->home, entry, arg);
    else
        t->co = fan__coro_new(entry, arg, rt->limits->stack_size);
    if (!t->co)
        return FAN_ENOMEM;
    fan__list_push(&fan__rt_of(t->rq)->tasks, &t->link);
    /* A new task runs as soon as the loop gets control: it "waits" for
     * nothing. */
    t->waiting = 1;
    t->ready = NULL;
    return 0;
}

/* The main task's function returned: the deadline no longer applies, the
 * server answers if the handler did not, then what the request still runs
 * is cancelled (its children, their calls). */
static void handler_finished(fan_req *rq)
{
    fan__rt *rt = fan__rt_of(rq);
    rt->handler_done = 1;
    fan__timeout_stop(&rt->deadline);
    rt->hooks->returned(rq);
    cancel_ops(rq, NULL);
}

/* One line per second at most, with the count of the ones kept quiet. */
static void warn_orphans(fan__task *t)
{
    static _Thread_local fan__log_quota quota;
    unsigned long quiet;
    if (!fan__log_quota_take(&quota, fan_now(), 1.0, &quiet))
        return;
    fan_req *rq = t->rq;
    const char *what = t == &fan__rt_of(rq)->main ? "handler" : "task";
    fan_log(FAN_LOG_WARN,
            "%s: a %s returned with %u child task%s still running: cancelled them, its "
            "stack is kept until they end (await them before returning; %lu more since "
            "the last line)",
            fan__req_name(rq), what, t->children_running, t->children_running == 1 ? "" : "s",
            quiet);
}

/* Whether nothing keeps the task from ending: its function returned, every
 * child ended and every waker it made was woken. */
static int task_may_end(const fan__task *t)
{
    return t->returned && t->children_running == 0 && t->holds == 0;
}

/* The task ended: its function returned, every child's did, and libuv is
 * done with its wakers. Its fan_task_defer() cleanups run first; only then
 * is its stack released (a child or a libuv request may have pointed into
 * it), its result visible and its parent told. The parent's own end, when
 * this was the last child it waited for, comes first: ending this task's op
 * may free the request. */
static void task_end(fan__task *t)
{
    fan_req *rq = t->rq;
    fan__rt *rt = fan__rt_of(rq);
    fan__task_run_defers(t);
    if (t->co != rt->home)
        fan__coro_free(t->co); /* the home one holds the arena: fan__rt_free() */
    t->co = NULL;
    if (t == &rt->main)
        return;
    t->result = t->fn_result;
    fan__task *p = t->parent;
    fan__list_push(&p->done_children, &t->done_link);
    rt->busy++;
    p->children_running--;
    if (task_may_end(p))
        task_end(p);
    rt->busy--;
    fan__op_end(rq, &t->op);
}

void fan__task_release(fan__task *t)
{
    fan__rt *rt = fan__rt_of(t->rq);
    assert(t->holds > 0);
    if (--t->holds || !task_may_end(t))
        return;
    rt->busy++; /* the caller still uses the request */
    task_end(t);
    rt->busy--;
}

/* The task's function returned: cancel what it left running (structured
 * concurrency: nothing outlives the task that started it), and end it once
 * its children ended and its wakers were woken. */
static void task_returned(fan__task *t)
{
    fan_req *rq = t->rq;
    t->returned = 1;
    t->waiting = 0;
    fan__list_remove(&t->link);
    if (t == &fan__rt_of(rq)->main)
        handler_finished(rq);
    else
        cancel_ops(rq, t); /* its calls, children and timeout timer */
    if (t->children_running)
        warn_orphans(t);
    if (task_may_end(t))
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
    fan__rt *rt = fan__rt_of(rq);
    if (rt->busy)
        return;
    if (fan__coro_current() == NULL) {
        rt->busy++;
        for (int progress = 1; progress;) {
            progress = 0;
            fan__list *pos;
            fan__list_each(pos, &rt->tasks)
            {
                fan__task *t = fan__container_of(pos, fan__task, link);
                if (task_ready(t)) {
                    resume(t);
                    progress = 1;
                    break; /* the list may have changed */
                }
            }
        }
        rt->busy--;
    }
    if (!rt->busy && rt->handler_done && rt->nops == 0)
        rt->hooks->finished(rq);
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
    fan__rt *rt = fan__rt_of(rq);
    if (rt->cancelled)
        return;
    rt->cancelled = reason;
    fan__timeout_stop(&rt->deadline);
    rt->busy++;
    fan__task_cancel(&rt->main, reason);
    rt->busy--;
    settle(rq);
}

int fan__rt_run(fan_req *rq, void (*handler)(void *rq), unsigned deadline_ms)
{
    fan__rt *rt = fan__rt_of(rq);
    if (deadline_ms && fan__deadline_start(rq, deadline_ms) != 0)
        return FAN_ENOMEM;
    if (fan__task_start(&rt->main, handler, rq) != 0) {
        fan__timeout_stop(&rt->deadline);
        return FAN_ENOMEM;
    }
    rt->handler_done = 0;
    return 0;
}

int fan_cancelled(const fan_req *rq)
{
    fan__task *t = current_task;
    return t && t->rq == rq ? t->cancelled : fan__rt_of_const(rq)->main.cancelled;
}
