/* Between the response cache (cache.c) and single-flight (flight.c).
 * Internal to libfanout. */
#ifndef FAN_CLIENT_FLIGHT_H
#define FAN_CLIENT_FLIGHT_H

#include "client/client.h"

/* Makes `c` (its keys set) wait for a shared exchange of its request: the
 * identical one in flight when `shared` and there is one, else a new one
 * (joinable by later calls when `shared`), whose response is stored in the
 * cache when the call uses it. Returns 0: c waits (or has already ended,
 * when the exchange could not start); or FAN_ENOMEM, c untouched. */
int fan__flight_join(fan_call *c, int shared);

/* Starts a background exchange that refreshes c's cache entry, unless an
 * exchange of c's key is in flight already. It runs to its end (or its
 * timeout) whoever waits for it. Can't fail (out of memory: no refresh). */
void fan__flight_refresh(const fan_call *c);

/* Takes the waiting call `c` out of its exchange and ends it with
 * FAN_ECANCELED; the exchange is cancelled when c was its last waiter and
 * it is not a refresh. */
void fan__flight_leave(fan_call *c);

/* Frees the table of exchanges: once every one ended. */
void fan__flight_shutdown(void);

/* cache.c, for flight.c. */

/* The worker's counters. Never NULL. */
fan_cache_counters *fan__cache_counters(void);

/* Stores the response of `up`, the upstream call of an exchange for the
 * cache key (ckey, cklen), when it may be stored; ttl_ms, swr_ms and
 * sie_ms as the call's settings were (0: the response's Cache-Control),
 * vary_names the headers of its key (",name,...," lower-case; NULL: all);
 * in the shared tier too when `to_shared` (the calls' app has one). */
void fan__cache_store(const fan_call *up, const char *ckey, size_t cklen, unsigned ttl_ms,
                      unsigned swr_ms, unsigned sie_ms, const char *vary_names, int to_shared);

/* Ends the waiter `w` with its own copy of the response of `up` (the
 * exchange's upstream call, ended), or with the stale entry it holds when
 * the exchange failed. The body is `body` when not NULL (w takes a
 * reference), else up's, copied. `first`: w started the exchange (its
 * attempts are the exchange's; the others are coalesced). */
void fan__cache_deliver(fan_call *w, const fan_call *up, fan__shared_body *body, int first);

#endif
