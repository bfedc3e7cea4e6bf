#include "core/header.h"

#include <limits.h>
#include <string.h>

fan__header *fan__header_slot(fan__arena *a, fan__header **arr, unsigned n, unsigned *cap)
{
    if (n < *cap)
        return &(*arr)[n];
    if (*cap > UINT_MAX / 2)
        return NULL; /* the doubled count would wrap */
    unsigned grown = *cap ? *cap * 2 : 8;
    fan__header *h = fan__arena_alloc(a, grown * sizeof *h);
    if (!h)
        return NULL;
    if (n)
        memcpy(h, *arr, n * sizeof *h);
    *arr = h;
    *cap = grown;
    return &h[n];
}
