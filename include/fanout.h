/*
 * fanout — answer a web request from several concurrent upstream HTTP calls.
 *
 * This header is the whole public API. A fanout program builds a fan_app,
 * adds routes whose handlers run as coroutines, and runs the event loop.
 * Inside a handler, fan_get()/fan_call_start() start upstream calls that all
 * proceed at once; fan_call_await(), fan_call_await_all() and
 * fan_call_await_any() suspend only the calling coroutine until they finish,
 * while the worker's loop keeps serving every other request.
 *
 * Threading: a fan_app and everything reached through a fan_req belong to the
 * thread that runs fan_run(); no function here is thread-safe unless it says
 * so. Ownership: anything a function returns that is tied to a request (strings,
 * calls, parsed JSON) lives until that request ends and is freed with it.
 *
 * Naming: every name starts with fan_ (FAN_ for macros and constants). A
 * function is fan_<object>_<verb or property>, the object being what it acts
 * on: fan_app_* an app, fan_call_* an upstream call, fan_task_* a child task,
 * fan_session_*, fan_store_*, fan_config_* (the request's configuration),
 * fan_log_*. A request has two sides: fan_req_* reads the request (method,
 * path, query, headers, body, cookies), fan_resp_* builds the response
 * (headers, cookies, status) and fan_reply* sends it, or a streamed
 * response sends its parts as they are made: fan_resp_start(),
 * fan_resp_write() (and fan_resp_sse(), fan_resp_ndjson()), fan_resp_end().
 * What acts for the running task of a request takes the fan_req first and
 * is a plain verb: fan_get(), fan_spawn(), fan_sleep(), fan_alloc(),
 * fan_defer(); awaiting is
 * fan_<object>_await*: fan_call_await(rq, call), fan_task_await(rq, task),
 * fan_task_gather(); fan_suspend(rq, waker) is ended by fan_wake(waker). The
 * process and its worker have fan_main(), fan_run(), fan_stop(), fan_loop().
 * Readers take const pointers; setters are fan_<object>_set_<property>.
 * Functions that can fail return 0 or a negative FAN_E* code, never another
 * positive value; pointers are NULL on failure.
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

/* The version of this header: FAN_VERSION_NUM is major * 10000 + minor * 100
 * + patch, for #if FAN_VERSION_NUM >= 10200. */
#define FAN_VERSION_MAJOR 0
#define FAN_VERSION_MINOR 2
#define FAN_VERSION_PATCH 0
#define FAN_VERSION_NUM (FAN_VERSION_MAJOR * 10000 + FAN_VERSION_MINOR * 100 + FAN_VERSION_PATCH)
#define FAN_VERSION "0.2.0"

/* Marks the public API: the library is built with hidden visibility, so only
 * what is declared here with FAN_API is exported from libfanout.so. */
#if defined(__GNUC__) || defined(__clang__)
#define FAN_API __attribute__((visibility("default")))
#else
#define FAN_API
#endif

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
    FAN_EBUSY = -13,       /* too many upstream calls: the call queue was full, or the
                            * call waited longer than call_queue_timeout_ms; or
                            * redis.max_in_flight Redis commands in flight */
    FAN_EOPEN = -14,       /* the origin's circuit breaker is open: nothing was sent */
    /* The last (most negative) code, not a code of its own: a new code goes
     * before it and moves it, so that a loop from -1 down to FAN_ELAST sees
     * every code (tests/unit/test_errors.c checks each has a name and a text). */
    FAN_ELAST = FAN_EOPEN,
} fan_error;

/* A short English description of an error code. Never returns NULL. */
FAN_API const char *fan_strerror(int err);

/* A stable lowercase name for an error code ("timeout", "refused", "dns", ...),
 * for logs and JSON bodies. Never returns NULL. */
FAN_API const char *fan_errname(int err);

typedef struct fan_app fan_app;
typedef struct fan_req fan_req;
typedef struct fan_call fan_call;

/* libuv's loop, for fan_loop(); include <uv.h> to use it. */
struct uv_loop_s;

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
    unsigned write_timeout_ms;     /* a response write not completed in it (the client does
                                    * not read) closes the connection, 0 = none (30000) */
    unsigned request_timeout_ms;   /* per-request deadline, 0 = none (default 30000) */
    size_t max_pipelined_bytes;    /* unparsed input buffered while a request runs (64 KiB) */
    size_t max_connections;        /* open client connections per worker (default 10000) */
    size_t stack_size;             /* coroutine stack, rounded to pages (default 64 KiB) */
    unsigned call_timeout_ms;      /* default total timeout of an upstream call (10000) */
    unsigned connect_timeout_ms;   /* upstream connect timeout (default 3000) */
    size_t max_call_body_bytes;    /* upstream response body limit (default 8 MiB) */
    unsigned dns_ttl_ms;           /* an upstream host name is resolved again once its last
                                    * answer is older (in the background; connections to an
                                    * address it no longer has are not reused); 0 = resolve
                                    * once (default 60000) */
    /* Upstream calls in flight per worker, all origins together, and to one
     * origin (scheme, host and port); 0 = no limit. A call beyond either
     * waits in the worker's call queue, first come first served, and starts
     * when a call ends (default 16384 and 16384: lower max_calls_per_host
     * to keep one slow upstream from taking every slot). */
    size_t max_calls;
    size_t max_calls_per_host;
    size_t max_idle_connections_per_host; /* keep-alive connections to one origin kept idle
                                           * per worker for the next calls (plain http://);
                                           * one more is closed. Default 16384: as many as
                                           * max_calls_per_host lets run, so a burst that ends
                                           * at once keeps its connections; 0 = none kept */
    size_t max_idle_curl_connections; /* the same for the calls through libcurl (https://,
                                       * and every call with FANOUT_TRANSPORT=curl), for all
                                       * origins together: its connection cache
                                       * (CURLMOPT_MAXCONNECTS), the oldest closed beyond it;
                                       * 0 = none kept (default 1024) */
    size_t max_queued_calls;       /* calls waiting per worker; one more fails at once with
                                    * FAN_EBUSY, 0 = no waiting (default 16384) */
    unsigned call_queue_timeout_ms; /* longest wait in the queue, then FAN_EBUSY, 0 = only
                                     * the call's own timeout (default 5000; the call's
                                     * timeout counts the wait too) */
    size_t max_stream_queued_bytes; /* bytes of a streamed response queued for a client that
                                     * reads slowly; a fan_resp_write() beyond suspends its
                                     * task until they drain below (default 64 KiB) */
    size_t max_cache_bytes;         /* the worker's response cache (fan_call_opts.cache):
                                     * stored bodies, headers and keys; the least recently
                                     * used entries are evicted beyond it, and a response
                                     * larger than it is not stored (default 64 MiB) */
    size_t max_origins;             /* upstream origins (scheme, host, port) a worker keeps
                                     * retry, hedging and breaker state for; a call to one
                                     * more is tried once, unhedged and without a breaker,
                                     * with a warning (one a second at most) (default 4096) */
    unsigned tls_handshake_timeout_ms; /* a TLS client that has not completed its handshake
                                        * in it is closed, with a log line (default 10000) */
    /* HTTP/2 (a TLS listener's client that chose "h2" by ALPN). A stream is
     * a request: every limit above holds per stream, and max_header_bytes
     * and max_headers bound its header list (SETTINGS_MAX_HEADER_LIST_SIZE;
     * 431 beyond, and a list past twice max_header_bytes, an HPACK bomb,
     * ends the connection with GOAWAY ENHANCE_YOUR_CALM). */
    unsigned h2_max_streams;       /* concurrent streams per connection
                                    * (SETTINGS_MAX_CONCURRENT_STREAMS; a client that opens
                                    * one more once it acknowledged them gets GOAWAY
                                    * PROTOCOL_ERROR, a log line and the close) (default 100) */
    unsigned h2_window_bytes;      /* the flow-control window offered to a client, per
                                    * stream and per connection (default 1 MiB) */
    unsigned h2_max_resets;        /* RST_STREAMs a client may send on one connection in a
                                    * second; one more (rapid reset, CVE-2023-44487) ends it
                                    * with GOAWAY ENHANCE_YOUR_CALM and a log line
                                    * (default 100) */
} fan_limits;

/* ------------------------------------------------------------------------ */
/* Application                                                              */
/* ------------------------------------------------------------------------ */

/* Creates an application with default limits and no routes. Returns NULL when
 * out of memory. Free it with fan_app_free() after fan_run() returned.
 * The first call puts in jansson's allocation functions a pair that calls
 * the ones already in place (malloc and free, or the program's own set
 * before it with json_set_alloc_funcs()); fanout's own reads of a body
 * (fan_call_json_number()) use the request's arena through it. Replacing
 * them afterwards is safe only as jansson allows it at all (with no value
 * alive), and fanout then parses on the heap. */
FAN_API fan_app *fan_app_new(void);

/* Frees the application, its routes, settings and listeners. Must not be
 * called while fan_run() is running. NULL is ignored. */
FAN_API void fan_app_free(fan_app *app);

/* The application's limits, to be changed before fan_run(). Never NULL. */
FAN_API fan_limits *fan_app_limits(fan_app *app);

/* Adds a route. `method` is an HTTP method ("GET", "POST", ...) or "*" for any.
 * `pattern` is a path whose segments may be literal ("/users"), a parameter
 * (":id", read with fan_req_param()) or, as the last segment, "*" (the rest of
 * the path, read with fan_req_param(rq, "*")). Routes are matched segment by
 * segment, literal before parameter before wildcard. A path that matches no
 * pattern answers 404; a path that matches with another method answers 405
 * with an Allow header; HEAD is served by GET routes without the body.
 * Returns 0, FAN_EINVAL for a malformed pattern or a duplicate route, or
 * FAN_ENOMEM. The strings are copied. */
FAN_API int fan_app_route(fan_app *app, const char *method, const char *pattern,
                          fan_handler handler);

/* Stores a setting under `key` (both copied), readable from any handler with
 * fan_config_str() and the other fan_config_* accessors. A setting overrides
 * the configuration file and the environment (see "Configuration" below).
 * When `key` is declared with fan_app_declare_config(), `value` is parsed as its
 * type. Set settings before fan_run(): a request reads the settings and the
 * configuration as they were when it first read one. Returns 0, FAN_EINVAL
 * (with a log line) when the value does not parse as the declared type, or
 * FAN_ENOMEM. */
FAN_API int fan_app_set(fan_app *app, const char *key, const char *value);

/* The value of `key` as text: a setting, or a declared key's value from the
 * configuration (integers in decimal, booleans "true"/"false", string arrays
 * as JSON), or NULL when it has none. Owned by the app; valid until the
 * configuration changes (fan_app_set(), fan_app_declare_config(), a load or a
 * reload) or the app is freed: handlers should use fan_config_str(), whose
 * strings live as long as the request. */
FAN_API const char *fan_app_get(const fan_app *app, const char *key);

/* Attaches a pointer of the program's own to the app (NULL by default), for
 * handlers to reach their state through fan_app_data(fan_req_app(rq)). The
 * app never dereferences or frees it. */
FAN_API void fan_app_set_data(fan_app *app, void *data);
FAN_API void *fan_app_data(const fan_app *app);

/* Opens a listening TCP socket for this app on `host` (numeric IPv4 or IPv6)
 * and `port` (0 picks a free port). Several apps may listen in one process;
 * they share the worker's loop. If `bound_port` is not NULL it receives the
 * port actually bound. Returns 0, FAN_EADDRINUSE, FAN_EINVAL or FAN_EIO. */
FAN_API int fan_app_listen_on(fan_app *app, const char *host, int port, int *bound_port);

/* Sets the address fan_app_listen() uses (default 0.0.0.0:8080; --host and
 * --port change it). The host is copied. Returns 0 or FAN_ENOMEM. */
FAN_API int fan_app_set_address(fan_app *app, const char *host, int port);

/* Sets the proxies whose X-Forwarded-For and Forwarded headers are believed
 * (--trusted-proxies): `list` is comma-separated numeric addresses and
 * networks, "127.0.0.1,10.0.0.0/8,::1,fd00::/8" (spaces around entries
 * are allowed; an IPv4 entry also matches its ::ffff: form). "" or NULL
 * trusts none, the default: a request's client is then always its peer
 * (see fan_req_client_addr()). Never list addresses that the open internet
 * can connect from: whoever connects from a trusted address chooses the
 * client address every handler and the access log see. Set it before
 * fan_run(). Returns 0, FAN_EINVAL (with a log line naming the entry) for
 * an entry that is not an address, a prefix length out of range or an
 * address with bits set beyond its prefix ("10.1.0.0/8"), or FAN_ENOMEM;
 * on failure the previous list stays. */
FAN_API int fan_app_set_trusted_proxies(fan_app *app, const char *list);

/* Serves https on every listener of the app: TLS 1.2 and 1.3 through
 * OpenSSL, with the PEM certificate chain in `cert_file` and its private key
 * in `key_file` (--tls-cert, --tls-key). Both are read and checked at once,
 * as a pair (a certificate out of its validity period is accepted with a
 * warning). Defaults: TLS 1.2 at least, no renegotiation or compression,
 * the TLS 1.2 ciphers of fan_app_set_tls_ciphers(), ALPN "http/1.1", and
 * session resumption by session ID (each worker's cache) and by session
 * tickets (the ticket keys are made once, before the workers fork, so a
 * ticket resumes on any worker and across reloads). A handshake not
 * completed within limits.tls_handshake_timeout_ms, a failed one (the
 * client refused the certificate, no shared cipher) and a plain-text client
 * close the connection with a log line; the plain-text client is answered
 * a 400 in plain text first. Under fan_main() a SIGHUP loads the two files
 * again for the new generation of workers, while the old one finishes its
 * requests with the certificate it had; files that no longer load keep
 * the certificate loaded before, with a log line. Call it before the
 * listeners open. Returns 0, FAN_EINVAL (with a log line naming the file
 * and OpenSSL's reason; nothing changes) or FAN_ENOMEM. The names are
 * copied. */
FAN_API int fan_app_set_tls(fan_app *app, const char *cert_file, const char *key_file);

/* Adds a certificate chosen by SNI (a --tls-cert/--tls-key pair after the
 * first; at most 16 in all): a client that names a host in its handshake
 * gets the first certificate, in the order given, whose names match it
 * (subject alternative names or common name, wildcards included), and the
 * first one set when none does or it names none. Without a certificate set
 * before, it is the same as fan_app_set_tls(). Checked, loaded and reloaded
 * like it; a reload loads every file again or keeps every certificate
 * loaded before. Returns 0, FAN_EINVAL (logged: a bad pair, or one too
 * many) or FAN_ENOMEM. */
FAN_API int fan_app_add_tls_cert(fan_app *app, const char *cert_file, const char *key_file);

/* The TLS 1.2 cipher list (`ciphers`, --tls-ciphers) and the TLS 1.3 cipher
 * suites (`suites`, --tls-ciphersuites) of the app's TLS listeners, in
 * OpenSSL's syntax; NULL keeps the default: ECDHE key exchange with AES-GCM
 * or ChaCha20-Poly1305 for TLS 1.2, OpenSSL's three AEAD suites for TLS 1.3.
 * Returns 0, FAN_EINVAL (with a log line) when OpenSSL accepts no cipher of
 * a list (nothing changes), or FAN_ENOMEM. */
FAN_API int fan_app_set_tls_ciphers(fan_app *app, const char *ciphers, const char *suites);

/* fan_app_listen_on() on the app's configured address, with a log line saying
 * where. */
FAN_API int fan_app_listen(fan_app *app, int *bound_port);

/* The client connections this process has accepted on the app's listeners
 * since it started, whether or not they sent a request (one count per
 * accept, none for a connection refused by the kernel). Each worker counts
 * its own: a forked worker starts from what the master had (0). A monitor
 * or a benchmark reads it to see how often clients reconnect. Can't fail. */
FAN_API uint64_t fan_app_connections_accepted(const fan_app *app);

/* Runs this thread's event loop (one worker) until it is asked to stop, then
 * returns 0 once everything is closed: every connection, listener and
 * upstream connection, with no request left and the coroutine stacks freed.
 *  - SIGTERM, SIGINT or fan_stop(): a graceful stop. The listeners close
 *    (after accepting the connections already waiting in their backlog) and
 *    idle keep-alive connections are closed at once; every request already
 *    received runs to its end, upstream calls included, and is answered with
 *    Connection: close, its connection closed after it. A connection that
 *    has not sent its first request yet is kept until it does or its idle
 *    timeout passes. When the graceful timeout passes (--graceful-timeout,
 *    30 s by default; the longest given to the apps listening), what is left is
 *    cancelled as below. A second SIGTERM/SIGINT changes nothing.
 *  - SIGQUIT: stop at once. Every connection is closed and every request
 *    cancelled (its calls aborted, its awaits return FAN_ECANCELED).
 *  - SIGUSR1: fan_log_reopen(), for log rotation.
 * These four signals are blocked once fan_run() returned: their default
 * action would end a process that is stopping cleanly, so one more stays
 * pending and harmless (the next fan_run() unblocks them). fan_main()'s
 * master keeps them blocked the same way once its workers stopped.
 * SIGPIPE is ignored from the first call on. */
FAN_API int fan_run(void);

/* Begins a graceful stop of fan_run(), as SIGTERM does: the listeners close
 * after the current loop iteration and fan_run() returns once the requests
 * in progress ended. Safe to call from a handler (whose own request then
 * completes normally). Can't fail. */
FAN_API void fan_stop(void);

/* Parses the command line with fan_main_option() (fan_app_option() and
 * --workers N) and --help, listens on the app's address and serves, as
 * fan_serve() does. Returns a process exit status: 0 after a clean stop, 2
 * for a usage error, 1 when the server cannot start (a bad configuration
 * included: see fan_app_config_error()).
 *
 * --workers N (default: the number of online CPUs) runs a master process
 * that serves nothing itself. It opens N listening sockets on the app's
 * address, all with SO_REUSEPORT (the kernel spreads connections among
 * them; port 0 is chosen once, by the first), forks N workers, each of which
 * builds its own loop and accepts on its own socket with fan_run(), and logs
 * "listening on ..." once every worker listens. The app a worker serves is
 * the master's as it was at fork time. The master restarts a worker that
 * dies, logging its exit status or signal; connections queued on its socket
 * wait for the new one. While workers keep dying less than 1 s after they
 * started (3 such deaths in a row), restarts wait, 0.5 s at first, twice as
 * long each time, up to 30 s. Signals to the master:
 *  - SIGTERM, SIGINT: every worker stops gracefully (see fan_run()); the
 *    master returns once they all exited.
 *  - SIGQUIT: every worker stops at once.
 *  - SIGHUP: reload. The hook of fan_app_on_reload() runs, then a new
 *    generation of N workers starts on the same sockets and, once all of
 *    them listen, the old ones stop gracefully. No listening socket closes,
 *    so no connection is refused or reset. If the hook fails or a new worker
 *    dies before it listens, the old workers go on serving.
 *  - SIGUSR1: the master reopens its log files (fan_log_reopen()) and
 *    forwards the signal to every worker, which does the same.
 * Once the master returned, SIGTERM, SIGINT and SIGQUIT stay blocked, so
 * that another one while the program ends changes nothing.
 * Workers ignore SIGHUP, and stop gracefully when the master dies. A worker
 * that does not stop within its graceful timeout and 5 s is killed. The
 * status is 1 if a worker failed to start, or did not exit with 0 once asked
 * to stop. fan_main() returns in each worker too, with the worker's status,
 * so that the program's cleanup after fan_main() runs in every process.
 *
 * --workers 0 serves in the calling process without a master, as
 * fan_app_listen() and fan_run() do. Its socket has no SO_REUSEPORT, so it
 * fails (exit status 1) whenever another socket holds the port. The
 * master's sockets fail likewise if the holder lacks SO_REUSEPORT or belongs
 * to another user, but two fanout masters of one user on one port share it.
 * Call fan_main() before any fan_app_listen_on() of this process. */
FAN_API int fan_main(fan_app *app, int argc, char **argv);

/* Applies one "--name=value" or "--name value" option to the app if it is
 * --host, --port, --log-level, --log-format text|json, --log-file FILE,
 * --access-log off|stderr|FILE (these three process-wide: see
 * fan_log_set_format(), fan_log_open(), fan_access_log_open()),
 * --set key=value, --config FILE (loaded at
 * once with fan_app_load_config()), --graceful-timeout SECONDS (see
 * fan_run()), --ca-file FILE, --client-cert FILE, --client-key FILE,
 * --origin ORIGIN[,...] (see "Upstream TLS and origins"; the certificate
 * and key are checked as a pair by fan_main() and fan_serve()), --tls-cert
 * FILE and --tls-key FILE (fan_app_set_tls() once both are given, and
 * fan_app_add_tls_cert() for each further pair; one without the other fails
 * in fan_main() and fan_serve()), --tls-ciphers
 * LIST, --tls-ciphersuites LIST (fan_app_set_tls_ciphers()) or names a
 * limit. Returns 1
 * if the option was consumed (and *argi advanced past it), 0 if it is not
 * one of these, or a negative error (with a message in the log) when its
 * value is invalid. For programs that parse their own command lines. */
FAN_API int fan_app_option(fan_app *app, int argc, char **argv, int *argi);

/* Matches argv[*argi] against "--name=value" or "--name value", where a '_'
 * in `name` may be written '-' (name "--max_calls" matches "--max-calls").
 * On a match sets *value (NULL when the value is missing at the end of the
 * line), advances *argi past what it used and returns 1; else returns 0 and
 * changes nothing. For programs that parse their own command lines. */
FAN_API int fan_flag(const char *name, int argc, char **argv, int *argi, const char **value);

/* Prints the options fan_app_option() understands, one per line. */
FAN_API void fan_print_options(FILE *out);

/* The pieces of fan_main(), for programs with options of their own that
 * serve as fan_main() does: they parse their command line with
 * fan_main_option() (and their own options), print fan_print_main_options()
 * in their --help, and call fan_serve().
 *
 * fan_main_option() applies one option: --workers N (0 to 1024) to *workers,
 * anything else as fan_app_option() does, with the same return values. */
FAN_API int fan_main_option(fan_app *app, int argc, char **argv, int *argi, int *workers);

/* Prints the options fan_main_option() understands, one per line. */
FAN_API void fan_print_main_options(FILE *out);

/* Serves `app` as fan_main() does once its command line is parsed: with a
 * master and `workers` worker processes, one per online CPU when `workers`
 * is negative, or in this process when it is 0. Returns fan_main()'s exit
 * status, in the master and in each worker; 1 at once when the app has a
 * configuration error (fan_app_config_error()). With workers, call it before
 * any fan_app_listen_on() of this process. */
FAN_API int fan_serve(fan_app *app, int workers);

/* A reload hook: re-reads the program's configuration into `app` (for
 * instance with fan_app_reload_config() or fan_app_set()). Returns 0 when
 * the app is ready to serve, anything else when the new configuration is
 * unusable; it should then leave the app as it found it. */
typedef int (*fan_reload_fn)(fan_app *app, void *arg);

/* Sets the hook fan_main()'s master calls on SIGHUP before it forks a new
 * generation of workers, which serve the app as the hook left it. It runs
 * in the master, outside any loop, so it may block (read files). A hook
 * that fails keeps the running workers serving and logs an error. NULL
 * removes it; SIGHUP then just replaces the workers. Can't fail. */
FAN_API void fan_app_on_reload(fan_app *app, fan_reload_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* Upstream TLS and origins                                                 */
/* ------------------------------------------------------------------------ */

/* An https:// call verifies the upstream's certificate: its chain must lead
 * to a CA of the store (the system's, /etc/ssl/certs on Debian, unless
 * fan_app_set_ca_file() names another), every certificate of it must be
 * within its validity dates, and it must be issued for the URL's host name
 * (or IP address). A call that fails any of these, or the handshake, ends
 * with FAN_ETLS ("tls"), with a warning in the log naming the call, its
 * URL and what failed (one line a second per origin at most).
 * Verification is on unless an origin turns it off (fan_origin_opts).
 * Connections and TLS sessions are kept and reused by later calls of the
 * worker, whatever request made them; calls to an HTTP/2 origin share one
 * connection. Set all of this before fan_run(). */

/* Verifies upstreams against the CA certificates of the PEM file `path`
 * (--ca-file FILE) instead of the system's store; NULL goes back to the
 * system's store. The file is read now to check it: returns 0, FAN_EINVAL
 * (with a log line) when it cannot be read or holds no certificate, or
 * FAN_ENOMEM. The path is copied; the file is read again by each new
 * connection. */
FAN_API int fan_app_set_ca_file(fan_app *app, const char *path);

/* Presents the certificate of the PEM file `cert` and the private key of
 * `key` to upstreams that ask for one (mutual TLS; --client-cert FILE and
 * --client-key FILE). `key` NULL means the key is in `cert`'s file; `cert`
 * NULL presents none (the default). Both files are read now to check them:
 * returns 0, FAN_EINVAL (with a log line) when one cannot be read, holds no
 * certificate or no key (an encrypted key included: give it unencrypted)
 * or the key does not belong to the certificate, or FAN_ENOMEM. The paths
 * are copied. Every https upstream is offered it when it asks. */
FAN_API int fan_app_set_client_cert(fan_app *app, const char *cert, const char *key);

/* The HTTP version of an origin's calls. */
typedef enum fan_http_version {
    FAN_HTTP_AUTO = 0, /* https: HTTP/2 if the server offers it in the handshake
                        * (ALPN), else HTTP/1.1; http://: HTTP/1.1 */
    FAN_HTTP_1_1 = 1,  /* HTTP/1.1 only */
    FAN_HTTP_2 = 2,    /* https only: as auto (HTTP/2 without TLS, h2c, is not
                        * supported: libcurl 7.88 breaks the calls that reuse such a
                        * connection) */
} fan_http_version;

/* Retries and hedged calls (docs/resilience.md), for a call
 * (fan_call_opts.retry) or for every call of an origin (fan_origin_opts.retry;
 * a call's policy replaces its origin's as a whole). Zero-initialise and set
 * what you need: all zero is the default, one try and no hedge.
 *
 * A try is retried when it could not connect (refused, unreachable, connect
 * timeout), when the connection was reset or closed before the first byte of
 * the response, when the per-try timeout ended it, or when the response's
 * status is in `retry_on`. A response of another status, an error after the
 * response began (a body cut short), FAN_ETOOLARGE, FAN_EDNS and FAN_ETLS are
 * final. Only idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are
 * retried or hedged unless `non_idempotent` is set. Before retry n (1, 2, ...)
 * the call waits a random time in [0, min(cap_ms, base_ms * 2^(n-1))] ("full
 * jitter"); a response with Retry-After (seconds) is retried after exactly
 * that when it is at most cap_ms, and not retried when it asks for longer.
 * The call's total timeout (fan_call_opts.timeout_ms) counts every try and
 * every wait: no retry starts that could not end within it. Retries and
 * hedges draw on the origin's retry budget (fan_origin_opts.budget_percent):
 * beyond it the call is not retried (its last try's outcome is the call's),
 * with a debug log line, and counted. */
typedef struct fan_retry_policy {
    unsigned max_retries;        /* tries after the first; 0 = none (default), at most 10 */
    unsigned base_ms;            /* backoff base (default 25) */
    unsigned cap_ms;             /* backoff cap, and the longest Retry-After waited for
                                  * (default 250) */
    unsigned per_try_timeout_ms; /* each try's timeout, within the total; 0 = what is left
                                  * of the total (default) */
    /* The statuses that are retried, ended by a 0: all zero is 502, 503 and
     * 504; {-1} is none (only connection failures are retried). */
    int retry_on[8];
    int non_idempotent;          /* 1: POST and PATCH are retried and hedged too */
    /* Hedging: when the first try has not finished after hedge_after_ms, a
     * second, identical try starts; the first complete response of the two
     * wins, and the other try is cancelled (its connection closed). 0 = no
     * hedge (default). With hedge_p95 set, the delay is the origin's p95
     * latency observed by the worker (its last ~1000 successful tries),
     * once 20 are known; until then hedge_after_ms (0: no hedge). */
    unsigned hedge_after_ms;
    int hedge_p95;
} fan_retry_policy;

/* Options of one upstream origin. Zero-initialise and set what you need:
 * all zero is the default of an origin without options. */
typedef struct fan_origin_opts {
    fan_http_version http_version; /* default FAN_HTTP_AUTO */
    /* The most connections a worker opens to the origin, 0 = no cap (then
     * max_calls_per_host caps them). It caps the origin's calls in flight
     * of the worker, each of which has a connection of its own over
     * HTTP/1.1: calls beyond it wait in the call queue (see fan_limits:
     * the queue's limits and timeout apply). Not with FAN_HTTP_2, whose
     * calls share one connection. */
    size_t max_connections;
    /* 1: do not verify the origin's certificate or host name (a test
     * server with a self-signed certificate). Anyone on the path can then
     * read and change the calls: fan_app_set_origin() logs a warning. */
    int no_verify;
    /* The retries and hedges of the origin's calls (a call's own policy
     * replaces it). */
    fan_retry_policy retry;
    /* The retry budget: each worker lets the origin's retries and hedges in
     * flight (backoff waits included) be at most budget_percent of its calls
     * in flight to the origin, or budget_min, whichever is more (default 20
     * and 3, as Envoy's). A call that would exceed it is not retried. */
    unsigned budget_percent;
    unsigned budget_min;
    /* The circuit breaker, per worker: it opens after breaker_failures
     * consecutive failed tries (0 = not on this rule, the default), or when
     * at least breaker_error_percent of the tries that ended within the last
     * breaker_window_ms failed, counting once breaker_min_calls ended in it
     * (0 = not on this rule, the default; window 10000, minimum 20). A
     * failure is a try that could not connect, was reset, timed out or got
     * a 5xx status. While open, calls to the origin end at once with
     * FAN_EOPEN ("circuit_open") and send nothing. After breaker_cooldown_ms
     * (default 5000) one call goes through as a probe (half-open): its
     * success closes the breaker, its failure opens it again for another
     * cool-down. Every change is logged (warn when it opens, info else). */
    unsigned breaker_failures;
    unsigned breaker_error_percent;
    unsigned breaker_window_ms;
    unsigned breaker_min_calls;
    unsigned breaker_cooldown_ms;
    /* Single-flight and the response cache for the origin's calls, as the
     * fields of the same names in fan_call_opts; a call's own non-zero
     * setting wins. coalesce and cache: 1 on, 0 or -1 off (the default). */
    int coalesce;
    int cache;
    unsigned cache_ttl_ms;
    unsigned stale_while_revalidate_ms;
    unsigned stale_if_error_ms;
} fan_origin_opts;

/* Sets the options of the upstream origin `origin`, a URL of only a scheme,
 * a host and an optional port: "https://api.example:443" (the same origin as
 * "https://API.example"), "http://10.0.0.7:8080". They apply to every call
 * of the app whose URL has that origin; a second call replaces them.
 * Flag form: --origin ORIGIN[,http=auto|1.1|2][,max-connections=N]
 * [,verify=off][,retries=N][,retry-base-ms=N][,retry-cap-ms=N]
 * [,try-timeout-ms=N][,retry-on=502:503:504|none][,retry-non-idempotent=on]
 * [,hedge-after-ms=N][,hedge=p95][,budget-percent=N][,budget-min=N]
 * [,breaker-failures=N][,breaker-error-percent=N][,breaker-window-ms=N]
 * [,breaker-min-calls=N][,breaker-cooldown-ms=N][,coalesce=on|off][,cache=on|off]
 * [,cache-ttl=MS][,stale-while-revalidate=MS][,stale-if-error=MS], once per
 * origin. Returns 0, FAN_EINVAL (with a log line)
 * for an origin that is not http:// or https:// with a host, has a path,
 * query or credentials, or for FAN_HTTP_2 with max_connections or with
 * an http:// origin, or an unknown http_version, more than 10 retries, a
 * budget or breaker percentage above 100 or a retry_on entry that is not a
 * status; or FAN_ENOMEM. `opts`
 * NULL sets the defaults. */
FAN_API int fan_app_set_origin(fan_app *app, const char *origin, const fan_origin_opts *opts);

/* The options fan_app_set_origin() (or --origin) set for `origin`, copied
 * into *opts: returns 1, or 0 with *opts zeroed (the defaults) when none
 * were set, or FAN_EINVAL for an origin fan_app_set_origin() refuses. */
FAN_API int fan_app_get_origin(const fan_app *app, const char *origin, fan_origin_opts *opts);

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

/* The method, e.g. "GET". Lives as long as the request. */
FAN_API const char *fan_req_method(const fan_req *rq);

/* The URL-decoded path, without the query. Lives as long as the request. */
FAN_API const char *fan_req_path(const fan_req *rq);

/* The path as the client sent it, its percent-escapes not decoded, without
 * the query: where a "%2F" is not a '/' (decode each segment of it with
 * fan_url_decode()). Lives as long as the request. */
FAN_API const char *fan_req_raw_path(const fan_req *rq);

/* The raw query string after '?', or "" when there is none. */
FAN_API const char *fan_req_query_string(const fan_req *rq);

/* The URL-decoded value of the first query parameter `name`, "" for a name
 * without a value, or NULL when absent or when its value has a malformed
 * escape ("%zz"). Lives as long as the request. */
FAN_API const char *fan_req_query(const fan_req *rq, const char *name);

/* A query parameter parsed as a long integer; `def` when it is absent. Sets
 * *ok (if not NULL) to 0 when it is present but not a valid integer. */
FAN_API long fan_req_query_long(const fan_req *rq, const char *name, long def, int *ok);

/* The value of request header `name` (case-insensitive), or NULL. Repeated
 * headers: the first (fan_req_header_next() gives every one). Lives as long
 * as the request. */
FAN_API const char *fan_req_header(const fan_req *rq, const char *name);

/* Iterates over the request's headers in the order received, a repeated
 * header once per line, names as the client wrote them (values without
 * surrounding whitespace). Start with *i = 0; each call sets *name and
 * *value (either may be NULL), advances *i and returns 1, until it returns
 * 0 at the end (leaving them unchanged). The strings live as long as the
 * request. Trailers of a chunked body are not included. Can't fail.
 *
 *     size_t i = 0;
 *     const char *name, *value;
 *     while (fan_req_header_next(rq, &i, &name, &value))
 *         fan_log(FAN_LOG_DEBUG, "%s: %s", name, value);
 */
FAN_API int fan_req_header_next(const fan_req *rq, size_t *i, const char **name,
                                const char **value);

/* The client's address, numeric ("192.0.2.7", "2001:db8::1"; an IPv4
 * client of a dual-stack listener without its "::ffff:" prefix), or NULL
 * when unknown. It is the connection's peer, unless the peer is a trusted
 * proxy (fan_app_set_trusted_proxies()): then it is the client that proxy
 * forwarded in X-Forwarded-For or Forwarded, read from the right as
 * docs/operations.md ("Client addresses behind proxies") describes, NULL if
 * the proxy said "unknown" or gave an obfuscated name. The access log
 * shows the same. Lives as long as the request (worked out once, on first
 * use). Can't fail: NULL also when out of memory. */
FAN_API const char *fan_req_client_addr(const fan_req *rq);

/* The client's port: the peer's, the one a trusted proxy's Forwarded gave
 * for it, or 0 when unknown (X-Forwarded-For has none). Can't fail. */
FAN_API int fan_req_client_port(const fan_req *rq);

/* The value of the route parameter `name` (":name" in the pattern, "*" for the
 * wildcard), URL-decoded, or NULL. Lives as long as the request. */
FAN_API const char *fan_req_param(const fan_req *rq, const char *name);

/* The request body (NUL-terminated for convenience) and its length. An empty
 * body gives "" and 0. Lives as long as the request. */
FAN_API const char *fan_req_body(const fan_req *rq, size_t *len);

/* The app that is serving this request (read-only during a request). */
FAN_API const fan_app *fan_req_app(const fan_req *rq);

/* The value of `key` as text: a setting (fan_app_set(), --set) or a key of
 * the configuration (see "Configuration" below), or NULL when it has none.
 * Lives as long as the request: a request reads one version of the
 * configuration from start to end, even across a reload. */
FAN_API const char *fan_config_str(const fan_req *rq, const char *key);

/* Allocates `size` bytes from the request's arena, aligned for any type.
 * Freed when the request ends; never free it yourself. NULL if out of
 * memory. */
FAN_API void *fan_alloc(fan_req *rq, size_t size);

/* Registers fn(arg) to run when the request's memory is freed, after its
 * handler returned and every call, task and waker ended, just before the
 * arena goes; cleanups run in reverse order of registration. Use it to
 * release what belongs to the whole request, so that a cancelled request
 * releases it too; for what one task acquires, fan_task_defer() releases it
 * as soon as that task ends. Returns 0 or FAN_ENOMEM (fn is then not
 * registered). */
FAN_API int fan_defer(fan_req *rq, void (*fn)(void *arg), void *arg);

/* A printf into the request's arena. Freed with the request. NULL if out of
 * memory. */
FAN_API char *fan_sprintf(fan_req *rq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Seconds on a monotonic clock with sub-microsecond resolution, like
 * Python's time.perf_counter(). Only differences between two values mean
 * something. Thread-safe; can't fail. */
FAN_API double fan_now(void);

/* Suspends the calling handler for `ms` milliseconds without blocking anything
 * else. Returns 0, or FAN_ECANCELED if the request was cancelled meanwhile. */
FAN_API int fan_sleep(fan_req *rq, unsigned ms);

/* Sets the request's deadline to `ms` from now (0 removes it). When it
 * passes, every outstanding call is cancelled, awaits return FAN_ECANCELED,
 * and fan_cancelled() returns FAN_ETIMEDOUT. Returns 0 or FAN_ESTATE if the
 * request is already cancelled. */
FAN_API int fan_req_set_deadline(fan_req *rq, unsigned ms);

/* Why the running task (the handler's, or a child task's) was cancelled: 0
 * if it was not, FAN_ETIMEDOUT for the request's deadline or the task's
 * timeout, FAN_ECANCELED when the client went away, the server stops or the
 * task was cancelled. */
FAN_API int fan_cancelled(const fan_req *rq);

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

/* Adds a response header (both strings copied). Call before replying, or
 * from an after-request hook or error handler. Returns 0, FAN_EINVAL for a
 * name that is not an RFC 9110 token (letters, digits and !#$%&'*+-.^_`|~)
 * or a value with a control character other than tab (CR, LF, ...),
 * FAN_ESTATE once the response was sent, or FAN_ENOMEM. */
FAN_API int fan_resp_set_header(fan_req *rq, const char *name, const char *value);

/* Iterates over the response headers set so far, in the order they were
 * added, as fan_req_header_next() does: those of fan_resp_set_header(), and the
 * ones the helpers add through it (each fan_resp_set_cookie() line, Location of
 * fan_reply_redirect(), Allow of a 405). Not included: what the server writes
 * itself when it sends the response (Date, Server, Content-Type,
 * Content-Length, Connection), and the session's Set-Cookie, which is added
 * after the after-request hooks ran (step 5 of "Hooks and error
 * handlers"), so no handler or hook ever sees it here. The strings live as
 * long as the request. Can't fail. */
FAN_API int fan_resp_header_next(const fan_req *rq, size_t *i, const char **name,
                                 const char **value);

/* Answers the request: status, Content-Type (may be NULL for none) and body
 * (copied). The reply is recorded, then the error handler of its status and
 * the after-request hooks run (see "Hooks and error handlers"), then it is
 * sent. A request gets exactly one reply: a second returns FAN_ESTATE;
 * called from an after-request hook or an error handler, it replaces the
 * recorded status, type and body instead (headers are kept). Returns 0 or a
 * negative error; the reply is sent even if the client went away in between
 * (it is then dropped silently). */
FAN_API int fan_reply(fan_req *rq, int status, const char *content_type, const void *body,
                      size_t len);

/* A text/plain reply formatted like printf. */
FAN_API int fan_reply_printf(fan_req *rq, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An application/json reply. Takes the reference to `json` (it is decref'd,
 * even on failure). */
FAN_API int fan_reply_json(fan_req *rq, int status, json_t *json);

/* A JSON error reply: {"error": message, "status": status}. */
FAN_API int fan_reply_error(fan_req *rq, int status, const char *message);

/* Answers with nothing: the connection is closed at once with a TCP reset
 * (RST), without a response, as nginx's "return 444" does. What an
 * upstream that crashes looks like to its client: for mocks and for
 * refusing abusers. The request is then cancelled, as for a client that
 * left (its calls are aborted, its awaits return FAN_ECANCELED); hooks
 * and error handlers do not run, and the access log records status 444.
 * Returns 0, or FAN_ESTATE when the request was already answered (a
 * stream whose head was sent ends with fan_resp_abort() instead). */
FAN_API int fan_reply_drop(fan_req *rq);

/* Whether the request has been answered. */
FAN_API int fan_replied(const fan_req *rq);

/* The recorded status of the reply (0 before fan_reply()), for after-request
 * hooks and error handlers. */
FAN_API int fan_resp_status(const fan_req *rq);

/* Changes the status of the recorded reply, from an after-request hook or an
 * error handler. Returns 0, FAN_EINVAL for a status outside 200..999, or
 * FAN_ESTATE before the reply or once it was sent. */
FAN_API int fan_resp_set_status(fan_req *rq, int status);

/* The recorded body of the reply and its length (NULL and 0 before
 * fan_reply()). Lives as long as the request. */
FAN_API const void *fan_resp_body(const fan_req *rq, size_t *len);

/* ------------------------------------------------------------------------ */
/* Streamed responses                                                       */
/* ------------------------------------------------------------------------ */

/* A streamed response sends its head first and its body in pieces, as the
 * handler writes them: parts of a fan-out as their calls complete,
 * Server-Sent Events, NDJSON lines.
 *
 *     fan_resp_start(rq, 200, "application/x-ndjson");
 *     for (fan_call *c; (c = fan_call_await_any(rq));)
 *         if (fan_resp_ndjson(rq, json_pack("{s:s}", "done", fan_call_name(c))) != 0)
 *             return;                    // the client left: its calls are cancelled
 *     fan_resp_end(rq);
 *
 * Framing: on HTTP/1.1 the body is sent in chunked transfer coding (each
 * fan_resp_write() one chunk), and the connection is kept alive after
 * fan_resp_end(); a pipelined request after it is answered once the stream
 * ended. An HTTP/1.0 client gets a body that ends when the connection closes
 * (Connection: close; it closes once the request ended). A HEAD request
 * gets the head only: writes succeed and send nothing.
 *
 * Hooks: fan_resp_start() is the stream's reply. The error handler of its
 * status and the after-request hooks run in it, before the head is sent,
 * as for fan_reply() (see "Hooks and error handlers"): they see the status
 * (fan_resp_status()) and that it is a stream (fan_resp_streaming(); its
 * fan_resp_body() is empty), and may set headers and change the status. One
 * that replies replaces the stream with that reply: fan_resp_start() then
 * returns FAN_ESTATE, and so does every write. The access log's line,
 * written when the request ends, has the stream's status and every byte
 * sent (head and chunk framing included).
 *
 * Ending: fan_resp_end() sends the last chunk. A handler that returns
 * without it has its stream ended the same way, unless the request was
 * cancelled (its deadline passed: note request_timeout_ms, which a
 * long-lived stream removes with fan_req_set_deadline(rq, 0)): then it is
 * aborted. fan_resp_abort() tells the client the body is incomplete: no
 * last chunk is sent and the connection is closed once the request ended,
 * so that an HTTP/1.1 client sees a truncated chunked body (an HTTP/1.0
 * client, whose body ends with the close, cannot tell). A reply
 * (fan_reply*()) once the head was sent, e.g. a handler failing with
 * fan_reply_error(), aborts the stream (with a warning in the log) and
 * returns FAN_ESTATE.
 *
 * Back-pressure: the bytes of a stream are copied into writes of their
 * own, freed as the socket takes them. While more than
 * limits.max_stream_queued_bytes (--max-stream-queued-bytes) are queued for
 * a client that reads slowly, a write suspends its task until they drain
 * below, so a slow client holds at most about that much of the server's
 * memory. The write timeout (limits.write_timeout_ms) applies to each
 * queued write: a client that takes nothing for that long is disconnected.
 * When the client is gone (it disconnected, or the write timeout passed),
 * writes return FAN_ECANCELED and the request is cancelled as for any
 * disconnect: its calls are aborted and its awaits return FAN_ECANCELED.
 *
 * Any task of the request may write; writes are sent in the order made.
 * From outside a task (a libuv callback) a write never waits. */

/* Starts a streamed response: records `status` (200..999 but 204 and 304,
 * which have no body) and `content_type` (copied; NULL for none), runs the
 * error handler and after-request hooks, and sends the head with the
 * headers set so far and "X-Accel-Buffering: no" unless they hold that
 * header (written by the server, as Date is: not listed by
 * fan_resp_header_next(); see docs/operations.md on proxies). Returns 0, FAN_EINVAL
 * for a bad status or type, FAN_ESTATE when the request was already
 * answered (or a hook answered it instead), FAN_ECANCELED when the client
 * is gone, or FAN_ENOMEM. */
FAN_API int fan_resp_start(fan_req *rq, int status, const char *content_type);

/* Sends `len` bytes of `data` (copied) as the next piece of the body,
 * after waiting while the client has more than max_stream_queued_bytes
 * queued (see "Back-pressure" above). len 0 sends nothing. Returns 0 once
 * the bytes are queued, FAN_ECANCELED when the client is gone or the task
 * was cancelled (nothing is sent), FAN_ESTATE before fan_resp_start() or
 * after the stream ended, FAN_ETOOLARGE for a piece of 4 GiB or more
 * (write it in parts), or FAN_ENOMEM. */
FAN_API int fan_resp_write(fan_req *rq, const void *data, size_t len);

/* Ends the stream: the last chunk is sent (on HTTP/1.1). It does not wait
 * for the client to read what is queued. Returns 0, FAN_ESTATE when no
 * stream runs or it ended already, or FAN_ECANCELED when the client is
 * gone. */
FAN_API int fan_resp_end(fan_req *rq);

/* Ends the stream as incomplete: no last chunk, and the connection closes
 * once the request ended (what is queued is still sent first). Returns 0,
 * FAN_ESTATE when no stream runs or it ended already, or FAN_ECANCELED
 * when the client is gone. */
FAN_API int fan_resp_abort(fan_req *rq);

/* Whether the response is a stream (fan_resp_start() was called and no
 * hook replaced it), for after-request hooks and error handlers. */
FAN_API int fan_resp_streaming(const fan_req *rq);

/* Sends one Server-Sent Event (a stream started with type
 * "text/event-stream"): "event: " `event` and "id: " `id` lines when they
 * are not NULL, then one "data: " line per line of `data` (CRLF, CR and LF
 * each end a line; NULL is ""), then the blank line that dispatches it, in
 * one write. Returns what fan_resp_write() returns, or FAN_EINVAL when
 * `event` or `id` holds a CR or LF (nothing is sent). */
FAN_API int fan_resp_sse(fan_req *rq, const char *event, const char *id, const char *data);

/* Sends "retry: `ms`", the client's reconnection delay, as an SSE block
 * of its own. Returns what fan_resp_write() returns. */
FAN_API int fan_resp_sse_retry(fan_req *rq, unsigned ms);

/* Sends an SSE comment line, ": \n", whenever the stream has been idle
 * (nothing written) for `ms`, so that proxies and clients do not time the
 * stream out; 0 stops it, another value changes the interval. It stops by
 * itself when the stream ends. Returns 0, FAN_ESTATE when no stream runs,
 * FAN_ECANCELED when the client is gone, or FAN_ENOMEM. */
FAN_API int fan_resp_sse_heartbeat(fan_req *rq, unsigned ms);

/* Sends `json` as one NDJSON line (compact JSON and "\n", in one write).
 * Takes the reference to `json` (it is decref'd, even on failure; NULL
 * gives FAN_EINVAL). Returns what fan_resp_write() returns. */
FAN_API int fan_resp_ndjson(fan_req *rq, json_t *json);

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/* The configuration is a JSON file (--config FILE, fan_app_load_config())
 * whose nested objects name dotted keys: {"api": {"url": "http://..."}} sets
 * "api.url". An application declares every key it accepts, with a type and a
 * default; a key in the file that is not declared is an error, as is a value
 * of the wrong type. Each key can be overridden by an environment variable:
 * FANOUT_ and the key in upper case with '.' and '-' written '_'
 * ("api.url": FANOUT_API_URL), parsed as the key's type. Priority, highest
 * first: fan_app_set()/--set, the environment, the file, the default. The
 * library declares the session.* keys (see "Sessions"). Declare keys and
 * load the file before fan_run(); once it runs, change the configuration
 * only with fan_app_reload_config(). A request reads one version of the
 * configuration from start to end: the one in use when it first read a key. */
typedef enum fan_config_type {
    FAN_CONFIG_STRING,  /* a JSON string */
    FAN_CONFIG_INT,     /* a JSON integer (64-bit) */
    FAN_CONFIG_DOUBLE,  /* a JSON number */
    FAN_CONFIG_BOOL,    /* true or false; in text: true/false, 1/0, yes/no, on/off */
    FAN_CONFIG_STRINGS, /* an array of strings; in text: a JSON array, or one string */
} fan_config_type;

/* Declares `key` ("section.name": letters, digits, '_' and '-', segments
 * joined by '.') with its type and its default as text (parsed as the type;
 * NULL for none). Declare every key before loading a file. Declaring a key
 * again changes its default. The key's environment override is read now.
 * Returns 0; FAN_EINVAL for a malformed key, a default that does not parse,
 * a type that differs from an earlier declaration or a bad environment
 * override (the last two are also recorded: see fan_app_config_error()); or
 * FAN_ENOMEM. */
FAN_API int fan_app_declare_config(fan_app *app, const char *key, fan_config_type type,
                               const char *def);

/* Loads the configuration file `path` (replacing a file loaded before) and
 * re-reads the environment overrides. On any error nothing changes: every
 * problem is logged, the first is kept for fan_app_config_error(), and the
 * function returns FAN_EINVAL (syntax error, with file, line and column;
 * unknown key; wrong type, with the key and both types; path NULL), FAN_EIO
 * (the file cannot be read) or FAN_ENOMEM. The path is copied. */
FAN_API int fan_app_load_config(fan_app *app, const char *path);

/* Re-reads the file loaded last and the environment overrides, and makes
 * them the configuration of the requests that start from now on (running
 * requests keep the version they started reading). Safe while fan_run()
 * runs, from the loop's thread (a signal watcher, a handler), and from the
 * hook of fan_app_on_reload() in the master. With no file
 * loaded, only the environment is re-read. On failure the configuration in
 * use is left untouched and the error is as for fan_app_load_config(). */
FAN_API int fan_app_reload_config(fan_app *app);

/* The message of the last configuration error (a file that failed to load,
 * a bad environment override), or NULL. A successful load clears it.
 * fan_main() refuses to start while there is one. Owned by the app. */
FAN_API const char *fan_app_config_error(const fan_app *app);

/* A key's value (see fan_config_str() for the text form). A key of another
 * type, or a setting, is converted from its text; 0 (0.0, false) when the
 * key has no value or the text does not parse. These can't fail. */
FAN_API long long fan_config_int(const fan_req *rq, const char *key);
FAN_API double fan_config_double(const fan_req *rq, const char *key);
FAN_API int fan_config_bool(const fan_req *rq, const char *key);

/* The `index`th string of a FAN_CONFIG_STRINGS key, or NULL past its end or
 * for a key of another type. Lives as long as the request. */
FAN_API const char *fan_config_strings(const fan_req *rq, const char *key, size_t index);

/* ------------------------------------------------------------------------ */
/* Hooks and error handlers                                                 */
/* ------------------------------------------------------------------------ */

/* The order, for a request that matches a route:
 *   1. the before-request hooks, in registration order, in the handler's
 *      coroutine (they may await). A hook that replies ends the request
 *      early: later hooks and the handler do not run. They are skipped as
 *      well once the request is cancelled.
 *   2. the handler. Nothing more runs until it (or anything else) replies.
 * Then, whenever the reply is made (by the handler, a before-request hook,
 * the 500/504 of a handler that returned without answering, or the
 * router's own 400/404/405 for requests that match no route):
 *   3. the error handler registered for the reply's status, if any (or the
 *      one registered for 0, for a status >= 400 without its own); it may
 *      replace the reply by replying again, or leave it.
 *   4. the after-request hooks, in registration order; they may change the
 *      status (fan_resp_set_status()), add headers, or replace the body by
 *      replying again. Their changes are final: no error handler runs again.
 *   5. the session's Set-Cookie header, if the session changed.
 *   6. the response is written.
 * Steps 3 and 4 run wherever the reply is made, sometimes outside any
 * coroutine: error handlers and after-request hooks must not await or sleep.
 * Errors the connection answers before a request exists (malformed requests,
 * 408, 413, 431) go through none of this. Register hooks before fan_run(). */

/* Appends a before-request hook. Returns 0, FAN_EINVAL for NULL, or
 * FAN_ENOMEM. */
FAN_API int fan_app_before_request(fan_app *app, fan_handler hook);

/* Appends an after-request hook. Returns 0, FAN_EINVAL for NULL, or
 * FAN_ENOMEM. */
FAN_API int fan_app_after_request(fan_app *app, fan_handler hook);

/* Sets the error handler of replies with `status` (400..999), or with 0 the
 * fallback of every status >= 400 without its own; a second call replaces
 * it, NULL removes it. It reads the reply with fan_resp_status() and
 * fan_resp_body(). Returns 0, FAN_EINVAL for another status, or
 * FAN_ENOMEM. */
FAN_API int fan_app_error_handler(fan_app *app, int status, fan_handler handler);

/* ------------------------------------------------------------------------ */
/* Sessions                                                                 */
/* ------------------------------------------------------------------------ */

/* A session is a set of string values kept by the client in a signed cookie
 * (docs/guide.md describes the format): readable by the client, not
 * forgeable without a secret. It is configured by these keys:
 *   session.secrets      array of strings; the first signs, every one
 *                        verifies (rotation: put the new secret first).
 *                        Without one, sessions are empty and cannot be set.
 *   session.cookie_name  default "fanout_session"
 *   session.max_age      seconds a written session is valid (default 14 days)
 *   session.secure       the Secure attribute (default true)
 *   session.samesite     "Strict", "Lax" (default) or "None"
 *   session.max_size     the largest cookie, attributes included (4096);
 *                        with session.store "redis", the largest session
 *                        (its values as a JSON object)
 *   session.store        "cookie" (default) or "redis": the cookie then
 *                        holds only a signed random id (160 bits from
 *                        OpenSSL's RAND_bytes), and the values are a Redis
 *                        hash (redis.prefix "session:" id) whose TTL is
 *                        session.max_age, renewed at each change;
 *                        fan_session_clear() (logging out) deletes it
 *   session.redis_down   with session.store "redis", what a request with a
 *                        session cookie gets when Redis fails: "503"
 *                        (default: answered 503 before the handler runs)
 *                        or "none" (served as having no session; writes
 *                        fail). Either way a line in the log, one per
 *                        second at most.
 * The cookie is HttpOnly with Path=/. An incoming cookie that is tampered
 * with, expired, oversized or malformed gives an empty session and a warning
 * in the log, never an error. The Set-Cookie header is sent only when the
 * session changed (each change renews the expiry). Every function below may
 * be called from any task of the request. With session.store "redis", a
 * session is read once per request, before the handler, and each change is
 * written to Redis at once (the task awaits it): the changes below may then
 * also fail with what fan_redis_command() returns (FAN_ECONNREFUSED,
 * FAN_ETIMEDOUT, ...), or FAN_EPROTO for an error Redis answered, and the
 * session is unchanged. */

/* The session's value of `key`, or NULL. Lives as long as the request. */
FAN_API const char *fan_session_get(fan_req *rq, const char *key);

/* Sets `key` to `value` (both copied, UTF-8). Returns 0; FAN_ETOOLARGE if
 * the cookie would exceed session.max_size; FAN_ESTATE once the response was
 * sent, or with no secret configured; FAN_EINVAL for text that is not UTF-8
 * or a bad session.samesite, session.max_age or session.cookie_name (with a
 * log line); FAN_ENOMEM. On failure the session is unchanged. */
FAN_API int fan_session_set(fan_req *rq, const char *key, const char *value);

/* Removes `key` (nothing changes if it is absent). Errors as for
 * fan_session_set(). */
FAN_API int fan_session_delete(fan_req *rq, const char *key);

/* Removes every value; the cookie is then deleted (Max-Age=0). Errors as for
 * fan_session_set(). */
FAN_API int fan_session_clear(fan_req *rq);

/* ------------------------------------------------------------------------ */
/* Request and response helpers                                             */
/* ------------------------------------------------------------------------ */

/* The value of cookie `name` sent by the client (the first one, without
 * surrounding double quotes, not decoded), or NULL. Lives as long as the
 * request. */
FAN_API const char *fan_req_cookie(const fan_req *rq, const char *name);

/* The URL-decoded value of field `name` of an application/x-www-form-
 * urlencoded body ('+' is a space), "" for a name without '=', or NULL when
 * absent or when the body is not of that type. Lives as long as the
 * request. */
FAN_API const char *fan_req_form(const fan_req *rq, const char *name);

/* The request body parsed as JSON (any value), or NULL if it is empty or
 * malformed. Parsed once; borrowed: freed with the request. */
FAN_API json_t *fan_req_json(const fan_req *rq);

/* fan_req_json(), or, when there is none, a reply and NULL: 415 if the
 * Content-Type is given and is not JSON, 400 if the body is empty or
 * malformed: {"error": "malformed JSON body: <what> at line L, column C",
 * "status": 400, "line": L, "column": C}. The handler then just returns. */
FAN_API json_t *fan_req_require_json(fan_req *rq);

/* Replies with `status` (301, 302, 303, 307 or 308) and a Location header.
 * Returns 0, FAN_EINVAL for another status or a location with CR, LF or
 * other control characters, or an error of fan_reply(). */
FAN_API int fan_reply_redirect(fan_req *rq, int status, const char *location);

/* Attributes of fan_resp_set_cookie(). Zero-initialise and set what you need. */
typedef struct fan_cookie_opts {
    const char *path;       /* Path, or NULL for none */
    const char *domain;     /* Domain, or NULL for none */
    long long max_age;      /* Max-Age in seconds; 0 for none (a browser-session
                               cookie); negative deletes the cookie (Max-Age=0) */
    int secure;             /* Secure */
    int http_only;          /* HttpOnly */
    const char *same_site;  /* "Strict", "Lax", "None", or NULL for none */
} fan_cookie_opts;

/* Adds a Set-Cookie header (opts may be NULL for no attribute). The name
 * must be an HTTP token and the value cookie-octets (no space, '"', ',', ';'
 * or '\\'): encode other values first (e.g. base64url). Returns 0, FAN_EINVAL
 * for a bad name, value or attribute (CR and LF included), FAN_ESTATE once
 * the response was sent, or FAN_ENOMEM. */
FAN_API int fan_resp_set_cookie(fan_req *rq, const char *name, const char *value,
                           const fan_cookie_opts *opts);

/* ------------------------------------------------------------------------ */
/* Upstream calls                                                           */
/* ------------------------------------------------------------------------ */

/* Options of one upstream call. Zero-initialise and set what you need; every
 * pointer is copied by fan_call_start(). */
typedef struct fan_call_opts {
    const char *method;           /* NULL means "GET" */
    const char *const *headers;   /* NULL-terminated "Name: value" strings, or NULL */
    const void *body;             /* request body, or NULL; sent with the method given, GET
                                   * included (but curl, for https, drops it on HEAD) */
    size_t body_len;
    const json_t *json;           /* a JSON body, or NULL: see below; `body` must be NULL */
    unsigned timeout_ms;          /* total time; 0 = the app's call_timeout_ms */
    unsigned connect_timeout_ms;  /* for each connection attempt (each address of the
                                   * host, on the lean transport), within the total;
                                   * 0 = the app's connect_timeout_ms */
    size_t max_body_bytes;        /* response body limit; 0 = the app's limit */
    const char *name;             /* a label for logs and errors (e.g. "api_a") */
    /* Retries and hedging of this call (copied), replacing its origin's
     * policy; NULL = the origin's (fan_origin_opts.retry), or none. */
    const fan_retry_policy *retry;
    /* Single-flight and the response cache (docs/resilience.md). They apply
     * to GET and HEAD calls without a body only; for the others they are
     * ignored. 0 in each means the origin's setting (fan_origin_opts). */
    int coalesce;                 /* 1: share one upstream exchange with the identical
                                   * calls in flight in the worker; -1: never (default:
                                   * off, but a cache miss is always shared) */
    int cache;                    /* 1: served from, and stored into, the worker's
                                   * response cache, and its shared tier in Redis
                                   * when redis.url is set (cache.shared); -1:
                                   * bypass both (default: off) */
    unsigned cache_ttl_ms;        /* how long a stored response is fresh; 0: the origin's,
                                   * else the response's Cache-Control s-maxage or
                                   * max-age (a response with neither is not stored) */
    unsigned stale_while_revalidate_ms; /* after the TTL, serve the entry and refresh it
                                         * in the background; 0: the origin's, else the
                                         * response's stale-while-revalidate */
    unsigned stale_if_error_ms;   /* after the TTL, serve the entry when the refresh
                                   * fails; 0: the origin's, else the response's
                                   * stale-if-error */
    const char *const *cache_vary; /* NULL-terminated request header names whose values
                                    * make the cache key (with the method and URL);
                                    * NULL: every request header does */
} fan_call_opts;

/* A JSON body (opts.json): fan_call_start() serializes the value, any JSON
 * value, compactly (no spaces, members in insertion order, UTF-8 as it is)
 * into the request's arena and sends it as the body, with the method given
 * (NULL is still GET: see fan_post_json()). "Content-Type:
 * application/json" is added after the caller's headers unless they set a
 * Content-Type. The value is only read during fan_call_start(): the caller
 * keeps its reference and may change or free it afterwards. A call with
 * both `json` and `body`, or whose value cannot be serialized, sends
 * nothing and ends with FAN_EINVAL, as a call that fails the checks below. */

/* Starts an upstream HTTP call on behalf of the request and returns at once;
 * the call proceeds concurrently with the handler and with every other call.
 * `url` is http:// or https://. The call belongs to the request: it is freed
 * with it, and cancelled if the request is cancelled or ends first. When the
 * worker already has max_calls calls in flight, or max_calls_per_host to the
 * URL's origin, the call waits in the worker's call queue first (see
 * fan_limits; its timeout counts the wait) and may end with FAN_EBUSY.
 * Before anything is sent, on either transport, the request is checked: the
 * method must be an RFC 9110 token, each header line "Name: value" with a
 * token name and no CR or LF, and the URL free of spaces and control bytes
 * (< 0x20, 0x7f). A call that fails the check sends nothing and ends with
 * FAN_EINVAL, with a warning in the log naming the call and the fault.
 * Returns NULL only when out of memory; every other failure (bad URL,
 * refused, busy, ...) is reported by the call itself once awaited. */
FAN_API fan_call *fan_call_start(fan_req *rq, const char *url, const fan_call_opts *opts);

/* fan_call_start() with GET and a printf-formatted URL. Request input put
 * into the URL must be escaped first, with fan_url_escape(). */
FAN_API fan_call *fan_get(fan_req *rq, const char *url_fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* fan_call_start() with POST and `body` as the JSON body (see opts.json;
 * borrowed, read only during this call). A NULL body (a failed json_pack(),
 * say) makes a call that sends nothing and ends with FAN_EINVAL. Returns
 * NULL only when out of memory. */
FAN_API fan_call *fan_post_json(fan_req *rq, const char *url, const json_t *body);

/* Percent-encodes `s` for a path segment or a query name or value of an
 * upstream URL built from request input (RFC 3986): every byte but the
 * unreserved A-Z a-z 0-9 - . _ ~ becomes %XX, upper-case hex, so that
 * '/', '?', '&', '#', '%', '+', spaces and non-ASCII bytes of the input
 * cannot change the URL's structure:
 *     const char *q = fan_url_escape(rq, fan_req_query(rq, "q"));
 *     fan_call *c = q ? fan_get(rq, "http://api/search?q=%s", q) : NULL;
 * The result lives in the request's arena and is freed with it. Returns
 * NULL when out of memory, or when `s` is NULL (fan_req_query() of an absent
 * parameter, say). */
FAN_API char *fan_url_escape(fan_req *rq, const char *s);

/* `s` with its percent-escapes decoded ('+' stays a '+'), in the request's
 * arena, freed with it. NULL for a malformed escape or a "%00" (no value
 * that a C string can hold), when out of memory, or when `s` is NULL. */
FAN_API char *fan_url_decode(fan_req *rq, const char *s);

/* Suspends the running task until `call` has finished. Returns the call's error:
 * 0 when a response was received (whatever its HTTP status), else a
 * negative code (FAN_ECANCELED if the request was cancelled). */
FAN_API int fan_call_await(fan_req *rq, fan_call *call);

/* Suspends until every call the running task started has finished. Returns
 * 0 when all of them got a response, else the error of the first failed one
 * (in start order). */
FAN_API int fan_call_await_all(fan_req *rq);

/* Suspends until the next call of the running task finishes that no
 * fan_call_await_any() has returned yet, and returns it, in completion order.
 * Returns NULL when every call has been returned, or when the task is
 * cancelled. */
FAN_API fan_call *fan_call_await_any(fan_req *rq);

/* Cancels a call that has not finished: it ends with FAN_ECANCELED. */
FAN_API void fan_call_cancel(fan_call *call);

/* Whether the call has finished (with a response or an error). */
FAN_API int fan_call_done(const fan_call *call);

/* The call's error: 0 for a response, FAN_E* otherwise; FAN_ESTATE while it
 * runs (see fan_call_done()). */
FAN_API int fan_call_error(const fan_call *call);

/* The HTTP status of the response, or 0 if there was none. */
FAN_API int fan_call_status(const fan_call *call);

/* The response body (NUL-terminated) and its length; "" and 0 when there is
 * none. Lives as long as the request. */
FAN_API const char *fan_call_body(const fan_call *call, size_t *len);

/* A response header (case-insensitive), or NULL. Repeated headers: the first
 * (fan_call_header_next() gives every one). Lives as long as the request. */
FAN_API const char *fan_call_header(const fan_call *call, const char *name);

/* Iterates over the response's headers as fan_req_header_next() does: in
 * the order received, a repeated header (several Set-Cookie lines) once
 * per line, on either transport, values without surrounding whitespace.
 * Only the final response's: the headers of a 1xx response before it are
 * dropped; the trailers of a chunked response follow its headers (they are
 * found by fan_call_header() too). Read it once the call finished: a
 * running call's list is incomplete, and a failed call's holds what came
 * before the error. The strings live as long as the request. Can't fail. */
FAN_API int fan_call_header_next(const fan_call *call, size_t *i, const char **name,
                                 const char **value);

/* The response body parsed as JSON, or NULL if it is not JSON. Borrowed: the
 * call owns it (parsed once, freed with the request).
 * Nesting: jansson recurses once per level (up to its limit of 2048 levels;
 * deeper is not JSON to it). fanout's own parses (fan_call_json(),
 * fan_req_json()), writes (fan_reply_json(), SSE and NDJSON, JSON call
 * bodies) and frees run on the loop's stack, not the handler's, so a body
 * of "[[[[..." cannot overflow a coroutine. A handler's own recursive
 * jansson calls on such a value (json_dumps(), json_deep_copy(),
 * json_equal(), a json_decref() that frees it) run on its coroutine's
 * stack: give it room with --stack-size, or leave them to fanout. */
FAN_API json_t *fan_call_json(fan_call *call);

/* fan_call_json() for a body whose objects each have unique keys: NULL also
 * when one has a key twice (jansson's JSON_REJECT_DUPLICATES), a body that
 * fan_call_json() still parses, the last value of the key winning. So a
 * non-NULL answer means the body's text says exactly what the value says,
 * for a caller that passes the text on. Borrowed, owned by the call as
 * fan_call_json()'s (the same value). The body is parsed once when this is
 * asked first; fan_call_json() then parses it again only for a duplicate. */
FAN_API json_t *fan_call_json_unique(fan_call *call);

/* A number member `key` of the JSON object body, or NAN if there is none.
 * Cheaper than reading it from fan_call_json(): unless fan_call_json() was
 * asked first, the body is parsed once into the request's arena, a value
 * fanout never hands out (no malloc per node, no free), and a later
 * fan_call_json() parses its own ordinary value. */
FAN_API double fan_call_json_number(fan_call *call, const char *key);

/* The call's URL and label (the label is the URL when none was given). */
FAN_API const char *fan_call_url(const fan_call *call);
FAN_API const char *fan_call_name(const fan_call *call);

/* When the call started and finished, in fan_now() seconds (finished is 0
 * while running). */
FAN_API double fan_call_started(const fan_call *call);
FAN_API double fan_call_finished(const fan_call *call);

/* The tries the call sent upstream, hedges included: 1 for a call tried
 * once, 0 for one served without any (refused by a check or an open
 * breaker, served from the cache, or coalesced with another call). Can't
 * fail. */
FAN_API int fan_call_attempts(const fan_call *call);

/* What happened to a call, FAN_CALL_* bits (0 for a plain call). Read it
 * once the call finished. Can't fail. */
enum {
    FAN_CALL_RETRIED = 1,   /* a try failed and another was sent */
    FAN_CALL_HEDGED = 2,    /* a hedge was sent beside the first try */
    FAN_CALL_CACHED = 4,    /* served from the response cache: nothing was sent */
    FAN_CALL_STALE = 8,     /* ... by an entry past its TTL (stale-while-revalidate or
                             * stale-if-error) */
    FAN_CALL_COALESCED = 16 /* waited for an identical call's exchange (single-flight)
                             * and got its response */
};
FAN_API unsigned fan_call_flags(const fan_call *call);

/* The counters of this thread's worker's single-flight and response cache,
 * since it started. */
typedef struct fan_cache_counters {
    unsigned long long hits;       /* calls answered by a fresh entry */
    unsigned long long stale_hits; /* ... by a stale one (FAN_CALL_STALE) */
    unsigned long long misses;     /* cached calls that found no usable entry */
    unsigned long long stores;     /* responses stored */
    unsigned long long evictions;  /* entries evicted to stay within max_cache_bytes */
    unsigned long long refreshes;  /* background stale-while-revalidate refreshes started */
    unsigned long long exchanges;  /* shared upstream exchanges started */
    unsigned long long coalesced;  /* calls that joined one in flight (FAN_CALL_COALESCED) */
    /* The shared tier (L2, in Redis when redis.url is set and cache.shared
     * is on): looked up when this worker's own entries (L1) have nothing
     * usable; a usable entry found there is copied into L1 and counts as a
     * shared hit (and as a hit or stale hit when it answers the call). */
    unsigned long long shared_hits;      /* lookups that L2 answered with an entry */
    unsigned long long shared_stores;    /* responses sent to L2 */
    unsigned long long shared_too_large; /* responses over cache.shared_max_entry_bytes:
                                          * kept in L1 only */
    unsigned long long shared_errors;    /* L2 commands that failed (Redis down, slow or
                                          * busy): a lookup is a miss then, a store lost;
                                          * logged at most once a second */
    size_t entries, bytes;         /* what the cache holds now (L1) */
} fan_cache_counters;

/* Copies the counters into *out. Can't fail. */
FAN_API void fan_cache_get_counters(fan_cache_counters *out);

/* ------------------------------------------------------------------------ */
/* Child tasks                                                              */
/* ------------------------------------------------------------------------ */

/* A child task: a function running on its own coroutine within a request,
 * like asyncio.create_task(). It sees the same fan_req (context, settings,
 * store, session) and may await calls, sleep, run blocking work and spawn
 * tasks of its own. Tasks of a request run on one thread, switching only
 * where they await: code between two awaits never races with another task.
 *
 * Structure: the calls and children a task starts belong to it. When a
 * task's function returns, what it started and left running is cancelled;
 * cancelling a task (or its request) cancels its calls and children. A
 * request's memory is freed only after every task ended. fan_call_await_all() and
 * fan_call_await_any() concern the calls of the task that calls them.
 *
 * Lifetimes (docs/concurrency.md): a task ends when its function returned,
 * every child of it ended and every waker it made was woken (see "Awaiting
 * other libuv clients"). Until then its coroutine's stack, the frame
 * of its function included, is neither released nor reused, so a child may
 * be handed a pointer into its parent's frame. A function that returns with
 * children still running gets them cancelled, and a warning in the log
 * (rate-limited, naming the route): await children before returning. The
 * awaits below, when the caller is cancelled, cancel the tasks they wait for
 * and return only once those ended. */
typedef struct fan_task fan_task;

/* A task's function: returns 0 for success or a negative FAN_E* code
 * (positive values count as 0). Results travel through `arg` or the
 * request's store. */
typedef int (*fan_task_fn)(fan_req *rq, void *arg);

/* Starts fn(rq, arg) as a child of the running task (the handler's, or
 * another task's). It starts running when the caller next awaits. `arg` is
 * the caller's: it may point into the caller's frame (a local variable) or
 * anything else that lives until the child ends, which is never after the
 * caller's own end (see "Lifetimes" above); request-scoped memory
 * (fan_alloc()) always qualifies. Returns NULL when out of memory, or when
 * called outside any task once the handler returned. The task's memory is
 * freed with the request. */
FAN_API fan_task *fan_spawn(fan_req *rq, fan_task_fn fn, void *arg);

/* Suspends until task `t` ended; returns its result. If the caller is
 * cancelled meanwhile, `t` is cancelled too and this returns FAN_ECANCELED
 * once `t` ended (at once if `t` is an ancestor of the caller, which cannot
 * end first, or itself waits this way for the caller). Returns FAN_ENOMEM
 * for a NULL `t` (a failed fan_spawn()). */
FAN_API int fan_task_await(fan_req *rq, fan_task *t);

typedef enum fan_gather_policy {
    FAN_GATHER_ALL = 0,       /* wait for every task; return the first error (in order) */
    FAN_GATHER_FAIL_FAST = 1, /* on the first failure cancel the others, wait, return it */
} fan_gather_policy;

/* Waits for the `n` tasks of `tasks` (or, with tasks NULL, for every child
 * of the running task) according to `policy`. Returns 0 when all succeeded,
 * the failing task's result, or FAN_ECANCELED if the caller was cancelled:
 * the tasks are then cancelled and this returns once they ended. NULL
 * entries (failed spawns) are skipped. */
FAN_API int fan_task_gather(fan_req *rq, fan_task *const *tasks, size_t n,
                            fan_gather_policy policy);

/* Suspends until the next child of the running task ends that this function
 * has not returned yet, and returns it; NULL when none is left, or when the
 * caller was cancelled: every child is then cancelled and this returns once
 * they all ended. */
FAN_API fan_task *fan_task_await_any(fan_req *rq);

/* Cancels a task: its awaits return FAN_ECANCELED, its calls and children
 * are cancelled. It still runs to the end of its function (it unwinds by
 * returning). NULL is ignored. */
FAN_API void fan_task_cancel(fan_task *t);

/* Cancels the task (reason FAN_ETIMEDOUT, seen with fan_cancelled() inside
 * it) if it has not ended `ms` from now; 0 removes the timeout. Returns 0,
 * FAN_ESTATE if it ended or was cancelled, or FAN_ENOMEM. */
FAN_API int fan_task_set_timeout(fan_task *t, unsigned ms);

/* Whether the task ended, and its result: what its function returned (0 or
 * a FAN_E* code), or FAN_ESTATE while it runs (see fan_task_done()). */
FAN_API int fan_task_done(const fan_task *t);
FAN_API int fan_task_result(const fan_task *t);

/* Runs fn(arg) on libuv's thread pool and suspends the calling task until it
 * returned; the loop serves everything else meanwhile (the counterpart of
 * run_in_executor). fn must not touch the request or any fanout object.
 * Returns 0, FAN_ENOMEM, or FAN_ECANCELED when the task was cancelled: if fn
 * had not started it never will; if it had, this waits for it to return
 * first (so `arg` may live on the caller's stack). */
FAN_API int fan_run_blocking(fan_req *rq, void (*fn)(void *arg), void *arg);

/* Registers fn(arg) to run when the running task (the handler's, or a child
 * task's) ends: once its function returned, every child of it ended and
 * every waker it made was woken (see "Lifetimes" above), before its result
 * is visible and its parent is told (a fan_task_await() of it returns after
 * them). A cancelled task runs them too, as it ends by returning: register
 * the release of what a task acquires where it acquires it, and a child
 * cancelled by its parent, a failed gather or its request releases it.
 * Cleanups run last registered first, on the loop, outside any coroutine:
 * they must not await. `arg` must live until then: request memory
 * (fan_alloc()) does, the task's own frame does not (its function has
 * returned). For the handler's task they run when the handler returned (after
 * the 500/504 of a handler that did not answer) and its children ended;
 * fan_defer()'s run later, when the request's memory is freed. Called
 * outside any task, it registers on the handler's. Returns 0, FAN_EINVAL for
 * a NULL fn, FAN_ESTATE when the handler's task already ended (or never ran:
 * a request that matched no route), or FAN_ENOMEM (fn is then not
 * registered). */
FAN_API int fan_task_defer(fan_req *rq, void (*fn)(void *arg), void *arg);

/* ------------------------------------------------------------------------ */
/* Awaiting other libuv clients                                             */
/* ------------------------------------------------------------------------ */

/* A task can await anything that reports through a callback on the
 * worker's libuv loop (fan_loop()): a uv timer, uv_getaddrinfo(), hiredis's
 * libuv adapter, a database driver with a libuv binding. It makes a waker,
 * starts the operation with a callback that calls fan_wake(), and suspends
 * on the waker with fan_suspend(); the loop serves everything else
 * meanwhile (docs/concurrency.md, "Awaiting other libuv clients", has the
 * rules; examples/await_libuv.c a timer and a DNS lookup).
 *
 * A waker keeps the memory the operation uses alive until it is woken:
 * the request is not freed, and the task that made it does not end (its
 * coroutine's stack, the frame of its function included, is neither
 * released nor reused), so a uv request or handle may live in the caller's
 * frame. Wake it when libuv is done with that memory: in the callback of
 * a request (uv_getaddrinfo_t, uv_fs_t, uv_work_t), in the close callback of
 * a handle (uv_timer_t, uv_tcp_t: close it from its callback, or from
 * on_cancel). A waker never woken keeps its request forever: every waker
 * must be woken exactly once, even one whose operation could not start. */
typedef struct fan_waker fan_waker;

/* The libuv loop of this worker (this thread), the one fanout serves on,
 * created on first use. Start operations that wake a waker on it. Owned
 * by fanout: do not close or run it. Can't fail. */
FAN_API struct uv_loop_s *fan_loop(void);

/* A new waker for the running task, to be woken once with fan_wake().
 * Returns NULL when out of memory (start nothing then) or when not called
 * from a task of `rq`. It is an op of the request, freed with it.
 *
 * on_cancel(arg) (on_cancel may be NULL) is called once, if the waker was
 * not woken yet, when the task is cancelled (its request's disconnect,
 * deadline or shutdown, its parent, a gather, its timeout) or returns
 * without having suspended on it (with a warning in the log; the task's
 * stack is then kept until the waker is woken). It should stop the
 * operation (uv_cancel(), uv_close(), a driver's own cancel); without it, a
 * cancelled task waits until the operation completes on its own. It runs
 * on the loop's thread, from the code that cancels (possibly another task's
 * coroutine): it must not await. The waker must still be woken after it:
 * by the operation's callback (uv_cancel() makes a request's callback run
 * with UV_ECANCELED, uv_close() makes a handle's close callback run), or by
 * on_cancel itself when no callback will come.
 *
 * Start the operation right after making the waker, before the task next
 * awaits: on_cancel takes it as started. A task that was cancelled before
 * it made the waker (or by its own code since) gets on_cancel from
 * fan_suspend(). */
FAN_API fan_waker *fan_waker_new(fan_req *rq, void (*on_cancel)(void *arg), void *arg);

/* Suspends the running task until `w` (made by this task) was woken, and
 * returns at once if it was already. Returns 0, FAN_ECANCELED when the task
 * was cancelled before or while it waited, or FAN_ENOMEM for a NULL `w` (a
 * failed fan_waker_new()). A cancelled task still waits for the wake, after
 * on_cancel: the operation may write into the caller's frame until its
 * callback ran, so returning earlier would let it write into whatever the
 * stack holds next. The operation's own result (which may be a success
 * even after a cancel) is what its callback recorded. */
FAN_API int fan_suspend(fan_req *rq, fan_waker *w);

/* Wakes `w`: the task suspended on it resumes once the loop gets control
 * back, never within fan_wake(), so the caller may go on using the
 * operation's memory until it returns. Call it exactly once per waker, on
 * the loop's thread (not thread-safe): from a libuv callback, from
 * on_cancel, or from the task itself (an operation that completes at once).
 * Safe whether the task is suspended on it yet, suspended elsewhere,
 * cancelled, or has returned. Once woken, the request and the task's stack
 * may be freed at the loop's next turn. NULL is ignored. */
FAN_API void fan_wake(fan_waker *w);

/* ------------------------------------------------------------------------ */
/* Rate limits                                                              */
/* ------------------------------------------------------------------------ */

/* Every app has a rate limiter, off until ratelimit.rate is set: a token
 * bucket per client key, checked before the before-request hooks. With
 * redis.url set, the buckets are in Redis, updated by one Lua script on
 * Redis's clock, so that every instance and worker sharing the Redis
 * shares them; without, each worker keeps its own. A refused request gets
 * 429 with Retry-After (seconds until a token) and the JSON body
 * {"error": "rate limit exceeded", "status": 429, "retry_after": S,
 * "remaining": 0}. Settings:
 *   ratelimit.rate           tokens added per second (default 0: off)
 *   ratelimit.burst          the bucket's size (default 10)
 *   ratelimit.key            "addr" (default: fan_req_client_addr(), so set
 *                            the trusted proxies behind a load balancer) or
 *                            "header:NAME" (that header's value; a request
 *                            without it is keyed by its address; over 256
 *                            bytes is answered 400)
 *   ratelimit.paths          path prefixes it applies to (default ["/"])
 *   ratelimit.redis_down     when Redis fails: "allow", "deny" (503 with
 *                            Retry-After: 1) or "local" (default: this
 *                            worker's own bucket, so each worker allows the
 *                            full rate); logged once a second at most
 *   ratelimit.max_local_keys the keys a worker's own table holds (default
 *                            10000); full, it is emptied, with a warning */

/* ------------------------------------------------------------------------ */
/* Redis                                                                    */
/* ------------------------------------------------------------------------ */

/* Each worker keeps one connection to the app's Redis (hiredis on the
 * worker's loop), made on first use. A task awaits a command as it awaits a
 * call: only that task waits. Settings (fan_app_set(), --set, the
 * configuration file; --redis URL sets redis.url):
 *   redis.url                 redis://[user[:password]@]host[:port][/db]
 *                             (default "": no Redis). Logs show the
 *                             password as ***. A host name is looked up at
 *                             each connect, on libuv's thread pool (within
 *                             redis.connect_timeout_ms); the first commands
 *                             wait for it.
 *   redis.prefix              put before every key fanout writes, and by
 *                             fan_redis_key() (default "fanout:"), so that
 *                             several services share one Redis
 *   redis.connect_timeout_ms  a connect (with its AUTH and SELECT) not done
 *                             in it fails (default 1000)
 *   redis.command_timeout_ms  a reply not come in it fails its command and
 *                             every command behind it, and the connection
 *                             is made again (default 1000)
 *   redis.max_in_flight       commands sent and not answered per worker;
 *                             FAN_EBUSY beyond (default 1024)
 *   redis.backoff_max_ms      a lost or refused connection is tried again
 *                             after 50 ms, doubling up to this (default
 *                             2000); until then, and until the new
 *                             connection is ready, commands fail at once
 * Sessions (session.store) and the rate limiter (ratelimit.*) use it too,
 * and so does the response cache, as its shared tier:
 *   cache.shared              on (default true) with redis.url set: the
 *                             cached calls' entries are kept in Redis too
 *                             (redis.prefix "cache:" key, a string with a
 *                             PX expiry at the end of the entry's last stale
 *                             window), so that every worker and instance
 *                             sharing the Redis is answered by one upstream
 *                             exchange; a Redis that fails is a miss,
 *                             counted (fan_cache_counters.shared_errors)
 *                             and logged once a second
 *   cache.shared_max_entry_bytes  the largest entry (status, headers and
 *                             body, as stored) put in Redis (default
 *                             1048576); a larger one stays in the worker's
 *                             own cache only */

/* The kinds of reply, the values of fan_redis_reply.type. */
enum {
    FAN_REDIS_STRING = 1,  /* str, len */
    FAN_REDIS_ARRAY = 2,   /* element[0..elements) */
    FAN_REDIS_INTEGER = 3, /* integer */
    FAN_REDIS_NIL = 4,
    FAN_REDIS_STATUS = 5,  /* str: "OK", "QUEUED" */
    FAN_REDIS_ERROR = 6,   /* str: the error Redis answered */
};

/* A reply, with everything it points to in the request's memory: it lives
 * as long as the request. str is NUL-terminated (and may hold NUL bytes
 * within its len). */
typedef struct fan_redis_reply {
    int type;
    long long integer;
    const char *str;
    size_t len;
    size_t elements;
    struct fan_redis_reply *element;
} fan_redis_reply;

/* Sends the command argv[0..argc) (lens[i] bytes each; strlen() of each when
 * lens is NULL) to the app's Redis and suspends the calling task until its
 * reply. Must be called from a task of `rq` (a handler, a hook, a child
 * task). Keys are sent as given: build them with fan_redis_key().
 *
 * Returns 0 with *out the reply (a Redis error is a reply of type
 * FAN_REDIS_ERROR, not a failure), or, with *out NULL: FAN_EINVAL (argc < 1,
 * or no or a bad redis.url, logged), FAN_ECONNREFUSED (Redis cannot be
 * reached, or the connection is down and waits for its next attempt: this
 * fails at once), FAN_ETIMEDOUT (no reply in redis.command_timeout_ms),
 * FAN_EBUSY (redis.max_in_flight commands in flight), FAN_ECANCELED (the
 * task was cancelled; the command may still be carried out by Redis, but
 * its reply, when it comes, is dropped: no task ever sees it), FAN_ESTATE
 * (not in a task of rq) or FAN_ENOMEM. */
FAN_API int fan_redis_command_argv(fan_req *rq, fan_redis_reply **out, int argc,
                                   const char *const *argv, const size_t *lens);

/* fan_redis_command_argv() with the command given as NUL-terminated
 * strings ended by a NULL: fan_redis_command(rq, &r, "GET", key, NULL). At
 * most 64 strings (FAN_EINVAL beyond). Returns as fan_redis_command_argv(). */
FAN_API int fan_redis_command(fan_req *rq, fan_redis_reply **out, const char *arg, ...)
    __attribute__((sentinel));

/* redis.prefix followed by `key`, in the request's memory. NULL when out of
 * memory. */
FAN_API const char *fan_redis_key(fan_req *rq, const char *key);

/* ------------------------------------------------------------------------ */
/* Per-request store (Flask's g)                                            */
/* ------------------------------------------------------------------------ */

/* Stores `value` under `key` (copied) for the rest of the request, visible
 * to every task of the request. Replacing a value destroys the old one with
 * its destructor. Every value is destroyed (destroy(value), if destroy is not
 * NULL) when the request's memory is freed. Returns 0 or FAN_ENOMEM (then
 * the value is not stored and not destroyed). */
FAN_API int fan_store_set(fan_req *rq, const char *key, void *value, void (*destroy)(void *value));

/* The value stored under `key`, or NULL. */
FAN_API void *fan_store_get(const fan_req *rq, const char *key);

/* ------------------------------------------------------------------------ */
/* Observability (docs/observability.md)                                    */
/* ------------------------------------------------------------------------ */

/* What an app's requests are observed with, or-ed together. */
#define FAN_OBSERVE_SERVER_TIMING 1u /* a Server-Timing header on each response: an entry
                                      * per upstream call finished when its head is sent,
                                      * and "handler" */
#define FAN_OBSERVE_TRACE 2u   /* W3C Trace Context: a valid incoming traceparent is
                                * continued, else a trace starts; each upstream call gets a
                                * child traceparent (its own span id) and the tracestate;
                                * the access log line carries the trace id */
#define FAN_OBSERVE_METRICS 4u /* counted in the admin listener's metrics and recorded in
                                * its waterfall; fan_main() and fan_serve() drop it when no
                                * admin listener is set, since nothing could read them */
#define FAN_OBSERVE_ALL 7u
#define FAN_SERVER_TIMING_MAX_DEFAULT 32

/* Sets what the app's requests are observed with (default FAN_OBSERVE_ALL;
 * --server-timing, --trace-context and --metrics, each on or off). Bits
 * beyond FAN_OBSERVE_ALL are ignored. Set it before fan_run(). Can't fail. */
FAN_API void fan_app_set_observe(fan_app *app, unsigned what);
FAN_API unsigned fan_app_observe(const fan_app *app);

/* The most call entries of one Server-Timing header (default
 * FAN_SERVER_TIMING_MAX_DEFAULT, --server-timing-max-entries); the calls
 * beyond are left out and counted in an entry "calls-omitted;desc=N". 0
 * leaves only "handler". Can't fail. */
FAN_API void fan_app_set_server_timing_max(fan_app *app, unsigned n);

/* Sets the admin listener that fan_main() and fan_serve() open beside the
 * app's (--admin-port, --admin-addr, --admin-token): GET /metrics (the
 * Prometheus text format, summed over every worker of the master),
 * GET /waterfall (an HTML page of the recent requests and the slowest of
 * each route, their upstream calls drawn on a time axis) and
 * GET /waterfall.json (the same records). `host` is numeric, NULL for
 * 127.0.0.1 (the admin listener shows routes, upstream names and timings:
 * keep it off public interfaces); `port` 0 turns the listener off (the
 * default), -1 picks a free port (logged). With a `token` (copied; NULL or
 * "" for none), every admin request must carry "Authorization: Bearer
 * TOKEN" or gets 401. `max_series` bounds the label sets of each labelled
 * metric (0 for the default 500, at most 100000, --metrics-max-series):
 * the label sets beyond are counted in one series labelled
 * otel_metric_overflow="true". Returns 0, FAN_EINVAL for a port or
 * max_series out of range, or FAN_ENOMEM. */
FAN_API int fan_app_set_admin(fan_app *app, const char *host, int port, const char *token,
                              unsigned max_series);

/* Exports spans over OTLP/HTTP JSON to `url` ("http://host[:port][/path]",
 * the path /v1/traces by default; --otlp-endpoint; NULL for none, the
 * default): one span per traced request (kind SERVER, its parent the
 * incoming traceparent's span) and one per upstream call (kind CLIENT, its
 * id the span id of the traceparent the call carried), with the standard
 * HTTP attributes, query values redacted. Each worker queues at most
 * `max_queued` spans (0 for 2048, --otlp-max-queued-spans) and sends them
 * every second from its own loop; the spans beyond the queue, those the
 * collector refuses or does not answer within 5 s, and those waiting when
 * the worker stops are dropped and counted (fanout_spans_dropped_total).
 * The host is resolved when serving starts. Needs FAN_OBSERVE_TRACE.
 * Returns 0, FAN_EINVAL for a URL that is not http://, or FAN_ENOMEM. */
FAN_API int fan_app_set_otlp(fan_app *app, const char *url, unsigned max_queued);

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum fan_log_level {
    FAN_LOG_DEBUG,
    FAN_LOG_INFO,
    FAN_LOG_WARN,
    FAN_LOG_ERROR,
} fan_log_level;

typedef enum fan_log_format {
    FAN_LOG_TEXT, /* "TIME LEVEL [PID] message" */
    FAN_LOG_JSON, /* {"time":..., "level":..., "pid":..., "msg":...} */
} fan_log_format;

/* Writes one line to the error log (stderr unless fan_log_open() named a
 * file): time, level, pid and the message, as text or as a JSON object (see
 * fan_log_set_format()). Lines below the threshold (default FAN_LOG_INFO)
 * are dropped. Each line is a single write(), so lines of several processes
 * sharing the log never interleave. Messages are cut at about 2 KB. */
FAN_API void fan_log(fan_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sets the lowest level that is written. */
FAN_API void fan_log_set_level(fan_log_level level);

/* Sets the format of both the error log and the access log (default
 * FAN_LOG_TEXT; --log-format). In JSON every line is one object; the access
 * log's fields are its keys. Can't fail. */
FAN_API void fan_log_set_format(fan_log_format format);

/* Sends the error log to the file `path` (created if needed, appended to),
 * or back to stderr when `path` is NULL or "stderr" (--log-file). The
 * previous file is closed once the new one is open. Returns 0, FAN_ENOMEM,
 * or FAN_EIO (logged, on stderr or the old file) when the file cannot be
 * opened: the log then goes where it went before. */
FAN_API int fan_log_open(const char *path);

/* The same for the access log (--access-log): one line per request when it
 * ends, with its method, raw path, status, duration, response bytes, the
 * number of upstream calls it made and of those that failed (ended with a
 * FAN_E* error; any HTTP status is a success), and the client's address.
 * Requests refused before they were routed (a malformed or oversized head)
 * have no line. "off" turns it off; NULL or "stderr" (the default)
 * writes to stderr. Returns 0, FAN_ENOMEM or FAN_EIO as fan_log_open(). */
FAN_API int fan_access_log_open(const char *path);

/* Reopens the log files under their names, for log rotation: once the old
 * file was renamed, lines go to a new file at the original path. fan_run()
 * calls it on SIGUSR1, and fan_main()'s master on SIGUSR1, which it also
 * forwards to its workers. Stderr is left alone. Returns 0, or FAN_EIO
 * (logged) if a file cannot be reopened; that log keeps its old file. */
FAN_API int fan_log_reopen(void);

#ifdef __cplusplus
}
#endif

#endif /* FANOUT_H */
