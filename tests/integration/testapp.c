/* A test application driving every server and client feature the
 * integration tests check over real sockets. Written only against fanout.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fanout.h>

static json_t *headers_json(fan_req *rq, const char *names)
{
    /* names: comma-separated header names to report */
    json_t *o = json_object();
    char *copy = fan_sprintf(rq, "%s", names ? names : "");
    for (char *save, *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        const char *v = fan_req_header(rq, n);
        json_object_set_new(o, n, v ? json_string(v) : json_null());
    }
    return o;
}

/* Reports what the server parsed: method, path, query, body, chosen headers
 * (?h=Name,Other) and query values (?q=a,b). */
static void echo(fan_req *rq)
{
    size_t len;
    const char *body = fan_req_body(rq, &len);
    json_t *q = json_object();
    const char *names = fan_req_query(rq, "q");
    char *copy = fan_sprintf(rq, "%s", names ? names : "");
    for (char *save, *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
        const char *v = fan_req_query(rq, n);
        json_object_set_new(q, n, v ? json_string(v) : json_null());
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:s%, s:I, s:o, s:o}", "method", fan_req_method(rq),
                          "path", fan_req_path(rq), "query", fan_req_query_string(rq), "body", body,
                          len, "body_len", (json_int_t)len, "headers",
                          headers_json(rq, fan_req_query(rq, "h")), "values", q);
    fan_reply_json(rq, 200, j);
}

static void user(fan_req *rq)
{
    fan_reply_json(rq, 200, json_pack("{s:s}", "id", fan_req_param(rq, "id")));
}

static void user_post(fan_req *rq)
{
    fan_reply_json(
        rq, 201,
        json_pack("{s:s, s:s}", "id", fan_req_param(rq, "id"), "post", fan_req_param(rq, "post")));
}

static void files(fan_req *rq)
{
    fan_reply_json(rq, 200, json_pack("{s:s}", "rest", fan_req_param(rq, "*")));
}

static void sleep_view(fan_req *rq)
{
    long ms = fan_req_query_long(rq, "ms", 100, NULL);
    double t0 = fan_now();
    int rc = fan_sleep(rq, (unsigned)ms);
    fan_reply_json(rq, 200,
                   json_pack("{s:s, s:f}", "error", fan_errname(rc), "slept", fan_now() - t0));
}

static void noreply(fan_req *rq)
{
    (void)rq;
}

/* [[name, value], ...] of the request's headers (fan_req_header_next) or
 * of the response's set so far (fan_resp_header_next). */
static json_t *header_pairs(const fan_req *rq,
                            int (*next)(const fan_req *, size_t *, const char **, const char **))
{
    json_t *pairs = json_array();
    size_t i = 0;
    const char *name, *value;
    while (next(rq, &i, &name, &value))
        json_array_append_new(pairs, json_pack("[s, s]", name, value));
    return pairs;
}

/* The same of an upstream response's headers. */
static json_t *call_header_pairs(const fan_call *c)
{
    json_t *pairs = json_array();
    size_t i = 0;
    const char *name, *value;
    while (fan_call_header_next(c, &i, &name, &value))
        json_array_append_new(pairs, json_pack("[s, s]", name, value));
    return pairs;
}

/* JSON nested `n` levels deep, "[[[...]]]", written without jansson. */
static void json_deep(fan_req *rq)
{
    int ok;
    long n = fan_req_query_long(rq, "n", 1, &ok);
    if (!ok || n < 1 || n > 1000000) {
        fan_reply_error(rq, 400, "n: 1 to 1000000");
        return;
    }
    char *b = fan_alloc(rq, 2 * (size_t)n);
    if (!b) {
        fan_reply_error(rq, 503, "out of memory");
        return;
    }
    memset(b, '[', (size_t)n);
    memset(b + n, ']', (size_t)n);
    fan_reply(rq, 200, "application/json", b, 2 * (size_t)n);
}

/* The request's JSON body, parsed and written back. */
static void json_echo(fan_req *rq)
{
    json_t *j = fan_req_json(rq);
    if (!j) {
        fan_reply_error(rq, 400, "not JSON");
        return;
    }
    fan_reply_json(rq, 200, json_incref(j));
}

/* The JSON body of GET `url`, parsed and written back. With &unique=first
 * or &unique=after, fan_call_json_unique() is asked too, before or after
 * fan_call_json(), and the answer says what each gave:
 * {"json": value or null, "unique": value or null, "same": true when both
 * are the same value}. */
static void json_relay(fan_req *rq)
{
    fan_call *c = fan_get(rq, "%s", fan_req_query(rq, "url") ? fan_req_query(rq, "url") : "");
    if (!c || fan_call_await(rq, c) != 0) {
        fan_reply_error(rq, 502, "call failed");
        return;
    }
    const char *unique = fan_req_query(rq, "unique");
    if (unique) {
        int first = strcmp(unique, "first") == 0;
        json_t *u = first ? fan_call_json_unique(c) : NULL;
        json_t *j = fan_call_json(c);
        if (!first)
            u = fan_call_json_unique(c);
        fan_reply_json(rq, 200, json_pack("{s:O?, s:O?, s:b}", "json", j, "unique", u, "same",
                                          u && u == j));
        return;
    }
    json_t *j = fan_call_json(c);
    if (!j) {
        fan_reply_error(rq, 502, "not JSON");
        return;
    }
    fan_reply_json(rq, 200, json_incref(j));
}

/* GET `url` and fan_call_json_number() of &key (default "value"): the
 * value fanout parses for its own reading, into the request's arena. Then,
 * with &then=json or &then=unique, the call's value as fan_call_json() or
 * fan_call_json_unique() gives it, and with &keep=1 that value kept past
 * the request (json_incref), for GET /json/kept. The answer:
 * {"number": n or null, "again": the second read gives the same,
 *  "after": the number read after `then`, "json": the value or null}. */
static json_t *kept;

static json_t *number_or_null(double n)
{
    return isnan(n) ? json_null() : json_real(n);
}

static void json_number(fan_req *rq)
{
    const char *url = fan_req_query(rq, "url"), *key = fan_req_query(rq, "key");
    const char *then = fan_req_query(rq, "then"), *keep = fan_req_query(rq, "keep");
    fan_call *c = fan_get(rq, "%s", url ? url : "");
    if (!c || fan_call_await(rq, c) != 0) {
        fan_reply_error(rq, 502, "call failed");
        return;
    }
    key = key ? key : "value";
    double n = fan_call_json_number(c, key);
    double again = fan_call_json_number(c, key);
    json_t *j = !then                       ? NULL
                : strcmp(then, "json") == 0 ? fan_call_json(c)
                                            : fan_call_json_unique(c);
    double after = fan_call_json_number(c, key);
    if (keep && j) {
        json_decref(kept);
        kept = json_incref(j);
    }
    fan_reply_json(rq, 200,
                   json_pack("{s:o, s:b, s:o, s:O?}", "number", number_or_null(n), "again",
                             isnan(n) ? isnan(again) : again == n, "after",
                             number_or_null(after), "json", j));
}

/* The value the last /json/number?keep=1 kept, or 404. */
static void json_kept(fan_req *rq)
{
    if (!kept) {
        fan_reply_error(rq, 404, "nothing kept");
        return;
    }
    fan_reply_json(rq, 200, json_incref(kept));
}

/* ?text=...: the text, verbatim, as an application/json body (an upstream
 * whose JSON fanout's own writer would not produce, a duplicate key say). */
static void json_text(fan_req *rq)
{
    const char *text = fan_req_query(rq, "text");
    fan_reply(rq, 200, "application/json", text ? text : "", text ? strlen(text) : 0);
}

static json_t *call_json(fan_call *c)
{
    size_t len;
    const char *body = fan_call_body(c, &len);
    json_t *j = json_pack("{s:s, s:i, s:I, s:f, s:s?}", "error", fan_errname(fan_call_error(c)),
                          "status", fan_call_status(c), "body_len", (json_int_t)len, "duration",
                          fan_call_finished(c) - fan_call_started(c), "content_type",
                          fan_call_header(c, "Content-Type"));
    json_t *v = json_object_get(fan_call_json(c), "value");
    if (v)
        json_object_set(j, "value", v);
    if (len && len < 1024)
        json_object_set_new(j, "body", json_stringn(body, len));
    json_object_set_new(j, "headers", call_header_pairs(c));
    json_object_set_new(j, "attempts", json_integer(fan_call_attempts(c)));
    unsigned f = fan_call_flags(c);
    json_object_set_new(j, "flags",
                        json_pack("{s:b, s:b, s:b, s:b, s:b}", "retried", f & FAN_CALL_RETRIED,
                                  "hedged", f & FAN_CALL_HEDGED, "cached", f & FAN_CALL_CACHED,
                                  "stale", f & FAN_CALL_STALE, "coalesced",
                                  f & FAN_CALL_COALESCED));
    return j;
}

/* The call's headers: ?header=, then ?header2= ... ?header8= as long as
 * they follow on; NULL when there is none. */
static const char *const *fetch_headers(fan_req *rq)
{
    const char **headers = fan_alloc(rq, 9 * sizeof *headers);
    int n = 0;
    for (const char *h = fan_req_query(rq, "header"); h && n < 8;
         h = fan_req_query(rq, fan_sprintf(rq, "header%d", n + 1)))
        headers[n++] = h;
    headers[n] = NULL;
    return n ? headers : NULL;
}

/* The JSON value of query parameter `name`, a new reference, or NULL when
 * it is absent; a reply and NULL when it is not JSON (*bad set). */
static json_t *query_json(fan_req *rq, const char *name, int *bad)
{
    const char *text = fan_req_query(rq, name);
    json_t *j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    *bad = text && !j;
    if (*bad)
        fan_reply_error(rq, 400, "not JSON");
    return j;
}

/* Awaits the call and replies with its outcome. */
static void reply_call(fan_req *rq, fan_call *c)
{
    double t0 = fan_now();
    int rc = fan_call_await(rq, c);
    json_t *j = call_json(c);
    json_object_set_new(j, "await", json_string(fan_errname(rc)));
    json_object_set_new(j, "elapsed", json_real(fan_now() - t0));
    json_object_set_new(j, "url", json_string(fan_call_url(c)));
    fan_reply_json(rq, 200, j);
}

/* The names of ?vary=A,B as a NULL-terminated array, or NULL. */
static const char *const *vary_names(fan_req *rq)
{
    const char *v = fan_req_query(rq, "vary");
    if (!v)
        return NULL;
    const char **names = fan_alloc(rq, 9 * sizeof *names);
    char *copy = fan_sprintf(rq, "%s", v), *save = NULL;
    int n = 0;
    for (char *t = strtok_r(copy, ",", &save); t && n < 8; t = strtok_r(NULL, ",", &save))
        names[n++] = t;
    names[n] = NULL;
    return names;
}

/* One call: ?url=&timeout=ms&connect_timeout=ms&max=bytes&method=&body=&json=text
 * &name=label&header=Name:%20value (&header2=...), and the cache and
 * single-flight options: &cache=1|-1&coalesce=1|-1&ttl=ms&swr=ms&sie=ms&vary=A,B;
 * &bodyn=N sends N bytes of 'x' as the body instead (up to 64 MiB). */
static void fetch(fan_req *rq)
{
    const char *url = fan_req_query(rq, "url");
    const char *body = fan_req_query(rq, "body");
    if (!url) {
        fan_reply_error(rq, 400, "url is required");
        return;
    }
    long bodyn = fan_req_query_long(rq, "bodyn", 0, NULL);
    if (bodyn < 0 || bodyn > 64L << 20) {
        fan_reply_error(rq, 400, "bodyn is 0 to 64 MiB");
        return;
    }
    size_t body_len = body ? strlen(body) : 0;
    if (bodyn) {
        char *b = fan_alloc(rq, (size_t)bodyn);
        if (!b) {
            fan_reply_error(rq, 503, "out of memory");
            return;
        }
        memset(b, 'x', (size_t)bodyn);
        body = b;
        body_len = (size_t)bodyn;
    }
    int bad;
    json_t *json = query_json(rq, "json", &bad);
    if (bad)
        return;
    fan_call_opts o = {
        .headers = fetch_headers(rq),
        .name = fan_req_query(rq, "name"),
        .method = fan_req_query(rq, "method"),
        .timeout_ms = (unsigned)fan_req_query_long(rq, "timeout", 0, NULL),
        .connect_timeout_ms = (unsigned)fan_req_query_long(rq, "connect_timeout", 0, NULL),
        .max_body_bytes = (size_t)fan_req_query_long(rq, "max", 0, NULL),
        .body = body,
        .body_len = body_len,
        .json = json,
        .cache = (int)fan_req_query_long(rq, "cache", 0, NULL),
        .coalesce = (int)fan_req_query_long(rq, "coalesce", 0, NULL),
        .cache_ttl_ms = (unsigned)fan_req_query_long(rq, "ttl", 0, NULL),
        .stale_while_revalidate_ms = (unsigned)fan_req_query_long(rq, "swr", 0, NULL),
        .stale_if_error_ms = (unsigned)fan_req_query_long(rq, "sie", 0, NULL),
        .cache_vary = vary_names(rq),
    };
    fan_call *c = fan_call_start(rq, url, &o);
    json_decref(json); /* serialized by fan_call_start() */
    reply_call(rq, c);
}

/* fan_post_json(): ?url=&json=text (none: a NULL body). */
static void post_json(fan_req *rq)
{
    int bad;
    json_t *json = query_json(rq, "json", &bad);
    if (bad)
        return;
    fan_call *c = fan_post_json(rq, fan_req_query(rq, "url"), json);
    json_decref(json);
    reply_call(rq, c);
}

/* An upstream URL built from request input: GET
 * <base>/items/<value>?q=<value>&n=1, the value escaped with fan_url_escape(). */
static void escaped(fan_req *rq)
{
    const char *base = fan_req_query(rq, "base");
    const char *v = fan_url_escape(rq, fan_req_query(rq, "value"));
    if (!base || !v) {
        fan_reply_error(rq, 400, "base and value are required");
        return;
    }
    reply_call(rq, fan_get(rq, "%s/items/%s?q=%s&n=1", base, v, v));
}

/* n concurrent calls to url (each with ?ms=...), then n2 to url2 if given,
 * gathered in completion order with fan_call_await_any, then fan_call_await_all:
 * "finished" and "errors" list each call's end (seconds from the start) and
 * error name in that order, "urls" which URL it called. ?deadline=ms sets
 * the request's. */
static void fanout_view(fan_req *rq)
{
    const char *url = fan_req_query(rq, "url");
    const char *url2 = fan_req_query(rq, "url2");
    long n = fan_req_query_long(rq, "n", 2, NULL);
    long n2 = url2 ? fan_req_query_long(rq, "n2", 1, NULL) : 0;
    long deadline = fan_req_query_long(rq, "deadline", 0, NULL);
    if (!url || n < 1 || n > 1000 || n2 < 0 || n2 > 1000) {
        fan_reply_error(rq, 400, "url and n in 1..1000 are required");
        return;
    }
    if (deadline)
        fan_req_set_deadline(rq, (unsigned)deadline);
    double t0 = fan_now();
    for (long i = 0; i < n; i++)
        fan_call_start(rq, url, NULL);
    for (long i = 0; i < n2; i++)
        fan_call_start(rq, url2, NULL);
    json_t *order = json_array(), *errors = json_array(), *urls = json_array();
    for (fan_call *c; (c = fan_call_await_any(rq));) {
        json_array_append_new(order, json_real(fan_call_finished(c) - t0));
        json_array_append_new(errors, json_string(fan_errname(fan_call_error(c))));
        json_array_append_new(urls, json_string(fan_call_url(c)));
    }
    int all = fan_call_await_all(rq);
    json_t *j = json_pack("{s:s, s:s, s:o, s:o, s:o, s:f}", "all", fan_errname(all), "cancelled",
                          fan_errname(fan_cancelled(rq)), "finished", order, "errors", errors,
                          "urls", urls, "elapsed", fan_now() - t0);
    fan_reply_json(rq, all == 0 ? 200 : 502, j);
}

/* The retry policy of ?retries=&base=&cap=&try_timeout=&retry_on=503:500|none
 * &non_idempotent=1&hedge_after=&hedge=p95 into p, or 0 when none of them is
 * given (the origin's policy applies). */
static int query_policy(fan_req *rq, fan_retry_policy *p)
{
    static const char *const keys[] = {"retries", "base", "cap", "try_timeout", "retry_on",
                                       "non_idempotent", "hedge_after", "hedge"};
    int any = 0;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        any |= fan_req_query(rq, keys[i]) != NULL;
    memset(p, 0, sizeof *p);
    p->max_retries = (unsigned)fan_req_query_long(rq, "retries", 0, NULL);
    p->base_ms = (unsigned)fan_req_query_long(rq, "base", 0, NULL);
    p->cap_ms = (unsigned)fan_req_query_long(rq, "cap", 0, NULL);
    p->per_try_timeout_ms = (unsigned)fan_req_query_long(rq, "try_timeout", 0, NULL);
    p->non_idempotent = (int)fan_req_query_long(rq, "non_idempotent", 0, NULL);
    p->hedge_after_ms = (unsigned)fan_req_query_long(rq, "hedge_after", 0, NULL);
    const char *h = fan_req_query(rq, "hedge");
    p->hedge_p95 = h && strcmp(h, "p95") == 0;
    const char *on = fan_req_query(rq, "retry_on");
    if (on && strcmp(on, "none") == 0)
        p->retry_on[0] = -1;
    for (int n = 0; on && *on && n < 7 && p->retry_on[0] != -1; n++) {
        char *end;
        p->retry_on[n] = (int)strtol(on, &end, 10);
        on = *end ? end + 1 : end;
    }
    return any;
}

/* ?n= concurrent calls (default 1) of ?url= with ?method=, ?timeout=,
 * ?coalesce= and the retry policy of query_policy(), awaited together: for each its error,
 * status, tries and FAN_CALL_* flags, in start order. */
static void resilient_view(fan_req *rq)
{
    const char *url = fan_req_query(rq, "url");
    long n = fan_req_query_long(rq, "n", 1, NULL);
    if (!url || n < 1 || n > 1000) {
        fan_reply_error(rq, 400, "url and n in 1..1000 are required");
        return;
    }
    fan_retry_policy p;
    fan_call_opts o = {
        .method = fan_req_query(rq, "method"),
        .name = fan_req_query(rq, "name"),
        .timeout_ms = (unsigned)fan_req_query_long(rq, "timeout", 0, NULL),
        .retry = query_policy(rq, &p) ? &p : NULL,
        .coalesce = (int)fan_req_query_long(rq, "coalesce", 0, NULL),
    };
    double t0 = fan_now();
    fan_call **calls = fan_alloc(rq, (size_t)n * sizeof *calls);
    for (long i = 0; calls && i < n; i++)
        calls[i] = fan_call_start(rq, url, &o);
    if (!calls || fan_call_await_all(rq) == FAN_ECANCELED) {
        fan_reply_error(rq, 503, "cancelled");
        return;
    }
    json_t *list = json_array();
    for (long i = 0; i < n; i++) {
        fan_call *c = calls[i];
        json_array_append_new(
            list, json_pack("{s:s, s:i, s:i, s:i, s:f, s:s?}", "error",
                            fan_errname(fan_call_error(c)), "status", fan_call_status(c),
                            "attempts", fan_call_attempts(c), "flags", (int)fan_call_flags(c),
                            "duration", fan_call_finished(c) - fan_call_started(c), "body",
                            fan_call_body(c, NULL)));
    }
    fan_reply_json(rq, 200, json_pack("{s:o, s:f}", "calls", list, "elapsed", fan_now() - t0));
}

/* Every request header, in order, repeated ones included. */
static void req_headers(fan_req *rq)
{
    fan_reply_json(rq, 200, json_pack("{s:o}", "headers", header_pairs(rq, fan_req_header_next)));
}

/* Sets X-One, two cookies (fan_resp_set_cookie) and X-Two, a session value
 * when ?session=1, then lists the response headers set so far. */
static void resp_headers(fan_req *rq)
{
    fan_resp_set_header(rq, "X-One", "1");
    fan_resp_set_cookie(rq, "a", "1", NULL);
    fan_resp_set_cookie(rq, "b", "2", &(fan_cookie_opts){.path = "/", .http_only = 1});
    fan_resp_set_header(rq, "X-Two", "2");
    int session = fan_req_query(rq, "session") != NULL;
    int rc = session ? fan_session_set(rq, "user", "ann") : 0;
    fan_reply_json(rq, 200,
                   json_pack("{s:s, s:o}", "session", fan_errname(rc), "headers",
                             header_pairs(rq, fan_resp_header_next)));
}

/* The client as fan_req_client_addr() and fan_req_client_port() see it. */
/* The worker's cache and single-flight counters. */
static void cache_counters(fan_req *rq)
{
    fan_cache_counters n;
    fan_cache_get_counters(&n);
    fan_reply_json(rq, 200,
                   json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                             "s:I}",
                             "shared_hits", (json_int_t)n.shared_hits, "shared_stores",
                             (json_int_t)n.shared_stores, "shared_too_large",
                             (json_int_t)n.shared_too_large, "shared_errors",
                             (json_int_t)n.shared_errors, "hits",
                             (json_int_t)n.hits, "stale_hits", (json_int_t)n.stale_hits, "misses",
                             (json_int_t)n.misses, "stores", (json_int_t)n.stores, "evictions",
                             (json_int_t)n.evictions, "refreshes", (json_int_t)n.refreshes,
                             "exchanges", (json_int_t)n.exchanges, "coalesced",
                             (json_int_t)n.coalesced, "entries", (json_int_t)n.entries, "bytes",
                             (json_int_t)n.bytes));
}

static void client_view(fan_req *rq)
{
    fan_reply_json(
        rq, 200,
        json_pack("{s:s?, s:i}", "addr", fan_req_client_addr(rq), "port", fan_req_client_port(rq)));
}

static void big(fan_req *rq)
{
    long n = fan_req_query_long(rq, "n", 1 << 20, NULL);
    char *b = fan_alloc(rq, (size_t)n);
    memset(b, 'x', (size_t)n);
    fan_reply(rq, 200, "text/plain", b, (size_t)n);
}

/* The process serving the request (a worker, under fan_main()'s master),
 * with the "greeting" setting the reload hook maintains, after ?ms=N. */
static void pid_view(fan_req *rq)
{
    long ms = fan_req_query_long(rq, "ms", 0, NULL);
    if (ms > 0 && fan_sleep(rq, (unsigned)ms) != 0)
        return;
    const char *greeting = fan_config_str(rq, "greeting");
    fan_reply_json(rq, 200, json_pack("{s:I, s:s?}", "pid", (json_int_t)getpid(), "greeting",
                                      greeting));
}

/* Reload hook: the "greeting" setting is the first line of the file named by
 * FANOUT_TEST_RELOAD_FILE. A missing or empty file fails the reload and
 * leaves the setting alone. */
static int reload_greeting(fan_app *app, void *arg)
{
    (void)arg;
    const char *path = getenv("FANOUT_TEST_RELOAD_FILE");
    FILE *f = path ? fopen(path, "r") : NULL;
    char line[256] = "";
    int ok = f && fgets(line, sizeof line, f) != NULL;
    if (f)
        fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (!ok || !line[0]) {
        fan_log(FAN_LOG_ERROR, "reload: cannot read a greeting from %s", path ? path : "(unset)");
        return -1;
    }
    return fan_app_set(app, "greeting", line);
}

/* ---- The application context: configuration, sessions, hooks, helpers.
 * Every route below is under /app/, and so is what the hooks and error
 * handlers do, so that the other suites see the server unchanged. */

static fan_app *the_app; /* for /app/reload, which needs the app writable */
static int private_runs;  /* how often the /app/private handler ran */

static int is_app_path(fan_req *rq)
{
    return strncmp(fan_req_path(rq), "/app/", 5) == 0;
}

/* The declared keys' values, read as their types. */
static void app_config(fan_req *rq)
{
    json_t *tags = json_array();
    const char *t;
    for (size_t i = 0; (t = fan_config_strings(rq, "app.tags", i)); i++)
        json_array_append_new(tags, json_string(t));
    fan_reply_json(rq, 200, json_pack("{s:s?, s:I, s:f, s:b, s:o, s:s?, s:s?}", "greeting",
                                      fan_config_str(rq, "app.greeting"), "limit",
                                      (json_int_t)fan_config_int(rq, "app.limit"), "ratio",
                                      fan_config_double(rq, "app.ratio"), "debug",
                                      fan_config_bool(rq, "app.debug"), "tags", tags, "limit_text",
                                      fan_config_str(rq, "app.limit"), "setting",
                                      fan_config_str(rq, "plain")));
}

/* Re-reads the configuration file; reports the outcome and the greeting. */
static void app_reload(fan_req *rq)
{
    int rc = fan_app_reload_config(the_app);
    fan_reply_json(rq, 200, json_pack("{s:s, s:s?}", "rc", fan_errname(rc), "error",
                                      rc ? fan_app_config_error(the_app) : NULL));
}

/* ?op=get|set|delete|clear&key=&value= (set with ?size=N: N 'x's). */
static void app_session(fan_req *rq)
{
    const char *op = fan_req_query(rq, "op"), *key = fan_req_query(rq, "key");
    const char *value = fan_req_query(rq, "value");
    long size = fan_req_query_long(rq, "size", 0, NULL);
    int rc = 0;
    if (size > 0 && size < 1000000) {
        char *v = fan_alloc(rq, (size_t)size + 1);
        memset(v, 'x', (size_t)size);
        v[size] = '\0';
        value = v;
    }
    if (op && strcmp(op, "set") == 0)
        rc = fan_session_set(rq, key, value ? value : "");
    else if (op && strcmp(op, "delete") == 0)
        rc = fan_session_delete(rq, key);
    else if (op && strcmp(op, "clear") == 0)
        rc = fan_session_clear(rq);
    const char *now = key ? fan_session_get(rq, key) : NULL;
    fan_reply_json(rq, 200, json_pack("{s:s, s:s?}", "rc", fan_errname(rc), "value", now));
}

/* Appends `what` to the request's trace of who ran (/app/ requests only). */
static void trace(fan_req *rq, const char *what)
{
    if (!is_app_path(rq))
        return;
    const char *before = fan_store_get(rq, "trace");
    fan_store_set(rq, "trace", fan_sprintf(rq, "%s%s%s", before ? before : "", before ? "," : "",
                                           what), NULL);
}

/* Before-request hooks: /app/private/ needs an X-Token header; X-Hook-Sleep
 * makes the hook await first, as hooks run in the handler's coroutine. */
static void require_token(fan_req *rq)
{
    trace(rq, "before1");
    if (fan_req_header(rq, "X-Hook-Sleep"))
        fan_sleep(rq, 20);
    if (strncmp(fan_req_path(rq), "/app/private/", 13) == 0 && !fan_req_header(rq, "X-Token"))
        fan_reply_error(rq, 401, "an X-Token header is required");
}

static void second_before_hook(fan_req *rq)
{
    trace(rq, "before2");
}

/* A handler that takes part in the trace. */
static void app_order(fan_req *rq)
{
    trace(rq, "handler");
    fan_reply(rq, 200, "text/plain", "ok", 2);
}

/* A child task reads the configuration and the session of its request and
 * writes the session; the handler answers after it. */
static int session_task(fan_req *rq, void *arg)
{
    (void)arg;
    const char *user = fan_session_get(rq, "user");
    return fan_session_set(rq, "from", fan_sprintf(rq, "task:%s:%s",
                                                   fan_config_str(rq, "app.greeting"),
                                                   user ? user : "-"));
}

static void app_session_task(fan_req *rq)
{
    int rc = fan_task_await(rq, fan_spawn(rq, session_task, NULL));
    fan_reply_json(rq, 200, json_pack("{s:s}", "rc", fan_errname(rc)));
}

static void app_private(fan_req *rq)
{
    private_runs++;
    fan_reply_json(rq, 200, json_pack("{s:i}", "runs", private_runs));
}

/* After-request hook: reports the status it saw; ?after_status=N changes it. */
static void tag_response(fan_req *rq)
{
    if (!is_app_path(rq))
        return;
    trace(rq, "after1");
    fan_resp_set_header(rq, "X-App-After", fan_sprintf(rq, "%d", fan_resp_status(rq)));
    long status = fan_req_query_long(rq, "after_status", 0, NULL);
    if (status)
        fan_resp_set_status(rq, (int)status);
}

/* The second after-request hook: reports the trace in X-Hook-Order. */
static void report_trace(fan_req *rq)
{
    trace(rq, "after2");
    const char *t = fan_store_get(rq, "trace");
    if (t)
        fan_resp_set_header(rq, "X-Hook-Order", t);
}

/* Error handler of 404 and 500 under /app/; as the fallback of every other
 * status >= 400, it acts only on 418 (the other errors keep their JSON). */
static void app_error(fan_req *rq)
{
    int status = fan_resp_status(rq);
    if (!is_app_path(rq) || (status != 404 && status != 500 && status != 418))
        return;
    trace(rq, "error");
    size_t len;
    const char *body = fan_resp_body(rq, &len);
    fan_reply_printf(rq, status, "custom %d for %s (was %.*s)", status, fan_req_path(rq), (int)len,
                     body);
}

static void app_noreply(fan_req *rq)
{
    (void)rq;
}

static void app_teapot(fan_req *rq)
{
    fan_reply_error(rq, 418, "short and stout");
}

static void app_cookie(fan_req *rq)
{
    fan_reply_json(rq, 200,
                   json_pack("{s:s?}", "value", fan_req_cookie(rq, fan_req_query(rq, "name"))));
}

/* ?name=&value=&path=&domain=&max_age=&secure=1&httponly=1&samesite= */
static void app_set_cookie(fan_req *rq)
{
    fan_cookie_opts o = {
        .path = fan_req_query(rq, "path"),
        .domain = fan_req_query(rq, "domain"),
        .max_age = fan_req_query_long(rq, "max_age", 0, NULL),
        .secure = fan_req_query(rq, "secure") != NULL,
        .http_only = fan_req_query(rq, "httponly") != NULL,
        .same_site = fan_req_query(rq, "samesite"),
    };
    int rc = fan_resp_set_cookie(rq, fan_req_query(rq, "name"), fan_req_query(rq, "value"), &o);
    fan_reply_json(rq, 200, json_pack("{s:s}", "rc", fan_errname(rc)));
}

static void app_form(fan_req *rq)
{
    fan_reply_json(rq, 200,
                   json_pack("{s:s?, s:s?, s:s?}", "name", fan_req_form(rq, "name"), "empty",
                             fan_req_form(rq, "empty"), "missing", fan_req_form(rq, "missing")));
}

static void app_json(fan_req *rq)
{
    json_t *j = fan_req_require_json(rq);
    if (!j)
        return;
    fan_reply_json(rq, 200, json_pack("{s:O}", "got", j));
}

/* ?name=&value=: fan_resp_set_header()'s answer, then 200. */
static void app_set_header(fan_req *rq)
{
    int rc = fan_resp_set_header(rq, fan_req_query(rq, "name"), fan_req_query(rq, "value"));
    fan_reply_json(rq, 200, json_pack("{s:s}", "rc", fan_errname(rc)));
}

static void app_redirect(fan_req *rq)
{
    int rc = fan_reply_redirect(rq, (int)fan_req_query_long(rq, "status", 302, NULL),
                                fan_req_query(rq, "to"));
    if (rc != 0)
        fan_reply_json(rq, 400, json_pack("{s:s}", "rc", fan_errname(rc)));
}

/* Declares the configuration and adds the routes and hooks above. */
static void app_context_routes(fan_app *app)
{
    the_app = app;
    fan_app_declare_config(app, "app.greeting", FAN_CONFIG_STRING, "hello");
    fan_app_declare_config(app, "app.limit", FAN_CONFIG_INT, "10");
    fan_app_declare_config(app, "app.ratio", FAN_CONFIG_DOUBLE, "0.5");
    fan_app_declare_config(app, "app.debug", FAN_CONFIG_BOOL, "false");
    fan_app_declare_config(app, "app.tags", FAN_CONFIG_STRINGS, NULL);
    fan_app_route(app, "GET", "/app/config", app_config);
    fan_app_route(app, "GET", "/app/reload", app_reload);
    fan_app_route(app, "GET", "/app/session", app_session);
    fan_app_route(app, "GET", "/app/private/data", app_private);
    fan_app_route(app, "GET", "/app/noreply", app_noreply);
    fan_app_route(app, "GET", "/app/cookie", app_cookie);
    fan_app_route(app, "GET", "/app/setcookie", app_set_cookie);
    fan_app_route(app, "POST", "/app/form", app_form);
    fan_app_route(app, "POST", "/app/json", app_json);
    fan_app_route(app, "GET", "/app/redirect", app_redirect);
    fan_app_route(app, "GET", "/app/setheader", app_set_header);
    fan_app_route(app, "GET", "/app/order", app_order);
    fan_app_route(app, "GET", "/app/session_task", app_session_task);
    fan_app_before_request(app, require_token);
    fan_app_before_request(app, second_before_hook);
    fan_app_after_request(app, tag_response);
    fan_app_after_request(app, report_trace);
    fan_app_route(app, "GET", "/app/teapot", app_teapot);
    fan_app_error_handler(app, 404, app_error);
    fan_app_error_handler(app, 500, app_error);
    fan_app_error_handler(app, 0, app_error);
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    fan_app_route(app, "*", "/echo", echo);
    fan_app_route(app, "GET", "/users/:id", user);
    fan_app_route(app, "POST", "/users/:id/posts/:post", user_post);
    fan_app_route(app, "GET", "/files/*", files);
    fan_app_route(app, "GET", "/sleep", sleep_view);
    fan_app_route(app, "GET", "/noreply", noreply);
    fan_app_route(app, "GET", "/fetch", fetch);
    fan_app_route(app, "GET", "/post_json", post_json);
    fan_app_route(app, "GET", "/escaped", escaped);
    fan_app_route(app, "GET", "/fanout", fanout_view);
    fan_app_route(app, "GET", "/resilient", resilient_view);
    fan_app_route(app, "GET", "/big", big);
    fan_app_route(app, "GET", "/pid", pid_view);
    fan_app_route(app, "*", "/req/headers", req_headers);
    fan_app_route(app, "GET", "/resp/headers", resp_headers);
    fan_app_route(app, "GET", "/client", client_view);
    fan_app_route(app, "GET", "/cache/counters", cache_counters);
    fan_app_route(app, "GET", "/json/deep", json_deep);
    fan_app_route(app, "POST", "/json/echo", json_echo);
    fan_app_route(app, "GET", "/json/relay", json_relay);
    fan_app_route(app, "GET", "/json/number", json_number);
    fan_app_route(app, "GET", "/json/kept", json_kept);
    fan_app_route(app, "GET", "/json/text", json_text);
    app_context_routes(app);
    fan_app_on_reload(app, reload_greeting, NULL);
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
