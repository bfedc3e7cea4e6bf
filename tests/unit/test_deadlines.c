/* The request's deadline (runtime/timers.c, a timeout of
 * runtime/timeouts.c): requests given the site's are each cancelled when
 * their own deadline passes, in turn, from one timer; a shorter one than
 * the last passes first; a handler's own deadline replaces the site's; a
 * request that ends leaves the queue, and an empty queue does not keep the
 * loop running. Real requests of the runtime, on a real libuv loop; times
 * are held as ratios of the deadlines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/runtime.h"

/* The runtime sees a request as its fan__rt; the rest is this test's. */
struct fan_req {
    fan__rt rt;
    unsigned sleep_ms;   /* what the handler sleeps */
    unsigned own_ms;     /* a deadline the handler sets itself, if not 0 */
    double started, ended;
    int slept, cancelled; /* fan_sleep()'s result, fan_cancelled() after it */
    int *freed;
    int slot;             /* where its outcome goes in outcomes[] */
};

static void handler(void *arg)
{
    fan_req *rq = arg;
    if (rq->own_ms)
        assert_int_equal(fan_req_set_deadline(rq, rq->own_ms), 0);
    rq->slept = fan_sleep(rq, rq->sleep_ms);
    rq->cancelled = fan_cancelled(rq);
    rq->ended = fan_now();
}

static void returned(fan_req *rq)
{
    (void)rq;
}

/* The outcome of one request, copied out before the runtime frees it. */
typedef struct outcome {
    double took; /* seconds from its start to its handler's end */
    int slept, cancelled;
} outcome;

static outcome outcomes[8];

static void finished(fan_req *rq)
{
    outcomes[rq->slot] = (outcome){rq->ended - rq->started, rq->slept, rq->cancelled};
    (*rq->freed)++;
    fan__rt_run_defers(rq);
    fan__rt_free(rq);
}

static const char *describe(const fan_req *rq)
{
    (void)rq;
    return "a test request";
}

static const fan__rt_hooks hooks = {returned, finished, describe};
static const fan_limits limits = {.stack_size = 64 * 1024};

/* Starts a request whose handler sleeps `sleep_ms`, with the site's
 * deadline `deadline_ms` (and its own `own_ms`, if not 0); its outcome goes
 * to outcomes[slot]. */
static void start(unsigned sleep_ms, unsigned deadline_ms, unsigned own_ms, int *freed, int slot)
{
    fan_req *rq = fan__rt_new(sizeof *rq, 1, &limits, NULL, &hooks);
    assert_non_null(rq);
    rq->sleep_ms = sleep_ms;
    rq->own_ms = own_ms;
    rq->freed = freed;
    rq->slot = slot;
    rq->started = fan_now();
    assert_int_equal(fan__rt_run(rq, handler, deadline_ms), 0);
    fan__req_notify(rq);
}

/* ---- staggered starts: one request every STAGGER_MS --------------------- */

#define DEADLINE_MS 100
#define STAGGER_MS 50
#define STAGGERED 4

static int staggered_freed, staggered_started;

static void start_next(uv_timer_t *t)
{
    start(10000, DEADLINE_MS, 0, &staggered_freed, staggered_started);
    if (++staggered_started == STAGGERED)
        uv_close((uv_handle_t *)t, NULL);
}

static void each_request_is_cancelled_at_its_own_deadline(void **state)
{
    (void)state;
    staggered_freed = staggered_started = 0;
    uv_timer_t t;
    uv_timer_init(fan__loop(), &t);
    uv_timer_start(&t, start_next, 0, STAGGER_MS);
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(staggered_freed, STAGGERED);
    for (int i = 0; i < STAGGERED; i++) {
        assert_int_equal(outcomes[i].slept, FAN_ECANCELED);
        assert_int_equal(outcomes[i].cancelled, FAN_ETIMEDOUT);
        /* Not at the first one's deadline, nor at the last one's: its own. */
        double ratio = outcomes[i].took / (DEADLINE_MS / 1000.0);
        assert_true(ratio >= 0.95);
        assert_true(ratio < 1.0 + (double)STAGGER_MS / DEADLINE_MS);
    }
}

/* ---- a shorter deadline after a longer one ------------------------------ */

static void a_shorter_deadline_than_the_queues_last_passes_first(void **state)
{
    (void)state;
    int freed = 0;
    start(10000, 4 * DEADLINE_MS, 0, &freed, 0);
    start(10000, DEADLINE_MS, 0, &freed, 1);
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(freed, 2);
    assert_int_equal(outcomes[0].cancelled, FAN_ETIMEDOUT);
    assert_int_equal(outcomes[1].cancelled, FAN_ETIMEDOUT);
    assert_true(outcomes[0].took / (4 * DEADLINE_MS / 1000.0) >= 0.95);
    double ratio = outcomes[1].took / (DEADLINE_MS / 1000.0);
    assert_true(ratio >= 0.95 && ratio < 2.0);
}

/* ---- leaving the queue ---------------------------------------------------- */

static void a_request_that_ends_first_leaves_no_timer_running(void **state)
{
    (void)state;
    int freed = 0;
    double t0 = fan_now();
    start(DEADLINE_MS / 4, 20 * DEADLINE_MS, 0, &freed, 0);
    uv_run(fan__loop(), UV_RUN_DEFAULT); /* returns once nothing is active */
    double took = fan_now() - t0;
    assert_int_equal(freed, 1);
    assert_int_equal(outcomes[0].slept, 0);
    assert_int_equal(outcomes[0].cancelled, 0);
    /* The loop did not wait for the deadline of a request that is gone. */
    assert_true(took / (20 * DEADLINE_MS / 1000.0) < 0.5);
}

static void a_handlers_own_deadline_replaces_the_sites(void **state)
{
    (void)state;
    int freed = 0;
    start(10000, 20 * DEADLINE_MS, DEADLINE_MS, &freed, 0); /* shorter */
    start(3 * DEADLINE_MS, DEADLINE_MS, 5 * DEADLINE_MS, &freed, 1); /* longer */
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(freed, 2);
    assert_int_equal(outcomes[0].cancelled, FAN_ETIMEDOUT);
    double ratio = outcomes[0].took / (DEADLINE_MS / 1000.0);
    assert_true(ratio >= 0.95 && ratio < 5.0);
    /* Its own 5 deadlines' worth let its 3-deadline sleep end. */
    assert_int_equal(outcomes[1].slept, 0);
    assert_int_equal(outcomes[1].cancelled, 0);
}

static int teardown(void **state)
{
    (void)state;
    fan__timeouts_shutdown();
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(each_request_is_cancelled_at_its_own_deadline, teardown),
        cmocka_unit_test_teardown(a_shorter_deadline_than_the_queues_last_passes_first, teardown),
        cmocka_unit_test_teardown(a_request_that_ends_first_leaves_no_timer_running, teardown),
        cmocka_unit_test_teardown(a_handlers_own_deadline_replaces_the_sites, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
