#include "core/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"

int fan__buf_reserve(fan__buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return FAN_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return FAN_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int fan__buf_append(fan__buf *b, const void *data, size_t len)
{
    if (fan__buf_reserve(b, len) != 0)
        return FAN_ENOMEM;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int fan__buf_vprintf(fan__buf *b, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    if (n >= 0 && (size_t)n >= room) { /* it did not fit: grow, then again */
        if (fan__buf_reserve(b, (size_t)n) != 0) {
            va_end(again);
            return FAN_ENOMEM;
        }
        n = vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
    }
    va_end(again);
    if (n < 0) {
        if (b->data)
            b->data[b->len] = '\0';
        return FAN_EINVAL;
    }
    b->len += (size_t)n;
    return 0;
}

void fan__buf_consume(fan__buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void fan__buf_free(fan__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
