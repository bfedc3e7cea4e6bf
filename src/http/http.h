/* The server side: applications, connections and requests. Internal to
 * libfanout; the public contract is include/fanout.h. */
#ifndef FAN_HTTP_H
#define FAN_HTTP_H

#include <llhttp.h>
#include <uv.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/h1_check.h"
#include "core/list.h"
#include "core/span.h"
#include "coro/coro.h"
#include "fanout.h"
#include "http/router.h"

/* The accept queue asked of the kernel (which caps it at
 * net.core.somaxconn). 511 overflowed when 5,000 clients connected at once
 * in the benchmark: the SYNs dropped came back a second later. */
#define FAN__LISTEN_BACKLOG 4096

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

    /* the application context (src/app/) */
    struct fan__config *config;          /* declared keys, layers, snapshot */
    fan_handler *before_hooks, *after_hooks;
    unsigned nbefore, nafter;
    struct fan__error_route *error_routes; /* fan_error_handler() */
    unsigned nerror_routes;

    /* the process model (src/server/master.c): fan_app_on_reload()'s hook and
     * --graceful-timeout (meaningful only when graceful_timeout_set) */
    fan_reload_fn reload;
    void *reload_arg;
    unsigned graceful_timeout_s;
    int graceful_timeout_set;
};

typedef struct fan__header {
    const char *name, *value;
} fan__header;

typedef struct fan__conn fan__conn;

typedef struct fan_task fan__task;

/* Something a request waits on or owns that must end before the request's
 * memory is freed: an upstream call, a timer, a child task, a write.
 * `cancel` (may be NULL) asks it to end soon; it must then call
 * fan__op_end(). `owner` is the task that started it (NULL for the
 * request's own: writes, the deadline); cancelling a task cancels the ops it
 * owns. */
typedef struct fan__op {
    fan__list link;
    void (*cancel)(struct fan__op *op);
    fan__task *owner;
    unsigned long long cancel_epoch; /* the cancel_ops() walk that reached it */
} fan__op;

typedef struct fan__defer {
    void (*fn)(void *);
    void *arg;
    struct fan__defer *next;
} fan__defer;

/* What a suspended task waits for: it is resumed when ready(rq, arg) holds
 * or the task is cancelled. */
typedef int (*fan__ready_fn)(fan_req *rq, void *arg);

/* A coroutine of a request: the handler itself (the request's main task) or
 * a child started with fan_spawn(). Each task owns the calls and children it
 * starts; when its function returns, those still running are cancelled, and
 * the task ends (its coroutine's stack is released, its result visible) only
 * once the last of its children ended: a child may hold pointers into its
 * parent's frame. */
struct fan_task {
    fan_req *rq;
    fan__task *parent;        /* NULL for the main task */
    fan__coro *co;            /* while the function runs */
    fan__op op;               /* a child task is an op of its parent */
    fan__list link;           /* rq->tasks while it has a coroutine */
    fan__list children;       /* child tasks, in start order */
    fan__list child_link;
    fan__list done_children;  /* finished, not returned by fan_task_await_any */
    fan__list done_link;
    int (*fn)(fan_req *rq, void *arg);
    void *arg;
    int result;               /* 1 until the task ended, then the function's result */
    int fn_result;            /* what the function returned, kept until the task ends */
    int returned;             /* the function returned; the task ends once its last
                               * child did, and only then is its stack released */
    unsigned children_running; /* children that have not ended */
    fan__task *joining;       /* the task fan_task_await() waits for to end after
                               * cancelling it, to refuse a circle of such waits */
    int cancelled;            /* 0, or why: FAN_ECANCELED / FAN_ETIMEDOUT */
    int waiting;
    int shielded;             /* this wait ignores cancellation */
    fan__ready_fn ready;
    void *ready_arg;
    void *timeout;            /* fan_task_set_timeout()'s timer op */
    fan__list calls;          /* calls this task started, in start order */
    fan__list completed;      /* finished calls not returned by fan_await_any */
    unsigned calls_running;
};

typedef struct fan__stored {
    const char *key;
    void *value;
    void (*destroy)(void *value);
    struct fan__stored *next;
} fan__stored;

struct fan_req {
    fan__arena arena;
    fan_app *app;
    fan__conn *conn;        /* NULL once the connection is gone */
    fan__task main;         /* the handler's task */
    fan__list tasks;        /* tasks with a coroutine, the main one included */
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
    int busy;               /* settle() must neither resume nor free now */
    unsigned long long cancel_epoch;
    fan__list ops;          /* live fan__op */
    unsigned nops;
    fan__defer *defers;
    uv_timer_t *deadline;
    fan__stored *store;     /* fan_store_set() */

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
    struct fan__reqctx *ctx; /* the app layer's state (src/app/context.c) */

    /* for the access log, written when the request is freed */
    double started;         /* fan_now() when its first byte was parsed */
    size_t out_bytes;       /* response bytes handed to the socket */
    unsigned ncalls, ncalls_failed; /* upstream calls finished, failed */
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
void fan__op_begin(fan_req *rq, fan__op *op, fan__task *owner);
void fan__op_end(fan_req *rq, fan__op *op);

/* The running task of `rq`; its main task when called from the loop. */
fan__task *fan__task_of(fan_req *rq);

/* Suspends the running task until ready(rq, arg) or its cancellation.
 * Returns 0, or FAN_ECANCELED when the task is cancelled. Must run in one of
 * the request's coroutines. */
int fan__req_wait(fan_req *rq, fan__ready_fn ready, void *arg);

/* The same, but cancellation does not end the wait: for waits whose
 * memory must outlive them (work on another thread). Returns FAN_ECANCELED
 * if the task was cancelled meanwhile, once ready. */
int fan__req_wait_shielded(fan_req *rq, fan__ready_fn ready, void *arg);

/* Resumes every task whose wait is over, and frees the request once its
 * handler returned and every op ended. Call after anything a task may wait
 * for changed. */
void fan__req_notify(fan_req *rq);

/* Cancels a task, the ops it owns and its children (recursively), waking
 * them with FAN_ECANCELED. */
void fan__task_cancel(fan__task *t, int reason);

/* Prepares a task: lists, state. */
void fan__task_init(fan__task *t, fan_req *rq, fan__task *parent);

/* Starts a prepared task's coroutine running fn(arg) with `entry`. Returns 0
 * or FAN_ENOMEM. The task runs at the next settle. */
int fan__task_start(fan__task *t, void (*entry)(void *), void *arg);

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

/* Response helpers (response.c). */
int fan__reply_raw(fan__conn *c, int status, const char *extra_headers, const char *body,
                   int close);
const char *fan__status_text(int status);

/* Application context (src/app/hooks.c). */

/* Runs the before-request hooks in the handler's coroutine. Returns 1 if the
 * handler must not run: a hook replied or the request was cancelled. */
int fan__hooks_before(fan_req *rq);

/* Runs what comes between a reply and its writing: the error handler of its
 * status, the after-request hooks, the session's cookie. */
void fan__hooks_reply(fan_req *rq);

/* Writes `bufs`: at once if the socket takes them all (returns 1, cb is
 * not called), else the rest through uv_write (returns 0, cb is called), or
 * a negative libuv error. `bufs` may be modified. (stream.c) */
int fan__stream_write(uv_stream_t *s, uv_write_t *w, uv_buf_t *bufs, unsigned nbufs,
                      uv_write_cb cb);

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

/* Whether this thread's server state (and its libuv loop) exists already. */
int fan__srv_exists(void);

/* The app's graceful timeout in ms (--graceful-timeout; 30 s by default),
 * and the longest given to the apps this thread listens for (30 s if none
 * was). */
unsigned fan__graceful_ms(const fan_app *app);
unsigned fan__http_graceful_ms(void);

#endif
