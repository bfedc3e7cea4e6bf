/* Streamed responses: a head sent at fan_resp_start(), then the body in
 * pieces as the handler writes them, in chunked transfer coding on
 * HTTP/1.1 and close-delimited on HTTP/1.0. Each piece is copied into a
 * malloc'd write of its own, freed once the socket took it (the arena would
 * grow for as long as the stream lasts); a write that the socket did not
 * take at once is an op of the request, so the request outlives it. Writers
 * wait while more than limits.max_stream_queued_bytes are queued. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

typedef struct fan__stream fan__stream;
typedef struct heartbeat heartbeat;

struct fan__stream {
    int chunked; /* the body goes in chunks (HTTP/1.1, not HEAD) */
    int discard; /* HEAD: the head only, writes are dropped */
    int ended;   /* ended or aborted: no more writes */
    int aborted;
    size_t queued;       /* bytes handed to libuv and not written yet */
    uint64_t last_write; /* uv_now() of the last piece, for heartbeats */
    heartbeat *hb;       /* fan_resp_sse_heartbeat(), NULL if none runs */
};

/* One piece of the stream on its way to the socket. */
typedef struct piece {
    fan__op op;
    uv_write_t w;
    fan_req *rq;
    size_t queued; /* what the socket did not take at once */
    char data[];
} piece;

struct heartbeat {
    fan__op op;
    uv_timer_t timer;
    fan_req *rq;
    unsigned ms;
    int closing;
};

static int client_gone(const fan_req *rq)
{
    return !rq->conn || rq->conn->closing;
}

static void piece_written(uv_write_t *w, int status)
{
    piece *p = w->data;
    fan_req *rq = p->rq;
    fan__stream *st = rq->stream;
    st->queued -= p->queued;
    if (status < 0 && !client_gone(rq)) {
        fan_log(FAN_LOG_DEBUG, "stream not delivered: %s", uv_strerror(status));
        fan__conn_close(rq->conn);
    } else if (!client_gone(rq)) {
        /* The write timeout measures a client that takes nothing: each
         * write it took restarts it while more is queued. */
        if (st->queued)
            fan__conn_write_queued(rq->conn);
        else
            fan__conn_write_done(rq->conn);
    }
    fan__op_end(rq, &p->op); /* may resume a writer waiting for the queue to drain */
    free(p);
}

/* Sends prefix, data and suffix as one write. Returns 0, or FAN_ECANCELED
 * when the client is gone or the socket failed (the connection is then
 * closed), or FAN_ENOMEM. */
static int send_piece(fan_req *rq, const char *prefix, size_t plen, const void *data, size_t len,
                      const char *suffix, size_t slen)
{
    fan__stream *st = rq->stream;
    fan__conn *c = rq->conn;
    if (client_gone(rq))
        return FAN_ECANCELED;
    size_t n = plen + len + slen;
    piece *p = malloc(sizeof *p + n);
    if (!p)
        return FAN_ENOMEM;
    memcpy(p->data, prefix, plen);
    if (len)
        memcpy(p->data + plen, data, len);
    memcpy(p->data + plen + len, suffix, slen);
    p->rq = rq;
    p->w.data = p;
    p->op.cancel = NULL; /* a write ends by itself, or when the connection closes */
    uv_buf_t buf = uv_buf_init(p->data, (unsigned)n);
    int rc = fan__conn_write(c, &p->w, &buf, 1, piece_written);
    st->last_write = uv_now(c->tcp.loop);
    if (rc < 0) {
        free(p);
        fan__conn_close(c);
        return FAN_ECANCELED;
    }
    rq->out_bytes += n;
    if (rc == 1) {
        free(p);
        return 0;
    }
    p->queued = buf.len;
    st->queued += buf.len;
    fan__op_begin(rq, &p->op, NULL);
    fan__conn_write_queued(c);
    return 0;
}

int fan_resp_start(fan_req *rq, int status, const char *content_type)
{
    if (rq->replied)
        return FAN_ESTATE;
    if (status < 200 || status > 999 || status == 204 || status == 304)
        return FAN_EINVAL;
    if (content_type && !fan__valid_header_value(content_type))
        return FAN_EINVAL;
    fan__stream *st = fan__arena_alloc(&rq->rt.arena, sizeof *st);
    const char *type = content_type ? fan__arena_strdup(&rq->rt.arena, content_type) : NULL;
    if (!st || (content_type && !type))
        return FAN_ENOMEM;
    memset(st, 0, sizeof *st);
    rq->status = status;
    rq->content_type = type;
    rq->out_body = NULL;
    rq->out_len = 0;
    rq->stream = st;
    rq->replied = 1;
    rq->finishing = 1;
    fan__hooks_reply(rq); /* they may set headers, change the status, or reply instead */
    rq->finishing = 0;
    rq->sent = 1;
    if (!rq->stream) {
        fan__send_reply(rq); /* a hook or error handler replied in the stream's place */
        return FAN_ESTATE;
    }
    if (client_gone(rq)) {
        st->ended = 1;
        return FAN_ECANCELED;
    }
    fan__conn *c = rq->conn;
    int http11 = rq->http_minor >= 1;
    if (fan__srv()->stopping || (!http11 && !rq->head))
        c->close_after_write = 1; /* HTTP/1.0: the close ends the body */
    st->discard = rq->head;
    st->chunked = http11 && !rq->head;
    size_t n;
    char *head = fan__format_head(rq, 1, http11, &n);
    if (!head) {
        fan__conn_close(c);
        return FAN_ENOMEM;
    }
    return send_piece(rq, head, n, NULL, 0, "", 0);
}

static int drained(fan_req *rq, void *arg)
{
    (void)arg;
    return client_gone(rq) || rq->stream->queued <= rq->rt.limits->max_stream_queued_bytes;
}

static int writable(const fan_req *rq)
{
    if (!rq->stream || !rq->sent || rq->stream->ended)
        return FAN_ESTATE;
    return client_gone(rq) ? FAN_ECANCELED : 0;
}

int fan_resp_write(fan_req *rq, const void *data, size_t len)
{
    int rc = writable(rq);
    if (rc != 0)
        return rc;
    if (fan_cancelled(rq))
        return FAN_ECANCELED;
    if (len == 0 || rq->stream->discard)
        return 0; /* a zero-length chunk would end the body */
    if (len > UINT_MAX - 64)
        return FAN_ETOOLARGE; /* one libuv buffer holds the piece and its framing */
    if (fan__coro_current() && !drained(rq, NULL)) {
        rc = fan__req_wait(rq, drained, NULL);
        if (rc == 0)
            rc = writable(rq); /* the client left, or another task ended the stream */
        if (rc != 0)
            return rc;
    }
    if (!rq->stream->chunked)
        return send_piece(rq, "", 0, data, len, "", 0);
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    return send_piece(rq, size, (size_t)n, data, len, "\r\n", 2);
}

static void hb_closed(uv_handle_t *h)
{
    heartbeat *hb = h->data;
    fan__op_end(hb->rq, &hb->op);
}

static void hb_stop(heartbeat *hb)
{
    if (hb->closing)
        return;
    hb->closing = 1;
    if (hb->rq->stream->hb == hb)
        hb->rq->stream->hb = NULL;
    uv_close((uv_handle_t *)&hb->timer, hb_closed);
}

static void hb_cancel(fan__op *op)
{
    hb_stop(fan__container_of(op, heartbeat, op));
}

static void hb_fired(uv_timer_t *t)
{
    heartbeat *hb = t->data;
    fan_req *rq = hb->rq;
    fan__stream *st = rq->stream;
    if (st->ended || client_gone(rq)) {
        hb_stop(hb);
        return;
    }
    uint64_t idle = uv_now(t->loop) - st->last_write;
    if (idle < hb->ms) {
        uv_timer_start(t, hb_fired, hb->ms - idle, 0);
        return;
    }
    /* A client that does not read gets no more: the write timeout is its
     * business. */
    if (drained(rq, NULL))
        fan_resp_write(rq, ": \n", 3);
    if (!hb->closing && !client_gone(rq))
        uv_timer_start(t, hb_fired, hb->ms, 0);
}

int fan_resp_sse_heartbeat(fan_req *rq, unsigned ms)
{
    int rc = writable(rq);
    if (rc != 0)
        return rc;
    fan__stream *st = rq->stream;
    if (ms == 0) {
        if (st->hb)
            hb_stop(st->hb);
        return 0;
    }
    heartbeat *hb = st->hb;
    if (!hb) {
        hb = fan__arena_alloc(&rq->rt.arena, sizeof *hb);
        if (!hb)
            return FAN_ENOMEM;
        memset(hb, 0, sizeof *hb);
        hb->rq = rq;
        uv_timer_init(rq->conn->tcp.loop, &hb->timer);
        hb->timer.data = hb;
        hb->op.cancel = hb_cancel;
        fan__op_begin(rq, &hb->op, NULL); /* the request's, not the task's */
        st->hb = hb;
    }
    hb->ms = ms;
    uv_timer_start(&hb->timer, hb_fired, ms, 0);
    return 0;
}

/* Ends the stream: the last chunk, or with `abort` none and the connection
 * closed once the request ended. */
static int stream_end(fan_req *rq, int abort)
{
    int rc = writable(rq);
    if (rc == FAN_ESTATE)
        return rc;
    fan__stream *st = rq->stream;
    st->ended = 1;
    st->aborted = abort;
    if (st->hb)
        hb_stop(st->hb);
    if (rc != 0)
        return rc;
    if (abort) {
        rq->conn->close_after_write = 1;
        return 0;
    }
    return st->chunked ? send_piece(rq, "0\r\n\r\n", 5, NULL, 0, "", 0) : 0;
}

int fan_resp_end(fan_req *rq)
{
    return stream_end(rq, 0);
}

int fan_resp_abort(fan_req *rq)
{
    return stream_end(rq, 1);
}

int fan_resp_streaming(const fan_req *rq)
{
    return rq->stream != NULL;
}

void fan__stream_handler_returned(fan_req *rq)
{
    if (!rq->stream || !rq->sent || rq->stream->ended)
        return;
    stream_end(rq, rq->rt.cancelled != 0 || rq->rt.main.cancelled != 0);
}

void fan__stream_reply_refused(fan_req *rq)
{
    fan_log(FAN_LOG_WARN, "%s: a reply once the stream's head was sent: the stream is aborted",
            fan__req_name(rq));
    if (!rq->stream->ended)
        stream_end(rq, 1);
}
