/* An app's inbound TLS settings and the OpenSSL server contexts made of
 * them: one per certificate (the first is the default, the others are chosen
 * by SNI), made when the settings are set (before the master forks, so
 * every worker has the same session ticket keys) and made again on SIGHUP,
 * all or none, so that broken files keep the contexts loaded before. The
 * layer each connection runs is tls.c's. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define MAX_CERTS 16
#define TICKET_KEYS 80 /* OpenSSL's name, HMAC and AES keys for tickets */

/* Mozilla's "intermediate" list for TLS 1.2: forward secrecy and AEAD only.
 * TLS 1.3's suites are OpenSSL's defaults, all of them AEAD. */
static const char default_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

typedef struct tls_cert {
    char *cert, *key;
    SSL_CTX *ctx;
} tls_cert;

struct fan__tls_site {
    tls_cert certs[MAX_CERTS]; /* certs[0] is the default */
    unsigned ncerts;
    char *cert_opt, *key_opt; /* --tls-cert and --tls-key until both are given */
    char *ciphers, *suites;   /* NULL: the defaults */
    unsigned char keys[TICKET_KEYS]; /* the ticket keys every context gets */
    int have_keys;
};

const char *fan__tls_reason(char *buf, size_t len)
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

/* SNI: the first certificate whose names match the host the client asked
 * for (wildcards included), else the default one. */
static int servername(SSL *ssl, int *alert, void *arg)
{
    const struct fan__tls_site *t = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!host || t->ncerts < 2)
        return SSL_TLSEXT_ERR_OK;
    for (unsigned i = 0; i < t->ncerts; i++) {
        X509 *x = SSL_CTX_get0_certificate(t->certs[i].ctx);
        if (x && X509_check_host(x, host, 0, 0, NULL) == 1) {
            if (i > 0)
                SSL_set_SSL_CTX(ssl, t->certs[i].ctx);
            break;
        }
    }
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

/* A server context for `cert` and `key` (NULL for neither: to check the
 * ciphers) with the site's other settings, or NULL with a log line saying
 * why. */
static SSL_CTX *ctx_new(struct fan__tls_site *t, const char *cert, const char *key,
                        const char *ciphers, const char *suites)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        fan_log(FAN_LOG_ERROR, "TLS: %s", fan__tls_reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Renegotiation costs the server a handshake at the client's will. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle connections hold no buffers */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"fanout", 6);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    const char *what = NULL;
    if (SSL_CTX_set_cipher_list(ctx, ciphers ? ciphers : default_ciphers) != 1)
        what = "the cipher list";
    else if (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1)
        what = "the TLS 1.3 cipher suites";
    else if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        what = cert;
    else if (key && SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        what = key;
    else if (cert && key && SSL_CTX_check_private_key(ctx) != 1)
        what = "the key's match with the certificate";
    if (what) {
        fan_log(FAN_LOG_ERROR, "TLS: %s: %s", what, fan__tls_reason(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (cert)
        check_validity(ctx, cert);
    /* One set of ticket keys for every context, every worker and every
     * reload: a ticket resumes wherever the client comes back. */
    if (!t->have_keys)
        t->have_keys = SSL_CTX_get_tlsext_ticket_keys(ctx, t->keys, sizeof t->keys) == 1;
    else
        SSL_CTX_set_tlsext_ticket_keys(ctx, t->keys, sizeof t->keys);
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

/* Makes every certificate's context again, or none: on a failure (logged)
 * the contexts before stay. Returns 0 or FAN_EINVAL. */
static int rebuild(struct fan__tls_site *t)
{
    SSL_CTX *made[MAX_CERTS];
    for (unsigned i = 0; i < t->ncerts; i++) {
        made[i] = ctx_new(t, t->certs[i].cert, t->certs[i].key, t->ciphers, t->suites);
        if (!made[i]) {
            while (i > 0)
                SSL_CTX_free(made[--i]);
            return FAN_EINVAL;
        }
    }
    for (unsigned i = 0; i < t->ncerts; i++) {
        SSL_CTX_free(t->certs[i].ctx);
        t->certs[i].ctx = made[i];
    }
    return 0;
}

static void cert_clear(tls_cert *c)
{
    SSL_CTX_free(c->ctx);
    free(c->cert);
    free(c->key);
    memset(c, 0, sizeof *c);
}

/* Checks the pair, then adds it as certificate number `at` (0 replaces every
 * certificate). */
static int put_cert(fan_app *app, unsigned at, const char *cert_file, const char *key_file)
{
    struct fan__tls_site *t = tls_site(app);
    if (!t)
        return FAN_ENOMEM;
    if (!cert_file || !*cert_file || !key_file || !*key_file)
        return FAN_EINVAL;
    if (at >= MAX_CERTS) {
        fan_log(FAN_LOG_ERROR, "TLS: %s: more than %d certificates", cert_file, MAX_CERTS);
        return FAN_EINVAL;
    }
    SSL_CTX *ctx = ctx_new(t, cert_file, key_file, t->ciphers, t->suites);
    if (!ctx) /* nothing changes */
        return FAN_EINVAL;
    tls_cert c = {strdup(cert_file), strdup(key_file), ctx};
    if (!c.cert || !c.key) {
        cert_clear(&c);
        return FAN_ENOMEM;
    }
    if (at == 0)
        while (t->ncerts > 0)
            cert_clear(&t->certs[--t->ncerts]);
    t->certs[at] = c;
    t->ncerts = at + 1;
    return 0;
}

int fan_app_set_tls(fan_app *app, const char *cert_file, const char *key_file)
{
    return put_cert(app, 0, cert_file, key_file);
}

int fan_app_add_tls_cert(fan_app *app, const char *cert_file, const char *key_file)
{
    const struct fan__tls_site *t = fan__site_of(app)->tls;
    return put_cert(app, t ? t->ncerts : 0, cert_file, key_file);
}

int fan_app_set_tls_ciphers(fan_app *app, const char *ciphers, const char *suites)
{
    struct fan__tls_site *t = tls_site(app);
    if (!t)
        return FAN_ENOMEM;
    SSL_CTX *ctx = ctx_new(t, NULL, NULL, ciphers, suites);
    if (!ctx)
        return FAN_EINVAL;
    SSL_CTX_free(ctx);
    char *old_ciphers = t->ciphers, *old_suites = t->suites;
    t->ciphers = t->suites = NULL;
    int rc = set_str(&t->ciphers, ciphers) || set_str(&t->suites, suites) ? FAN_ENOMEM : 0;
    if (rc == 0)
        rc = rebuild(t); /* the files may have changed since they were checked */
    if (rc != 0) {
        free(t->ciphers);
        free(t->suites);
        t->ciphers = old_ciphers;
        t->suites = old_suites;
        return rc;
    }
    free(old_ciphers);
    free(old_suites);
    return 0;
}

int fan__tls_enabled(const fan_app *app)
{
    const fan__site *s = fan__site_of_const(app);
    return s->tls && s->tls->ncerts > 0;
}

SSL *fan__tls_ssl_new(fan_app *app)
{
    return SSL_new(fan__site_of(app)->tls->certs[0].ctx);
}

int fan__tls_reload(fan_app *app)
{
    struct fan__tls_site *t = fan__site_of(app)->tls;
    if (!t || !t->ncerts)
        return 0;
    if (rebuild(t) != 0) {
        fan_log(FAN_LOG_ERROR, "TLS reload failed: keeping the certificate %s%s loaded before",
                t->certs[0].cert, t->ncerts > 1 ? " and the others" : "");
        return FAN_EINVAL;
    }
    fan_log(FAN_LOG_INFO, "TLS certificate %s%s reloaded", t->certs[0].cert,
            t->ncerts > 1 ? " and the others" : "");
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
    int key = strcmp(flag, "--tls-key") == 0;
    if (key ? t->key_opt : t->cert_opt) {
        fan_log(FAN_LOG_ERROR, "%s given twice before %s", flag, key ? "--tls-cert" : "--tls-key");
        return FAN_EINVAL;
    }
    int rc = set_str(key ? &t->key_opt : &t->cert_opt, value);
    if (rc == 0 && t->cert_opt && t->key_opt) { /* a pair: the next certificate */
        rc = fan_app_add_tls_cert(app, t->cert_opt, t->key_opt);
        set_str(&t->cert_opt, NULL);
        set_str(&t->key_opt, NULL);
    }
    return rc;
}

int fan__tls_check(fan_app *app)
{
    const struct fan__tls_site *t = fan__site_of(app)->tls;
    if (!t || (!t->cert_opt && !t->key_opt))
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
    while (t->ncerts > 0)
        cert_clear(&t->certs[--t->ncerts]);
    free(t->cert_opt);
    free(t->key_opt);
    free(t->ciphers);
    free(t->suites);
    OPENSSL_cleanse(t->keys, sizeof t->keys);
    free(t);
    s->tls = NULL;
}
