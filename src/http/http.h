/* The inbound server: listeners, connections and the per-thread server
 * state. What it keeps of an app is in http/site.h, its requests in
 * http/request.h. Built on the request runtime (runtime/runtime.h); the
 * upstream client is beside it and neither uses the other. Internal to
 * libfanout; the public contract is include/fanout.h. */
#ifndef FAN_HTTP_H
#define FAN_HTTP_H

#include <stdbool.h>

#include <llhttp.h>
#include <uv.h>

#include "core/h1_check.h"
#include "core/span.h"
#include "http/request.h"
#include "http/site.h"

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

/* A client connection. Owned by the loop; freed after its handle closed and
 * its current request has ended. */
struct fan__conn {
    uv_tcp_t tcp;
    fan_app *app;
    llhttp_t parser;
    fan__buf in;              /* bytes read and not parsed yet */
    fan_req *rq;              /* the request being parsed or served */
    fan__span field, value;   /* the target or header being read */
    struct fan__tls *tls;     /* the TLS layer (tls.c), NULL on a plain listener */
    struct fan__h2 *h2;       /* HTTP/2 (h2.c) when ALPN chose "h2", else NULL */
    fan__h1_check h1;         /* obs-fold and chunk CRLF, which llhttp does not check */
    fan__peer_addr peer;          /* read once accepted; AF_UNSPEC if unknown */
    size_t head_bytes;
    fan__timeout timeout;     /* header, body, idle, write and handshake (runtime/timeouts.h) */
    fan__list link;           /* in the loop's list of connections */
    int timer_kind;           /* which of them `timeout` is */
    int error_status;         /* a status our callbacks failed with: 400, 413, 431 */
    int processing;           /* process_buffered() or read_cb() is on the stack */
    int writes;               /* writes in flight */
    int handles;              /* open uv handles (tcp, HTTP/2's kick) */
    bool reading : 1;
    bool closing : 1;
    bool serving : 1;         /* a complete request was handed over and not ended */
    bool close_after_write : 1;
    bool reset : 1;           /* close with a TCP reset (fan_reply_drop()) */
    bool eof : 1;
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

/* Connection side (conn.c). fan__conn_accept() takes the connection libuv
 * accepted on `l` (fd < 0), or adopts an fd accepted from its backlog when a
 * graceful stop closes the listener (see fan__http_stop_accepting()). */
void fan__conn_accept(fan__listener *l, int fd);
void fan__conn_request_done(fan__conn *c);     /* the request in it has ended */
void fan__conn_close(fan__conn *c);

/* Plaintext read from the client (conn.c): what the socket gave on a plain
 * connection, what the TLS layer decrypted on a TLS one. */
void fan__conn_input(fan__conn *c, const char *data, size_t len);

/* Writes `bufs` to the client, through the TLS layer if the connection has
 * one. Returns 1 when the socket took them at once (`cb` is not called), 0
 * when queued (`cb` runs once written or failed), or a negative code. */
int fan__conn_write(fan__conn *c, uv_write_t *w, uv_buf_t *bufs, unsigned nbufs, uv_write_cb cb);

/* The TLS handshake completed: the idle timeout replaces the handshake's. */
void fan__conn_handshake_done(fan__conn *c);

/* The reason of the last OpenSSL error in `buf`, for a log line; clears the
 * thread's error queue, which curl shares (tls_context.c). */
const char *fan__tls_reason(char *buf, size_t len);

/* A new OpenSSL connection on the app's default context, which SNI may
 * switch (tls_context.c). NULL when out of memory. */
struct ssl_st *fan__tls_ssl_new(fan_app *app);

/* A connection's TLS layer: made when accepted, freed with it. */
int fan__tls_conn_start(fan__conn *c);
void fan__tls_conn_free(fan__conn *c);

/* Ciphertext read: decrypted and handed to fan__conn_input(), or the
 * connection is closed (a failed handshake, a plain-text client, the
 * client's close_notify) with a log line. */
void fan__tls_input(fan__conn *c, const char *data, size_t len);

/* Encrypts `bufs` and writes the ciphertext. Returns 1 when the socket took
 * it at once and `at_once` allows that (`cb` is not called), 0 when queued
 * (`cb` runs on `w` once written), or a FAN_E* code (`cb` not called). */
int fan__tls_write(fan__conn *c, uv_write_t *w, const uv_buf_t *bufs, unsigned nbufs,
                   uv_write_cb cb, int at_once);

/* Seals `data` into TLS records without writing them: fan__tls_write()
 * with no buffers sends them. Returns 0 or FAN_EIO. */
int fan__tls_put(fan__conn *c, const char *data, size_t len);

/* Whether the client chose "h2" by ALPN. */
int fan__tls_h2(fan__conn *c);

/* HTTP/2 on a connection (h2.c). fan__h2_start() makes its session once
 * the handshake chose "h2"; the plaintext read then goes to
 * fan__h2_input(). fan__h2_stop() sends a graceful stop's GOAWAY (open
 * streams finish, then the connection closes). fan__h2_conn_closed()
 * detaches every stream (their requests are cancelled), fan__h2_free()
 * frees the session with the connection. */
int fan__h2_start(fan__conn *c);
void fan__h2_input(fan__conn *c, const char *data, size_t len);
void fan__h2_stop(fan__conn *c);
void fan__h2_conn_closed(fan__conn *c);
void fan__h2_free(fan__conn *c);

/* A close callback for a handle of the connection's (whose data is the
 * connection): it is freed once its last handle closed (conn.c). */
void fan__conn_handle_closed(uv_handle_t *h);

/* The timer of an HTTP/2 connection (conn.c): the write timeout while
 * output is `pending` (restarted by `progress`), else the body timeout while
 * a stream's request is being received (restarted by a read: `input`), the
 * idle timeout while no stream is open, none while every open stream's
 * request runs. */
void fan__conn_h2_timer(fan__conn *c, unsigned open_streams, unsigned receiving, int pending,
                        int input, int progress);

/* "Date: ...\r\n", formatted at most once a second (response.c). */
const char *fan__date_header(void);

/* Sends a close_notify if the socket takes it at once (before a close). */
void fan__tls_close(fan__conn *c);

/* A response write was queued (the socket did not take it at once): the
 * connection is closed unless fan__conn_write_done() follows within the
 * write timeout. Only while no head, body or idle timeout runs: while a
 * request is served, or for an error reply after which it closes. */
void fan__conn_write_queued(fan__conn *c);
void fan__conn_write_done(fan__conn *c);

/* During a graceful stop: closes the connection if it is idle, i.e. it served
 * a request, has none in progress and nothing buffered or unread. */
void fan__conn_close_if_idle(fan__conn *c);

/* Reads the connection's peer address into c->peer (client_addr.c). */
void fan__conn_read_peer(fan__conn *c);

/* The peer's address as text, for a log line: "?" when it is unknown.
 * Returns buf. */
const char *fan__conn_peer_name(const fan__conn *c, char *buf, size_t size);

/* A reply written by the connection itself, before or without a request
 * (response.c). */
int fan__reply_raw(fan__conn *c, int status, const char *extra_headers, const char *body,
                   int close);

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
