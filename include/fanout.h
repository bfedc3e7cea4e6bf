/*
 * fanout — answer a web request from several concurrent upstream HTTP calls.
 *
 * This header is the whole public API. A fanout program builds a fan_app,
 * adds routes whose handlers run as coroutines, and runs the event loop.
 * Inside a handler, fan_get()/fan_call_start() start upstream calls that all
 * proceed at once; fan_await(), fan_await_all() and fan_await_any() suspend
 * only the calling coroutine until they finish, while the worker's loop keeps
 * serving every other request.
 *
 * Threading: a fan_app and everything reached through a fan_req belong to the
 * thread that runs fan_run(); no function here is thread-safe unless it says
 * so. Ownership: anything a function returns that is tied to a request (strings,
 * calls, parsed JSON) lives until that request ends and is freed with it.
 */
#ifndef FANOUT_H
#define FANOUT_H

#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FAN_VERSION "0.1.0"

/* Error codes: every function that can fail returns 0 or one of these. */
typedef enum fan_error {
    FAN_OK = 0,
    FAN_ENOMEM = -1,       /* out of memory */
    FAN_EINVAL = -2,       /* invalid argument (bad URL, bad option) */
    FAN_ECANCELED = -3,    /* the call or request was cancelled */
    FAN_ETIMEDOUT = -4,    /* a timeout or deadline passed */
    FAN_ECONNREFUSED = -5, /* the upstream refused or could not be reached */
    FAN_EDNS = -6,         /* the upstream host name could not be resolved */
    FAN_ETLS = -7,         /* TLS handshake or certificate failure */
    FAN_ETOOLARGE = -8,    /* a body or header exceeded its limit */
    FAN_EPROTO = -9,       /* the peer broke the HTTP protocol */
    FAN_EIO = -10,         /* another network or system error */
    FAN_EADDRINUSE = -11,  /* the listening address is taken */
    FAN_ESTATE = -12,      /* the operation is not valid now (e.g. replied twice) */
} fan_error;

/* A short English description of an error code. Never returns NULL. */
const char *fan_strerror(int err);

/* A stable lowercase name for an error code ("timeout", "refused", "dns", ...),
 * for logs and JSON bodies. Never returns NULL. */
const char *fan_errname(int err);

typedef struct fan_app fan_app;
typedef struct fan_req fan_req;
typedef struct fan_call fan_call;

/* A request handler. It runs on its own coroutine: it may await calls and
 * sleep. It should answer with one of the fan_reply* functions; a handler that
 * returns without answering gets a 500 JSON error (504 if the request's
 * deadline passed). */
typedef void (*fan_handler)(fan_req *rq);

/* ------------------------------------------------------------------------ */
/* Limits and settings                                                      */
/* ------------------------------------------------------------------------ */

/* Every limit of the server and the client. fan_app_new() fills in the
 * defaults below; change them through fan_app_limits() before fan_run(), or
 * on the command line of fan_main() (--max-header-bytes=N and so on: the flag
 * is the field name with '_' written '-'). */
typedef struct fan_limits {
    size_t max_header_bytes;       /* request line + headers; 431 beyond (default 16 KiB) */
    unsigned max_headers;          /* header fields per request; 431 beyond (default 100) */
    size_t max_body_bytes;         /* request body; 413 beyond (default 1 MiB) */
    unsigned header_timeout_ms;    /* to receive a whole request head; 408 (default 10000) */
    unsigned body_timeout_ms;      /* between two reads of a request body; 408 (default 10000) */
    unsigned idle_timeout_ms;      /* idle keep-alive connection is closed (default 5000) */
    unsigned request_timeout_ms;   /* per-request deadline, 0 = none (default 30000) */
    size_t max_pipelined_bytes;    /* unparsed input buffered while a request runs (64 KiB) */
    size_t max_connections;        /* open client connections per worker (default 10000) */
    size_t stack_size;             /* coroutine stack, rounded to pages (default 64 KiB) */
    unsigned call_timeout_ms;      /* default total timeout of an upstream call (10000) */
    unsigned connect_timeout_ms;   /* upstream connect timeout (default 3000) */
    size_t max_call_body_bytes;    /* upstream response body limit (default 8 MiB) */
} fan_limits;

/* ------------------------------------------------------------------------ */
/* Application                                                              */
/* ------------------------------------------------------------------------ */

/* Creates an application with default limits and no routes. Returns NULL when
 * out of memory. Free it with fan_app_free() after fan_run() returned. */
fan_app *fan_app_new(void);

/* Frees the application, its routes, settings and listeners. Must not be
 * called while fan_run() is running. NULL is ignored. */
void fan_app_free(fan_app *app);

/* The application's limits, to be changed before fan_run(). Never NULL. */
fan_limits *fan_app_limits(fan_app *app);

/* Adds a route. `method` is an HTTP method ("GET", "POST", ...) or "*" for any.
 * `pattern` is a path whose segments may be literal ("/users"), a parameter
 * (":id", read with fan_param()) or, as the last segment, "*" (the rest of
 * the path, read with fan_param(rq, "*")). Routes are matched segment by
 * segment, literal before parameter before wildcard. A path that matches no
 * pattern answers 404; a path that matches with another method answers 405
 * with an Allow header; HEAD is served by GET routes without the body.
 * Returns 0, FAN_EINVAL for a malformed pattern or a duplicate route, or
 * FAN_ENOMEM. The strings are copied. */
int fan_route(fan_app *app, const char *method, const char *pattern, fan_handler handler);

/* Stores a string setting under `key` (copied), readable from any handler with
 * fan_config_str(). Settings are read-only once fan_run() started. Returns 0
 * or FAN_ENOMEM. */
int fan_app_set(fan_app *app, const char *key, const char *value);

/* The setting stored under `key`, or NULL. Owned by the app. */
const char *fan_app_get(const fan_app *app, const char *key);

/* Attaches a pointer of the program's own to the app (NULL by default), for
 * handlers to reach their state through fan_app_data(fan_req_app(rq)). The
 * app never dereferences or frees it. */
void fan_app_set_data(fan_app *app, void *data);
void *fan_app_data(const fan_app *app);

/* Opens a listening TCP socket for this app on `host` (numeric IPv4 or IPv6)
 * and `port` (0 picks a free port). Several apps may listen in one process;
 * they share the worker's loop. If `bound_port` is not NULL it receives the
 * port actually bound. Returns 0, FAN_EADDRINUSE, FAN_EINVAL or FAN_EIO. */
int fan_listen(fan_app *app, const char *host, int port, int *bound_port);

/* Sets the address fan_app_listen() uses (default 0.0.0.0:8080; --host and
 * --port change it). The host is copied. Returns 0 or FAN_ENOMEM. */
int fan_app_set_address(fan_app *app, const char *host, int port);

/* fan_listen() on the app's configured address, with a log line saying
 * where. */
int fan_app_listen(fan_app *app, int *bound_port);

/* Runs the worker's event loop until fan_stop() is called or SIGINT/SIGTERM is
 * received; then closes the listeners, cancels every request still running,
 * waits until every call has ended and returns 0. */
int fan_run(void);

/* Asks fan_run() to stop after the current loop iteration. Safe to call from a
 * handler. */
void fan_stop(void);

/* Parses the command line with fan_app_option() (and --help), listens on the
 * app's address and runs. Returns a process exit status: 0 after a clean
 * stop, 2 for a usage error, 1 when the server cannot start. */
int fan_main(fan_app *app, int argc, char **argv);

/* Applies one "--name=value" or "--name value" option to the app if it is
 * --host, --port, --log-level, --set key=value or names a limit. Returns 1
 * if the option was consumed (and *argi advanced past it), 0 if it is not
 * one of these, or a negative error (with a message in the log) when its
 * value is invalid. For programs that parse their own command lines. */
int fan_app_option(fan_app *app, int argc, char **argv, int *argi);

/* Prints the options fan_app_option() understands, one per line. */
void fan_print_options(FILE *out);

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

/* The method, e.g. "GET". Lives as long as the request. */
const char *fan_method(const fan_req *rq);

/* The URL-decoded path, without the query. Lives as long as the request. */
const char *fan_path(const fan_req *rq);

/* The raw query string after '?', or "" when there is none. */
const char *fan_query_string(const fan_req *rq);

/* The URL-decoded value of the first query parameter `name`, "" for a name
 * without a value, or NULL when absent. Lives as long as the request. */
const char *fan_query(fan_req *rq, const char *name);

/* A query parameter parsed as a long integer; `def` when it is absent. Sets
 * *ok (if not NULL) to 0 when it is present but not a valid integer. */
long fan_query_long(fan_req *rq, const char *name, long def, int *ok);

/* The value of request header `name` (case-insensitive), or NULL. Repeated
 * headers: the first. Lives as long as the request. */
const char *fan_header(const fan_req *rq, const char *name);

/* The value of the route parameter `name` (":name" in the pattern, "*" for the
 * wildcard), URL-decoded, or NULL. Lives as long as the request. */
const char *fan_param(const fan_req *rq, const char *name);

/* The request body (NUL-terminated for convenience) and its length. An empty
 * body gives "" and 0. Lives as long as the request. */
const char *fan_body(const fan_req *rq, size_t *len);

/* The app that is serving this request (read-only during a request). */
const fan_app *fan_req_app(const fan_req *rq);

/* A setting of the request's app (see fan_app_set()), or NULL. */
const char *fan_config_str(const fan_req *rq, const char *key);

/* Allocates `size` bytes from the request's arena, aligned for any type.
 * Freed when the request ends; never free it yourself. NULL if out of
 * memory. */
void *fan_alloc(fan_req *rq, size_t size);

/* Registers fn(arg) to run when the request's memory is freed, after its
 * handler returned and every call ended; cleanups run in reverse order of
 * registration. Use it to release what a handler acquires, so that a
 * cancelled request releases it too. Returns 0 or FAN_ENOMEM (fn is then not
 * registered). */
int fan_defer(fan_req *rq, void (*fn)(void *arg), void *arg);

/* A printf into the request's arena. Freed with the request. NULL if out of
 * memory. */
char *fan_sprintf(fan_req *rq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Seconds on a monotonic clock (the loop's cached time, refreshed on each
 * iteration, in ms resolution), like Python's time.perf_counter(). */
double fan_now(void);

/* Suspends the calling handler for `ms` milliseconds without blocking anything
 * else. Returns 0, or FAN_ECANCELED if the request was cancelled meanwhile. */
int fan_sleep(fan_req *rq, unsigned ms);

/* Sets the request's deadline to `ms` from now (0 removes it). When it
 * passes, every outstanding call is cancelled, awaits return FAN_ECANCELED,
 * and fan_cancelled() returns FAN_ETIMEDOUT. Returns 0 or FAN_ESTATE if the
 * request is already cancelled. */
int fan_set_deadline(fan_req *rq, unsigned ms);

/* Why the request was cancelled: 0 if it was not, FAN_ETIMEDOUT for its
 * deadline, FAN_ECANCELED when the client went away or the server stops. */
int fan_cancelled(const fan_req *rq);

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

/* Adds a response header (both strings copied). Call before replying. Returns
 * 0, FAN_EINVAL for a name or value with forbidden characters (CR, LF, ...),
 * FAN_ESTATE after the reply, or FAN_ENOMEM. */
int fan_set_header(fan_req *rq, const char *name, const char *value);

/* Sends the response: status, Content-Type (may be NULL for none) and body
 * (copied). A request gets exactly one reply: a second returns FAN_ESTATE.
 * Returns 0 or a negative error; the reply is sent even if the client went
 * away in between (it is then dropped silently). */
int fan_reply(fan_req *rq, int status, const char *content_type, const void *body, size_t len);

/* A text/plain reply formatted like printf. */
int fan_reply_printf(fan_req *rq, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An application/json reply. Takes the reference to `json` (it is decref'd,
 * even on failure). */
int fan_reply_json(fan_req *rq, int status, json_t *json);

/* A JSON error reply: {"error": message, "status": status}. */
int fan_reply_error(fan_req *rq, int status, const char *message);

/* Whether the request has been answered. */
int fan_replied(const fan_req *rq);

/* ------------------------------------------------------------------------ */
/* Upstream calls                                                           */
/* ------------------------------------------------------------------------ */

/* Options of one upstream call. Zero-initialise and set what you need; every
 * pointer is copied by fan_call_start(). */
typedef struct fan_call_opts {
    const char *method;           /* NULL means "GET" */
    const char *const *headers;   /* NULL-terminated "Name: value" strings, or NULL */
    const void *body;             /* request body, or NULL */
    size_t body_len;
    unsigned timeout_ms;          /* total time; 0 = the app's call_timeout_ms */
    size_t max_body_bytes;        /* response body limit; 0 = the app's limit */
    const char *name;             /* a label for logs and errors (e.g. "api_a") */
} fan_call_opts;

/* Starts an upstream HTTP call on behalf of the request and returns at once;
 * the call proceeds concurrently with the handler and with every other call.
 * `url` is http:// or https://. The call belongs to the request: it is freed
 * with it, and cancelled if the request is cancelled or ends first. Returns
 * NULL only when out of memory; every other failure (bad URL, refused, ...)
 * is reported by the call itself once awaited. */
fan_call *fan_call_start(fan_req *rq, const char *url, const fan_call_opts *opts);

/* fan_call_start() with GET and a printf-formatted URL. */
fan_call *fan_get(fan_req *rq, const char *url_fmt, ...) __attribute__((format(printf, 2, 3)));

/* Suspends the handler until `call` has finished. Returns the call's error:
 * 0 when a response was received (whatever its HTTP status), else a
 * negative code (FAN_ECANCELED if the request was cancelled). */
int fan_await(fan_req *rq, fan_call *call);

/* Suspends until every call of the request has finished. Returns 0 when all
 * of them got a response, else the error of the first failed one (in start
 * order). */
int fan_await_all(fan_req *rq);

/* Suspends until the next call finishes that no fan_await_any() has returned
 * yet, and returns it, in completion order. Returns NULL when every call has
 * been returned, or when the request is cancelled. */
fan_call *fan_await_any(fan_req *rq);

/* Cancels a call that has not finished: it ends with FAN_ECANCELED. */
void fan_call_cancel(fan_call *call);

/* Whether the call has finished (with a response or an error). */
int fan_call_done(const fan_call *call);

/* The call's error: 0 for a response, FAN_E* otherwise. 1 while running. */
int fan_call_error(const fan_call *call);

/* The HTTP status of the response, or 0 if there was none. */
int fan_call_status(const fan_call *call);

/* The response body (NUL-terminated) and its length; "" and 0 when there is
 * none. Lives as long as the request. */
const char *fan_call_body(const fan_call *call, size_t *len);

/* A response header (case-insensitive), or NULL. Lives as long as the request. */
const char *fan_call_header(const fan_call *call, const char *name);

/* The response body parsed as JSON, or NULL if it is not JSON. Borrowed: the
 * call owns it (parsed once, freed with the request). */
json_t *fan_call_json(fan_call *call);

/* A number member `key` of the JSON object body, or NAN if there is none. */
double fan_call_json_number(fan_call *call, const char *key);

/* The call's URL and label (the label is the URL when none was given). */
const char *fan_call_url(const fan_call *call);
const char *fan_call_name(const fan_call *call);

/* When the call started and finished, in fan_now() seconds (finished is 0
 * while running). */
double fan_call_started(const fan_call *call);
double fan_call_finished(const fan_call *call);

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum fan_log_level {
    FAN_LOG_DEBUG,
    FAN_LOG_INFO,
    FAN_LOG_WARN,
    FAN_LOG_ERROR,
} fan_log_level;

/* Writes one line to stderr: time, level, pid and the message. Lines below
 * the threshold (default FAN_LOG_INFO) are dropped. */
void fan_log(fan_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the lowest level that is written. */
void fan_log_set_level(fan_log_level level);

#ifdef __cplusplus
}
#endif

#endif /* FANOUT_H */
