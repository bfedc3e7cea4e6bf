/* A test application for wakers (awaiting libuv clients through
 * fan_waker_new(), fan_suspend() and fan_wake()) and per-task cleanups
 * (fan_task_defer()). Written only against fanout.h and uv.h. Its counters
 * (GET /counters) are per process: run it with --workers 0. */
#include <stdlib.h>
#include <string.h>

#include <fanout.h>
#include <uv.h>

static struct {
    long cancels;     /* on_cancel calls */
    long fired;       /* timers that fired */
    long closed;      /* timer handles closed */
    long task_defers; /* fan_task_defer() cleanups run */
} counters;

/* A uv timer in the caller's frame, awaited through a waker. The waker is
 * woken from the handle's close callback, once libuv no longer uses the
 * handle's memory: when the timer fired, or when on_cancel closed it (which
 * stops it). */
typedef struct timer_wait {
    uv_timer_t timer;
    fan_waker *w;
    int fired;
} timer_wait;

static void timer_closed(uv_handle_t *h)
{
    timer_wait *tw = h->data;
    counters.closed++;
    fan_wake(tw->w);
}

static void timer_fired(uv_timer_t *t)
{
    timer_wait *tw = t->data;
    tw->fired = 1;
    counters.fired++;
    uv_close((uv_handle_t *)t, timer_closed);
}

static void timer_cancel(void *arg)
{
    timer_wait *tw = arg;
    counters.cancels++;
    if (!uv_is_closing((uv_handle_t *)&tw->timer)) /* it may have fired already */
        uv_close((uv_handle_t *)&tw->timer, timer_closed);
}

/* Waits `ms` on a uv timer. Returns fan_suspend()'s result; *fired (if not
 * NULL) tells whether the timer fired. */
static int uv_wait_ms(fan_req *rq, unsigned ms, int *fired)
{
    timer_wait tw = {.fired = 0};
    tw.w = fan_waker_new(rq, timer_cancel, &tw);
    if (!tw.w)
        return FAN_ENOMEM;
    uv_timer_init(fan_loop(), &tw.timer);
    tw.timer.data = &tw;
    uv_timer_start(&tw.timer, timer_fired, ms, 0);
    int rc = fan_suspend(rq, tw.w);
    if (fired)
        *fired = tw.fired;
    return rc;
}

static unsigned query_ms(fan_req *rq, long def)
{
    return (unsigned)fan_req_query_long(rq, "ms", def, NULL);
}

/* GET /timer[/:tag]?ms=N: awaits a uv timer of N ms. */
static void timer(fan_req *rq)
{
    int fired = 0;
    double t0 = fan_now();
    int rc = uv_wait_ms(rq, query_ms(rq, 200), &fired);
    if (rc != 0) {
        int why = fan_cancelled(rq);
        fan_reply_error(rq, why == FAN_ETIMEDOUT ? 504 : 503, fan_errname(why));
        return;
    }
    fan_reply_json(rq, 200, json_pack("{s:b, s:f}", "fired", fired, "elapsed", fan_now() - t0));
}

typedef struct waited {
    unsigned ms;
    int fired;
} waited;

static int wait_task(fan_req *rq, void *arg)
{
    waited *w = arg;
    return uv_wait_ms(rq, w->ms, &w->fired);
}

/* GET /two?ms=N: two child tasks, each suspended on its own uv timer. */
static void two(fan_req *rq)
{
    waited a = {query_ms(rq, 200), 0}, b = a;
    double t0 = fan_now();
    fan_task *t[2] = {fan_spawn(rq, wait_task, &a), fan_spawn(rq, wait_task, &b)};
    int rc = fan_task_gather(rq, t, 2, FAN_GATHER_ALL);
    fan_reply_json(rq, 200,
                   json_pack("{s:s, s:b, s:b, s:f}", "error", fan_errname(rc), "a", a.fired, "b",
                             b.fired, "elapsed", fan_now() - t0));
}

/* A client whose callback runs before the call returns (a cache hit, an
 * error found at once). */
static void immediate_client(void (*cb)(void *arg), void *arg)
{
    cb(arg);
}

static void wake_it(void *arg)
{
    fan_wake(arg);
}

/* GET /early?mode=sync|elsewhere: the waker is woken before fan_suspend():
 *  - sync: by a callback that runs within the call starting the operation;
 *  - elsewhere: by a 20 ms uv timer, while the task sleeps 100 ms.
 * Either way fan_suspend() returns at once. */
static void early(fan_req *rq)
{
    const char *mode = fan_req_query(rq, "mode");
    int rc, fired = 0;
    double waited_s;
    if (mode && strcmp(mode, "elsewhere") == 0) {
        timer_wait tw = {.fired = 0};
        tw.w = fan_waker_new(rq, timer_cancel, &tw);
        if (!tw.w) {
            fan_reply_error(rq, 503, "out of memory");
            return;
        }
        uv_timer_init(fan_loop(), &tw.timer);
        tw.timer.data = &tw;
        uv_timer_start(&tw.timer, timer_fired, 20, 0);
        fan_sleep(rq, 100);
        double t0 = fan_now();
        rc = fan_suspend(rq, tw.w);
        waited_s = fan_now() - t0;
        fired = tw.fired;
    } else {
        fan_waker *w = fan_waker_new(rq, NULL, NULL);
        immediate_client(wake_it, w);
        double t0 = fan_now();
        rc = fan_suspend(rq, w);
        waited_s = fan_now() - t0;
    }
    fan_reply_json(
        rq, 200,
        json_pack("{s:s, s:b, s:f}", "error", fan_errname(rc), "fired", fired, "waited", waited_s));
}

/* A timer on the heap, for a waker nobody suspends on: it frees itself once
 * closed. */
typedef struct loose_timer {
    uv_timer_t timer;
    fan_waker *w;
} loose_timer;

static void loose_closed(uv_handle_t *h)
{
    loose_timer *lt = h->data;
    counters.closed++;
    fan_wake(lt->w);
    free(lt);
}

static void loose_fired(uv_timer_t *t)
{
    counters.fired++;
    uv_close((uv_handle_t *)t, loose_closed);
}

static void loose_cancel(void *arg)
{
    loose_timer *lt = arg;
    counters.cancels++;
    if (!uv_is_closing((uv_handle_t *)&lt->timer))
        uv_close((uv_handle_t *)&lt->timer, loose_closed);
}

/* GET /never/:tag?ms=N: starts an N ms timer with a waker, answers and
 * returns without suspending on it. */
static void never(fan_req *rq)
{
    loose_timer *lt = malloc(sizeof *lt);
    if (!lt || !(lt->w = fan_waker_new(rq, loose_cancel, lt))) {
        free(lt);
        fan_reply_error(rq, 503, "out of memory");
        return;
    }
    uv_timer_init(fan_loop(), &lt->timer);
    lt->timer.data = lt;
    uv_timer_start(&lt->timer, loose_fired, query_ms(rq, 10000), 0);
    fan_reply_printf(rq, 200, "answered");
}

/* GET /forever/:tag: suspends on an operation that never completes; its
 * on_cancel wakes the waker itself (no callback will come). */
static void wake_slot(void *arg)
{
    fan_wake(*(fan_waker **)arg);
}

static void forever(fan_req *rq)
{
    fan_waker *w;
    w = fan_waker_new(rq, wake_slot, &w);
    int rc = fan_suspend(rq, w);
    fan_reply_error(rq, 503, fan_errname(rc));
}

/* Per-task cleanups: each appends its letter to a buffer in the parent's
 * frame, so that the parent sees whether they ran, and in which order,
 * when its await returns. */
typedef struct mark {
    char *order;
    char letter;
} mark;

static void append_mark(void *arg)
{
    mark *m = arg;
    size_t n = strlen(m->order);
    m->order[n] = m->letter;
    m->order[n + 1] = '\0';
    counters.task_defers++;
}

typedef struct acquirer_arg {
    char order[8];
    unsigned ms;
} acquirer_arg;

/* Registers cleanups A, B and C, then waits ms on a uv timer. */
static int acquirer(fan_req *rq, void *arg)
{
    acquirer_arg *a = arg;
    for (char c = 'A'; c <= 'C'; c++) {
        mark *m = fan_alloc(rq, sizeof *m);
        if (!m)
            return FAN_ENOMEM;
        *m = (mark){a->order, c};
        int rc = fan_task_defer(rq, append_mark, m);
        if (rc != 0)
            return rc;
    }
    return uv_wait_ms(rq, a->ms, NULL);
}

/* GET /defer[/:tag]?mode=normal|cancel|wait: a child registers three
 * cleanups and waits on a uv timer: 10 ms (normal), or 10 s and its parent
 * cancels it after 50 ms (cancel) or waits for it (wait: until the client
 * leaves). Answers with the order the cleanups ran in, as seen when the
 * child's await returned. */
static void defer_view(fan_req *rq)
{
    const char *mode = fan_req_query(rq, "mode");
    int cancel = mode && strcmp(mode, "cancel") == 0;
    int normal = !mode || strcmp(mode, "normal") == 0;
    acquirer_arg a = {.order = "", .ms = normal ? 10 : 10000};
    double t0 = fan_now();
    fan_task *t = fan_spawn(rq, acquirer, &a);
    if (cancel) {
        fan_sleep(rq, 50);
        fan_task_cancel(t);
    }
    int rc = fan_task_await(rq, t);
    fan_reply_json(rq, 200,
                   json_pack("{s:s, s:s, s:f}", "order", a.order, "result", fan_errname(rc),
                             "elapsed", fan_now() - t0));
}

static void log_line(void *arg)
{
    fan_log(FAN_LOG_INFO, "%s", (const char *)arg);
}

/* GET /defer-main/:tag: the handler registers a task cleanup and a request
 * cleanup, each logging a line. */
static void defer_main(fan_req *rq)
{
    const char *tag = fan_req_param(rq, "tag");
    fan_task_defer(rq, log_line, fan_sprintf(rq, "task cleanup %s", tag));
    fan_defer(rq, log_line, fan_sprintf(rq, "request cleanup %s", tag));
    fan_reply_printf(rq, 200, "ok");
}

/* Lifetimes: operations that write into the frame of the task that waits
 * for them. */
#define FRAME_BYTES 512

typedef struct late_work {
    uv_work_t work;
    char *buf;
    long ms;
    fan_waker *w;
    int done;
} late_work;

/* On the thread pool: sleeps, then writes the waiting handler's buffer. */
static void late_write(uv_work_t *work)
{
    late_work *lw = work->data;
    uv_sleep((unsigned)lw->ms);
    memset(lw->buf, 'X', FRAME_BYTES);
}

static void late_done(uv_work_t *work, int status)
{
    late_work *lw = work->data;
    (void)status;
    lw->done = 1;
    fan_wake(lw->w);
}

static void late_cancel(void *arg)
{
    counters.cancels++;
    uv_cancel((uv_req_t *)&((late_work *)arg)->work); /* fails once it runs */
}

/* One handler for every mode, so that each request's buffers have the same
 * place in its coroutine's frame:
 *  - leave: starts a ?ms= uv timer in `tw` with a waker, answers and returns
 *    without suspending on it (the timer writes `tw` when it fires);
 *  - work: thread-pool work that writes `buf` after ?ms=, awaited through a
 *    waker whose on_cancel cannot stop it once it runs (the client leaves
 *    meanwhile); logs whether the work had ended when fan_suspend()
 *    returned;
 *  - check: zeroes `tw`, fills `buf`, sleeps ?ms= and answers whether both
 *    are intact. */
static void frame(fan_req *rq)
{
    char buf[FRAME_BYTES];
    timer_wait tw;
    const char *mode = fan_req_query(rq, "mode");
    long ms = fan_req_query_long(rq, "ms", 100, NULL);
    memset(buf, 'v', sizeof buf);
    memset(&tw, 0, sizeof tw);
    if (mode && strcmp(mode, "leave") == 0) {
        tw.w = fan_waker_new(rq, NULL, NULL);
        uv_timer_init(fan_loop(), &tw.timer);
        tw.timer.data = &tw;
        uv_timer_start(&tw.timer, timer_fired, (uint64_t)ms, 0);
        fan_reply_printf(rq, 200, "answered");
    } else if (mode && strcmp(mode, "work") == 0) {
        late_work lw = {.buf = buf, .ms = ms};
        lw.work.data = &lw;
        lw.w = fan_waker_new(rq, late_cancel, &lw);
        uv_queue_work(fan_loop(), &lw.work, late_write, late_done);
        int rc = fan_suspend(rq, lw.w);
        fan_log(FAN_LOG_INFO, "frame work: %s, the work %s", fan_errname(rc),
                lw.done ? "had ended" : "still ran");
        fan_reply_printf(rq, 200, "%s", fan_errname(rc));
    } else {
        fan_sleep(rq, (unsigned)ms);
        size_t bad = 0;
        for (size_t i = 0; i < sizeof buf; i++)
            bad += buf[i] != 'v';
        for (size_t i = 0; i < sizeof tw; i++)
            bad += ((unsigned char *)&tw)[i] != 0;
        fan_reply_json(rq, 200, json_pack("{s:b, s:i}", "intact", bad == 0, "bad", (int)bad));
    }
}

static void counters_view(fan_req *rq)
{
    fan_reply_json(rq, 200,
                   json_pack("{s:I, s:I, s:I, s:I}", "cancels", (json_int_t)counters.cancels,
                             "fired", (json_int_t)counters.fired, "closed",
                             (json_int_t)counters.closed, "task_defers",
                             (json_int_t)counters.task_defers));
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    fan_app_route(app, "GET", "/timer", timer);
    fan_app_route(app, "GET", "/timer/:tag", timer); /* a tag to find in the access log */
    fan_app_route(app, "GET", "/two", two);
    fan_app_route(app, "GET", "/early", early);
    fan_app_route(app, "GET", "/never/:tag", never);
    fan_app_route(app, "GET", "/forever/:tag", forever);
    fan_app_route(app, "GET", "/defer", defer_view);
    fan_app_route(app, "GET", "/defer/:tag", defer_view);
    fan_app_route(app, "GET", "/defer-main/:tag", defer_main);
    fan_app_route(app, "GET", "/frame", frame);
    fan_app_route(app, "GET", "/frame/:tag", frame);
    fan_app_route(app, "GET", "/counters", counters_view);
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
