/* The call API: starting upstream calls for a request and awaiting them. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/resilience.h"
#include "core/token.h"
#include "runtime/metrics.h"

/* Plain http:// goes to the lean transport, unless the URL carries
 * credentials, FANOUT_TRANSPORT=curl says
 * otherwise or a proxy is configured in the environment (curl honours
 * http_proxy; the lean transport does not speak to proxies). Everything else
 * (https) goes to curl. The environment is read once per thread. */
static const fan__transport *transport_for(const char *url)
{
    static _Thread_local int lean_ok = -1;
    if (lean_ok < 0) {
        const char *t = getenv("FANOUT_TRANSPORT");
        lean_ok = !(t && strcmp(t, "curl") == 0) && !getenv("http_proxy") &&
                  !getenv("HTTP_PROXY") && !getenv("all_proxy") && !getenv("ALL_PROXY");
    }
    if (lean_ok && strncasecmp(url, "http://", 7) == 0 &&
        !memchr(url + 7, '@', strcspn(url + 7, "/?#"))) /* credentials: curl's business */
        return &fan__lean_transport;
    return &fan__curl_transport;
}

static void call_release(void *arg)
{
    fan_call *c = arg;
    if (!c->json_arena)
        fan__json_decref(c->json);
    fan__buf_free(&c->resp_body);
    if (c->shared_body)
        fan__shared_body_unref(c->shared_body);
}

/* The response body: the call's own, or the one it shares. */
static const fan__buf *body_of(const fan_call *c)
{
    return c->shared_body ? &c->shared_body->buf : &c->resp_body;
}

/* A call waiting for a slot has nothing under way: it ends here; one
 * waiting in the cache or for a shared exchange leaves it alone. */
static void cancel(fan_call *c)
{
    if (c->lookup || c->flight)
        fan__cache_cancel(c);
    else if (c->att)
        fan__attempts_cancel(c);
    else if (c->queued)
        fan__call_finish(c, FAN_ECANCELED);
    else
        c->tp->cancel(c);
}

static void call_cancel_op(fan__op *op)
{
    cancel(fan__container_of(op, fan_call, op));
}

void fan__call_finish(fan_call *c, int error)
{
    if (c->parent) {
        fan__attempt_done(c, error); /* a try: its call decides */
        return;
    }
    fan_req *rq = c->rq;
    c->error = error;
    c->finished = fan_now();
    /* A plain call's exchange counts for its origin; a probe that never
     * went out (refused by the queue, cancelled while waiting) hands the
     * probe back. A call of tries counted each try already. */
    if (c->health && ((!c->policy && c->attempts) || c->probe))
        fan__health_exchange_end(c->health, c);
    if (c->counted)
        c->health->calls--;
    if (c->leads)
        fan__flight_done(c); /* its waiters get their copies first */
    c->task->calls_running--;
    fan__list_push(&c->task->completed, &c->done_link);
    fan__rt_of(rq)->ncalls++;
    fan__rt_of(rq)->ncalls_failed += error != 0;
    if (error)
        fan_log(FAN_LOG_DEBUG, "call %s failed: %s", c->name, fan_strerror(error));
    fan__call_observe_end(c);
    fan__slots_release(c); /* may launch waiting calls, of any request */
    fan__op_end(rq, &c->op); /* may resume the handler: the last thing done here */
}

/* How byte `ch` is written in a log line: NULL for as it is, else an
 * escape (in x for the \xNN form). */
static const char *escape(unsigned char ch, char x[5])
{
    switch (ch) {
    case '\r': return "\\r";
    case '\n': return "\\n";
    case '\t': return "\\t";
    case '"': return "\\\"";
    case '\\': return "\\\\";
    }
    if (ch >= 0x20 && ch != 0x7f)
        return NULL;
    snprintf(x, 5, "\\x%02x", ch);
    return x;
}

/* Copies s[0..len) into out[cap] for a log line, escaped (a URL or method
 * must not forge a line: the text log writes messages as they are), cut
 * with "..." when it does not fit. Returns out. */
static const char *shown(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char x[5];
        const char *esc = escape((unsigned char)s[i], x);
        size_t m = esc ? strlen(esc) : 1;
        if (n + m + 4 > cap) {
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
        memcpy(out + n, esc ? esc : s + i, m);
        n += m;
    }
    out[n] = '\0';
    return out;
}

/* Logs why the call is refused, naming it, and returns FAN_EINVAL. */
static int refuse(const fan_call *c, const char *fmt, ...)
{
    char name[128], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fan_log(FAN_LOG_WARN, "call %s: %s", shown(c->name, strlen(c->name), name, sizeof name), why);
    return FAN_EINVAL;
}

/* Only http and https reach an upstream, and the URL goes into a request
 * line as it is: a space or a control byte would end or split it. */
static int check_url(const fan_call *c)
{
    const char *u = c->url;
    if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)
        return refuse(c, "the URL is not http:// or https://");
    for (size_t i = 0; u[i]; i++) {
        unsigned char ch = (unsigned char)u[i];
        if (ch == ' ')
            return refuse(c, "URL has a space at offset %zu", i);
        if (ch < 0x20 || ch == 0x7f)
            return refuse(c, "URL has byte 0x%02x at offset %zu", ch, i);
    }
    return 0;
}

/* Each line must be "Name: value" with a token name and no CR or LF: curl
 * sends the lines as they are, so a CR LF in a value would add a header
 * (or a whole request) of the caller's input to the upstream's. A NUL
 * cannot occur: the lines are C strings. */
static int check_headers(const fan_call *c)
{
    char name[64];
    for (unsigned i = 0; i < c->nchecked; i++) {
        const char *h = c->headers[i];
        size_t len = strlen(h), n = fan__token_span(h, len);
        const char *colon = memchr(h, ':', len);
        if (!colon)
            return refuse(c, "header %u has no ':'", i + 1);
        if (n == 0 || h + n != colon)
            return refuse(c, "header %u name \"%s\" is not a token", i + 1,
                          shown(h, (size_t)(colon - h), name, sizeof name));
        const char *bad = strpbrk(colon, "\r\n");
        if (bad)
            return refuse(c, "header %u (%.*s) has %s in its value", i + 1, (int)n, h,
                          *bad == '\r' ? "a CR" : "an LF");
        /* The transports frame the body themselves: a second length from
         * the caller would make the upstream and the transport read two
         * different messages (request smuggling). */
        if ((n == 14 && strncasecmp(h, "Content-Length", n) == 0) ||
            (n == 17 && strncasecmp(h, "Transfer-Encoding", n) == 0))
            return refuse(c, "header %u (%.*s) is set by the transport", i + 1, (int)n, h);
    }
    return 0;
}

/* The one check of every upstream request, before any transport sees it,
 * so that both send the same requests and refuse the same ones. Returns 0,
 * or FAN_EINVAL with a log line saying what is wrong. Kept out of line, as
 * fill() and resilience() are: inlined into start(), their locals would stay
 * on the stack under the transport's start, deeper than the first page of a
 * handler's stack holds (FAN__CORO_TOP). */
static __attribute__((noinline)) int check_request(const fan_call *c)
{
    char m[64];
    size_t mlen = strlen(c->method);
    if (mlen == 0 || fan__token_span(c->method, mlen) != mlen)
        return refuse(c, "method \"%s\" is not a token", shown(c->method, mlen, m, sizeof m));
    int rc = check_url(c);
    return rc ? rc : check_headers(c);
}

/* Copies the caller's header lines into the arena, with the `nextra`
 * lines of `extra` (NULL ones skipped) after them. Sets *out to NULL when
 * there is none. */
static int copy_headers(fan__arena *a, const char *const *h, const char *const *extra,
                        size_t nextra, const char *const **out)
{
    size_t n = 0, m = 0;
    while (h && h[n])
        n++;
    for (size_t i = 0; i < nextra; i++)
        m += extra[i] != NULL;
    *out = NULL;
    if (n == 0 && m == 0)
        return 0;
    const char **lines = fan__arena_alloc(a, (n + m + 1) * sizeof *lines);
    if (!lines)
        return FAN_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(lines[i] = fan__arena_strdup(a, h[i])))
            return FAN_ENOMEM;
    for (size_t i = 0; i < nextra; i++)
        if (extra[i])
            lines[n++] = extra[i];
    lines[n] = NULL;
    *out = lines;
    return 0;
}

static int sets_content_type(const char *const *h)
{
    for (; h && *h; h++)
        if (strncasecmp(*h, "Content-Type:", 13) == 0)
            return 1;
    return 0;
}

/* The compact dump of `json` into the arena, as fan_reply_json() does: in
 * place when it fits the current chunk, else into an allocation of the size
 * the first dump reported. Returns 0, FAN_EINVAL when jansson cannot dump
 * it, or FAN_ENOMEM. */
static int dump_json(fan_call *c, const json_t *json)
{
    fan__arena *a = fan__req_arena(c->rq);
    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t room;
    char *at = fan__arena_room(a, &room);
    size_t n = fan__json_dumpb(json, at, room, flags);
    if (n == 0)
        return FAN_EINVAL; /* no JSON text is empty: jansson failed */
    int dumped = n <= room;
    if (!(at = fan__arena_alloc(a, n))) /* `at` again when the dump fit */
        return FAN_ENOMEM;
    if (!dumped)
        fan__json_dumpb(json, at, n, flags);
    c->body = at;
    c->body_len = n;
    return 0;
}

/* The call's method: a common one is referenced, any other copied. */
static const char *call_method(fan__arena *a, const char *m)
{
    static const char *const common[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH",
                                         "OPTIONS"};
    if (!m)
        return common[0];
    for (size_t i = 0; i < sizeof common / sizeof *common; i++)
        if (strcmp(m, common[i]) == 0)
            return common[i];
    return fan__arena_strdup(a, m);
}

/* Fills the call in from the options. A `url_kept` URL is the request
 * arena's already (fan_get() formatted it there) and is not copied again.
 * Returns 0, FAN_ENOMEM, or FAN_EINVAL (logged) for a JSON body that is
 * missing (`need_json`: fan_post_json()), comes with `body` or cannot be
 * serialized. Out of line, as check_request() says. */
static __attribute__((noinline)) int fill(fan_call *c, const char *url, int url_kept,
                                          const fan_call_opts *o, int need_json)
{
    static const fan_call_opts none = {0};
    fan__arena *a = fan__req_arena(c->rq);
    const fan_limits *lim = fan__rt_of(c->rq)->limits;
    o = o ? o : &none;
    c->url = url_kept ? url : fan__arena_strdup(a, url);
    c->name = o->name ? fan__arena_strdup(a, o->name) : c->url;
    c->method = call_method(a, o->method);
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : lim->call_timeout_ms;
    c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : lim->connect_timeout_ms;
    c->max_body = o->max_body_bytes ? o->max_body_bytes : lim->max_call_body_bytes;
    c->use_coalesce = o->coalesce;
    c->use_cache = o->cache;
    c->cache_ttl_ms = o->cache_ttl_ms;
    c->swr_ms = o->stale_while_revalidate_ms;
    c->sie_ms = o->stale_if_error_ms;
    if (!c->url || !c->name || !c->method ||
        copy_headers(a, o->cache_vary, NULL, 0, &c->cache_vary) != 0)
        return FAN_ENOMEM;
    const char *extra[1] = {
        o->json && !sets_content_type(o->headers) ? "Content-Type: application/json" : NULL};
    if (copy_headers(a, o->headers, extra, 1, &c->headers) != 0)
        return FAN_ENOMEM;
    fan__call_trace_headers(c, o->headers); /* the transport writes the lines */
    for (const char *const *h = o->headers; h && *h; h++)
        c->nchecked++;
    c->nchecked += extra[0] != NULL;
    if (need_json && !o->json)
        return refuse(c, "no JSON body (NULL)");
    if (o->json && o->body)
        return refuse(c, "both a body and a JSON body");
    if (o->json) {
        int rc = dump_json(c, o->json);
        return rc == FAN_EINVAL ? refuse(c, "the JSON body cannot be serialized") : rc;
    }
    if (o->body && o->body_len) {
        void *b = fan__arena_alloc_bytes(a, o->body_len);
        if (!b)
            return FAN_ENOMEM;
        memcpy(b, o->body, o->body_len);
        c->body = b;
        c->body_len = o->body_len;
    }
    return 0;
}

/* The call's retry policy and its origin's state in the worker, for a call
 * that retries or hedges or whose origin has options (its breaker and
 * budget); a call whose origin the worker cannot keep state for (no memory,
 * too many origins) is tried once. Returns 0, FAN_EINVAL or FAN_ENOMEM. Out
 * of line, as check_request() says. */
static __attribute__((noinline)) int resilience(fan_call *c, const fan_retry_policy *own)
{
    int rc;
    c->policy = fan__retry_policy(c, own, &rc);
    if (rc == 0 && (c->policy || c->origin_cfg))
        c->health = fan__health_of(c->url, fan__rt_of(c->rq)->limits->max_origins);
    if (!c->health)
        c->policy = NULL;
    return rc;
}

/* fan_call_start(), for a call that must have a JSON body when `need_json`,
 * or the upstream call of the shared exchange `leads`; `url_kept` as for
 * fill(). */
static fan_call *start(fan_req *rq, const char *url, int url_kept, const fan_call_opts *opts,
                       int need_json, struct fan__flight *leads)
{
    fan_call *c = fan__arena_alloc(fan__req_arena(rq), sizeof *c);
    if (!c)
        return NULL;
    memset(c, 0, sizeof *c);
    c->rq = rq;
    c->task = fan__task_of(rq);
    c->error = 1;
    c->op.cancel = call_cancel_op;
    fan__list_init(&c->done_link);
    fan__list_init(&c->queue_link);
    fan__list_init(&c->flight_link);
    c->leads = leads;
    if (fan_defer(rq, call_release, c) != 0)
        return NULL;
    int rc = fill(c, url ? url : "", url && url_kept, opts, need_json);
    if (rc == FAN_ENOMEM)
        return NULL;
    if (rc == 0)
        rc = check_request(c);
    c->upstreams = fan__rt_of(rq)->upstreams;
    c->origin_cfg = fan__upstreams_origin(c->upstreams, c->url);
    if (c->origin_cfg && c->origin_cfg->opts.http_version != FAN_HTTP_2)
        c->conn_cap = c->origin_cfg->opts.max_connections;
    if (!leads)
        fan__cache_settle(c);
    c->tp = transport_for(c->url);
    if (rc == 0)
        rc = resilience(c, opts ? opts->retry : NULL);
    c->started = fan_now();
    fan__call_observe_start(c);
    fan__list_push(&c->task->calls, &c->link);
    c->task->calls_running++;
    fan__op_begin(rq, &c->op, c->task);
    if (rc == 0 && c->task->cancelled)
        rc = FAN_ECANCELED;
    if (rc == 0 && !leads && fan__cache_start(c))
        return c; /* answered from the cache, or waiting in it or for a shared exchange */
    if (rc == 0 && c->health)
        rc = fan__breaker_admit(c->health, c, &c->probe);
    if (rc == 0 && c->health) {
        c->counted = 1;
        c->health->calls++;
    }
    if (rc == 0 && c->policy)
        rc = fan__attempts_start(c); /* 1: under way, or over already */
    else if (rc == 0)
        rc = fan__slots_acquire(c);
    if (rc == 0)
        fan__call_launch(c);
    else if (rc < 0)
        fan__call_finish(c, rc);
    return c;
}

fan_call *fan_call_start(fan_req *rq, const char *url, const fan_call_opts *opts)
{
    return start(rq, url, 0, opts, 0, NULL);
}

fan_call *fan__call_start_shared(fan_req *bg, const fan_call *model, struct fan__flight *f)
{
    /* The exchange carries the model's trace context, as lines of its own
     * (start() copies them): the model's request may end before it does. */
    const char *const *headers = model->headers;
    char tp[FAN__TRACEPARENT_LINE + 1];
    if (fan__call_traceparent(model, tp)) {
        size_t n = 0;
        while (headers && headers[n])
            n++;
        const char **lines = fan__arena_alloc(fan__req_arena(bg), (n + 3) * sizeof *lines);
        if (!lines)
            return NULL;
        if (n)
            memcpy(lines, headers, n * sizeof *lines);
        lines[n++] = tp;
        const char *ts = fan__call_tracestate(model);
        if (ts && !(lines[n++] = fan_sprintf(bg, "tracestate: %s", ts)))
            return NULL;
        lines[n] = NULL;
        headers = lines;
    }
    fan_call_opts o = {
        .method = model->method,
        .headers = headers,
        .timeout_ms = model->timeout_ms,
        .connect_timeout_ms = model->connect_timeout_ms,
        .max_body_bytes = model->max_body,
        .name = model->name,
        .retry = model->policy, /* copied; NULL: the origin's, as for the model */
    };
    return start(bg, model->url, 0, &o, 0, f);
}

fan_call *fan_post_json(fan_req *rq, const char *url, const json_t *body)
{
    fan_call_opts o = {.method = "POST", .json = body};
    return start(rq, url, 0, &o, 1, NULL);
}

void fan__call_launch(fan_call *c)
{
    (c->parent ? c->parent : c)->attempts++;
    int rc = c->tp->start(c);
    if (rc != 0)
        fan__call_finish(c, rc);
}

unsigned fan__call_remaining_ms(const fan_call *c)
{
    double spent = (fan_now() - c->started) * 1000;
    return spent + 1 < c->timeout_ms ? c->timeout_ms - (unsigned)spent : 1;
}

fan_call *fan_get(fan_req *rq, const char *url_fmt, ...)
{
    va_list ap;
    va_start(ap, url_fmt);
    char *url = fan__arena_vsprintf(fan__req_arena(rq), url_fmt, ap);
    va_end(ap);
    return url ? start(rq, url, 1, NULL, 0, NULL) : NULL;
}

static int call_ready(fan_req *rq, void *arg)
{
    (void)rq;
    return ((fan_call *)arg)->error != 1;
}

int fan_call_await(fan_req *rq, fan_call *c)
{
    if (!c)
        return FAN_ENOMEM;
    if (c->error == 1 && fan__req_wait(rq, call_ready, c) != 0 && c->error == 1)
        return FAN_ECANCELED;
    return c->error;
}

static int all_ready(fan_req *rq, void *arg)
{
    (void)rq;
    return ((fan__task *)arg)->calls_running == 0;
}

int fan_call_await_all(fan_req *rq)
{
    fan__task *t = fan__task_of(rq);
    if (fan__req_wait(rq, all_ready, t) != 0 && t->calls_running)
        return FAN_ECANCELED;
    fan__list *pos;
    fan__list_each(pos, &t->calls)
    {
        fan_call *c = fan__container_of(pos, fan_call, link);
        if (c->error)
            return c->error;
    }
    return 0;
}

static int any_ready(fan_req *rq, void *arg)
{
    (void)rq;
    fan__task *t = arg;
    return !fan__list_empty(&t->completed) || t->calls_running == 0;
}

fan_call *fan_call_await_any(fan_req *rq)
{
    fan__task *t = fan__task_of(rq);
    if (fan__req_wait(rq, any_ready, t) != 0 || fan__list_empty(&t->completed))
        return NULL;
    fan_call *c = fan__container_of(t->completed.next, fan_call, done_link);
    fan__list_remove(&c->done_link);
    c->returned = 1;
    return c;
}

void fan_call_cancel(fan_call *c)
{
    if (c && c->error == 1)
        cancel(c);
}

int fan_call_done(const fan_call *c)
{
    return c->error != 1;
}

int fan_call_error(const fan_call *c)
{
    return c->error == 1 ? FAN_ESTATE : c->error; /* 1: running (internal) */
}

int fan_call_status(const fan_call *c)
{
    return c->status;
}

const char *fan_call_body(const fan_call *c, size_t *len)
{
    const fan__buf *b = body_of(c);
    if (len)
        *len = b->len;
    return b->len ? b->data : "";
}

const char *fan_call_header(const fan_call *c, const char *name)
{
    for (unsigned i = 0; i < c->nresp; i++)
        if (strcasecmp(c->resp_headers[i].name, name) == 0)
            return c->resp_headers[i].value;
    return NULL;
}

int fan_call_header_next(const fan_call *c, size_t *i, const char **name, const char **value)
{
    if (*i >= c->nresp)
        return 0;
    if (name)
        *name = c->resp_headers[*i].name;
    if (value)
        *value = c->resp_headers[*i].value;
    (*i)++;
    return 1;
}

json_t *fan_call_json(fan_call *c)
{
    if (!c->json_parsed && c->error == 0) {
        c->json_parsed = 1;
        c->json_arena = 0; /* an arena value fan_call_json_number() read stays unseen */
        const fan__buf *b = body_of(c);
        c->json = fan__json_loadb(b->data ? b->data : "", b->len, 0, NULL); /* each call its own */
    }
    return c->json;
}

json_t *fan_call_json_unique(fan_call *c)
{
    if (c->error || c->json_dup || (c->json_parsed && (c->json_checked || !c->json)))
        return c->json_dup ? NULL : c->json;
    const fan__buf *b = body_of(c);
    json_error_t err;
    json_t *j = fan__json_loadb(b->data ? b->data : "", b->len, JSON_REJECT_DUPLICATES, &err);
    if (c->json_parsed) { /* fan_call_json() parsed it already: only the verdict is new */
        c->json_dup = !j;
        fan__json_decref(j);
        c->json_checked = !c->json_dup;
        return c->json_dup ? NULL : c->json;
    }
    if (!j && json_error_code(&err) == json_error_duplicate_key) {
        c->json_dup = 1; /* fan_call_json() parses it when asked, the last key winning */
        return NULL;
    }
    c->json_parsed = c->json_checked = 1;
    c->json_arena = 0;
    c->json = j;
    return j;
}

/* The body's value for fanout's own reading, never handed out: the one
 * fan_call_json() gave when it was asked, else one parsed into the
 * request's arena (runtime/json.c), which costs no malloc per node and no
 * free. fan_call_json() asked later parses its own. */
static const json_t *json_to_read(fan_call *c)
{
    if (c->json_parsed || c->json_arena || c->error)
        return c->json;
    const fan__buf *b = body_of(c);
    int in_arena;
    c->json = fan__json_loadb_arena(fan__req_arena(c->rq), b->data ? b->data : "", b->len,
                                    &in_arena);
    c->json_arena = in_arena;
    c->json_parsed = !in_arena; /* an ordinary value: fan_call_json()'s from now on */
    return c->json;
}

double fan_call_json_number(fan_call *c, const char *key)
{
    const json_t *v = json_object_get(json_to_read(c), key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *fan_call_url(const fan_call *c)
{
    return c->url;
}

const char *fan_call_name(const fan_call *c)
{
    return c->name;
}

double fan_call_started(const fan_call *c)
{
    return c->started;
}

double fan_call_finished(const fan_call *c)
{
    return c->finished;
}

int fan_call_attempts(const fan_call *c)
{
    return c->attempts;
}

unsigned fan_call_flags(const fan_call *c)
{
    return c->flags;
}

static int store_header(fan_call *c, const char *name, size_t nlen, const char *value,
                        size_t vlen);

int fan__call_header(fan_call *c, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (nlen == 0 || fan__token_span(name, nlen) != nlen) {
        c->bad_head = 1; /* "X-A : v" or " X": the server's parser would refuse it too */
        return FAN_EPROTO;
    }
    return store_header(c, name, nlen, value, vlen);
}

int fan__call_header_parsed(fan_call *c, const char *name, size_t nlen, const char *value,
                            size_t vlen)
{
    if (nlen == 0 || memchr(name, ' ', nlen)) {
        c->bad_head = 1; /* "X-A : v": llhttp's lenient name, not a token */
        return FAN_EPROTO;
    }
    return store_header(c, name, nlen, value, vlen);
}

static int store_header(fan_call *c, const char *name, size_t nlen, const char *value,
                        size_t vlen)
{
    c->responded = 1;
    c->resp_header_bytes += nlen + vlen + 2;
    if (c->resp_header_bytes > 65536 || c->nresp >= 256) {
        c->too_large = 1;
        return FAN_ETOOLARGE;
    }
    fan__header *h = fan__header_slot(fan__req_arena(c->rq), &c->resp_headers, c->nresp,
                                      &c->resp_cap);
    if (!h)
        return FAN_ENOMEM;
    while (vlen && (*value == ' ' || *value == '\t')) {
        value++;
        vlen--;
    }
    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        vlen--; /* RFC 9110 5.5: the value excludes surrounding whitespace */
    /* One allocation for both, unaligned (nlen and vlen are bounded above). */
    char *p = fan__arena_alloc_bytes(fan__req_arena(c->rq), nlen + vlen + 2);
    if (!p)
        return FAN_ENOMEM;
    memcpy(p, name, nlen);
    p[nlen] = '\0';
    memcpy(p + nlen + 1, value, vlen);
    p[nlen + 1 + vlen] = '\0';
    h->name = p;
    h->value = p + nlen + 1;
    c->nresp++;
    return 0;
}

int fan__call_header_line(fan_call *c, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    if (len == 0)
        return 0;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        c->responded = 1;
        c->nresp = 0; /* a new response head: after 1xx, only the last counts */
        c->resp_header_bytes = 0;
        return 0;
    }
    const char *colon = memchr(line, ':', len);
    if (line[0] == ' ' || line[0] == '\t' || !colon) {
        /* Obsolete line folding, refused as the lean transport does (a
         * gateway may, RFC 9112 5.2), or a line that is not a header. */
        c->bad_head = 1;
        return FAN_EPROTO;
    }
    return fan__call_header(c, line, (size_t)(colon - line), colon + 1,
                            (size_t)(line + len - colon - 1));
}

int fan__call_body(fan_call *c, const void *data, size_t len)
{
    c->responded = 1;
    if (len > c->max_body - c->resp_body.len) { /* resp_body.len <= max_body: no wrap */
        c->too_large = 1;
        return FAN_ETOOLARGE;
    }
    return fan__buf_append(&c->resp_body, data, len);
}

void fan__client_shutdown(void)
{
    fan__lean_transport.shutdown();
    fan__curl_transport.shutdown();
    fan__slots_shutdown();
    fan__health_shutdown();
    fan__cache_shutdown();
}
