/* Redaction of what observability records (redact.h). */
#include <string.h>
#include <strings.h>

#include "core/redact.h"

static const char *const recordable[] = {
    "accept", "accept-encoding", "accept-language", "content-length", "content-type",
    "host",   "user-agent",      "x-request-id",
};

int fan__header_recordable(const char *name)
{
    char first = (char)(name[0] | 0x20); /* a cheap first test: this runs for every header */
    for (size_t i = 0; i < sizeof recordable / sizeof recordable[0]; i++)
        if (recordable[i][0] == first && strcasecmp(name, recordable[i]) == 0)
            return 1;
    return 0;
}

/* Appends s[0..n) to out at *len, keeping room for the NUL. */
static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (n > cap - 1 - *len)
        n = cap - 1 - *len;
    memcpy(out + *len, s, n);
    *len += n;
}

size_t fan__redact_url(const char *in, char *out, size_t cap)
{
    size_t len = 0, n = strcspn(in, "?#");
    const char *scheme = strstr(in, "://");
    if (scheme && (size_t)(scheme - in) < n) {
        const char *auth = scheme + 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = memchr(auth, '@', alen);
        if (at) {
            put(out, cap, &len, in, (size_t)(auth - in));
            put(out, cap, &len, FAN__REDACTED, strlen(FAN__REDACTED));
            put(out, cap, &len, at, n - (size_t)(at - in));
        } else {
            put(out, cap, &len, in, n);
        }
    } else {
        put(out, cap, &len, in, n);
    }
    if (in[n] == '?') {
        const char *q = in + n + 1, *end = q + strcspn(q, "#");
        put(out, cap, &len, "?", 1);
        while (q < end) {
            const char *amp = memchr(q, '&', (size_t)(end - q));
            const char *stop = amp ? amp : end;
            const char *eq = memchr(q, '=', (size_t)(stop - q));
            put(out, cap, &len, q, (size_t)((eq ? eq + 1 : stop) - q));
            if (eq)
                put(out, cap, &len, FAN__REDACTED, strlen(FAN__REDACTED));
            if (amp)
                put(out, cap, &len, "&", 1);
            q = amp ? amp + 1 : end;
        }
    }
    out[len] = '\0';
    return len;
}
