/* What a handler reads of its request, and request-scoped utilities. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/url.h"
#include "http/http.h"

const char *fan_method(const fan_req *rq)
{
    return rq->method;
}

const char *fan_path(const fan_req *rq)
{
    return rq->path;
}

const char *fan_query_string(const fan_req *rq)
{
    return rq->query ? rq->query : "";
}

const char *fan_query(fan_req *rq, const char *name)
{
    return rq->query ? fan__query_get(&rq->arena, rq->query, name) : NULL;
}

long fan_query_long(fan_req *rq, const char *name, long def, int *ok)
{
    const char *v = fan_query(rq, name);
    if (ok)
        *ok = 1;
    if (!v)
        return def;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno) {
        if (ok)
            *ok = 0;
        return def;
    }
    return n;
}

const char *fan_header(const fan_req *rq, const char *name)
{
    for (unsigned i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

const char *fan_param(const fan_req *rq, const char *name)
{
    for (unsigned i = 0; i < rq->match.nparams; i++)
        if (strcmp(rq->match.names[i], name) == 0)
            return rq->match.values[i];
    return NULL;
}

const char *fan_body(const fan_req *rq, size_t *len)
{
    if (len)
        *len = rq->body.len;
    return rq->body.len ? rq->body.data : "";
}

const fan_app *fan_req_app(const fan_req *rq)
{
    return rq->app;
}

void *fan_alloc(fan_req *rq, size_t size)
{
    return fan__arena_alloc(&rq->arena, size);
}

char *fan_sprintf(fan_req *rq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = fan__arena_vsprintf(&rq->arena, fmt, ap);
    va_end(ap);
    return s;
}

double fan_now(void)
{
    return (double)uv_hrtime() / 1e9;
}

typedef struct sleeper {
    fan__op op;
    uv_timer_t timer;
    fan_req *rq;
    int fired;
} sleeper;

static void sleep_fired(uv_timer_t *t)
{
    sleeper *s = t->data;
    s->fired = 1;
    fan__req_notify(s->rq);
}

static void sleep_closed(uv_handle_t *h)
{
    sleeper *s = h->data;
    fan__op_end(s->rq, &s->op);
}

static void sleep_cancel(fan__op *op)
{
    sleeper *s = fan__container_of(op, sleeper, op);
    uv_timer_stop(&s->timer);
}

static int sleep_ready(fan_req *rq, void *arg)
{
    (void)rq;
    return ((sleeper *)arg)->fired;
}

int fan_sleep(fan_req *rq, unsigned ms)
{
    if (rq->cancelled)
        return FAN_ECANCELED;
    sleeper *s = fan__arena_alloc(&rq->arena, sizeof *s);
    if (!s)
        return FAN_ENOMEM;
    s->rq = rq;
    s->fired = 0;
    s->op.cancel = sleep_cancel;
    uv_timer_init(fan__srv()->loop, &s->timer);
    s->timer.data = s;
    fan__op_begin(rq, &s->op, fan__task_of(rq));
    uv_timer_start(&s->timer, sleep_fired, ms, 0);
    int rc = fan__req_wait(rq, sleep_ready, s);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sleep_closed);
    return rc;
}
