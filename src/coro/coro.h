/* Stackful coroutines with pooled, guard-paged stacks.
 *
 * A coroutine is always resumed from the loop's own stack (the "main"
 * context) and always yields back to it: coroutines never switch to each
 * other directly. That keeps the scheduler in one place (the event loop) and
 * makes the sanitizer annotations simple. One thread at a time uses this
 * module; the pool is per thread. */
#ifndef FAN_CORO_H
#define FAN_CORO_H

#include <stddef.h>

typedef struct fan__coro fan__coro;
typedef void (*fan__coro_fn)(void *arg);

/* The usable stack size for a requested one: rounded up to whole pages, at
 * least 16 KiB; 0 means the default (64 KiB, 256 KiB under AddressSanitizer,
 * whose frames are larger). */
size_t fan__coro_round_stack(size_t size);

/* Creates a coroutine that will run fn(arg) when first resumed, on a stack of
 * at least fan__coro_round_stack(stack_size) bytes with a guard page below
 * it. The stack comes from the pool when one of that size is free. fn may be
 * NULL, to be set by fan__coro_set_fn() before the first resume. Returns
 * NULL when out of memory. */
fan__coro *fan__coro_new(fan__coro_fn fn, void *arg, size_t stack_size);

/* Sets the function of a coroutine not resumed yet. */
void fan__coro_set_fn(fan__coro *co, fan__coro_fn fn, void *arg);

/* FAN__CORO_TOP bytes at the top of every coroutine's mapping, above its
 * stack, for its owner to keep data in from fan__coro_new() to
 * fan__coro_free(), whether the coroutine runs, waits, finished or never
 * started: 16-byte aligned, not zeroed. They share the page where the stack
 * begins, which every coroutine touches, so data kept there costs no memory
 * of its own while the stack stays within the rest of that page (1 KiB; a
 * handler that starts two calls and waits on them reaches 0.8 KiB deep; one
 * that goes deeper touches its next page, as it would anyway). The stack
 * itself is still at least the size asked for: the mapping has a page more
 * for them. */
#define FAN__CORO_TOP 3072
void *fan__coro_top(fan__coro *co);

/* Runs `co` until it yields or its function returns. Must be called from the
 * main context, never from inside a coroutine. */
void fan__coro_resume(fan__coro *co);

/* Suspends the running coroutine and returns to whoever resumed it. Must be
 * called from inside a coroutine. */
void fan__coro_yield(void);

/* Runs fn(arg) on the main context's stack (the thread's own, megabytes
 * deep) and returns when it did, for code whose recursion is bounded by its
 * input rather than by a coroutine's stack: jansson parses and writes one
 * frame per level of nesting, up to 2048 levels. From the main context it
 * just calls fn. fn must not yield; nothing else runs meanwhile. */
void fan__coro_call_main(fan__coro_fn fn, void *arg);

/* The running coroutine, or NULL on the main context. */
fan__coro *fan__coro_current(void);

/* Whether the coroutine's function has returned. */
int fan__coro_done(const fan__coro *co);

/* Returns a finished (or never started) coroutine and its stack to the pool. */
void fan__coro_free(fan__coro *co);

/* Frees every pooled stack of this thread. */
void fan__coro_pool_clear(void);

#endif
