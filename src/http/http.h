/* The inbound server: what it needs of an app (fan__site), listeners,
 * connections, requests as HTTP messages, hooks and responses. Built on the
 * request runtime (runtime/runtime.h); the upstream client is beside it and
 * neither uses the other. Internal to libfanout; the public contract is
 * include/fanout.h. */
#ifndef FAN_HTTP_H
#define FAN_HTTP_H

#include <llhttp.h>
#include <uv.h>

#include "core/buf.h"
#include "core/h1_check.h"
#include "core/header.h"
#include "core/span.h"
#include "http/router.h"
#include "runtime/runtime.h"

/* The accept queue asked of the kernel (which caps it at
 * net.core.somaxconn). 511 overflowed when 5,000 clients connected at once
 * in the benchmark: the SYNs dropped came back a second later. */
#define FAN__LISTEN_BACKLOG 4096

typedef struct fan__listener {
    uv_tcp_t tcp;
    fan_app *app;
    fan__list link; /* in the loop's list of listeners */
    int closing;
} fan__listener;

typedef struct fan__error_route {
    int status; /* 0: every status >= 400 without its own handler */
    fan_handler fn;
} fan__error_route;

/* What the server needs of an app: its limits, routes, address, hooks and
 * graceful timeout. struct fan_app (src/app/app.h) begins with it, so a
 * fan_app * is a fan__site *. */
typedef struct fan__site {
    fan_limits limits;
    fan__router *router;
    unsigned nlisteners; /* open listeners */
    char *host;          /* where fan_app_listen() listens */
    int port;
    unsigned graceful_timeout_s; /* --graceful-timeout, if graceful_timeout_set */
    int graceful_timeout_set;
    struct fan__cidr *trusted; /* fan_app_set_trusted_proxies() (client_addr.c) */
    size_t ntrusted;
    /* hooks.c: fan_app_before_request(), fan_app_after_request(), fan_app_error_handler() */
    fan_handler *before_hooks, *after_hooks;
    unsigned nbefore, nafter;
    fan__error_route *error_routes;
    unsigned nerror_routes;
    /* The last step before a reply is written, after the hooks: filled by
     * the app layer (the session's cookie), NULL for none. */
    void (*finisher)(fan_req *rq);
} fan__site;

static inline fan__site *fan__site_of(fan_app *app)
{
    return (fan__site *)(void *)app;
}

static inline const fan__site *fan__site_of_const(const fan_app *app)
{
    return (const fan__site *)(const void *)app;
}

/* Prepares the server's part of a new app: default limits, a router, the
 * default address. Returns 0 or FAN_ENOMEM (then fan__site_free() it). */
int fan__site_init(fan__site *s);
void fan__site_free(fan__site *s);

typedef struct fan__conn fan__conn;

/* Who the client of a request is (client_addr.c): the connection's peer, or
 * the address a trusted proxy forwarded, worked out on first use. */
typedef struct fan__client {
    struct sockaddr_storage peer; /* ss_family AF_UNSPEC when unknown */
    const char *addr;             /* numeric, in the arena; NULL if unknown */
    int port;                     /* 0 if unknown */
    int resolved;                 /* addr and port are set */
} fan__client;

/* A request as the server sees it. It begins with the runtime's part
 * (runtime/runtime.h: arena, tasks, ops, cancellation), so a fan_req * is
 * a fan__rt *; the rest is HTTP. */
struct fan_req {
    fan__rt rt;
    fan_app *app;
    fan__conn *conn;        /* NULL once the connection is gone */
    fan_handler handler;

    /* request */
    char *method, *path, *query, *raw_path; /* path is decoded, raw_path not */
    fan__header *headers;
    unsigned nheaders, headers_cap;
    fan__buf body;
    fan__route_match match;
    int http_minor;
    int keep_alive;
    int head;               /* a HEAD request: no body in the reply */
    int replied;
    fan__client client;     /* fan_req_client_addr() */

    /* response */
    fan__header *out_headers;
    unsigned nout, out_cap;
    int status;
    /* the recorded reply, written once the hooks ran (response.c) */
    const char *content_type;
    char *out_body;
    size_t out_len;
    int finishing;          /* error handler and after-request hooks run */
    int sent;               /* the response was written (or dropped) */

    /* the app layer's state (src/app): its context and the store */
    struct fan__reqctx *ctx;
    struct fan__stored *store;

    /* for the access log, written when the request is freed */
    double started;         /* fan_now() when its first byte was parsed */
    size_t out_bytes;       /* response bytes handed to the socket */
};

/* A client connection. Owned by the loop; freed after its handle closed and
 * its current request has ended. */
struct fan__conn {
    uv_tcp_t tcp;
    fan_app *app;
    llhttp_t parser;
    fan__buf in;              /* bytes read and not parsed yet */
    fan_req *rq;              /* the request being parsed or served */
    fan__span field, value;   /* the target or header being read */
    fan__h1_check h1;         /* obs-fold and chunk CRLF, which llhttp does not check */
    struct sockaddr_storage peer; /* read once accepted; AF_UNSPEC if unknown */
    size_t head_bytes;
    uv_timer_t timer;         /* header, body and idle timeouts */
    fan__list link;           /* in the loop's list of connections */
    int timer_kind;           /* which timeout the timer runs: head, body, idle */
    int error_status;         /* a status our callbacks failed with: 400, 413, 431 */
    int reading;
    int closing;
    int serving;              /* a complete request was handed over and not ended */
    int processing;           /* process_buffered() or read_cb() is on the stack */
    int writes;               /* writes in flight */
    int handles;              /* open uv handles (tcp, timer) */
    int close_after_write;
    int eof;
    unsigned served;          /* requests ended on it: a graceful stop closes a
                               * connection that served one and waits for the
                               * first request of a fresh one */
};

/* The per-thread server state: everything fan_run() needs to stop cleanly. */
typedef struct fan__server {
    uv_loop_t *loop;
    fan__list listeners;
    fan__list conns;
    size_t nconns;
    uv_signal_t sigint, sigterm;
    int stopping;
    int running;
    char date[40];            /* "Date: ...\r\n", refreshed once per second */
    uint64_t date_at;
} fan__server;

fan__server *fan__srv(void);

/* Requests (request.c): made by a connection, routed, run by the runtime,
 * released once the runtime says every task and op ended. */
fan_req *fan__req_new(fan__conn *conn);
void fan__req_start(fan_req *rq);            /* routes and runs the handler */
void fan__req_conn_gone(fan_req *rq);        /* the connection closed */

/* Connection side (conn.c). fan__conn_accept() takes the connection libuv
 * accepted on `l` (fd < 0), or adopts an fd accepted from its backlog when a
 * graceful stop closes the listener (see fan__http_stop_accepting()). */
void fan__conn_accept(fan__listener *l, int fd);
void fan__conn_request_done(fan__conn *c);     /* the request in it has ended */
void fan__conn_close(fan__conn *c);

/* A response write was queued (the socket did not take it at once): the
 * connection is closed unless fan__conn_write_done() follows within the
 * write timeout. Only while no head, body or idle timeout runs: while a
 * request is served, or for an error reply after which it closes. */
void fan__conn_write_queued(fan__conn *c);
void fan__conn_write_done(fan__conn *c);

/* During a graceful stop: closes the connection if it is idle, i.e. it served
 * a request, has none in progress and nothing buffered or unread. */
void fan__conn_close_if_idle(fan__conn *c);

/* Whether s[0..len) is a non-empty RFC 9110 token: what a header name
 * must be (conn.c). */
int fan__is_token(const char *s, size_t len);

/* Reads the connection's peer address into c->peer (client_addr.c). */
void fan__conn_read_peer(fan__conn *c);

/* Response helpers (response.c). */
int fan__reply_raw(fan__conn *c, int status, const char *extra_headers, const char *body,
                   int close);
const char *fan__status_text(int status);

/* Hooks (hooks.c). */

/* Runs the before-request hooks in the handler's coroutine. Returns 1 if the
 * handler must not run: a hook replied or the request was cancelled. */
int fan__hooks_before(fan_req *rq);

/* Runs what comes between a reply and its writing: the error handler of its
 * status, the after-request hooks, then the site's finisher. */
void fan__hooks_reply(fan_req *rq);

void fan__hooks_free(fan__site *s);

/* Closes every listener and connection and cancels every request (server.c). */
void fan__http_shutdown(void);

/* Whether no connection and no request is left. */
int fan__http_idle(void);

/* Graceful stop (server.c): closes every listener after accepting what is
 * already in its backlog, and closes idle keep-alive connections. Requests in
 * progress go on; their answers carry Connection: close. */
void fan__http_stop_accepting(void);
void fan__http_close_idle(void);

/* Listens for `app` on `fd`, a bound TCP socket (a worker's, from its master:
 * see src/server/master.c). Takes the descriptor, even on failure. Returns 0
 * or a FAN_E* code, with a log line. */
int fan__listen_fd(fan_app *app, int fd);

/* The app's graceful timeout in ms (--graceful-timeout; 30 s by default),
 * and the longest given to the apps this thread listens for (30 s if none
 * was). */
unsigned fan__graceful_ms(const fan_app *app);
unsigned fan__http_graceful_ms(void);

#endif
