/* The Redis layer: one hiredis connection per worker (thread) and Redis
 * address, driven by hiredis's libuv adapter on the worker's loop, with
 * connect and command timeouts, reconnects with backoff and a bound on the
 * commands in flight; commands are awaited through wakers (runtime). It
 * knows nothing of apps or HTTP: the app layer (src/app/redis.c) reads the
 * redis.* settings and builds sessions and rate limits on it. Internal to
 * libfanout; the public contract is include/fanout.h. */
#ifndef FAN_REDIS_REDIS_H
#define FAN_REDIS_REDIS_H

#include <stddef.h>

#include "fanout.h"

/* A parsed redis://[user[:password]@]host[:port][/db] URL. */
typedef struct fan__redis_url {
    char host[256];
    int port;        /* 6379 by default */
    int db;          /* 0 by default */
    char user[128];  /* empty for none */
    char pass[256];  /* empty for none */
    char shown[512]; /* the URL as logs show it: the password as "***" */
} fan__redis_url;

/* Parses `url`. Returns 0, or FAN_EINVAL with what is wrong in `why`
 * (never the password). */
int fan__redis_url_parse(const char *url, fan__redis_url *out, char *why, size_t whylen);

/* What a connection is made with. */
typedef struct fan__redis_opts {
    const char *url;
    unsigned connect_timeout_ms; /* a connect (and its AUTH/SELECT) not done in it fails */
    unsigned command_timeout_ms; /* a reply not come in it: the command fails, and the
                                  * connection is dropped and made again */
    unsigned max_in_flight;      /* commands sent and not answered; FAN_EBUSY beyond */
    unsigned backoff_max_ms;     /* the longest wait before a reconnect */
} fan__redis_opts;

struct redisReply;

/* What the sender of a command is told, once: hiredis's reply (valid only
 * during the call: copy what you keep) with rc 0, or NULL and the failure
 * (FAN_ECONNREFUSED, FAN_ETIMEDOUT, FAN_EIO). */
typedef void (*fan__redis_cb)(void *arg, const struct redisReply *reply, int rc);

/* Sends the command argv[0..argc) (as fan__redis_exec()) without a
 * request: cb(arg, ...) is called once, later, from the loop (never within
 * this call), unless fan__redis_cancel(*handle) came first; then never.
 * Returns 0 with *handle set, or, with cb never called: FAN_EINVAL,
 * FAN_ECONNREFUSED (down, waiting for its next attempt), FAN_EBUSY,
 * FAN_EIO or FAN_ENOMEM. For a tier with callbacks (a cache store). */
int fan__redis_send(const fan__redis_opts *opts, int argc, const char **argv, const size_t *lens,
                    fan__redis_cb cb, void *arg, void **handle);

/* Cancels the command `handle` of fan__redis_send() whose callback has not
 * run: it never will; Redis may still carry the command out. */
void fan__redis_cancel(void *handle);

/* Sends the command argv[0..argc) (lens[i] bytes each, or strlen when lens
 * is NULL) on this thread's connection for opts (made, or made again after
 * its backoff, on first use) and suspends the running task of `rq` until
 * its reply, its timeout or the task's cancellation. On 0, *out is the
 * reply, copied into the request's memory (freed with the request); a
 * Redis error reply is a reply of type FAN_REDIS_ERROR. Otherwise returns
 * FAN_EINVAL (bad URL, logged once), FAN_ECONNREFUSED (Redis could not be
 * reached, or the connection is down and waits for its next attempt),
 * FAN_ETIMEDOUT (no reply within command_timeout_ms), FAN_EBUSY
 * (max_in_flight commands in flight), FAN_ECANCELED (the task was
 * cancelled: a reply that comes later is dropped, never seen by anyone),
 * FAN_ESTATE (not called from a task of rq) or FAN_ENOMEM. */
int fan__redis_exec(fan_req *rq, const fan__redis_opts *opts, int argc, const char **argv,
                    const size_t *lens, fan_redis_reply **out);

/* The connection's state for opts on this thread, for tests and logs: 1
 * connected, 0 not (or not made yet). */
int fan__redis_connected(const fan__redis_opts *opts);

/* Closes this thread's connections (fan_run() calls it when it stops,
 * after every request ended). */
void fan__redis_shutdown(void);

#endif
