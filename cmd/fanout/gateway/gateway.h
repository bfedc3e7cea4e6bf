/* The aggregation gateway behind `fanout serve` and `fanout check`: a JSON
 * file of endpoints, each a graph of backend calls, compiled at load into the
 * structures below and run by one handler on the public API (fanout.h). The
 * files: pos.c (line and column of every key of the file, for error
 * messages only), config.c (load,
 * endpoints, errors), check.c (the member checks), backend.c (backends),
 * resilience.c (retries and hedges), template.c (templates and JSON paths),
 * plan.c (the dependency graph and the plan), run.c (a request: routing,
 * starting calls as their inputs arrive, status), shape.c (the answer),
 * stream.c (streamed parts), serve.c (the two commands). All JSON, the
 * file's and every backend's body, is parsed and written by jansson. */
#ifndef FANOUT_GATEWAY_H
#define FANOUT_GATEWAY_H

#include <fanout.h>

/* Every allocation of a compiled gateway comes from its pool, freed at once. */
typedef struct gw_pool gw_pool;

/* One step of a JSON path: a member (key) or an array index; star is the
 * [*] of a for_each. */
typedef struct gw_seg {
    const char *key; /* NULL for an index */
    long index;
    int star;
} gw_seg;

typedef struct gw_path {
    gw_seg *segs;
    size_t n;
} gw_path;

typedef enum gw_ref_kind {
    GW_REF_PARAM,   /* {params.x}: a :x segment of the endpoint's path */
    GW_REF_QUERY,   /* {query.x}: a query parameter of the client's request */
    GW_REF_HEADER,  /* {header.x}: a header of the client's request */
    GW_REF_BACKEND, /* {name.path}: a value of another backend's response */
    GW_REF_ITEM,    /* {item.path}: the item of a for_each */
} gw_ref_kind;

typedef struct gw_ref {
    gw_ref_kind kind;
    const char *name; /* parameter, query or header name; backend name */
    int backend;      /* index of the backend, for GW_REF_BACKEND */
    gw_path path;     /* within the backend's response or the item */
    const char *text; /* the reference as written, for errors */
} gw_ref;

/* A string template: literal pieces and references, in order. */
typedef struct gw_part {
    const char *lit; /* NULL for a reference */
    size_t len;
    gw_ref ref;
} gw_part;

typedef struct gw_tmpl {
    gw_part *parts;
    size_t n;
    int whole; /* the string is exactly one reference: in JSON it keeps its type */
} gw_tmpl;

/* A JSON template: JSON whose strings are templates. */
typedef struct gw_jt {
    int type; /* JSON_OBJECT, JSON_ARRAY, JSON_STRING (a template) or another literal */
    json_t *lit;
    const char **keys;
    struct gw_jt *kids;
    size_t n;
    gw_tmpl t;
} gw_jt;

typedef struct gw_rename {
    gw_path from;
    const char *to;
} gw_rename;

/* A circuit breaker a backend asks for. A breaker is its origin's in
 * fanout (fan_origin_opts), so the backends of one origin share it: the
 * file may set it on several of them only alike (config.c), and serve.c
 * sets it on the origin. */
typedef struct gw_breaker {
    const char *origin; /* "scheme://host:port", lowercase, the port written out */
    const char *where;  /* the first backend's "breaker", for errors */
    unsigned failures, error_percent, window_ms, min_calls, cooldown_ms;
} gw_breaker;

typedef struct gw_backend {
    const char *name;
    int index;
    const char *method;
    gw_tmpl url;
    const char **hdr_names;
    gw_tmpl *hdr_vals;
    size_t nhdr;
    const char **forward; /* client headers passed on, by name */
    size_t nforward;
    gw_jt *body;
    unsigned timeout_ms; /* 0: what is left of the endpoint's */
    int required;
    int pass_4xx;
    /* for_each: called once per element of an array of another backend */
    int each;         /* 1 when for_each is set */
    int each_src;     /* the backend whose response holds the array */
    gw_path each_arr; /* the array within it */
    gw_path each_sub; /* the item within an element ("" = the element) */
    const char *each_text;
    const char *as; /* the name a result is joined under */
    unsigned concurrency;
    unsigned max_items;
    /* batch: one call for up to batch_max items */
    unsigned batch_max;      /* 0 = not batched */
    const char *batch_param; /* query parameter taking the ids, comma-separated */
    const char *batch_field; /* or body field taking them as an array */
    gw_path batch_results;   /* the array of results in the response ("" = the body) */
    const char *batch_match; /* member of a result holding its id; NULL = by position */
    /* shaping */
    int merge;
    gw_path extract;
    int has_extract;
    gw_path *select;
    size_t nselect;
    gw_path *remove;
    size_t nremove;
    gw_rename *rename;
    size_t nrename;
    int *deps; /* backends it reads, by index, no duplicates */
    size_t ndeps;
    int depth;               /* its stage in the plan: 0 for no input */
    fan_retry_policy *retry; /* retries and hedge, or NULL (resilience.c) */
    int cache;               /* fan_call_opts.cache: 1 on, -1 off, 0 the origin's */
    unsigned cache_ttl_ms, cache_swr_ms, cache_sie_ms;
    const char **cache_vary; /* NULL-terminated, or NULL */
    int coalesce;            /* single_flight: fan_call_opts.coalesce */
    gw_breaker *breaker;     /* its origin's breaker, or NULL (resilience.c) */
    /* The answer's text (shape.c): its name as a JSON string, written by
     * jansson at load, and whether its result sits in the answer whole and
     * unshaped, so that the body's own text can stand for it. */
    const char *key_text;
    size_t key_len;
    int whole;
} gw_backend;

enum { GW_STREAM_NONE, GW_STREAM_NDJSON, GW_STREAM_SSE };

typedef struct gw_endpoint {
    const char *method;
    const char *path;
    const char **segs; /* the path's segments; ":x" a parameter */
    size_t nsegs;
    unsigned timeout_ms;
    int stream;
    gw_backend *backends;
    size_t nb;
    gw_jt *response;  /* the answer's template, or NULL for the default shape */
    size_t max_calls; /* the most calls one request of it makes */
    /* The default shape without a merged backend: the answer is written
     * member by member (shape.c), "_fanout" as jansson wrote it at load. */
    int text_answer;
    const char *meta_key;
    size_t meta_key_len;
} gw_endpoint;

typedef struct gw {
    gw_pool *pool;
    const char *file;
    gw_endpoint *eps;
    size_t n;
    int debug; /* the Fanout-Debug request header is honoured */
    gw_breaker **breakers; /* one per origin whose backends ask for one */
    size_t nbreakers;
    /* Requests running on it (in this process), and whether a reload
     * replaced it: it is freed when both say it is unused (gw_release()). */
    unsigned long refs;
    int retired;
} gw;

/* Drops a request's hold on `g` (or, with retire, the app's), freeing it
 * once it is retired and nothing holds it. */
void gw_release(gw *g, int retire);

/* pos.c: where each value of a JSON text is. */
typedef struct gw_pos gw_pos;
gw_pos *gw_pos_index(const char *text, size_t len);
/* The line and column (1-based) of the key of `path` ("endpoints[0].path"),
 * or of the value for an array element; 0, 0 when unknown. */
void gw_pos_find(const gw_pos *p, const char *path, int *line, int *col);
void gw_pos_free(gw_pos *p);

/* pool (config.c) */
void *gw_alloc(gw_pool *p, size_t size);
char *gw_strdup(gw_pool *p, const char *s);

/* config.c: loads and checks `file`. Returns the gateway, or NULL with every
 * error written to `errs` (a JSON array of "FILE:LINE:COL: message" strings,
 * owned by the caller). */
gw *gw_load(const char *file, json_t *errs);
void gw_free(gw *g);

/* Errors found while compiling, with the JSON path where they are. */
typedef struct gw_errs {
    json_t *list;
    const gw_pos *pos;
    const char *file;
} gw_errs;
void gw_error(gw_errs *e, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* template.c */
int gw_path_parse(gw_pool *pool, const char *s, gw_path *out, int allow_star);
/* Compiles `s`; names of backends resolve against `ep` (its first `nb` are
 * known), `item` says whether {item...} is allowed. Errors go to `e` under
 * `where`. Returns 0 or -1. */
int gw_tmpl_compile(gw_pool *pool, gw_errs *e, const char *where, const char *s,
                    const gw_endpoint *ep, int item, gw_tmpl *out);
gw_jt *gw_jt_compile(gw_pool *pool, gw_errs *e, const char *where, json_t *v, const gw_endpoint *ep,
                     int item);
/* Calls fn for every reference of a template. */
void gw_tmpl_refs(const gw_tmpl *t, void (*fn)(const gw_ref *r, void *arg), void *arg);
void gw_jt_refs(const gw_jt *j, void (*fn)(const gw_ref *r, void *arg), void *arg);
/* The value at `path` in `v` (borrowed), or NULL. */
json_t *gw_path_get(json_t *v, const gw_path *path, size_t from, size_t to);
const char *gw_path_text(gw_pool *pool, const gw_path *p);

/* What a rendering reads: the request and the results so far. */
typedef struct gw_scope {
    fan_req *rq;
    const gw_endpoint *ep;
    const char **params; /* by position of the endpoint's parameters */
    json_t **results;    /* by backend index; NULL while absent */
    json_t *item;        /* the for_each item, or NULL */
    const char *missing; /* set to the reference that had no value */
    int null_missing;    /* a reference without a value renders as null (or "") */
} gw_scope;

/* Renders a template into the request's arena; values escaped for a URL when
 * `url_escape`. NULL when a reference has no value (scope->missing says
 * which) or out of memory. */
char *gw_tmpl_render(gw_scope *s, const gw_tmpl *t, int url_escape);
/* Renders a JSON template: a new reference, or NULL as above. */
json_t *gw_jt_render(gw_scope *s, const gw_jt *j);

/* resilience.c: a backend's "retries", "hedge", "cache", "single_flight"
 * and "breaker". */
int gw_load_resilience(gw_pool *pool, gw_errs *e, const char *where, json_t *o, gw_backend *b);
/* Gathers the backends' breakers into g->breakers, one per origin; an
 * origin whose backends set it otherwise is an error. Returns 0 or -1. */
int gw_breakers_collect(gw_errs *e, gw *g);

/* serve.c: sets each origin's breaker of `g` on the app (over the
 * command line's options of that origin), and gives back the command
 * line's options to an origin that `g` no longer sets. Returns 0, or -1
 * with a log line. */
int gw_breakers_apply(fan_app *app, const gw *g);

/* plan.c */
/* Orders the endpoint's backends, records an error for a cycle. */
int gw_plan_check(gw_errs *e, const char *where, gw_endpoint *ep);
json_t *gw_plan_json(const gw *g);
json_t *gw_plan_endpoint(const gw_endpoint *ep);

/* shape.c: prepares the writing of the endpoint's answer (after its
 * backends and response are loaded). Returns 0, or -1 out of memory. */
int gw_answer_compile(gw_pool *pool, gw_endpoint *ep);

/* run.c: the handler of every route of `fanout serve`. */
void gw_handler(fan_req *rq);

#endif
