/* Redis URLs: redis://[user[:password]@]host[:port][/db], and the form
 * logs show, which never holds the password. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "redis/redis.h"

static void a_full_url_gives_every_part_and_hides_the_password(void **state)
{
    fan__redis_url u;
    char why[160];
    assert_int_equal(
        fan__redis_url_parse("redis://svc:p%40ss:w@10.0.0.5:6380/3", &u, why, sizeof why), 0);
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "svc");
    assert_string_equal(u.pass, "p@ss:w");
    assert_string_equal(u.shown, "redis://svc:***@10.0.0.5:6380/3");
    assert_null(strstr(u.shown, "p@ss"));
}

static void defaults_are_port_6379_and_database_0(void **state)
{
    fan__redis_url u;
    char why[160];
    assert_int_equal(fan__redis_url_parse("redis://localhost", &u, why, sizeof why), 0);
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.shown, "redis://localhost:6379/0");
    assert_int_equal(fan__redis_url_parse("redis://:only-pw@[::1]:7000/", &u, why, sizeof why), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.user, "");
    assert_string_equal(u.pass, "only-pw");
    assert_string_equal(u.shown, "redis://:***@[::1]:7000/0");
}

static void bad_urls_are_refused_with_a_reason(void **state)
{
    static const char *const bad[] = {
        "http://h",    "redis://",        "redis://h:0",     "redis://h:65536", "redis://h:x",
        "redis://h/x", "redis://h/1?x=1", "redis://u:%zz@h", "redis://[::1",    "redis://h:6379/-1",
        NULL,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fan__redis_url u;
        char why[160] = "";
        assert_int_equal(fan__redis_url_parse(bad[i], &u, why, sizeof why), FAN_EINVAL);
        assert_true(why[0] != '\0');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_full_url_gives_every_part_and_hides_the_password),
        cmocka_unit_test(defaults_are_port_6379_and_database_0),
        cmocka_unit_test(bad_urls_are_refused_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
