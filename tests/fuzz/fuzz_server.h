/* What the TLS fuzz targets (fuzz_tls.c, fuzz_h2.c) share: an app with a
 * certificate made at start with OpenSSL, served on one end of a
 * socketpair handed to fan__conn_accept(), and the loop turned by hand. */
#ifndef FUZZ_SERVER_H
#define FUZZ_SERVER_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fanout.h"
#include "http/http.h"

#define CLOSE_DEADLINE_MS 5000 /* only a server that never closes reaches it */

static fan__listener listener; /* only its app is read */
static uv_loop_t *loop;

/* A self-signed P-256 certificate and its key, written to two temporary
 * files (removed at once: the app has read them). */
static void make_cert(fan_app *app)
{
    char cert[] = "/tmp/fuzz-cert-XXXXXX", key[] = "/tmp/fuzz-key-XXXXXX";
    int cfd = mkstemp(cert), kfd = mkstemp(key);
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (cfd < 0 || kfd < 0 || !pkey || !x)
        abort();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    FILE *cf = fdopen(cfd, "w"), *kf = fdopen(kfd, "w");
    if (!X509_sign(x, pkey, EVP_sha256()) || !cf || !kf || !PEM_write_X509(cf, x) ||
        !PEM_write_PrivateKey(kf, pkey, NULL, NULL, 0, NULL, NULL))
        abort();
    fclose(cf);
    fclose(kf);
    if (fan_app_set_tls(app, cert, key) != 0)
        abort();
    unlink(cert);
    unlink(key);
    X509_free(x);
    EVP_PKEY_free(pkey);
}

/* The app of a target, quiet unless the environment variable `log_env` is
 * set (the log lines are still formatted, then dropped). */
static fan_app *fuzz_app_new(const char *log_env)
{
    signal(SIGPIPE, SIG_IGN); /* as fan_run() does */
    if (!getenv(log_env)) {
        fan_log_set_level(FAN_LOG_DEBUG);
        if (fan_log_open("/dev/null") || fan_access_log_open("/dev/null"))
            abort();
    }
    fan_app *app = fan_app_new();
    if (!app)
        abort();
    return app;
}

/* The app, its routes and limits set, gets its certificate and serves. */
static void fuzz_serve(fan_app *app)
{
    make_cert(app);
    listener.app = app;
    loop = fan__srv()->loop;
}

static uint64_t elapsed_ms(uint64_t start)
{
    return (uv_hrtime() - start) / 1000000;
}

/* One turn of the loop, first waiting up to 5 ms for its timers or
 * sockets or the client's end `fd` when `wait`. */
static void fuzz_turn(int fd, int wait)
{
    int ms = wait ? uv_backend_timeout(loop) : 0;
    if (ms != 0) {
        struct pollfd fds[2] = {{.fd = uv_backend_fd(loop), .events = POLLIN},
                                {.fd = fd, .events = POLLIN}};
        poll(fds, 2, ms < 0 || ms > 5 ? 5 : ms);
    }
    uv_run(loop, UV_RUN_NOWAIT);
}

#endif
