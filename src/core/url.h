/* URL encoding and decoding, and query-string lookup. */
#ifndef FAN_CORE_URL_H
#define FAN_CORE_URL_H

#include <stddef.h>

#include "core/arena.h"

/* Decodes %XX escapes of s[0..len) in place (and '+' as a space when
 * `plus_is_space`), NUL-terminates the result and returns its length, or -1
 * for a malformed escape, an encoded NUL byte or a len beyond LONG_MAX. */
long fan__url_decode(char *s, size_t len, int plus_is_space);

/* Percent-encodes s[0..len) into the arena (RFC 3986): every byte but the
 * unreserved A-Z a-z 0-9 - . _ ~ becomes %XX with upper-case hex digits, so
 * the result is safe in a path segment and in a query name or value.
 * Returns the NUL-terminated copy, or NULL when out of memory. A NUL byte
 * becomes %00, which fan__url_decode() refuses. */
char *fan__url_escape(fan__arena *a, const char *s, size_t len);

/* Looks up parameter `name` in the raw query string `qs` ("a=1&b=x%20y").
 * Returns the decoded value of its first occurrence copied into the arena,
 * "" for a name with no '=', or NULL when absent, malformed or out of
 * memory. Names are compared after decoding. */
char *fan__query_get(fan__arena *a, const char *qs, const char *name);

#endif
