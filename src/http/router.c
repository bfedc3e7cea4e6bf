#include "http/router.h"

#include <stdlib.h>
#include <string.h>

#include "core/url.h"
#include "fanout.h"

typedef struct method_handler {
    char *method;
    void *handler;
    struct method_handler *next;
    fan__m_memo memo; /* fan__route_match.memo */
} method_handler;

typedef struct node {
    char *literal;          /* the segment, for literal children */
    char *param;            /* parameter name, for the :param and * children */
    struct node *children;  /* literal children */
    struct node *next;      /* sibling in the parent's literal list */
    struct node *param_child;
    struct node *wild_child;
    method_handler *methods;
    char *pattern;          /* the route's pattern, once a handler is added here */
} node;

struct fan__router {
    node root;
};

fan__router *fan__router_new(void)
{
    return calloc(1, sizeof(fan__router));
}

static void node_free(node *n)
{
    if (!n)
        return;
    for (node *c = n->children; c;) {
        node *next = c->next;
        node_free(c);
        free(c);
        c = next;
    }
    if (n->param_child) {
        node_free(n->param_child);
        free(n->param_child);
    }
    if (n->wild_child) {
        node_free(n->wild_child);
        free(n->wild_child);
    }
    for (method_handler *m = n->methods; m;) {
        method_handler *next = m->next;
        free(m->method);
        free(m);
        m = next;
    }
    free(n->literal);
    free(n->param);
    free(n->pattern);
}

void fan__router_free(fan__router *r)
{
    if (!r)
        return;
    node_free(&r->root);
    free(r);
}

/* Finds or creates the child of `n` for one pattern segment. */
static int child_for(node *n, const char *seg, size_t len, int last, node **out)
{
    node **slot;
    int kind = seg[0] == ':' ? 1 : (len == 1 && seg[0] == '*') ? 2 : 0;
    if (kind == 2 && !last)
        return FAN_EINVAL;
    if (kind == 1 && len == 1)
        return FAN_EINVAL;
    if (kind == 0) {
        for (node *c = n->children; c; c = c->next)
            if (strlen(c->literal) == len && memcmp(c->literal, seg, len) == 0) {
                *out = c;
                return 0;
            }
        slot = &n->children;
    } else {
        slot = kind == 1 ? &n->param_child : &n->wild_child;
        if (*slot) {
            /* One parameter name per position keeps matches unambiguous. */
            const char *name = kind == 1 ? seg + 1 : "*";
            size_t nlen = kind == 1 ? len - 1 : 1;
            if (strlen((*slot)->param) != nlen || strncmp((*slot)->param, name, nlen) != 0)
                return FAN_EINVAL;
            *out = *slot;
            return 0;
        }
    }
    node *c = calloc(1, sizeof *c);
    if (!c)
        return FAN_ENOMEM;
    if (kind == 0)
        c->literal = strndup(seg, len);
    else
        c->param = kind == 1 ? strndup(seg + 1, len - 1) : strdup("*");
    if (!c->literal && !c->param) {
        free(c);
        return FAN_ENOMEM;
    }
    if (kind == 0) {
        c->next = n->children;
        n->children = c;
    } else {
        *slot = c;
    }
    *out = c;
    return 0;
}

int fan__router_add(fan__router *r, const char *method, const char *pattern, void *handler)
{
    if (!method || !*method || !pattern || pattern[0] != '/' || !handler)
        return FAN_EINVAL;
    node *n = &r->root;
    const char *p = pattern + 1;
    unsigned nparams = 0;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0)
            return FAN_EINVAL; /* "//" in a pattern is a typo */
        if ((p[0] == ':' || p[0] == '*') && ++nparams > FAN__MAX_PARAMS)
            return FAN_EINVAL;
        int rc = child_for(n, p, len, slash == NULL || slash[1] == '\0', &n);
        if (rc)
            return rc;
        p += len + (slash ? 1 : 0);
    }
    for (method_handler *m = n->methods; m; m = m->next)
        if (strcmp(m->method, method) == 0)
            return FAN_EINVAL;
    if (!n->pattern && !(n->pattern = strdup(pattern)))
        return FAN_ENOMEM;
    method_handler *m = calloc(1, sizeof *m);
    if (!m || !(m->method = strdup(method))) {
        free(m);
        return FAN_ENOMEM;
    }
    m->handler = handler;
    m->next = n->methods;
    n->methods = m;
    return 0;
}

typedef struct walk {
    const char *method;
    char **segs;
    unsigned nsegs;
    const char *names[FAN__MAX_PARAMS];
    const char *values[FAN__MAX_PARAMS];
    const node *first_match; /* first node that matched the path, for 405 */
    fan__route_match *m;
    char **rests; /* rests[i]: decoded path from segment i on */
    fan__arena *a;
    int nomem;
} walk;

static method_handler *handler_for(const node *n, const char *method)
{
    method_handler *any = NULL;
    method_handler *get = NULL;
    for (method_handler *m = n->methods; m; m = m->next) {
        if (strcmp(m->method, method) == 0)
            return m;
        if (strcmp(m->method, "*") == 0)
            any = m;
        if (strcmp(m->method, "GET") == 0)
            get = m;
    }
    if (strcmp(method, "HEAD") == 0 && get)
        return get;
    return any;
}

static int visit(walk *w, const node *n, unsigned i, unsigned np)
{
    if (i == w->nsegs) {
        if (!n->methods)
            return 0;
        if (!w->first_match)
            w->first_match = n;
        method_handler *h = handler_for(n, w->method);
        if (!h)
            return 0;
        w->m->handler = h->handler;
        w->m->pattern = n->pattern;
        w->m->memo = &h->memo;
        w->m->nparams = np;
        if (np) {
            const char **arr = fan__arena_alloc(w->a, 2 * np * sizeof *arr);
            if (!arr) {
                w->nomem = 1;
                return 1;
            }
            memcpy(arr, w->names, np * sizeof *arr);
            memcpy(arr + np, w->values, np * sizeof *arr);
            w->m->names = arr;
            w->m->values = arr + np;
        }
        return 1;
    }
    for (const node *c = n->children; c; c = c->next)
        if (strcmp(c->literal, w->segs[i]) == 0 && visit(w, c, i + 1, np))
            return 1;
    if (n->param_child && w->segs[i][0] != '\0') {
        w->names[np] = n->param_child->param;
        w->values[np] = w->segs[i];
        if (visit(w, n->param_child, i + 1, np + 1))
            return 1;
    }
    if (n->wild_child) {
        w->names[np] = "*";
        w->values[np] = w->rests[i];
        unsigned saved = w->nsegs;
        w->nsegs = i; /* the wildcard consumes every remaining segment */
        int ok = visit(w, n->wild_child, i, np + 1);
        w->nsegs = saved;
        if (ok)
            return 1;
    }
    return 0;
}

static void fill_allow(const node *n, char *out, size_t cap)
{
    size_t len = 0;
    int has_get = 0, has_head = 0;
    out[0] = '\0';
    for (method_handler *m = n->methods; m; m = m->next) {
        has_get |= strcmp(m->method, "GET") == 0;
        has_head |= strcmp(m->method, "HEAD") == 0;
        const char *name = strcmp(m->method, "*") == 0 ? NULL : m->method;
        if (name && len + strlen(name) + 3 < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ", " : "", name);
    }
    if (has_get && !has_head && len + 7 < cap)
        snprintf(out + len, cap - len, "%sHEAD", len ? ", " : "");
}

int fan__router_match(const fan__router *r, const char *method, const char *path,
                      fan__route_match *m, fan__arena *a)
{
    char *segs[FAN__MAX_SEGMENTS + 1];
    char *rests[FAN__MAX_SEGMENTS + 1];
    unsigned n = 0;
    memset(m, 0, sizeof *m);
    m->status = 404;
    if (path[0] != '/')
        return 0;
    const char *p = path + 1;
    for (;;) {
        if (n == FAN__MAX_SEGMENTS)
            return 0; /* deeper than any route can be */
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        size_t rlen = strlen(p);
        segs[n] = fan__arena_strndup(a, p, len);
        rests[n] = fan__arena_strndup(a, p, rlen);
        if (!segs[n] || !rests[n])
            return FAN_ENOMEM;
        if (fan__url_decode(segs[n], len, 0) < 0 || fan__url_decode(rests[n], rlen, 0) < 0)
            return FAN_EINVAL;
        n++;
        if (!slash)
            break;
        p = slash + 1;
    }
    /* "/" splits into one empty segment: the root itself. */
    if (n == 1 && segs[0][0] == '\0')
        n = 0;
    rests[n] = "";
    walk w = {.method = method, .segs = segs, .nsegs = n, .m = m, .rests = rests, .a = a};
    if (visit(&w, &r->root, 0, 0)) {
        m->status = 200;
        return w.nomem ? FAN_ENOMEM : 0;
    }
    if (w.first_match) {
        char allow[128];
        fill_allow(w.first_match, allow, sizeof allow);
        m->status = 405;
        if (!(m->allow = fan__arena_strdup(a, allow)))
            return FAN_ENOMEM;
    }
    return 0;
}
