/* Routing by method and path: a tree of path segments. Literal segments are
 * tried before ":param" segments, and those before a trailing "*". */
#ifndef FAN_HTTP_ROUTER_H
#define FAN_HTTP_ROUTER_H

#include "core/arena.h"
#include "runtime/metrics.h"

#define FAN__MAX_PARAMS 16
#define FAN__MAX_SEGMENTS 64

typedef struct fan__router fan__router;

typedef struct fan__route_match {
    void *handler;                          /* set when status is 200 */
    const char *pattern;                    /* the matched route's, owned by the router */
    fan__m_memo *memo;                      /* its handler's series of the request
                                             * metrics, owned by the router; or NULL */
    int status;                             /* 200, 404 or 405 */
    const char *allow;                      /* for 405: "GET, HEAD, POST", in the arena */
    unsigned nparams;
    const char **names;                     /* nparams names, owned by the router */
    const char **values;                    /* nparams values, decoded; both arrays
                                             * in the arena */
} fan__route_match;

/* Returns an empty router, or NULL when out of memory. */
fan__router *fan__router_new(void);

/* Frees the router and everything it holds. NULL is ignored. */
void fan__router_free(fan__router *r);

/* Adds `handler` for `method` ("*" for any) on `pattern`. Returns 0, FAN_EINVAL
 * (pattern not starting with '/', '*' not last, empty parameter name, too many
 * parameters, or a route that already exists) or FAN_ENOMEM. */
int fan__router_add(fan__router *r, const char *method, const char *pattern, void *handler);

/* Matches a raw (still URL-encoded) path. Fills `m`; parameter values are
 * decoded into `a`. Returns 0, or FAN_EINVAL when a segment has a malformed
 * escape (the caller answers 400), or FAN_ENOMEM. */
int fan__router_match(const fan__router *r, const char *method, const char *path,
                      fan__route_match *m, fan__arena *a);

#endif
