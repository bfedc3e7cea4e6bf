#include "core/arena.h"
#include "core/fmt.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A chunk's size, with malloc's own header. The first is smaller: what a
 * request holds while it waits on its upstreams (what thousands of
 * connections hold at once) is about 3.1 KiB with two calls (the fan_req,
 * the calls, their URLs and trace context lines, the parsed head, the
 * deadline's timer); 3.5 KiB leaves room for a few more request headers,
 * where 3 KiB made such a request take a second chunk (7 KiB in all). The
 * arena grows by CHUNK_SIZE from there. */
#define FIRST_CHUNK_SIZE 3584
#define CHUNK_SIZE 4096
#define MALLOC_HEADER 16

struct fan__chunk {
    fan__chunk *next;
    alignas(max_align_t) char data[];
};

void fan__arena_init(fan__arena *a)
{
    a->head = NULL;
    a->pos = a->end = NULL;
}

void fan__arena_free(fan__arena *a)
{
    fan__chunk *c = a->head;
    while (c) {
        fan__chunk *next = c->next;
        free(c);
        c = next;
    }
    fan__arena_init(a);
}

void *fan__arena_alloc_slow(fan__arena *a, size_t size)
{
    const size_t align = alignof(max_align_t);
    /* A size this close to SIZE_MAX would wrap once rounded up or once the
     * chunk's header is added to it. */
    if (size > SIZE_MAX - sizeof(fan__chunk) - (align - 1))
        return NULL;
    size = (size + align - 1) & ~(align - 1);
    if (size <= (size_t)(a->end - a->pos)) {
        void *p = a->pos;
        a->pos += size;
        return p;
    }
    /* A big allocation gets a chunk of its own, linked behind the current one,
     * so the free space left in the current chunk is not wasted. */
    size_t chunk = (a->head ? CHUNK_SIZE : FIRST_CHUNK_SIZE) - MALLOC_HEADER - sizeof(fan__chunk);
    size_t cap = size > CHUNK_SIZE / 4 ? size : chunk;
    fan__chunk *c = malloc(sizeof(fan__chunk) + cap);
    if (!c)
        return NULL;
    if (cap == size && a->head) {
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
    /* Chunks hold a multiple of the alignment and allocations are rounded up
     * to it, so any n <= *room, once rounded, still fits: it goes here. */
    *room = (size_t)(a->end - a->pos);
    return a->pos;
}

char *fan__arena_strndup(fan__arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL; /* len + 1 would be 0 */
    char *p = fan__arena_alloc(a, len + 1);
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
            return fan__arena_alloc(a, (size_t)n + 1); /* n + 1 <= room: at */
    }
    char small[256];
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *p = fan__arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    if ((size_t)n < sizeof small)
        memcpy(p, small, (size_t)n + 1);
    else
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}
