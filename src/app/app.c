/* Applications: routes, limits, and freeing what the app owns. Settings and
 * the configuration are in config.c. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

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
    .max_queued_calls = 16384,
    .call_queue_timeout_ms = 5000,
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    /* curl_global_init is not thread-safe: run it once, before any worker. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

fan_app *fan_app_new(void)
{
    pthread_once(&global_once, global_init);
    fan_app *app = calloc(1, sizeof *app);
    if (!app)
        return NULL;
    app->limits = default_limits;
    app->router = fan__router_new();
    app->host = strdup("0.0.0.0");
    app->port = 8080;
    if (!app->router || !app->host || fan__config_init(app) != 0) {
        fan_app_free(app);
        return NULL;
    }
    return app;
}

void fan_app_free(fan_app *app)
{
    if (!app)
        return;
    fan__router_free(app->router);
    free(app->host);
    for (fan__setting *s = app->settings; s;) {
        fan__setting *next = s->next;
        free(s->key);
        free(s->value);
        free(s);
        s = next;
    }
    fan__config_free(app->config);
    fan__hooks_free(app);
    free(app);
}

fan_limits *fan_app_limits(fan_app *app)
{
    return &app->limits;
}

int fan_route(fan_app *app, const char *method, const char *pattern, fan_handler handler)
{
    return fan__router_add(app->router, method, pattern, (void *)handler);
}

void fan_app_set_data(fan_app *app, void *data)
{
    app->data = data;
}

void *fan_app_data(const fan_app *app)
{
    return app->data;
}

int fan_app_set_address(fan_app *app, const char *host, int port)
{
    char *h = strdup(host);
    if (!h)
        return FAN_ENOMEM;
    free(app->host);
    app->host = h;
    app->port = port;
    return 0;
}
