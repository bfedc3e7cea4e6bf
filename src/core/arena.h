/* A bump allocator for request-scoped memory: many small allocations, one
 * free. Chunks are malloc'ed as needed; large requests get their own chunk. */
#ifndef FAN_CORE_ARENA_H
#define FAN_CORE_ARENA_H

#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>

typedef struct fan__chunk fan__chunk;

typedef struct fan__arena {
    fan__chunk *head;    /* current chunk; older ones follow through ->next */
    char *pos, *end;     /* free space in the current chunk */
} fan__arena;

/* Initialises an empty arena. It allocates nothing until first used. */
void fan__arena_init(fan__arena *a);

/* Frees every chunk. The arena may be used again afterwards. */
void fan__arena_free(fan__arena *a);

/* Returns `size` bytes aligned for any type, or NULL when out of memory
 * (a size near SIZE_MAX, which no chunk could hold, included). */
void *fan__arena_alloc_slow(fan__arena *a, size_t size);

static inline void *fan__arena_alloc(fan__arena *a, size_t size)
{
    /* The common case inline: it fits the current chunk (a size near
     * SIZE_MAX never does, and the rounding cannot wrap below it). */
    const size_t align = alignof(max_align_t);
    if (size <= (size_t)(a->end - a->pos)) {
        size_t rounded = (size + align - 1) & ~(align - 1);
        if (rounded <= (size_t)(a->end - a->pos)) {
            void *p = a->pos;
            a->pos += rounded;
            return p;
        }
    }
    return fan__arena_alloc_slow(a, size);
}

/* The free space left in the current chunk, *room bytes (possibly 0), to
 * write into before claiming it: fan__arena_alloc(a, n) with n <= *room then
 * returns this same pointer. Lets a producer that wants a buffer (vsnprintf,
 * a JSON dump) write in place, and fall back to a copy when it overflows. */
char *fan__arena_room(fan__arena *a, size_t *room);

/* Copies `len` bytes of `s` and NUL-terminates them. NULL when out of memory. */
char *fan__arena_strndup(fan__arena *a, const char *s, size_t len);

/* Copies a NUL-terminated string. NULL when out of memory or s is NULL. */
char *fan__arena_strdup(fan__arena *a, const char *s);

/* vsprintf into the arena. NULL when out of memory. */
char *fan__arena_vsprintf(fan__arena *a, const char *fmt, va_list ap);

#endif
