/* The store behind the response cache: get, put and delete of responses by
 * key, each with its freshness times, so that another tier (a store shared
 * by every worker and instance, in Redis) plugs in behind the cache without
 * changing it or its callers. A lookup is asynchronous-capable: it may
 * answer before get() returns, or later from the loop (a network store);
 * the cache handles both. The worker's own tier is the memory store
 * (store_memory.c). Internal to libfanout. */
#ifndef FAN_CLIENT_STORE_H
#define FAN_CLIENT_STORE_H

#include <stddef.h>

#include "core/header.h"

/* A stored response, and when it goes stale and then unusable, in fan_now()
 * seconds. A store keeps an entry until the latest of the three times, or
 * until it evicts it. */
typedef struct fan__store_entry {
    int status;
    const fan__header *headers;
    unsigned nheaders;
    const char *body;
    size_t body_len;
    double fresh_until; /* fresh until then */
    double swr_until;   /* then served while a refresh runs (stale-while-revalidate) */
    double sie_until;   /* served when the refresh fails (stale-if-error) */
} fan__store_entry;

/* What a lookup finds: `hit` NULL for nothing. The entry is the store's,
 * valid only during the callback: the callee copies what it keeps. */
typedef void (*fan__store_get_cb)(void *arg, const fan__store_entry *hit);

typedef struct fan__store fan__store;

typedef struct fan__store_ops {
    const char *name;
    /* Looks `key` (klen bytes) up. Either calls cb(arg, hit) before it
     * returns 0, or returns 1 with *pending set and calls cb later from the
     * loop, unless cancel_get(s, *pending) came first (then cb is never
     * called). A negative FAN_E* code: cb is not called. */
    int (*get)(fan__store *s, const char *key, size_t klen, fan__store_get_cb cb, void *arg,
               void **pending);
    void (*cancel_get)(fan__store *s, void *pending);
    /* Stores a copy of `v` under `key`, replacing what was there. Returns 0,
     * 1 when it did not keep it (larger than the store, or than its cap for
     * one entry), FAN_ENOMEM, or for a network store another FAN_E* code
     * when it could not send it (counted and logged by the store). A
     * network store may complete it later: the caller does not wait. */
    int (*put)(fan__store *s, const char *key, size_t klen, const fan__store_entry *v);
    void (*del)(fan__store *s, const char *key, size_t klen);
    /* Frees the store and everything in it. */
    void (*free)(fan__store *s);
} fan__store_ops;

struct fan__store {
    const fan__store_ops *ops;
};

/* The shared tier (L2), behind the worker's memory store (L1): a layer
 * that sees both the client and a network store (the app layer, with
 * Redis: src/app/cache_redis.c) registers a function that the cache calls
 * at each cached call's start with the call's request and this thread's
 * current shared store (NULL at first). It returns `current`, reconfigured
 * for rq's settings, or a new store when current is NULL, or NULL when
 * rq's app has no shared tier. The cache owns the store it gets: it frees
 * it when the worker stops (fan__cache_shutdown()), after every request
 * ended. A shared store's lookup that fails answers as a miss: the store
 * counts and logs it. Set once, before the workers start. */
struct fan_req;
typedef fan__store *(*fan__store_shared_fn)(struct fan_req *rq, fan__store *current);
void fan__cache_set_shared(fan__store_shared_fn fn);

/* The worker's memory store (store_memory.c): entries in a hash table,
 * bounded to max_bytes (an entry's key, headers and body and its
 * bookkeeping), the least recently used evicted first. NULL when out of
 * memory. */
fan__store *fan__memstore_new(size_t max_bytes);

/* Changes the bound; entries beyond it go at the next put. */
void fan__memstore_set_max(fan__store *s, size_t max_bytes);

/* What it holds, and how many entries it evicted to stay within the bound. */
void fan__memstore_usage(const fan__store *s, size_t *entries, size_t *bytes,
                         unsigned long long *evictions);

#endif
