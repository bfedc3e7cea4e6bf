/* What observability records of a request and its calls, and what it
 * leaves out (redact.c): URLs with their query values, credentials and
 * fragment replaced, and the allow-list of headers that may be recorded.
 * Cookies and Authorization are never on the list. */
#ifndef FAN_CORE_REDACT_H
#define FAN_CORE_REDACT_H

#include <stddef.h>

#define FAN__REDACTED "REDACTED"

/* Copies the path or URL `in` to out (cap > 0 bytes, NUL-terminated, cut
 * when it does not fit) with every query value replaced by REDACTED
 * ("/a?k=v&f" -> "/a?k=REDACTED&f"), the userinfo of an absolute URL
 * replaced ("http://u:p@h/" -> "http://REDACTED@h/") and the fragment
 * dropped. Returns the length written. */
size_t fan__redact_url(const char *in, char *out, size_t cap);

/* Whether a header of this name may be recorded (waterfall, spans). */
int fan__header_recordable(const char *name);

#endif
