/* What the server keeps of an app (fan__site): its default limits, its
 * routes and the address it listens on. The hooks are in hooks.c. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/http.h"

static const fan_limits default_limits = {
    .max_header_bytes = 16 * 1024,
    .max_headers = 100,
    .max_body_bytes = 1024 * 1024,
    .header_timeout_ms = 10000,
    .body_timeout_ms = 10000,
    .idle_timeout_ms = 5000,
    .write_timeout_ms = 30000,
    .request_timeout_ms = 30000,
    .max_pipelined_bytes = 64 * 1024,
    .max_connections = 10000,
    .stack_size = 0, /* the coroutine layer's default */
    .call_timeout_ms = 10000,
    .connect_timeout_ms = 3000,
    .max_call_body_bytes = 8 * 1024 * 1024,
    .dns_ttl_ms = 60000,
    .max_calls = 16384,
    .max_calls_per_host = 16384,
    .max_idle_connections_per_host = 16384,
    .max_idle_curl_connections = 1024,
    .max_queued_calls = 16384,
    .call_queue_timeout_ms = 5000,
    .max_stream_queued_bytes = 64 * 1024,
    .max_cache_bytes = 64 * 1024 * 1024,
    .max_origins = 4096,
    .tls_handshake_timeout_ms = 10000,
    .h2_max_streams = 100,
    .h2_window_bytes = 1024 * 1024,
    .h2_max_resets = 100,
};

int fan__site_init(fan__site *s)
{
    s->limits = default_limits;
    s->router = fan__router_new();
    s->host = strdup("0.0.0.0");
    s->port = 8080;
    s->obs = FAN_OBSERVE_ALL;
    s->server_timing_max = FAN_SERVER_TIMING_MAX_DEFAULT;
    return s->router && s->host ? 0 : FAN_ENOMEM;
}

void fan__site_free(fan__site *s)
{
    fan__router_free(s->router);
    free(s->host);
    free(s->trusted);
    fan__tls_site_free(s);
    fan__hooks_free(s);
}

fan_limits *fan_app_limits(fan_app *app)
{
    return &fan__site_of(app)->limits;
}

int fan_app_route(fan_app *app, const char *method, const char *pattern, fan_handler handler)
{
    return fan__router_add(fan__site_of(app)->router, method, pattern, (void *)handler);
}

int fan_app_set_address(fan_app *app, const char *host, int port)
{
    fan__site *s = fan__site_of(app);
    char *h = strdup(host);
    if (!h)
        return FAN_ENOMEM;
    free(s->host);
    s->host = h;
    s->port = port;
    return 0;
}

int fan_app_listen(fan_app *app, int *bound_port)
{
    int bound;
    int rc = fan_app_listen_on(app, fan__site_of(app)->host, fan__site_of(app)->port, &bound);
    if (rc == 0)
        fan__log_notice("listening on %s://%s:%d", fan__tls_enabled(app) ? "https" : "http",
                        fan__site_of(app)->host, bound);
    if (bound_port)
        *bound_port = rc == 0 ? bound : 0;
    return rc;
}

uint64_t fan_app_connections_accepted(const fan_app *app)
{
    return fan__site_of((fan_app *)app)->accepted;
}
