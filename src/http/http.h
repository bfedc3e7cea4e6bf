/* The server side: applications, connections and requests. Internal to
 * libfanout; the public contract is include/fanout.h. */
#ifndef FAN_HTTP_H
#define FAN_HTTP_H

#include <llhttp.h>
#include <uv.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/list.h"
#include "coro/coro.h"
#include "fanout.h"
#include "http/router.h"

typedef struct fan__setting {
    char *key, *value;
    struct fan__setting *next;
} fan__setting;

typedef struct fan__listener {
    uv_tcp_t tcp;
    fan_app *app;
    fan__list link; /* in the loop's list of listeners */
    int closing;
} fan__listener;

struct fan_app {
    fan_limits limits;
    fan__router *router;
    fan__setting *settings;
    unsigned nlisteners; /* open listeners */
    void *data;          /* the program's own pointer */
    char *host;          /* where fan_app_listen() listens */
    int port;
};

typedef struct fan__header {
    const char *name, *value;
} fan__header;

typedef struct fan__conn fan__conn;

/* Something a request waits on or owns that must end before the request's
 * memory is freed: an upstream call, a timer. `cancel` asks it to end soon;
 * it must then call fan__op_end(). */
typedef struct fan__op {
    fan__list link;
    void (*cancel)(struct fan__op *op);
} fan__op;

typedef struct fan__defer {
    void (*fn)(void *);
    void *arg;
    struct fan__defer *next;
} fan__defer;

/* What a suspended handler waits for: it is resumed when ready(rq) holds or
 * the request is cancelled. */
typedef int (*fan__ready_fn)(fan_req *rq, void *arg);

struct fan_req {
    fan__arena arena;
    fan_app *app;
    fan__conn *conn;        /* NULL once the connection is gone */
    fan__coro *co;          /* the handler's coroutine while it runs */
    fan_handler handler;

    /* request */
    char *method, *path, *query, *raw_path; /* path is decoded, raw_path not */
    fan__header *headers;
    unsigned nheaders;
    fan__buf body;
    fan__route_match match;
    int http_minor;
    int keep_alive;
    int head;               /* a HEAD request: no body in the reply */

    /* state */
    int cancelled;          /* 0 or FAN_ETIMEDOUT / FAN_ECANCELED */
    int handler_done;
    int replied;
    int waiting;            /* the coroutine is suspended in wait() */
    int busy;               /* settle() must neither resume nor free now */
    fan__ready_fn ready;
    void *ready_arg;
    fan__list ops;          /* live fan__op */
    unsigned nops;
    fan__defer *defers;
    uv_timer_t *deadline;

    /* response */
    fan__header *out_headers;
    unsigned nout, out_cap;
    int status;

    /* client layer state (calls) */
    fan__list calls;        /* every call, in start order */
    fan__list completed;    /* finished calls not yet returned by fan_await_any */
    unsigned calls_running;
};

/* A client connection. Owned by the loop; freed after its handle closed and
 * its current request has ended. */
struct fan__conn {
    uv_tcp_t tcp;
    fan_app *app;
    llhttp_t parser;
    fan__buf in;              /* bytes read and not parsed yet */
    fan_req *rq;              /* the request being parsed or served */
    fan__buf field, value;    /* header being assembled from split callbacks */
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
};

/* The per-thread server state: everything fan_run() needs to stop cleanly. */
typedef struct fan__server {
    uv_loop_t *loop;
    fan__list listeners;
    fan__list conns;
    size_t nconns;
    size_t nreqs;             /* requests not freed yet */
    uv_signal_t sigint, sigterm;
    int stopping;
    int running;
    char date[40];            /* "Date: ...\r\n", refreshed once per second */
    uint64_t date_at;
} fan__server;

fan__server *fan__srv(void);

/* Request lifecycle (request.c). */
fan_req *fan__req_new(fan__conn *conn);
void fan__req_start(fan_req *rq);            /* routes and runs the handler */
void fan__req_cancel(fan_req *rq, int reason);
void fan__req_conn_gone(fan_req *rq);        /* the connection closed */
void fan__op_begin(fan_req *rq, fan__op *op);
void fan__op_end(fan_req *rq, fan__op *op);

/* Suspends the handler until ready(rq, arg) or cancellation. Returns 0, or
 * FAN_ECANCELED when the request is cancelled. Must run in the handler's
 * coroutine. */
int fan__req_wait(fan_req *rq, fan__ready_fn ready, void *arg);

/* Resumes the handler if it waits and what it waits for is ready. Call after
 * anything it may wait for changed. */
void fan__req_notify(fan_req *rq);

/* Connection side (conn.c). */
void fan__conn_accept(fan__listener *l);
void fan__conn_request_done(fan__conn *c);     /* the request in it has ended */
int fan__conn_write(fan__conn *c, uv_buf_t *bufs, unsigned nbufs, void *mem, int close);
void fan__conn_close(fan__conn *c);

/* Response helpers (response.c). */
int fan__reply_raw(fan__conn *c, int status, const char *extra_headers, const char *body,
                   int close);
const char *fan__status_text(int status);


/* Closes every listener and connection and cancels every request (server.c). */
void fan__http_shutdown(void);

/* Whether no connection and no request is left. */
int fan__http_idle(void);

#endif
