/* What a handler reads of its request: method, path, query, headers,
 * route parameters, body. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/url.h"
#include "http/http.h"

const char *fan_req_method(const fan_req *rq)
{
    return rq->method;
}

const char *fan_req_path(const fan_req *rq)
{
    return rq->path;
}

const char *fan_req_raw_path(const fan_req *rq)
{
    return rq->raw_path ? rq->raw_path : "";
}

const char *fan_req_query_string(const fan_req *rq)
{
    return rq->query ? rq->query : "";
}

const char *fan_req_query(const fan_req *rq, const char *name)
{
    /* The decoded value goes into the request's arena: requests are always
     * allocated mutable, the const is a promise to the handler. */
    return rq->query ? fan__query_get(&((fan_req *)rq)->rt.arena, rq->query, name) : NULL;
}

long fan_req_query_long(const fan_req *rq, const char *name, long def, int *ok)
{
    const char *v = fan_req_query(rq, name);
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

const char *fan_req_header(const fan_req *rq, const char *name)
{
    for (unsigned i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

/* The header at *i of `h` (n of them) into *name and *value, if not NULL. */
static int header_next(const fan__header *h, unsigned n, size_t *i, const char **name,
                       const char **value)
{
    if (*i >= n)
        return 0;
    if (name)
        *name = h[*i].name;
    if (value)
        *value = h[*i].value;
    (*i)++;
    return 1;
}

int fan_req_header_next(const fan_req *rq, size_t *i, const char **name, const char **value)
{
    return header_next(rq->headers, rq->nheaders, i, name, value);
}

int fan_resp_header_next(const fan_req *rq, size_t *i, const char **name, const char **value)
{
    return header_next(rq->out_headers, rq->nout, i, name, value);
}

const char *fan_req_param(const fan_req *rq, const char *name)
{
    for (unsigned i = 0; i < rq->match.nparams; i++)
        if (strcmp(rq->match.names[i], name) == 0)
            return rq->match.values[i];
    return NULL;
}

const char *fan_req_body(const fan_req *rq, size_t *len)
{
    if (len)
        *len = rq->body.len;
    return rq->body.len ? rq->body.data : "";
}

const fan_app *fan_req_app(const fan_req *rq)
{
    return rq->app;
}
