/* Applications: making and freeing one (the server's part, fan__site, is
 * set up by src/http/site.c), the program's data pointer and the reload
 * hook. Settings and the configuration are in config.c. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "client/client.h"

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
    app->site.finisher = fan__session_commit;
    if (fan__site_init(&app->site) != 0 || fan__config_init(app) != 0 ||
        !(app->upstreams = fan__upstreams_new())) {
        fan_app_free(app);
        return NULL;
    }
    app->site.upstreams = app->upstreams; /* what each request's runtime carries */
    return app;
}

void fan_app_free(fan_app *app)
{
    if (!app)
        return;
    fan__site_free(&app->site);
    for (fan__setting *s = app->settings; s;) {
        fan__setting *next = s->next;
        free(s->key);
        free(s->value);
        free(s);
        s = next;
    }
    fan__config_free(app->config);
    fan__upstreams_free(app->upstreams);
    free(app);
}

void fan_app_set_data(fan_app *app, void *data)
{
    app->data = data;
}

void *fan_app_data(const fan_app *app)
{
    return app->data;
}

void fan_app_on_reload(fan_app *app, fan_reload_fn fn, void *arg)
{
    app->reload = fn;
    app->reload_arg = arg;
}
