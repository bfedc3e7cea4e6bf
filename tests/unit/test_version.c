/* The version macros of fanout.h agree with each other. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <fanout.h>

static void version_string_matches_the_numbers(void **state)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FAN_VERSION_MAJOR, FAN_VERSION_MINOR,
             FAN_VERSION_PATCH);
    assert_string_equal(FAN_VERSION, want);
    assert_int_equal(FAN_VERSION_NUM,
                     FAN_VERSION_MAJOR * 10000 + FAN_VERSION_MINOR * 100 + FAN_VERSION_PATCH);
#if FAN_VERSION_NUM < 200
#error "the numeric version must be usable in #if"
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_string_matches_the_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
