/* The lean transport: fanout's own HTTP/1.1 client for plain http://
 * upstreams, on libuv with responses parsed by llhttp (lean_response.c). It
 * keeps a pool of keep-alive connections per host and port, writes each
 * request with one writev, and costs a fraction of curl's per-transfer work
 * (see DESIGN: "Why two transports"). URLs are parsed with curl's URL API.
 *
 * One call at a time per connection (no pipelining). A pooled connection the
 * server closed while idle is detected on reuse: if it fails before any byte
 * of the response arrived, an idempotent request is retried once on a fresh
 * connection, unless it is a try of a call with a retry policy (attempts.c),
 * whose retries are the policy's: counted, budgeted and seen in
 * fan_call_attempts(). */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/lean.h"
#include "core/fmt.h"

#define IDLE_TIMEOUT_MS 30000  /* an idle pooled connection is closed after it */

_Thread_local lean_state *fan__lean;

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void send_request(lcall *lc, lconn *conn);
static void start_connect(lcall *lc);

static lean_state *get_state(void)
{
    if (!fan__lean && (fan__lean = calloc(1, sizeof *fan__lean))) {
        uv_timer_init(fan__loop(), &fan__lean->sweep);
        fan__lean->sweep.data = fan__lean;
    }
    return fan__lean;
}

/* ---- connections ------------------------------------------------------ */

static void conn_closed(uv_handle_t *h)
{
    lconn *conn = h->data;
    fan__span_reset(&conn->field);
    fan__span_reset(&conn->value);
    free(conn);
}

/* Takes a connection out of its pool's idle list, if it is there. */
static void unidle(lconn *conn)
{
    if (!fan__list_empty(&conn->link)) {
        fan__list_remove(&conn->link);
        conn->pool->nidle--;
    }
}

static void conn_close(lconn *conn)
{
    if (conn->closing)
        return;
    conn->closing = 1;
    unidle(conn);
    uv_close((uv_handle_t *)&conn->tcp, conn_closed);
}

static void sweep_idle(uv_timer_t *t)
{
    uint64_t now = uv_now(t->loop);
    int left = 0;
    for (pool *p = fan__lean->pools; p; p = p->next) {
        fan__list *pos = p->idle.next;
        while (pos != &p->idle) {
            lconn *conn = fan__container_of(pos, lconn, link);
            pos = pos->next;
            if (now - conn->idle_since >= IDLE_TIMEOUT_MS)
                conn_close(conn);
            else
                left = 1;
        }
    }
    if (!left) {
        uv_timer_stop(t);
        fan__lean->sweeping = 0;
    }
}

void fan__lean_drop_idle(pool *p)
{
    while (!fan__list_empty(&p->idle))
        conn_close(fan__container_of(p->idle.next, lconn, link));
}

static void conn_release(lconn *conn, int reusable)
{
    conn->lc = NULL;
    if (!reusable || conn->closing || conn->generation != conn->pool->generation) {
        conn_close(conn);
        return;
    }
    if (conn->pool->nidle >= conn->pool->idle_max) {
        conn_close(conn);
        return;
    }
    conn->pool->nidle++;
    conn->reused = 1;
    conn->idle_since = uv_now(fan__loop());
    fan__list_push(&conn->pool->idle, &conn->link);
    if (!fan__lean->sweeping) {
        fan__lean->sweeping = 1;
        uv_timer_start(&fan__lean->sweep, sweep_idle, IDLE_TIMEOUT_MS, IDLE_TIMEOUT_MS);
        uv_unref((uv_handle_t *)&fan__lean->sweep);
    }
}

/* ---- ending a call ------------------------------------------------------ */

/* Ends the call with `error`. The connection goes back to the pool only after
 * a complete response on a keep-alive connection. */
void fan__lean_finish(lcall *lc, int error)
{
    fan_call *c = lc->call;
    lconn *conn = lc->conn;
    if (conn) {
        /* An answer that came before the whole request was written (the
         * server did not wait for the body) leaves the write queued: the
         * connection cannot take another request. */
        int reusable = error == 0 && conn->complete && !conn->broken && !conn->writing &&
                       llhttp_should_keep_alive(&conn->parser);
        conn_release(conn, reusable);
    }
    fan__list_remove(&lc->link);
    fan__timeout_stop(&lc->total);
    fan__timeout_stop(&lc->connect);
    c->tp_data = NULL;
    free(lc); /* no handle to close: nothing refers to it now */
    fan__call_finish(c, error); /* may resume the handler: the last thing done */
}

static void connect_failed(lcall *lc, lconn *conn, int status);

static void total_passed(fan__timeout *t)
{
    fan__lean_finish(fan__container_of(t, lcall, total), FAN_ETIMEDOUT);
}

static void connect_passed(fan__timeout *t)
{
    lcall *lc = fan__container_of(t, lcall, connect);
    lconn *conn = lc->conn;
    /* An address that does not answer within the connect timeout: the next
     * one may, if the call has time left. */
    if (conn && !conn->connected && lc->tries < lc->pool->naddrs &&
        fan__call_remaining_ms(lc->call) > 1) {
        connect_failed(lc, conn, UV_ETIMEDOUT);
        return;
    }
    fan__lean_finish(lc, FAN_ETIMEDOUT);
}

static int map_uv(int status)
{
    switch (status) {
    case UV_ECONNREFUSED:
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
    case UV_EADDRNOTAVAIL: return FAN_ECONNREFUSED;
    case UV_ETIMEDOUT: return FAN_ETIMEDOUT;
    case UV_ENOMEM: return FAN_ENOMEM;
    default: return FAN_EIO;
    }
}

/* A connection failed with `error` (negative FAN code). A pooled connection
 * that fails before any byte of the response is most likely one the server
 * closed while it was idle: an idempotent request gets one fresh retry. */
static void conn_failed(lconn *conn, int error)
{
    lcall *lc = conn->lc;
    int stale = conn->reused && !conn->got_bytes;
    lc->conn = NULL;
    conn_release(conn, 0);
    if (stale && lc->idempotent && !lc->retried) {
        lc->retried = 1;
        fan_log(FAN_LOG_DEBUG, "lean: stale pooled connection to %s:%d, retrying",
                lc->pool->host, lc->pool->port);
        start_connect(lc);
        return;
    }
    fan__lean_finish(lc, error);
}

/* ---- reading ---------------------------------------------------------- */

/* One loop per thread; all library state is per thread. */
static _Thread_local char read_buf[65536];

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = read_buf;
    buf->len = sizeof read_buf;
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    lconn *conn = s->data;
    lcall *lc = conn->lc;
    if (n == 0)
        return;
    if (!lc) {
        conn_close(conn); /* idle: closed by the server, or bytes nobody asked for */
        return;
    }
    if (n < 0) {
        /* llhttp_finish() completes a body delimited by the end of the
         * connection; our on_message_complete pauses, hence HPE_PAUSED. */
        if (n == UV_EOF && conn->got_bytes && !conn->complete)
            llhttp_finish(&conn->parser);
        if (n == UV_EOF && conn->complete) {
            fan__lean_finish(lc, 0); /* a body delimited by the end of the connection */
            return;
        }
        conn_failed(conn, n == UV_EOF ? FAN_EPROTO : map_uv((int)n));
        return;
    }
    conn->got_bytes = 1;
    const char *why;
    int rc = fan__lean_parse(conn, buf->base, (size_t)n, &why);
    if (rc == 1)
        return;
    if (why)
        fan_log(FAN_LOG_DEBUG, "lean: bad response from %s:%d: %s", lc->pool->host,
                lc->pool->port, why);
    fan__lean_finish(lc, rc);
}

/* ---- sending ---------------------------------------------------------- */

/* The end of a write the socket did not take at once: written, failed, or
 * cancelled by the connection's close (libuv calls it before the close
 * callback frees the connection). */
static void written(uv_write_t *w, int status)
{
    lconn *conn = w->data;
    free(w);
    conn->writing = 0;
    if (status < 0 && conn->lc && !conn->closing)
        conn_failed(conn, map_uv(status));
}

/* Queues what the socket did not take of the request. 0 or a libuv error. */
static int queue_write(lconn *conn, uv_buf_t *bufs, unsigned nbufs)
{
    uv_write_t *w = malloc(sizeof *w);
    if (!w)
        return UV_ENOMEM;
    w->data = conn;
    int rc = uv_write(w, (uv_stream_t *)&conn->tcp, bufs, nbufs, written);
    if (rc < 0) {
        free(w);
        return rc;
    }
    conn->writing = 1;
    return 0;
}

static void send_request(lcall *lc, lconn *conn)
{
    fan_call *c = lc->call;
    lc->conn = conn;
    conn->lc = lc;
    conn->got_bytes = 0;
    conn->complete = 0;
    conn->broken = 0;
    fan__span_reset(&conn->field);
    fan__span_reset(&conn->value);
    fan__h1_reset(&conn->h1);
    llhttp_init(&conn->parser, HTTP_RESPONSE, fan__lean_settings());
    conn->parser.data = conn;
    uv_buf_t bufs[2] = {uv_buf_init(lc->head, (unsigned)lc->head_len),
                        uv_buf_init((char *)c->body, (unsigned)c->body_len)};
    unsigned nbufs = c->body_len ? 2 : 1, rest;
    int rc = fan__stream_try((uv_stream_t *)&conn->tcp, bufs, nbufs, &rest);
    if (rc == 0)
        rc = queue_write(conn, bufs + rest, nbufs - rest);
    if (rc < 0)
        conn_failed(conn, map_uv(rc));
}

/* A connection could not be made (uv error). A refused, unreachable or
 * silent (connect timeout) address makes the call try the pool's next one,
 * each at most once, and new connections start from there. */
static void connect_failed(lcall *lc, lconn *conn, int status)
{
    pool *p = lc->pool;
    unsigned failed = conn->addr_index;
    int same = conn->generation == p->generation;
    lc->conn = NULL;
    conn_release(conn, 0);
    int error = map_uv(status);
    if ((error == FAN_ECONNREFUSED || status == UV_ETIMEDOUT) && same && lc->tries < p->naddrs) {
        if (p->current == failed)
            p->current = (failed + 1) % p->naddrs;
        fan_log(FAN_LOG_DEBUG, "lean: %s: address %u of %u: %s, trying the next", p->host,
                failed + 1, p->naddrs, uv_strerror(status));
        start_connect(lc);
        return;
    }
    fan__lean_finish(lc, error);
}

/* The end of a connect: made, failed, or cancelled by the connection's
 * close (before its close callback, as a write's). */
static void connected(uv_connect_t *req, int status)
{
    lconn *conn = req->data;
    free(req);
    if (conn->closing)
        return;
    lcall *lc = conn->lc;
    if (status < 0) {
        connect_failed(lc, conn, status);
        return;
    }
    conn->connected = 1;
    if (conn->generation == conn->pool->generation)
        conn->pool->current = conn->addr_index;
    uv_tcp_nodelay(&conn->tcp, 1);
    uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc, conn_read);
    fan__timeout_stop(&lc->connect); /* from here the total timeout alone applies */
    send_request(lc, conn);
}

static void start_connect(lcall *lc)
{
    pool *p = lc->pool;
    /* The connect timeout, when the call has more time left than it; else
     * the total alone (not the timeout of an address tried before). */
    unsigned ms = lc->call->connect_timeout_ms, left = fan__call_remaining_ms(lc->call);
    int rc = 0;
    if (ms && ms < left)
        rc = fan__timeout_start(&lc->connect, ms, ms, connect_passed);
    else
        fan__timeout_stop(&lc->connect);
    lconn *conn = rc == 0 ? calloc(1, sizeof *conn) : NULL;
    uv_connect_t *req = conn ? malloc(sizeof *req) : NULL;
    if (!req) {
        free(conn);
        fan__lean_finish(lc, FAN_ENOMEM);
        return;
    }
    conn->pool = p;
    conn->generation = p->generation;
    /* The pool's current address first, then the ones after it. */
    conn->addr_index = lc->tries ? (lc->addr_index + 1) % p->naddrs : p->current % p->naddrs;
    lc->addr_index = conn->addr_index;
    lc->tries++;
    fan__list_init(&conn->link);
    uv_tcp_init(fan__loop(), &conn->tcp);
    conn->tcp.data = conn;
    req->data = conn;
    conn->lc = lc;
    lc->conn = conn;
    rc = uv_tcp_connect(req, &conn->tcp, (struct sockaddr *)&p->addrs[conn->addr_index],
                            connected);
    if (rc < 0) {
        free(req); /* not started: connected() is not called */
        connect_failed(lc, conn, rc);
    }
}

/* Takes an idle connection of the pool, or opens a new one. */
void fan__lean_dispatch(lcall *lc)
{
    pool *p = lc->pool;
    if (!fan__list_empty(&p->idle)) {
        lconn *conn = fan__container_of(p->idle.prev, lconn, link); /* the warmest */
        unidle(conn);
        send_request(lc, conn);
        return;
    }
    start_connect(lc);
}

static size_t header_bytes(const fan_call *c)
{
    size_t n = 0;
    for (const char *const *h = c->headers; h && *h; h++)
        n += strlen(*h) + 2;
    return n;
}

/* Whether the caller's lines have a Host. */
static int has_host(const fan_call *c)
{
    for (unsigned i = 0; i < c->nchecked; i++)
        if (strncasecmp(c->headers[i], "Host:", 5) == 0)
            return 1;
    return 0;
}

/* Allocates the call's state with the serialized request head after it:
 * "METHOD /target HTTP/1.1\r\nHost: h\r\n<headers>[Content-Length]\r\n".
 * The method, the target and the header lines are written as they are:
 * fan_call_start() checked them (tokens, no space, CR or LF). Kept out of
 * line: inlined into lean_start(), its traceparent buffer would stay on the
 * stack while the connection is made and the request written, deeper than
 * the first page of a handler's stack holds (FAN__CORO_TOP). */
static __attribute__((noinline)) lcall *new_lcall(fan_call *c, pool *p, const char *target,
                                                  size_t tlen)
{
    char tp[FAN__TRACEPARENT_LINE + 1];
    size_t tpl = fan__call_traceparent(c, tp);
    const char *ts = tpl ? fan__call_tracestate(c) : NULL;
    size_t hb = header_bytes(c) + (tpl ? tpl + 2 : 0) + (ts ? 12 + strlen(ts) + 2 : 0);
    int needs_length = c->body_len || !strcmp(c->method, "POST") || !strcmp(c->method, "PUT");
    size_t cap = strlen(c->method) + tlen + strlen(p->hostport) + hb + 64 + (needs_length ? 40 : 0);
    lcall *lc = malloc(sizeof *lc + cap);
    if (!lc)
        return NULL;
    memset(lc, 0, sizeof *lc);
    char *h = lc->head;
    h = fan__put(h, c->method, strlen(c->method));
    h = fan__put(h, tlen == 0 || target[0] == '?' ? " /" : " ",
                 tlen == 0 || target[0] == '?' ? 2 : 1);
    h = fan__put(h, target, tlen);
    h = fan__put(h, " HTTP/1.1\r\n", 11);
    if (!has_host(c)) { /* a Host of the caller's replaces ours, as curl does */
        h = fan__put(h, "Host: ", 6);
        h = fan__put(h, p->hostport, strlen(p->hostport));
        h = fan__put(h, "\r\n", 2);
    }
    for (const char *const *x = c->headers; x && *x; x++) {
        h = stpcpy(h, *x); /* one pass; the CR goes over its NUL */
        h = fan__put(h, "\r\n", 2);
    }
    if (tpl) {
        h = fan__put(h, tp, tpl);
        h = fan__put(h, "\r\n", 2);
    }
    if (ts) {
        h = fan__put(h, "tracestate: ", 12);
        h = fan__put_str(h, ts);
        h = fan__put(h, "\r\n", 2);
    }
    if (needs_length) {
        h = fan__put(h, "Content-Length: ", 16);
        h = fan__put_uint(h, c->body_len);
        h = fan__put(h, "\r\n", 2);
    }
    memcpy(h, "\r\n", 2);
    lc->head_len = (size_t)(h + 2 - lc->head);
    return lc;
}

static int lean_start(fan_call *c)
{
    const char *auth, *target;
    size_t alen, tlen;
    if (!get_state())
        return FAN_ENOMEM;
    int rc = fan__lean_split_url(c->url, &auth, &alen, &target, &tlen);
    if (rc != 0)
        return rc;
    pool *p = fan__lean_find_pool(auth, alen);
    if (!p && (rc = fan__lean_new_pool(auth, alen, &p)) != 0)
        return rc;
    lcall *lc = new_lcall(c, p, target, tlen);
    if (!lc)
        return FAN_ENOMEM;
    lc->call = c;
    lc->pool = p;
    p->idle_max = fan__rt_of(c->rq)->limits->max_idle_connections_per_host;
    lc->head_method = strcmp(c->method, "HEAD") == 0;
    lc->idempotent = !c->parent && (!strcmp(c->method, "GET") || lc->head_method ||
                                    !strcmp(c->method, "PUT") || !strcmp(c->method, "DELETE") ||
                                    !strcmp(c->method, "OPTIONS"));
    fan__list_init(&lc->link);
    fan__timeout_init(&lc->total);
    fan__timeout_init(&lc->connect);
    if (fan__timeout_start(&lc->total, fan__call_remaining_ms(c), c->timeout_ms, total_passed)) {
        free(lc);
        return FAN_ENOMEM;
    }
    c->tp_data = lc;
    unsigned ttl = fan__rt_of(c->rq)->limits->dns_ttl_ms;
    if (p->resolved && !p->numeric && ttl && !p->resolving &&
        uv_now(fan__loop()) - p->resolved_at >= ttl)
        fan__lean_resolve(p); /* in the background: this call goes to the known address */
    if (p->resolved) {
        fan__lean_dispatch(lc);
        return 0;
    }
    fan__list_push(&p->waiting, &lc->link);
    if (!p->resolving && (rc = fan__lean_resolve(p)) != 0) {
        fan__lean_finish(lc, rc);
        return 0;
    }
    if (p->resolved) {
        fan__list_remove(&lc->link);
        fan__lean_dispatch(lc);
    }
    return 0;
}

static void lean_cancel(fan_call *c)
{
    /* Closing the connection mid-exchange: the upstream sees the call
     * abandoned at once. */
    if (c->tp_data)
        fan__lean_finish(c->tp_data, FAN_ECANCELED);
}

static void lean_shutdown(void)
{
    lean_state *st = fan__lean;
    if (!st)
        return;
    while (st->pools) {
        pool *p = st->pools;
        st->pools = p->next;
        fan__lean_drop_idle(p);
        if (p->resolving) {
            p->dead = 1; /* the resolver's callback frees it */
            uv_cancel((uv_req_t *)p->resolving);
            continue;
        }
        fan__lean_pool_free(p);
    }
    uv_close((uv_handle_t *)&st->sweep, fan__free_handle_data);
    fan__lean = NULL;
}

const fan__transport fan__lean_transport = {
    .name = "lean",
    .start = lean_start,
    .cancel = lean_cancel,
    .shutdown = lean_shutdown,
};
