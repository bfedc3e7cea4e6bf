/* URL encoding, decoding and query-string lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/url.h"

static void decodes_percent_escapes_and_optionally_plus(void **state)
{
    char a[] = "a%20b+c%2fd";
    assert_int_equal(fan__url_decode(a, strlen(a), 0), 7);
    assert_string_equal(a, "a b+c/d");
    char b[] = "a%20b+c";
    fan__url_decode(b, strlen(b), 1);
    assert_string_equal(b, "a b c");
}

static void rejects_malformed_escapes_and_nul(void **state)
{
    char a[] = "abc%2";
    assert_int_equal(fan__url_decode(a, strlen(a), 0), -1);
    char b[] = "%zz";
    assert_int_equal(fan__url_decode(b, strlen(b), 0), -1);
    char c[] = "a%00b";
    assert_int_equal(fan__url_decode(c, strlen(c), 0), -1);
}

static void query_lookup(void **state)
{
    fan__arena a;
    fan__arena_init(&a);
    const char *qs = "ms=2000&name=x%20y&flag&empty=&plus=1+2&ms=9&k%65y=v";
    assert_string_equal(fan__query_get(&a, qs, "ms"), "2000"); /* the first one */
    assert_string_equal(fan__query_get(&a, qs, "name"), "x y");
    assert_string_equal(fan__query_get(&a, qs, "flag"), "");
    assert_string_equal(fan__query_get(&a, qs, "empty"), "");
    assert_string_equal(fan__query_get(&a, qs, "plus"), "1 2");
    assert_string_equal(fan__query_get(&a, qs, "key"), "v"); /* names are decoded */
    assert_null(fan__query_get(&a, qs, "missing"));
    assert_null(fan__query_get(&a, qs, "m"));
    assert_null(fan__query_get(&a, "bad=%zz", "bad"));
    assert_null(fan__query_get(&a, "", "x"));
    fan__arena_free(&a);
}

static int is_unreserved(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr("-._~", c) != NULL;
}

static void escape_keeps_unreserved_bytes_and_encodes_every_other_in_upper_case_hex(void **state)
{
    fan__arena a;
    fan__arena_init(&a);
    for (int b = 0; b < 256; b++) {
        char in = (char)b, want[4];
        if (b && is_unreserved(b))
            snprintf(want, sizeof want, "%c", b);
        else
            snprintf(want, sizeof want, "%%%02X", b);
        assert_string_equal(fan__url_escape(&a, &in, 1), want);
    }
    const char *unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    assert_string_equal(fan__url_escape(&a, unreserved, strlen(unreserved)), unreserved);
    assert_string_equal(fan__url_escape(&a, "", 0), "");
    assert_string_equal(fan__url_escape(&a, "a b&c#d/e%f+g?h=i", 17),
                        "a%20b%26c%23d%2Fe%25f%2Bg%3Fh%3Di");
    assert_string_equal(fan__url_escape(&a, "caf\xc3\xa9", 5), "caf%C3%A9");
    fan__arena_free(&a);
}

static void every_byte_round_trips_through_the_decoder(void **state)
{
    fan__arena a;
    fan__arena_init(&a);
    char all[255]; /* bytes 1..255: an encoded NUL is refused by the decoder */
    for (int i = 0; i < 255; i++)
        all[i] = (char)(i + 1);
    for (int plus_is_space = 0; plus_is_space < 2; plus_is_space++) {
        char *e = fan__url_escape(&a, all, sizeof all);
        assert_non_null(e);
        assert_int_equal(strlen(e), 66 + 3 * (255 - 66)); /* 66 unreserved bytes */
        assert_int_equal(fan__url_decode(e, strlen(e), plus_is_space), sizeof all);
        assert_memory_equal(e, all, sizeof all);
    }
    char *nul = fan__url_escape(&a, "\0", 1);
    assert_int_equal(fan__url_decode(nul, strlen(nul), 0), -1);
    fan__arena_free(&a);
}

static void arena_serves_small_and_large_allocations(void **state)
{
    fan__arena a;
    fan__arena_init(&a);
    for (int i = 0; i < 1000; i++) {
        char *p = fan__arena_alloc(&a, (size_t)(i % 50) + 1);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
        memset(p, 'x', (size_t)(i % 50) + 1);
    }
    char *big = fan__arena_alloc(&a, 1 << 20);
    assert_non_null(big);
    memset(big, 'y', 1 << 20);
    assert_string_equal(fan__arena_strdup(&a, "hello"), "hello");
    fan__arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_percent_escapes_and_optionally_plus),
        cmocka_unit_test(rejects_malformed_escapes_and_nul),
        cmocka_unit_test(query_lookup),
        cmocka_unit_test(escape_keeps_unreserved_bytes_and_encodes_every_other_in_upper_case_hex),
        cmocka_unit_test(every_byte_round_trips_through_the_decoder),
        cmocka_unit_test(arena_serves_small_and_large_allocations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
