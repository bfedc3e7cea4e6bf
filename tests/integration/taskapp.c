/* A test application for child tasks, the per-request store and offloaded
 * blocking work. Written only against fanout.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fanout.h>

/* Each request stores its own id from a child task, sleeps so that many
 * requests interleave, then answers with what its store holds. */
static int store_id(fan_req *rq, void *arg)
{
    (void)arg;
    const char *id = fan_req_query(rq, "id");
    char *copy = strdup(id ? id : "");
    if (fan_store_set(rq, "id", copy, free) != 0) {
        free(copy);
        return FAN_ENOMEM;
    }
    return fan_sleep(rq, (unsigned)fan_req_query_long(rq, "ms", 50, NULL));
}

static void ids(fan_req *rq)
{
    fan_task *t = fan_spawn(rq, store_id, NULL);
    int rc = fan_task_await(rq, t);
    fan_sleep(rq, 10);
    const char *id = fan_store_get(rq, "id");
    fan_reply_json(rq, rc == 0 ? 200 : 500,
                   json_pack("{s:s?, s:s}", "id", id, "error", fan_errname(rc)));
}

/* A sub-task that awaits two calls in sequence: a token, then the data
 * (the token's value goes into the second URL). */
typedef struct seq {
    const char *base;
    double token, value;
} seq;

static int token_then_data(fan_req *rq, void *arg)
{
    seq *s = arg;
    fan_call *tok = fan_get(rq, "%s/delay?ms=100", s->base);
    int rc = fan_call_await(rq, tok);
    if (rc != 0)
        return rc;
    s->token = fan_call_json_number(tok, "value");
    fan_call *data = fan_get(rq, "%s/delay?ms=100&token=%.6f", s->base, s->token);
    if ((rc = fan_call_await(rq, data)) != 0)
        return rc;
    s->value = fan_call_json_number(data, "value");
    return 0;
}

static int one_call(fan_req *rq, void *arg)
{
    seq *s = arg;
    fan_call *c = fan_get(rq, "%s/delay?ms=200", s->base);
    int rc = fan_call_await(rq, c);
    s->value = rc == 0 ? fan_call_json_number(c, "value") : 0;
    return rc;
}

/* One task awaits a token then data (200 ms in all) while a sibling makes
 * one 200 ms call: together about 200 ms. */
static void sequence(fan_req *rq)
{
    seq a = {.base = fan_req_query(rq, "base")}, b = a;
    double t0 = fan_now();
    fan_task *ta = fan_spawn(rq, token_then_data, &a);
    fan_task *tb = fan_spawn(rq, one_call, &b);
    fan_task *both[] = {ta, tb};
    int rc = fan_task_gather(rq, both, 2, FAN_GATHER_ALL);
    fan_reply_json(rq, rc == 0 ? 200 : 502,
                   json_pack("{s:s, s:f, s:f, s:f}", "error", fan_errname(rc), "token", a.token,
                             "elapsed", fan_now() - t0, "sum", a.value + b.value));
}

typedef struct slow {
    const char *url;
    int result;
} slow;

static int slow_call(fan_req *rq, void *arg)
{
    slow *s = arg;
    s->result = fan_call_await(rq, fan_call_start(rq, s->url, NULL));
    return s->result;
}

static int fail_soon(fan_req *rq, void *arg)
{
    (void)arg;
    fan_sleep(rq, (unsigned)fan_req_query_long(rq, "fail_ms", 100, NULL));
    return FAN_EPROTO;
}

/* n tasks calling ?url= (slow) and one failing after fail_ms, gathered with
 * ?policy=fail_fast or all. */
static void gather_view(fan_req *rq)
{
    long n = fan_req_query_long(rq, "n", 3, NULL);
    const char *policy = fan_req_query(rq, "policy");
    slow *s = fan_alloc(rq, (size_t)n * sizeof *s);
    for (long i = 0; i < n; i++) {
        s[i] = (slow){.url = fan_req_query(rq, "url"), .result = 1};
        fan_spawn(rq, slow_call, &s[i]);
    }
    fan_spawn(rq, fail_soon, NULL);
    double t0 = fan_now();
    int rc = fan_task_gather(rq, NULL, 0,
                        policy && strcmp(policy, "fail_fast") == 0 ? FAN_GATHER_FAIL_FAST
                                                                    : FAN_GATHER_ALL);
    json_t *results = json_array();
    for (long i = 0; i < n; i++)
        json_array_append_new(results, json_string(fan_errname(s[i].result)));
    fan_reply_json(rq, 200, json_pack("{s:s, s:o, s:f}", "error", fan_errname(rc), "results",
                                      results, "elapsed", fan_now() - t0));
}

static int timed(fan_req *rq, void *arg)
{
    int *why = arg;
    int rc = fan_call_await(rq, fan_call_start(rq, fan_req_query(rq, "url"), NULL));
    *why = fan_cancelled(rq);
    return rc;
}

/* A task with its own timeout (?timeout=ms) calling a slow ?url=. */
static void task_timeout(fan_req *rq)
{
    int why = 0;
    fan_task *t = fan_spawn(rq, timed, &why);
    fan_task_set_timeout(t, (unsigned)fan_req_query_long(rq, "timeout", 200, NULL));
    double t0 = fan_now();
    int rc = fan_task_await(rq, t);
    fan_reply_json(rq, 200, json_pack("{s:s, s:s, s:f}", "error", fan_errname(rc), "why",
                                      fan_errname(why), "elapsed", fan_now() - t0));
}

static int nap(fan_req *rq, void *arg)
{
    return fan_sleep(rq, (unsigned)(size_t)arg);
}

/* Tasks sleeping 300, 100 and 200 ms come back in completion order. */
static void as_completed(fan_req *rq)
{
    fan_task *t[3];
    static const unsigned ms[3] = {300, 100, 200};
    for (int i = 0; i < 3; i++)
        t[i] = fan_spawn(rq, nap, (void *)(size_t)ms[i]);
    json_t *order = json_array();
    for (fan_task *done; (done = fan_task_await_any(rq));)
        for (int i = 0; i < 3; i++)
            if (done == t[i])
                json_array_append_new(order, json_integer(ms[i]));
    fan_reply_json(rq, 200, json_pack("{s:o}", "order", order));
}

static void block_for(void *arg)
{
    usleep((useconds_t)(*(long *)arg * 1000));
}

/* Blocking work (a sleeping function) on the thread pool. */
static void blocking(fan_req *rq)
{
    long ms = fan_req_query_long(rq, "ms", 1000, NULL);
    double t0 = fan_now();
    int rc = fan_run_blocking(rq, block_for, &ms);
    fan_reply_json(rq, 200, json_pack("{s:s, s:f}", "error", fan_errname(rc), "elapsed",
                                      fan_now() - t0));
}

/* Lifetimes: children that hold a pointer into their parent's frame. */
#define FRAME_BYTES 512

typedef struct frame_ref {
    char *buf;
    long ms;
} frame_ref;

/* Runs `ms` of blocking work (which waits for its function even when the
 * task is cancelled), then writes its parent's buffer: the write a
 * structured lifetime must keep inside the parent's frame. */
static int late_writer(fan_req *rq, void *arg)
{
    frame_ref *ref = arg;
    fan_run_blocking(rq, block_for, &ref->ms);
    memset(ref->buf, 'X', FRAME_BYTES);
    return FAN_EPROTO; /* fails, so that a fail-fast gather gives up at once */
}

/* One handler for every mode, so that each request's buffer has the same
 * place in its coroutine's frame:
 *  - spawn: starts a late writer into `buf`, lets it start, answers and
 *    returns while it still runs;
 *  - gather, await, any: starts two late writers into `buf` and waits for
 *    them with fan_task_gather(), fan_task_await() or fan_task_await_any() (the
 *    client goes away meanwhile);
 *  - check: fills `buf`, sleeps ?ms= and answers whether it is intact. */
static void frame(fan_req *rq)
{
    char buf[FRAME_BYTES];
    const char *mode = fan_req_query(rq, "mode");
    long ms = fan_req_query_long(rq, "ms", 100, NULL);
    frame_ref ref = {buf, ms};
    memset(buf, 'v', sizeof buf);
    if (!mode || strcmp(mode, "check") == 0) {
        fan_sleep(rq, (unsigned)ms);
        size_t bad = 0;
        for (size_t i = 0; i < sizeof buf; i++)
            bad += buf[i] != 'v';
        fan_reply_json(rq, 200, json_pack("{s:b, s:i}", "intact", bad == 0, "bad", (int)bad));
    } else if (strcmp(mode, "spawn") == 0) {
        fan_spawn(rq, late_writer, &ref);
        fan_sleep(rq, 1); /* the child starts its blocking work */
        fan_reply_printf(rq, 200, "answered");
    } else {
        fan_task *t[2] = {fan_spawn(rq, late_writer, &ref), fan_spawn(rq, late_writer, &ref)};
        int rc = strcmp(mode, "gather") == 0 ? fan_task_gather(rq, t, 2, FAN_GATHER_ALL)
               : strcmp(mode, "await") == 0  ? fan_task_await(rq, t[0])
                                             : (fan_task_await_any(rq) ? 0 : FAN_ECANCELED);
        fan_reply_printf(rq, 200, "%s", fan_errname(rc));
    }
}

/* While a task and a call run, their results say so (FAN_ESTATE, not a
 * value a finished one could have); once they ended, their real results. */
static void running(fan_req *rq)
{
    fan_task *t = fan_spawn(rq, nap, (void *)(size_t)20);
    fan_call *c = fan_call_start(rq, fan_req_query(rq, "url"), NULL);
    int task_before = fan_task_result(t), call_before = fan_call_error(c);
    int done_before = fan_task_done(t) || fan_call_done(c);
    fan_task_await(rq, t);
    fan_call_await(rq, c);
    fan_reply_json(rq, 200, json_pack("{s:s, s:s, s:b, s:s, s:s}", "task_before",
                                      fan_errname(task_before), "call_before",
                                      fan_errname(call_before), "done_before", done_before,
                                      "task_after", fan_errname(fan_task_result(t)),
                                      "call_after", fan_errname(fan_call_error(c))));
}

static void quick(fan_req *rq)
{
    fan_reply_printf(rq, 200, "ok");
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    fan_app_route(app, "GET", "/ids", ids);
    fan_app_route(app, "GET", "/sequence", sequence);
    fan_app_route(app, "GET", "/gather", gather_view);
    fan_app_route(app, "GET", "/task-timeout", task_timeout);
    fan_app_route(app, "GET", "/as-completed", as_completed);
    fan_app_route(app, "GET", "/blocking", blocking);
    fan_app_route(app, "GET", "/quick", quick);
    fan_app_route(app, "GET", "/running", running);
    fan_app_route(app, "GET", "/frame", frame);
    fan_app_route(app, "GET", "/frame/:tag", frame); /* a tag to find in the access log */
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
