/* Inbound TLS on a connection: the layer between the socket and the
 * HTTP/1.1 parser. OpenSSL runs over two memory BIOs: the ciphertext read is
 * written into one, the plaintext goes to conn.c's fan__conn_input(), and
 * what OpenSSL wants sent is taken out of the other and written to the
 * socket in order with the responses. The app's contexts (certificates,
 * ciphers, SNI, reloads) are tls_context.c's. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define PLAIN_CHUNK 65536
#define RECORD_MAX 16384 /* the plaintext of one TLS record */

struct fan__tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* ciphertext in (from the socket) and out (to it) */
    int done;         /* the handshake completed */
};

/* A write of ciphertext to the socket; `user` is the caller's write whose
 * callback runs once it completed (NULL for OpenSSL's own records). */
typedef struct tls_write {
    uv_write_t w;
    fan__conn *c;
    uv_write_t *user;
    uv_write_cb cb;
    char data[];
} tls_write;

static _Thread_local char plain_buf[PLAIN_CHUNK];

int fan__tls_conn_start(fan__conn *c)
{
    struct fan__tls *tls = calloc(1, sizeof *tls);
    if (!tls)
        return FAN_ENOMEM;
    tls->ssl = fan__tls_ssl_new(c->app);
    tls->rbio = BIO_new(BIO_s_mem());
    tls->wbio = BIO_new(BIO_s_mem());
    if (!tls->ssl || !tls->rbio || !tls->wbio) {
        SSL_free(tls->ssl);
        BIO_free(tls->rbio);
        BIO_free(tls->wbio);
        free(tls);
        ERR_clear_error();
        return FAN_ENOMEM;
    }
    /* A read of an empty input BIO asks for more, not end of file. */
    BIO_set_mem_eof_return(tls->rbio, -1);
    SSL_set_bio(tls->ssl, tls->rbio, tls->wbio); /* the SSL owns them now */
    SSL_set_accept_state(tls->ssl);
    c->tls = tls;
    return 0;
}

void fan__tls_conn_free(fan__conn *c)
{
    if (!c->tls)
        return;
    SSL_free(c->tls->ssl);
    free(c->tls);
    c->tls = NULL;
}

static void tls_written(uv_write_t *w, int status)
{
    tls_write *tw = w->data;
    tw->c->writes--;
    if (tw->cb)
        tw->cb(tw->user, status);
    else if (status < 0 && !tw->c->closing)
        fan__conn_close(tw->c);
    free(tw);
}

/* Sends what OpenSSL has for the socket. When nothing is queued before it,
 * the socket is offered it at once (a uv_write costs an epoll_ctl more);
 * what it does not take is queued. Returns 1 when all of it went at once and
 * `at_once` allows that (`cb` is then not called), 0 when queued (`cb` runs
 * on `user`, which may be NULL, once written), or a FAN_E* code. */
static int flush(fan__conn *c, uv_write_t *user, uv_write_cb cb, int at_once)
{
    char *out;
    long n = BIO_get_mem_data(c->tls->wbio, &out);
    size_t done = 0;
    if (n > 0 && c->writes == 0 && (at_once || !user)) {
        uv_buf_t buf = uv_buf_init(out, (unsigned)n);
        int k = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
        if (k < 0 && k != UV_EAGAIN)
            return FAN_EIO;
        done = k > 0 ? (size_t)k : 0;
    }
    size_t rest = n > 0 ? (size_t)n - done : 0;
    if (!rest && (at_once || !user)) {
        (void)BIO_reset(c->tls->wbio);
        return at_once && user ? 1 : 0;
    }
    tls_write *tw = malloc(sizeof *tw + rest + 1);
    if (!tw)
        return FAN_ENOMEM;
    memcpy(tw->data, out + done, rest);
    (void)BIO_reset(c->tls->wbio);
    tw->c = c;
    tw->user = user;
    tw->cb = cb;
    tw->w.data = tw;
    uv_buf_t buf = uv_buf_init(tw->data, (unsigned)rest);
    if (uv_write(&tw->w, (uv_stream_t *)&c->tcp, &buf, 1, tls_written) < 0) {
        free(tw);
        return FAN_EIO;
    }
    c->writes++;
    return 0;
}

int fan__tls_write(fan__conn *c, uv_write_t *w, const uv_buf_t *bufs, unsigned nbufs,
                   uv_write_cb cb, int at_once)
{
    if (c->closing)
        return FAN_ECANCELED;
    ERR_clear_error();
    /* A head and a small body go as one record: one seal, and one record's
     * overhead on the wire, instead of two. */
    static _Thread_local char joined[RECORD_MAX];
    size_t total = 0;
    for (unsigned i = 0; i < nbufs; i++)
        total += bufs[i].len;
    uv_buf_t one = uv_buf_init(joined, (unsigned)total);
    if (nbufs > 1 && total <= sizeof joined) {
        for (unsigned i = 0, at = 0; i < nbufs; at += bufs[i].len, i++)
            memcpy(joined + at, bufs[i].base, bufs[i].len);
        bufs = &one;
        nbufs = 1;
    }
    for (unsigned i = 0; i < nbufs; i++) {
        size_t done;
        if (bufs[i].len && SSL_write_ex(c->tls->ssl, bufs[i].base, bufs[i].len, &done) != 1) {
            char why[256];
            fan_log(FAN_LOG_DEBUG, "TLS write failed: %s", fan__tls_reason(why, sizeof why));
            return FAN_EIO;
        }
    }
    return flush(c, w, cb, at_once);
}

int fan__tls_put(fan__conn *c, const char *data, size_t len)
{
    size_t done;
    ERR_clear_error();
    if (len && SSL_write_ex(c->tls->ssl, data, len, &done) != 1) {
        char why[256];
        fan_log(FAN_LOG_DEBUG, "TLS write failed: %s", fan__tls_reason(why, sizeof why));
        return FAN_EIO;
    }
    return 0;
}

int fan__tls_h2(fan__conn *c)
{
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(c->tls->ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

/* What a plain-text client on the TLS port is told, in plain text. */
#define PLAIN_BODY "{\"error\":\"plain HTTP request sent to the TLS port\",\"status\":400}"
#define PLAIN_BODY_LEN 64
#define STR(x) #x
#define XSTR(x) STR(x)

static void answer_plain_http(fan__conn *c)
{
    static const char reply[] =
        "HTTP/1.1 400 Bad Request\r\nServer: fanout\r\nContent-Type: application/json\r\n"
        "Connection: close\r\nContent-Length: " XSTR(PLAIN_BODY_LEN) "\r\n\r\n" PLAIN_BODY;
    _Static_assert(sizeof PLAIN_BODY - 1 == PLAIN_BODY_LEN, "PLAIN_BODY_LEN");
    uv_buf_t buf = uv_buf_init((char *)reply, sizeof reply - 1);
    uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
}

static void log_failure(fan__conn *c, int plain_http)
{
    char why[256], addr[64];
    fan__tls_reason(why, sizeof why);
    fan__conn_peer_name(c, addr, sizeof addr);
    if (plain_http)
        fan_log(FAN_LOG_INFO, "TLS: plain HTTP request from %s on the TLS port (400); closing "
                "the connection", addr);
    else
        fan_log(FAN_LOG_INFO, "TLS %s from %s failed: %s; closing the connection",
                c->tls->done ? "connection" : "handshake", addr, why);
}

/* Tells the connection once the handshake completed, before the first
 * plaintext reaches it (its request timer then replaces the handshake's). */
static void handshake_check(fan__conn *c)
{
    if (!c->tls->done && SSL_is_init_finished(c->tls->ssl)) {
        c->tls->done = 1;
        fan__conn_handshake_done(c);
    }
}

/* Writes what OpenSSL has for the socket if the socket takes it at once:
 * for an alert or a close_notify, right before the connection closes. */
static void send_now(fan__conn *c)
{
    char buf[512];
    size_t n = BIO_ctrl_pending(c->tls->wbio);
    if (c->writes) /* behind queued records it would be out of order */
        return;
    if (n && n <= sizeof buf && BIO_read(c->tls->wbio, buf, (int)n) == (int)n) {
        uv_buf_t b = uv_buf_init(buf, (unsigned)n);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
}

void fan__tls_input(fan__conn *c, const char *data, size_t len)
{
    struct fan__tls *tls = c->tls;
    if (BIO_write(tls->rbio, data, (int)len) != (int)len) {
        fan__conn_close(c);
        return;
    }
    ERR_clear_error();
    while (!c->closing && !c->close_after_write) {
        size_t n;
        if (SSL_read_ex(tls->ssl, plain_buf, sizeof plain_buf, &n) == 1) {
            handshake_check(c);
            fan__conn_input(c, plain_buf, n);
            continue;
        }
        int err = SSL_get_error(tls->ssl, 0);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            break;
        if (err == SSL_ERROR_ZERO_RETURN) { /* the client's close_notify */
            c->eof = 1;
        } else {
            unsigned long e = ERR_peek_last_error();
            int plain = ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST;
            log_failure(c, plain);
            if (plain)
                answer_plain_http(c);
            else
                send_now(c); /* OpenSSL's alert, if it made one */
        }
        ERR_clear_error();
        fan__conn_close(c);
        return;
    }
    if (!c->closing && flush(c, NULL, NULL, 0) != 0) {
        fan__conn_close(c);
        return;
    }
    if (!c->closing)
        handshake_check(c);
}

void fan__tls_close(fan__conn *c)
{
    /* A close_notify, written if the socket takes it at once: the
     * connection closes right after, whatever is still queued. */
    if (!c->tls || !c->tls->done || c->reset)
        return;
    ERR_clear_error();
    SSL_shutdown(c->tls->ssl);
    ERR_clear_error();
    send_now(c);
}
