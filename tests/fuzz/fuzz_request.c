/* The server's request parsing on arbitrary bytes.
 *
 * conn.c's llhttp callbacks are static and reach the event loop (timers, the
 * 100-continue and error replies go through the connection's uv_tcp_t), so
 * they cannot be called without a running server. This target mirrors them:
 * the same llhttp settings in request mode, the same limits (an app's
 * defaults), the same target splitting and header checks, and the requests
 * stored in a real fan_req's arena. Each complete request is then routed and
 * its query searched, with the library's own fan__router_match and
 * fan__query_get, as request.c does. Keep the callbacks below in step with
 * src/http/conn.c.
 *
 * The first input byte sets the size of the pieces the rest is fed in, so
 * that every callback also sees its data split across reads. Pipelined
 * requests are parsed one after the other, as process_buffered() does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/url.h"
#include "fanout.h"
#include "http/http.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fconn {
    fan_limits limits;
    fan_req *rq;
    fan__buf field, value;
    size_t head_bytes;
    int error_status;
    unsigned served;
} fconn;

static fan__router *router;
static fan_limits default_limits;
static char h_get, h_post;

static void req_free(fan_req *rq)
{
    if (!rq)
        return;
    fan__buf_free(&rq->body);
    fan__arena_free(&rq->arena);
    free(rq);
}

static int limit_hit(fconn *c, int status)
{
    c->error_status = status;
    return -1;
}

static int count_head(fconn *c, size_t len)
{
    c->head_bytes += len;
    return c->head_bytes > c->limits.max_header_bytes ? limit_hit(c, 431) : 0;
}

static int on_message_begin(llhttp_t *p)
{
    fconn *c = p->data;
    req_free(c->rq); /* cannot happen: a message ends before the next begins */
    c->rq = calloc(1, sizeof *c->rq);
    if (!c->rq)
        return limit_hit(c, 503);
    fan__arena_init(&c->rq->arena);
    c->head_bytes = 0;
    c->field.len = c->value.len = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    fconn *c = p->data;
    if (count_head(c, len))
        return -1;
    return fan__buf_append(&c->field, at, len) ? limit_hit(c, 503) : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    fconn *c = p->data;
    if (count_head(c, len + 4))
        return -1;
    return fan__buf_append(&c->field, at, len) ? limit_hit(c, 503) : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    fconn *c = p->data;
    if (count_head(c, len))
        return -1;
    return fan__buf_append(&c->value, at, len) ? limit_hit(c, 503) : 0;
}

static int split_target(fan_req *rq, const char *t, size_t len)
{
    if (len > 7 && (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0)) {
        const char *rest = memchr(t + 8, '/', len - 8);
        if (!rest)
            return -1;
        len -= (size_t)(rest - t);
        t = rest;
    }
    if (len == 0 || t[0] != '/')
        return -1;
    const char *q = memchr(t, '?', len);
    size_t plen = q ? (size_t)(q - t) : len;
    rq->raw_path = fan__arena_strndup(&rq->arena, t, plen);
    rq->path = fan__arena_strndup(&rq->arena, t, plen);
    rq->query = q ? fan__arena_strndup(&rq->arena, q + 1, len - plen - 1) : NULL;
    if (!rq->raw_path || !rq->path || (q && !rq->query))
        return -1;
    return fan__url_decode(rq->path, plen, 0) < 0 ? -1 : 0;
}

static int on_url_complete(llhttp_t *p)
{
    fconn *c = p->data;
    int rc = split_target(c->rq, c->field.data ? c->field.data : "", c->field.len);
    c->field.len = 0;
    return rc ? limit_hit(c, 400) : 0;
}

static int is_token(const char *s, size_t len)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch && strchr(extra, ch))))
            return 0;
    }
    return 1;
}

static int on_header_value_complete(llhttp_t *p)
{
    fconn *c = p->data;
    fan_req *rq = c->rq;
    if (rq->method) {
        c->field.len = c->value.len = 0;
        return 0;
    }
    if (!is_token(c->field.data, c->field.len))
        return limit_hit(c, 400);
    if (rq->nheaders >= c->limits.max_headers)
        return limit_hit(c, 431);
    if (rq->nheaders % 16 == 0) {
        fan__header *h = fan__arena_alloc(&rq->arena, (rq->nheaders + 16) * sizeof *h);
        if (!h)
            return limit_hit(c, 503);
        if (rq->nheaders)
            memcpy(h, rq->headers, rq->nheaders * sizeof *h);
        rq->headers = h;
    }
    fan__header *h = &rq->headers[rq->nheaders++];
    h->name = fan__arena_strndup(&rq->arena, c->field.data ? c->field.data : "", c->field.len);
    h->value = fan__arena_strndup(&rq->arena, c->value.data ? c->value.data : "", c->value.len);
    c->field.len = c->value.len = 0;
    return h->name && h->value ? 0 : limit_hit(c, 503);
}

static unsigned host_count(const fan_req *rq)
{
    unsigned n = 0;
    for (unsigned i = 0; i < rq->nheaders; i++)
        n += strcasecmp(rq->headers[i].name, "Host") == 0;
    return n;
}

static int on_headers_complete(llhttp_t *p)
{
    fconn *c = p->data;
    fan_req *rq = c->rq;
    rq->method = (char *)llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    rq->http_minor = p->http_major == 1 ? p->http_minor : 0;
    rq->head = strcmp(rq->method, "HEAD") == 0;
    if (p->http_major == 1 && p->http_minor >= 1 && host_count(rq) != 1)
        return limit_hit(c, 400);
    int has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->limits.max_body_bytes)
        return limit_hit(c, 413);
    const char *expect = fan_header(rq, "Expect");
    if (expect && has_body && strcasecmp(expect, "100-continue") != 0)
        return limit_hit(c, 417);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    fconn *c = p->data;
    fan_req *rq = c->rq;
    if (rq->body.len + len > c->limits.max_body_bytes)
        return limit_hit(c, 413);
    return fan__buf_append(&rq->body, at, len) ? limit_hit(c, 503) : 0;
}

static int on_message_complete(llhttp_t *p)
{
    fconn *c = p->data;
    c->rq->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* What request.c does first with a parsed request: route it, then what a
 * handler would typically read. */
static void serve(fconn *c)
{
    fan_req *rq = c->rq;
    if (!rq->method || !rq->raw_path)
        abort(); /* a complete message has had its head */
    if (rq->body.len > c->limits.max_body_bytes)
        abort();
    int rc = fan__router_match(router, rq->method, rq->raw_path, &rq->match, &rq->arena);
    if (rc == 0 && rq->match.status == 200 && !rq->match.handler)
        abort();
    if (rq->query)
        (void)fan__query_get(&rq->arena, rq->query, "q");
    (void)fan_header(rq, "content-type");
    c->served++;
    req_free(rq);
    c->rq = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!router) {
        fan_app *app = fan_app_new();
        if (!app || !(router = fan__router_new()) ||
            fan__router_add(router, "GET", "/items/:id", &h_get) ||
            fan__router_add(router, "POST", "/items", &h_post) ||
            fan__router_add(router, "GET", "/static/*", &h_get))
            abort();
        default_limits = app->limits;
        /* Smaller than the defaults so that the fuzzer reaches them. */
        default_limits.max_header_bytes = 1024;
        default_limits.max_headers = 20;
        default_limits.max_body_bytes = 4096;
        fan_app_free(app);
    }
    if (size == 0)
        return 0;
    size_t piece = data[0] ? data[0] : size;
    data++;
    size--;

    fconn c = {.limits = default_limits};
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = &c;

    size_t off = 0;
    while (off < size) {
        const char *at = (const char *)data + off;
        size_t len = size - off < piece ? size - off : piece;
        llhttp_errno_t err = llhttp_execute(&parser, at, len);
        if (err == HPE_OK) {
            off += len;
            continue;
        }
        if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
            const char *pos = llhttp_get_error_pos(&parser);
            if (pos < at || pos > at + len)
                abort();
            off += (size_t)(pos - at);
            if (!c.rq) {
                off = size; /* an upgrade: the rest is not HTTP */
                break;
            }
            int keep = c.rq->keep_alive;
            serve(&c);
            if (!keep)
                break; /* conn.c closes after answering */
            llhttp_resume(&parser);
            continue;
        }
        /* A malformed request: conn.c answers error_status (or 400) and
         * closes. The status must be one it knows. */
        if (c.error_status && c.error_status != 400 && c.error_status != 413 &&
            c.error_status != 417 && c.error_status != 431 && c.error_status != 503)
            abort();
        break;
    }
    req_free(c.rq); /* a request cut short by the end of the input */
    fan__buf_free(&c.field);
    fan__buf_free(&c.value);
    return 0;
}
