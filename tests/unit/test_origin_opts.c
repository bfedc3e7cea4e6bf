/* fan_app_set_origin()'s checks of the retry, budget and breaker settings:
 * what the flag form cannot express (a retry_on list of the caller's) and
 * what it bounds, refused with FAN_EINVAL; sane settings accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "fanout.h"

static int set(const fan_origin_opts *o)
{
    fan_app *app = fan_app_new();
    assert_non_null(app);
    int rc = fan_app_set_origin(app, "http://10.0.0.7:8080", o);
    fan_app_free(app);
    return rc;
}

static void sane_settings_are_accepted(void **state)
{
    (void)state;
    fan_origin_opts o = {.retry = {.max_retries = 10, .retry_on = {500, 429}, .hedge_p95 = 1},
                         .budget_percent = 100,
                         .breaker_error_percent = 100,
                         .breaker_failures = 5};
    assert_int_equal(set(&o), 0);
    fan_origin_opts none = {.retry = {.max_retries = 1, .retry_on = {-1}}};
    assert_int_equal(set(&none), 0);
}

static void out_of_range_settings_are_refused(void **state)
{
    (void)state;
    fan_origin_opts o = {.retry = {.max_retries = 11}};
    assert_int_equal(set(&o), FAN_EINVAL);
    fan_origin_opts budget = {.budget_percent = 101};
    assert_int_equal(set(&budget), FAN_EINVAL);
    fan_origin_opts rate = {.breaker_error_percent = 101};
    assert_int_equal(set(&rate), FAN_EINVAL);
}

static void a_retry_on_entry_must_be_a_status(void **state)
{
    (void)state;
    fan_origin_opts low = {.retry = {.max_retries = 1, .retry_on = {503, 99}}};
    assert_int_equal(set(&low), FAN_EINVAL);
    fan_origin_opts high = {.retry = {.max_retries = 1, .retry_on = {600}}};
    assert_int_equal(set(&high), FAN_EINVAL);
    fan_origin_opts late_none = {.retry = {.max_retries = 1, .retry_on = {503, -1}}};
    assert_int_equal(set(&late_none), FAN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sane_settings_are_accepted),
        cmocka_unit_test(out_of_range_settings_are_refused),
        cmocka_unit_test(a_retry_on_entry_must_be_a_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
