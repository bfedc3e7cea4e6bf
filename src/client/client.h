/* Upstream calls and the transports behind them. Internal to libfanout. */
#ifndef FAN_CLIENT_H
#define FAN_CLIENT_H

#include <stdbool.h>

#include "core/buf.h"
#include "core/header.h"
#include "core/span.h"
#include "runtime/runtime.h"

/* A transport moves one call over the network. start() returns 0 when the
 * call is under way (it later ends with fan__call_finish()) or a negative
 * error when it could not start (the caller finishes the call with it).
 * cancel() must end the call with fan__call_finish(c, FAN_ECANCELED), now or
 * later. shutdown() releases the transport's per-thread state. */
typedef struct fan__transport {
    const char *name;
    int (*start)(fan_call *c);
    void (*cancel)(fan_call *c);
    void (*shutdown)(void);
} fan__transport;

/* libcurl's multi_socket API on the libuv loop: https, proxies, and every
 * http:// call when FANOUT_TRANSPORT=curl. */
extern const fan__transport fan__curl_transport;

/* fanout's own keep-alive HTTP/1.1 client (lean.c): plain http://. */
extern const fan__transport fan__lean_transport;

struct fan_call {
    fan__op op;               /* live in rq->ops while running */
    fan__list link;           /* task->calls, in start order */
    fan__list done_link;      /* task->completed until fan_call_await_any returns it */
    fan_req *rq;
    fan__task *task;          /* the task that started it */
    const fan__transport *tp;
    void *tp_data;            /* the transport's handle (a CURL easy handle) */
    char *tp_errbuf;          /* curl's error text of the call (arena), or NULL */

    const char *url, *name, *method;
    const char *const *headers; /* NULL-terminated, in the arena */
    unsigned nchecked;          /* how many: the caller's, checked, and a Content-Type of ours */
    const void *body;
    size_t body_len;
    unsigned timeout_ms, connect_timeout_ms;
    size_t max_body;

    int error;                /* 1 while running, then 0 or FAN_E* */
    int status;
    fan__buf resp_body;
    fan__header *resp_headers;
    unsigned nresp, resp_cap;
    size_t resp_header_bytes;
    double started, finished;
    json_t *json;

    /* What a call is or has done, one bit each (a call waiting on its
     * upstream sits in the request's arena: thousands of them at once). */
    bool sends_trace : 1;     /* the transport adds the trace context lines (call_observe.c) */
    bool too_large : 1;       /* a body or head limit stopped the response */
    bool bad_head : 1;        /* a response header line was malformed */
    bool returned : 1;        /* by fan_call_await_any */
    bool json_parsed : 1;
    bool json_checked : 1;    /* json was parsed with JSON_REJECT_DUPLICATES */
    bool json_dup : 1;        /* the body has an object with a key twice */
    bool json_arena : 1;      /* json is an arena value, for fanout's reading only */
    bool holds_slot : 1;      /* slots.c: counted in flight */
    bool queued : 1;          /* slots.c: waiting in its origin's queue */
    bool counted : 1;         /* resilience: counted in health->calls */
    bool budgeted : 1;        /* resilience: a try that holds a unit of the retry budget */
    bool has_all_time : 1;    /* resilience: a try whose timeout is what was left of its call's */
    bool responded : 1;       /* resilience: a byte of the response head or body arrived */
    bool cancelled_by_us : 1; /* resilience: a try cancelled by its call (a loser) */
    bool use_shared : 1;      /* cache: its app has a shared tier (L2) for the cache */
    bool stale_fallback : 1;  /* cache: it holds a stale entry, served if the exchange fails */

    /* slots.c: the call's origin while it runs or waits for a slot */
    struct origin *origin;
    fan__list queue_link;
    unsigned long long queue_seq; /* the queue's order, oldest first */
    struct queue_timer *queue_timer;

    /* upstreams.c: the app's settings of the call's origin, NULL for none */
    const struct fan__upstreams *upstreams;
    const struct fan__origin_cfg *origin_cfg;
    size_t conn_cap; /* calls in flight to the origin it allows, 0 = no cap */

    /* resilience.h: retries, hedges, the breaker */
    struct fan_call *parent;         /* a try: the call it is a try of, else NULL */
    struct fan__attempts *att;       /* a call run as tries: the engine's state */
    const fan_retry_policy *policy;  /* its retry policy, NULL for one plain try */
    struct fan__health *health;      /* its origin's state in the worker, or NULL */
    fan__list try_link;              /* a try: in its call's list of live tries */
    int probe;                       /* the half-open breaker's probe */
    int attempts;                    /* fan_call_attempts() */
    unsigned flags;                  /* fan_call_flags() */

    /* cache.c and flight.c: the response cache and single-flight, as the
     * options and the call's origin set them (fan__cache_settle()). */
    int use_cache, use_coalesce;
    unsigned cache_ttl_ms, swr_ms, sie_ms;
    const char *const *cache_vary;  /* NULL-terminated, in the arena, or NULL */
    char *fkey, *ckey;              /* its single-flight and cache keys (arena) */
    char *vary_names;               /* ",name,...," of cache_vary, lower-case, or NULL */
    size_t fklen, cklen;
    void *lookup;                   /* a store lookup it waits for */
    struct fan__flight *flight;     /* the shared exchange it waits for */
    fan__list flight_link;          /* in the flight's waiters */
    struct fan__flight *leads;      /* the shared exchange this call is the upstream call of */
    struct fan__shared_body *shared_body; /* its body, read-only, shared with the other
                                           * waiters of its exchange; or NULL: resp_body */
    fan__call_rec rec; /* what Server-Timing, the metrics and the waterfall see */
};

/* A response body shared, read-only, by the calls of a shared exchange
 * (flight.c): freed with its last reference, by fan__shared_body_unref(). */
typedef struct fan__shared_body {
    unsigned refs;
    fan__buf buf;
} fan__shared_body;

void fan__shared_body_unref(fan__shared_body *b);

/* Observation of calls (call_observe.c). fan__call_trace_headers() gives
 * the call its span id and, when the request propagates trace context and
 * the caller's `headers` do not carry their own traceparent, marks it
 * (sends_trace) for the transport to add the child traceparent and the
 * request's tracestate to the lines it sends: written straight into the
 * request it serializes, not made into lines of the arena first. A try
 * sends its call's. fan__call_traceparent() writes the traceparent line
 * ("traceparent: 00-...", no CR LF, NUL-terminated: FAN__TRACEPARENT_LINE
 * bytes and the NUL) and returns its length, or 0 when the call sends
 * none; fan__call_tracestate() is the tracestate value to send with it, or
 * NULL. fan__call_observe_start() links the call's record to its request
 * and counts it in flight; fan__call_observe_end() completes the record and
 * counts the call in the client histogram. */
#define FAN__TRACEPARENT_LINE 68
void fan__call_trace_headers(fan_call *c, const char *const *headers);
size_t fan__call_traceparent(const fan_call *c, char out[FAN__TRACEPARENT_LINE + 1]);
const char *fan__call_tracestate(const fan_call *c);
void fan__call_observe_start(fan_call *c);
void fan__call_observe_end(fan_call *c);

/* Ends a running call with `error` (0 for a response). Wakes its handler if
 * it waits for it. The call must not be touched by the transport afterwards. */
void fan__call_finish(fan_call *c, int error);

/* Response building, for transports. A new status line (after 1xx or a
 * redirect) resets the headers. Return 0, or FAN_ETOOLARGE / FAN_ENOMEM and
 * the transport aborts the call. */
int fan__call_header_line(fan_call *c, const char *line, size_t len);
int fan__call_header(fan_call *c, const char *name, size_t nlen, const char *value, size_t vlen);
/* fan__call_header() for a name llhttp read: llhttp 8.1 takes a header name
 * of token characters and SP (its non-strict table; the strict one, tokens
 * only), so a space is all that is left to refuse. */
int fan__call_header_parsed(fan_call *c, const char *name, size_t nlen, const char *value,
                            size_t vlen);
int fan__call_body(fan_call *c, const void *data, size_t len);

/* The call's total timeout minus the time it has run (waited in the queue
 * included), at least 1 ms: what a transport has left to give it. */
unsigned fan__call_remaining_ms(const fan_call *c);

/* Hands a call that got a slot to its transport, or finishes it when the
 * transport cannot start it (call.c). */
void fan__call_launch(fan_call *c);

/* Call slots (slots.c): the limits on calls in flight per worker and per
 * origin (max_calls, max_calls_per_host), and the queue of calls beyond them
 * (max_queued_calls, call_queue_timeout_ms).
 * fan__slots_acquire() returns 0 when the call may start now, 1 when it
 * waits (it is launched when a slot frees, or finished with FAN_EBUSY or
 * FAN_ETIMEDOUT), or FAN_EBUSY when the queue is full, FAN_EINVAL or
 * FAN_ENOMEM. fan__slots_release() gives back what a call holds, slot or
 * place in the queue, and starts the waiting calls that now fit. */
int fan__slots_acquire(fan_call *c);
void fan__slots_release(fan_call *c);
void fan__slots_shutdown(void);

/* The origin key of a call that holds a slot or waits for one (not
 * NUL-terminated: its length is returned), or 0 when it has none. */
size_t fan__slots_origin(const fan_call *c, const char **key);

/* The client metrics series its origin remembers (runtime/metrics.h), or
 * NULL when it has no origin. It lives as long as the origin: while a call
 * to it runs or waits. */
struct fan__m_memo *fan__slots_memo(const fan_call *c);

/* Writes the origin of `url` (scheme, host and port, lower-cased, without
 * the scheme's default port or credentials) to out (cap bytes) and returns
 * its length, or 0 when the URL has no "scheme://" or the origin does not
 * fit (slots.c). */
size_t fan__origin_key(const char *url, char *out, size_t cap);

/* The hash of an origin key of `n` bytes (FNV-1a), for the tables of
 * origins (slots.c, health.c) and of the cache and single-flight keys
 * (store_memory.c, flight.c). Can't fail. */
unsigned fan__origin_hash(const char *s, size_t n);

/* Upstream settings of an app (upstreams.c): TLS files and per-origin
 * options. The app owns one; each request's runtime carries a pointer to
 * it (fan__rt.upstreams). Set before the app's workers run, read by the
 * calls. */
typedef struct fan__origin_cfg {
    struct fan__origin_cfg *next;
    fan_origin_opts opts;
    size_t len;
    char key[]; /* the origin, as fan__origin_key() writes it */
} fan__origin_cfg;

typedef struct fan__upstreams {
    char *ca_file;                  /* NULL: the system's store */
    char *client_cert, *client_key; /* NULL: none; key NULL: in the cert file */
    fan__origin_cfg *origins;
} fan__upstreams;

/* Makes an app's settings, empty. NULL when out of memory. */
fan__upstreams *fan__upstreams_new(void);
void fan__upstreams_free(fan__upstreams *u);

/* Sets (or replaces, in place) the options of the origin `origin` (len
 * bytes, normalised by fan__origin_key()). Returns 0 or FAN_ENOMEM. */
int fan__upstreams_set_origin(fan__upstreams *u, const char *origin, size_t len,
                              const fan_origin_opts *opts);

/* The options of the origin of `url`, or NULL when it has none. */
const fan__origin_cfg *fan__upstreams_origin(const fan__upstreams *u, const char *url);

/* The response cache and single-flight (cache.c, flight.c), in front of
 * the slots and transports.
 * fan__cache_settle() resolves the call's settings from its options (set
 * by fill()) and its origin's. fan__cache_start() answers the call from
 * the cache (it is finished then) or makes it wait for a store lookup or a
 * shared exchange, and returns 1; or returns 0 when the call goes its own
 * way (slots, then a transport). */
void fan__cache_settle(fan_call *c);
int fan__cache_start(fan_call *c);

/* Ends a call that waits in the cache or a shared exchange with
 * FAN_ECANCELED: it leaves alone (cache.c). */
void fan__cache_cancel(fan_call *c);

/* The upstream call of a shared exchange ended: stores its response when
 * the exchange is cached, and gives each waiter its own copy (flight.c).
 * Called by fan__call_finish() before anything else of it. */
void fan__flight_done(fan_call *up);

/* Cancels the shared exchanges of the worker that no call waits for
 * (background refreshes), and the others too when `waited_for_too`: a
 * stop's drain, then its end. They end through their callbacks. */
void fan__flight_cancel_all(int waited_for_too);

/* Frees the worker's cache (cache.c). */
void fan__cache_shutdown(void);

/* fan_call_start() for the upstream call of a shared exchange: it runs in
 * `bg`, the exchange's own request, with the settings of `model` (its URL,
 * method, headers, timeouts, limit and name), and goes to the slots and a
 * transport, never to the cache (call.c). NULL when out of memory. */
fan_call *fan__call_start_shared(fan_req *bg, const fan_call *model, struct fan__flight *f);

/* Maps a CURLcode to a FAN_E* code; `cb_error` is the FAN_E* code our
 * header or write callback stopped the transfer with, or 0. */
int fan__curl_error(int curl_code, int cb_error);

/* Releases every transport's per-thread state (connections, handles). */
void fan__client_shutdown(void);

#endif
