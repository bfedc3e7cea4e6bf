/* Command-line options of an app: every limit, settings, the configuration
 * file, logs, --host, --port and --trusted-proxies. fan_main() adds
 * --workers (src/server). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/app.h"
#include "client/client.h"
#include "core/log.h"
#include "redis/redis.h"

#define GRACEFUL_MAX_S 86400 /* a day */

typedef struct limit_opt {
    const char *flag;
    size_t offset;
    int is_size; /* size_t, else unsigned */
    const char *help;
} limit_opt;

#define SZ(f, h) {"--" #f, offsetof(fan_limits, f), 1, h}
#define UN(f, h) {"--" #f, offsetof(fan_limits, f), 0, h}

static const limit_opt limit_opts[] = {
    SZ(max_header_bytes, "request line and headers, bytes (431 beyond)"),
    UN(max_headers, "header fields per request (431 beyond)"),
    SZ(max_body_bytes, "request body, bytes (413 beyond)"),
    UN(header_timeout_ms, "time to receive a request head (408)"),
    UN(body_timeout_ms, "time between two reads of a request body (408)"),
    UN(idle_timeout_ms, "idle keep-alive connections are closed after it"),
    UN(write_timeout_ms, "a response not taken by the client in it: closed"),
    UN(request_timeout_ms, "per-request deadline, 0 for none"),
    SZ(max_pipelined_bytes, "input buffered while a request runs"),
    SZ(max_connections, "open connections per worker (503 beyond)"),
    SZ(stack_size, "coroutine stack, bytes"),
    UN(call_timeout_ms, "default total timeout of an upstream call"),
    UN(connect_timeout_ms, "upstream connect timeout"),
    SZ(max_call_body_bytes, "upstream response body limit"),
    UN(dns_ttl_ms, "upstream host names are resolved again after it, 0 for once"),
    SZ(max_calls, "upstream calls in flight per worker, 0 for no limit"),
    SZ(max_calls_per_host, "upstream calls in flight per worker to one origin, 0 for no limit"),
    SZ(max_idle_connections_per_host, "idle upstream connections kept per worker per origin"),
    SZ(max_idle_curl_connections, "idle connections libcurl keeps per worker (https), all origins"),
    SZ(max_queued_calls, "upstream calls waiting for a slot (then refused)"),
    UN(call_queue_timeout_ms, "longest wait for a call slot, 0 for the call's timeout"),
    SZ(max_stream_queued_bytes, "streamed response bytes queued for a client before a write waits"),
    SZ(max_cache_bytes, "the worker's upstream response cache, bytes (LRU beyond)"),
    SZ(max_origins, "upstream origins with retry/hedge/breaker state per worker"),
    UN(tls_handshake_timeout_ms, "a TLS handshake not completed in it: closed"),
    UN(h2_max_streams, "HTTP/2 concurrent streams per connection"),
    UN(h2_window_bytes, "HTTP/2 flow-control window per stream and connection, bytes"),
    UN(h2_max_resets, "HTTP/2 RST_STREAMs per connection per second (then GOAWAY)"),
};

int fan_flag(const char *flag, int argc, char **argv, int *argi, const char **value)
{
    const char *arg = argv[*argi];
    size_t i = 0;
    for (; flag[i]; i++) {
        char a = arg[i], f = flag[i];
        if (!(a == f || (f == '_' && a == '-')))
            return 0;
    }
    if (arg[i] == '=') {
        *value = arg + i + 1;
        (*argi)++;
        return 1;
    }
    if (arg[i] != '\0')
        return 0;
    if (*argi + 1 >= argc) {
        *value = NULL;
        (*argi)++;
        return 1;
    }
    *value = argv[*argi + 1];
    *argi += 2;
    return 1;
}

int fan__parse_number(const char *flag, const char *s, unsigned long long max,
                      unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || s[0] == '-' || v > max) {
        fan_log(FAN_LOG_ERROR, "%s: expected a whole number up to %llu, got '%s'", flag, max,
                s ? s : "");
        return FAN_EINVAL;
    }
    *out = v;
    return 0;
}

static int log_level_option(const char *value)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (value && strcmp(value, names[i]) == 0) {
            fan_log_set_level((fan_log_level)i);
            return 1;
        }
    fan_log(FAN_LOG_ERROR, "--log-level: expected debug, info, warn or error");
    return FAN_EINVAL;
}

/* --log-format, --log-file and --access-log: process-wide, like
 * --log-level. Returns 1 if consumed, 0 if not one of these, or an error. */
static int log_option(int argc, char **argv, int *argi)
{
    const char *value;
    if (fan_flag("--log_format", argc, argv, argi, &value)) {
        if (value && (strcmp(value, "text") == 0 || strcmp(value, "json") == 0)) {
            fan_log_set_format(value[0] == 'j' ? FAN_LOG_JSON : FAN_LOG_TEXT);
            return 1;
        }
        fan_log(FAN_LOG_ERROR, "--log-format: expected text or json");
        return FAN_EINVAL;
    }
    int access = 0;
    if (!fan_flag("--log_file", argc, argv, argi, &value) &&
        !(access = fan_flag("--access_log", argc, argv, argi, &value)))
        return 0;
    if (!value || !*value) {
        fan_log(FAN_LOG_ERROR, "%s: expected %sstderr or a file name",
                access ? "--access-log" : "--log-file", access ? "off, " : "");
        return FAN_EINVAL;
    }
    int rc = access ? fan_access_log_open(value) : fan_log_open(value);
    return rc == 0 ? 1 : rc;
}

static int address_option(fan_app *app, int argc, char **argv, int *argi)
{
    const char *value;
    if (fan_flag("--host", argc, argv, argi, &value)) {
        if (!value || !*value) {
            fan_log(FAN_LOG_ERROR, "--host: expected an address");
            return FAN_EINVAL;
        }
        return fan_app_set_address(app, value, app->site.port) == 0 ? 1 : FAN_ENOMEM;
    }
    if (fan_flag("--port", argc, argv, argi, &value)) {
        unsigned long long v;
        if (fan__parse_number("--port", value, 65535, &v))
            return FAN_EINVAL;
        app->site.port = (int)v;
        return 1;
    }
    if (fan_flag("--log_level", argc, argv, argi, &value))
        return log_level_option(value);
    if (fan_flag("--graceful_timeout", argc, argv, argi, &value)) {
        unsigned long long v;
        if (fan__parse_number("--graceful-timeout", value, GRACEFUL_MAX_S, &v))
            return FAN_EINVAL;
        app->site.graceful_timeout_s = (unsigned)v;
        app->site.graceful_timeout_set = 1;
        return 1;
    }
    if (fan_flag("--trusted_proxies", argc, argv, argi, &value)) {
        if (!value) {
            fan_log(FAN_LOG_ERROR, "--trusted-proxies: expected a list of addresses and networks");
            return FAN_EINVAL;
        }
        int rc = fan_app_set_trusted_proxies(app, value);
        return rc == 0 ? 1 : rc;
    }
    if (fan_flag("--redis", argc, argv, argi, &value)) {
        fan__redis_url u;
        char why[160];
        if (!value || fan__redis_url_parse(value, &u, why, sizeof why) != 0) {
            fan_log(FAN_LOG_ERROR, "--redis: %s", value ? why : "expected a redis:// URL");
            return FAN_EINVAL;
        }
        return fan_app_set(app, "redis.url", value) == 0 ? 1 : FAN_ENOMEM;
    }
    return 0;
}

/* --ca-file, --client-cert, --client-key and --origin. Returns 1 if
 * consumed, 0 if not one of these, or an error (logged). */
static int upstream_option(fan_app *app, int argc, char **argv, int *argi)
{
    const char *value;
    if (fan_flag("--origin", argc, argv, argi, &value)) {
        int rc = fan__origin_option(app, value);
        return rc == 0 ? 1 : rc;
    }
    const char *tls = fan_flag("--tls_cert", argc, argv, argi, &value)            ? "--tls-cert"
                      : fan_flag("--tls_key", argc, argv, argi, &value)           ? "--tls-key"
                      : fan_flag("--tls_ciphers", argc, argv, argi, &value)       ? "--tls-ciphers"
                      : fan_flag("--tls_ciphersuites", argc, argv, argi, &value)  ? "--tls-ciphersuites"
                                                                                  : NULL;
    if (tls) {
        int rc = fan__tls_option(app, tls, value);
        return rc == 0 ? 1 : rc;
    }
    const char *flag = fan_flag("--ca_file", argc, argv, argi, &value)       ? "--ca-file"
                       : fan_flag("--client_cert", argc, argv, argi, &value) ? "--client-cert"
                       : fan_flag("--client_key", argc, argv, argi, &value)  ? "--client-key"
                                                                             : NULL;
    if (!flag)
        return 0;
    if (!value || !*value) {
        fan_log(FAN_LOG_ERROR, "%s: expected a file name", flag);
        return FAN_EINVAL;
    }
    if (flag[2] == 'c' && flag[3] == 'a') {
        int rc = fan_app_set_ca_file(app, value);
        return rc == 0 ? 1 : rc;
    }
    /* The pair is checked once both may have been given, in either order:
     * fan__app_check_upstreams(), when the command line is parsed. */
    int rc = fan__client_cert_option(app, strcmp(flag, "--client-key") == 0, value);
    return rc == 0 ? 1 : rc;
}

int fan_app_option(fan_app *app, int argc, char **argv, int *argi)
{
    const char *value;
    int rc = address_option(app, argc, argv, argi);
    if (rc == 0)
        rc = log_option(argc, argv, argi);
    if (rc == 0)
        rc = upstream_option(app, argc, argv, argi);
    if (rc == 0)
        rc = fan__observe_option(app, argc, argv, argi);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < sizeof limit_opts / sizeof limit_opts[0]; i++) {
        const limit_opt *o = &limit_opts[i];
        if (!fan_flag(o->flag, argc, argv, argi, &value))
            continue;
        unsigned long long v;
        if (fan__parse_number(o->flag, value, o->is_size ? SIZE_MAX : 0xffffffffu, &v))
            return FAN_EINVAL;
        char *field = (char *)&app->site.limits + o->offset;
        if (o->is_size)
            *(size_t *)field = (size_t)v;
        else
            *(unsigned *)field = (unsigned)v;
        return 1;
    }
    if (fan_flag("--set", argc, argv, argi, &value)) {
        const char *eq = value ? strchr(value, '=') : NULL;
        if (!eq || eq == value) {
            fan_log(FAN_LOG_ERROR, "--set: expected key=value, got '%s'", value ? value : "");
            return FAN_EINVAL;
        }
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - value), value);
        rc = fan_app_set(app, key, eq + 1);
        return rc == 0 ? 1 : rc;
    }
    if (fan_flag("--config", argc, argv, argi, &value)) {
        if (!value || !*value) {
            fan_log(FAN_LOG_ERROR, "--config: expected a file name");
            return FAN_EINVAL;
        }
        rc = fan_app_load_config(app, value);
        return rc == 0 ? 1 : rc;
    }
    return 0;
}

void fan_print_options(FILE *out)
{
    fprintf(out, "  --host ADDR              address to listen on (default 0.0.0.0)\n"
                 "  --port N                 port to listen on (default 8080)\n"
                 "  --set KEY=VALUE          an application setting\n"
                 "  --config FILE            a JSON configuration file (docs/guide.md)\n"
                 "  --log-level LEVEL        debug, info, warn or error (default info)\n"
                 "  --log-format FORMAT      text or json (JSON lines), for both logs\n"
                 "  --log-file FILE          the error log's file (default stderr)\n"
                 "  --access-log WHERE       off, stderr (default) or a file: a line per\n"
                 "                           request; SIGUSR1 reopens the log files\n"
                 "  --graceful-timeout S     on SIGTERM, seconds the requests in progress may\n"
                 "                           take before they are cancelled (default 30)\n"
                 "  --redis URL              redis://[user[:password]@]host[:port][/db]: the\n"
                 "                           Redis of sessions, rate limits and\n"
                 "                           fan_redis_command() (redis.* settings)\n"
                 "  --trusted-proxies LIST   proxies whose X-Forwarded-For and Forwarded are\n"
                 "                           believed: addresses and networks, comma-separated\n"
                 "                           (e.g. 127.0.0.1,10.0.0.0/8,::1; default none)\n"
                 "  --ca-file FILE           PEM CA certificates that https upstreams are\n"
                 "                           verified against (default: the system's store)\n"
                 "  --client-cert FILE       PEM client certificate for upstreams that ask for\n"
                 "                           one (mutual TLS); its key too unless --client-key\n"
                 "  --client-key FILE        its PEM private key\n"
                 "  --origin ORIGIN[,OPT]    options of one upstream origin (repeatable):\n"
                 "                           https://api.example:443,http=auto|1.1|2,\n"
                 "                           max-connections=N,verify=off (warned at start),\n"
                 "                           retries=N,retry-base-ms=N,retry-cap-ms=N,\n"
                 "                           try-timeout-ms=N,retry-on=502:503:504|none,\n"
                 "                           retry-non-idempotent=on,hedge-after-ms=N,\n"
                 "                           hedge=p95,budget-percent=N,budget-min=N,\n"
                 "                           breaker-failures=N,breaker-error-percent=N,\n"
                 "                           breaker-window-ms=N,breaker-min-calls=N,\n"
                 "                           breaker-cooldown-ms=N, coalesce=on|off,\n"
                 "                           cache=on|off,cache-ttl=MS,\n"
                 "                           stale-while-revalidate=MS,stale-if-error=MS\n"
                 "                           (docs/resilience.md)\n"
                 "  --tls-cert FILE          serve https: the PEM certificate chain (SIGHUP\n"
                 "                           loads it again; a broken file keeps the old one);\n"
                 "                           repeat the pair for more, chosen by SNI\n"
                 "  --tls-key FILE           its PEM private key\n"
                 "  --tls-ciphers LIST       TLS 1.2 ciphers, OpenSSL syntax (default: ECDHE\n"
                 "                           with AES-GCM or ChaCha20-Poly1305)\n"
                 "  --tls-ciphersuites LIST  TLS 1.3 suites (default: OpenSSL's)\n"
                 "  --server-timing on|off   a Server-Timing header on responses (default on)\n"
                 "  --server-timing-max-entries N  call entries in it (default 32)\n"
                 "  --trace-context on|off   W3C traceparent continued and sent to upstreams\n"
                 "                           (default on)\n"
                 "  --metrics on|off         requests counted for the admin listener (on)\n"
                 "  --admin-port N           the admin listener: /metrics, /waterfall (default\n"
                 "                           none; 0 picks a free port)\n"
                 "  --admin-addr ADDR        its address (default 127.0.0.1)\n"
                 "  --admin-token TOKEN      admin requests need Authorization: Bearer TOKEN\n"
                 "                           (or set FANOUT_ADMIN_TOKEN; default none)\n"
                 "  --metrics-max-series N   label sets per metric before overflow (500)\n"
                 "  --otlp-endpoint URL      spans sent there as OTLP/HTTP JSON (http://)\n"
                 "  --otlp-max-queued-spans N  spans waiting per worker; more are dropped\n"
                 "                           (default 2048)\n");
    for (size_t i = 0; i < sizeof limit_opts / sizeof limit_opts[0]; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "%s N", limit_opts[i].flag);
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        fprintf(out, "  %-24s %s\n", flag, limit_opts[i].help);
    }
}
