/* Text building on hot paths (response heads, request heads, URLs), where
 * printf's generality costs more than the work: copies and integers by hand,
 * and a formatter for the common conversions that falls back to vsnprintf
 * for the rest. */
#ifndef FAN_CORE_FMT_H
#define FAN_CORE_FMT_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

/* Copies n bytes to p and returns the end. */
static inline char *fan__put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static inline char *fan__put_str(char *p, const char *s)
{
    return fan__put(p, s, strlen(s));
}

/* Writes v in decimal (at most 20 bytes) and returns the end. */
char *fan__put_uint(char *p, unsigned long long v);

/* vsnprintf(out, cap, fmt, ap) for formats made only of %s, %.*s, %c, %%,
 * and %d %i %u, alone or with the l, ll, z or j length modifiers: returns the
 * length written (NUL included in cap). Returns -1 for any other format
 * (flags, widths, floats, %x, %p, ...) or when the text does not fit in
 * cap: the caller then uses vsnprintf with its own copy of the arguments. */
int fan__fmt(char *out, size_t cap, const char *fmt, va_list ap);

#endif
