/* Child tasks: fan_spawn(), awaiting and gathering them, per-task timeouts,
 * and offloading blocking work to the thread pool. The scheduling itself
 * (resume, wait, cancel) lives with the request in src/http/request.c. */
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

static void task_entry(void *arg)
{
    fan__task *t = arg;
    int r = t->fn(t->rq, t->arg);
    t->fn_result = r > 0 ? 0 : r;
}

static void task_cancel_op(fan__op *op)
{
    fan__task *t = fan__container_of(op, fan__task, op);
    fan__task_cancel(t, FAN_ECANCELED);
}

fan_task *fan_spawn(fan_req *rq, fan_task_fn fn, void *arg)
{
    fan__task *parent = fan__task_of(rq);
    if (!fn || parent->returned)
        return NULL; /* a returned task waits for its children; it starts no more */
    fan__task *t = fan__arena_alloc(fan__req_arena(rq), sizeof *t);
    if (!t)
        return NULL;
    fan__task_init(t, rq, parent);
    t->fn = fn;
    t->arg = arg;
    if (fan__task_start(t, task_entry, t) != 0)
        return NULL;
    t->op.cancel = task_cancel_op;
    fan__op_begin(rq, &t->op, parent);
    fan__list_push(&parent->children, &t->child_link);
    parent->children_running++;
    if (parent->cancelled)
        fan__task_cancel(t, parent->cancelled);
    /* From the loop's own stack (no coroutine runs), start it now; from a
     * coroutine it starts when the caller next suspends. */
    fan__req_notify(rq);
    return t;
}

static int task_done_ready(fan_req *rq, void *arg)
{
    (void)rq;
    return ((fan__task *)arg)->result != 1;
}

/* Whether `self` must wait for `t` to end after cancelling it: t still runs,
 * and is neither an ancestor of self (which cannot end before self does)
 * nor, through a chain of such waits, waiting for self. */
static int must_join(const fan__task *t, const fan__task *self)
{
    if (t->result != 1)
        return 0;
    for (const fan__task *a = self->parent; a; a = a->parent)
        if (a == t)
            return 0;
    for (const fan__task *x = t; x; x = x->joining)
        if (x->joining == self)
            return 0;
    return 1;
}

int fan_task_await(fan_req *rq, fan_task *t)
{
    if (!t)
        return FAN_ENOMEM;
    if (t->result == 1 && fan__req_wait(rq, task_done_ready, t) != 0 && t->result == 1) {
        /* The caller was cancelled: so is the task it waits for, and the
         * caller returns only once that task ended (its `arg` may live in
         * the caller's frame). */
        fan__task *self = fan__task_of(rq);
        fan__task_cancel(t, FAN_ECANCELED);
        if (must_join(t, self)) {
            self->joining = t;
            fan__req_wait_shielded(rq, task_done_ready, t);
            self->joining = NULL;
        }
        return FAN_ECANCELED;
    }
    return t->result;
}

static int any_child_ready(fan_req *rq, void *arg)
{
    (void)rq;
    fan__task *self = arg;
    if (!fan__list_empty(&self->done_children))
        return 1;
    fan__list *pos;
    fan__list_each(pos, &self->children)
    {
        if (fan__container_of(pos, fan__task, child_link)->result == 1)
            return 0;
    }
    return 1; /* nothing left running */
}

typedef struct gather {
    fan__task *self;
    fan_task *const *tasks;
    size_t n;
    int fail_fast;
} gather;

/* Calls fn on each task of the gather: the given array, or every child. */
static int each_task(const gather *g, int (*fn)(fan__task *t, void *arg), void *arg)
{
    if (g->tasks) {
        for (size_t i = 0; i < g->n; i++)
            if (g->tasks[i] && fn(g->tasks[i], arg))
                return 1;
        return 0;
    }
    fan__list *pos;
    fan__list_each(pos, &g->self->children)
    {
        if (fn(fan__container_of(pos, fan__task, child_link), arg))
            return 1;
    }
    return 0;
}

static int is_running(fan__task *t, void *arg)
{
    (void)arg;
    return t->result == 1;
}

static int has_failed(fan__task *t, void *arg)
{
    if (t->result == 1 || t->result == 0)
        return 0;
    if (arg)
        *(int *)arg = t->result;
    return 1;
}

static int cancel_one(fan__task *t, void *arg)
{
    (void)arg;
    fan__task_cancel(t, FAN_ECANCELED);
    return 0;
}

static int gather_ready(fan_req *rq, void *arg)
{
    (void)rq;
    const gather *g = arg;
    if (g->fail_fast && each_task(g, has_failed, NULL))
        return 1;
    return !each_task(g, is_running, NULL);
}

static int joinable(fan__task *t, void *arg)
{
    return must_join(t, arg);
}

static int joined(fan_req *rq, void *arg)
{
    (void)rq;
    const gather *g = arg;
    return !each_task(g, joinable, g->self);
}

/* Cancels the gather's tasks and waits until they ended, even when the
 * caller is cancelled meanwhile: no task outlives the wait that gave up on
 * it. Returns FAN_ECANCELED if the caller was cancelled, else 0. */
static int cancel_and_join(fan_req *rq, const gather *g)
{
    each_task(g, cancel_one, NULL);
    return fan__req_wait_shielded(rq, joined, (void *)g);
}

fan_task *fan_task_await_any(fan_req *rq)
{
    fan__task *self = fan__task_of(rq);
    if (fan__req_wait(rq, any_child_ready, self) != 0) {
        gather all = {self, NULL, 0, 0};
        cancel_and_join(rq, &all);
        return NULL;
    }
    if (fan__list_empty(&self->done_children))
        return NULL;
    fan__task *t = fan__container_of(self->done_children.next, fan__task, done_link);
    fan__list_remove(&t->done_link);
    return t;
}

int fan_task_gather(fan_req *rq, fan_task *const *tasks, size_t n, fan_gather_policy policy)
{
    gather g = {fan__task_of(rq), tasks, n, policy == FAN_GATHER_FAIL_FAST};
    if (fan__req_wait(rq, gather_ready, &g) != 0) {
        cancel_and_join(rq, &g);
        return FAN_ECANCELED;
    }
    int first = 0;
    /* Fail-fast: cancel the siblings and wait for them. */
    if (each_task(&g, has_failed, &first) && g.fail_fast && cancel_and_join(rq, &g) != 0)
        return FAN_ECANCELED;
    return first;
}

void fan_task_cancel(fan_task *t)
{
    if (t)
        fan__task_cancel(t, FAN_ECANCELED);
}

int fan_task_done(const fan_task *t)
{
    return t->result != 1;
}

int fan_task_result(const fan_task *t)
{
    return t->result == 1 ? FAN_ESTATE : t->result;
}

typedef struct task_timer {
    fan__op op;
    uv_timer_t timer;
    fan__task *t;
} task_timer;

static void timeout_fired(uv_timer_t *h)
{
    task_timer *tt = h->data;
    fan_log(FAN_LOG_INFO, "a task's timeout passed: cancelling it");
    fan__task_cancel(tt->t, FAN_ETIMEDOUT);
}

static void timer_closed(uv_handle_t *h)
{
    task_timer *tt = h->data;
    fan__op_end(tt->t->rq, &tt->op);
}

static void timer_cancel(fan__op *op)
{
    task_timer *tt = fan__container_of(op, task_timer, op);
    if (tt->t->timeout == tt) {
        tt->t->timeout = NULL;
        uv_close((uv_handle_t *)&tt->timer, timer_closed);
    }
}

int fan_task_set_timeout(fan_task *t, unsigned ms)
{
    if (t->result != 1 || t->cancelled)
        return FAN_ESTATE;
    task_timer *tt = t->timeout;
    if (!tt) {
        if (ms == 0)
            return 0;
        if (!(tt = fan__arena_alloc(fan__req_arena(t->rq), sizeof *tt)))
            return FAN_ENOMEM;
        tt->t = t;
        tt->op.cancel = timer_cancel;
        uv_timer_init(fan__loop(), &tt->timer);
        tt->timer.data = tt;
        t->timeout = tt;
        fan__op_begin(t->rq, &tt->op, t); /* closed when the task ends */
    }
    if (ms == 0)
        uv_timer_stop(&tt->timer);
    else
        uv_timer_start(&tt->timer, timeout_fired, ms, 0);
    return 0;
}

typedef struct blocking {
    fan__op op;
    uv_work_t work;
    fan_req *rq;
    void (*fn)(void *);
    void *arg;
    int done;
    int status;
} blocking;

static void work_run(uv_work_t *w)
{
    blocking *b = w->data;
    b->fn(b->arg);
}

static void work_done(uv_work_t *w, int status)
{
    blocking *b = w->data;
    b->done = 1;
    b->status = status;
    fan__op_end(b->rq, &b->op);
}

static void work_cancel(fan__op *op)
{
    /* Succeeds only while the work is still queued; a running function
     * cannot be interrupted and is waited for. */
    uv_cancel((uv_req_t *)&fan__container_of(op, blocking, op)->work);
}

static int work_ready(fan_req *rq, void *arg)
{
    (void)rq;
    return ((blocking *)arg)->done;
}

int fan_run_blocking(fan_req *rq, void (*fn)(void *arg), void *arg)
{
    fan__task *t = fan__task_of(rq);
    if (t->cancelled)
        return FAN_ECANCELED;
    blocking *b = fan__arena_alloc(fan__req_arena(rq), sizeof *b);
    if (!b)
        return FAN_ENOMEM;
    memset(b, 0, sizeof *b);
    b->rq = rq;
    b->fn = fn;
    b->arg = arg;
    b->work.data = b;
    b->op.cancel = work_cancel;
    if (uv_queue_work(fan__loop(), &b->work, work_run, work_done) != 0)
        return FAN_ENOMEM;
    fan__op_begin(rq, &b->op, t);
    /* `arg` usually lives on this coroutine's stack: never return while the
     * function may still run, even when cancelled. */
    int rc = fan__req_wait_shielded(rq, work_ready, b);
    return b->status == UV_ECANCELED ? FAN_ECANCELED : rc;
}
