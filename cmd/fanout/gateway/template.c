/* Templates of a gateway file: "{params.id}", "{query.q}", "{header.X-Id}",
 * "{item.id}" and "{backend.json.path[0]}" inside strings (URLs, header
 * values, JSON bodies and the answer), compiled at load and rendered per
 * request; and the JSON paths they use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

int gw_path_parse(gw_pool *pool, const char *s, gw_path *out, int allow_star)
{
    size_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == '.' || *c == '[';
    out->segs = gw_alloc(pool, cap * sizeof *out->segs);
    out->n = 0;
    if (!out->segs)
        return -1;
    const char *c = s;
    while (*c) {
        gw_seg *g = &out->segs[out->n];
        memset(g, 0, sizeof *g);
        if (*c == '[') {
            char *end;
            if (c[1] == '*' && c[2] == ']') {
                if (!allow_star)
                    return -1;
                g->star = 1;
                end = (char *)c + 2;
            } else {
                g->index = strtol(c + 1, &end, 10);
                if (end == c + 1 || *end != ']' || g->index < 0)
                    return -1;
            }
            c = end + 1;
        } else {
            size_t len = strcspn(c, ".[");
            if (len == 0)
                return -1;
            char *k = gw_alloc(pool, len + 1);
            if (!k)
                return -1;
            memcpy(k, c, len);
            k[len] = 0;
            g->key = k;
            c += len;
        }
        out->n++;
        if (*c == '.') {
            if (!c[1] || c[1] == '.' || c[1] == '[')
                return -1;
            c++;
        } else if (*c && *c != '[') {
            return -1;
        }
    }
    return 0;
}

const char *gw_path_text(gw_pool *pool, const gw_path *p)
{
    char buf[1024];
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < p->n && n < sizeof buf - 32; i++) {
        const gw_seg *g = &p->segs[i];
        if (g->star)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "[*]");
        else if (!g->key)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "[%ld]", g->index);
        else
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? "." : "", g->key);
    }
    return gw_strdup(pool, buf);
}

json_t *gw_path_get(json_t *v, const gw_path *path, size_t from, size_t to)
{
    for (size_t i = from; v && i < to && i < path->n; i++) {
        const gw_seg *g = &path->segs[i];
        v = g->key ? json_object_get(v, g->key) : json_array_get(v, (size_t)g->index);
    }
    return v;
}

static const gw_backend *backend_named(const gw_endpoint *ep, const char *name, size_t len)
{
    for (size_t i = 0; i < ep->nb; i++)
        if (ep->backends[i].name && strlen(ep->backends[i].name) == len &&
            memcmp(ep->backends[i].name, name, len) == 0)
            return &ep->backends[i];
    return NULL;
}

static long param_index(const gw_endpoint *ep, const char *name)
{
    long k = 0;
    for (size_t i = 0; i < ep->nsegs; i++) {
        if (ep->segs[i][0] != ':')
            continue;
        if (strcmp(ep->segs[i] + 1, name) == 0)
            return k;
        k++;
    }
    return -1;
}

/* One reference, the text between the braces. */
static int compile_ref(gw_pool *pool, gw_errs *e, const char *where, const char *text,
                       const gw_endpoint *ep, int item, gw_ref *r)
{
    size_t head = strcspn(text, ".[");
    const char *rest = text[head] == '.' ? text + head + 1 : text + head;
    memset(r, 0, sizeof *r);
    r->text = text;
    if (head == 0) {
        gw_error(e, where,
                 "template {%s}: a reference starts with params, query, header, item "
                 "or a backend's name",
                 text);
        return -1;
    }
    int ns = 0;
    static const struct {
        const char *name;
        gw_ref_kind kind;
    } kinds[] = {{"params", GW_REF_PARAM}, {"query", GW_REF_QUERY}, {"header", GW_REF_HEADER}};
    for (size_t k = 0; k < 3; k++) {
        if (strlen(kinds[k].name) == head && memcmp(text, kinds[k].name, head) == 0) {
            r->kind = kinds[k].kind;
            ns = 1;
        }
    }
    if (ns) {
        if (text[head] != '.' || !*rest || strchr(rest, '.') || strchr(rest, '[')) {
            gw_error(e, where, "template {%s}: %.*s takes one name: {%.*s.NAME}", text, (int)head,
                     text, (int)head, text);
            return -1;
        }
        r->name = rest;
        if (r->kind == GW_REF_PARAM && (r->backend = (int)param_index(ep, rest)) < 0) {
            gw_error(e, where, "template {%s}: the path %s has no parameter ':%s'", text, ep->path,
                     rest);
            return -1;
        }
        return 0;
    }
    if (head == 4 && memcmp(text, "item", 4) == 0) {
        if (!item) {
            gw_error(e, where, "template {%s}: {item} is only known in a backend with for_each",
                     text);
            return -1;
        }
        r->kind = GW_REF_ITEM;
    } else {
        const gw_backend *b = backend_named(ep, text, head);
        if (!b) {
            gw_error(e, where, "template {%s}: no backend named '%.*s' in endpoint %s %s", text,
                     (int)head, text, ep->method, ep->path);
            return -1;
        }
        r->kind = GW_REF_BACKEND;
        r->backend = b->index;
        r->name = b->name;
    }
    if (gw_path_parse(pool, rest, &r->path, 0) != 0) {
        gw_error(e, where, "template {%s}: '%s' is not a JSON path (a.b[0].c)", text, rest);
        return -1;
    }
    return 0;
}

int gw_tmpl_compile(gw_pool *pool, gw_errs *e, const char *where, const char *s,
                    const gw_endpoint *ep, int item, gw_tmpl *out)
{
    size_t cap = 1;
    for (const char *c = s; *c; c++)
        cap += *c == '{' || *c == '}';
    out->parts = gw_alloc(pool, (2 * cap + 1) * sizeof *out->parts);
    out->n = 0;
    out->whole = 0;
    if (!out->parts)
        return -1;
    int rc = 0;
    char *lit = gw_alloc(pool, strlen(s) + 1);
    size_t litn = 0;
    const char *c = s;
    while (lit && *c) {
        if ((c[0] == '{' && c[1] == '{') || (c[0] == '}' && c[1] == '}')) {
            lit[litn++] = *c;
            c += 2;
            continue;
        }
        if (*c == '}') {
            gw_error(e, where, "template '%s': a '}' without its '{' (write '}}' for one)", s);
            return -1;
        }
        if (*c != '{') {
            lit[litn++] = *c++;
            continue;
        }
        const char *close = strchr(c, '}');
        if (!close) {
            gw_error(e, where, "template '%s': a '{' without its '}' (write '{{' for one)", s);
            return -1;
        }
        if (litn) {
            out->parts[out->n++] = (gw_part){.lit = lit, .len = litn};
            lit = gw_alloc(pool, strlen(c) + 1);
            litn = 0;
        }
        char *text = gw_alloc(pool, (size_t)(close - c));
        if (!text || !lit)
            return -1;
        memcpy(text, c + 1, (size_t)(close - c - 1));
        text[close - c - 1] = 0;
        gw_part *p = &out->parts[out->n++];
        memset(p, 0, sizeof *p);
        if (compile_ref(pool, e, where, text, ep, item, &p->ref) != 0)
            rc = -1;
        c = close + 1;
    }
    if (!lit)
        return -1;
    if (litn)
        out->parts[out->n++] = (gw_part){.lit = lit, .len = litn};
    out->whole = out->n == 1 && !out->parts[0].lit;
    return rc;
}

gw_jt *gw_jt_compile(gw_pool *pool, gw_errs *e, const char *where, json_t *v, const gw_endpoint *ep,
                     int item)
{
    gw_jt *j = gw_alloc(pool, sizeof *j);
    if (!j)
        return NULL;
    memset(j, 0, sizeof *j);
    j->type = json_typeof(v);
    int bad = 0;
    if (json_is_object(v) || json_is_array(v)) {
        j->n = json_is_object(v) ? json_object_size(v) : json_array_size(v);
        j->kids = gw_alloc(pool, (j->n + 1) * sizeof *j->kids);
        j->keys = gw_alloc(pool, (j->n + 1) * sizeof *j->keys);
        if (!j->kids || !j->keys)
            return NULL;
        size_t i = 0;
        const char *k;
        json_t *kid;
        char sub[1024];
        if (json_is_object(v)) {
            json_object_foreach(v, k, kid)
            {
                snprintf(sub, sizeof sub, "%s.%s", where, k);
                j->keys[i] = gw_strdup(pool, k);
                gw_jt *c = gw_jt_compile(pool, e, sub, kid, ep, item);
                if (!c)
                    bad = 1;
                else
                    j->kids[i] = *c;
                i++;
            }
        } else {
            json_array_foreach(v, i, kid)
            {
                snprintf(sub, sizeof sub, "%s[%zu]", where, i);
                gw_jt *c = gw_jt_compile(pool, e, sub, kid, ep, item);
                if (!c)
                    bad = 1;
                else
                    j->kids[i] = *c;
            }
        }
    } else if (json_is_string(v)) {
        if (gw_tmpl_compile(pool, e, where, json_string_value(v), ep, item, &j->t) != 0)
            bad = 1;
    } else {
        j->lit = v; /* the gateway's document keeps it */
    }
    return bad ? NULL : j;
}

void gw_tmpl_refs(const gw_tmpl *t, void (*fn)(const gw_ref *r, void *arg), void *arg)
{
    for (size_t i = 0; i < t->n; i++)
        if (!t->parts[i].lit)
            fn(&t->parts[i].ref, arg);
}

void gw_jt_refs(const gw_jt *j, void (*fn)(const gw_ref *r, void *arg), void *arg)
{
    if (!j)
        return;
    if (j->type == JSON_STRING)
        gw_tmpl_refs(&j->t, fn, arg);
    for (size_t i = 0; (j->type == JSON_OBJECT || j->type == JSON_ARRAY) && i < j->n; i++)
        gw_jt_refs(&j->kids[i], fn, arg);
}

/* The value of a reference: a borrowed JSON value, or a string in *text. */
static json_t *ref_value(gw_scope *s, const gw_ref *r, const char **text)
{
    *text = NULL;
    switch (r->kind) {
    case GW_REF_PARAM:
        *text = s->params[r->backend];
        return NULL;
    case GW_REF_QUERY:
        *text = fan_req_query(s->rq, r->name);
        if (!*text)
            *text = "";
        return NULL;
    case GW_REF_HEADER:
        *text = fan_req_header(s->rq, r->name);
        if (!*text)
            *text = "";
        return NULL;
    case GW_REF_ITEM:
        return gw_path_get(s->item, &r->path, 0, r->path.n);
    case GW_REF_BACKEND:
        return gw_path_get(s->results[r->backend], &r->path, 0, r->path.n);
    }
    return NULL;
}

/* A JSON value as text: strings as they are, numbers in shortest form, null
 * as "", objects and arrays compact. */
static const char *value_text(fan_req *rq, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_string_value(v);
    case JSON_INTEGER:
        return fan_sprintf(rq, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL:
        return fan_sprintf(rq, "%.17g", json_real_value(v));
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "";
    default: {
        char *d = json_dumps(v, JSON_COMPACT);
        char *out = d ? fan_sprintf(rq, "%s", d) : NULL;
        free(d);
        return out;
    }
    }
}

char *gw_tmpl_render(gw_scope *s, const gw_tmpl *t, int url_escape)
{
    if (t->n == 1 && t->parts[0].lit)
        return (char *)t->parts[0].lit; /* NUL-terminated at load; no caller writes to it */
    const char *pieces[64], **pv = pieces;
    size_t lens[64], *lv = lens, total = 0;
    if (t->n > 64) {
        pv = fan_alloc(s->rq, t->n * sizeof *pv);
        lv = fan_alloc(s->rq, t->n * sizeof *lv);
        if (!pv || !lv)
            return NULL;
    }
    for (size_t i = 0; i < t->n; i++) {
        const gw_part *p = &t->parts[i];
        if (p->lit) {
            pv[i] = p->lit;
            lv[i] = p->len;
        } else {
            const char *text;
            json_t *v = ref_value(s, &p->ref, &text);
            if (!text && !v && s->null_missing)
                text = "";
            if (!text && !v) {
                s->missing = p->ref.text;
                return NULL;
            }
            if (!text)
                text = value_text(s->rq, v);
            if (text && url_escape)
                text = fan_url_escape(s->rq, text);
            if (!text)
                return NULL;
            pv[i] = text;
            lv[i] = strlen(text);
        }
        total += lv[i];
    }
    char *out = fan_alloc(s->rq, total + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        memcpy(out + n, pv[i], lv[i]);
        n += lv[i];
    }
    out[n] = 0;
    return out;
}

json_t *gw_jt_render(gw_scope *s, const gw_jt *j)
{
    if (j->type == JSON_STRING) {
        if (j->t.whole) {
            const char *text;
            json_t *v = ref_value(s, &j->t.parts[0].ref, &text);
            if (v)
                return json_deep_copy(v);
            if (text)
                return json_string(text);
            if (s->null_missing)
                return json_null();
            s->missing = j->t.parts[0].ref.text;
            return NULL;
        }
        char *text = gw_tmpl_render(s, &j->t, 0);
        return text ? json_string(text) : NULL;
    }
    if (j->type != JSON_OBJECT && j->type != JSON_ARRAY)
        return json_deep_copy(j->lit);
    json_t *out = j->type == JSON_OBJECT ? json_object() : json_array();
    for (size_t i = 0; out && i < j->n; i++) {
        json_t *kid = gw_jt_render(s, &j->kids[i]);
        if (!kid) {
            json_decref(out);
            return NULL;
        }
        if (j->type == JSON_OBJECT)
            json_object_set_new(out, j->keys[i], kid);
        else
            json_array_append_new(out, kid);
    }
    return out;
}
