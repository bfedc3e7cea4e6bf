/* Request helpers (cookies, urlencoded forms, JSON bodies, escaping input
 * for upstream URLs) and response helpers (redirects, Set-Cookie). What they
 * parse is cached in the request's context and lives as long as the
 * request. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "app/app.h"
#include "core/url.h"

/* Whether the media type of a Content-Type value is `type` (parameters such
 * as "; charset=utf-8" are ignored). */
static int media_type_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    return ct && strncasecmp(ct, type, n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

static int is_json_type(const char *ct)
{
    if (media_type_is(ct, "application/json"))
        return 1;
    const char *end = ct + strcspn(ct, "; \t");
    return end - ct > 5 && strncasecmp(end - 5, "+json", 5) == 0; /* application/problem+json */
}

static char *trim(char *s, char **end)
{
    while (*s == ' ' || *s == '\t')
        s++;
    while (*end > s && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
        (*end)--;
    **end = '\0';
    return s;
}

/* Adds the "name=value" pairs of one Cookie header (copied into the arena)
 * to ctx->cookies, which has room for them. */
static void parse_cookie_header(fan_req *rq, fan__reqctx *ctx, const char *header)
{
    char *copy = fan__arena_strdup(&rq->rt.arena, header);
    for (char *item = copy; item && *item;) {
        char *next = strchr(item, ';');
        char *end = next ? next : item + strlen(item);
        char *eq = memchr(item, '=', (size_t)(end - item));
        if (eq) {
            char *name_end = eq;
            const char *name = trim(item, &name_end);
            char *v = trim(eq + 1, &end);
            size_t vlen = strlen(v);
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v[vlen - 1] = '\0';
                v++;
            }
            if (*name)
                ctx->cookies[ctx->ncookies++] = (fan__header){name, v};
        }
        item = next ? next + 1 : NULL;
    }
}

const char *fan_req_cookie(const fan_req *crq, const char *name)
{
    fan_req *rq = (fan_req *)crq; /* the parse is cached in the request, see fan__ctx() */
    fan__reqctx *ctx = fan__ctx(rq);
    if (!ctx)
        return NULL;
    if (!ctx->cookies_parsed) {
        size_t max = 0;
        for (unsigned i = 0; i < rq->nheaders; i++) {
            if (strcasecmp(rq->headers[i].name, "Cookie") != 0)
                continue;
            max++; /* one more item than separators */
            for (const char *p = rq->headers[i].value; *p; p++)
                max += *p == ';';
        }
        size_t bytes;
        if (max > UINT_MAX || __builtin_mul_overflow(max, sizeof *ctx->cookies, &bytes))
            return NULL; /* more than ncookies can count */
        ctx->cookies = max ? fan_alloc(rq, bytes) : NULL;
        if (max && !ctx->cookies)
            return NULL;
        for (unsigned i = 0; i < rq->nheaders; i++)
            if (strcasecmp(rq->headers[i].name, "Cookie") == 0)
                parse_cookie_header(rq, ctx, rq->headers[i].value);
        ctx->cookies_parsed = 1;
    }
    for (unsigned i = 0; i < ctx->ncookies; i++)
        if (strcmp(ctx->cookies[i].name, name) == 0)
            return ctx->cookies[i].value;
    return NULL;
}

const char *fan_req_form(const fan_req *rq, const char *name)
{
    if (!media_type_is(fan_req_header(rq, "Content-Type"), "application/x-www-form-urlencoded"))
        return NULL;
    /* The decoded value goes into the request's arena. */
    return fan__query_get(&((fan_req *)rq)->rt.arena, fan_req_body(rq, NULL), name);
}

json_t *fan_req_json(const fan_req *rq)
{
    fan__reqctx *ctx = fan__ctx(rq);
    if (!ctx)
        return NULL;
    if (!ctx->json_parsed) {
        size_t len;
        const char *body = fan_req_body(rq, &len);
        ctx->json_parsed = 1;
        /* The error's 250 bytes only for a request that has a body to parse
         * (in the arena of a request never really const, as in fan__ctx()). */
        if (len && (ctx->json_error = fan_alloc((fan_req *)rq, sizeof *ctx->json_error)))
            ctx->json = fan__json_loadb(body, len, JSON_DECODE_ANY, ctx->json_error);
    }
    return ctx->json;
}

json_t *fan_req_require_json(fan_req *rq)
{
    const char *ct = fan_req_header(rq, "Content-Type");
    if (ct && !is_json_type(ct)) {
        fan_reply_error(rq, 415, "expected a JSON body (Content-Type: application/json)");
        return NULL;
    }
    json_t *j = fan_req_json(rq);
    if (j)
        return j;
    size_t len;
    fan_req_body(rq, &len);
    const fan__reqctx *ctx = rq->ctx;
    if (!ctx || (len && !ctx->json_error)) {
        fan_reply_error(rq, 503, "out of memory");
        return NULL;
    }
    if (len == 0) {
        fan_reply_error(rq, 400, "a JSON body is required");
        return NULL;
    }
    const json_error_t *e = ctx->json_error;
    char msg[256];
    snprintf(msg, sizeof msg, "malformed JSON body: %s at line %d, column %d", e->text, e->line,
             e->column);
    fan_reply_json(rq, 400, json_pack("{s:s, s:i, s:i, s:i}", "error", msg, "status", 400, "line",
                                      e->line, "column", e->column));
    return NULL;
}

char *fan_url_escape(fan_req *rq, const char *s)
{
    return s ? fan__url_escape(&rq->rt.arena, s, strlen(s)) : NULL;
}

char *fan_url_decode(fan_req *rq, const char *s)
{
    char *d = s ? fan__arena_strdup(&rq->rt.arena, s) : NULL;
    return d && fan__url_decode(d, strlen(d), 0) >= 0 ? d : NULL;
}

int fan_reply_redirect(fan_req *rq, int status, const char *location)
{
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
        return FAN_EINVAL;
    if (!location || !*location)
        return FAN_EINVAL;
    int rc = fan_resp_set_header(rq, "Location", location);
    if (rc != 0)
        return rc;
    return fan_reply_printf(rq, status, "Redirecting to %s\n", location);
}

/* RFC 6265: a token name; the value of cookie-octets. */
static int valid_cookie_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127 ||
            strchr("()<>@,;:\\\"/[]?={}", *s))
            return 0;
    return 1;
}

static int valid_cookie_value(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 32 || ch >= 127 || ch == '"' || ch == ',' || ch == ';' || ch == '\\')
            return 0;
    }
    return 1;
}

/* An attribute value: any printable character but ';'. */
static int valid_attribute(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 32 || (unsigned char)*s == 127 || *s == ';')
            return 0;
    return 1;
}

static const char *same_site_name(const char *s)
{
    static const char *const names[] = {"Strict", "Lax", "None"};
    for (int i = 0; i < 3; i++)
        if (strcasecmp(s, names[i]) == 0)
            return names[i];
    return NULL;
}

int fan__cookie_format(fan_req *rq, const char *name, const char *value,
                       const fan_cookie_opts *opts, char **out)
{
    static const fan_cookie_opts none = {0};
    const fan_cookie_opts *o = opts ? opts : &none;
    const char *same_site = o->same_site ? same_site_name(o->same_site) : NULL;
    if (!name || !value || !valid_cookie_name(name) || !valid_cookie_value(value) ||
        (o->path && !valid_attribute(o->path)) || (o->domain && !valid_attribute(o->domain)) ||
        (o->same_site && !same_site))
        return FAN_EINVAL;
    char max_age[64] = "";
    if (o->max_age > 0)
        snprintf(max_age, sizeof max_age, "; Max-Age=%lld", o->max_age);
    else if (o->max_age < 0)
        snprintf(max_age, sizeof max_age, "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    *out = fan_sprintf(rq, "%s=%s%s%s%s%s%s%s%s%s%s", name, value, o->path ? "; Path=" : "",
                       o->path ? o->path : "", o->domain ? "; Domain=" : "",
                       o->domain ? o->domain : "", max_age, o->secure ? "; Secure" : "",
                       o->http_only ? "; HttpOnly" : "", same_site ? "; SameSite=" : "",
                       same_site ? same_site : "");
    return *out ? 0 : FAN_ENOMEM;
}

int fan_resp_set_cookie(fan_req *rq, const char *name, const char *value,
                        const fan_cookie_opts *opts)
{
    char *cookie;
    int rc = fan__cookie_format(rq, name, value, opts, &cookie);
    return rc ? rc : fan_resp_set_header(rq, "Set-Cookie", cookie);
}
