#include "coro/coro.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define FAN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAN_ASAN 1
#endif
#endif

#ifdef FAN_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
/* A pooled stack belongs to no coroutine: under AddressSanitizer it is
 * poisoned, so that a late write into it (through a pointer a task kept
 * into a frame that is gone) is reported instead of corrupting whichever
 * request gets the stack next. */
#define POISON_STACK(co) ASAN_POISON_MEMORY_REGION(stack_base(co), map_above_guard(co))
#define UNPOISON_STACK(co) ASAN_UNPOISON_MEMORY_REGION(stack_base(co), map_above_guard(co))
#else
#define POISON_STACK(co) ((void)(co))
#define UNPOISON_STACK(co) ((void)(co))
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

/* Pooled coroutines kept per thread: enough for a burst without holding on to
 * memory forever. Each costs its stack's touched pages in RSS. */
#define POOL_MAX 256
#define MIN_STACK (16 * 1024)
#ifdef FAN_ASAN
#define DEFAULT_STACK (256 * 1024) /* sanitizer frames are several times larger */
#else
#define DEFAULT_STACK (64 * 1024)
#endif

struct fan__coro {
    void *sp;            /* saved stack pointer while suspended (x86_64) */
#if !defined(__x86_64__)
    ucontext_t ctx;
#endif
    fan__coro_fn fn;
    void *arg;
    char *stack;         /* lowest address of the mapping; the guard page is there */
    size_t stack_size;   /* the size asked for, rounded: the pool's key. The
                          * mapping is the guard page, stack_size, and a page
                          * shared by the stack's start and FAN__CORO_TOP */
    int done;
    fan__coro_fn call_fn;  /* fan__coro_call_main(): to run on the main stack */
    void *call_arg;
    fan__coro *next_free;
#ifdef FAN_ASAN
    void *fake_stack;
#endif
};

_Static_assert(FAN__CORO_TOP % 16 == 0 && FAN__CORO_TOP < 4096, "the top must fit a page");

/* The stack's lowest usable byte, right above the guard page. */
static char *stack_base(const fan__coro *co)
{
    return co->stack + getpagesize();
}

/* The bytes of the mapping above the guard page: the stack and the top. */
static size_t map_above_guard(const fan__coro *co)
{
    return co->stack_size + (size_t)getpagesize();
}

/* The stack's usable bytes, from stack_base() up to the top's data. */
static size_t stack_usable(const fan__coro *co)
{
    return map_above_guard(co) - FAN__CORO_TOP;
}

void *fan__coro_top(fan__coro *co)
{
    return stack_base(co) + stack_usable(co);
}

static _Thread_local fan__coro *current;
static _Thread_local fan__coro *pool;
static _Thread_local unsigned pool_len;
#if defined(__x86_64__)
static _Thread_local void *main_sp;
#else
static _Thread_local ucontext_t main_ctx;
#endif
#ifdef FAN_ASAN
static _Thread_local const void *main_bottom;
static _Thread_local size_t main_size;
#endif

#if defined(__x86_64__)
/* Saves the callee-saved registers on the current stack, stores the stack
 * pointer in *from, loads *to and restores the registers saved there. A plain
 * function call as far as the compiler knows: no signal-mask system call, as
 * swapcontext() would make. */
void fan__ctx_switch(void **from, void *to);
__asm__(".text\n"
        ".globl fan__ctx_switch\n"
        ".hidden fan__ctx_switch\n"
        ".type fan__ctx_switch,@function\n"
        "fan__ctx_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size fan__ctx_switch,.-fan__ctx_switch\n"
        /* First entry of a coroutine: fan__ctx_switch "returns" here with the
         * coroutine in r12 and a 16-byte aligned stack. */
        ".globl fan__coro_trampoline\n"
        ".hidden fan__coro_trampoline\n"
        ".type fan__coro_trampoline,@function\n"
        "fan__coro_trampoline:\n"
        "    movq %r12, %rdi\n"
        "    call fan__coro_entry\n"
        "    ud2\n"
        ".size fan__coro_trampoline,.-fan__coro_trampoline\n");
void fan__coro_trampoline(void);
#endif

void fan__coro_entry(fan__coro *co);

static void switch_to_coro(fan__coro *co)
{
#ifdef FAN_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, stack_base(co), stack_usable(co));
#endif
#if defined(__x86_64__)
    fan__ctx_switch(&main_sp, co->sp);
#else
    swapcontext(&main_ctx, &co->ctx);
#endif
#ifdef FAN_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void switch_to_main(fan__coro *co)
{
#ifdef FAN_ASAN
    /* A finished coroutine passes NULL so that its fake stack is released. */
    __sanitizer_start_switch_fiber(co->done ? NULL : &co->fake_stack, main_bottom, main_size);
#endif
#if defined(__x86_64__)
    fan__ctx_switch(&co->sp, main_sp);
#else
    swapcontext(&co->ctx, &main_ctx);
#endif
#ifdef FAN_ASAN
    __sanitizer_finish_switch_fiber(co->fake_stack, &main_bottom, &main_size);
#endif
}

void fan__coro_entry(fan__coro *co)
{
#ifdef FAN_ASAN
    __sanitizer_finish_switch_fiber(NULL, &main_bottom, &main_size);
#endif
    co->fn(co->arg);
    co->done = 1;
    switch_to_main(co);
    abort(); /* a finished coroutine is never resumed */
}

#if !defined(__x86_64__)
static void ucontext_entry(unsigned hi, unsigned lo)
{
    fan__coro_entry((fan__coro *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}
#endif

static void prepare(fan__coro *co)
{
    co->done = 0;
    co->call_fn = NULL;
#ifdef FAN_ASAN
    co->fake_stack = NULL;
#endif
#if defined(__x86_64__)
    uintptr_t top = (uintptr_t)fan__coro_top(co); /* 16-byte aligned */
    void **sp = (void **)(top - 72);
    sp[0] = sp[1] = sp[2] = 0; /* r15 r14 r13 */
    sp[3] = co;                /* r12: the trampoline's argument */
    sp[4] = sp[5] = 0;         /* rbx rbp */
    sp[6] = (void *)fan__coro_trampoline;
    co->sp = sp;
#else
    getcontext(&co->ctx);
    co->ctx.uc_stack.ss_sp = stack_base(co);
    co->ctx.uc_stack.ss_size = stack_usable(co);
    co->ctx.uc_link = NULL;
    uintptr_t p = (uintptr_t)co;
    makecontext(&co->ctx, (void (*)(void))ucontext_entry, 2, (unsigned)(p >> 32), (unsigned)p);
#endif
}

static fan__coro *coro_alloc(size_t stack_size)
{
    fan__coro *co = calloc(1, sizeof *co);
    if (!co)
        return NULL;
    size_t page = (size_t)getpagesize();
    void *m = mmap(NULL, page + stack_size + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        free(co);
        return NULL;
    }
    /* The guard page below the stack turns an overflow into a clean SIGSEGV
     * instead of silent corruption of a neighbour. */
    mprotect(m, page, PROT_NONE);
    co->stack = m;
    co->stack_size = stack_size;
    return co;
}

static void coro_destroy(fan__coro *co)
{
    UNPOISON_STACK(co); /* the shadow outlives the mapping */
    munmap(co->stack, (size_t)getpagesize() + map_above_guard(co));
    free(co);
}

size_t fan__coro_round_stack(size_t size)
{
    size_t page = (size_t)getpagesize();
    if (size == 0)
        size = DEFAULT_STACK;
    if (size < MIN_STACK)
        size = MIN_STACK;
    if (size > SIZE_MAX / 2)
        size = SIZE_MAX / 2; /* no mapping is that large; rounding up SIZE_MAX would give 0 */
    return (size + page - 1) & ~(page - 1);
}

fan__coro *fan__coro_new(fan__coro_fn fn, void *arg, size_t stack_size)
{
    stack_size = fan__coro_round_stack(stack_size);
    fan__coro *co = pool;
    if (co && co->stack_size == stack_size) {
        pool = co->next_free;
        pool_len--;
        UNPOISON_STACK(co);
    } else if (!(co = coro_alloc(stack_size))) {
        return NULL;
    }
    co->fn = fn;
    co->arg = arg;
    prepare(co);
    return co;
}

void fan__coro_set_fn(fan__coro *co, fan__coro_fn fn, void *arg)
{
    co->fn = fn;
    co->arg = arg;
}

void fan__coro_resume(fan__coro *co)
{
    assert(current == NULL && !co->done);
    for (;;) {
        current = co;
        switch_to_coro(co);
        current = NULL;
        if (!co->call_fn)
            return;
        fan__coro_fn fn = co->call_fn; /* it asked for a call on this stack */
        co->call_fn = NULL;
        fn(co->call_arg);
    }
}

void fan__coro_call_main(fan__coro_fn fn, void *arg)
{
    fan__coro *co = current;
    if (!co) {
        fn(arg);
        return;
    }
    co->call_fn = fn;
    co->call_arg = arg;
    switch_to_main(co); /* resume() runs it and switches straight back */
}

void fan__coro_yield(void)
{
    fan__coro *co = current;
    assert(co != NULL);
    switch_to_main(co);
}

fan__coro *fan__coro_current(void)
{
    return current;
}

int fan__coro_done(const fan__coro *co)
{
    return co->done;
}

void fan__coro_free(fan__coro *co)
{
    if (!co)
        return;
    if (pool_len >= POOL_MAX) {
        coro_destroy(co);
        return;
    }
    POISON_STACK(co);
    co->next_free = pool;
    pool = co;
    pool_len++;
}

void fan__coro_pool_clear(void)
{
    while (pool) {
        fan__coro *next = pool->next_free;
        coro_destroy(pool);
        pool = next;
    }
    pool_len = 0;
}
