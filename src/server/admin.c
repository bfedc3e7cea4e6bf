/* The admin listener: an internal app that serves the metrics and the
 * waterfall of the shared region, behind an optional bearer token. With a
 * master, it opens one SO_REUSEPORT socket per worker slot, as for the
 * app's own port, and every worker serves it: the region is shared, so any
 * worker answers for all. Its own requests are neither timed nor counted. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "server/admin.h"

static fan_app *admin;
static fan__metrics_region *region;
static char *token; /* the admin app's copy, NULL for none */

fan__metrics_region *fan__admin_region(void)
{
    return region;
}

/* The before-request hook: with a token, "Authorization: Bearer TOKEN" or
 * 401, compared in constant time. */
static void check_token(fan_req *rq)
{
    if (!token)
        return;
    const char *h = fan_req_header(rq, "Authorization");
    size_t n = strlen(token);
    if (h && strncmp(h, "Bearer ", 7) == 0 && strlen(h + 7) == n &&
        CRYPTO_memcmp(h + 7, token, n) == 0)
        return;
    fan_resp_set_header(rq, "WWW-Authenticate", "Bearer realm=\"fanout admin\"");
    fan_reply_error(rq, 401, "admin token required");
}

static void metrics_view(fan_req *rq)
{
    fan__buf b = FAN__BUF_INIT;
    if (fan__metrics_render(region, &b) != 0) {
        fan_reply_error(rq, 503, "out of memory");
        return;
    }
    fan_reply(rq, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    fan__buf_free(&b);
}

fan_app *fan__admin_prepare(fan_app *app, unsigned nlanes, int *failed)
{
    *failed = 0;
    if (admin || app->admin_port == 0)
        return admin;
    const char *t = app->admin_token ? app->admin_token : getenv("FANOUT_ADMIN_TOKEN");
    unsigned series = app->admin_max_series ? app->admin_max_series : FAN__M_DEFAULT_SERIES;
    region = fan__metrics_map(nlanes, series);
    admin = fan_app_new();
    token = t && *t ? strdup(t) : NULL;
    if (!region || !admin || (t && *t && !token) ||
        fan_app_route(admin, "GET", "/metrics", metrics_view) != 0 ||
        fan_app_route(admin, "GET", "/waterfall", fan__waterfall_page) != 0 ||
        fan_app_route(admin, "GET", "/waterfall.json", fan__waterfall_json) != 0 ||
        fan_app_before_request(admin, check_token) != 0) {
        fan_log(FAN_LOG_ERROR, "cannot set up the admin listener: out of memory");
        fan__admin_free();
        *failed = 1;
        return NULL;
    }
    fan_app_set_observe(admin, 0);
    fan_app_set_address(admin, app->admin_host ? app->admin_host : "127.0.0.1",
                        app->admin_port < 0 ? 0 : app->admin_port);
    /* The admin app's limits follow the app's, but a page is small. */
    admin->site.limits = app->site.limits;
    admin->site.graceful_timeout_s = app->site.graceful_timeout_s;
    admin->site.graceful_timeout_set = app->site.graceful_timeout_set;
    fan__metrics_attach(region, 0);
    return admin;
}

void fan__admin_free(void)
{
    fan_app_free(admin);
    admin = NULL;
    fan__metrics_unmap(region);
    region = NULL;
    free(token);
    token = NULL;
}
