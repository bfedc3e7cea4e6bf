/* Sizes near SIZE_MAX: the arena, buffers, spans and every helper that
 * computes a size from a caller's length refuse them cleanly (NULL,
 * FAN_ENOMEM or FAN_ETOOLARGE) instead of wrapping to a small size and
 * writing past it. The data pointers given with such lengths are small: a
 * helper that tried to read them would be caught by the sanitizers. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "app/app.h"
#include "client/client.h"
#include "core/arena.h"
#include "core/header.h"
#include "core/buf.h"
#include "core/fmt.h"
#include "core/span.h"
#include "core/url.h"
#include "coro/coro.h"
#include "http/http.h"

/* A malloc of nearly SIZE_MAX bytes must fail with NULL, not abort the
 * sanitized build. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 16,
                              SIZE_MAX - 31, SIZE_MAX - 32, SIZE_MAX - 4096, SIZE_MAX / 2 + 1};
#define NHUGE (sizeof huge / sizeof huge[0])

static void arena_alloc_refuses_sizes_near_size_max(void **state)
{
    fan__arena a;
    fan__arena_init(&a);
    for (size_t i = 0; i < NHUGE; i++)
        assert_null(fan__arena_alloc(&a, huge[i]));
    /* The arena is as usable as before, in a fresh chunk and in the same. */
    char *p = fan__arena_alloc(&a, 10);
    assert_non_null(p);
    memset(p, 'x', 10);
    for (size_t i = 0; i < NHUGE; i++)
        assert_null(fan__arena_alloc(&a, huge[i]));
    assert_non_null(fan__arena_alloc(&a, 100));
    fan__arena_free(&a);
}

static void arena_strndup_refuses_a_length_near_size_max(void **state)
{
    fan__arena a;
    fan__arena_init(&a);
    assert_non_null(fan__arena_alloc(&a, 1)); /* a chunk, as a 0-byte allocation finds room */
    /* SIZE_MAX + 1 is 0: without a check this would copy SIZE_MAX bytes
     * into an empty allocation. */
    assert_null(fan__arena_strndup(&a, "abc", SIZE_MAX));
    assert_null(fan__arena_strndup(&a, "abc", SIZE_MAX - 1));
    assert_null(fan__arena_strndup(&a, "abc", SIZE_MAX - 16));
    assert_string_equal(fan__arena_strndup(&a, "abcdef", 3), "abc");
    fan__arena_free(&a);
}

static void buf_reserve_and_append_refuse_sizes_near_size_max(void **state)
{
    fan__buf b = FAN__BUF_INIT;
    for (size_t i = 0; i < NHUGE; i++) {
        assert_int_equal(fan__buf_reserve(&b, huge[i]), FAN_ENOMEM);
        assert_int_equal(fan__buf_append(&b, "abc", huge[i]), FAN_ENOMEM);
    }
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(fan__buf_append(&b, "abc", 3), 0);
    /* With bytes in it, len + extra + 1 is what must not wrap. */
    for (size_t i = 0; i < NHUGE; i++) {
        assert_int_equal(fan__buf_reserve(&b, huge[i]), FAN_ENOMEM);
        assert_int_equal(fan__buf_reserve(&b, huge[i] - 3), FAN_ENOMEM);
        assert_int_equal(fan__buf_append(&b, "abc", huge[i] - 3), FAN_ENOMEM);
    }
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    fan__buf_free(&b);
}

static void span_refuses_a_piece_near_size_max(void **state)
{
    fan__span s = {0};
    size_t len;
    assert_int_equal(fan__span_add(&s, "ab", 2), 0);
    assert_int_equal(fan__span_add(&s, "c", SIZE_MAX), FAN_ENOMEM);
    assert_int_equal(fan__span_add(&s, "c", SIZE_MAX - 2), FAN_ENOMEM);
    const char *d = fan__span_data(&s, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(d, "ab", 2);
    fan__span_reset(&s);
}

static int fmt(char *out, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = fan__fmt(out, cap, f, ap);
    va_end(ap);
    return n;
}

static void fmt_takes_any_capacity_up_to_size_max(void **state)
{
    char out[64];
    /* cap is an upper bound of the room; the check must not wrap for it. */
    assert_int_equal(fmt(out, SIZE_MAX, "%s-%zu", "ab", SIZE_MAX), 23);
    assert_string_equal(out, "ab-18446744073709551615");
    assert_int_equal(fmt(out, SIZE_MAX - 1, "%.*s%c", 2, "xyz", '!'), 3);
    assert_string_equal(out, "xy!");
    assert_int_equal(fmt(out, 4, "%s", "abcd"), -1);
}

static void url_decode_refuses_a_length_beyond_long_max(void **state)
{
    char s[] = "a%20b";
    assert_int_equal(fan__url_decode(s, SIZE_MAX, 0), -1);
    assert_int_equal(fan__url_decode(s, (size_t)LONG_MAX + 1, 0), -1);
    assert_string_equal(s, "a%20b"); /* untouched */
    assert_int_equal(fan__url_decode(s, 5, 0), 3);
    assert_string_equal(s, "a b");
}

static void signed_encode_refuses_a_length_near_size_max(void **state)
{
    assert_null(fan__signed_encode("x", SIZE_MAX, 1, "secret"));
    assert_null(fan__signed_encode("x", SIZE_MAX / 2 + 1, 1, "secret"));
    /* Its base64url length, 4 * 2^62, wraps to 0: the buffer would be a few
     * bytes for the expiry and the MAC. */
    assert_null(fan__signed_encode("x", (SIZE_MAX / 4 + 1) * 3, 1, "secret"));
}

static void a_signed_value_with_the_largest_expiry_reads_back(void **state)
{
    /* now + a session.max_age of LLONG_MAX: the expiry is cut to the
     * latest 18 digits can say, not written as 19 digits that never verify. */
    static const char *const secrets[] = {"secret"};
    char *v = fan__signed_encode("{}", 2, LLONG_MAX, "secret");
    assert_non_null(v);
    char *payload = NULL;
    size_t len = 0;
    assert_int_equal(fan__signed_decode(v, secrets, 1, 1700000000LL, &payload, &len),
                     FAN__SIGNED_OK);
    assert_int_equal(len, 2);
    assert_string_equal(payload, "{}");
    free(payload);
    free(v);
}

static void noop(void *arg)
{
    (void)arg;
}

static void a_stack_size_near_size_max_fails_instead_of_wrapping(void **state)
{
    /* Rounded up, SIZE_MAX would give a stack of 0 bytes (only the guard
     * page): the first switch would fault. */
    for (size_t i = 0; i < NHUGE; i++) {
        assert_true(fan__coro_round_stack(huge[i]) >= SIZE_MAX / 2);
        assert_null(fan__coro_new(noop, NULL, huge[i]));
    }
}

static void call_body_limit_check_does_not_wrap(void **state)
{
    fan_call c;
    memset(&c, 0, sizeof c);
    c.max_body = 100;
    assert_int_equal(fan__call_body(&c, "0123456789", 10), 0);
    /* 10 + (SIZE_MAX - 5) wraps to 4, under the limit: it must not pass. */
    assert_int_equal(fan__call_body(&c, "x", SIZE_MAX - 5), FAN_ETOOLARGE);
    assert_int_equal(c.too_large, 1);
    assert_int_equal(c.resp_body.len, 10);
    c.too_large = 0;
    c.max_body = SIZE_MAX; /* no limit: only a total beyond SIZE_MAX is too large */
    assert_int_equal(fan__call_body(&c, "x", SIZE_MAX - 5), FAN_ETOOLARGE);
    c.too_large = 0;
    assert_int_equal(fan__call_body(&c, "x", SIZE_MAX - 20), FAN_ENOMEM); /* the buffer's */
    assert_int_equal(c.too_large, 0);
    assert_int_equal(c.resp_body.len, 10);
    fan__buf_free(&c.resp_body);
}

static void set_header_refuses_a_header_count_that_would_wrap(void **state)
{
    /* A request whose header array is full at 2^31 entries: doubling the
     * unsigned count gives 0. No header is read, as the array is not real. */
    fan_req rq;
    memset(&rq, 0, sizeof rq);
    fan__arena_init(&rq.rt.arena);
    assert_non_null(fan__arena_alloc(&rq.rt.arena, 1)); /* a 0-byte allocation then succeeds */
    rq.nout = rq.out_cap = 1u << 31;
    assert_int_equal(fan_resp_set_header(&rq, "X-A", "b"), FAN_ENOMEM);
    rq.nout = rq.out_cap = UINT_MAX;
    assert_int_equal(fan_resp_set_header(&rq, "X-A", "b"), FAN_ENOMEM);
    fan__arena_free(&rq.rt.arena);
}

static void header_slot_grows_by_doubling_and_refuses_to_wrap(void **state)
{
    fan__arena a;
    fan__arena_init(&a);
    fan__header *arr = NULL;
    unsigned cap = 0;
    for (unsigned n = 0; n < 20; n++) {
        fan__header *h = fan__header_slot(&a, &arr, n, &cap);
        assert_non_null(h);
        assert_ptr_equal(h, &arr[n]);
        h->name = "x";
        assert_true(cap == 8 || cap == 16 || cap == 32);
    }
    assert_int_equal(cap, 32);
    assert_string_equal(arr[19].name, "x");
    assert_string_equal(arr[0].name, "x"); /* copied on growth */
    unsigned full = UINT_MAX;
    assert_null(fan__header_slot(&a, &arr, UINT_MAX, &full));
    assert_int_equal(full, UINT_MAX);
    fan__arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_slot_grows_by_doubling_and_refuses_to_wrap),
        cmocka_unit_test(arena_alloc_refuses_sizes_near_size_max),
        cmocka_unit_test(arena_strndup_refuses_a_length_near_size_max),
        cmocka_unit_test(buf_reserve_and_append_refuse_sizes_near_size_max),
        cmocka_unit_test(span_refuses_a_piece_near_size_max),
        cmocka_unit_test(fmt_takes_any_capacity_up_to_size_max),
        cmocka_unit_test(url_decode_refuses_a_length_beyond_long_max),
        cmocka_unit_test(signed_encode_refuses_a_length_near_size_max),
        cmocka_unit_test(a_signed_value_with_the_largest_expiry_reads_back),
        cmocka_unit_test(a_stack_size_near_size_max_fails_instead_of_wrapping),
        cmocka_unit_test(call_body_limit_check_does_not_wrap),
        cmocka_unit_test(set_header_refuses_a_header_count_that_would_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
