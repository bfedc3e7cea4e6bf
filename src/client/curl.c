/* The general transport: libcurl's multi_socket API driven by the libuv loop.
 * One multi handle per thread keeps the connections, so they are reused
 * across requests, and multiplexes calls to an HTTP/2 origin over one
 * connection; one share handle per thread keeps the TLS sessions (resumed by
 * new connections) and the DNS answers. Easy handles are per call, pooled. */
#include <curl/curl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/client.h"

#define EASY_POOL_MAX 256

typedef struct curl_state {
    CURLM *multi;
    size_t maxconnects; /* CURLMOPT_MAXCONNECTS as set, 0 before the first call */
    CURLSH *share;
    double tls_logged;         /* when a TLS failure was last logged */
    unsigned long tls_quiet;   /* TLS failures of that origin not logged since */
    char tls_origin[256];      /* the origin of the last line */
    fan__list socks;           /* every sock_ctx with an open poll handle */
    uv_timer_t timer;
    CURL *pool[EASY_POOL_MAX]; /* reset easy handles kept for reuse */
    unsigned npool;
} curl_state;

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    fan__list link;
} sock_ctx;

static _Thread_local curl_state *state;

int fan__curl_error(int code, int cb_error)
{
    switch ((CURLcode)code) {
    case CURLE_OK: return 0;
    case CURLE_COULDNT_CONNECT: return FAN_ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return FAN_EDNS;
    case CURLE_OPERATION_TIMEDOUT: return FAN_ETIMEDOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED: return FAN_ETLS;
    case CURLE_FILESIZE_EXCEEDED: return FAN_ETOOLARGE;
    case CURLE_WRITE_ERROR: return cb_error ? cb_error : FAN_EIO;
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT: return FAN_EINVAL;
    /* The scheme was checked before the transfer: here curl means an HTTP/0.9
     * or otherwise non-HTTP reply. */
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_RANGE_ERROR: return FAN_EPROTO;
    case CURLE_OUT_OF_MEMORY: return FAN_ENOMEM;
    case CURLE_ABORTED_BY_CALLBACK: return cb_error ? cb_error : FAN_ECANCELED;
    default: return FAN_EIO;
    }
}

static void check_done(curl_state *st);

static void finish(curl_state *st, fan_call *c, int error)
{
    CURL *e = c->tp_data;
    long status = 0;
    if (error == 0 && curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
        c->status = (int)status;
    curl_multi_remove_handle(st->multi, e);
    if (st->npool < EASY_POOL_MAX) {
        curl_easy_reset(e);
        st->pool[st->npool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
    c->tp_data = NULL;
    fan__call_finish(c, error);
}

/* One line a second per origin at most: an upstream whose certificate
 * expired fails every call. A failure of another origin than the last one
 * logged is always logged. */
static void log_tls_failure(curl_state *st, const fan_call *c, const char *why)
{
    double now = fan_now();
    char origin[sizeof st->tls_origin];
    size_t n = fan__origin_key(c->url, origin, sizeof origin - 1);
    origin[n] = '\0';
    if (strcmp(origin, st->tls_origin) == 0 && now - st->tls_logged < 1.0) {
        st->tls_quiet++;
        return;
    }
    unsigned long quiet = strcmp(origin, st->tls_origin) == 0 ? st->tls_quiet : 0;
    if (c->name == c->url)
        fan_log(FAN_LOG_WARN, "upstream call %s: TLS failure: %s (%lu more since the last line)",
                c->url, why, quiet);
    else
        fan_log(FAN_LOG_WARN,
                "upstream call %s (%s): TLS failure: %s (%lu more since the last "
                "line)",
                c->name, c->url, why, quiet);
    memcpy(st->tls_origin, origin, n + 1);
    st->tls_logged = now;
    st->tls_quiet = 0;
}

static void check_done(curl_state *st)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(st->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        fan_call *c = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        int err = fan__curl_error(msg->data.result, c->too_large  ? FAN_ETOOLARGE
                                                     : c->bad_head ? FAN_EPROTO
                                                                   : 0);
        const char *why =
            c->tp_errbuf && c->tp_errbuf[0] ? c->tp_errbuf : curl_easy_strerror(msg->data.result);
        if (err == FAN_ETLS)
            log_tls_failure(st, c, why);
        else if (err)
            fan_log(FAN_LOG_DEBUG, "curl: %s: %s", c->url, why);
        finish(st, c, err);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_ctx *s = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(state->multi, s->fd, flags, &running);
    check_done(state);
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    int running;
    curl_multi_socket_action(state->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(state);
}

static void sock_close(sock_ctx *s)
{
    fan__list_remove(&s->link);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, fan__free_handle_data);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    (void)e;
    curl_state *st = userp;
    sock_ctx *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            sock_close(s);
            curl_multi_assign(st->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->fd = fd;
        if (uv_poll_init_socket(fan__loop(), &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        fan__list_push(&st->socks, &s->link);
        curl_multi_assign(st->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    curl_state *st = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&st->timer);
    else
        uv_timer_start(&st->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static curl_state *get_state(void)
{
    if (state)
        return state;
    curl_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->multi = curl_multi_init();
    if (!st->multi) {
        free(st);
        return NULL;
    }
    st->share = curl_share_init();
    if (!st->share) {
        curl_multi_cleanup(st->multi);
        free(st);
        return NULL;
    }
    /* One thread uses them: no lock callbacks. */
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_multi_setopt(st->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    fan__list_init(&st->socks);
    uv_timer_init(fan__loop(), &st->timer);
    st->timer.data = st;
    curl_multi_setopt(st->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(st->multi, CURLMOPT_SOCKETDATA, st);
    curl_multi_setopt(st->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(st->multi, CURLMOPT_TIMERDATA, st);
    state = st;
    return st;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    return fan__call_body(arg, data, size * n) == 0 ? size * n : 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    return fan__call_header_line(arg, data, size * n) == 0 ? size * n : 0;
}

static void free_slist(void *arg)
{
    curl_slist_free_all(arg);
}

static int caller_sets(const fan_call *c, const char *name, size_t n)
{
    for (const char *const *p = c->headers; p && *p; p++)
        if (strncasecmp(*p, name, n) == 0 && (*p)[n] == ':')
            return 1;
    return 0;
}

/* The header list curl sends: the caller's lines and nothing of curl's own,
 * so that both transports send the same request. "Name:" alone would make
 * curl drop the header: an empty value is written "Name;". */
static struct curl_slist *header_list(const fan_call *c)
{
    /* Expect: curl would add "100-continue" to larger bodies and wait for an
     * answer most servers never send. Accept and the form Content-Type it
     * adds to any body are not the caller's. */
    static const char *const removed[] = {"Expect", "Accept", "Content-Type"};
    struct curl_slist *h = NULL, *t;
    char line[64];
    for (size_t i = 0; i < sizeof removed / sizeof *removed; i++) {
        size_t n = strlen(removed[i]);
        if (caller_sets(c, removed[i], n))
            continue;
        snprintf(line, sizeof line, "%s:", removed[i]);
        if (!(t = curl_slist_append(h, line)))
            goto fail;
        h = t;
    }
    for (const char *const *p = c->headers; p && *p; p++) {
        const char *colon = strchr(*p, ':');
        const char *v = colon + 1 + strspn(colon + 1, " \t");
        char *empty = *v ? NULL : fan_sprintf(c->rq, "%.*s;", (int)(colon - *p), *p);
        if (!*v && !empty)
            goto fail;
        if (!(t = curl_slist_append(h, empty ? empty : *p)))
            goto fail;
        h = t;
    }
    char tp[FAN__TRACEPARENT_LINE + 1];
    if (fan__call_traceparent(c, tp)) { /* the trace context, ours (call_observe.c) */
        if (!(t = curl_slist_append(h, tp)))
            goto fail;
        h = t;
        const char *ts = fan__call_tracestate(c);
        char *tsl = ts ? fan_sprintf(c->rq, "tracestate: %s", ts) : NULL;
        if (ts && (!tsl || !(t = curl_slist_append(h, tsl))))
            goto fail;
        h = ts ? t : h;
    }
    return h;
fail:
    curl_slist_free_all(h);
    return NULL;
}

static int set_request(CURL *e, fan_call *c)
{
    struct curl_slist *h = header_list(c);
    if (!h)
        return FAN_ENOMEM;
    if (fan_defer(c->rq, free_slist, h) != 0) {
        curl_slist_free_all(h);
        return FAN_ENOMEM;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (c->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body); /* lives in the arena */
    }
    /* The caller's method goes on the wire, with the body if there is one,
     * as on the lean transport: POSTFIELDS alone would make a GET a POST.
     * HEAD needs NOBODY, or curl waits for a response body that never
     * comes; curl then sends no request body, whatever the order. */
    if (strcmp(c->method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (c->body || strcmp(c->method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
    return 0;
}

/* TLS and the HTTP version, from the app's settings and the origin's. */
static void set_upstream(CURL *e, fan_call *c)
{
    const fan__upstreams *u = c->upstreams;
    const fan__origin_cfg *o = c->origin_cfg;
    fan_http_version v = o ? o->opts.http_version : FAN_HTTP_AUTO;
    int tls = strncasecmp(c->url, "https:", 6) == 0;
    if (u && u->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, u->ca_file);
    if (u && u->client_cert) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, u->client_cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, u->client_key ? u->client_key : u->client_cert);
    }
    if (o && o->opts.no_verify) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    /* http=2 is refused for http:// origins (fan_app_set_origin()). */
    long cv = v == FAN_HTTP_1_1 || !tls ? CURL_HTTP_VERSION_1_1 : CURL_HTTP_VERSION_2TLS;
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, cv);
    /* A call to an origin whose first connection is still in its handshake
     * waits to learn whether it multiplexes, rather than opening another. */
    if (cv != CURL_HTTP_VERSION_1_1)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    c->tp_errbuf = fan__arena_alloc(fan__req_arena(c->rq), CURL_ERROR_SIZE);
    if (c->tp_errbuf) {
        c->tp_errbuf[0] = '\0';
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->tp_errbuf);
    }
}

static int curl_start(fan_call *c)
{
    curl_state *st = get_state();
    if (!st)
        return FAN_ENOMEM;
    CURL *e = st->npool ? st->pool[--st->npool] : curl_easy_init();
    if (!e)
        return FAN_ENOMEM;
    /* The connections libcurl keeps once their transfer is done, for all
     * origins together (its default, 4 per transfer in progress, closed the
     * connections of a fan-out wider than 4 as soon as the worker went
     * quiet); they still close after CURLOPT_MAXAGE_CONN (118 s) or when
     * the upstream closes them. 0: none kept, each closes after its call. */
    size_t kept = fan__rt_of(c->rq)->limits->max_idle_curl_connections;
    if (kept && kept != st->maxconnects) {
        curl_multi_setopt(st->multi, CURLMOPT_MAXCONNECTS, kept > LONG_MAX ? LONG_MAX : (long)kept);
        st->maxconnects = kept;
    }
    if (!kept)
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)fan__call_remaining_ms(c));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    unsigned ttl = fan__rt_of(c->rq)->limits->dns_ttl_ms; /* curl: seconds, -1 for ever */
    curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, ttl ? (long)(ttl + 999) / 1000 : -1L);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_SHARE, st->share);
    set_upstream(e, c);
    int rc = set_request(e, c);
    if (rc == 0 && curl_multi_add_handle(st->multi, e) != CURLM_OK)
        rc = FAN_ENOMEM;
    if (rc != 0) {
        curl_easy_cleanup(e);
        return rc;
    }
    c->tp_data = e;
    return 0;
}

static void curl_cancel(fan_call *c)
{
    /* Removing a transfer in progress closes its connection: the upstream
     * sees the call abandoned at once. */
    if (c->tp_data)
        finish(state, c, FAN_ECANCELED);
}

static void curl_shutdown(void)
{
    curl_state *st = state;
    if (!st)
        return;
    for (unsigned i = 0; i < st->npool; i++)
        curl_easy_cleanup(st->pool[i]);
    curl_multi_cleanup(st->multi);
    curl_share_cleanup(st->share); /* no easy handle uses it any more */
    /* Cached connections curl closed without telling the socket callback. */
    while (!fan__list_empty(&st->socks))
        sock_close(fan__container_of(st->socks.next, sock_ctx, link));
    uv_close((uv_handle_t *)&st->timer, fan__free_handle_data);
    state = NULL;
}

const fan__transport fan__curl_transport = {
    .name = "curl",
    .start = curl_start,
    .cancel = curl_cancel,
    .shutdown = curl_shutdown,
};
