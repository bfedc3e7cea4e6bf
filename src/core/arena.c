#include "core/arena.h"
#include "core/fmt.h"

#include <assert.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A chunk's size, with malloc's own header. A request's arena usually
 * starts in a lent chunk: the top of its handler's coroutine, in the page
 * where that stack starts (fan__arena_init_in, FAN__CORO_TOP). What a
 * request holds while it waits on its upstreams (what thousands of
 * connections hold at once: the fan_req, the calls, their URLs, the parsed
 * head, the deadline's timer) is about 2.8 KiB with two calls and few
 * request headers; what does not fit goes to a SPILL_SIZE chunk first, so
 * that a few more headers, or the response's own allocations, cost 1 KiB
 * rather than 3.5 (1.5 KiB measured worse: 7.8-8.0 KiB per waiting request
 * in bench/profile.sh memory, against 7.6). An arena of its own (a shared
 * exchange's) starts with FIRST_CHUNK_SIZE, which holds such a request with
 * room for a few more headers. Every arena grows by CHUNK_SIZE from there. */
#define FIRST_CHUNK_SIZE 3584
#define CHUNK_SIZE 4096
#define SPILL_SIZE 1024
#define MALLOC_HEADER 16

struct fan__chunk {
    fan__chunk *next;
    size_t cap; /* bytes of data; in what alignment pads the header to anyway */
    alignas(max_align_t) char data[];
};

#define FIRST_CAP (FIRST_CHUNK_SIZE - MALLOC_HEADER - sizeof(fan__chunk))
#define CHUNK_CAP (CHUNK_SIZE - MALLOC_HEADER - sizeof(fan__chunk))
#define SPILL_CAP (SPILL_SIZE - MALLOC_HEADER - sizeof(fan__chunk))

/* Freed chunks of the two usual sizes, kept for the thread's next requests:
 * every request takes one or more, and a chunk of 3 or 4 KiB is beyond
 * malloc's per-thread cache (its bins cost ~300 instructions a malloc and
 * more to free). At most SPARE_MAX of each are kept (448 KiB), the rest
 * freed; a thread that ends leaves its spares unfreed, as it would leave
 * malloc's arena of the thread.
 * Under AddressSanitizer none are kept: a reused chunk would hide a use
 * after the request's end. */
#define SPARE_MAX 64
#if defined(__SANITIZE_ADDRESS__)
#define KEEP_SPARES 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEP_SPARES 0
#endif
#endif
#ifndef KEEP_SPARES
#define KEEP_SPARES 1
#endif

typedef struct spares {
    fan__chunk *list;
    unsigned n;
} spares;

static _Thread_local spares spare_first, spare_chunk;

static spares *spares_for(size_t cap)
{
    if (!KEEP_SPARES)
        return NULL;
    return cap == FIRST_CAP ? &spare_first : cap == CHUNK_CAP ? &spare_chunk : NULL;
}

static fan__chunk *chunk_new(size_t cap)
{
    spares *s = spares_for(cap);
    if (s && s->list) {
        fan__chunk *c = s->list;
        s->list = c->next;
        s->n--;
        return c;
    }
    fan__chunk *c = malloc(sizeof(fan__chunk) + cap);
    if (c)
        c->cap = cap;
    return c;
}

static void chunk_free(fan__chunk *c)
{
    spares *s = spares_for(c->cap);
    if (s && s->n < SPARE_MAX) {
        c->next = s->list;
        s->list = c;
        s->n++;
        return;
    }
    free(c);
}

void fan__arena_init(fan__arena *a)
{
    a->head = a->lent = NULL;
    a->pos = a->end = NULL;
}

void fan__arena_init_in(fan__arena *a, void *mem, size_t size)
{
    assert(((uintptr_t)mem & (alignof(max_align_t) - 1)) == 0 && size > sizeof(fan__chunk));
    fan__chunk *c = mem;
    c->next = NULL;
    c->cap = (size - sizeof(fan__chunk)) & ~(alignof(max_align_t) - 1);
    a->head = a->lent = c;
    a->pos = c->data;
    a->end = c->data + c->cap;
}

void fan__arena_free(fan__arena *a)
{
    fan__chunk *c = a->head;
    while (c) {
        fan__chunk *next = c->next;
        if (c != a->lent)
            chunk_free(c);
        c = next;
    }
    fan__arena_init(a);
}

void *fan__arena_alloc_slow(fan__arena *a, size_t size, size_t align)
{
    /* A size this close to SIZE_MAX would wrap once the chunk's header is
     * added to it, or once it is rounded up to the alignment. */
    if (size > SIZE_MAX - sizeof(fan__chunk) - alignof(max_align_t))
        return NULL;
    /* The next chunk: 3.5 KiB for an arena's first, 1 KiB after a lent one,
     * 4 KiB after that. */
    size_t chunk = !a->head ? FIRST_CAP : a->head == a->lent ? SPILL_CAP : CHUNK_CAP;
    /* A big allocation (a quarter of a full chunk, half of a spill one) gets
     * a chunk of its own, linked behind the current one, so the free space
     * left in the current chunk is not wasted. A chunk's data is aligned for
     * any type: its start serves any align. */
    int own = size > (chunk == SPILL_CAP ? SPILL_CAP / 2 : CHUNK_SIZE / 4);
    size_t cap = own ? (size + align - 1) & ~(align - 1) : chunk;
    fan__chunk *c = chunk_new(cap);
    if (!c)
        return NULL;
    if (own && a->head) {
        c->next = a->head->next;
        a->head->next = c;
        return c->data;
    }
    c->next = a->head;
    a->head = c;
    a->pos = c->data + size;
    a->end = c->data + cap;
    return c->data;
}

char *fan__arena_room(fan__arena *a, size_t *room)
{
    /* The free space from the next aligned address: where either alloc of
     * any n <= *room goes. */
    const uintptr_t align = alignof(max_align_t), end = (uintptr_t)a->end;
    uintptr_t p = ((uintptr_t)a->pos + align - 1) & ~(align - 1);
    if (p > end)
        p = end;
    a->pos = (char *)p;
    *room = (size_t)(end - p);
    return a->pos;
}

char *fan__arena_strndup(fan__arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL; /* len + 1 would be 0 */
    char *p = fan__arena_alloc_bytes(a, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *fan__arena_strdup(fan__arena *a, const char *s)
{
    return s ? fan__arena_strndup(a, s, strlen(s)) : NULL;
}

char *fan__arena_vsprintf(fan__arena *a, const char *fmt, va_list ap)
{
    /* The common conversions go straight into the current chunk (fan_get()
     * URLs: a third of the cost of vsnprintf and no copy). */
    size_t room;
    char *at = fan__arena_room(a, &room);
    va_list ap2;
    if (room) {
        va_copy(ap2, ap);
        int n = fan__fmt(at, room, fmt, ap2);
        va_end(ap2);
        if (n >= 0)
            return fan__arena_alloc_bytes(a, (size_t)n + 1); /* n + 1 <= room: at */
    }
    char small[256];
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *p = fan__arena_alloc_bytes(a, (size_t)n + 1);
    if (!p)
        return NULL;
    if ((size_t)n < sizeof small)
        memcpy(p, small, (size_t)n + 1);
    else
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}
