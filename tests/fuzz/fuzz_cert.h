/* The fuzz targets' server certificate (fuzz_tls.c, fuzz_h2.c): made
 * once, at start, with OpenSSL. */
#ifndef FUZZ_CERT_H
#define FUZZ_CERT_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fanout.h"

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

#endif
