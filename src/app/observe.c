/* The observability settings of an app: what its requests are observed
 * with (the site's), the admin listener's address, token and series bound
 * (served by src/server/admin.c), and their command-line options. */
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "core/log.h"
#include "runtime/metrics.h"

void fan_app_set_observe(fan_app *app, unsigned what)
{
    app->site.obs = what & FAN_OBSERVE_ALL;
}

unsigned fan_app_observe(const fan_app *app)
{
    return app->site.obs;
}

void fan_app_set_server_timing_max(fan_app *app, unsigned n)
{
    app->site.server_timing_max = n;
}

int fan_app_set_admin(fan_app *app, const char *host, int port, const char *token,
                      unsigned max_series)
{
    if (port < -1 || port > 65535 || max_series > FAN__M_MAX_SERIES)
        return FAN_EINVAL;
    char *h = host ? strdup(host) : NULL;
    char *t = token && *token ? strdup(token) : NULL;
    if ((host && !h) || (token && *token && !t)) {
        free(h);
        free(t);
        return FAN_ENOMEM;
    }
    free(app->admin_host);
    free(app->admin_token);
    app->admin_host = h;
    app->admin_token = t;
    app->admin_port = port;
    app->admin_max_series = max_series;
    return 0;
}

int fan_app_set_otlp(fan_app *app, const char *url, unsigned max_queued)
{
    if (url && strncmp(url, "http://", 7) != 0)
        return FAN_EINVAL;
    char *u = url ? strdup(url) : NULL;
    if (url && !u)
        return FAN_ENOMEM;
    free(app->otlp_endpoint);
    app->otlp_endpoint = u;
    app->otlp_max_queued = max_queued;
    return 0;
}

/* "on" or "off" for `flag`, into the bit `bit` of the site's obs. */
static int on_off(fan_app *app, const char *flag, const char *value, unsigned bit)
{
    if (value && strcmp(value, "on") == 0) {
        app->site.obs |= bit;
        return 1;
    }
    if (value && strcmp(value, "off") == 0) {
        app->site.obs &= ~bit;
        return 1;
    }
    fan_log(FAN_LOG_ERROR, "%s: expected on or off, got '%s'", flag, value ? value : "");
    return FAN_EINVAL;
}

static int admin_option(fan_app *app, int argc, char **argv, int *argi)
{
    const char *value;
    unsigned long long v;
    if (fan_flag("--admin_port", argc, argv, argi, &value)) {
        if (fan__parse_number("--admin-port", value, 65535, &v))
            return FAN_EINVAL;
        app->admin_port = v ? (int)v : -1; /* 0: a free port, as for --port */
        return 1;
    }
    if (fan_flag("--admin_addr", argc, argv, argi, &value)) {
        if (!value || !*value) {
            fan_log(FAN_LOG_ERROR, "--admin-addr: expected an address");
            return FAN_EINVAL;
        }
        char *h = strdup(value);
        if (!h)
            return FAN_ENOMEM;
        free(app->admin_host);
        app->admin_host = h;
        return 1;
    }
    if (fan_flag("--admin_token", argc, argv, argi, &value)) {
        if (!value || !*value) {
            fan_log(FAN_LOG_ERROR, "--admin-token: expected a token");
            return FAN_EINVAL;
        }
        char *t = strdup(value);
        if (!t)
            return FAN_ENOMEM;
        free(app->admin_token);
        app->admin_token = t;
        return 1;
    }
    if (fan_flag("--otlp_endpoint", argc, argv, argi, &value)) {
        if (!value || strncmp(value, "http://", 7) != 0) {
            fan_log(FAN_LOG_ERROR, "--otlp-endpoint: expected an http:// URL");
            return FAN_EINVAL;
        }
        int rc = fan_app_set_otlp(app, value, app->otlp_max_queued);
        return rc == 0 ? 1 : rc;
    }
    if (fan_flag("--otlp_max_queued_spans", argc, argv, argi, &value)) {
        if (fan__parse_number("--otlp-max-queued-spans", value, 1000000, &v))
            return FAN_EINVAL;
        app->otlp_max_queued = (unsigned)v;
        return 1;
    }
    if (fan_flag("--metrics_max_series", argc, argv, argi, &value)) {
        if (fan__parse_number("--metrics-max-series", value, FAN__M_MAX_SERIES, &v))
            return FAN_EINVAL;
        app->admin_max_series = (unsigned)v;
        return 1;
    }
    return 0;
}

int fan__observe_option(fan_app *app, int argc, char **argv, int *argi)
{
    const char *value;
    if (fan_flag("--server_timing", argc, argv, argi, &value))
        return on_off(app, "--server-timing", value, FAN_OBSERVE_SERVER_TIMING);
    if (fan_flag("--trace_context", argc, argv, argi, &value))
        return on_off(app, "--trace-context", value, FAN_OBSERVE_TRACE);
    if (fan_flag("--metrics", argc, argv, argi, &value))
        return on_off(app, "--metrics", value, FAN_OBSERVE_METRICS);
    if (fan_flag("--server_timing_max_entries", argc, argv, argi, &value)) {
        unsigned long long v;
        if (fan__parse_number("--server-timing-max-entries", value, 4096, &v))
            return FAN_EINVAL;
        app->site.server_timing_max = (unsigned)v;
        return 1;
    }
    return admin_option(app, argc, argv, argi);
}
