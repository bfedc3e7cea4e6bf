/* HTTP/2 frames (src/http/h2.c) on arbitrary bytes, through the real
 * server: an app with a certificate made here, one end of a socketpair
 * handed to fan__conn_accept(), and an OpenSSL client on the other end that
 * completes a handshake choosing "h2" by ALPN, sends the connection preface
 * and an empty SETTINGS, then the input as the frames that follow, and
 * reads whatever comes back. The loop runs until the server has closed the
 * connection (its protocol error, a GOAWAY, or the 2 ms timeouts for a
 * client that goes silent) and freed every stream and request (the leak
 * check runs on every input). The seeds are real requests: GETs, a POST
 * with a body, a RST_STREAM, CONTINUATIONs, a PING, a WINDOW_UPDATE. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include "fuzz_server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void h_root(fan_req *rq)
{
    fan_reply(rq, 200, "text/plain", "hello\n", 6);
}

/* A streamed reply, so that DATA frames wait for the client's window. */
static void h_stream(fan_req *rq)
{
    if (fan_resp_start(rq, 200, "text/plain") != 0)
        return;
    static char piece[40000];
    for (int i = 0; i < 3 && fan_resp_write(rq, piece, sizeof piece) == 0; i++)
        ;
    fan_resp_end(rq);
}

static void h_echo(fan_req *rq)
{
    size_t len;
    const char *body = fan_req_body(rq, &len);
    fan_reply(rq, 200, "application/octet-stream", body, len);
}

static SSL_CTX *client_ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fan_app *app = fuzz_app_new("FUZZ_H2_LOG");
    fan_app_route(app, "GET", "/", h_root);
    fan_app_route(app, "GET", "/stream", h_stream);
    fan_app_route(app, "*", "/echo", h_echo);
    fan_limits *lim = fan_app_limits(app);
    lim->tls_handshake_timeout_ms = 1000;
    lim->idle_timeout_ms = lim->header_timeout_ms = lim->body_timeout_ms = 2;
    lim->write_timeout_ms = 2;
    lim->max_header_bytes = 2048;
    lim->max_body_bytes = 4096;
    lim->h2_max_streams = 8;
    lim->h2_max_resets = 8;
    fuzz_serve(app);
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!client_ctx || SSL_CTX_set_alpn_protos(client_ctx, (const unsigned char *)"\x02h2", 3))
        abort();
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    return 0;
}

/* One turn of the loop, and what the server sent read and dropped.
 * Returns 1 once the server's end is closed. */
static int turn(SSL *ssl, int fd, int wait)
{
    fuzz_turn(fd, wait);
    static char buf[65536];
    for (;;) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0)
            continue;
        int err = SSL_get_error(ssl, n);
        ERR_clear_error();
        return !(err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE);
    }
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    uint64_t start = uv_hrtime();
    uv_update_time(loop); /* the clock has not moved since the last input */
    fan__conn_accept(&listener, sv[0]); /* takes sv[0], even on failure */
    SSL *ssl = SSL_new(client_ctx);
    if (!ssl || !SSL_set_fd(ssl, sv[1]))
        abort();
    SSL_set_connect_state(ssl);
    int closed = 0, rc;
    while ((rc = SSL_do_handshake(ssl)) != 1) {
        int err = SSL_get_error(ssl, rc);
        ERR_clear_error();
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            closed = 1; /* the server gave up (its handshake timeout, on a loaded machine) */
            break;
        }
        fuzz_turn(sv[1], 1);
        if (elapsed_ms(start) > CLOSE_DEADLINE_MS)
            abort();
    }
    /* The preface, then the input, in records of up to 1 KiB. */
    if (!closed && SSL_write(ssl, preface, sizeof preface - 1) <= 0)
        abort();
    for (size_t off = 0; off < size && !closed;) {
        size_t len = size - off < 1024 ? size - off : 1024;
        int n = SSL_write(ssl, data + off, (int)len);
        if (n > 0) {
            off += (size_t)n;
        } else {
            int err = SSL_get_error(ssl, n);
            ERR_clear_error();
            if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ)
                break; /* the server closed */
        }
        closed = turn(ssl, sv[1], n <= 0);
        if (elapsed_ms(start) > CLOSE_DEADLINE_MS)
            abort();
    }
    /* Then silent: the server's timeouts (2 ms) or its GOAWAY end it. */
    while (!closed || !fan__http_idle() || uv_loop_alive(loop)) {
        closed = turn(ssl, sv[1], 1) || closed;
        if (elapsed_ms(start) > CLOSE_DEADLINE_MS) {
            fprintf(stderr, "fuzz_h2: the connection is not closed after %d ms\n",
                    CLOSE_DEADLINE_MS);
            abort();
        }
    }
    SSL_free(ssl);
    close(sv[1]);
    return 0;
}
