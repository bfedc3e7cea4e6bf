/* HTTP/2 on a TLS connection whose client chose "h2" by ALPN: the
 * connection's nghttp2 session, its streams, and their requests. Each stream
 * is a fan_req with the HTTP/1.1 request's handler API; its reply goes out as
 * HEADERS and DATA, a streamed response as DATA frames under the client's
 * flow control. The plaintext comes from and goes to tls.c; conn.c keeps the
 * socket, the timers and the close. Protections: concurrent streams, header
 * list size (an HPACK bomb), CONTINUATION frames (nghttp2's own limit) and a
 * count of the client's resets (rapid reset) end a connection with GOAWAY
 * and a log line. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

#define SEND_BATCH (256 * 1024) /* frames gathered into one TLS write */

typedef struct h2_stream {
    fan__list link;   /* in the session's streams */
    struct fan__h2 *h2;
    int32_t id;
    fan_req *rq;      /* NULL once the request ended or was detached */
    fan__op op;       /* holds the request from its response to the stream's close */
    int op_held;
    int ready;        /* the request is complete: start it after the input */
    int started;      /* handed to request.c */
    int error;        /* a status answered instead of running it (400, 413, 431) */
    int wake;         /* the data provider took queued bytes: wake writers */
    int answered;     /* the response's last frame went out */
    int reset;        /* an error answer's stream was reset (NO_ERROR) */
    size_t head_bytes;
    /* the response body: a buffered reply's in the request's arena, or a
     * streamed response's queue */
    const char *body;
    size_t body_len, body_off;
    char *raw;        /* an error answer's body, malloc'd */
    fan__buf out;
    int eof;
} h2_stream;

struct fan__h2 {
    nghttp2_session *s;
    fan__conn *c;
    fan__list streams;
    unsigned nstreams;
    int in_recv;      /* inside nghttp2_session_mem_recv(): no send, no start */
    int flushing;
    int writing;      /* a TLS write of ours is queued */
    int goaway;       /* a graceful stop's GOAWAY was submitted */
    int input;        /* flushing after a read */
    int progress;     /* bytes went out since the timer was set */
    uint64_t reset_at; /* the second the resets are counted in */
    unsigned resets;
    uv_write_t w;
    uv_timer_t kick;  /* a flush on the next loop turn, for the requests' output */
    int kicked;
};

static void h2_flush(struct fan__h2 *h2);
static void set_timer(struct fan__h2 *h2);

static void kick_fired(uv_timer_t *t)
{
    struct fan__h2 *h2 = t->data;
    h2->kicked = 0;
    h2_flush(h2);
}

/* What a request submitted is sent from the loop, never from the request's
 * own call: sending may close its stream, which may end and free the
 * request under its caller. It also gathers a turn's replies into one
 * write. */
static void kick(struct fan__h2 *h2)
{
    if (!h2->kicked && !h2->c->closing) {
        h2->kicked = 1;
        uv_timer_start(&h2->kick, kick_fired, 0, 0);
    }
}

static void h2_log(fan__conn *c, const char *what)
{
    char addr[64];
    fan_log(FAN_LOG_WARN, "HTTP/2 client %s: %s", fan__conn_peer_name(c, addr, sizeof addr), what);
}

/* The connection is ended: GOAWAY with `code`, then the close once sent. */
static void h2_calm(struct fan__h2 *h2, const char *why)
{
    char line[160];
    snprintf(line, sizeof line, "%s; GOAWAY ENHANCE_YOUR_CALM, closing the connection", why);
    h2_log(h2->c, line);
    nghttp2_session_terminate_session(h2->s, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* Detaches a stream from its request and frees it: a request that never
 * started is released, a running one is cancelled (its calls are aborted)
 * as on a client disconnect over HTTP/1.1. */
static void stream_free(h2_stream *st)
{
    fan_req *rq = st->rq;
    st->rq = NULL;
    fan__list_remove(&st->link);
    st->h2->nstreams--;
    if (st->h2->s)
        nghttp2_session_set_stream_user_data(st->h2->s, st->id, NULL);
    if (rq) {
        rq->h2 = NULL;
        rq->conn = NULL;
        if (!st->started) {
            rq->rt.handler_done = 1;
            fan__req_notify(rq);
        } else {
            /* Either may end the request and free it: nothing after. */
            fan__req_cancel(rq, FAN_ECANCELED);
            if (st->op_held) {
                st->op_held = 0;
                fan__op_end(rq, &st->op);
            }
        }
    }
    free(st->raw);
    fan__buf_free(&st->out);
    free(st);
}

static h2_stream *stream_of(struct fan__h2 *h2, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h2->s, id);
}

/* ------------------------------------------------------------------ */
/* Responses                                                          */

static int connection_specific(const char *name)
{
    static const char *const no[] = {"connection", "keep-alive", "proxy-connection",
                                     "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcasecmp(name, no[i]) == 0)
            return 1;
    return 0;
}

static nghttp2_nv nv(const char *name, size_t nlen, const char *value, size_t vlen)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
}

/* The response head as an nghttp2 header list in the request's arena:
 * :status, date, server, content-type, content-length (unless streamed),
 * then the headers set, their names lowercased and the connection-specific
 * ones (RFC 9113 8.2.2) left out. Returns the count, or -1 out of memory. */
static int head_nv(fan_req *rq, int stream, nghttp2_nv **out)
{
    fan__arena *a = &rq->rt.arena;
    nghttp2_nv *v = fan__arena_alloc(a, sizeof *v * (rq->nout + 6));
    char *status = fan__arena_alloc(a, 12);
    char *clen = fan__arena_alloc(a, 24);
    if (!v || !status || !clen)
        return -1;
    int n = 0;
    snprintf(status, 12, "%d", rq->status);
    v[n++] = nv(":status", 7, status, strlen(status));
    const char *date = fan__date_header(); /* "Date: ...\r\n" */
    v[n++] = nv("date", 4, date + 6, strlen(date) - 8);
    v[n++] = nv("server", 6, "fanout", 6);
    if (rq->content_type)
        v[n++] = nv("content-type", 12, rq->content_type, strlen(rq->content_type));
    if (!stream && rq->status != 204 && rq->status != 304) {
        snprintf(clen, 24, "%zu", rq->out_len);
        v[n++] = nv("content-length", 14, clen, strlen(clen));
    }
    size_t tlen = 0;
    const char *timing = rq->rt.obs & FAN__OBS_SERVER_TIMING ? fan__server_timing(rq, &tlen) : NULL;
    if (timing)
        v[n++] = nv("server-timing", 13, timing, tlen);
    for (unsigned i = 0; i < rq->nout; i++) {
        const fan__header *h = &rq->out_headers[i];
        if (connection_specific(h->name))
            continue;
        size_t len = strlen(h->name);
        char *lower = fan__arena_alloc(a, len + 1);
        if (!lower)
            return -1;
        for (size_t k = 0; k <= len; k++)
            lower[k] = (char)((h->name[k] >= 'A' && h->name[k] <= 'Z') ? h->name[k] + 32
                                                                       : h->name[k]);
        v[n++] = nv(lower, len, h->value, strlen(h->value));
    }
    *out = v;
    return n;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)s, (void)id, (void)user;
    h2_stream *st = src->ptr;
    size_t n = st->body_len - st->body_off;
    if (n > length)
        n = length;
    memcpy(buf, st->body + st->body_off, n);
    st->body_off += n;
    if (st->body_off == st->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* A streamed response's DATA: what the handler wrote, deferred while
 * nothing is queued (fan__h2_stream_write() resumes it). */
static ssize_t read_stream(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)s, (void)id, (void)user;
    h2_stream *st = src->ptr;
    size_t n = st->out.len < length ? st->out.len : length;
    if (n == 0) {
        if (st->eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        return NGHTTP2_ERR_DEFERRED;
    }
    memcpy(buf, st->out.data, n);
    fan__buf_consume(&st->out, n);
    if (st->rq && st->rq->stream) {
        fan__stream_taken(st->rq, n);
        st->wake = 1;
    }
    if (st->out.len == 0 && st->eof)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Holds the request until its stream closed: nghttp2 reads its body from
 * the request's arena. */
static void hold(h2_stream *st)
{
    if (!st->op_held && st->rq) {
        st->op_held = 1;
        st->op.cancel = NULL; /* ends with the stream, or the connection */
        fan__op_begin(st->rq, &st->op, NULL);
    }
}

static int submit(fan_req *rq, int stream)
{
    h2_stream *st = rq->h2;
    nghttp2_nv *v;
    int n = head_nv(rq, stream, &v);
    if (n < 0) {
        nghttp2_submit_rst_stream(st->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        kick(st->h2);
        return FAN_ENOMEM;
    }
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = stream ? read_stream : read_body};
    int body = !rq->head && rq->status != 204 && rq->status != 304 && (stream || rq->out_len);
    if (!stream) {
        st->body = rq->out_body;
        st->body_len = rq->out_len;
    }
    if (nghttp2_submit_response(st->h2->s, st->id, v, (size_t)n, body ? &dp : NULL) != 0) {
        nghttp2_submit_rst_stream(st->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        kick(st->h2);
        return FAN_EIO;
    }
    rq->out_bytes += body && !stream ? rq->out_len : 0;
    hold(st);
    kick(st->h2);
    return 0;
}

int fan__h2_send_reply(fan_req *rq)
{
    return submit(rq, 0);
}

int fan__h2_stream_start(fan_req *rq)
{
    return submit(rq, 1);
}

int fan__h2_stream_write(fan_req *rq, const void *data, size_t len)
{
    h2_stream *st = rq->h2;
    if (fan__buf_append(&st->out, data, len) != 0)
        return FAN_ENOMEM;
    rq->out_bytes += len;
    nghttp2_session_resume_data(st->h2->s, st->id);
    kick(st->h2);
    return 0;
}

int fan__h2_stream_end(fan_req *rq, int abort)
{
    h2_stream *st = rq->h2;
    if (abort) {
        nghttp2_submit_rst_stream(st->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    } else {
        st->eof = 1;
        nghttp2_session_resume_data(st->h2->s, st->id);
    }
    kick(st->h2);
    return 0;
}

void fan__h2_reset(fan_req *rq)
{
    h2_stream *st = rq->h2;
    nghttp2_submit_rst_stream(st->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    kick(st->h2);
}

void fan__h2_request_done(fan_req *rq)
{
    h2_stream *st = rq->h2;
    st->rq = NULL;
    rq->h2 = NULL;
    /* Ended without a response on its stream (the client left meanwhile,
     * or the response could not be made): the stream is reset. */
    if (!st->op_held)
        nghttp2_submit_rst_stream(st->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    kick(st->h2);
}

/* An answer made by the server itself (a malformed or too large request):
 * the request is released unstarted, the stream keeps the body. */
static void answer_error(h2_stream *st, int status, const char *why)
{
    struct fan__h2 *h2 = st->h2;
    fan_req *rq = st->rq;
    fan_log(FAN_LOG_INFO, "HTTP/2 bad request (%d): %s; resetting the stream", status, why);
    if (rq) {
        st->rq = NULL;
        rq->h2 = NULL;
        rq->conn = NULL;
        rq->rt.handler_done = 1;
        fan__req_notify(rq);
    }
    st->raw = malloc(128);
    int n = st->raw ? snprintf(st->raw, 128, "{\"error\":\"%s\",\"status\":%d}", why, status) : -1;
    char code[8], clen[24];
    snprintf(code, sizeof code, "%d", status);
    snprintf(clen, sizeof clen, "%d", n < 0 ? 0 : n);
    nghttp2_nv v[] = {nv(":status", 7, code, strlen(code)), nv("server", 6, "fanout", 6),
                      nv("content-type", 12, "application/json", 16),
                      nv("content-length", 14, clen, strlen(clen))};
    if (n < 0) {
        nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    st->body = st->raw;
    st->body_len = (size_t)n;
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_body};
    /* The rest of its body, if the client goes on, is dropped. */
    nghttp2_submit_response(h2->s, st->id, v, 4, &dp);
}

/* ------------------------------------------------------------------ */
/* Input                                                              */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct fan__h2 *h2 = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream *st = calloc(1, sizeof *st);
    fan_req *rq = st ? fan__req_new(h2->c) : NULL;
    if (!rq) {
        free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
    }
    st->h2 = h2;
    st->id = f->hd.stream_id;
    st->rq = rq;
    rq->h2 = st;
    rq->http_minor = 1;
    rq->keep_alive = 1;
    fan__list_push(&h2->streams, &st->link);
    h2->nstreams++;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int add_header(fan_req *rq, const char *name, size_t nlen, const char *value, size_t vlen)
{
    fan__header *h = fan__header_slot(&rq->rt.arena, &rq->headers, rq->nheaders, &rq->headers_cap);
    if (!h)
        return -1;
    h->name = fan__arena_strndup(&rq->rt.arena, name, nlen);
    h->value = fan__arena_strndup(&rq->rt.arena, value, vlen);
    if (!h->name || !h->value)
        return -1;
    rq->nheaders++;
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    (void)flags;
    struct fan__h2 *h2 = user;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    h2_stream *st = stream_of(h2, f->hd.stream_id);
    if (!st)
        return 0;
    const fan_limits *lim = &fan__site_of(h2->c->app)->limits;
    st->head_bytes += nlen + vlen + 32; /* RFC 9113 6.5.2's size of a header */
    if (st->head_bytes > 2 * lim->max_header_bytes) {
        h2_calm(h2, "header list far beyond max_header_bytes (HPACK bomb)");
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    fan_req *rq = st->rq;
    if (st->error || !rq || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers are not merged into the request's headers */
    if (st->head_bytes > lim->max_header_bytes || rq->nheaders >= lim->max_headers) {
        st->error = 431;
        return 0;
    }
    const char *n = (const char *)name, *v = (const char *)value;
    int rc = 0;
    if (nlen == 7 && memcmp(n, ":method", 7) == 0) {
        rq->method = fan__arena_strndup(&rq->rt.arena, v, vlen);
        rc = rq->method ? 0 : -1;
        if (rq->method)
            rq->head = strcmp(rq->method, "HEAD") == 0;
    } else if (nlen == 5 && memcmp(n, ":path", 5) == 0) {
        if (fan__req_set_target(rq, v, vlen) != 0)
            st->error = 400;
    } else if (nlen == 10 && memcmp(n, ":authority", 10) == 0) {
        rc = add_header(rq, "host", 4, v, vlen);
    } else if (nlen && n[0] == ':') {
        /* :scheme, :protocol: nothing the handlers see */
    } else {
        rc = add_header(rq, n, nlen, v, vlen);
    }
    if (rc)
        st->error = 503;
    return 0;
}

/* An error answer's stream, once the answer went out whole and its client
 * has used up its window: reset with NO_ERROR. */
static void reset_if_spent(nghttp2_session *s, h2_stream *st)
{
    if (!st->raw || !st->answered || st->reset ||
        nghttp2_session_get_stream_remote_close(s, st->id))
        return;
    if (nghttp2_session_get_stream_effective_local_window_size(s, st->id) >
        nghttp2_session_get_stream_effective_recv_data_length(s, st->id))
        return;
    st->reset = 1;
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
}

/* The window is ours to give back (no automatic WINDOW_UPDATE): a body
 * being received gets it back as it arrives. A stream answered with an
 * error gets back only the connection's share, so its client may finish
 * the body it has the window for, dropped; once that window is used up the
 * stream is reset with NO_ERROR (RFC 9113 8.1). Until then it is a stream
 * being received, under the body timeout, never one left open with no
 * timer. Reset at once, it would make a client still uploading (curl 7.88)
 * lose the answer. */
static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *user)
{
    (void)flags;
    struct fan__h2 *h2 = user;
    h2_stream *st = stream_of(h2, id);
    const fan_limits *lim = &fan__site_of(h2->c->app)->limits;
    if (st && st->rq && !st->error) {
        fan_req *rq = st->rq;
        if (rq->body.len + len > lim->max_body_bytes)
            st->error = 413;
        else if (fan__buf_append(&rq->body, data, len) != 0)
            st->error = 503;
    }
    if (!st || !st->error) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    nghttp2_session_consume_connection(s, len);
    reset_if_spent(s, st);
    return 0;
}

static const char *error_reason(int status)
{
    switch (status) {
    case 400: return "malformed request target or header";
    case 413: return "request body too large";
    case 431: return "request header fields too large";
    default: return "out of memory";
    }
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct fan__h2 *h2 = user;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        uint64_t now = uv_now(h2->c->tcp.loop) / 1000;
        if (now != h2->reset_at) {
            h2->reset_at = now;
            h2->resets = 0;
        }
        if (++h2->resets > fan__site_of(h2->c->app)->limits.h2_max_resets)
            h2_calm(h2, "more stream resets in a second than h2_max_resets (rapid reset)");
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    h2_stream *st = stream_of(h2, f->hd.stream_id);
    if (!st || !st->rq || st->ready)
        return 0;
    fan_req *rq = st->rq;
    if (f->hd.type == NGHTTP2_HEADERS && !st->error) {
        if (!rq->method || !rq->path)
            st->error = 400;
        const char *cl = fan_req_header(rq, "content-length");
        if (cl && strtoull(cl, NULL, 10) > fan__site_of(h2->c->app)->limits.max_body_bytes)
            st->error = 413;
    }
    if (st->error) {
        answer_error(st, st->error, error_reason(st->error));
        return 0;
    }
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
        st->ready = 1;
    (void)s;
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    (void)code;
    h2_stream *st = stream_of(user, id);
    (void)s;
    if (st)
        stream_free(st);
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct fan__h2 *h2 = user;
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        h2_stream *st = stream_of(h2, f->hd.stream_id);
        if (st) {
            st->answered = 1;
            reset_if_spent(s, st);
        }
    }
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
        char line[96];
        snprintf(line, sizeof line, "sent GOAWAY (%s)",
                 nghttp2_http2_strerror(f->goaway.error_code));
        h2_log(h2->c, line);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Output                                                             */

static void h2_written(uv_write_t *w, int status);

/* The connection's timer: the write timeout while output waits (for the
 * socket, or for the client's flow-control window), restarted by progress;
 * the body timeout while a request is being received; the idle timeout
 * while no stream is open. */
static void set_timer(struct fan__h2 *h2)
{
    unsigned receiving = 0;
    int pending = h2->writing;
    for (fan__list *p = h2->streams.next; p != &h2->streams; p = p->next) {
        h2_stream *st = fan__container_of(p, h2_stream, link);
        receiving += !st->started; /* an error answer's stream too, until it closes */
        pending |= st->out.len > 0 || st->body_off < st->body_len;
    }
    fan__conn_h2_timer(h2->c, h2->nstreams, receiving, pending, h2->input, h2->progress);
    h2->progress = 0;
}

/* Closes the connection once nghttp2 has nothing more to read or send. */
static void maybe_close(struct fan__h2 *h2)
{
    fan__conn *c = h2->c;
    if (!c->closing && !h2->writing && !nghttp2_session_want_read(h2->s) &&
        !nghttp2_session_want_write(h2->s))
        fan__conn_close(c);
}

/* Wakes the writers of streams whose queue the data provider drained. */
static void wake_writers(struct fan__h2 *h2)
{
    for (;;) {
        fan_req *rq = NULL;
        for (fan__list *p = h2->streams.next; p != &h2->streams; p = p->next) {
            h2_stream *st = fan__container_of(p, h2_stream, link);
            if (st->wake) {
                st->wake = 0;
                rq = st->rq;
                if (rq)
                    break;
            }
        }
        if (!rq || h2->c->closing)
            return;
        fan__req_notify(rq);
    }
}

static void h2_flush(struct fan__h2 *h2)
{
    fan__conn *c = h2->c;
    if (h2->in_recv || h2->flushing || c->closing)
        return;
    h2->flushing = 1;
    static _Thread_local char batch[16384];
    while (!h2->writing && !c->closing) {
        /* Frames are gathered into TLS records of up to 16 KiB, up to
         * SEND_BATCH a write: the rest waits until the socket took it. */
        size_t n = 0, total = 0;
        int failed = 0;
        while (total < SEND_BATCH) {
            const uint8_t *data;
            ssize_t k = nghttp2_session_mem_send(h2->s, &data);
            if (k < 0) {
                h2_log(c, nghttp2_strerror((int)k));
                failed = 1;
                break;
            }
            if (k == 0)
                break;
            total += (size_t)k;
            /* nghttp2's data is valid until its next call: sealed or copied. */
            if (n + (size_t)k > sizeof batch) {
                failed |= fan__tls_put(c, batch, n);
                n = 0;
            }
            if ((size_t)k > sizeof batch) {
                failed |= fan__tls_put(c, (const char *)data, (size_t)k);
                continue;
            }
            memcpy(batch + n, data, (size_t)k);
            n += (size_t)k;
        }
        if (n)
            failed |= fan__tls_put(c, batch, n);
        if (failed) {
            fan__conn_close(c);
            break;
        }
        if (total == 0)
            break;
        h2->progress = 1;
        int rc = fan__tls_write(c, &h2->w, NULL, 0, h2_written, 1);
        if (rc < 0) {
            fan__conn_close(c);
            break;
        }
        if (rc == 0) /* queued: the rest waits until it was taken */
            h2->writing = 1;
    }
    h2->flushing = 0;
    if (!c->closing)
        wake_writers(h2);
    if (!c->closing)
        maybe_close(h2);
    if (!c->closing)
        set_timer(h2);
}

static void h2_written(uv_write_t *w, int status)
{
    struct fan__h2 *h2 = fan__container_of(w, struct fan__h2, w);
    fan__conn *c = h2->c;
    h2->writing = 0;
    if (c->closing)
        return;
    if (status < 0) {
        fan__conn_close(c);
        return;
    }
    h2->progress = 1;
    h2_flush(h2);
}

/* ------------------------------------------------------------------ */
/* The connection                                                     */

int fan__h2_start(fan__conn *c)
{
    struct fan__h2 *h2 = calloc(1, sizeof *h2);
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    if (!h2 || nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0) {
        free(h2);
        nghttp2_session_callbacks_del(cb);
        return FAN_ENOMEM;
    }
    const fan_limits *lim = &fan__site_of(c->app)->limits;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    /* nghttp2's own guards stay on: its reset rate limit (a burst of 1000),
     * eight CONTINUATIONs at most per header block. */
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_no_auto_window_update(opt, 1); /* on_data() gives it back */
    int rc = nghttp2_session_server_new2(&h2->s, cb, h2, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc != 0) {
        free(h2);
        return FAN_ENOMEM;
    }
    h2->c = c;
    fan__list_init(&h2->streams);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, lim->h2_window_bytes},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)lim->max_header_bytes},
    };
    if (nghttp2_submit_settings(h2->s, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
        nghttp2_session_set_local_window_size(h2->s, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)lim->h2_window_bytes) != 0) {
        nghttp2_session_del(h2->s);
        free(h2);
        return FAN_ENOMEM;
    }
    uv_timer_init(c->tcp.loop, &h2->kick); /* closed by fan__h2_conn_closed() */
    h2->kick.data = h2;
    c->h2 = h2;
    if (fan__srv()->stopping) /* accepted during a graceful stop: no stream */
        fan__h2_stop(c);
    h2_flush(h2);
    return 0;
}

/* Starts the streams whose request is complete, one at a time: a handler
 * may close the connection, which frees every stream. */
static void start_ready(struct fan__h2 *h2)
{
    while (!h2->c->closing) {
        h2_stream *st = NULL;
        for (fan__list *p = h2->streams.next; p != &h2->streams; p = p->next) {
            h2_stream *s = fan__container_of(p, h2_stream, link);
            if (s->ready && !s->started && s->rq) {
                st = s;
                break;
            }
        }
        if (!st)
            return;
        st->started = 1;
        fan__req_start(st->rq);
    }
}

void fan__h2_input(fan__conn *c, const char *data, size_t len)
{
    struct fan__h2 *h2 = c->h2;
    h2->in_recv = 1;
    ssize_t rc = nghttp2_session_mem_recv(h2->s, (const uint8_t *)data, len);
    h2->in_recv = 0;
    if (rc < 0) {
        h2_log(c, nghttp2_strerror((int)rc));
        if (rc != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
            nghttp2_session_terminate_session(h2->s, NGHTTP2_PROTOCOL_ERROR);
        else {
            fan__conn_close(c);
            return;
        }
    }
    start_ready(h2);
    if (c->closing)
        return;
    h2->input = 1; /* the body timeout runs from this read */
    h2_flush(h2);
    h2->input = 0;
}

void fan__h2_stop(fan__conn *c)
{
    struct fan__h2 *h2 = c->h2;
    if (h2->goaway || c->closing)
        return;
    h2->goaway = 1;
    nghttp2_submit_goaway(h2->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_flush(h2);
}

void fan__h2_conn_closed(fan__conn *c)
{
    struct fan__h2 *h2 = c->h2;
    if (!uv_is_closing((uv_handle_t *)&h2->kick)) {
        c->handles++;
        h2->kick.data = c;
        uv_close((uv_handle_t *)&h2->kick, fan__conn_handle_closed);
    }
    while (!fan__list_empty(&h2->streams))
        stream_free(fan__container_of(h2->streams.next, h2_stream, link));
}

void fan__h2_free(fan__conn *c)
{
    struct fan__h2 *h2 = c->h2;
    if (!h2)
        return;
    fan__h2_conn_closed(c);
    nghttp2_session_del(h2->s);
    free(h2);
    c->h2 = NULL;
}
