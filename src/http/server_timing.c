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

/* Writes ms with three decimals ("12.345") and returns the end. */
static char *put_ms(char *p, double seconds)
{
    unsigned long long us = seconds > 0 ? (unsigned long long)(seconds * 1e6 + 0.5) : 0;
    p = fan__put_uint(p, us / 1000);
    *p++ = '.';
    unsigned frac = (unsigned)(us % 1000);
    *p++ = (char)('0' + frac / 100);
    *p++ = (char)('0' + frac / 10 % 10);
    *p++ = (char)('0' + frac % 10);
    return p;
}

/* The entry's name: a token made of the call's name, the scheme and the
 * query dropped, other bytes as '_', at most NAME_MAX_BYTES. */
static char *put_name(char *p, const char *name)
{
    const char *s = strstr(name, "://");
    s = s ? s + 3 : name;
    size_t n = strcspn(s, "?#");
    if (n > NAME_MAX_BYTES)
        n = NAME_MAX_BYTES;
    if (n == 0)
        return fan__put(p, "call", 4);
    for (size_t i = 0; i < n; i++)
        *p++ = fan__is_token(s + i, 1) ? s[i] : '_';
    return p;
}

const char *fan__server_timing(fan_req *rq)
{
    const fan__site *site = fan__site_of(rq->app);
    unsigned shown = 0, omitted = 0;
    fan__list *pos;
    fan__list_each(pos, &rq->rt.call_recs)
    {
        fan__call_rec *r = fan__container_of(pos, fan__call_rec, link);
        if (r->finished != 0)
            shown < site->server_timing_max ? shown++ : omitted++;
    }
    /* name, ";dur=" and 24 digits, ";desc=" and an error name, ", " */
    size_t cap = (size_t)shown * (NAME_MAX_BYTES + 64) + 128;
    char *out = fan__arena_alloc(&rq->rt.arena, cap), *p = out;
    if (!out)
        return NULL;
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
    return out;
}
