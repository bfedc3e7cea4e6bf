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
    fan__json_install(); /* jansson's allocation functions, as curl's init: before any worker */
}

fan_app *fan_app_new(void)
{
    pthread_once(&global_once, global_init);
    fan_app *app = calloc(1, sizeof *app);
    if (!app)
        return NULL;
    app->site.finisher = fan__session_commit;
    if (fan__site_init(&app->site) != 0 || fan__config_init(app) != 0 ||
        fan_app_before_request(app, fan__app_gate) != 0 ||
        !(app->upstreams = fan__upstreams_new())) {
        fan_app_free(app);
        return NULL;
    }
    app->site.upstreams = app->upstreams; /* what each request's runtime carries */
    return app;
}

/* The first before-request hook of every app: the rate limit, then a
 * session kept in Redis, loaded before the handler so that
 * session.redis_down "503" can answer in its place. Both cost nothing
 * unless configured. */
void fan__app_gate(fan_req *rq)
{
    if (fan__ratelimit_check(rq))
        return;
    if (!fan__session_in_redis(rq))
        return;
    const char *name = fan_config_str(rq, "session.cookie_name");
    if (!name || !fan_req_cookie(rq, name))
        return;
    fan_session_get(rq, ""); /* loads it */
    fan__reqctx *ctx = fan__ctx(rq);
    const char *policy = fan_config_str(rq, "session.redis_down");
    if (ctx && ctx->session.unavailable && !(policy && strcmp(policy, "none") == 0))
        fan_reply_error(rq, 503, "session store unavailable");
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
    free(app->admin_host);
    free(app->admin_token);
    free(app->otlp_endpoint);
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
