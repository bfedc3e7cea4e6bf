/* Loading a gateway file: parses it, checks every key and type, compiles the
 * endpoints' templates and graphs, and reports each problem with the file,
 * line and column where it is. The compiled gateway lives in one pool. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

struct gw_pool {
    struct gw_pool *next;
    json_t *doc; /* the parsed file, which literals of templates point into (first block) */
    max_align_t data[];
};

void *gw_alloc(gw_pool *p, size_t size)
{
    gw_pool *b = calloc(1, sizeof *b + size + 1);
    if (!b)
        return NULL;
    b->next = p->next;
    p->next = b;
    return b->data;
}

char *gw_strdup(gw_pool *p, const char *s)
{
    size_t len = strlen(s);
    char *d = gw_alloc(p, len + 1);
    if (d)
        memcpy(d, s, len + 1);
    return d;
}

void gw_free(gw *g)
{
    if (!g)
        return;
    gw_pool *p = g->pool;
    json_decref(p->doc);
    while (p) {
        gw_pool *next = p->next;
        free(p);
        p = next;
    }
}

/* Appends one error line. The text may hold bytes of the file that are not
 * UTF-8 (jansson quotes the token it stopped at), or be cut inside a
 * character: it is kept as bytes, control characters made '?'. */
static void add_error(json_t *list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_error(json_t *list, const char *fmt, ...)
{
    char out[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, sizeof out, fmt, ap);
    va_end(ap);
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = '?';
    json_array_append_new(list, json_string_nocheck(out));
}

void gw_release(gw *g, int retire)
{
    if (!g)
        return;
    if (retire)
        g->retired = 1;
    else
        g->refs--;
    if (g->retired && g->refs == 0)
        gw_free(g);
}

void gw_error(gw_errs *e, const char *where, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    gw_pos_find(e->pos, where, &line, &col);
    add_error(e->list, "%s:%d:%d: %s%s%s", e->file, line, col, where, *where ? ": " : "", msg);
}

#include "check.h"

/* The largest gateway file read. */
#define GW_MAX_FILE (64 << 20)

int gw_load_endpoint(gw_pool *pool, gw_errs *e, const char *where, json_t *o, gw_endpoint *ep);

gw *gw_load(const char *file, json_t *errs)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        add_error(errs, "%s: cannot read it: %s", file, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (size_t got; text && (got = fread(text + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap && cap >= GW_MAX_FILE) {
            fclose(f);
            free(text);
            add_error(errs, "%s: larger than %d MiB", file, GW_MAX_FILE >> 20);
            return NULL;
        }
        char *more = len == cap ? realloc(text, cap *= 2) : text;
        if (!more)
            free(text);
        text = more;
    }
    fclose(f);
    if (!text) {
        add_error(errs, "%s: out of memory", file);
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        add_error(errs, "%s:%d:%d: %s", file, jerr.line, jerr.column, jerr.text);
        free(text);
        return NULL;
    }
    gw_pos *pos = gw_pos_index(text, len);
    free(text);
    gw *g = NULL;
    gw_pool *pool = calloc(1, sizeof *pool);
    if (pool)
        pool->doc = doc;
    else
        json_decref(doc);
    if (pool && (g = gw_alloc(pool, sizeof *g)))
        g->pool = pool;
    gw_errs e = {errs, pos, file};
    static const char *const top_keys[] = {"endpoints", "debug", "$comment", NULL};
    if (!g) {
        add_error(errs, "%s: out of memory", file);
    } else if (!json_is_object(doc)) {
        gw_error(&e, "", "the file must hold a JSON object with \"endpoints\", not %s",
                 gw_type_name(doc));
    } else {
        g->file = gw_strdup(pool, file);
        gw_check_keys(&e, "", doc, top_keys, "gateway file");
        gw_get_bool(&e, "", doc, "debug", &g->debug);
        json_t *eps = json_object_get(doc, "endpoints");
        if (!json_is_array(eps) || json_array_size(eps) == 0) {
            gw_error(&e, eps ? "endpoints" : "", "\"endpoints\" must be a non-empty array%s",
                     eps ? "" : " (it is missing)");
        } else {
            g->n = json_array_size(eps);
            g->eps = gw_alloc(pool, g->n * sizeof *g->eps);
            for (size_t i = 0; g->eps && i < g->n; i++) {
                char where[64];
                snprintf(where, sizeof where, "endpoints[%zu]", i);
                memset(&g->eps[i], 0, sizeof g->eps[i]);
                gw_load_endpoint(pool, &e, where, json_array_get(eps, i), &g->eps[i]);
            }
            /* the same method and path twice */
            for (size_t i = 0; g->eps && i < g->n; i++)
                for (size_t j = 0; j < i; j++)
                    if (g->eps[i].path && g->eps[j].path &&
                        strcmp(g->eps[i].method, g->eps[j].method) == 0 &&
                        strcmp(g->eps[i].path, g->eps[j].path) == 0) {
                        char where[64];
                        snprintf(where, sizeof where, "endpoints[%zu].path", i);
                        gw_error(&e, where, "%s %s is already endpoints[%zu]", g->eps[i].method,
                                 g->eps[i].path, j);
                    }
            if (g->eps)
                gw_breakers_collect(&e, g);
        }
    }
    gw_pos_free(pos);
    if (json_array_size(errs) > 0 || !g) {
        if (g)
            gw_free(g);
        else if (pool)
            gw_free(&(gw){.pool = pool});
        return NULL;
    }
    return g;
}

/* ------------------------------------------------------------------------ */

static const char *const ENDPOINT_KEYS[] = {"method",   "path",     "timeout_ms", "stream",
                                            "backends", "response", "$comment",   NULL};

static int load_path(gw_pool *pool, gw_errs *e, const char *where, gw_endpoint *ep)
{
    char buf[1024];
    const char *where_path = gw_sub(buf, sizeof buf, where, "path");
    if (ep->path[0] != '/') {
        gw_error(e, where_path, "a path begins with '/': \"%s\"", ep->path);
        return -1;
    }
    size_t n = 0;
    for (const char *c = ep->path; *c; c++)
        n += *c == '/';
    ep->segs = gw_alloc(pool, (n + 1) * sizeof *ep->segs);
    ep->nsegs = 0;
    const char *c = ep->path + 1;
    while (*c || (c == ep->path + 1 && 0)) {
        size_t len = strcspn(c, "/");
        char *seg = gw_alloc(pool, len + 1);
        memcpy(seg, c, len);
        seg[len] = 0;
        if (len == 0 || (seg[0] == ':' && len == 1)) {
            gw_error(e, where_path, "the path \"%s\" has an empty segment or parameter name",
                     ep->path);
            return -1;
        }
        if (seg[0] == ':')
            for (size_t i = 0; i < ep->nsegs; i++)
                if (strcmp(ep->segs[i], seg) == 0) {
                    gw_error(e, where_path, "the path \"%s\" names '%s' twice", ep->path, seg);
                    return -1;
                }
        ep->segs[ep->nsegs++] = seg;
        c += len;
        if (*c == '/')
            c++;
    }
    return 0;
}

int gw_load_backends(gw_pool *pool, gw_errs *e, const char *where, json_t *arr, gw_endpoint *ep);

typedef struct selected {
    gw_errs *e;
    const char *where;
    const gw_endpoint *ep;
    int rc;
} selected;

/* The response template reads shaped results: a field that the backend's
 * select (renamed) leaves out can never be there. */
static void check_ref_selected(const gw_ref *r, void *arg)
{
    selected *s = arg;
    if (r->kind != GW_REF_BACKEND || r->path.n == 0 || !r->path.segs[0].key)
        return;
    const gw_backend *b = &s->ep->backends[r->backend];
    if (!b->nselect || b->each)
        return;
    char keys[512] = "";
    size_t n = 0;
    for (size_t k = 0; k < b->nselect; k++) {
        const char *key = b->select[k].segs[0].key;
        for (size_t x = 0; key && x < b->nrename; x++)
            if (b->rename[x].from.n == 1 && strcmp(b->rename[x].from.segs[0].key, key) == 0)
                key = b->rename[x].to;
        if (!key)
            return; /* a select starting with an index: not checked */
        if (strcmp(key, r->path.segs[0].key) == 0)
            return;
        if (n + strlen(key) + 3 < sizeof keys)
            n += (size_t)snprintf(keys + n, sizeof keys - n, "%s%s", n ? ", " : "", key);
    }
    gw_error(s->e, s->where, "template {%s}: backend '%s' selects only %s", r->text, b->name, keys);
    s->rc = -1;
}

static int check_selected(gw_errs *e, const char *where, const gw_endpoint *ep)
{
    selected s = {e, where, ep, 0};
    gw_jt_refs(ep->response, check_ref_selected, &s);
    return s.rc;
}

int gw_load_endpoint(gw_pool *pool, gw_errs *e, const char *where, json_t *o, gw_endpoint *ep)
{
    char buf[1024];
    if (!json_is_object(o)) {
        gw_error(e, where, "an endpoint is an object, not %s", gw_type_name(o));
        return -1;
    }
    int rc = gw_check_keys(e, where, o, ENDPOINT_KEYS, "endpoint");
    const char *stream = NULL;
    ep->timeout_ms = 10000;
    rc |= gw_get_str(e, where, o, "method", 0, "GET", &ep->method);
    rc |= gw_get_str(e, where, o, "path", 1, NULL, &ep->path);
    rc |= gw_get_uint(e, where, o, "timeout_ms", 1, 3600000, &ep->timeout_ms);
    rc |= gw_get_str(e, where, o, "stream", 0, NULL, &stream);
    if (ep->method && !gw_is_token(ep->method)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "method"), "\"%s\" is not an HTTP method",
                 ep->method);
        rc = -1;
    }
    if (stream && strcmp(stream, "ndjson") == 0) {
        ep->stream = GW_STREAM_NDJSON;
    } else if (stream && strcmp(stream, "sse") == 0) {
        ep->stream = GW_STREAM_SSE;
    } else if (stream) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "stream"),
                 "'stream' is \"ndjson\" or \"sse\", not \"%s\"", stream);
        rc = -1;
    }
    if (ep->path && load_path(pool, e, where, ep) != 0) {
        ep->path = NULL;
        rc = -1;
    }
    if (!ep->path || !ep->method)
        return -1;
    json_t *bs = json_object_get(o, "backends");
    if (!json_is_array(bs) || json_array_size(bs) == 0 || json_array_size(bs) > 64) {
        gw_error(e, bs ? gw_sub(buf, sizeof buf, where, "backends") : where,
                 "'backends' must be an array of 1 to 64 backends%s", bs ? "" : " (it is missing)");
        return -1;
    }
    if (gw_load_backends(pool, e, where, bs, ep) != 0)
        return -1;
    json_t *resp = json_object_get(o, "response");
    if (resp && !json_is_object(resp)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "response"),
                 "'response' is the answer's template: an object, not %s", gw_type_name(resp));
        return -1;
    }
    if (resp && !(ep->response = gw_jt_compile(pool, e, gw_sub(buf, sizeof buf, where, "response"),
                                               resp, ep, 0)))
        rc = -1;
    if (rc == 0 && ep->response)
        rc = check_selected(e, gw_sub(buf, sizeof buf, where, "response"), ep);
    if (rc == 0)
        rc = gw_plan_check(e, where, ep);
    if (rc == 0)
        rc = gw_answer_compile(pool, ep);
    return rc;
}
