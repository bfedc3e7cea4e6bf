/* Coroutines: resume and yield, locals survive switches, pooled stacks, and
 * the guard page turns a stack overflow into a fault. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "coro/coro.h"

static int trace[16];
static int ntrace;

static void counter(void *arg)
{
    int base = *(int *)arg;
    for (int i = 0; i < 3; i++) {
        trace[ntrace++] = base + i;
        fan__coro_yield();
    }
}

static void coroutines_interleave_and_keep_their_locals(void **state)
{
    int a = 10, b = 20;
    ntrace = 0;
    fan__coro *ca = fan__coro_new(counter, &a, 0);
    fan__coro *cb = fan__coro_new(counter, &b, 0);
    assert_non_null(ca);
    assert_non_null(cb);
    while (!fan__coro_done(ca) || !fan__coro_done(cb)) {
        if (!fan__coro_done(ca))
            fan__coro_resume(ca);
        if (!fan__coro_done(cb))
            fan__coro_resume(cb);
    }
    int want[] = {10, 20, 11, 21, 12, 22};
    assert_int_equal(ntrace, 6);
    assert_memory_equal(trace, want, sizeof want);
    fan__coro_free(ca);
    fan__coro_free(cb);
}

static fan__coro *seen;

static void who_am_i(void *arg)
{
    seen = fan__coro_current();
}

static void current_is_the_running_coroutine(void **state)
{
    assert_null(fan__coro_current());
    fan__coro *co = fan__coro_new(who_am_i, NULL, 0);
    fan__coro_resume(co);
    assert_ptr_equal(seen, co);
    assert_true(fan__coro_done(co));
    assert_null(fan__coro_current());
    fan__coro_free(co);
}

static void nop(void *arg)
{
}

static void stacks_are_reused_from_the_pool(void **state)
{
    fan__coro *a = fan__coro_new(nop, NULL, 0);
    fan__coro_resume(a);
    fan__coro_free(a);
    fan__coro *b = fan__coro_new(nop, NULL, 0);
    assert_ptr_equal(a, b);
    fan__coro_resume(b);
    fan__coro_free(b);
    fan__coro_pool_clear();
}

static void uses_a_lot_of_stack(void *arg)
{
    volatile char big[32 * 1024];
    memset((char *)big, 1, sizeof big);
    *(int *)arg = big[100];
}

static void stack_size_is_honoured_and_rounded(void **state)
{
    assert_true(fan__coro_round_stack(1) >= 16 * 1024);
    assert_int_equal(fan__coro_round_stack(70000) % 4096, 0);
    int out = 0;
    fan__coro *co = fan__coro_new(uses_a_lot_of_stack, &out, 128 * 1024);
    fan__coro_resume(co);
    assert_int_equal(out, 1);
    fan__coro_free(co);
}

static int recurse_depth(volatile int n)
{
    volatile char frame[1024];
    frame[0] = (char)n;
    return n > 0 ? recurse_depth(n - 1) + frame[0] : 0;
}

static void recurse(void *arg)
{
    *(int *)arg = recurse_depth(1 << 20); /* far deeper than 16 KiB allows */
}

static void overflow_hits_the_guard_page(void **state)
{
    pid_t pid = fork();
    if (pid == 0) {
        int out;
        fan__coro *co = fan__coro_new(recurse, &out, 16 * 1024);
        fan__coro_resume(co);
        _exit(0); /* not reached */
    }
    int status;
    waitpid(pid, &status, 0);
    /* A clean fault (or a sanitizer's report of it), never a normal exit. */
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(coroutines_interleave_and_keep_their_locals),
        cmocka_unit_test(current_is_the_running_coroutine),
        cmocka_unit_test(stacks_are_reused_from_the_pool),
        cmocka_unit_test(stack_size_is_honoured_and_rounded),
        cmocka_unit_test(overflow_hits_the_guard_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
