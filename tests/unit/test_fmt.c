/* The hot-path formatter (core/fmt.c) against vsnprintf, and the arena's
 * in-place formatting that uses it. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "core/fmt.h"

/* Formats with both and returns fan__fmt's result; when it formats, its text
 * must be vsnprintf's. */
static int both(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = fan__fmt(out, cap, fmt, ap);
    char want[512];
    int m = vsnprintf(want, sizeof want, fmt, ap2);
    va_end(ap2);
    va_end(ap);
    if (n >= 0) {
        assert_int_equal(n, m);
        assert_string_equal(out, want);
    }
    return n;
}

static void common_conversions_match_vsnprintf(void **state)
{
    char out[256];
    assert_int_equal(both(out, sizeof out, "%s/delay?ms=%.*s", "http://127.0.0.1:9001", 3, "200,100"), 34);
    assert_true(both(out, sizeof out, "") == 0);
    assert_true(both(out, sizeof out, "100%% %c%c", 'o', 'k') >= 0);
    assert_true(both(out, sizeof out, "%d %i %u", INT_MIN, -7, UINT_MAX) >= 0);
    assert_true(both(out, sizeof out, "%ld %lu", LONG_MIN, ULONG_MAX) >= 0);
    assert_true(both(out, sizeof out, "%lld %llu", LLONG_MIN, ULLONG_MAX) >= 0);
    assert_true(both(out, sizeof out, "%zu %zd %jd %ju", SIZE_MAX, (ptrdiff_t)-3, INTMAX_MIN,
                     UINTMAX_MAX) >= 0);
    assert_true(both(out, sizeof out, "[%.*s]", 10, "abc") >= 0); /* precision past the end */
    assert_true(both(out, sizeof out, "[%.*s]", 0, "abc") >= 0);
}

static void other_formats_and_overflow_are_left_to_vsnprintf(void **state)
{
    char out[16];
    assert_int_equal(both(out, sizeof out, "%5d", 1), -1);
    assert_int_equal(both(out, sizeof out, "%x", 255), -1);
    assert_int_equal(both(out, sizeof out, "%f", 1.5), -1);
    assert_int_equal(both(out, sizeof out, "%hd", 1), -1);
    assert_int_equal(both(out, sizeof out, "%s", (char *)NULL), -1);
    assert_int_equal(both(out, sizeof out, "%", 1), -1);
    assert_int_equal(both(out, sizeof out, "0123456789abcdef"), -1); /* 16 + NUL > 16 */
    assert_int_equal(both(out, sizeof out, "0123456789abcde"), 15);
    assert_int_equal(both(out, 0, "x"), -1);
}

static void put_uint_writes_decimal(void **state)
{
    char out[32];
    *fan__put_uint(out, 0) = '\0';
    assert_string_equal(out, "0");
    *fan__put_uint(out, ULLONG_MAX) = '\0';
    assert_string_equal(out, "18446744073709551615");
}

static char *arena_printf(fan__arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = fan__arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return s;
}

static void arena_formats_in_place_or_falls_back(void **state)
{
    fan__arena a;
    fan__arena_init(&a);
    char *first = arena_printf(&a, "%s-%d", "a", 1); /* no chunk yet: vsnprintf path */
    assert_string_equal(first, "a-1");
    char *second = arena_printf(&a, "%s-%zu", "b", (size_t)2); /* in place */
    assert_string_equal(second, "b-2");
    assert_string_equal(arena_printf(&a, "%05.1f", 2.25), "002.2");
    /* Longer than what is left in the chunk: formatted elsewhere, whole. */
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 4; i++)
        assert_int_equal(strlen(arena_printf(&a, "%s%d", big, i)), sizeof big);
    assert_string_equal(first, "a-1"); /* earlier strings untouched */
    assert_string_equal(second, "b-2");
    size_t room;
    char *at = fan__arena_room(&a, &room);
    if (room)
        assert_ptr_equal(fan__arena_alloc(&a, room), at);
    fan__arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(common_conversions_match_vsnprintf),
        cmocka_unit_test(other_formats_and_overflow_are_left_to_vsnprintf),
        cmocka_unit_test(put_uint_writes_decimal),
        cmocka_unit_test(arena_formats_in_place_or_falls_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
