/* The answer of a gateway endpoint: each backend's result shaped (extract,
 * select, remove, rename), for_each results joined into their items, placed
 * under the backend's name or merged at the root, or the endpoint's response
 * template; and _fanout with what is missing, merge collisions and timing.
 *
 * Merge rule: backends are placed in the order of the file, and a key at the
 * root keeps the value of the first backend that put it there; each later
 * one that had the same key is reported in _fanout.collisions. With a
 * merged backend or a response template the answer is one jansson value,
 * written by jansson (compact); else it is written member by member, each
 * key and value jansson's text, or a whole result's body as it came when
 * that says exactly what its parse does (reply_text()). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

/* A copy of `v` with only the values at `paths`, at the same places. */
static json_t *select_paths(json_t *v, const gw_path *paths, size_t n)
{
    json_t *out = json_object();
    for (size_t p = 0; p < n; p++) {
        const gw_path *path = &paths[p];
        json_t *got = gw_path_get(v, path, 0, path->n);
        if (!got || !path->segs[path->n - 1].key)
            continue;
        json_t *at = out;
        int ok = 1;
        for (size_t k = 0; k + 1 < path->n && ok; k++) {
            if (!path->segs[k].key) {
                ok = 0;
                break;
            }
            json_t *next = json_object_get(at, path->segs[k].key);
            if (!next) {
                next = json_object();
                json_object_set_new(at, path->segs[k].key, next);
            }
            ok = json_is_object(next);
            at = next;
        }
        if (ok)
            json_object_set(at, path->segs[path->n - 1].key, got);
    }
    return out;
}

json_t *gw_shape(const gw_backend *b, json_t *v)
{
    if (b->has_extract)
        v = gw_path_get(v, &b->extract, 0, b->extract.n);
    if (!v)
        return json_null();
    if (!b->nselect && !b->nremove && !b->nrename)
        return json_incref(v);
    json_t *out = b->nselect && json_is_object(v) ? select_paths(v, b->select, b->nselect)
                                                  : json_deep_copy(v);
    for (size_t i = 0; i < b->nremove; i++) {
        const gw_path *p = &b->remove[i];
        json_t *parent = gw_path_get(out, p, 0, p->n - 1);
        const gw_seg *last = &p->segs[p->n - 1];
        if (last->key)
            json_object_del(parent, last->key);
        else
            json_array_remove(parent, (size_t)last->index);
    }
    for (size_t i = 0; i < b->nrename; i++) {
        const gw_path *p = &b->rename[i].from;
        json_t *parent = gw_path_get(out, p, 0, p->n - 1);
        json_t *val = json_object_get(parent, p->segs[p->n - 1].key);
        if (val) {
            json_incref(val);
            json_object_del(parent, p->segs[p->n - 1].key);
            json_object_set_new(parent, b->rename[i].to, val);
        }
    }
    return out;
}

/* Whether every element of a for_each's array is an object, which its
 * results are then joined into. */
static int joins(gw_run *r, int e)
{
    const gw_bstate *s = &r->bs[e];
    if (r->bs[e].state != B_OK || !s->nitems)
        return 0;
    for (size_t k = 0; k < s->nitems; k++)
        if (!json_is_object(json_array_get(s->items, k)))
            return 0;
    return 1;
}

/* Backend i's value in the answer: a new reference, NULL when it has none. */
static json_t *value_of(gw_run *r, int i)
{
    const gw_endpoint *ep = r->ep;
    const gw_backend *b = &ep->backends[i];
    if (r->bs[i].state != B_OK)
        return NULL;
    if (b->each)
        return json_incref(r->bs[i].result); /* each result is shaped already */
    json_t *v = r->bs[i].result;
    int joined = 0;
    for (size_t e = 0; e < ep->nb; e++)
        if (ep->backends[e].each && ep->backends[e].each_src == i && joins(r, (int)e)) {
            if (!joined)
                v = json_deep_copy(v);
            joined = 1;
            const gw_backend *eb = &ep->backends[e];
            json_t *arr = gw_path_get(v, &eb->each_arr, 0, eb->each_arr.n);
            for (size_t k = 0; k < json_array_size(arr); k++)
                json_object_set(json_array_get(arr, k), eb->as, json_array_get(r->bs[e].result, k));
        }
    json_t *out = gw_shape(b, v);
    if (joined)
        json_decref(v);
    return out;
}

json_t *gw_errors_json(gw_run *r)
{
    json_t *errs = json_array();
    for (size_t i = 0; i < r->ep->nb; i++) {
        const gw_bstate *s = &r->bs[i];
        const char *name = r->ep->backends[i].name;
        if (s->state == B_FAILED) {
            json_t *e = json_pack("{s:s, s:s}", "backend", name, "error", s->kind);
            if (s->status)
                json_object_set_new(e, "status", json_integer(s->status));
            if (s->message)
                json_object_set_new(e, "message", json_string(s->message));
            json_array_append_new(errs, e);
        }
        size_t k;
        json_t *ie;
        json_array_foreach(s->item_errors, k, ie)
        {
            json_t *e = json_deep_copy(ie);
            json_object_set_new(e, "backend", json_string(name));
            json_array_append_new(errs, e);
        }
    }
    return errs;
}

json_t *gw_timing_json(gw_run *r)
{
    json_t *t = json_object();
    for (size_t i = 0; i < r->ep->nb; i++) {
        const gw_bstate *s = &r->bs[i];
        const char *outcome = s->state == B_OK        ? "ok"
                              : s->state == B_FAILED  ? s->kind
                              : s->state == B_RUNNING ? "running"
                                                      : "not_started";
        json_t *o = json_pack("{s:s, s:i, s:i}", "outcome", outcome, "calls", s->calls, "attempts",
                              s->attempts);
        if (s->flags & FAN_CALL_RETRIED)
            json_object_set_new(o, "retried", json_true());
        if (s->flags & FAN_CALL_HEDGED)
            json_object_set_new(o, "hedged", json_true());
        if (s->flags & FAN_CALL_CACHED)
            json_object_set_new(o, "cached", json_true());
        if (s->flags & FAN_CALL_STALE)
            json_object_set_new(o, "stale", json_true());
        if (s->flags & FAN_CALL_COALESCED)
            json_object_set_new(o, "coalesced", json_true());
        if (s->t0) {
            json_object_set_new(o, "start_ms", json_real((s->t0 - r->t0) * 1000.0));
            if (s->t1)
                json_object_set_new(o, "duration_ms", json_real((s->t1 - s->t0) * 1000.0));
        }
        json_object_set_new(t, r->ep->backends[i].name, o);
    }
    return t;
}

/* The answer's text, grown with realloc. */
typedef struct text {
    char *p;
    size_t n, cap;
    int bad;
} text;

static void put(text *t, const void *s, size_t len)
{
    if (t->bad || len == 0)
        return;
    if (t->n + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->n + len + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->bad = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, len);
    t->n += len;
    t->p[t->n] = 0;
}

static int put_cb(const char *s, size_t len, void *arg)
{
    put(arg, s, len);
    return 0;
}

static void put_json(text *t, json_t *v)
{
    if (json_dump_callback(v, put_cb, t, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        t->bad = 1;
}

/* Whether `key` is taken at the root, else takes it for backend `b`. With
 * no merged backend (owner NULL) names are unique: nothing is taken. */
static const char *taken(json_t *owner, const char *key, const char *b)
{
    if (!owner)
        return NULL;
    json_t *first = json_object_get(owner, key);
    if (first)
        return json_string_value(first);
    if (strcmp(key, "_fanout") == 0)
        return "_fanout";
    json_object_set_new(owner, key, json_string(b));
    return NULL;
}

/* The default answer: each backend's value under its name, merged ones'
 * members at the root, in the order of the file (a new object; the keys
 * are unique, each taken once). */
static json_t *default_shape(gw_run *r, json_t **values, json_t *collisions)
{
    const gw_endpoint *ep = r->ep;
    json_t *owner = NULL, *answer = json_object();
    for (size_t i = 0; i < ep->nb && !owner; i++)
        if (ep->backends[i].merge)
            owner = json_object();
    for (size_t i = 0; answer && i < ep->nb; i++) {
        const gw_backend *b = &ep->backends[i];
        json_t *v = values[i];
        const char *first;
        if (r->bs[i].state != B_OK || (b->each && joins(r, (int)i)))
            continue;
        if (b->merge && json_is_object(v)) {
            const char *k;
            json_t *kv;
            json_object_foreach(v, k, kv)
            {
                if ((first = taken(owner, k, b->name))) {
                    json_array_append_new(collisions, json_pack("{s:s, s:s, s:s}", "key", k, "kept",
                                                                first, "dropped", b->name));
                    continue;
                }
                json_object_set(answer, k, kv);
            }
            continue;
        }
        if ((first = taken(owner, b->name, b->name))) {
            json_array_append_new(collisions, json_pack("{s:s, s:s, s:s}", "key", b->name, "kept",
                                                        first, "dropped", b->name));
            continue;
        }
        json_object_set_new(answer, b->name, v ? json_incref(v) : json_null());
    }
    json_decref(owner);
    return answer;
}

/* _fanout, or NULL when there is nothing to say. */
static json_t *meta_json(gw_run *r, json_t *collisions)
{
    json_t *meta = NULL;
    int failed = 0;
    for (size_t i = 0; i < r->ep->nb; i++)
        failed |= r->bs[i].state == B_FAILED || r->bs[i].item_errors != NULL;
    if (failed || json_array_size(collisions) || r->timing)
        meta = json_object();
    if (failed)
        json_object_set_new(meta, "errors", gw_errors_json(r));
    if (json_array_size(collisions))
        json_object_set(meta, "collisions", collisions);
    if (r->timing)
        json_object_set_new(meta, "timing", gw_timing_json(r));
    return meta;
}

/* The answer as one jansson value (a new reference), or NULL. */
static json_t *answer_json(gw_run *r)
{
    const gw_endpoint *ep = r->ep;
    json_t **values = fan_alloc(r->rq, ep->nb * sizeof *values);
    if (!values)
        return NULL;
    for (size_t i = 0; i < ep->nb; i++)
        values[i] = value_of(r, (int)i);
    /* Only merged backends can collide. */
    json_t *collisions = NULL, *answer, *meta;
    for (size_t i = 0; i < ep->nb && !collisions; i++)
        if (ep->backends[i].merge)
            collisions = json_array();
    if (ep->response) {
        gw_scope s = r->scope;
        s.results = values;
        s.null_missing = 1;
        answer = gw_jt_render(&s, ep->response);
    } else {
        answer = default_shape(r, values, collisions);
    }
    meta = meta_json(r, collisions); /* after the shape, which finds the collisions */
    if (answer && meta)
        json_object_set(answer, "_fanout", meta);
    json_decref(meta);
    for (size_t i = 0; i < ep->nb; i++)
        json_decref(values[i]);
    json_decref(collisions);
    return answer;
}

/* The JSON text of the string `s`, written by jansson, in the pool. */
static const char *string_text(gw_pool *pool, const char *s, size_t *len)
{
    json_t *j = json_string(s);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    char *out = d ? gw_strdup(pool, d) : NULL;
    free(d);
    *len = out ? strlen(out) : 0;
    return out;
}

int gw_answer_compile(gw_pool *pool, gw_endpoint *ep)
{
    ep->text_answer = !ep->response && !ep->stream;
    for (size_t i = 0; i < ep->nb; i++)
        ep->text_answer &= !ep->backends[i].merge;
    if (!ep->text_answer)
        return 0;
    if (!(ep->meta_key = string_text(pool, "_fanout", &ep->meta_key_len)))
        return -1;
    for (size_t i = 0; i < ep->nb; i++) {
        gw_backend *b = &ep->backends[i];
        if (!(b->key_text = string_text(pool, b->name, &b->key_len)))
            return -1;
        b->whole = !b->each && !b->has_extract && !b->nselect && !b->nremove && !b->nrename;
        for (size_t k = 0; k < ep->nb; k++)
            if (ep->backends[k].each && ep->backends[k].each_src == (int)i)
                b->whole = 0; /* its items may get results joined into them */
    }
    return 0;
}

/* The default answer without a merged backend, written member by member:
 * each backend's name and value in the order of the file, then "_fanout"
 * and its value, in braces. The same members as default_shape() gives,
 * each name jansson's text (written at load) and each value jansson's,
 * except a whole result whose body says exactly what it does (unique
 * keys, run.c): that body's text is the value, as the upstream spaced it. */
static int reply_text(gw_run *r)
{
    const gw_endpoint *ep = r->ep;
    text t = {0};
    int first = 1;
    put(&t, "{", 1);
    for (size_t i = 0; i < ep->nb; i++) {
        const gw_backend *b = &ep->backends[i];
        const gw_bstate *s = &r->bs[i];
        if (s->state != B_OK || (b->each && joins(r, (int)i)))
            continue;
        if (!first)
            put(&t, ",", 1);
        first = 0;
        put(&t, b->key_text, b->key_len);
        put(&t, ":", 1);
        if (s->text) {
            put(&t, s->text, s->text_len);
            continue;
        }
        json_t *v = value_of(r, (int)i);
        put_json(&t, v ? v : json_null());
        json_decref(v);
    }
    json_t *meta = meta_json(r, NULL);
    if (meta) {
        if (!first)
            put(&t, ",", 1);
        put(&t, ep->meta_key, ep->meta_key_len);
        put(&t, ":", 1);
        put_json(&t, meta);
        json_decref(meta);
    }
    put(&t, "}", 1);
    int rc = t.bad ? -1 : fan_reply(r->rq, 200, "application/json", t.p, t.n);
    free(t.p);
    return rc == 0 ? 0 : -1;
}

int gw_reply_answer(gw_run *r)
{
    if (r->ep->text_answer)
        return reply_text(r);
    json_t *answer = answer_json(r); /* jansson writes it straight into the request's arena */
    return answer && fan_reply_json(r->rq, 200, answer) == 0 ? 0 : -1;
}
