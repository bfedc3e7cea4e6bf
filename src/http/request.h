/* A request as the inbound server sees it: the runtime's part first, then
 * the HTTP message and its response. What the app layer builds on. */
#ifndef FAN_HTTP_REQUEST_H
#define FAN_HTTP_REQUEST_H

#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/header.h"
#include "http/router.h"
#include "http/site.h"
#include "runtime/runtime.h"

typedef struct fan__conn fan__conn;

/* A connection's peer address: IPv4 or IPv6, 28 bytes where a
 * sockaddr_storage takes 128 in every connection and every request. Any
 * other family (a Unix socket handed to the server) is an unknown peer. */
typedef union fan__peer_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} fan__peer_addr;

/* Who the client of a request is (client_addr.c): the connection's peer, or
 * the address a trusted proxy forwarded, worked out on first use. */
typedef struct fan__client {
    fan__peer_addr peer;          /* sa.sa_family AF_UNSPEC when unknown */
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
    fan__conn *conn;        /* NULL once the connection (or its HTTP/2 stream) is gone */
    struct h2_stream *h2;   /* its HTTP/2 stream (h2.c), NULL on HTTP/1.x */
    fan_handler handler;

    /* request */
    char *method, *path, *query, *raw_path; /* path is decoded, raw_path not */
    fan__header *headers;
    unsigned nheaders, headers_cap;
    fan__buf body;
    fan__route_match match;
    int http_minor;
    bool keep_alive : 1;
    bool head : 1;          /* a HEAD request: no body in the reply */
    bool replied : 1;
    bool finishing : 1;     /* error handler and after-request hooks run (response.c) */
    bool sent : 1;          /* the response (or a stream's head) was written (or dropped) */
    bool observed : 1;      /* counted in flight by fan__req_observe_start() */
    fan__client client;     /* fan_req_client_addr() */

    /* response */
    fan__header *out_headers;
    unsigned nout, out_cap;
    int status;
    /* the recorded reply, written once the hooks ran (response.c) */
    const char *content_type;
    char *out_body;
    size_t out_len;
    struct fan__stream *stream; /* a streamed response (stream.c), NULL for a reply */

    /* the app layer's state (src/app): its context and the store */
    struct fan__reqctx *ctx;
    struct fan__stored *store;

    /* for the access log, written when the request is freed */
    double started;         /* fan_now() when its first byte was parsed */
    size_t out_bytes;       /* response bytes handed to the socket */
};

/* Requests (request.c): made by a connection, routed, run by the runtime,
 * released once the runtime says every task and op ended. */
fan_req *fan__req_new(fan__conn *conn);
void fan__req_start(fan_req *rq);            /* routes and runs the handler */
void fan__req_conn_gone(fan_req *rq);        /* the connection closed */

/* Sets method-independent target fields (raw path, decoded path, query)
 * from a request target (conn.c). Returns 0 or -1 for one we cannot
 * serve. */
int fan__req_set_target(fan_req *rq, const char *t, size_t len);

/* The transport seam: a request on an HTTP/2 stream (rq->h2) is answered
 * through these (h2.c) instead of the connection's HTTP/1.1 writes. */
int fan__h2_send_reply(fan_req *rq);                 /* HEADERS + DATA */
int fan__h2_stream_start(fan_req *rq);               /* HEADERS, DATA deferred */
int fan__h2_stream_write(fan_req *rq, const void *data, size_t len);
int fan__h2_stream_end(fan_req *rq, int abort);      /* END_STREAM, or RST_STREAM */
void fan__h2_reset(fan_req *rq);                     /* fan_reply_drop(): RST_STREAM */
void fan__h2_request_done(fan_req *rq);              /* the request ended */

/* Observation (request_observe.c): fan__req_observe_start() takes up the
 * request's trace context and counts it in flight once its head is parsed;
 * fan__req_observe_end() counts it in the server histogram and records it
 * for the waterfall when it ends. */
void fan__req_observe_start(fan_req *rq);
void fan__req_observe_end(fan_req *rq);

/* The trace id of the request in hex (33 bytes), or "" without one. */
void fan__req_trace_id(const fan_req *rq, char out[33]);

/* The Server-Timing value of the request's response so far, in the arena,
 * with its length in *len, or NULL when out of memory (server_timing.c). */
const char *fan__server_timing(fan_req *rq, size_t *len);

/* The reason phrase of a status code (response.c). */
const char *fan__status_text(int status);

/* The head of the recorded response, formatted into the request's arena
 * (response.c): the status line, Date, Server, Content-Type, the framing
 * (Content-Length, or Transfer-Encoding: chunked when `chunked`; neither for
 * a close-delimited stream), Connection, the headers set, and for a
 * `stream` X-Accel-Buffering: no unless they hold one. NULL when out of
 * memory. */
char *fan__format_head(fan_req *rq, int stream, int chunked, size_t *len);

/* Sends the recorded reply (response.c). Returns 0 or a FAN_E* code (the
 * connection is then closed). */
int fan__send_reply(fan_req *rq);

/* A header value: no CR, LF or other control character but tab. */
int fan__valid_header_value(const char *s);

/* Streams (stream.c). The handler returned with its stream still open: it
 * is ended, or aborted when the request was cancelled. */
void fan__stream_handler_returned(fan_req *rq);

/* `n` queued bytes of the stream went out in DATA frames (h2.c). */
void fan__stream_taken(fan_req *rq, size_t n);

/* A reply made once the stream's head was sent: the stream is aborted. */
void fan__stream_reply_refused(fan_req *rq);

#endif
