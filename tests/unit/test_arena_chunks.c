/* The arena's chunks: a lent first chunk is used and never freed, what
 * overflows it goes to a small spill chunk, then to full ones; big
 * allocations get chunks of their own; text is packed unaligned while
 * everything else stays aligned for any type; the room a producer writes
 * into is where the next allocation of that size lands. And the request's
 * lent chunk, the top of its coroutine, is kept by the coroutine's owner:
 * the stack below it does not reach it. */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "coro/coro.h"

static int aligned(const void *p)
{
    return ((uintptr_t)p & (alignof(max_align_t) - 1)) == 0;
}

static void a_lent_chunk_is_used_first_and_left_to_its_owner(void **state)
{
    (void)state;
    alignas(max_align_t) static char mem[1024];
    memset(mem, 0x5a, sizeof mem);
    fan__arena a;
    fan__arena_init_in(&a, mem, sizeof mem);
    char *p = fan__arena_alloc(&a, 100);
    assert_true(p > mem && p < mem + sizeof mem);
    char *s = fan__arena_strdup(&a, "abc");
    assert_true(s > p && s < mem + sizeof mem);
    fan__arena_free(&a); /* would abort: free() of a static array */
    assert_null(a.head);
    assert_null(a.lent);
    assert_int_equal(mem[sizeof mem - 1], 0x5a); /* untouched past what was used */
}

static void what_overflows_a_lent_chunk_takes_a_small_chunk_then_full_ones(void **state)
{
    (void)state;
    alignas(max_align_t) static char mem[256];
    fan__arena a;
    fan__arena_init_in(&a, mem, sizeof mem);
    /* The lent chunk's data, then two chunks: its own pointer, each. */
    size_t used = 0;
    void *spill = NULL, *full = NULL;
    for (int i = 0; i < 200 && !full; i++) {
        char *p = fan__arena_alloc(&a, 64);
        assert_non_null(p);
        assert_true(aligned(p));
        memset(p, i, 64); /* the sanitizers see any overflow of its chunk */
        used += 64;
        if (p < mem || p >= mem + sizeof mem) {
            if (!spill)
                spill = a.head;
            else if (a.head != spill)
                full = a.head;
        }
    }
    assert_non_null(spill);
    assert_non_null(full);
    /* A 1 KiB spill holds 15 of 64 bytes, where a 3.5 KiB chunk would
     * hold 55 of them. */
    assert_true(used < 256 + 1024 + 64 * 2);
    fan__arena_free(&a);
}

static void a_big_allocation_after_a_lent_chunk_gets_its_own(void **state)
{
    (void)state;
    alignas(max_align_t) static char mem[512];
    fan__arena a;
    fan__arena_init_in(&a, mem, sizeof mem);
    char *small = fan__arena_alloc(&a, 16);
    /* Bigger than a spill chunk holds: without a chunk of its own this
     * write would overflow one. */
    static const size_t sizes[] = {800, 1000, 1024, 1500, 3000, 5000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t size = sizes[i];
        char *big = fan__arena_alloc(&a, size);
        assert_non_null(big);
        memset(big, 0x33, size);
    }
    /* The lent chunk still takes the small ones. */
    char *next = fan__arena_alloc(&a, 16);
    assert_true(next > small && next < mem + sizeof mem);
    fan__arena_free(&a);
}

static void text_is_packed_and_the_rest_stays_aligned(void **state)
{
    (void)state;
    fan__arena a;
    fan__arena_init(&a);
    char *x = fan__arena_strdup(&a, "x");
    char *y = fan__arena_strdup(&a, "yz");
    assert_ptr_equal(y, x + 2);
    assert_string_equal(x, "x");
    assert_string_equal(y, "yz");
    void *p = fan__arena_alloc(&a, 8);
    assert_true(aligned(p));
    assert_true((char *)p > y + 2);
    /* A producer's room starts aligned, and the allocation of what it wrote
     * is that room. */
    (void)fan__arena_strdup(&a, "odd");
    size_t room;
    char *at = fan__arena_room(&a, &room);
    assert_true(aligned(at));
    assert_true(room > 10);
    memcpy(at, "written", 8);
    assert_ptr_equal(fan__arena_alloc_bytes(&a, 8), at);
    (void)fan__arena_strdup(&a, "odd");
    at = fan__arena_room(&a, &room);
    assert_ptr_equal(fan__arena_alloc(&a, 8), at);
    fan__arena_free(&a);
}

static char *top_seen;

static void deep(void *arg)
{
    (void)arg;
    /* A frame as deep as a handler's: it stays below the top. */
    volatile char frame[1024];
    memset((char *)frame, 0x11, sizeof frame);
    top_seen = (char *)frame;
    fan__coro_yield();
}

static void a_coroutines_top_survives_its_stack_and_its_end(void **state)
{
    (void)state;
    fan__coro *co = fan__coro_new(NULL, NULL, 0);
    assert_non_null(co);
    char *top = fan__coro_top(co);
    assert_true(aligned(top));
    memset(top, 0x7e, FAN__CORO_TOP);
    fan__coro_set_fn(co, deep, NULL);
    fan__coro_resume(co);
    assert_true(top_seen + 1024 <= top);
    fan__coro_resume(co);
    assert_true(fan__coro_done(co));
    for (size_t i = 0; i < FAN__CORO_TOP; i++)
        if (top[i] != 0x7e)
            fail_msg("byte %zu of the top was written by the stack", i);
    /* The top and the stack's start share one page. */
    size_t page = 4096;
    assert_true((uintptr_t)top / page == ((uintptr_t)top + FAN__CORO_TOP - 1) / page);
    fan__coro_free(co);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_lent_chunk_is_used_first_and_left_to_its_owner),
        cmocka_unit_test(what_overflows_a_lent_chunk_takes_a_small_chunk_then_full_ones),
        cmocka_unit_test(a_big_allocation_after_a_lent_chunk_gets_its_own),
        cmocka_unit_test(text_is_packed_and_the_rest_stays_aligned),
        cmocka_unit_test(a_coroutines_top_survives_its_stack_and_its_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
