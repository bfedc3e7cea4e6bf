/* Inbound TLS: an app's certificate, key and ciphers as one OpenSSL server
 * context (made when they are set, before the master forks, so that every
 * worker shares the session ticket keys; made again on SIGHUP, keeping the
 * old one if the files are broken), and per connection the layer between the
 * socket and the HTTP/1.1 parser: OpenSSL runs over two memory BIOs, the
 * ciphertext read is written into one, the plaintext goes to conn.c's
 * fan__conn_input(), and what OpenSSL wants sent is taken out of the other
 * and written to the socket in order with the responses. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define PLAIN_CHUNK 65536
#define TICKET_KEYS 80 /* OpenSSL's name, HMAC and AES keys for tickets */

/* Mozilla's "intermediate" list for TLS 1.2: forward secrecy and AEAD only.
 * TLS 1.3's suites are OpenSSL's defaults, all of them AEAD. */
static const char default_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct fan__tls_site {
    char *cert, *key;
    char *cert_opt, *key_opt; /* --tls-cert and --tls-key until both are given */
    char *ciphers, *suites; /* NULL: the defaults */
    SSL_CTX *ctx;           /* NULL until both files are set */
};

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

/* The reason of the last OpenSSL error, for a log line; clears the queue,
 * which is the thread's and shared with curl. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        snprintf(buf, len, "no reason given");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* Takes "http/1.1" from the client's ALPN list. A client that offers only
 * protocols we do not speak gets no ALPN answer, and HTTP/1.1. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Warns when the certificate is out of its validity period: clients that
 * verify it will refuse every handshake. */
static void check_validity(SSL_CTX *ctx, const char *file)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!x)
        return;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        fan_log(FAN_LOG_WARN, "TLS certificate %s has expired: clients that verify it will "
                "close the connection", file);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        fan_log(FAN_LOG_WARN, "TLS certificate %s is not valid yet", file);
}

/* A server context from the settings, or NULL with a log line saying why. */
static SSL_CTX *ctx_new(const struct fan__tls_site *t)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        fan_log(FAN_LOG_ERROR, "TLS: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Renegotiation costs the server a handshake at the client's will. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle connections hold no buffers */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"fanout", 6);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    const char *what = NULL;
    if (SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : default_ciphers) != 1)
        what = "the cipher list";
    else if (t->suites && SSL_CTX_set_ciphersuites(ctx, t->suites) != 1)
        what = "the TLS 1.3 cipher suites";
    else if (t->cert && SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1)
        what = t->cert;
    else if (t->key && SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1)
        what = t->key;
    else if (t->cert && t->key && SSL_CTX_check_private_key(ctx) != 1)
        what = "the key's match with the certificate";
    if (what) {
        fan_log(FAN_LOG_ERROR, "TLS: %s: %s", what, ssl_reason(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (t->cert)
        check_validity(ctx, t->cert);
    return ctx;
}

static struct fan__tls_site *tls_site(fan_app *app)
{
    fan__site *s = fan__site_of(app);
    if (!s->tls)
        s->tls = calloc(1, sizeof *s->tls);
    return s->tls;
}

/* Replaces *slot with a copy of `value` (NULL clears it). */
static int set_str(char **slot, const char *value)
{
    char *copy = value ? strdup(value) : NULL;
    if (value && !copy)
        return FAN_ENOMEM;
    free(*slot);
    *slot = copy;
    return 0;
}

/* Makes the context again from the settings. The session ticket keys move
 * to the new one, so that tickets issued before a reload still resume. */
static int rebuild(struct fan__tls_site *t)
{
    SSL_CTX *ctx = ctx_new(t);
    if (!ctx)
        return FAN_EINVAL;
    if (t->ctx) {
        unsigned char keys[TICKET_KEYS];
        if (SSL_CTX_get_tlsext_ticket_keys(t->ctx, keys, sizeof keys) == 1)
            SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof keys);
        OPENSSL_cleanse(keys, sizeof keys);
        SSL_CTX_free(t->ctx);
    }
    t->ctx = ctx;
    return 0;
}

int fan_app_set_tls(fan_app *app, const char *cert_file, const char *key_file)
{
    struct fan__tls_site *t = tls_site(app);
    if (!t)
        return FAN_ENOMEM;
    if (!cert_file || !*cert_file || !key_file || !*key_file)
        return FAN_EINVAL;
    struct fan__tls_site probe = {.cert = (char *)cert_file, .key = (char *)key_file,
                                  .ciphers = t->ciphers, .suites = t->suites};
    SSL_CTX *ctx = ctx_new(&probe); /* the files are checked before anything changes */
    if (!ctx)
        return FAN_EINVAL;
    SSL_CTX_free(ctx);
    if (set_str(&t->cert, cert_file) || set_str(&t->key, key_file))
        return FAN_ENOMEM;
    return rebuild(t);
}

int fan_app_set_tls_ciphers(fan_app *app, const char *ciphers, const char *suites)
{
    struct fan__tls_site *t = tls_site(app);
    if (!t)
        return FAN_ENOMEM;
    struct fan__tls_site probe = {.ciphers = (char *)ciphers, .suites = (char *)suites};
    SSL_CTX *ctx = ctx_new(&probe);
    if (!ctx)
        return FAN_EINVAL;
    SSL_CTX_free(ctx);
    if (set_str(&t->ciphers, ciphers) || set_str(&t->suites, suites))
        return FAN_ENOMEM;
    return t->cert ? rebuild(t) : 0;
}

int fan__tls_enabled(const fan_app *app)
{
    const fan__site *s = fan__site_of_const(app);
    return s->tls && s->tls->ctx;
}

int fan__tls_reload(fan_app *app)
{
    struct fan__tls_site *t = fan__site_of(app)->tls;
    if (!t || !t->ctx)
        return 0;
    if (rebuild(t) != 0) {
        fan_log(FAN_LOG_ERROR, "TLS reload failed: keeping the certificate %s loaded before",
                t->cert);
        return FAN_EINVAL;
    }
    fan_log(FAN_LOG_INFO, "TLS certificate %s reloaded", t->cert);
    return 0;
}

int fan__tls_option(fan_app *app, const char *flag, const char *value)
{
    struct fan__tls_site *t = tls_site(app);
    if (!t)
        return FAN_ENOMEM;
    if (!value || !*value) {
        fan_log(FAN_LOG_ERROR, "%s: expected a value", flag);
        return FAN_EINVAL;
    }
    if (strcmp(flag, "--tls-ciphers") == 0)
        return fan_app_set_tls_ciphers(app, value, t->suites);
    if (strcmp(flag, "--tls-ciphersuites") == 0)
        return fan_app_set_tls_ciphers(app, t->ciphers, value);
    int rc = set_str(strcmp(flag, "--tls-key") == 0 ? &t->key_opt : &t->cert_opt, value);
    if (rc == 0 && t->cert_opt && t->key_opt)
        rc = fan_app_set_tls(app, t->cert_opt, t->key_opt);
    return rc;
}

int fan__tls_check(fan_app *app)
{
    const struct fan__tls_site *t = fan__site_of(app)->tls;
    if (!t || (!t->cert_opt && !t->key_opt) || (t->cert_opt && t->key_opt))
        return 0;
    fan_log(FAN_LOG_ERROR, "%s given without %s", t->cert_opt ? "--tls-cert" : "--tls-key",
            t->cert_opt ? "--tls-key FILE" : "--tls-cert FILE");
    return FAN_EINVAL;
}

void fan__tls_site_free(fan__site *s)
{
    struct fan__tls_site *t = s->tls;
    if (!t)
        return;
    free(t->cert_opt);
    free(t->key_opt);
    SSL_CTX_free(t->ctx);
    free(t->cert);
    free(t->key);
    free(t->ciphers);
    free(t->suites);
    free(t);
    s->tls = NULL;
}

int fan__tls_conn_start(fan__conn *c)
{
    struct fan__tls *tls = calloc(1, sizeof *tls);
    if (!tls)
        return FAN_ENOMEM;
    tls->ssl = SSL_new(fan__site_of(c->app)->tls->ctx);
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

int fan__tls_handshaking(const fan__conn *c)
{
    return c->tls && !c->tls->done;
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
    for (unsigned i = 0; i < nbufs; i++) {
        size_t done;
        if (bufs[i].len && SSL_write_ex(c->tls->ssl, bufs[i].base, bufs[i].len, &done) != 1) {
            char why[256];
            fan_log(FAN_LOG_DEBUG, "TLS write failed: %s", ssl_reason(why, sizeof why));
            return FAN_EIO;
        }
    }
    return flush(c, w, cb, at_once);
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
    char why[256], addr[64] = "?";
    ssl_reason(why, sizeof why);
    if (c->peer.ss_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)&c->peer, addr, sizeof addr);
    else if (c->peer.ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)&c->peer, addr, sizeof addr);
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
