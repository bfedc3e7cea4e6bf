/* Coroutines: resume and yield, locals survive switches, pooled stacks, and
 * the guard page turns a stack overflow into a fault. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* Under AddressSanitizer its SEGV handler reports the overflow and exits 1;
 * the normal build dies of the signal. */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_BUILD 1
#endif
#endif

#define OVERFLOW_STACK (16 * 1024)

static char *guard_lo, *guard_hi; /* the guard page of the overflowing coroutine */

#ifndef ASAN_BUILD
/* Says whether the fault is in the guard page, then lets it kill the process:
 * returning retries the faulting access with the default action. */
static void on_segv(int sig, siginfo_t *si, void *uc)
{
    char *at = si->si_addr;
    const char *what = at >= guard_lo && at < guard_hi ? "fault in the guard page\n"
                                                       : "fault outside the guard page\n";
    ssize_t ignored = write(STDERR_FILENO, what, strlen(what));
    (void)ignored;
    signal(SIGSEGV, SIG_DFL);
}
#endif

static void recurse(void *arg)
{
    /* This first frame is in the mapping's top page, which the stack's
     * start shares with the coroutine's top (FAN__CORO_TOP). Below that page
     * are the stack's rounded size, then the guard page. */
    size_t page = (size_t)getpagesize();
    uintptr_t frame = (uintptr_t)__builtin_frame_address(0);
    char *top = (char *)((frame + page - 1) & ~(uintptr_t)(page - 1));
    guard_hi = top - page - fan__coro_round_stack(OVERFLOW_STACK);
    guard_lo = guard_hi - page;
    fan__coro_yield();
    *(int *)arg = recurse_depth(1 << 20); /* far deeper than 16 KiB allows */
}

/* `test_coro --overflow`: a process of its own, because cmocka's SIGSEGV
 * handler (which needs stack) would take the fault in place of the
 * sanitizer's. Does not return. */
static void overflow(void)
{
    int out;
    fan__coro *co = fan__coro_new(recurse, &out, OVERFLOW_STACK);
    fan__coro_resume(co); /* up to the yield: the guard page is known */
#ifdef ASAN_BUILD
    fprintf(stderr, "guard page %p %p\n", (void *)guard_lo, (void *)guard_hi);
#else
    static char alt[64 * 1024];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    sigaltstack(&ss, NULL);
    sigaction(SIGSEGV, &sa, NULL);
#endif
    fan__coro_resume(co);
    _exit(0); /* not reached */
}

static void overflow_hits_the_guard_page(void **state)
{
    int err[2];
    assert_int_equal(pipe(err), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(err[1], STDERR_FILENO);
        close(err[0]);
        close(err[1]);
        execl("/proc/self/exe", "test_coro", "--overflow", (char *)NULL);
        _exit(127);
    }
    close(err[1]);
    char report[16384];
    size_t n = 0;
    ssize_t got;
    while ((got = read(err[0], report + n, sizeof report - 1 - n)) > 0)
        n += (size_t)got;
    report[n] = '\0';
    close(err[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
#ifdef ASAN_BUILD
    /* The sanitizer's report names the faulting address: in the guard page. */
    void *lo, *hi, *at;
    const char *guard = strstr(report, "guard page ");
    const char *fault = strstr(report, "ERROR: AddressSanitizer: stack-overflow on address ");
    assert_non_null(guard);
    assert_non_null(fault);
    assert_int_equal(sscanf(guard, "guard page %p %p", &lo, &hi), 2);
    assert_int_equal(sscanf(fault, "ERROR: AddressSanitizer: stack-overflow on address %p", &at),
                     1);
    assert_true((char *)at >= (char *)lo && (char *)at < (char *)hi);
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
#else
    assert_string_equal(report, "fault in the guard page\n");
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
#endif
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--overflow") == 0)
        overflow();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(coroutines_interleave_and_keep_their_locals),
        cmocka_unit_test(current_is_the_running_coroutine),
        cmocka_unit_test(stacks_are_reused_from_the_pool),
        cmocka_unit_test(stack_size_is_honoured_and_rounded),
        cmocka_unit_test(overflow_hits_the_guard_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
