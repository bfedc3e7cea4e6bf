/* The attempt engine: runs a call whose retry policy asks for retries or a
 * hedge as several tries. A try is an internal fan_call that the call owns
 * (its parent): it has its own transport handle, slot and response, and the
 * transports run it as any call. The try whose outcome is final (a
 * response that is not retried, or the last failure) gives the call its
 * response; a hedge that loses, and every try of a call that is cancelled,
 * is cancelled through its transport, which closes its connection.
 *
 * Every path ends here: a try that ends (even at once, while another is
 * being started) is queued and handled at the outermost entry, and the call
 * itself ends only once no try is live and no timer runs, as the last thing
 * done. Nothing of a call (a try, a backoff or hedge timer) outlives it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/resilience.h"
#include "core/log.h"
#include "runtime/metrics.h"

#define MAX_RETRIES 10

enum { TRY_FIRST, TRY_RETRY, TRY_HEDGE };
enum { TIMER_IDLE, TIMER_BACKOFF, TIMER_HEDGE };

typedef struct fan__attempts {
    uv_timer_t timer; /* backoff, or the hedge's delay; its close frees the struct */
    fan_call *call;
    fan__list live;   /* tries under way (fan_call.try_link) */
    fan__list ended;  /* tries that ended, to be handled */
    fan_call *last;   /* the last failed try, whose outcome ends the call if nothing else */
    unsigned retries; /* retries started */
    int hedged;       /* the hedge was considered (one per call) */
    int timer_kind;
    int waiting_budget; /* a backoff wait holds a unit of the budget */
    int decided;        /* the call's outcome is known: what is live is being cancelled */
    int error;          /* the call's error once decided */
    int depth;          /* nested entries: only the outermost handles ended tries */
} fan__attempts;

static int idempotent(const char *m)
{
    static const char *const methods[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(m, methods[i]) == 0)
            return 1;
    return 0;
}

const fan_retry_policy *fan__retry_policy(fan_call *c, const fan_retry_policy *own, int *rc)
{
    const fan_retry_policy *src = own ? own : c->origin_cfg ? &c->origin_cfg->opts.retry : NULL;
    *rc = 0;
    if (!src || (!src->max_retries && !src->hedge_after_ms && !src->hedge_p95))
        return NULL;
    if (src->max_retries > MAX_RETRIES) {
        fan_log(FAN_LOG_WARN, "call %s: max_retries %u is more than %d", c->name, src->max_retries,
                MAX_RETRIES);
        *rc = FAN_EINVAL;
        return NULL;
    }
    for (int i = 0; i < 8 && src->retry_on[i]; i++)
        if ((src->retry_on[i] < 100 || src->retry_on[i] > 599) &&
            !(i == 0 && src->retry_on[0] == -1)) {
            fan_log(FAN_LOG_WARN, "call %s: retry_on[%d] = %d is not a status", c->name, i,
                    src->retry_on[i]);
            *rc = FAN_EINVAL;
            return NULL;
        }
    if (!src->non_idempotent && !idempotent(c->method))
        return NULL;
    fan_retry_policy *p = fan__arena_alloc(fan__req_arena(c->rq), sizeof *p);
    if (!p) {
        *rc = FAN_ENOMEM;
        return NULL;
    }
    *p = *src;
    p->base_ms = p->base_ms ? p->base_ms : 25;
    p->cap_ms = p->cap_ms ? p->cap_ms : 250;
    if (!p->retry_on[0]) {
        p->retry_on[0] = 502;
        p->retry_on[1] = 503;
        p->retry_on[2] = 504;
    }
    return p;
}

/* What is left of the call's total timeout, in ms (may be negative). */
static double left_ms(const fan_call *c)
{
    return c->timeout_ms - (fan_now() - c->started) * 1000;
}

static unsigned long long xorshift(void)
{
    static _Thread_local unsigned long long s;
    if (!s)
        s = (unsigned long long)(fan_now() * 1e9) ^ (unsigned long long)(size_t)&s ^ 1;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static void enter(fan__attempts *at);
static void leave(fan__attempts *at);

static void discard(fan_call *a)
{
    if (a)
        fan__buf_free(&a->resp_body);
}

static fan_call *new_try(fan__attempts *at)
{
    fan_call *c = at->call;
    fan_call *a = fan__arena_alloc(fan__req_arena(c->rq), sizeof *a);
    if (!a)
        return NULL;
    memset(a, 0, sizeof *a);
    a->rq = c->rq;
    a->task = c->task;
    a->tp = c->tp;
    a->url = c->url;
    a->name = c->name;
    a->method = c->method;
    a->headers = c->headers;
    a->nchecked = c->nchecked;
    a->body = c->body;
    a->body_len = c->body_len;
    a->connect_timeout_ms = c->connect_timeout_ms;
    a->max_body = c->max_body;
    a->upstreams = c->upstreams;
    a->origin_cfg = c->origin_cfg;
    a->conn_cap = c->conn_cap;
    a->health = c->health;
    a->parent = c;
    a->error = 1;
    fan__list_init(&a->done_link);
    fan__list_init(&a->queue_link);
    fan__list_init(&a->try_link);
    a->started = fan_now();
    double left = left_ms(c);
    unsigned total = left > 1 ? (unsigned)left : 1, per = c->policy->per_try_timeout_ms;
    a->timeout_ms = per && per < total ? per : total;
    a->has_all_time = a->timeout_ms == total;
    return a;
}

static unsigned hedge_delay(const fan__attempts *at)
{
    const fan_retry_policy *p = at->call->policy;
    unsigned p95 = p->hedge_p95 ? fan__health_p95_ms(at->call->health) : 0;
    return p95 ? p95 : p->hedge_after_ms;
}

static void timer_fired(uv_timer_t *t);

static void arm(fan__attempts *at, int kind, unsigned ms)
{
    at->timer_kind = kind;
    uv_timer_start(&at->timer, timer_fired, ms, 0);
}

static void disarm(fan__attempts *at)
{
    if (at->timer_kind != TIMER_IDLE)
        uv_timer_stop(&at->timer);
    at->timer_kind = TIMER_IDLE;
}

/* Starts a try; one that ends at once is queued in at->ended. */
static void launch(fan__attempts *at, int kind, int budgeted, int probe)
{
    fan_call *a = new_try(at);
    if (!a) {
        if (budgeted)
            fan__health_budget_put(at->call->health);
        if (fan__list_empty(&at->call->try_link)) /* see handle(): no memory */
            fan__list_push(&at->ended, &at->call->try_link);
        return;
    }
    a->budgeted = budgeted;
    a->probe = probe;
    fan__list_push(&at->live, &a->try_link);
    unsigned hedge = at->hedged ? 0 : hedge_delay(at);
    if (hedge && at->timer_kind == TIMER_IDLE && hedge < left_ms(at->call))
        arm(at, TIMER_HEDGE, hedge);
    if (kind != TRY_FIRST)
        fan_log(FAN_LOG_DEBUG, "call %s: %s (try %d)", at->call->name,
                kind == TRY_HEDGE ? "hedged" : "retrying", at->call->attempts + 1);
    int rc = fan__slots_acquire(a);
    if (rc == 0)
        fan__call_launch(a);
    else if (rc < 0)
        fan__call_finish(a, rc);
}

static void cancel_try(fan_call *a)
{
    a->cancelled_by_us = 1;
    if (a->queued)
        fan__call_finish(a, FAN_ECANCELED);
    else
        a->tp->cancel(a);
}

/* The call's outcome is `a`'s (or `error` when a is NULL): what is still
 * live is cancelled, and the call ends once it all ended. */
static void decide(fan__attempts *at, fan_call *a, int error)
{
    fan_call *c = at->call;
    at->decided = 1;
    disarm(at);
    if (at->waiting_budget) {
        at->waiting_budget = 0;
        fan__health_budget_put(c->health);
    }
    if (at->last != a)
        discard(at->last);
    at->last = NULL;
    at->error = a ? a->error : error;
    if (a) {
        c->status = a->status;
        c->resp_body = a->resp_body;
        memset(&a->resp_body, 0, sizeof a->resp_body);
        c->resp_headers = a->resp_headers;
        c->nresp = a->nresp;
        c->resp_cap = a->resp_cap;
        c->resp_header_bytes = a->resp_header_bytes;
        c->too_large = a->too_large;
        c->bad_head = a->bad_head;
        c->tp_errbuf = a->tp_errbuf;
    }
    for (;;) { /* a cancelled try may end at once, and start a queued one */
        fan_call *b = NULL;
        fan__list *pos;
        fan__list_each(pos, &at->live)
        {
            fan_call *t = fan__container_of(pos, fan_call, try_link);
            if (!t->cancelled_by_us) {
                b = t;
                break;
            }
        }
        if (!b)
            break;
        fan_log(FAN_LOG_DEBUG, "call %s: the other try won: this one is cancelled", c->name);
        cancel_try(b);
    }
}

/* Whether try `a` failed in a way that is retried; *retry_after_ms is the
 * wait its Retry-After asks for, or -1. */
static int retriable(const fan__attempts *at, const fan_call *a, long *retry_after_ms)
{
    const fan_retry_policy *p = at->call->policy;
    *retry_after_ms = -1;
    if (a->error == 0) {
        int listed = 0;
        for (int i = 0; i < 8 && p->retry_on[i] > 0; i++)
            listed |= p->retry_on[i] == a->status;
        if (!listed)
            return 0;
        const char *ra = fan_call_header(a, "Retry-After");
        if (ra && *ra && strspn(ra, "0123456789") == strlen(ra) && strlen(ra) < 9)
            *retry_after_ms = atol(ra) * 1000;
        return 1;
    }
    switch (a->error) {
    case FAN_ECONNREFUSED:
        return 1;
    case FAN_ETIMEDOUT:
        /* The per-try timeout; a try that had all the call's time left
         * timed out with the call (its timer may fire a few ms before the
         * call's deadline: the loop's clock is read once per turn). */
        return !a->has_all_time && left_ms(at->call) > 1;
    case FAN_EIO:
    case FAN_EPROTO:
        return !a->responded; /* a reset before the first byte */
    default:
        return 0;
    }
}

/* The try that failed last and nothing is live: a retry after its
 * backoff, or the call ends with that failure. */
static void schedule_retry(fan__attempts *at, long retry_after_ms)
{
    fan_call *c = at->call;
    const fan_retry_policy *p = c->policy;
    const char *why = NULL;
    unsigned long long delay = 0;
    if (at->retries >= p->max_retries) {
        why = "no retry left"; /* or none to begin with: a policy that only hedges */
    } else if (retry_after_ms > (long)p->cap_ms) {
        why = "its Retry-After is beyond the retry cap";
    } else {
        unsigned long long ceiling = (unsigned long long)p->base_ms << at->retries;
        if (ceiling > p->cap_ms)
            ceiling = p->cap_ms;
        delay = retry_after_ms >= 0 ? (unsigned long long)retry_after_ms
                                    : xorshift() % (ceiling + 1); /* full jitter */
        if ((double)delay + 1 >= left_ms(c))
            why = "no time left for a retry within its timeout";
        else if (!fan__health_budget_take(c->health, c, "retry"))
            why = "the retry budget is spent";
    }
    if (why) {
        if (p->max_retries)
            fan_log(FAN_LOG_DEBUG, "call %s: not retried: %s", c->name, why);
        decide(at, at->last, 0);
        return;
    }
    at->retries++;
    at->waiting_budget = 1;
    fan_log(FAN_LOG_DEBUG, "call %s: try %d failed (%s, status %d); retry %u in %llu ms", c->name,
            c->attempts, fan_errname(at->last->error), at->last->status, at->retries, delay);
    arm(at, TIMER_BACKOFF, (unsigned)delay);
}

/* The backoff ended: the retry starts, if the breaker lets it. */
static void retry_now(fan__attempts *at)
{
    fan_call *c = at->call;
    int probe;
    if (fan__breaker_admit(c->health, c, &probe) != 0) {
        fan_log(FAN_LOG_DEBUG, "call %s: not retried: its origin's breaker is open", c->name);
        decide(at, at->last, 0);
        return;
    }
    at->waiting_budget = 0;
    c->flags |= FAN_CALL_RETRIED;
    fan__metrics_add(FAN__M_RETRIES, 1);
    launch(at, TRY_RETRY, 1, probe);
}

static void hedge_now(fan__attempts *at)
{
    fan_call *c = at->call;
    int probe;
    at->hedged = 1;
    if (fan__list_empty(&at->live) || !fan__health_budget_take(c->health, c, "hedge"))
        return;
    if (fan__breaker_admit(c->health, c, &probe) != 0) {
        fan__health_budget_put(c->health);
        return;
    }
    c->flags |= FAN_CALL_HEDGED;
    fan__metrics_add(FAN__M_HEDGES, 1);
    launch(at, TRY_HEDGE, 1, probe);
}

static void timer_fired(uv_timer_t *t)
{
    fan__attempts *at = t->data;
    int kind = at->timer_kind;
    at->timer_kind = TIMER_IDLE;
    enter(at);
    if (!at->decided && kind == TIMER_BACKOFF)
        retry_now(at);
    else if (!at->decided && kind == TIMER_HEDGE)
        hedge_now(at);
    leave(at);
}

/* A try ended: its outcome decides the call, or the call waits for the
 * other try, or retries. */
static void handle(fan__attempts *at, fan_call *a)
{
    fan_call *c = at->call;
    if (a == c) { /* launch() had no memory for a try */
        if (!at->decided && fan__list_empty(&at->live))
            decide(at, at->last ? at->last : NULL, at->last ? 0 : FAN_ENOMEM);
        return;
    }
    if (a->budgeted) {
        a->budgeted = 0;
        fan__health_budget_put(c->health);
    }
    fan__health_exchange_end(c->health, a);
    long retry_after;
    if (at->decided) {
        discard(a);
        return;
    }
    if (!retriable(at, a, &retry_after)) {
        decide(at, a, 0);
        return;
    }
    if (at->last)
        discard(at->last);
    at->last = a;
    if (!fan__list_empty(&at->live))
        return; /* the other try goes on */
    disarm(at); /* a hedge not sent yet */
    schedule_retry(at, retry_after);
}

static void end_call(fan__attempts *at)
{
    fan_call *c = at->call;
    c->att = NULL;
    disarm(at);
    if (c->flags)
        fan_log(FAN_LOG_DEBUG, "call %s: %d tries (%s%s%s): %s, status %d", c->name, c->attempts,
                c->flags & FAN_CALL_RETRIED ? "retried" : "",
                c->flags == (FAN_CALL_RETRIED | FAN_CALL_HEDGED) ? ", " : "",
                c->flags & FAN_CALL_HEDGED ? "hedged" : "", fan_errname(at->error), c->status);
    uv_close((uv_handle_t *)&at->timer, fan__free_handle_data);
    fan__call_finish(c, at->error); /* may resume the handler: the last thing done */
}

static void enter(fan__attempts *at)
{
    at->depth++;
}

static void leave(fan__attempts *at)
{
    while (at->depth == 1 && !fan__list_empty(&at->ended)) {
        fan__list *n = at->ended.next;
        fan__list_remove(n);
        handle(at, fan__container_of(n, fan_call, try_link));
    }
    if (--at->depth == 0 && at->decided && fan__list_empty(&at->live))
        end_call(at);
}

int fan__attempts_start(fan_call *c)
{
    fan__attempts *at = calloc(1, sizeof *at);
    if (!at)
        return FAN_ENOMEM;
    uv_timer_init(fan__loop(), &at->timer);
    at->timer.data = at;
    at->call = c;
    fan__list_init(&at->live);
    fan__list_init(&at->ended);
    fan__list_init(&c->try_link);
    c->att = at;
    int probe = c->probe;
    c->probe = 0; /* the first try is the probe, if the call is */
    enter(at);
    launch(at, TRY_FIRST, 0, probe);
    leave(at);
    return 1;
}

void fan__attempts_cancel(fan_call *c)
{
    fan__attempts *at = c->att;
    enter(at);
    if (!at->decided)
        decide(at, NULL, FAN_ECANCELED);
    leave(at);
}

void fan__attempt_done(fan_call *a, int error)
{
    fan__attempts *at = a->parent->att;
    a->error = error;
    a->finished = fan_now();
    enter(at);
    fan__list_remove(&a->try_link);
    fan__list_push(&at->ended, &a->try_link);
    fan__slots_release(a); /* may start queued calls, a try of this one included */
    leave(at);
}
