#include "core/url.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long fan__url_decode(char *s, size_t len, int plus_is_space)
{
    size_t r = 0, w = 0;
    if (len > LONG_MAX)
        return -1; /* its length could not be returned */
    while (r < len) {
        char c = s[r];
        if (c == '%') {
            if (len - r < 3)
                return -1;
            int hi = hexval(s[r + 1]), lo = hexval(s[r + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            s[w++] = (char)(hi * 16 + lo);
            r += 3;
        } else {
            s[w++] = (plus_is_space && c == '+') ? ' ' : c;
            r++;
        }
    }
    s[w] = '\0';
    return (long)w;
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

char *fan__url_escape(fan__arena *a, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (len > (SIZE_MAX - 1) / 3)
        return NULL; /* the result's size would not fit a size_t */
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += unreserved((unsigned char)s[i]) ? 1 : 3;
    char *out = fan__arena_alloc_bytes(a, n + 1);
    if (!out)
        return NULL;
    char *w = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c)) {
            *w++ = (char)c;
            continue;
        }
        *w++ = '%';
        *w++ = hex[c >> 4];
        *w++ = hex[c & 15];
    }
    *w = '\0';
    return out;
}

char *fan__query_get(fan__arena *a, const char *qs, const char *name)
{
    size_t name_len = strlen(name);
    const char *p = qs;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        /* Decoding a key can only shrink it, so a longer decoded name can
         * never match a shorter raw key: skip the copy then. */
        if (klen >= name_len) {
            char *key = fan__arena_strndup(a, p, klen);
            if (!key)
                return NULL;
            long kd = fan__url_decode(key, klen, 1);
            if (kd == (long)name_len && memcmp(key, name, name_len) == 0) {
                if (!eq)
                    return key + kd; /* the empty string after the key */
                size_t vlen = plen - klen - 1;
                char *val = fan__arena_strndup(a, eq + 1, vlen);
                if (!val || fan__url_decode(val, vlen, 1) < 0)
                    return NULL;
                return val;
            }
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}
