/* Redis URLs: redis://[user[:password]@]host[:port][/db], with user and
 * password percent-decoded, and the form logs show (the password never). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/url.h"
#include "redis/redis.h"

/* Copies s[0..n) into out (cap bytes), percent-decoded. Returns 0 or -1. */
static int copy_decoded(char *out, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    long len = fan__url_decode(out, n, 0);
    if (len < 0 || memchr(out, '\0', (size_t)len))
        return -1;
    out[len] = '\0';
    return 0;
}

static int number(const char *s, size_t n, long max, int *out)
{
    if (n == 0 || n > 6)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int fail(char *why, size_t whylen, const char *what)
{
    snprintf(why, whylen, "%s", what);
    return FAN_EINVAL;
}

int fan__redis_url_parse(const char *url, fan__redis_url *out, char *why, size_t whylen)
{
    static const char scheme[] = "redis://";
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!url || strncmp(url, scheme, sizeof scheme - 1) != 0)
        return fail(why, whylen, "expected redis://[user[:password]@]host[:port][/db]");
    const char *p = url + sizeof scheme - 1;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *uend = colon ? colon : at;
        if (copy_decoded(out->user, sizeof out->user, p, (size_t)(uend - p)) ||
            (colon &&
             copy_decoded(out->pass, sizeof out->pass, colon + 1, (size_t)(at - colon - 1))))
            return fail(why, whylen, "bad user or password in the Redis URL");
        p = at + 1;
    }
    const char *hend = end;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return fail(why, whylen, "unclosed [ in the Redis URL's host");
        if ((size_t)(close - p - 1) >= sizeof out->host)
            return fail(why, whylen, "the Redis URL's host is too long");
        memcpy(out->host, p + 1, (size_t)(close - p - 1));
        hend = close + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        hend = colon ? colon : end;
        if ((size_t)(hend - p) >= sizeof out->host)
            return fail(why, whylen, "the Redis URL's host is too long");
        memcpy(out->host, p, (size_t)(hend - p));
    }
    if (!out->host[0])
        return fail(why, whylen, "the Redis URL has no host");
    if (hend < end) {
        if (*hend != ':' || number(hend + 1, (size_t)(end - hend - 1), 65535, &out->port) ||
            out->port == 0)
            return fail(why, whylen, "bad port in the Redis URL");
    }
    if (*end == '/' && end[1]) {
        if (number(end + 1, strlen(end + 1), 100000, &out->db))
            return fail(why, whylen, "bad database number in the Redis URL (expected /N)");
    } else if (*end && strcmp(end, "/") != 0) {
        return fail(why, whylen, "unexpected query or fragment in the Redis URL");
    }
    const char *bracket = strchr(out->host, ':') ? "[" : "";
    snprintf(out->shown, sizeof out->shown, "redis://%s%s%s%s%s%s:%d/%d", out->user,
             out->pass[0] ? ":***" : "", out->user[0] || out->pass[0] ? "@" : "", bracket,
             out->host, *bracket ? "]" : "", out->port, out->db);
    return 0;
}
