/* Signed values, the format of session cookies:
 *
 *   base64url(payload) "." base64url(expiry) "." base64url(mac)
 *
 * base64url is RFC 4648 section 5 without padding; the expiry is the Unix
 * time in seconds, in decimal ASCII; mac is HMAC-SHA256 keyed with a secret
 * over the first two parts as sent, dot included. Verification tries every
 * secret (for rotation) and compares in constant time; the expiry is read
 * only once the signature matched. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

#define MAC_LEN 32
#define MAX_EXPIRY_DIGITS 18
#define MAX_EXPIRY 999999999999999999LL /* the largest of MAX_EXPIRY_DIGITS digits */

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t fan__b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void fan__b64url_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t i = 0;
    for (; i + 3 <= n; i += 3, p += 3) {
        unsigned v = (unsigned)p[0] << 16 | (unsigned)p[1] << 8 | p[2];
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        *out++ = alphabet[p[0] >> 2];
        *out++ = alphabet[(p[0] & 3) << 4];
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[0] << 8 | p[1];
        *out++ = alphabet[v >> 10];
        *out++ = alphabet[(v >> 4) & 63];
        *out++ = alphabet[(v & 15) << 2];
    }
    *out = '\0';
}

static int sextet(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    return ch == '_' ? 63 : -1;
}

long fan__b64url_decode(const char *in, size_t n, unsigned char *out)
{
    if (n % 4 == 1)
        return -1;
    unsigned acc = 0;
    int bits = 0;
    long len = 0;
    for (size_t i = 0; i < n; i++) {
        int v = sextet(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (unsigned char)(acc >> bits);
        }
    }
    /* The bits left over must be zero, or two texts would decode alike. */
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    return len;
}

static int mac(const char *secret, const char *data, size_t n, unsigned char out[MAC_LEN])
{
    unsigned len = 0;
    return HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)data, n, out,
                &len) && len == MAC_LEN
               ? 0
               : -1;
}

char *fan__signed_encode(const char *payload, size_t len, long long expires, const char *secret)
{
    if (len > SIZE_MAX / 2)
        return NULL; /* its base64url length would wrap */
    if (expires > MAX_EXPIRY)
        expires = MAX_EXPIRY; /* longer would not read back */
    char exp[32];
    int elen = snprintf(exp, sizeof exp, "%lld", expires);
    size_t cap = fan__b64url_len(len) + fan__b64url_len((size_t)elen) +
                 fan__b64url_len(MAC_LEN) + 3;
    char *out = malloc(cap);
    unsigned char sig[MAC_LEN];
    if (!out)
        return NULL;
    fan__b64url_encode(payload, len, out);
    size_t pos = strlen(out);
    out[pos++] = '.';
    fan__b64url_encode(exp, (size_t)elen, out + pos);
    pos += strlen(out + pos);
    if (mac(secret, out, pos, sig) != 0) {
        free(out);
        return NULL;
    }
    out[pos++] = '.';
    fan__b64url_encode(sig, MAC_LEN, out + pos);
    return out;
}

static int verify(const char *value, size_t signed_len, const char *sig_text,
                  const char *const *secrets, size_t nsecrets)
{
    unsigned char sig[MAC_LEN + 3], want[MAC_LEN];
    if (strlen(sig_text) != fan__b64url_len(MAC_LEN) ||
        fan__b64url_decode(sig_text, strlen(sig_text), sig) != MAC_LEN)
        return FAN__SIGNED_MALFORMED;
    for (size_t i = 0; i < nsecrets; i++)
        if (mac(secrets[i], value, signed_len, want) == 0 && CRYPTO_memcmp(sig, want, MAC_LEN) == 0)
            return FAN__SIGNED_OK;
    return FAN__SIGNED_FORGED;
}

/* The expiry part as a number, or -1 if it is not 1 to 18 decimal digits. */
static long long read_expiry(const char *text, size_t n)
{
    unsigned char digits[32];
    if (n > fan__b64url_len(MAX_EXPIRY_DIGITS))
        return -1;
    long len = fan__b64url_decode(text, n, digits);
    if (len < 1 || len > MAX_EXPIRY_DIGITS)
        return -1;
    long long v = 0;
    for (long i = 0; i < len; i++) {
        if (digits[i] < '0' || digits[i] > '9')
            return -1;
        v = v * 10 + (digits[i] - '0');
    }
    return v;
}

int fan__signed_decode(const char *value, const char *const *secrets, size_t nsecrets,
                       long long now, char **payload, size_t *len)
{
    const char *dot1 = strchr(value, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2 || strchr(dot2 + 1, '.'))
        return FAN__SIGNED_MALFORMED;
    int rc = verify(value, (size_t)(dot2 - value), dot2 + 1, secrets, nsecrets);
    if (rc != FAN__SIGNED_OK)
        return rc;
    long long expires = read_expiry(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (expires < 0)
        return FAN__SIGNED_MALFORMED;
    if (expires <= now)
        return FAN__SIGNED_EXPIRED;
    size_t n = (size_t)(dot1 - value);
    unsigned char *out = malloc(n / 4 * 3 + 3); /* n * 3 could wrap */
    long plen = out ? fan__b64url_decode(value, n, out) : -1;
    if (plen < 0) {
        free(out);
        return FAN__SIGNED_MALFORMED;
    }
    out[plen] = '\0';
    *payload = (char *)out;
    *len = (size_t)plen;
    return FAN__SIGNED_OK;
}

const char *fan__signed_strerror(int rc)
{
    switch (rc) {
    case FAN__SIGNED_OK: return "valid";
    case FAN__SIGNED_MALFORMED: return "malformed";
    case FAN__SIGNED_FORGED:
        return "bad signature (tampered with, or signed with an unknown secret)";
    case FAN__SIGNED_EXPIRED: return "expired";
    default: return "unknown error";
    }
}
