/* What the inbound server keeps of an app (fan__site): limits, routes,
 * address, hooks, trusted proxies, graceful timeout. struct fan_app
 * (src/app/app.h) begins with one. */
#ifndef FAN_HTTP_SITE_H
#define FAN_HTTP_SITE_H

#include "fanout.h"
#include "http/router.h"

typedef struct fan__error_route {
    int status; /* 0: every status >= 400 without its own handler */
    fan_handler fn;
} fan__error_route;

/* What the server needs of an app: its limits, upstream settings, routes,
 * address, hooks and graceful timeout. struct fan_app (src/app/app.h) begins with it, so a
 * fan_app * is a fan__site *. */
typedef struct fan__site {
    fan_limits limits;
    /* The app's upstream settings (src/client, opaque here), set by the app
     * layer: every request's runtime carries them beside the limits. */
    const struct fan__upstreams *upstreams;
    fan__router *router;
    unsigned nlisteners; /* open listeners */
    uint64_t accepted;   /* connections accepted on them (fan_app_connections_accepted()) */
    char *host;          /* where fan_app_listen() listens */
    int port;
    unsigned graceful_timeout_s; /* --graceful-timeout, if graceful_timeout_set */
    int graceful_timeout_set;
    struct fan__tls_site *tls; /* inbound TLS (tls.c); NULL or without a context: plain */
    struct fan__cidr *trusted; /* fan_app_set_trusted_proxies() (client_addr.c) */
    size_t ntrusted;
    /* hooks.c: fan_app_before_request(), fan_app_after_request(), fan_app_error_handler() */
    fan_handler *before_hooks, *after_hooks;
    unsigned nbefore, nafter;
    fan__error_route *error_routes;
    unsigned nerror_routes;
    /* The last step before a reply is written, after the hooks: filled by
     * the app layer (the session's cookie), NULL for none. */
    void (*finisher)(fan_req *rq);
    /* fan_app_set_observe(): FAN__OBS_* (runtime/trace.h) its requests get */
    unsigned obs;
    unsigned server_timing_max; /* call entries in a Server-Timing header */
} fan__site;

static inline fan__site *fan__site_of(fan_app *app)
{
    return (fan__site *)(void *)app;
}

static inline const fan__site *fan__site_of_const(const fan_app *app)
{
    return (const fan__site *)(const void *)app;
}

/* Prepares the server's part of a new app: default limits, a router, the
 * default address. Returns 0 or FAN_ENOMEM (then fan__site_free() it). */
int fan__site_init(fan__site *s);
void fan__site_free(fan__site *s);

/* Inbound TLS (tls.c). The settings are the site's (fan_app_set_tls(),
 * fan_app_set_tls_ciphers()); fan__tls_enabled() says whether its
 * listeners speak TLS. */
int fan__tls_enabled(const fan_app *app);

/* --tls-cert, --tls-key (applied once both are given), --tls-ciphers and
 * --tls-ciphersuites. Returns 0 or an error, logged. fan__tls_check() fails
 * (logged) when only one of the two files was given. */
int fan__tls_option(fan_app *app, const char *flag, const char *value);
int fan__tls_check(fan_app *app);

/* Loads the certificate and key files again (SIGHUP, in the master before
 * the new workers fork). On failure the context loaded before stays, with a
 * log line. Returns 0 (also when the app has no TLS) or FAN_EINVAL. */
int fan__tls_reload(fan_app *app);
void fan__tls_site_free(fan__site *s);

/* Hooks (hooks.c). */

/* Runs the before-request hooks in the handler's coroutine. Returns 1 if the
 * handler must not run: a hook replied or the request was cancelled. */
int fan__hooks_before(fan_req *rq);

/* Runs what comes between a reply and its writing: the error handler of its
 * status, the after-request hooks, then the site's finisher. */
void fan__hooks_reply(fan_req *rq);

void fan__hooks_free(fan__site *s);

#endif
