/* An app's upstream settings: the CA file, the client certificate and the
 * per-origin options, checked here when they are set (the files are read
 * with OpenSSL, so that a bad one stops the program at start rather than
 * failing every call), kept in the client layer's fan__upstreams. */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/app.h"
#include "client/client.h"
#include "core/log.h"

/* Why the last OpenSSL call failed, for a log line. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "no PEM data";
}

static FILE *open_pem(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fan_log(FAN_LOG_ERROR, "%s %s: cannot be read", what, path);
    return f;
}

/* The certificates of a PEM file: 0 when it holds at least one. */
static int check_certs(const char *what, const char *path, X509 **first)
{
    FILE *f = open_pem(what, path);
    if (!f)
        return FAN_EINVAL;
    ERR_clear_error();
    int n = 0;
    for (X509 *x; (x = PEM_read_X509(f, NULL, NULL, NULL)); n++) {
        if (first && !*first)
            *first = x;
        else
            X509_free(x);
    }
    fclose(f);
    if (n == 0) {
        fan_log(FAN_LOG_ERROR, "%s %s: no PEM certificate in it (%s)", what, path, ssl_reason());
        return FAN_EINVAL;
    }
    ERR_clear_error();
    return 0;
}

static int replace(char **field, const char *value)
{
    char *copy = value ? strdup(value) : NULL;
    if (value && !copy)
        return FAN_ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

int fan_app_set_ca_file(fan_app *app, const char *path)
{
    if (path && check_certs("CA file", path, NULL) != 0)
        return FAN_EINVAL;
    return replace(&app->upstreams->ca_file, path);
}

/* The key of `path` must be readable, unencrypted, and belong to `cert`. */
static int check_key(const char *path, X509 *cert)
{
    FILE *f = open_pem("client key", path);
    if (!f)
        return FAN_EINVAL;
    ERR_clear_error();
    char empty[] = "";
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, empty); /* no passphrase prompt */
    fclose(f);
    if (!k) {
        fan_log(FAN_LOG_ERROR, "client key %s: no unencrypted PEM private key in it (%s)", path,
                ssl_reason());
        return FAN_EINVAL;
    }
    int ok = X509_check_private_key(cert, k);
    EVP_PKEY_free(k);
    ERR_clear_error();
    if (!ok) {
        fan_log(FAN_LOG_ERROR, "client key %s: does not belong to the client certificate", path);
        return FAN_EINVAL;
    }
    return 0;
}

int fan_app_set_client_cert(fan_app *app, const char *cert, const char *key)
{
    fan__upstreams *u = app->upstreams;
    if (cert) {
        X509 *x = NULL;
        int rc = check_certs("client certificate", cert, &x);
        if (rc == 0)
            rc = check_key(key ? key : cert, x);
        X509_free(x);
        if (rc != 0)
            return rc;
    }
    char *c = cert ? strdup(cert) : NULL, *k = cert && key ? strdup(key) : NULL;
    if ((cert && !c) || (cert && key && !k)) {
        free(c);
        free(k);
        return FAN_ENOMEM;
    }
    free(u->client_cert);
    free(u->client_key);
    u->client_cert = c;
    u->client_key = k;
    app->client_cert_unchecked = 0;
    return 0;
}

int fan__client_cert_option(fan_app *app, int is_key, const char *path)
{
    char **field = is_key ? &app->upstreams->client_key : &app->upstreams->client_cert;
    int rc = replace(field, path);
    app->client_cert_unchecked = rc == 0;
    return rc;
}

int fan__app_check_upstreams(fan_app *app)
{
    fan__upstreams *u = app->upstreams;
    if (fan__tls_check(app) != 0) /* the inbound pair, checked here with the outbound one */
        return FAN_EINVAL;
    if (!app->client_cert_unchecked)
        return 0;
    if (!u->client_cert) {
        fan_log(FAN_LOG_ERROR, "--client-key %s: no --client-cert FILE given", u->client_key);
        return FAN_EINVAL;
    }
    return fan_app_set_client_cert(app, u->client_cert, u->client_key);
}

/* "scheme://host[:port]" and nothing more. */
static int check_origin(const char *origin)
{
    size_t skip = strncasecmp(origin, "http://", 7) == 0    ? 7
                  : strncasecmp(origin, "https://", 8) == 0 ? 8
                                                            : 0;
    const char *why = NULL;
    if (!skip)
        why = "not http:// or https://";
    else if (!origin[skip] || origin[skip] == ':' || origin[skip] == '/')
        why = "no host";
    else if (strpbrk(origin + skip, "/?#"))
        why = "an origin has no path, query or fragment (e.g. https://api.example:443)";
    else if (strchr(origin + skip, '@'))
        why = "an origin has no credentials";
    for (const char *p = origin; !why && *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            why = "a space or a control byte";
    if (why)
        fan_log(FAN_LOG_ERROR, "origin '%s': %s", origin, why);
    return why ? FAN_EINVAL : 0;
}

/* The retry, budget and breaker settings: in range, statuses that are. */
static int check_resilience(const char *origin, const fan_origin_opts *o)
{
    const char *why = NULL;
    if (o->retry.max_retries > 10)
        why = "at most 10 retries";
    else if (o->budget_percent > 100)
        why = "budget_percent is at most 100";
    else if (o->breaker_error_percent > 100)
        why = "breaker_error_percent is at most 100";
    for (int i = 0; !why && i < 8 && o->retry.retry_on[i]; i++)
        if ((o->retry.retry_on[i] < 100 || o->retry.retry_on[i] > 599) &&
            !(i == 0 && o->retry.retry_on[0] == -1))
            why = "retry_on holds a status from 100 to 599, or {-1} for none";
    if (why)
        fan_log(FAN_LOG_ERROR, "origin %s: %s", origin, why);
    return why ? FAN_EINVAL : 0;
}

int fan_app_set_origin(fan_app *app, const char *origin, const fan_origin_opts *opts)
{
    static const fan_origin_opts defaults = {0};
    opts = opts ? opts : &defaults;
    if (!origin || check_origin(origin) != 0)
        return FAN_EINVAL;
    if (opts->http_version != FAN_HTTP_AUTO && opts->http_version != FAN_HTTP_1_1 &&
        opts->http_version != FAN_HTTP_2) {
        fan_log(FAN_LOG_ERROR, "origin %s: unknown HTTP version %d", origin, opts->http_version);
        return FAN_EINVAL;
    }
    if (opts->http_version == FAN_HTTP_2 && opts->max_connections) {
        fan_log(FAN_LOG_ERROR,
                "origin %s: HTTP/2 calls share one connection: no "
                "max-connections with http=2",
                origin);
        return FAN_EINVAL;
    }
    if (opts->http_version == FAN_HTTP_2 && strncasecmp(origin, "http:", 5) == 0) {
        /* curl --http2-prior-knowledge fails a second request on the
         * connection too ("Error in the HTTP2 framing layer"). */
        fan_log(FAN_LOG_ERROR,
                "origin %s: http=2 is for https:// origins: HTTP/2 without "
                "TLS (h2c) is not supported",
                origin);
        return FAN_EINVAL;
    }
    if (check_resilience(origin, opts) != 0)
        return FAN_EINVAL;
    char key[512];
    size_t len = fan__origin_key(origin, key, sizeof key);
    if (!len) {
        fan_log(FAN_LOG_ERROR, "origin %s: too long", origin);
        return FAN_EINVAL;
    }
    int rc = fan__upstreams_set_origin(app->upstreams, key, len, opts);
    if (rc == 0 && opts->no_verify)
        fan_log(FAN_LOG_WARN,
                "origin %.*s: TLS verification is off: its certificate and host "
                "name are not checked",
                (int)len, key);
    return rc;
}

int fan_app_get_origin(const fan_app *app, const char *origin, fan_origin_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    if (!origin || check_origin(origin) != 0)
        return FAN_EINVAL;
    const fan__origin_cfg *o = fan__upstreams_origin(app->upstreams, origin);
    if (o)
        *opts = o->opts;
    return o != NULL;
}

/* "retry-on=502:503:504" or "retry-on=none" into o->retry.retry_on. */
static int retry_on_option(const char *origin, const char *v, fan_origin_opts *o)
{
    memset(o->retry.retry_on, 0, sizeof o->retry.retry_on);
    if (strcmp(v, "none") == 0) {
        o->retry.retry_on[0] = -1;
        return 0;
    }
    int n = 0;
    for (const char *p = v; *p; n++) {
        char *end;
        long st = strtol(p, &end, 10);
        if (end == p || st < 100 || st > 599 || (*end && *end != ':') || n == 7) {
            fan_log(FAN_LOG_ERROR, "--origin %s: retry-on=%s: expected up to 7 statuses "
                    "from 100 to 599 separated by ':', or none", origin, v);
            return FAN_EINVAL;
        }
        o->retry.retry_on[n] = (int)st;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* An on|off item of --origin into *out (1 or -1). Returns 0, or -1 for
 * another value. */
static int on_off(const char *v, int *out)
{
    if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
        return -1;
    *out = strcmp(v, "on") == 0 ? 1 : -1;
    return 0;
}

/* The numeric items of --origin: "retries=N" and the like. 1 when `item`
 * is one of them (0 when it is not), or FAN_EINVAL. */
static int number_option(const char *item, const char *v, fan_origin_opts *o)
{
    static const struct {
        const char *name;
        size_t off;
        unsigned long long max;
    } items[] = {
#define ITEM(name, field, max) {name, offsetof(fan_origin_opts, field), max}
        ITEM("retries", retry.max_retries, 10),
        ITEM("retry-base-ms", retry.base_ms, 3600000),
        ITEM("retry-cap-ms", retry.cap_ms, 3600000),
        ITEM("try-timeout-ms", retry.per_try_timeout_ms, 3600000),
        ITEM("hedge-after-ms", retry.hedge_after_ms, 3600000),
        ITEM("budget-percent", budget_percent, 100),
        ITEM("budget-min", budget_min, 1000000),
        ITEM("breaker-failures", breaker_failures, 1000000),
        ITEM("breaker-error-percent", breaker_error_percent, 100),
        ITEM("breaker-window-ms", breaker_window_ms, 3600000),
        ITEM("breaker-min-calls", breaker_min_calls, 1000000),
        ITEM("breaker-cooldown-ms", breaker_cooldown_ms, 3600000),
        ITEM("cache-ttl", cache_ttl_ms, 30 * 86400000ull),
        ITEM("stale-while-revalidate", stale_while_revalidate_ms, 30 * 86400000ull),
        ITEM("stale-if-error", stale_if_error_ms, 30 * 86400000ull),
#undef ITEM
    };
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) {
        if (strcmp(item, items[i].name) != 0)
            continue;
        char flag[64];
        unsigned long long n;
        snprintf(flag, sizeof flag, "--origin %s", item);
        if (fan__parse_number(flag, v, items[i].max, &n) != 0)
            return FAN_EINVAL;
        *(unsigned *)((char *)o + items[i].off) = (unsigned)n;
        return 1;
    }
    return 0;
}

/* The value of "--origin ORIGIN[,http=auto|1.1|2][,max-connections=N][,verify=off]"
 * and the retry, hedge, budget, breaker, single-flight and cache items
 * (fanout.h). */
int fan__origin_option(fan_app *app, const char *value)
{
    static const char usage[] = "expected ORIGIN[,http=auto|1.1|2][,max-connections=N]"
                                "[,verify=off|on] and the retry, hedge, budget, breaker, "
                                "coalesce and cache "
                                "items of fanout --help";
    if (!value || !*value) {
        fan_log(FAN_LOG_ERROR, "--origin: %s", usage);
        return FAN_EINVAL;
    }
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", value) >= (int)sizeof buf) {
        fan_log(FAN_LOG_ERROR, "--origin: too long");
        return FAN_EINVAL;
    }
    fan_origin_opts o = {0};
    char *save = NULL, *origin = strtok_r(buf, ",", &save);
    for (char *item; (item = strtok_r(NULL, ",", &save));) {
        char *eq = strchr(item, '=');
        const char *v = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        unsigned long long n;
        int num = number_option(item, v, &o);
        if (num < 0)
            return FAN_EINVAL;
        if (num)
            continue;
        if (strcmp(item, "retry-on") == 0) {
            if (retry_on_option(origin, v, &o) != 0)
                return FAN_EINVAL;
        } else if (strcmp(item, "retry-non-idempotent") == 0 &&
                   (strcmp(v, "on") == 0 || strcmp(v, "off") == 0))
            o.retry.non_idempotent = strcmp(v, "on") == 0;
        else if (strcmp(item, "hedge") == 0 && (strcmp(v, "p95") == 0 || strcmp(v, "off") == 0))
            o.retry.hedge_p95 = strcmp(v, "p95") == 0;
        else if (strcmp(item, "http") == 0 && strcmp(v, "auto") == 0)
            o.http_version = FAN_HTTP_AUTO;
        else if (strcmp(item, "http") == 0 && strcmp(v, "1.1") == 0)
            o.http_version = FAN_HTTP_1_1;
        else if (strcmp(item, "http") == 0 && strcmp(v, "2") == 0)
            o.http_version = FAN_HTTP_2;
        else if (strcmp(item, "verify") == 0 && (strcmp(v, "off") == 0 || strcmp(v, "on") == 0))
            o.no_verify = strcmp(v, "off") == 0;
        else if (strcmp(item, "max-connections") == 0 || strcmp(item, "max_connections") == 0) {
            if (fan__parse_number("--origin max-connections", v, 1000000, &n) != 0)
                return FAN_EINVAL;
            o.max_connections = (size_t)n;
        } else if (strcmp(item, "coalesce") == 0 && on_off(v, &o.coalesce) == 0) {
        } else if (strcmp(item, "cache") == 0 && on_off(v, &o.cache) == 0) {
        } else {
            fan_log(FAN_LOG_ERROR, "--origin %s: '%s%s%s': %s", origin, item, eq ? "=" : "", v,
                    usage);
            return FAN_EINVAL;
        }
    }
    return fan_app_set_origin(app, origin ? origin : "", &o);
}
