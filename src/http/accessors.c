/* What a handler reads of its request: method, path, query, headers,
 * route parameters, body. */
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
    return rq->query ? fan__query_get(&rq->rt.arena, rq->query, name) : NULL;
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
