/* This worker's Redis connections: one hiredis async context per Redis
 * address, on the worker's loop through hiredis's libuv adapter, and the
 * commands awaited on it.
 *
 * A command is a `pending` (malloc'ed, hiredis's privdata) until its reply
 * comes, with the callback of whoever sent it (fan__redis_send()); a
 * sender that leaves (fan__redis_cancel()) clears the callback, and the
 * reply, when it comes, is dropped with the pending. A task awaiting a
 * command (fan__redis_exec()) is a `waiter` on the task's stack, built on
 * that: the waiter and its pending point at each other while both live, and
 * whichever side leaves first unlinks itself: a cancelled task cancels its
 * command and is woken at once, and a reply wakes its waiter. So a reply
 * never reaches a waiter that left, and a waiter never waits on a
 * connection that died.
 *
 * Replies come in the order commands were sent, and every command has the
 * same timeout, so only the oldest command in flight can time out first:
 * one timer per connection watches it (or the connect while connecting).
 * A command that times out means Redis stopped answering: every command in
 * flight fails with FAN_ETIMEDOUT and the connection is dropped. A dropped
 * or failed connection is made again on the first command after its
 * backoff (50 ms doubling up to backoff_max_ms, with jitter); until then,
 * and while that new connection is not ready yet, commands fail at once
 * with the reason of the last failure, so that a Redis that is down costs a
 * request nothing but the policy its feature declares. */
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "core/list.h"
#include "redis/redis.h"
#include "runtime/runtime.h"

enum { DOWN, CONNECTING, CONNECTED };

typedef struct client client;

typedef struct waiter {
    fan_req *rq;
    fan_waker *waker;
    void *command; /* its pending; NULL once the reply came or the waiter left */
    fan_redis_reply *reply;
    int rc;
} waiter;

typedef struct pending {
    fan__list link; /* the client's commands in flight, oldest first */
    client *c;
    fan__redis_cb cb; /* NULL once its sender left, or was told */
    void *arg;
    double deadline; /* fan_now() seconds */
    int setup;       /* 1 AUTH or SELECT, 2 the PING that makes the connection
                      * ready: an error reply drops the connection */
    char *unsent;    /* formatted, waiting for the host's address (not hiredis's yet) */
    int unsent_len;
} pending;

struct client {
    fan__list link; /* this thread's clients */
    char *url;      /* as configured: the key of this client */
    fan__redis_url addr;
    int bad_url;
    fan__redis_opts opts;
    redisAsyncContext *ac; /* NULL while DOWN */
    int state;
    int reason;        /* why the last connection ended: a FAN_E* code */
    unsigned failures; /* attempts failed in a row */
    double retry_at;   /* no attempt before it while DOWN */
    double connect_deadline;
    int was_up;                  /* connected once: the next loss is logged as such */
    uv_timer_t *timer;           /* malloc'ed: closed after the client is gone */
    uv_getaddrinfo_t *resolving; /* the host name's lookup, while CONNECTING without ac */
    fan__list inflight;
    unsigned ninflight;
};

static _Thread_local fan__list clients;
static _Thread_local int clients_ready;

static void rearm(client *c);
static void free_unsent(client *c);
static void drop(client *c, int reason, const char *why);
static void ready(client *c);

/* ---- Replies: deep copies into the request's memory ---- */

static fan_redis_reply *copy_reply(fan_req *rq, const redisReply *r, fan_redis_reply *into)
{
    fan_redis_reply *o = into ? into : fan_alloc(rq, sizeof *o);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->type = r->type;
    o->integer = r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
        r->type == REDIS_REPLY_ERROR) {
        char *s = fan_alloc(rq, r->len + 1);
        if (!s)
            return NULL;
        memcpy(s, r->str, r->len);
        s[r->len] = '\0';
        o->str = s;
        o->len = r->len;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements) {
        if (r->elements > SIZE_MAX / sizeof *o->element)
            return NULL;
        o->element = fan_alloc(rq, r->elements * sizeof *o->element);
        if (!o->element)
            return NULL;
        o->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++)
            if (!copy_reply(rq, r->element[i], &o->element[i]))
                return NULL;
    }
    return o;
}

/* ---- Commands in flight ---- */

/* Tells the sender, once: the reply, or NULL and why. */
static void tell(pending *p, const redisReply *r, int rc)
{
    fan__redis_cb cb = p->cb;
    p->cb = NULL;
    if (cb)
        cb(p->arg, r, rc);
}

static void finish(pending *p, redisReply *r)
{
    client *c = p->c;
    fan__list_remove(&p->link);
    c->ninflight--;
    tell(p, r, r ? 0 : c->reason ? c->reason : FAN_ECONNREFUSED);
    free(p);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    pending *p = privdata;
    client *c = p->c;
    redisReply *r = reply;
    int setup_failed = p->setup && r && r->type == REDIS_REPLY_ERROR;
    int is_ready = p->setup == 2 && r && !setup_failed;
    char why[160] = "";
    if (setup_failed)
        snprintf(why, sizeof why, "%.120s", r->str);
    finish(p, r);
    if (setup_failed && c->ac == ac) {
        drop(c, FAN_ECONNREFUSED, why);
        return;
    }
    if (is_ready && c->ac == ac)
        ready(c);
    if (c->ac == ac)
        rearm(c);
}

/* Every sender of a command in flight is told `rc` now; the commands stay
 * in flight until the connection drops them. */
static void fail_waiters(client *c, int rc)
{
    for (fan__list *n = c->inflight.next; n != &c->inflight; n = n->next)
        tell(fan__container_of(n, pending, link), NULL, rc);
}

/* ---- The connection ---- */

/* The commands never handed to hiredis (the host's address never came):
 * no callback of hiredis's will free them. Their senders were told. */
static void free_unsent(client *c)
{
    for (fan__list *n = c->inflight.next; n != &c->inflight;) {
        pending *p = fan__container_of(n, pending, link);
        n = n->next;
        if (!p->unsent)
            continue;
        fan__list_remove(&p->link);
        c->ninflight--;
        redisFreeCommand(p->unsent);
        free(p);
    }
}

static double backoff_s(client *c)
{
    double ms = 50.0;
    for (unsigned i = 1; i < c->failures && ms < c->opts.backoff_max_ms; i++)
        ms *= 2;
    if (ms > c->opts.backoff_max_ms)
        ms = c->opts.backoff_max_ms;
    ms *= 1.0 + (rand() % 250) / 1000.0; /* jitter, so that workers do not retry in step */
    return ms / 1000.0;
}

/* The connection ended or could not be made: commands in flight fail with
 * `reason`, and the next attempt waits for the backoff. */
static void mark_down(client *c, int reason, const char *why)
{
    int was_connected = c->state == CONNECTED;
    c->state = DOWN;
    c->ac = NULL;
    c->reason = reason;
    c->failures++;
    c->retry_at = fan_now() + backoff_s(c);
    fail_waiters(c, reason);
    free_unsent(c);
    if (c->resolving) {
        c->resolving->data = NULL; /* its callback frees it */
        uv_cancel((uv_req_t *)c->resolving);
        c->resolving = NULL;
    }
    /* A line per change of state, not per command: an outage is two lines
     * and one per failed attempt, with the backoff between them. */
    if (was_connected || c->failures == 1 || c->failures % 10 == 0)
        fan_log(FAN_LOG_WARN, "redis %s: %s (%s); next attempt in %.0f ms at the earliest",
                c->addr.shown, was_connected ? "connection lost" : "cannot connect",
                why && *why ? why : fan_strerror(reason), (c->retry_at - fan_now()) * 1000);
    rearm(c);
}

/* Ends the connection from our side (a timeout, a refused AUTH). */
static void drop(client *c, int reason, const char *why)
{
    redisAsyncContext *ac = c->ac;
    mark_down(c, reason, why);
    if (ac)
        redisAsyncFree(ac); /* the pendings' callbacks run with no reply: freed */
}

/* The connection is ready once the PING queued after AUTH and SELECT was
 * answered: a server that accepts and never answers is a connect that
 * times out. */
static void ready(client *c)
{
    c->state = CONNECTED;
    if (c->failures || !c->was_up)
        fan_log(FAN_LOG_INFO, "redis %s: connected%s", c->addr.shown, c->failures ? " again" : "");
    c->failures = 0;
    c->reason = 0;
    c->was_up = 1;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    client *c = ac->data;
    if (c->ac == ac && status != REDIS_OK)
        mark_down(c, FAN_ECONNREFUSED, ac->errstr); /* hiredis frees ac after this */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    client *c = ac->data;
    if (c->ac == ac) /* not dropped by us: Redis closed it, or an I/O error */
        mark_down(c, status == REDIS_OK ? FAN_ECONNREFUSED : FAN_EIO, ac->errstr);
}

static int send_cmd(client *c, fan__redis_cb cb, void *arg, void **handle, int setup, int argc,
                    const char **argv, const size_t *lens)
{
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return FAN_ENOMEM;
    p->c = c;
    p->cb = cb;
    p->arg = arg;
    p->setup = setup;
    p->deadline = fan_now() + c->opts.command_timeout_ms / 1000.0;
    if (!c->ac) { /* the host's address is being looked up: sent once connected */
        if ((p->unsent_len = redisFormatCommandArgv(&p->unsent, argc, argv, lens)) < 0) {
            free(p);
            return FAN_ENOMEM;
        }
    } else if (redisAsyncCommandArgv(c->ac, on_reply, p, argc, argv, lens) != REDIS_OK) {
        free(p);
        return FAN_EIO;
    }
    if (handle)
        *handle = p;
    fan__list_push(&c->inflight, &p->link);
    c->ninflight++;
    return 0;
}

/* Starts a connection, with its AUTH and SELECT queued first. */
static void connect_to(client *c, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, c->addr.port);
    if (!ac || ac->err) {
        char why[160];
        snprintf(why, sizeof why, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        mark_down(c, FAN_ECONNREFUSED, why);
        return;
    }
    ac->data = c;
    if (redisLibuvAttach(ac, fan_loop()) != REDIS_OK) {
        redisAsyncFree(ac);
        mark_down(c, FAN_ENOMEM, "cannot watch its socket");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    if (c->state != CONNECTING) /* after a lookup, the connect timeout counts from it */
        c->connect_deadline = fan_now() + c->opts.connect_timeout_ms / 1000.0;
    c->state = CONNECTING;
    char db[16];
    snprintf(db, sizeof db, "%d", c->addr.db);
    const char *auth[3] = {"AUTH", c->addr.user, c->addr.pass};
    const char *sel[2] = {"SELECT", db};
    int rc = 0;
    if (c->addr.pass[0])
        rc = c->addr.user[0] ? send_cmd(c, NULL, NULL, NULL, 1, 3, auth, NULL)
                             : send_cmd(c, NULL, NULL, NULL, 1, 2,
                                        (const char *[]){"AUTH", c->addr.pass}, NULL);
    if (rc == 0 && c->addr.db)
        rc = send_cmd(c, NULL, NULL, NULL, 1, 2, sel, NULL);
    if (rc == 0)
        rc = send_cmd(c, NULL, NULL, NULL, 2, 1, (const char *[]){"PING"}, NULL);
    /* Then what was sent while the host's address was looked up, in order. */
    for (fan__list *n = c->inflight.next; rc == 0 && n != &c->inflight; n = n->next) {
        pending *p = fan__container_of(n, pending, link);
        if (p->unsent && redisAsyncFormattedCommand(ac, on_reply, p, p->unsent,
                                                    (size_t)p->unsent_len) != REDIS_OK)
            rc = FAN_EIO;
        if (rc == 0 && p->unsent) {
            redisFreeCommand(p->unsent);
            p->unsent = NULL;
        }
    }
    if (rc != 0) {
        drop(c, rc, "cannot queue AUTH, SELECT and PING");
        return;
    }
    rearm(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    client *c = req->data;
    char ip[64] = "";
    if (status == 0 && res) {
        if (res->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
        else
            uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
    }
    uv_freeaddrinfo(res);
    free(req);
    if (!c)
        return; /* the attempt ended (its connect timeout), or the client did */
    c->resolving = NULL;
    if (!ip[0]) {
        mark_down(c, FAN_EDNS, status ? uv_strerror(status) : "no address");
        return;
    }
    connect_to(c, ip);
}

/* Starts a connection: at once to an address, after a lookup (on libuv's
 * thread pool, not on the loop) to a name. Commands sent meanwhile wait,
 * formatted, for the connection (and time out with its connect). */
static void connect_now(client *c)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, c->addr.host, buf) == 1 || inet_pton(AF_INET6, c->addr.host, buf) == 1) {
        connect_to(c, c->addr.host);
        return;
    }
    uv_getaddrinfo_t *req = malloc(sizeof *req);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (!req) {
        mark_down(c, FAN_ENOMEM, "out of memory");
        return;
    }
    req->data = c;
    int rc = uv_getaddrinfo(fan_loop(), req, on_resolved, c->addr.host, NULL, &hints);
    if (rc != 0) {
        free(req);
        mark_down(c, FAN_EDNS, uv_strerror(rc));
        return;
    }
    c->resolving = req;
    c->state = CONNECTING;
    c->connect_deadline = fan_now() + c->opts.connect_timeout_ms / 1000.0;
    rearm(c);
}

static void on_timer(uv_timer_t *t)
{
    client *c = t->data;
    double now = fan_now();
    if (c->state == CONNECTING && now >= c->connect_deadline) {
        drop(c, FAN_ETIMEDOUT, "connect timed out");
        return;
    }
    if (c->state == CONNECTED && !fan__list_empty(&c->inflight)) {
        pending *oldest = fan__container_of(c->inflight.next, pending, link);
        if (now >= oldest->deadline) {
            drop(c, FAN_ETIMEDOUT, "a command was not answered in time");
            return;
        }
    }
    rearm(c);
}

/* Arms the timer for the connect's deadline or the oldest command's. */
static void rearm(client *c)
{
    double at = 0;
    if (c->state == CONNECTING)
        at = c->connect_deadline;
    else if (c->state == CONNECTED && !fan__list_empty(&c->inflight))
        at = fan__container_of(c->inflight.next, pending, link)->deadline;
    if (!at) {
        uv_timer_stop(c->timer);
        return;
    }
    double ms = (at - fan_now()) * 1000.0 + 1;
    uv_timer_start(c->timer, on_timer, ms > 0 ? (uint64_t)ms : 0, 0);
}

/* ---- This thread's clients ---- */

static client *client_for(const fan__redis_opts *opts, int create)
{
    if (!clients_ready) {
        fan__list_init(&clients);
        clients_ready = 1;
    }
    for (fan__list *n = clients.next; n != &clients; n = n->next) {
        client *c = fan__container_of(n, client, link);
        if (strcmp(c->url, opts->url) == 0) {
            c->opts = *opts; /* the latest settings apply to the next commands */
            c->opts.url = c->url;
            return c;
        }
    }
    if (!create)
        return NULL;
    client *c = calloc(1, sizeof *c);
    if (!c || !(c->url = strdup(opts->url)) || !(c->timer = malloc(sizeof *c->timer))) {
        if (c)
            free(c->url);
        free(c);
        return NULL;
    }
    c->opts = *opts;
    c->opts.url = c->url;
    fan__list_init(&c->inflight);
    uv_timer_init(fan_loop(), c->timer);
    c->timer->data = c;
    uv_unref((uv_handle_t *)c->timer);
    char why[160];
    if (fan__redis_url_parse(c->url, &c->addr, why, sizeof why) != 0) {
        fan_log(FAN_LOG_ERROR, "redis: %s", why);
        c->bad_url = 1;
    }
    fan__list_push(&clients, &c->link);
    return c;
}

int fan__redis_send(const fan__redis_opts *opts, int argc, const char **argv, const size_t *lens,
                    fan__redis_cb cb, void *arg, void **handle)
{
    if (argc < 1 || !argv || !opts->url || !*opts->url)
        return FAN_EINVAL;
    client *c = client_for(opts, 1);
    if (!c)
        return FAN_ENOMEM;
    if (c->bad_url)
        return FAN_EINVAL;
    if (c->state == DOWN) {
        if (fan_now() < c->retry_at)
            return c->reason ? c->reason : FAN_ECONNREFUSED;
        connect_now(c);
        if (c->state == DOWN)
            return c->reason;
    }
    /* After a failure, the new connection is a probe: commands fail at once
     * until it is ready, rather than wait for a Redis that may still be
     * away (one that accepts and never answers costs a connect timeout). */
    if (c->state == CONNECTING && c->failures)
        return c->reason ? c->reason : FAN_ECONNREFUSED;
    if (c->ninflight >= c->opts.max_in_flight)
        return FAN_EBUSY;
    int rc = send_cmd(c, cb, arg, handle, 0, argc, argv, lens);
    if (rc == 0)
        rearm(c);
    return rc;
}

void fan__redis_cancel(void *handle)
{
    if (handle)
        ((pending *)handle)->cb = NULL; /* the reply, when it comes, is dropped */
}

static void on_result(void *arg, const redisReply *r, int rc)
{
    waiter *w = arg;
    w->command = NULL;
    w->rc = rc;
    if (r && !(w->reply = copy_reply(w->rq, r, NULL)))
        w->rc = FAN_ENOMEM;
    fan_wake(w->waker);
}

static void on_cancel(void *arg)
{
    waiter *w = arg;
    if (!w->command)
        return; /* the reply came and woke it already */
    fan__redis_cancel(w->command);
    w->command = NULL;
    w->rc = FAN_ECANCELED;
    fan_wake(w->waker);
}

int fan__redis_exec(fan_req *rq, const fan__redis_opts *opts, int argc, const char **argv,
                    const size_t *lens, fan_redis_reply **out)
{
    *out = NULL;
    if (fan_cancelled(rq))
        return FAN_ECANCELED;
    if (!fan__task_of(rq)->co)
        return FAN_ESTATE;
    waiter w = {.rq = rq, .rc = FAN_ECANCELED};
    if (!(w.waker = fan_waker_new(rq, on_cancel, &w)))
        return fan__task_of(rq)->co ? FAN_ENOMEM : FAN_ESTATE;
    int rc = fan__redis_send(opts, argc, argv, lens, on_result, &w, &w.command);
    if (rc != 0) {
        w.command = NULL;
        fan_wake(w.waker);
        fan_suspend(rq, w.waker);
        return rc;
    }
    fan_suspend(rq, w.waker); /* returns only once woken: w is ours again */
    if (w.rc == 0)
        *out = w.reply;
    return w.rc;
}

int fan__redis_connected(const fan__redis_opts *opts)
{
    client *c = client_for(opts, 0);
    return c && c->state == CONNECTED;
}

static void free_timer(uv_handle_t *h)
{
    free(h);
}

void fan__redis_shutdown(void)
{
    if (!clients_ready)
        return;
    while (!fan__list_empty(&clients)) {
        client *c = fan__container_of(clients.next, client, link);
        fan__list_remove(&c->link);
        c->state = DOWN;
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        if (ac)
            redisAsyncFree(ac); /* frees the commands still in flight */
        free_unsent(c);
        if (c->resolving) {
            c->resolving->data = NULL;
            uv_cancel((uv_req_t *)c->resolving);
        }
        uv_timer_stop(c->timer);
        uv_close((uv_handle_t *)c->timer, free_timer);
        free(c->url);
        free(c);
    }
}
