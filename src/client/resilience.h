/* Retries, hedged calls and circuit breakers (docs/resilience.md): the
 * per-worker state of an origin they share (health.c), the breaker that
 * reads it (breaker.c), and the attempt engine that runs a call as several
 * tries (attempts.c). Internal to the client layer. */
#ifndef FAN_CLIENT_RESILIENCE_H
#define FAN_CLIENT_RESILIENCE_H

#include "client/client.h"

#define FAN__HEALTH_BUCKETS 64 /* latency histogram: 4 buckets per doubling, 1 ms to 65 s */
#define FAN__WINDOW_SLOTS 10   /* the breaker's rolling window, in tenths */

typedef enum { FAN__BREAKER_CLOSED, FAN__BREAKER_OPEN, FAN__BREAKER_HALF_OPEN } fan__breaker_state;

/* What a worker knows of one origin. Made when a call with a retry policy
 * or to an origin with options first needs it, kept until the worker ends. */
typedef struct fan__health {
    struct fan__health *next;           /* hash chain */
    size_t calls;                       /* its calls in flight (counted ones) */
    size_t retries;                     /* retries and hedges in flight, backoff waits included */
    unsigned long refused;              /* retries and hedges the budget refused */
    unsigned hist[FAN__HEALTH_BUCKETS]; /* successful tries' latencies */
    unsigned hist_n;
    fan__breaker_state state;
    unsigned consecutive; /* failed tries in a row */
    double opened_at;     /* fan_now() when it last opened */
    int probing;          /* half-open: the probe is under way */
    unsigned long long slot_epoch[FAN__WINDOW_SLOTS];
    unsigned slot_ok[FAN__WINDOW_SLOTS], slot_failed[FAN__WINDOW_SLOTS];
    unsigned hash;
    size_t len;
    char key[]; /* the origin, as fan__origin_key() writes it */
} fan__health;

/* The worker's state of the origin of `url`, made if needed; NULL when out
 * of memory, when the origin is too long, or when the worker already knows
 * FAN__HEALTH_MAX origins (URLs made of request input must not grow it
 * without end). */
fan__health *fan__health_of(const char *url, size_t max_origins);

/* Frees the worker's table (fan__client_shutdown()). */
void fan__health_shutdown(void);

/* Takes one unit of the origin's retry budget for a retry or a hedge of
 * call `c`: 1 when within it, else 0, counted and logged at debug. */
int fan__health_budget_take(fan__health *h, const fan_call *c, const char *what);
void fan__health_budget_put(fan__health *h);

/* The origin's p95 latency in ms, 0 while fewer than 20 are known. */
unsigned fan__health_p95_ms(const fan__health *h);

/* Records the end of one exchange `x` (a plain call or a try) that was sent
 * upstream: the breaker's counts and, for a success, its latency. A try we
 * cancelled counts for neither, but hands back a probe it was. */
void fan__health_exchange_end(fan__health *h, fan_call *x);

/* Whether a call (or a retry, or a hedge) of call `c` may go to the origin:
 * 0, or FAN_EOPEN while its breaker is open or a half-open probe is under
 * way. Sets *probe when this exchange is the half-open probe. */
int fan__breaker_admit(fan__health *h, const fan_call *c, int *probe);

/* Counts one exchange's outcome in the breaker (`failed`), or hands back a
 * probe that ended without one (`failed` < 0: cancelled). Logs changes. */
void fan__breaker_record(fan__health *h, const fan_call *x, int failed);

/* The effective retry policy of a call: the call's own or its origin's,
 * with defaults filled in, in the request's arena; NULL when the call is
 * tried once and not hedged (the plain path). Sets *rc to FAN_ENOMEM or
 * FAN_EINVAL (logged) on failure. */
const fan_retry_policy *fan__retry_policy(fan_call *c, const fan_retry_policy *own, int *rc);

/* Runs the call `c` (with c->policy set) as tries: returns 1 once it is
 * under way or already finished, or FAN_ENOMEM before anything started. */
int fan__attempts_start(fan_call *c);

/* Cancels every try of the call and ends it with FAN_ECANCELED. */
void fan__attempts_cancel(fan_call *c);

/* A try ended (fan__call_finish() of a call with a parent). */
void fan__attempt_done(fan_call *a, int error);

#endif
