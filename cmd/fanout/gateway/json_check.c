/* A JSON validator that allocates nothing: a backend's body that the
 * gateway passes into the answer as it came (nothing reads it; at most a
 * select of its top-level members, whose values it reports) is checked with
 * it instead of being parsed and serialized again, which costs several
 * times more. RFC 8259 as jansson's default decoding takes it: an object or
 * an array at the top, UTF-8 checked, nesting up to jansson's limit. */
#include <string.h>

#include "gateway.h"

/* The deepest nesting accepted: jansson's own parser's limit. */
#define GW_JSON_MAX_DEPTH 2048

typedef struct rd {
    const unsigned char *s, *end;
    gw_member_cb cb; /* told of each member of the top object, or NULL */
    void *arg;
} rd;

static void ws(rd *r)
{
    while (r->s < r->end && (*r->s == ' ' || *r->s == '\t' || *r->s == '\n' || *r->s == '\r'))
        r->s++;
}

static int lit(rd *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->s) < n || memcmp(r->s, word, n) != 0)
        return -1;
    r->s += n;
    return 0;
}

/* One UTF-8 sequence beginning with a byte >= 0x80: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static int utf8(rd *r)
{
    unsigned c = *r->s, n, min, cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1, min = 0x80, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2, min = 0x800, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3, min = 0x10000, cp = c & 0x07;
    } else {
        return -1;
    }
    if ((size_t)(r->end - r->s) <= n)
        return -1;
    for (unsigned k = 1; k <= n; k++) {
        if ((r->s[k] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (r->s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    r->s += n + 1;
    return 0;
}

/* The four hex digits after a "\\u" (r->s at the 'u'), or -1. */
static long hex4(rd *r)
{
    long cp = 0;
    if (r->end - r->s < 5)
        return -1;
    for (int k = 1; k <= 4; k++) {
        int c = r->s[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        cp = cp * 16 + d;
    }
    r->s += 5;
    return cp;
}

static int string(rd *r)
{
    r->s++;
    while (r->s < r->end) {
        unsigned c = *r->s;
        if (c == '"') {
            r->s++;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (++r->s >= r->end)
                return -1;
            if (*r->s == 'u') {
                long cp = hex4(r);
                if (cp >= 0xd800 && cp <= 0xdbff) { /* a high surrogate needs its low one */
                    if (r->end - r->s < 2 || r->s[0] != '\\' || r->s[1] != 'u')
                        return -1;
                    r->s++;
                    long lo = hex4(r);
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return -1;
                } else if (cp <= 0 || (cp >= 0xdc00 && cp <= 0xdfff)) {
                    return -1; /* a bad escape, U+0000 (as jansson) or a lone low surrogate */
                }
            } else if (strchr("\"\\/bfnrt", *r->s) && *r->s) {
                r->s++;
            } else {
                return -1;
            }
        } else if (c >= 0x80) {
            if (utf8(r) != 0)
                return -1;
        } else {
            r->s++;
        }
    }
    return -1;
}

static int digits(rd *r)
{
    const unsigned char *at = r->s;
    while (r->s < r->end && *r->s >= '0' && *r->s <= '9')
        r->s++;
    return r->s > at ? 0 : -1;
}

static int number(rd *r)
{
    if (*r->s == '-')
        r->s++;
    if (r->s < r->end && *r->s == '0')
        r->s++;
    else if (digits(r) != 0)
        return -1;
    if (r->s < r->end && *r->s == '.') {
        r->s++;
        if (digits(r) != 0)
            return -1;
    }
    if (r->s < r->end && (*r->s == 'e' || *r->s == 'E')) {
        r->s++;
        if (r->s < r->end && (*r->s == '+' || *r->s == '-'))
            r->s++;
        if (digits(r) != 0)
            return -1;
    }
    return 0;
}

/* One scalar: a string, number, true, false or null. */
static int scalar(rd *r)
{
    switch (*r->s) {
    case '"':
        return string(r);
    case 't':
        return lit(r, "true");
    case 'f':
        return lit(r, "false");
    case 'n':
        return lit(r, "null");
    default:
        return (*r->s == '-' || (*r->s >= '0' && *r->s <= '9')) ? number(r) : -1;
    }
}

/* Iterative, with the open containers in a small array: a deep body costs
 * no stack (the caller may be a coroutine on 64 KiB). */
static int walk(rd *r)
{
    char open[GW_JSON_MAX_DEPTH];
    int depth = 0;
    const unsigned char *key = NULL, *key_end = NULL, *val = NULL;
value:
    ws(r);
    if (r->s >= r->end)
        return -1;
    if (depth == 1 && open[0] == '{')
        val = r->s;
    if (*r->s == '{' || *r->s == '[') {
        if (depth == GW_JSON_MAX_DEPTH)
            return -1;
        open[depth++] = (char)*r->s++;
        ws(r);
        if (r->s < r->end && *r->s == (open[depth - 1] == '{' ? '}' : ']')) {
            r->s++;
            depth--;
            goto after;
        }
        if (open[depth - 1] == '[')
            goto value;
        goto member;
    }
    if (scalar(r) != 0)
        return -1;
after:
    if (depth == 0)
        return 0;
    if (depth == 1 && open[0] == '{' && r->cb && key)
        r->cb((const char *)key + 1, (size_t)(key_end - key - 2),
              memchr(key, '\\', (size_t)(key_end - key)) != NULL, (const char *)val,
              (size_t)(r->s - val), r->arg);
    ws(r);
    if (r->s >= r->end)
        return -1;
    if (*r->s == ',') {
        r->s++;
        if (open[depth - 1] == '[')
            goto value;
        goto member;
    }
    if (*r->s != (open[depth - 1] == '{' ? '}' : ']'))
        return -1;
    r->s++;
    depth--;
    goto after;
member:
    ws(r);
    if (r->s >= r->end || *r->s != '"')
        return -1;
    if (depth == 1)
        key = r->s;
    if (string(r) != 0)
        return -1;
    if (depth == 1)
        key_end = r->s;
    ws(r);
    if (r->s >= r->end || *r->s++ != ':')
        return -1;
    goto value;
}

int gw_json_members(const char *s, size_t len, gw_member_cb cb, void *arg)
{
    rd r = {(const unsigned char *)s, (const unsigned char *)s + len, cb, arg};
    ws(&r);
    if (r.s >= r.end || (*r.s != '{' && *r.s != '[') || walk(&r) != 0)
        return 0;
    ws(&r);
    return r.s == r.end;
}

int gw_json_valid(const char *s, size_t len)
{
    return gw_json_members(s, len, NULL, NULL);
}
