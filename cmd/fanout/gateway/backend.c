/* Loading an endpoint's backends: names, URL, method, headers and body
 * templates, timeouts, for_each and batches, and the shaping of each result;
 * then the collisions that merged results would have, where the file shows
 * them. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const char *const BACKEND_KEYS[] = {
    "name",    "url",         "method",    "headers",  "forward_headers",
    "body",    "timeout_ms",  "required",  "pass_4xx", "for_each",
    "as",      "concurrency", "max_items", "batch",    "merge",
    "extract", "select",      "remove",    "rename",   "$comment",
    "retries", "hedge",       "breaker",   "cache",    "single_flight",
    NULL};
static const char *const BATCH_KEYS[] = {"param", "field", "max", "results", "match", NULL};

static int good_name(const char *s)
{
    static const char *const reserved[] = {"params", "query", "header", "item", "_fanout", NULL};
    for (size_t i = 0; reserved[i]; i++)
        if (strcmp(s, reserved[i]) == 0)
            return 0;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return 0;
    return 1;
}

/* Whether a URL's scheme, host and port are written out: templates come
 * after the first '/' of its path (or there is none). */
static int literal_origin(const gw_tmpl *t)
{
    const gw_part *p = &t->parts[0];
    if (!p->lit)
        return 0;
    const char *host = strstr(p->lit, "://");
    size_t at = host ? (size_t)(host - p->lit) + 3 : p->len;
    return t->n == 1 || (at < p->len && memchr(p->lit + at, '/', p->len - at));
}

static int load_headers(gw_pool *pool, gw_errs *e, const char *where, json_t *o, gw_endpoint *ep,
                        gw_backend *b)
{
    char buf[1024], item[1100];
    json_t *h = json_object_get(o, "headers");
    int rc = 0;
    if (h && !json_is_object(h)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "headers"),
                 "'headers' must be an object of names and values, not %s", gw_type_name(h));
        rc = -1;
    } else if (h) {
        b->hdr_names = gw_alloc(pool, (json_object_size(h) + 1) * sizeof *b->hdr_names);
        b->hdr_vals = gw_alloc(pool, (json_object_size(h) + 1) * sizeof *b->hdr_vals);
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v)
        {
            snprintf(item, sizeof item, "%s.headers.%s", where, k);
            if (!gw_is_token(k) || !json_is_string(v)) {
                gw_error(e, item, "a header needs a token name and a string value");
                rc = -1;
                continue;
            }
            b->hdr_names[b->nhdr] = gw_strdup(pool, k);
            if (gw_tmpl_compile(pool, e, item, json_string_value(v), ep, b->each,
                                &b->hdr_vals[b->nhdr]) != 0)
                rc = -1;
            b->nhdr++;
        }
    }
    json_t *f = json_object_get(o, "forward_headers");
    if (f && !json_is_array(f)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "forward_headers"),
                 "'forward_headers' must be an array of header names, not %s", gw_type_name(f));
        return -1;
    }
    if (f) {
        b->forward = gw_alloc(pool, (json_array_size(f) + 1) * sizeof *b->forward);
        size_t i;
        json_t *v;
        json_array_foreach(f, i, v)
        {
            snprintf(item, sizeof item, "%s.forward_headers[%zu]", where, i);
            if (!json_is_string(v) || !gw_is_token(json_string_value(v))) {
                gw_error(e, item, "a header name is a token such as \"Authorization\"");
                rc = -1;
                continue;
            }
            b->forward[b->nforward++] = json_string_value(v);
        }
    }
    return rc;
}

/* for_each: "src.path[*].sub", and batch. */
static int load_each(gw_pool *pool, gw_errs *e, const char *where, json_t *o, gw_endpoint *ep,
                     gw_backend *b)
{
    char buf[1024];
    const char *fe = b->each_text, *w = gw_sub(buf, sizeof buf, where, "for_each");
    size_t head = strcspn(fe, ".[");
    gw_path p;
    if (fe[head] != '.' || gw_path_parse(pool, fe + head + 1, &p, 1) != 0) {
        gw_error(e, w, "for_each is \"backend.path[*]\" or \"backend.path[*].field\", not \"%s\"",
                 fe);
        return -1;
    }
    size_t star = 0, stars = 0;
    for (size_t i = 0; i < p.n; i++)
        if (p.segs[i].star) {
            star = i;
            stars++;
        }
    if (stars != 1) {
        gw_error(e, w, "for_each \"%s\" needs exactly one [*], the array to go over", fe);
        return -1;
    }
    b->each_src = -1;
    for (size_t i = 0; i < ep->nb; i++)
        if (strlen(ep->backends[i].name) == head && memcmp(ep->backends[i].name, fe, head) == 0)
            b->each_src = (int)i;
    if (b->each_src < 0) {
        gw_error(e, w, "for_each \"%s\": no backend named '%.*s' in endpoint %s %s", fe, (int)head,
                 fe, ep->method, ep->path);
        return -1;
    }
    b->each_arr = (gw_path){p.segs, star};
    b->each_sub = (gw_path){p.segs + star + 1, p.n - star - 1};
    int rc = gw_get_str(e, where, o, "as", 0, b->name, &b->as);
    b->concurrency = 10;
    b->max_items = 1000;
    rc |= gw_get_uint(e, where, o, "concurrency", 1, 1024, &b->concurrency);
    rc |= gw_get_uint(e, where, o, "max_items", 1, 100000, &b->max_items);
    json_t *bt = json_object_get(o, "batch");
    if (!bt)
        return rc;
    const char *wb = gw_sub(buf, sizeof buf, where, "batch");
    char wbb[1024];
    snprintf(wbb, sizeof wbb, "%s", wb);
    if (!json_is_object(bt)) {
        gw_error(e, wbb, "'batch' must be an object with \"param\" or \"field\" and \"max\"");
        return -1;
    }
    rc |= gw_check_keys(e, wbb, bt, BATCH_KEYS, "batch");
    rc |= gw_get_str(e, wbb, bt, "param", 0, NULL, &b->batch_param);
    rc |= gw_get_str(e, wbb, bt, "field", 0, NULL, &b->batch_field);
    rc |= gw_get_str(e, wbb, bt, "match", 0, NULL, &b->batch_match);
    if (!json_object_get(bt, "max")) {
        gw_error(e, wbb, "'max' is required: the most items per call");
        rc = -1;
    }
    rc |= gw_get_uint(e, wbb, bt, "max", 1, 10000, &b->batch_max);
    if (!b->batch_param == !b->batch_field) {
        gw_error(e, wbb,
                 "a batch names exactly one of \"param\" (a query parameter taking the "
                 "ids, comma-separated) and \"field\" (a body field taking them as an "
                 "array)");
        rc = -1;
    }
    if (b->batch_field && b->body && b->body->type != JSON_OBJECT) {
        gw_error(e, wbb, "a batch \"field\" needs a body that is an object");
        rc = -1;
    }
    json_t *res = json_object_get(bt, "results");
    if (res) {
        char wr[1100];
        snprintf(wr, sizeof wr, "%s.results", wbb);
        rc |= gw_get_path(e, pool, wr, res, &b->batch_results);
    }
    return rc;
}

static int load_shape(gw_pool *pool, gw_errs *e, const char *where, json_t *o, gw_backend *b)
{
    char buf[1024], item[1100];
    int rc = gw_get_bool(e, where, o, "merge", &b->merge);
    json_t *x = json_object_get(o, "extract");
    if (x) {
        b->has_extract = 1;
        rc |= gw_get_path(e, pool, gw_sub(buf, sizeof buf, where, "extract"), x, &b->extract);
    }
    rc |= gw_get_paths(e, pool, where, o, "select", &b->select, &b->nselect);
    rc |= gw_get_paths(e, pool, where, o, "remove", &b->remove, &b->nremove);
    json_t *rn = json_object_get(o, "rename");
    if (rn && !json_is_object(rn)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "rename"),
                 "'rename' must be an object of JSON paths and new names, not %s",
                 gw_type_name(rn));
        return -1;
    }
    if (rn) {
        b->rename = gw_alloc(pool, (json_object_size(rn) + 1) * sizeof *b->rename);
        const char *k;
        json_t *v;
        json_object_foreach(rn, k, v)
        {
            snprintf(item, sizeof item, "%s.rename.%s", where, k);
            gw_rename *r = &b->rename[b->nrename];
            if (gw_path_parse(pool, k, &r->from, 0) != 0 || r->from.n == 0 ||
                !r->from.segs[r->from.n - 1].key || !json_is_string(v) || !*json_string_value(v)) {
                gw_error(e, item, "rename maps a JSON path ending in a member to its new name");
                rc = -1;
                continue;
            }
            r->to = json_string_value(v);
            b->nrename++;
        }
    }
    if (b->merge && b->each) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "merge"),
                 "a for_each backend's results are joined into its items: it cannot merge");
        rc = -1;
    }
    return rc;
}

static void add_dep(const gw_ref *r, void *arg)
{
    gw_backend *b = arg;
    if (r->kind != GW_REF_BACKEND)
        return;
    for (size_t i = 0; i < b->ndeps; i++)
        if (b->deps[i] == r->backend)
            return;
    b->deps[b->ndeps++] = r->backend;
}

static void find_item(const gw_ref *r, void *arg)
{
    *(int *)arg |= r->kind == GW_REF_ITEM;
}

static int load_backend(gw_pool *pool, gw_errs *e, const char *where, json_t *o, gw_endpoint *ep,
                        gw_backend *b)
{
    char buf[1024];
    int rc = gw_check_keys(e, where, o, BACKEND_KEYS, "backend");
    const char *url = NULL;
    b->required = 1;
    b->each = json_object_get(o, "for_each") != NULL;
    rc |= gw_get_str(e, where, o, "url", 1, NULL, &url);
    rc |= gw_get_str(e, where, o, "method", 0, "GET", &b->method);
    rc |= gw_get_uint(e, where, o, "timeout_ms", 1, 3600000, &b->timeout_ms);
    rc |= gw_get_bool(e, where, o, "required", &b->required);
    rc |= gw_get_bool(e, where, o, "pass_4xx", &b->pass_4xx);
    rc |= gw_get_str(e, where, o, "for_each", 0, NULL, &b->each_text);
    if (b->method && !gw_is_token(b->method)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, "method"), "\"%s\" is not an HTTP method",
                 b->method);
        rc = -1;
    }
    if (url) {
        const char *wu = gw_sub(buf, sizeof buf, where, "url");
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
            gw_error(e, wu, "a backend's url begins with http:// or https://: \"%s\"", url);
            rc = -1;
        } else if (gw_tmpl_compile(pool, e, wu, url, ep, b->each, &b->url) != 0) {
            rc = -1;
        } else if (!literal_origin(&b->url)) {
            gw_error(e, wu, "the scheme and host of a url are written out, not a template");
            rc = -1;
        }
    }
    json_t *body = json_object_get(o, "body");
    if (body && !(b->body = gw_jt_compile(pool, e, gw_sub(buf, sizeof buf, where, "body"), body, ep,
                                          b->each)))
        rc = -1;
    rc |= load_headers(pool, e, where, o, ep, b);
    if (b->each_text && load_each(pool, e, where, o, ep, b) != 0)
        rc = -1;
    if (!b->each_text && (json_object_get(o, "batch") || json_object_get(o, "as") ||
                          json_object_get(o, "concurrency") || json_object_get(o, "max_items"))) {
        gw_error(e, where, "'as', 'concurrency', 'max_items' and 'batch' need 'for_each'");
        rc = -1;
    }
    rc |= load_shape(pool, e, where, o, b);
    rc |= gw_load_resilience(pool, e, where, o, b);
    if (rc != 0)
        return -1;
    if (b->batch_max) {
        int item = 0;
        gw_tmpl_refs(&b->url, find_item, &item);
        for (size_t i = 0; i < b->nhdr; i++)
            gw_tmpl_refs(&b->hdr_vals[i], find_item, &item);
        gw_jt_refs(b->body, find_item, &item);
        if (item) {
            gw_error(e, gw_sub(buf, sizeof buf, where, "batch"),
                     "a batch call takes many items: its templates cannot name {item} (the ids "
                     "go into the batch's param or field)");
            return -1;
        }
    }
    b->deps = gw_alloc(pool, (ep->nb + 1) * sizeof *b->deps);
    gw_tmpl_refs(&b->url, add_dep, b);
    for (size_t i = 0; i < b->nhdr; i++)
        gw_tmpl_refs(&b->hdr_vals[i], add_dep, b);
    gw_jt_refs(b->body, add_dep, b);
    if (b->each)
        add_dep(&(gw_ref){.kind = GW_REF_BACKEND, .backend = b->each_src}, b);
    return 0;
}

/* The root keys a merged backend is known to bring: its selected paths'
 * first members, renamed. */
static const char *root_key(const gw_backend *b, const gw_path *p)
{
    for (size_t r = 0; r < b->nrename; r++)
        if (b->rename[r].from.n == 1 && p->segs[0].key &&
            strcmp(b->rename[r].from.segs[0].key, p->segs[0].key) == 0)
            return b->rename[r].to;
    return p->segs[0].key;
}

static int check_collisions(gw_errs *e, const char *where, gw_endpoint *ep)
{
    int rc = 0;
    for (size_t i = 0; i < ep->nb; i++) {
        const gw_backend *b = &ep->backends[i];
        if (!b->merge)
            continue;
        for (size_t s = 0; s < b->nselect; s++) {
            const char *k = root_key(b, &b->select[s]);
            if (!k)
                continue;
            char w[1100];
            snprintf(w, sizeof w, "%s.backends[%zu].select[%zu]", where, i, s);
            for (size_t j = 0; j < ep->nb; j++) {
                const gw_backend *o = &ep->backends[j];
                if (j == i)
                    continue;
                if (!o->merge && strcmp(o->name, k) == 0) {
                    gw_error(e, w,
                             "merged key '%s' collides with backend '%s', whose result sits "
                             "under that name",
                             k, o->name);
                    rc = -1;
                }
                for (size_t t = 0; j < i && o->merge && t < o->nselect; t++) {
                    const char *ok = root_key(o, &o->select[t]);
                    if (ok && strcmp(ok, k) == 0) {
                        gw_error(e, w,
                                 "merged key '%s' collides with backend '%s', which merges "
                                 "it too",
                                 k, o->name);
                        rc = -1;
                    }
                }
            }
            if (strcmp(k, "_fanout") == 0) {
                gw_error(e, w, "'_fanout' is the gateway's own key in the answer");
                rc = -1;
            }
        }
    }
    return rc;
}

int gw_load_backends(gw_pool *pool, gw_errs *e, const char *where, json_t *arr, gw_endpoint *ep)
{
    char buf[1024];
    ep->nb = json_array_size(arr);
    ep->backends = gw_alloc(pool, ep->nb * sizeof *ep->backends);
    int rc = 0;
    /* The names first: a template may name a backend listed after it. */
    for (size_t i = 0; i < ep->nb; i++) {
        json_t *o = json_array_get(arr, i);
        gw_backend *b = &ep->backends[i];
        memset(b, 0, sizeof *b);
        b->index = (int)i;
        b->name = "";
        char w[1024];
        snprintf(w, sizeof w, "%s.backends[%zu]", where, i);
        if (!json_is_object(o)) {
            gw_error(e, w, "a backend is an object, not %s", gw_type_name(o));
            rc = -1;
            continue;
        }
        if (gw_get_str(e, w, o, "name", 1, "", &b->name) != 0) {
            rc = -1;
            continue;
        }
        if (!good_name(b->name)) {
            gw_error(e, gw_sub(buf, sizeof buf, w, "name"),
                     "a backend's name is letters, digits, '_' and '-', and not params, query, "
                     "header, item or _fanout: \"%s\"",
                     b->name);
            rc = -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(ep->backends[j].name, b->name) == 0 && *b->name) {
                gw_error(e, gw_sub(buf, sizeof buf, w, "name"),
                         "the name '%s' is already backends[%zu]'s", b->name, j);
                rc = -1;
            }
    }
    if (rc != 0)
        return -1;
    for (size_t i = 0; i < ep->nb; i++) {
        char w[1024];
        snprintf(w, sizeof w, "%s.backends[%zu]", where, i);
        if (load_backend(pool, e, w, json_array_get(arr, i), ep, &ep->backends[i]) != 0)
            rc = -1;
    }
    return rc == 0 ? check_collisions(e, where, ep) : -1;
}
