/* A growable byte buffer on the heap, always NUL-terminated when not empty. */
#ifndef FAN_CORE_BUF_H
#define FAN_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct fan__buf {
    char *data;
    size_t len, cap;
} fan__buf;

#define FAN__BUF_INIT {NULL, 0, 0}

/* Makes room for `extra` more bytes (plus the NUL). Returns 0 or FAN_ENOMEM. */
int fan__buf_reserve(fan__buf *b, size_t extra);

/* Appends `len` bytes. Returns 0 or FAN_ENOMEM. */
int fan__buf_append(fan__buf *b, const void *data, size_t len);

/* Appends vsnprintf(fmt, ap)'s text, whatever its length. Returns 0,
 * FAN_ENOMEM, or FAN_EINVAL when the format fails. */
int fan__buf_vprintf(fan__buf *b, const char *fmt, va_list ap);

/* Drops the first `n` bytes, moving the rest to the front. */
void fan__buf_consume(fan__buf *b, size_t n);

/* Frees the storage; the buffer is empty and reusable afterwards. */
void fan__buf_free(fan__buf *b);

#endif
