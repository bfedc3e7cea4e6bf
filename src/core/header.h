/* Header fields: a name and a value, and the growth of an array of them in
 * an arena. The server's request and response headers and an upstream
 * call's response headers are such arrays. */
#ifndef FAN_CORE_HEADER_H
#define FAN_CORE_HEADER_H

#include "core/arena.h"

typedef struct fan__header {
    const char *name, *value;
} fan__header;

/* Makes room for one more field in *arr, which holds n fields with room for
 * *cap (8 at first, then doubled; the old array stays in the arena until it
 * is freed). Returns the slot for field n, or NULL when out of memory or
 * when the capacity would wrap (nothing changes then). */
fan__header *fan__header_slot(fan__arena *a, fan__header **arr, unsigned n, unsigned *cap);

#endif
