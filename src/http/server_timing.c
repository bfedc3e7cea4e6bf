/* The Server-Timing header of a response: one entry per upstream call of
 * the request that finished by the time the head is formatted (a streamed
 * response's head goes out before its later calls end: those are not in
 * it), named after the call without its query, with its duration and, for
 * a failed call, its error as desc; then "handler", the time from the
 * request's first byte to the head. */
#include <string.h>

#include "core/fmt.h"
#include "core/token.h"
#include "http/http.h"

#define NAME_MAX_BYTES 48

/* Writes v < 1000 in `digits` digits (1 to 3) and returns the end. */
static char *put_small(char *p, unsigned v, int digits)
{
    if (digits == 3)
        *p++ = (char)('0' + v / 100);
    if (digits >= 2)
        *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
    return p;
}

/* Writes ms with three decimals ("12.345") and returns the end. Durations
 * under a second, the usual ones, without the general integer writer. */
static char *put_ms(char *p, double seconds)
{
    unsigned long long us = seconds > 0 ? (unsigned long long)(seconds * 1e6 + 0.5) : 0;
    unsigned long long ms = us / 1000;
    if (ms < 1000)
        p = put_small(p, (unsigned)ms, ms >= 100 ? 3 : ms >= 10 ? 2 : 1);
    else
        p = fan__put_uint(p, ms);
    *p++ = '.';
    return put_small(p, (unsigned)(us % 1000), 3);
}

/* What each byte of a call's name becomes in an entry's name: itself (a
 * token character), '_', or 0 for the end ('?', '#' and NUL). */
static char name_byte[256];

static void init_name_bytes(void)
{
    for (int c = 0; c < 256; c++)
        name_byte[c] = fan__tchar[c] ? (char)c : '_';
    name_byte['?'] = name_byte['#'] = name_byte[0] = 0;
}

/* The entry's name: a token made of the call's name, the scheme and the
 * query dropped, other bytes as '_', at most NAME_MAX_BYTES. A lookup a
 * byte: this runs for every call. */
static char *put_name(char *p, const char *name)
{
    if (name[0] == 'h' && name[1] == 't' && name[2] == 't' && name[3] == 'p') {
        size_t scheme = name[4] == ':' ? 4 : name[4] == 's' && name[5] == ':' ? 5 : 0;
        if (scheme && name[scheme + 1] == '/' && name[scheme + 2] == '/')
            name += scheme + 3;
    }
    /* Every byte up to the bound mapped, then the name cut at the first
     * end: a loop without a test of its own to stop at, which unrolls. */
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strnlen(name, NAME_MAX_BYTES);
#pragma GCC unroll 8
    for (size_t i = 0; i < n; i++)
        p[i] = name_byte[s[i]];
    const char *end = memchr(p, 0, n);
    n = end ? (size_t)(end - p) : n;
    return n == 0 ? fan__put(p, "call", 4) : p + n;
}

const char *fan__server_timing(fan_req *rq, size_t *len)
{
    const fan__site *site = fan__site_of(rq->app);
    unsigned shown = 0, omitted = 0;
    if (!name_byte['a'])
        init_name_bytes(); /* once per process; the same result if two threads race */
    fan__list *pos;
    fan__list_each(pos, &rq->rt.call_recs)
    {
        fan__call_rec *r = fan__container_of(pos, fan__call_rec, link);
        if (r->finished != 0)
            shown < site->server_timing_max ? shown++ : omitted++;
    }
    /* name, ";dur=" and 24 digits, ";desc=" and an error name, ", " */
    size_t cap = (size_t)shown * (NAME_MAX_BYTES + 64) + 128, room;
    /* Written in the arena's free space when it fits, and only what it took
     * claimed: the bound is several times the usual length, and claiming it
     * whole would take a new chunk. */
    char *out = fan__arena_room(&rq->rt.arena, &room);
    if (room < cap && !(out = fan__arena_alloc(&rq->rt.arena, cap)))
        return NULL;
    char *p = out;
    unsigned n = 0;
    fan__list_each(pos, &rq->rt.call_recs)
    {
        fan__call_rec *r = fan__container_of(pos, fan__call_rec, link);
        if (r->finished == 0 || n == shown)
            continue;
        n++;
        p = put_name(p, r->name);
        p = fan__put(p, ";dur=", 5);
        p = put_ms(p, r->finished - r->started);
        if (r->error) {
            p = fan__put(p, ";desc=", 6);
            p = fan__put_str(p, fan_errname(r->error));
        }
        p = fan__put(p, ", ", 2);
    }
    if (omitted) {
        p = fan__put(p, "calls-omitted;desc=", 19);
        p = fan__put_uint(p, omitted);
        p = fan__put(p, ", ", 2);
    }
    p = fan__put(p, "handler;dur=", 12);
    p = put_ms(p, fan_now() - rq->started);
    *p = '\0';
    *len = (size_t)(p - out);
    if (room >= cap)
        fan__arena_alloc(&rq->rt.arena, (size_t)(p + 1 - out)); /* out: it fits the room */
    return out;
}
