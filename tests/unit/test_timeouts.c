/* Timeouts without handles (runtime/timeouts.c), on a real libuv loop: each
 * passes at its own time, whatever order they were set in and whichever
 * queue they share; stopping the first re-arms for the next, stopping the
 * last lets the loop end, and a queue emptied and filled again keeps each
 * entry's time; a callback may free its timeout's owner and set
 * timeouts, one due at once included, without starving the loop. Times
 * are held as ratios of the durations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "runtime/runtime.h"

#define MS 40

typedef struct owner {
    fan__timeout t;
    double set_at, fired_at;
    int order;    /* when it fired among the others, from 1 */
    int again;    /* times to set itself again at 0 ms */
    int fired;
    int free_me;  /* frees itself in its callback */
} owner;

static int fired_count;

static void fired(fan__timeout *t)
{
    owner *o = fan__container_of(t, owner, t);
    assert_false(fan__timeout_is_set(t));
    o->fired++;
    o->order = ++fired_count;
    o->fired_at = fan_now();
    if (o->again > 0) {
        o->again--;
        assert_int_equal(fan__timeout_start(t, 0, 0, fired), 0);
    }
    if (o->free_me)
        free(o);
}

/* A second kind: its own queues even for the same durations. */
static void fired_other(fan__timeout *t)
{
    fired(t);
}

static void set(owner *o, unsigned ms, unsigned group, fan__timeout_fn fn)
{
    fan__timeout_init(&o->t);
    o->set_at = fan_now();
    assert_int_equal(fan__timeout_start(&o->t, ms, group, fn), 0);
    assert_true(fan__timeout_is_set(&o->t));
}

static double took(const owner *o, unsigned ms)
{
    return (o->fired_at - o->set_at) / (ms / 1000.0);
}

static int setup(void **state)
{
    (void)state;
    fired_count = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fan__timeouts_shutdown();
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    return 0;
}

static void each_passes_at_its_own_time_in_any_order(void **state)
{
    (void)state;
    owner a = {0}, b = {0}, c = {0}, d = {0};
    /* One group set out of order (less time than the last: placed from the
     * tail), another group, another kind with the same duration. */
    set(&a, 3 * MS, 3 * MS, fired);
    set(&b, 1 * MS, 3 * MS, fired);
    set(&c, 2 * MS, 2 * MS, fired);
    set(&d, 4 * MS, 3 * MS, fired_other);
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(b.order, 1);
    assert_int_equal(c.order, 2);
    assert_int_equal(a.order, 3);
    assert_int_equal(d.order, 4);
    assert_true(took(&b, 1 * MS) >= 0.95 && took(&b, 1 * MS) < 2.0);
    assert_true(took(&c, 2 * MS) >= 0.95);
    assert_true(took(&a, 3 * MS) >= 0.95);
    assert_true(took(&d, 4 * MS) >= 0.95);
    assert_int_equal(a.fired + b.fired + c.fired + d.fired, 4);
}

static void stopping_the_first_leaves_the_next_at_its_time(void **state)
{
    (void)state;
    owner a = {0}, b = {0};
    set(&a, 1 * MS, 1 * MS, fired);
    set(&b, 3 * MS, 1 * MS, fired);
    fan__timeout_stop(&a.t);
    fan__timeout_stop(&a.t); /* twice is harmless */
    assert_false(fan__timeout_is_set(&a.t));
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(a.fired, 0);
    assert_int_equal(b.fired, 1);
    assert_true(took(&b, 3 * MS) >= 0.95); /* not at the first one's time */
}

static void stopping_the_last_lets_the_loop_end(void **state)
{
    (void)state;
    owner a = {0}, b = {0};
    set(&a, 50 * MS, 50 * MS, fired);
    set(&b, 60 * MS, 50 * MS, fired);
    fan__timeout_stop(&b.t); /* not the first */
    fan__timeout_stop(&a.t); /* the queue is empty now */
    double t0 = fan_now();
    uv_run(fan__loop(), UV_RUN_DEFAULT); /* returns once nothing is active */
    assert_true((fan_now() - t0) / (50 * MS / 1000.0) < 0.5);
    assert_int_equal(a.fired + b.fired, 0);
}

static void a_queue_emptied_and_filled_again_keeps_each_time(void **state)
{
    (void)state;
    /* An emptied queue's timer stays armed (unreferenced) for the entry
     * that left: a later entry waits for its own time, an earlier one
     * re-arms it. */
    owner a = {0}, b = {0}, c = {0}, d = {0};
    set(&a, 1 * MS, 7, fired);
    fan__timeout_stop(&a.t);
    set(&b, 3 * MS, 7, fired); /* after the armed time */
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(a.fired, 0);
    assert_int_equal(b.fired, 1);
    assert_true(took(&b, 3 * MS) >= 0.95);
    set(&c, 4 * MS, 8, fired);
    fan__timeout_stop(&c.t);
    set(&d, 1 * MS, 8, fired); /* before it */
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(c.fired, 0);
    assert_int_equal(d.fired, 1);
    assert_true(took(&d, 1 * MS) >= 0.95 && took(&d, 1 * MS) < 2.5);
}

static void setting_again_moves_it(void **state)
{
    (void)state;
    owner a = {0}, b = {0};
    set(&a, 1 * MS, 2 * MS, fired);
    set(&b, 2 * MS, 2 * MS, fired);
    assert_int_equal(fan__timeout_start(&a.t, 3 * MS, 2 * MS, fired), 0); /* later now */
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(b.order, 1);
    assert_int_equal(a.order, 2);
    assert_int_equal(a.fired, 1); /* once: the first setting is gone */
    assert_true(took(&a, 3 * MS) >= 0.95);
}

static void a_callback_may_free_its_owner(void **state)
{
    (void)state;
    /* Under AddressSanitizer, a queue that touched an entry after its
     * callback would be a use after free. */
    for (int i = 0; i < 3; i++) {
        owner *o = calloc(1, sizeof *o);
        assert_non_null(o);
        o->free_me = 1;
        set(o, MS / 4, MS / 4, fired);
    }
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(fired_count, 3);
}

static void one_set_at_once_from_its_callback_lets_the_loop_go_on(void **state)
{
    (void)state;
    owner a = {0};
    a.again = 50;
    set(&a, 0, 0, fired);
    uv_run(fan__loop(), UV_RUN_ONCE);
    /* A timer pass runs before and after the loop's poll: one firing
     * each. A timeout due at once that fired again within the pass would
     * have fired 51 times, and the loop would have done nothing else. */
    assert_true(a.fired >= 1 && a.fired <= 2);
    uv_run(fan__loop(), UV_RUN_DEFAULT);
    assert_int_equal(a.fired, 51);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(each_passes_at_its_own_time_in_any_order, setup, teardown),
        cmocka_unit_test_setup_teardown(stopping_the_first_leaves_the_next_at_its_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stopping_the_last_lets_the_loop_end, setup, teardown),
        cmocka_unit_test_setup_teardown(a_queue_emptied_and_filled_again_keeps_each_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(setting_again_moves_it, setup, teardown),
        cmocka_unit_test_setup_teardown(a_callback_may_free_its_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(one_set_at_once_from_its_callback_lets_the_loop_go_on,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
