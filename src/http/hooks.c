/* Before-request and after-request hooks and error handlers: registration,
 * and running them in the order fanout.h documents, then the finisher the
 * app layer leaves in the site (the session's cookie). */
#include <stdlib.h>

#include "http/http.h"

static int append(fan_handler **list, unsigned *n, fan_handler fn)
{
    if (!fn)
        return FAN_EINVAL;
    fan_handler *grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown)
        return FAN_ENOMEM;
    grown[(*n)++] = fn;
    *list = grown;
    return 0;
}

int fan_app_before_request(fan_app *a, fan_handler hook)
{
    fan__site *app = fan__site_of(a);
    return append(&app->before_hooks, &app->nbefore, hook);
}

int fan_app_after_request(fan_app *a, fan_handler hook)
{
    fan__site *app = fan__site_of(a);
    return append(&app->after_hooks, &app->nafter, hook);
}

int fan_app_error_handler(fan_app *a, int status, fan_handler handler)
{
    fan__site *app = fan__site_of(a);
    if (status != 0 && (status < 400 || status > 999))
        return FAN_EINVAL;
    for (unsigned i = 0; i < app->nerror_routes; i++) {
        if (app->error_routes[i].status != status)
            continue;
        if (handler) {
            app->error_routes[i].fn = handler;
        } else {
            app->error_routes[i] = app->error_routes[app->nerror_routes - 1];
            app->nerror_routes--;
        }
        return 0;
    }
    if (!handler)
        return 0;
    fan__error_route *grown =
        realloc(app->error_routes, (app->nerror_routes + 1) * sizeof *grown);
    if (!grown)
        return FAN_ENOMEM;
    grown[app->nerror_routes++] = (fan__error_route){status, handler};
    app->error_routes = grown;
    return 0;
}

void fan__hooks_free(fan__site *app)
{
    free(app->before_hooks);
    free(app->after_hooks);
    free(app->error_routes);
}

int fan__hooks_before(fan_req *rq)
{
    const fan__site *app = fan__site_of(rq->app);
    for (unsigned i = 0; i < app->nbefore; i++) {
        if (rq->replied || fan_cancelled(rq))
            break;
        app->before_hooks[i](rq);
    }
    return rq->replied || fan_cancelled(rq);
}

static fan_handler error_handler_for(const fan__site *app, int status)
{
    fan_handler fallback = NULL;
    for (unsigned i = 0; i < app->nerror_routes; i++) {
        if (app->error_routes[i].status == status)
            return app->error_routes[i].fn;
        if (app->error_routes[i].status == 0 && status >= 400)
            fallback = app->error_routes[i].fn;
    }
    return fallback;
}

void fan__hooks_reply(fan_req *rq)
{
    const fan__site *app = fan__site_of(rq->app);
    fan_handler on_error = error_handler_for(app, rq->status);
    if (on_error)
        on_error(rq);
    for (unsigned i = 0; i < app->nafter; i++)
        app->after_hooks[i](rq);
    /* Last, so that hooks and error handlers may still change the session. */
    if (app->finisher)
        app->finisher(rq);
}
