/* The lean transport's internals, shared by lean.c (connections, calls) and
 * lean_pool.c (origins, URLs, name resolution). */
#ifndef FAN_CLIENT_LEAN_H
#define FAN_CLIENT_LEAN_H

#include <llhttp.h>

#include "client/client.h"
#include "core/h1_check.h"
#include "core/span.h"

/* Addresses kept per name: a connection refused, unreachable or silent
 * past the connect timeout tries the next. */
#define FAN__LEAN_MAX_ADDRS 8

typedef struct pool pool;
typedef struct lcall lcall;

typedef struct lconn {
    uv_tcp_t tcp;          /* its connect and write requests are malloc'd while
                            * they run: an idle or waiting connection holds none */
    llhttp_t parser;
    pool *pool;
    lcall *lc;             /* the call it serves, NULL when idle */
    fan__list link;        /* pool->idle while idle */
    fan__span field, value; /* a response header being read */
    fan__h1_check h1;      /* obs-fold and chunk CRLF, which llhttp does not check */
    uint64_t idle_since;
    unsigned generation;   /* the pool's address generation it connected to */
    unsigned addr_index;   /* which of the pool's addresses */
    bool reused : 1;       /* it served a response before this call */
    bool got_bytes : 1;    /* response bytes arrived for the current call */
    bool complete : 1;     /* the current response is complete */
    bool broken : 1;       /* not reusable whatever the response said */
    bool writing : 1;      /* a request write is queued in libuv */
    bool connected : 1;    /* its TCP connection is established */
    bool closing : 1;
} lconn;

struct lcall {
    fan_call *call;
    lconn *conn;
    pool *pool;
    fan__timeout total;    /* the call's timeout */
    fan__timeout connect;  /* while a connection is being made for it */
    fan__list link;        /* pool->waiting while the host is being resolved */
    size_t head_len;
    int head_method;       /* a HEAD request: the response has no body */
    int idempotent;        /* and no retry policy governs it: a stale connection is retried */
    int retried;
    unsigned tries;        /* addresses its connections tried */
    unsigned addr_index;   /* the one tried last */
    int error;             /* set by a parser callback that aborts */
    char head[];           /* the serialized request line and headers */
};

struct pool {
    char *authority;       /* the URL's "host:port", the pool's key */
    char *host;            /* for the socket address (IPv6 without brackets) */
    char *hostport;        /* for the Host header */
    int port;
    struct sockaddr_storage addrs[FAN__LEAN_MAX_ADDRS]; /* in the resolver's order */
    unsigned naddrs;
    unsigned current;      /* where a new connection starts: the last that connected */
    int resolved;
    int numeric;           /* an IP address: never resolved again */
    uint64_t resolved_at;  /* uv_now() of the last answer of the resolver */
    unsigned generation;   /* bumped when the name moves to another address */
    int dead;              /* dropped at shutdown while resolving */
    uv_getaddrinfo_t *resolving;
    fan__list idle;
    size_t nidle;
    size_t idle_max;       /* max_idle_connections_per_host of the last call started */
    fan__list waiting;
    pool *next;
};

typedef struct lean_state {
    pool *pools;
    uv_timer_t sweep;      /* closes connections idle too long */
    int sweeping;
} lean_state;

extern _Thread_local lean_state *fan__lean;

/* Ends a call with `error` (lean.c). */
void fan__lean_finish(lcall *lc, int error);

/* Sends a call on an idle connection of its pool, or a new one (lean.c). */
void fan__lean_dispatch(lcall *lc);

/* The llhttp callbacks that read a response into conn->lc->call
 * (lean_response.c), for a parser whose data is the connection. */
const llhttp_settings_t *fan__lean_settings(void);

/* Parses `len` bytes read on `conn` for its call (lean_response.c): the
 * framing checks llhttp leaves out, llhttp, and the copy of a header cut by
 * the end of the input, so that the caller may reuse `data` afterwards.
 * Returns 1 while the response goes on; 0 once it is complete (then
 * conn->complete, and conn->broken if bytes follow it); or a negative FAN_E*
 * code. *why is what llhttp or a framing check refused, for the log; NULL
 * when a callback's own check ended the call (a size limit, a status below
 * 100, no memory). The read path (lean.c) and the response fuzzer
 * (tests/fuzz/fuzz_response.c) call it. */
int fan__lean_parse(lconn *conn, const char *data, size_t len, const char **why);

/* The pool of an origin ("host:port" as the URL wrote it), or NULL. */
pool *fan__lean_find_pool(const char *authority, size_t len);

/* Parses the origin with curl's URL API and makes its pool. Returns 0,
 * FAN_EINVAL or FAN_ENOMEM. */
int fan__lean_new_pool(const char *authority, size_t len, pool **out);

/* Resolves the pool's host: at once for a numeric address, else through
 * uv_getaddrinfo (the waiting calls are dispatched or failed when it
 * answers). Called again for a resolved name whose answer is older than
 * dns_ttl_ms, it refreshes the address in the background: calls go on with
 * the old one meanwhile, and keep it if the resolver fails. Returns 0 or
 * FAN_EDNS / FAN_ENOMEM. */
int fan__lean_resolve(pool *p);

/* Closes the pool's idle connections (lean.c): its name moved. */
void fan__lean_drop_idle(pool *p);

/* Frees a pool that has no connection left. */
void fan__lean_pool_free(pool *p);

/* Splits an http:// URL into its authority and its request target. */
int fan__lean_split_url(const char *url, const char **auth, size_t *auth_len,
                        const char **target, size_t *target_len);

#endif
