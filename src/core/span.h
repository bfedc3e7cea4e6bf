/* A token (a header name, a header value, a request target) that llhttp
 * hands over in pieces, one per read that holds part of it. The common case,
 * a token inside one read, is only referenced where it lies in the read
 * buffer: no copy, no allocation. A token still open when the read ends is
 * copied (fan__span_keep()) before the buffer is reused, and later pieces
 * are appended to the copy. A connection then holds no buffer between
 * tokens. */
#ifndef FAN_CORE_SPAN_H
#define FAN_CORE_SPAN_H

#include <stddef.h>

#include "core/buf.h"

typedef struct fan__span {
    const char *at;  /* the token, in the current read buffer; NULL if copied */
    size_t len;
    fan__buf copy;   /* the token so far once it spans reads */
} fan__span;

/* Adds a piece. Returns 0 or FAN_ENOMEM. */
int fan__span_add(fan__span *s, const char *at, size_t len);

/* Copies a referenced token before its read buffer is reused. Returns 0 or
 * FAN_ENOMEM. */
int fan__span_keep(fan__span *s);

/* The token so far ("" when empty; not NUL-terminated) and its length. */
const char *fan__span_data(const fan__span *s, size_t *len);

/* Empties the span and frees a copy. */
void fan__span_reset(fan__span *s);

#endif
