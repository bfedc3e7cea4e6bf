/* URL decoding and query-string lookup. */
#ifndef FAN_CORE_URL_H
#define FAN_CORE_URL_H

#include <stddef.h>

#include "core/arena.h"

/* Decodes %XX escapes of s[0..len) in place (and '+' as a space when
 * `plus_is_space`), NUL-terminates the result and returns its length, or -1
 * for a malformed escape, an encoded NUL byte or a len beyond LONG_MAX. */
long fan__url_decode(char *s, size_t len, int plus_is_space);

/* Looks up parameter `name` in the raw query string `qs` ("a=1&b=x%20y").
 * Returns the decoded value of its first occurrence copied into the arena,
 * "" for a name with no '=', or NULL when absent, malformed or out of
 * memory. Names are compared after decoding. */
char *fan__query_get(fan__arena *a, const char *qs, const char *name);

#endif
