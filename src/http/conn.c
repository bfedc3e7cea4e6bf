/* Server connections: reading, parsing with llhttp, limits and timeouts,
 * and handing complete requests to request.c one at a time, in order. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/url.h"
#include "core/token.h"
#include "http/http.h"

#define READ_CHUNK 65536

/* What the connection's one timer waits for. They never overlap: a write is
 * queued only while a request is served (no head, body or idle timer then)
 * or after an error reply that closes the connection. */
enum { T_NONE, T_HEAD, T_BODY, T_IDLE, T_WRITE, T_HANDSHAKE };

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);

static fan__conn *parser_conn(llhttp_t *p)
{
    return p->data;
}

static void set_timer(fan__conn *c, int kind);

/* Fails the request being parsed with `status` (our callbacks return -1). */
static int limit_hit(fan__conn *c, int status)
{
    c->error_status = status;
    return -1;
}

static int count_head(fan__conn *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > fan__site_of(c->app)->limits.max_header_bytes)
        return limit_hit(c, 431);
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    fan__conn *c = parser_conn(p);
    c->rq = fan__req_new(c);
    if (!c->rq)
        return limit_hit(c, 503);
    c->head_bytes = 0;
    fan__span_reset(&c->field);
    fan__span_reset(&c->value);
    set_timer(c, T_HEAD);
    return 0;
}

/* Counts a piece of the head and checks the framing around it. */
static int head_piece(fan__conn *c, const char *at, size_t len, size_t counted)
{
    if (count_head(c, counted))
        return -1;
    return fan__h1_head_piece(&c->h1, at, len) ? limit_hit(c, 400) : 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    fan__conn *c = parser_conn(p);
    if (head_piece(c, at, len, len))
        return -1;
    return fan__span_add(&c->field, at, len) ? limit_hit(c, 503) : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    fan__conn *c = parser_conn(p);
    if (head_piece(c, at, len, len + 4))
        return -1;
    return fan__span_add(&c->field, at, len) ? limit_hit(c, 503) : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    fan__conn *c = parser_conn(p);
    if (head_piece(c, at, len, len))
        return -1;
    return fan__span_add(&c->value, at, len) ? limit_hit(c, 503) : 0;
}

/* Splits the request target into the raw path, the decoded path and the
 * query. Absolute-form targets ("http://host/path") are reduced to their
 * path. Returns 0 or -1 for a target we cannot serve. */
int fan__req_set_target(fan_req *rq, const char *t, size_t len)
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
    rq->raw_path = fan__arena_strndup(&rq->rt.arena, t, plen);
    rq->path = fan__arena_strndup(&rq->rt.arena, t, plen);
    rq->query = q ? fan__arena_strndup(&rq->rt.arena, q + 1, len - plen - 1) : NULL;
    if (!rq->raw_path || !rq->path || (q && !rq->query))
        return -1;
    return fan__url_decode(rq->path, plen, 0) < 0 ? -1 : 0;
}

static int on_url_complete(llhttp_t *p)
{
    fan__conn *c = parser_conn(p);
    size_t len;
    const char *target = fan__span_data(&c->field, &len);
    int rc = fan__req_set_target(c->rq, target, len);
    fan__span_reset(&c->field);
    return rc ? limit_hit(c, 400) : 0;
}

/* A header name that is not an RFC 9110 token (a space before the colon, a
 * control character) is rejected, not guessed at. */
static int on_header_value_complete(llhttp_t *p)
{
    fan__conn *c = parser_conn(p);
    fan_req *rq = c->rq;
    if (rq->method) {
        /* A trailer after a chunked body: never merged into the request's
         * headers, where it could add what the head did not say. */
        fan__span_reset(&c->field);
        fan__span_reset(&c->value);
        return 0;
    }
    size_t nlen, vlen;
    const char *name = fan__span_data(&c->field, &nlen);
    const char *value = fan__span_data(&c->value, &vlen);
    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        vlen--; /* llhttp drops the leading whitespace only (RFC 9110 5.5: both) */
    if (!fan__is_token(name, nlen))
        return limit_hit(c, 400);
    if (rq->nheaders >= fan__site_of(c->app)->limits.max_headers)
        return limit_hit(c, 431);
    fan__header *h = fan__header_slot(&rq->rt.arena, &rq->headers, rq->nheaders, &rq->headers_cap);
    if (!h)
        return limit_hit(c, 503);
    rq->nheaders++;
    h->name = fan__arena_strndup(&rq->rt.arena, name, nlen);
    h->value = fan__arena_strndup(&rq->rt.arena, value, vlen);
    fan__span_reset(&c->field);
    fan__span_reset(&c->value);
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
    fan__conn *c = parser_conn(p);
    fan_req *rq = c->rq;
    const fan_limits *lim = &fan__site_of(c->app)->limits;
    if (fan__h1_head_end(&c->h1))
        return limit_hit(c, 400);
    rq->method = (char *)llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    rq->http_minor = p->http_major == 1 ? p->http_minor : 0;
    rq->head = strcmp(rq->method, "HEAD") == 0;
    if (p->http_major == 1 && p->http_minor >= 1 && host_count(rq) != 1)
        return limit_hit(c, 400); /* RFC 9112 3.2: exactly one Host */
    int has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > lim->max_body_bytes)
        return limit_hit(c, 413);
    const char *expect = fan_req_header(rq, "Expect");
    if (expect && has_body) {
        if (strcasecmp(expect, "100-continue") != 0)
            return limit_hit(c, 417);
        if (rq->http_minor >= 1)
            fan__reply_raw(c, 100, NULL, NULL, 0);
    }
    set_timer(c, has_body ? T_BODY : T_NONE);
    return 0;
}

static int on_chunk_header(llhttp_t *p)
{
    fan__h1_chunk_header(&parser_conn(p)->h1, p->content_length);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    fan__conn *c = parser_conn(p);
    fan_req *rq = c->rq;
    if (fan__h1_body(&c->h1, at, len))
        return limit_hit(c, 400);
    if (rq->body.len + len > fan__site_of(c->app)->limits.max_body_bytes)
        return limit_hit(c, 413);
    return fan__buf_append(&rq->body, at, len) ? limit_hit(c, 503) : 0;
}

static int on_message_complete(llhttp_t *p)
{
    fan__conn *c = parser_conn(p);
    if (fan__h1_head_end(&c->h1)) /* after a trailer section */
        return limit_hit(c, 400);
    /* After an Upgrade request the bytes that follow are not HTTP/1.1: answer
     * it as a plain request and close. */
    c->rq->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
    /* Stop here: the next pipelined request is parsed only once this one is
     * answered, so that answers go out in order. */
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
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};


static void conn_free_if_closed(fan__conn *c)
{
    if (c->handles > 0 || c->rq || c->writes > 0)
        return;
    fan__buf_free(&c->in);
    fan__span_reset(&c->field);
    fan__span_reset(&c->value);
    fan__h2_free(c);
    fan__tls_conn_free(c);
    free(c);
}

static void handle_closed(uv_handle_t *h)
{
    fan__conn *c = h->data;
    c->handles--;
    conn_free_if_closed(c);
}

void fan__conn_handle_closed(uv_handle_t *h)
{
    handle_closed(h); /* h->data is the connection */
}

void fan__conn_close(fan__conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    fan__srv()->nconns--;
    fan__list_remove(&c->link);
    fan__timeout_stop(&c->timeout);
    fan__tls_close(c);
    if (!c->reset || uv_tcp_close_reset(&c->tcp, handle_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, handle_closed);
    if (c->h2)
        fan__h2_conn_closed(c); /* every stream's request is cancelled */
    fan_req *rq = c->rq;
    if (!rq)
        return;
    c->rq = NULL;
    if (c->serving) {
        /* A running request loses its client: it is cancelled (its calls are
         * aborted) and detaches itself from the connection. */
        fan__req_conn_gone(rq);
    } else {
        /* Parsed partially, never started: nothing else refers to it. */
        rq->conn = NULL;
        rq->rt.handler_done = 1;
        fan__req_notify(rq);
    }
}

/* Makes the coming close a reset: a graceful close would leave the unsent
 * part of the response in the kernel (up to the socket's send buffer) for a
 * peer that does not read it. */
static void reset_on_close(fan__conn *c)
{
    uv_os_fd_t fd;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static void timer_fired(fan__timeout *t)
{
    fan__conn *c = fan__container_of(t, fan__conn, timeout);
    if (c->timer_kind == T_WRITE) {
        /* Closing cancels the write (UV_ECANCELED), which releases the
         * request and the response it holds. */
        fan_log(FAN_LOG_INFO, "response not taken by the client within %u ms; closing the "
                "connection", fan__site_of(c->app)->limits.write_timeout_ms);
        reset_on_close(c);
        fan__conn_close(c);
    } else if (c->timer_kind == T_HANDSHAKE) {
        fan_log(FAN_LOG_INFO, "TLS handshake not completed within %u ms; closing the "
                "connection", fan__site_of(c->app)->limits.tls_handshake_timeout_ms);
        fan__conn_close(c);
    } else if (c->h2) {
        if (c->timer_kind == T_BODY)
            fan_log(FAN_LOG_INFO, "HTTP/2 request not received in time; closing the connection");
        fan__conn_close(c); /* or an idle HTTP/2 connection */
    } else if (c->rq && !c->serving) {
        fan_log(FAN_LOG_INFO, "request not received in time (408); closing the connection");
        c->close_after_write = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
        fan__reply_raw(c, 408, NULL, "request not received in time", 1);
    } else {
        fan__conn_close(c); /* idle keep-alive connection */
    }
}

static void set_timer(fan__conn *c, int kind)
{
    const fan_limits *lim = &fan__site_of(c->app)->limits;
    unsigned ms = kind == T_HEAD   ? lim->header_timeout_ms
                  : kind == T_BODY ? lim->body_timeout_ms
                  : kind == T_IDLE ? lim->idle_timeout_ms
                  : kind == T_WRITE ? lim->write_timeout_ms
                  : kind == T_HANDSHAKE ? lim->tls_handshake_timeout_ms
                                   : 0;
    /* The head timer runs from the first byte of the request: re-arming it on
     * every read would let a slow client trickle headers forever. */
    if (kind == T_HEAD && c->timer_kind == T_HEAD)
        return;
    c->timer_kind = kind;
    /* A closing connection keeps no timeout: its memory goes once its
     * handles are closed (as libuv refuses to start a closing timer). */
    if (!ms || c->closing) {
        fan__timeout_stop(&c->timeout);
    } else if (fan__timeout_start(&c->timeout, ms, ms, timer_fired) != 0) {
        /* The thread's first timeout of this duration found no memory for
         * its queue: a connection without its timeout would wait forever. */
        fan_log(FAN_LOG_ERROR, "out of memory for a connection's timeout: closing it");
        fan__conn_close(c);
    }
}

void fan__conn_handshake_done(fan__conn *c)
{
    if (c->timer_kind == T_HANDSHAKE)
        set_timer(c, T_IDLE);
    if (fan__tls_h2(c) && fan__h2_start(c) != 0) {
        fan_log(FAN_LOG_ERROR, "out of memory for an HTTP/2 session: closing the connection");
        fan__conn_close(c);
    }
}

void fan__conn_h2_timer(fan__conn *c, unsigned open_streams, unsigned receiving, int pending,
                        int input, int progress)
{
    if (c->closing)
        return;
    if (pending) {
        if (progress || c->timer_kind != T_WRITE)
            set_timer(c, T_WRITE);
    } else if (receiving) {
        if (input || c->timer_kind != T_BODY)
            set_timer(c, T_BODY);
    } else if (!open_streams) {
        if (c->timer_kind != T_IDLE)
            set_timer(c, T_IDLE);
    } else {
        set_timer(c, T_NONE);
    }
}

int fan__conn_write(fan__conn *c, uv_write_t *w, uv_buf_t *bufs, unsigned nbufs, uv_write_cb cb)
{
    if (c->tls)
        return fan__tls_write(c, w, bufs, nbufs, cb, 1);
    return fan__stream_write((uv_stream_t *)&c->tcp, w, bufs, nbufs, cb);
}

void fan__conn_write_queued(fan__conn *c)
{
    if (!c->closing)
        set_timer(c, T_WRITE);
}

void fan__conn_write_done(fan__conn *c)
{
    if (!c->closing && c->timer_kind == T_WRITE)
        set_timer(c, T_NONE);
}

static void fail(fan__conn *c, int status, const char *why)
{
    fan_log(FAN_LOG_INFO, "bad request (%d): %s; closing the connection", status, why);
    c->close_after_write = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    set_timer(c, T_NONE);
    fan__reply_raw(c, status, NULL, why, 1);
}

static const char *status_reason(int status)
{
    switch (status) {
    case 400: return "malformed request target or header";
    case 413: return "request body too large";
    case 417: return "unsupported expectation";
    case 431: return "request header fields too large";
    case 503: return "out of memory";
    default: return NULL;
    }
}

/* Answers a malformed request (400 unless a callback said otherwise) and
 * closes the connection. Returns -1. */
static int parse_failed(fan__conn *c)
{
    const char *why = c->h1.why ? c->h1.why : status_reason(c->error_status);
    if (!why)
        why = llhttp_get_error_reason(&c->parser);
    fail(c, c->error_status ? c->error_status : 400, why ? why : "malformed request");
    return -1;
}

/* Feeds bytes to the parser. Returns 1 when a complete request was handed
 * over (parsing paused), 0 when more input is needed, -1 when the request was
 * malformed (the connection is answered and closed). *used is set to the
 * bytes consumed. */
static int process(fan__conn *c, const char *data, size_t len, size_t *used)
{
    *used = len;
    if (fan__h1_input(&c->h1, data, len))
        return parse_failed(c);
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK) {
        if (fan__h1_input_end(&c->h1))
            return parse_failed(c);
        /* A head cut by the end of this input: `data` is about to be reused. */
        if (fan__span_keep(&c->field) || fan__span_keep(&c->value)) {
            fail(c, 503, "out of memory");
            return -1;
        }
        if (c->rq) /* in the middle of a request: head or body timer */
            set_timer(c, c->rq->method ? T_BODY : T_HEAD);
        return 0;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        *used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        fan_req *rq = c->rq;
        if (!rq) {
            /* Only an upgrade pause comes without a request: the request
             * before it is answered and the connection closes. */
            *used = len;
            return 0;
        }
        if (!rq->keep_alive || fan__srv()->stopping)
            c->close_after_write = 1;
        set_timer(c, T_NONE);
        c->serving = 1;
        fan__req_start(rq);
        return 1;
    }
    return parse_failed(c);
}

/* Parses what is buffered, one request at a time, while none is served. */
static void process_buffered(fan__conn *c)
{
    c->processing++;
    while (!c->closing && !c->serving && !c->close_after_write && c->in.len > 0) {
        size_t used = 0;
        int rc = process(c, c->in.data, c->in.len, &used);
        fan__buf_consume(&c->in, used);
        if (rc < 0)
            break;
    }
    c->processing--;
    if (c->in.len == 0 && c->in.cap > READ_CHUNK) /* do not keep a burst's memory */
        fan__buf_free(&c->in);
}

void fan__conn_request_done(fan__conn *c)
{
    c->rq = NULL;
    c->serving = 0;
    c->served++;
    if (c->closing) {
        conn_free_if_closed(c);
        return;
    }
    if (c->close_after_write) {
        fan__conn_close(c);
        return;
    }
    llhttp_resume(&c->parser);
    set_timer(c, T_IDLE);
    if (!c->reading && !c->eof) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    }
    /* A request that ends inside process() (a 404 answered at once) returns
     * here while process_buffered() is still on the stack: it goes on. */
    if (!c->processing)
        process_buffered(c);
    /* Graceful stop: a request answered before the stop began did not say
     * Connection: close; its connection must not wait for its idle timeout. */
    if (fan__srv()->stopping)
        fan__conn_close_if_idle(c);
}

/* Whether the client sent bytes not read yet: during a graceful stop such a
 * connection carries a request on its way and is not idle. */
static int input_pending(fan__conn *c)
{
    uv_os_fd_t fd;
    char byte;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return 0;
    return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

void fan__conn_close_if_idle(fan__conn *c)
{
    if (c->h2) { /* GOAWAY: its open streams finish, then it closes */
        fan__h2_stop(c);
        return;
    }
    /* A fresh connection is kept: its first request may be on its way (until
     * it arrives, the idle timeout or the graceful timeout closes it). */
    if (c->closing || c->rq || c->serving || c->in.len || c->writes || !c->served)
        return;
    if (!input_pending(c))
        fan__conn_close(c);
}

/* One loop per thread; all library state is per thread. */
static _Thread_local char read_buf[READ_CHUNK];

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = read_buf;
    buf->len = sizeof read_buf;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fan__conn *c = s->data;
    if (n < 0) {
        c->eof = 1;
        fan__conn_close(c);
        return;
    }
    if (n == 0)
        return;
    if (c->tls)
        fan__tls_input(c, buf->base, (size_t)n);
    else
        fan__conn_input(c, buf->base, (size_t)n);
}

void fan__conn_input(fan__conn *c, const char *data, size_t n)
{
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    if (c->h2) {
        fan__h2_input(c, data, n);
        return;
    }
    if (c->serving) {
        /* Pipelined input while a request runs: keep it, up to a bound, and
         * go on reading so that a disconnect is noticed; beyond the bound
         * stop reading until the request is done. */
        if (fan__buf_append(&c->in, data, n) != 0) {
            fan__conn_close(c);
            return;
        }
        if (c->in.len > fan__site_of(c->app)->limits.max_pipelined_bytes) {
            uv_read_stop(s);
            c->reading = 0;
        }
        return;
    }
    size_t used = 0;
    int rc = 0;
    c->processing++;
    /* The common case parses straight from the read buffer and keeps only
     * what is left over. */
    if (c->in.len == 0)
        rc = process(c, data, n, &used);
    if (rc >= 0 && !c->closing && used < n &&
        fan__buf_append(&c->in, data + used, n - used) != 0)
        rc = -1;
    c->processing--;
    if (rc >= 0)
        process_buffered(c);
}

void fan__conn_accept(fan__listener *l, int fd)
{
    fan__server *srv = fan__srv();
    fan__conn *c = calloc(1, sizeof *c);
    if (!c) {
        /* Out of memory: take the connection and drop it, or libuv would
         * stop watching the listener (it waits for an accept). */
        fan_log(FAN_LOG_ERROR, "out of memory for a connection: dropping it");
        if (fd < 0) {
            int lfd;
            if (uv_fileno((uv_handle_t *)&l->tcp, &lfd) == 0 && (fd = accept(lfd, NULL, NULL)) < 0)
                return;
        }
        if (fd >= 0)
            close(fd);
        return;
    }
    c->app = l->app;
    uv_tcp_init(srv->loop, &c->tcp);
    fan__timeout_init(&c->timeout);
    c->tcp.data = c;
    c->handles = 1;
    fan__list_push(&srv->conns, &c->link);
    srv->nconns++;
    int rc = fd < 0 ? uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp)
                    : uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        fan__conn_close(c);
        return;
    }
    fan__site_of(c->app)->accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    fan__conn_read_peer(c);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    int tls = fan__tls_enabled(c->app);
    if (srv->nconns > fan__site_of(c->app)->limits.max_connections) {
        fan_log(FAN_LOG_WARN, "connection limit (%zu) reached: %s",
                fan__site_of(c->app)->limits.max_connections,
                tls ? "closing the connection" : "answering 503");
        if (tls) /* a 503 would need a handshake first */
            fan__conn_close(c);
        else
            fail(c, 503, "too many connections");
        return;
    }
    if (tls && fan__tls_conn_start(c) != 0) {
        fan_log(FAN_LOG_ERROR, "out of memory for a TLS connection: dropping it");
        fan__conn_close(c);
        return;
    }
    c->reading = 1;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    set_timer(c, tls ? T_HANDSHAKE : T_IDLE);
}
