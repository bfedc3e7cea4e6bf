/* The request runtime: what the inbound server (src/http) and the upstream
 * client (src/client) share. It owns a request's life as a run of tasks on
 * coroutines: its arena, its tasks (the handler's and their children), the
 * operations it waits on or owns (calls, timers, writes), waiting and waking,
 * cancellation, deadlines, deferred cleanups, and the per-worker state (the
 * loop). It knows nothing of HTTP: struct fan_req (src/http/http.h) begins
 * with a fan__rt, so a fan_req * is a fan__rt *, and the layer that made the
 * request learns of its end through fan__rt_hooks. Internal to libfanout;
 * the public contract is include/fanout.h.
 *
 * Threading: one loop per thread, and every piece of the library's state
 * (this worker state, the coroutine pool, connection pools, read buffers)
 * is per thread (_Thread_local): a loop and all that is reached from it
 * belong to the thread that runs fan_run(). */
#ifndef FAN_RUNTIME_H
#define FAN_RUNTIME_H

#include <stdbool.h>
#include <uv.h>

#include "core/arena.h"
#include "core/list.h"
#include "coro/coro.h"
#include "fanout.h"
#include "runtime/timeouts.h"
#include "runtime/trace.h"

typedef struct fan_task fan__task;
typedef struct fan__rt fan__rt;

/* Something a request waits on or owns that must end before the request's
 * memory is freed: an upstream call, a timer, a child task, a write.
 * `cancel` (may be NULL) asks it to end soon; it must then call
 * fan__op_end(). `owner` is the task that started it (NULL for the
 * request's own: writes); cancelling a task cancels the ops it
 * owns. */
typedef struct fan__op {
    fan__list link;
    void (*cancel)(struct fan__op *op);
    fan__task *owner;
    unsigned long long cancel_epoch; /* the cancel_ops() walk that reached it */
} fan__op;

typedef struct fan__defer {
    void (*fn)(void *);
    void *arg;
    struct fan__defer *next;
} fan__defer;

/* What a suspended task waits for: it is resumed when ready(rq, arg) holds
 * or the task is cancelled. */
typedef int (*fan__ready_fn)(fan_req *rq, void *arg);

/* A coroutine of a request: the handler itself (the request's main task) or
 * a child started with fan_spawn(). Each task owns the calls and children it
 * starts; when its function returns, those still running are cancelled, and
 * the task ends (its coroutine's stack is released, its result visible) only
 * once the last of its children ended: a child may hold pointers into its
 * parent's frame. */
struct fan_task {
    fan_req *rq;
    fan__task *parent;        /* NULL for the main task */
    fan__coro *co;            /* while the function runs */
    fan__op op;               /* a child task is an op of its parent */
    fan__list link;           /* the request's tasks while it has a coroutine */
    fan__list children;       /* child tasks, in start order */
    fan__list child_link;
    fan__list done_children;  /* finished, not returned by fan_task_await_any */
    fan__list done_link;
    int (*fn)(fan_req *rq, void *arg);
    void *arg;
    int result;               /* 1 until the task ended, then the function's result */
    int fn_result;            /* what the function returned, kept until the task ends */
    unsigned children_running; /* children that have not ended */
    unsigned holds;           /* wakers not woken yet (waker.c): the memory
                               * libuv writes may be on this stack, so the task does not
                               * end before they are */
    fan__defer *defers;       /* fan_task_defer(): run when the task ends, last first */
    fan__task *joining;       /* the task fan_task_await() waits for to end after
                               * cancelling it, to refuse a circle of such waits */
    int cancelled;            /* 0, or why: FAN_ECANCELED / FAN_ETIMEDOUT */
    bool returned : 1;        /* the function returned; the task ends once its last
                               * child did, and only then is its stack released */
    bool waiting : 1;
    bool shielded : 1;        /* this wait ignores cancellation */
    fan__ready_fn ready;
    void *ready_arg;
    void *timeout;            /* fan_task_set_timeout()'s timer op */
    fan__list calls;          /* calls this task started, in start order */
    fan__list completed;      /* finished calls not returned by fan_call_await_any */
    unsigned calls_running;
};

/* What the layer that made a request is told of it. */
typedef struct fan__rt_hooks {
    /* The main task's function returned, before what it left running is
     * cancelled (the server answers if the handler did not). */
    void (*returned)(fan_req *rq);
    /* Every task and op ended: the owner releases the request with
     * fan__rt_release(). */
    void (*finished)(fan_req *rq);
    /* "GET /route", for log lines about the request. */
    const char *(*describe)(const fan_req *rq);
} fan__rt_hooks;

/* A request as the runtime sees it: the first member of struct fan_req. */
struct fan__rt {
    fan__arena arena;
    const fan_limits *limits;   /* the app's, for the client and the stacks */
    const struct fan__upstreams *upstreams; /* the app's, for the client (opaque here) */
    const fan__rt_hooks *hooks;
    fan__task main;             /* the handler's task */
    struct fan__coro *home;     /* the main task's coroutine, taken with the
                                 * request, whose top holds the arena's first
                                 * chunk; NULL for none (fan__rt_new) */
    fan__list tasks;            /* tasks with a coroutine, the main one included */
    int cancelled;              /* 0 or FAN_ETIMEDOUT / FAN_ECANCELED */
    int handler_done;           /* no main task runs (it returned, or never ran) */
    int busy;                   /* settle() must neither resume nor free now */
    unsigned long long cancel_epoch;
    fan__list ops;              /* live fan__op */
    unsigned nops;
    fan__defer *defers;         /* fan_defer(), run when the request is released */
    fan__timeout deadline;      /* the site's, or fan_req_set_deadline()'s (timers.c) */
    unsigned ncalls, ncalls_failed; /* upstream calls finished, failed */
    unsigned obs;               /* FAN__OBS_* the request's app observes */
    fan__trace trace;           /* its trace context, when obs has FAN__OBS_TRACE */
    fan__list call_recs;        /* fan__call_rec of its calls, in start order */
};

static inline fan__rt *fan__rt_of(fan_req *rq)
{
    return (fan__rt *)(void *)rq;
}

static inline const fan__rt *fan__rt_of_const(const fan_req *rq)
{
    return (const fan__rt *)(const void *)rq;
}

static inline fan__arena *fan__req_arena(fan_req *rq)
{
    return &fan__rt_of(rq)->arena;
}

/* ------------------------------------------------------------------------ */
/* The worker (worker.c)                                                    */
/* ------------------------------------------------------------------------ */

/* This thread's loop, created on first use. Never NULL. */
uv_loop_t *fan__loop(void);

/* Whether this thread's loop exists already. */
int fan__loop_exists(void);

/* Requests of this thread not released yet, counted by fan__rt_new() and
 * fan__rt_free(). */
size_t fan__live_requests(void);
void fan__worker_request_born(void);
void fan__worker_request_gone(void);

/* A close callback that frees the handle's data: for handles whose data is
 * the malloc'd struct they live in. */
void fan__free_handle_data(uv_handle_t *h);

/* Writes `bufs`: at once if the socket takes them all (returns 1, cb is
 * not called), else the rest through uv_write (returns 0, cb is called), or
 * a negative libuv error. `bufs` may be modified. (stream.c) */
int fan__stream_write(uv_stream_t *s, uv_write_t *w, uv_buf_t *bufs, unsigned nbufs,
                      uv_write_cb cb);

/* The first half of fan__stream_write(), for a caller that makes its
 * uv_write_t only when one is needed: writes what the socket takes at once.
 * Returns 1 when it took everything, 0 when bytes are left (bufs[*rest] is
 * then the first buffer with bytes left, advanced past what was written),
 * or a negative libuv error. */
int fan__stream_try(uv_stream_t *s, uv_buf_t *bufs, unsigned nbufs, unsigned *rest);

/* ------------------------------------------------------------------------ */
/* Requests and their tasks (request.c)                                     */
/* ------------------------------------------------------------------------ */

/* Makes a request: `size` zeroed bytes (a struct whose first member is its
 * fan__rt) in a new arena, the runtime part prepared. `limits` and
 * `upstreams` (the client's settings, may be NULL) are the app's and must
 * outlive the request. With `home`, the coroutine its handler will run on
 * is taken now, and the arena's first chunk is that coroutine's top
 * (FAN__CORO_TOP): a request waiting on its calls then holds its stack's
 * first page and little else. It goes back with the arena, after the
 * handler's task ended. NULL when out of memory. */
fan_req *fan__rt_new(size_t size, int home, const fan_limits *limits,
                     const struct fan__upstreams *upstreams, const fan__rt_hooks *hooks);

/* From fan__rt_hooks.finished only: fan__rt_run_defers() runs the deferred
 * cleanups (last registered first), then fan__rt_free() frees the arena,
 * and with it the request, and gives back its home coroutine. */
void fan__rt_run_defers(fan_req *rq);
void fan__rt_free(fan_req *rq);

/* Starts the main task running handler(rq) on a coroutine, with the
 * request's deadline when `deadline_ms` is not 0. Returns 0 or FAN_ENOMEM.
 * Either way, fan__req_notify() must follow. */
int fan__rt_run(fan_req *rq, void (*handler)(void *rq), unsigned deadline_ms);

/* Sets the request's deadline `ms` from now (timers.c): a timeout
 * (timeouts.h), so requests given the same duration queue behind one timer
 * in the order they started. Returns 0, or FAN_ENOMEM when the thread's
 * first deadline of this duration finds no memory for its queue. It is
 * unset when the handler returns, the request is cancelled or freed. */
int fan__deadline_start(fan_req *rq, unsigned ms);

/* "GET /route" (the describe hook's), for log lines. Never NULL. */
const char *fan__req_name(const fan_req *rq);

void fan__op_begin(fan_req *rq, fan__op *op, fan__task *owner);
void fan__op_end(fan_req *rq, fan__op *op);

/* The running task of `rq`; its main task when called from the loop. */
fan__task *fan__task_of(fan_req *rq);

/* Suspends the running task until ready(rq, arg) or its cancellation.
 * Returns 0, or FAN_ECANCELED when the task is cancelled. Must run in one of
 * the request's coroutines. */
int fan__req_wait(fan_req *rq, fan__ready_fn ready, void *arg);

/* The same, but cancellation does not end the wait: for waits whose
 * memory must outlive them (work on another thread). Returns FAN_ECANCELED
 * if the task was cancelled meanwhile, once ready. */
int fan__req_wait_shielded(fan_req *rq, fan__ready_fn ready, void *arg);

/* Resumes every task whose wait is over, and finishes the request once its
 * handler returned and every op ended. Call after anything a task may wait
 * for changed. */
void fan__req_notify(fan_req *rq);

/* Cancels the request (its main task and so everything it runs). */
void fan__req_cancel(fan_req *rq, int reason);

/* Cancels a task, the ops it owns and its children (recursively), waking
 * them with FAN_ECANCELED. */
void fan__task_cancel(fan__task *t, int reason);

/* A hold on the task's stack ended (a waker was woken): ends the task if its
 * function returned and nothing else keeps it (request.c). */
void fan__task_release(fan__task *t);

/* Runs the task's fan_task_defer() cleanups, last registered first
 * (waker.c). Called when the task ends, before its stack is
 * released and its parent told. */
void fan__task_run_defers(fan__task *t);

/* Prepares a task: lists, state. */
void fan__task_init(fan__task *t, fan_req *rq, fan__task *parent);

/* Starts a prepared task's coroutine running fn(arg) with `entry`. Returns 0
 * or FAN_ENOMEM. The task runs at the next settle. */
int fan__task_start(fan__task *t, void (*entry)(void *), void *arg);

/* jansson's json_loadb(), json_dumpb(), json_dumps() and json_decref(), run on the loop's
 * stack when called from a coroutine (json.c): their recursion, one frame
 * per level of nesting, does not fit a coroutine's stack. Use them for
 * every parse of input and every write of a handler's value. */
json_t *fan__json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);
size_t fan__json_dumpb(const json_t *json, char *buf, size_t size, size_t flags);
char *fan__json_dumps(const json_t *json, size_t flags);
void fan__json_decref(json_t *json);

/* Puts in jansson's allocation functions that fan__json_loadb_arena() needs
 * (json.c); once per process, before any thread parses. */
void fan__json_install(void);

/* fan__json_loadb() of a value that never leaves fanout, into arena `a`: no
 * json_decref() is due, the arena holds it. *in_arena is 0 when the program
 * replaced jansson's allocation functions after fan__json_install(): the
 * value is then an ordinary one, which the caller must json_decref(). */
json_t *fan__json_loadb_arena(fan__arena *a, const char *buf, size_t len, int *in_arena);

#endif
