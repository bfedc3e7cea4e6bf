/* Upstream calls and the transports behind them. Internal to libfanout. */
#ifndef FAN_CLIENT_H
#define FAN_CLIENT_H

#include "core/buf.h"
#include "http/http.h"

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
    fan__list done_link;      /* task->completed until fan_await_any returns it */
    fan_req *rq;
    fan__task *task;          /* the task that started it */
    const fan__transport *tp;
    void *tp_data;            /* the transport's handle (a CURL easy handle) */

    const char *url, *name, *method;
    const char *const *headers; /* NULL-terminated, in the arena */
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
    int too_large;
    int returned;             /* by fan_await_any */
    double started, finished;
    json_t *json;
    int json_parsed;
};

/* Ends a running call with `error` (0 for a response). Wakes its handler if
 * it waits for it. The call must not be touched by the transport afterwards. */
void fan__call_finish(fan_call *c, int error);

/* Response building, for transports. A new status line (after 1xx or a
 * redirect) resets the headers. Return 0, or FAN_ETOOLARGE / FAN_ENOMEM and
 * the transport aborts the call. */
int fan__call_header_line(fan_call *c, const char *line, size_t len);
int fan__call_header(fan_call *c, const char *name, size_t nlen, const char *value, size_t vlen);
int fan__call_body(fan_call *c, const void *data, size_t len);

/* Maps a CURLcode to a FAN_E* code; `too_large` says our write callback
 * aborted because of the body limit. */
int fan__curl_error(int curl_code, int too_large);

/* Releases every transport's per-thread state (connections, handles). */
void fan__client_shutdown(void);

#endif
