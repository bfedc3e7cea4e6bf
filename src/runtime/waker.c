/* Awaiting other libuv clients, and per-task cleanups.
 *
 * A fan_waker lets a task await anything that reports through a libuv
 * callback (a uv timer, uv_getaddrinfo, hiredis's libuv adapter, a database
 * driver): the task makes a waker, starts the operation with a callback that
 * wakes it, and suspends on it. A waker is two promises until it is woken:
 * an op of the request (its memory is not freed) and a hold on its task's
 * stack (the task does not end, so its frame is neither released nor
 * reused). fan_suspend() never returns before the waker was woken, even
 * when the task is cancelled: the operation's memory may live in its frame.
 *
 * fan_wake() only queues the waker: the thread's idle handle ends it on the
 * loop's own stack, where tasks are resumed, so that a callback may go on
 * using its memory after waking and a waker is safe to wake from anywhere
 * on the loop's thread (a callback, on_cancel, the task itself).
 *
 * fan_task_defer()'s cleanups live here too; request.c runs them when a
 * task ends (fan__task_run_defers()). */
#include <assert.h>
#include <string.h>

#include "core/log.h"
#include "runtime/runtime.h"

struct fan_waker {
    fan__op op; /* owned by the task that made it */
    fan_req *rq;
    fan__task *owner;
    void (*on_cancel)(void *arg);
    void *arg;
    fan__list queued;  /* in the thread's queue once woken */
    int woken;         /* fan_wake() was called */
    int cancel_called; /* on_cancel ran (or there was none to run) */
    int warned;        /* the task returned without suspending on it: logged */
};

/* Woken wakers, ended by the idle handle at the loop's next turn. */
typedef struct wake_queue {
    uv_idle_t idle;
    fan__list woken;
    int ready;
} wake_queue;

static _Thread_local wake_queue queue;

struct uv_loop_s *fan_loop(void)
{
    return fan__loop();
}

static void call_on_cancel(fan_waker *w)
{
    w->cancel_called = 1;
    if (w->on_cancel)
        w->on_cancel(w->arg);
}

/* One line per second at most, like the orphaned children's warning. */
static void warn_not_suspended(fan_waker *w)
{
    static _Thread_local fan__log_quota quota;
    unsigned long quiet;
    w->warned = 1;
    if (!fan__log_quota_take(&quota, fan_now(), 1.0, &quiet))
        return;
    fan_req *rq = w->rq;
    fan_log(FAN_LOG_WARN,
            "%s: a %s returned before its waker was woken: cancelled it, its stack is "
            "kept until it is woken (suspend on every waker before returning; %lu more "
            "since the last line)",
            fan__req_name(rq), w->owner == &fan__rt_of(rq)->main ? "handler" : "task", quiet);
}

/* The waker's op is cancelled: its task was cancelled, or returned (or the
 * handler did) without suspending on it. Called by every cancel walk that
 * reaches it; on_cancel runs once. When the task's own code cancelled it,
 * the operation may not have started yet: fan_suspend() runs on_cancel. */
static void waker_cancel(fan__op *op)
{
    fan_waker *w = fan__container_of(op, fan_waker, op);
    if (w->woken || w->cancel_called)
        return;
    if (w->owner->returned) {
        if (!w->warned)
            warn_not_suspended(w);
    } else if (fan__coro_current() == w->owner->co) {
        return;
    }
    call_on_cancel(w);
}

fan_waker *fan_waker_new(fan_req *rq, void (*on_cancel)(void *arg), void *arg)
{
    fan__task *t = fan__task_of(rq);
    if (!t->co || t->co != fan__coro_current())
        return NULL; /* not called from a task of this request */
    fan_waker *w = fan__arena_alloc(fan__req_arena(rq), sizeof *w);
    if (!w)
        return NULL;
    memset(w, 0, sizeof *w);
    w->rq = rq;
    w->owner = t;
    w->on_cancel = on_cancel;
    w->arg = arg;
    w->op.cancel = waker_cancel;
    fan__list_init(&w->queued);
    fan__op_begin(rq, &w->op, t);
    t->holds++;
    return w;
}

static int woken(fan_req *rq, void *arg)
{
    (void)rq;
    return ((fan_waker *)arg)->woken;
}

int fan_suspend(fan_req *rq, fan_waker *w)
{
    if (!w)
        return FAN_ENOMEM;
    fan__task *t = fan__task_of(rq);
    assert(w->owner == t); /* a waker's cancellation follows the task that made it */
    if (t->cancelled && !w->woken && !w->cancel_called)
        call_on_cancel(w); /* cancelled before the operation started, or by itself */
    /* Shielded: the operation may write into this frame until it wakes us. */
    return fan__req_wait_shielded(rq, woken, w);
}

/* Ends the wakers woken before this turn of the loop (those woken meanwhile
 * wait for the next turn, so that a task waking its own wakers in a loop
 * cannot starve the loop's I/O). */
static void end_woken(uv_idle_t *idle)
{
    fan__list batch;
    fan__list_init(&batch);
    if (!fan__list_empty(&queue.woken)) {
        batch.next = queue.woken.next;
        batch.prev = queue.woken.prev;
        batch.next->prev = batch.prev->next = &batch;
        fan__list_init(&queue.woken);
    }
    while (!fan__list_empty(&batch)) {
        fan_waker *w = fan__container_of(batch.next, fan_waker, queued);
        fan__list_remove(&w->queued);
        fan_req *rq = w->rq;
        /* The task may end first (its last hold); the op's end may then free
         * the request, and the waker with it. */
        fan__task_release(w->owner);
        fan__op_end(rq, &w->op);
    }
    if (fan__list_empty(&queue.woken))
        uv_idle_stop(idle);
}

void fan_wake(fan_waker *w)
{
    if (!w)
        return;
    assert(!w->woken); /* exactly once */
    w->woken = 1;
    if (!queue.ready) {
        uv_idle_init(fan__loop(), &queue.idle);
        fan__list_init(&queue.woken);
        queue.ready = 1;
    }
    if (fan__list_empty(&queue.woken))
        uv_idle_start(&queue.idle, end_woken);
    fan__list_push(&queue.woken, &w->queued);
}

int fan_task_defer(fan_req *rq, void (*fn)(void *arg), void *arg)
{
    fan__task *t = fan__task_of(rq);
    if (!fn)
        return FAN_EINVAL;
    if (!t->co)
        return FAN_ESTATE; /* the handler's task ended, or never ran */
    fan__defer *d = fan__arena_alloc(fan__req_arena(rq), sizeof *d);
    if (!d)
        return FAN_ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = t->defers;
    t->defers = d;
    return 0;
}

void fan__task_run_defers(fan__task *t)
{
    while (t->defers) {
        fan__defer *d = t->defers;
        t->defers = d->next;
        d->fn(d->arg);
    }
}
