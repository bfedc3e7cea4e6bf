/* A bump allocator for request-scoped memory: many small allocations, one
 * free. Chunks are malloc'ed as needed; large requests get their own chunk.
 * The first chunk may be memory the arena does not own (fan__arena_init_in). */
#ifndef FAN_CORE_ARENA_H
#define FAN_CORE_ARENA_H

#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fan__chunk fan__chunk;

typedef struct fan__arena {
    fan__chunk *head;    /* current chunk; older ones follow through ->next */
    char *pos, *end;     /* free space in the current chunk */
    fan__chunk *lent;    /* the first chunk when it is fan__arena_init_in()'s, else NULL */
} fan__arena;

/* Initialises an empty arena. It allocates nothing until first used. */
void fan__arena_init(fan__arena *a);

/* Initialises an arena whose first chunk is the `size` bytes at `mem`
 * (16-byte aligned), which stay the caller's: fan__arena_free() leaves them
 * alone, and the caller keeps them until it has freed the arena. Chunks
 * are malloc'ed once they are full. */
void fan__arena_init_in(fan__arena *a, void *mem, size_t size);

/* Frees every chunk (but a lent one). The arena is empty afterwards and may
 * be used again. */
void fan__arena_free(fan__arena *a);

/* The slow paths of the two below: a new chunk. */
void *fan__arena_alloc_slow(fan__arena *a, size_t size, size_t align);

/* Returns `size` bytes aligned for any type, or NULL when out of memory
 * (a size near SIZE_MAX, which no chunk could hold, included). */
static inline void *fan__arena_alloc(fan__arena *a, size_t size)
{
    /* The common case inline: it fits the current chunk once its start is
     * aligned (a size near SIZE_MAX never does). */
    const uintptr_t align = alignof(max_align_t), end = (uintptr_t)a->end;
    uintptr_t p = ((uintptr_t)a->pos + align - 1) & ~(align - 1);
    if (p <= end && size <= end - p) {
        a->pos = (char *)p + size;
        return (void *)p;
    }
    return fan__arena_alloc_slow(a, size, align);
}

/* Returns `size` bytes with no alignment, for text: strings packed end to
 * end instead of each rounded up to 16. NULL when out of memory. */
static inline char *fan__arena_alloc_bytes(fan__arena *a, size_t size)
{
    if (size <= (size_t)(a->end - a->pos)) {
        char *p = a->pos;
        a->pos += size;
        return p;
    }
    return fan__arena_alloc_slow(a, size, 1);
}

/* The free space left in the current chunk, *room bytes (possibly 0), to
 * write into before claiming it: fan__arena_alloc(a, n) or
 * fan__arena_alloc_bytes(a, n) with n <= *room then returns this same
 * pointer (it is aligned for any type). Lets a producer that wants a buffer (vsnprintf,
 * a JSON dump) write in place, and fall back to a copy when it overflows. */
char *fan__arena_room(fan__arena *a, size_t *room);

/* Copies `len` bytes of `s` and NUL-terminates them. NULL when out of memory. */
char *fan__arena_strndup(fan__arena *a, const char *s, size_t len);

/* Copies a NUL-terminated string. NULL when out of memory or s is NULL. */
char *fan__arena_strdup(fan__arena *a, const char *s);

/* vsprintf into the arena. NULL when out of memory. */
char *fan__arena_vsprintf(fan__arena *a, const char *fmt, va_list ap);

#endif
