/* Timeouts that cost no handle: a timeout is an entry inside its owner (a
 * request, an upstream call), queued with the others of its kind in the
 * loop's thread; one libuv timer per queue serves them all (timeouts.c).
 * Setting, clearing and firing one touches a list, not the loop's timer
 * heap, and the owner's memory can go the moment its timeout is stopped:
 * there is no handle to close first.
 *
 * A queue holds the timeouts of one callback and one nominal duration (the
 * `group`: a call's timeout_ms, the site's request deadline), so they pass
 * in the order they were set and each is queued at the tail: O(1). One set
 * out of order (less time left than its group's nominal duration: a call
 * that waited for a connection slot) is placed from the tail, which stays
 * short. Per thread, as the loop. */
#ifndef FAN_RUNTIME_TIMEOUTS_H
#define FAN_RUNTIME_TIMEOUTS_H

#include <stdint.h>

#include "core/list.h"

typedef struct fan__timeout_queue fan__timeout_queue;

typedef struct fan__timeout {
    fan__list link;            /* in its queue while set, else alone */
    uint64_t at;               /* when it passes, in loop time (ms) */
    fan__timeout_queue *queue; /* while set */
} fan__timeout;

typedef void (*fan__timeout_fn)(fan__timeout *t);

/* An unset timeout. */
void fan__timeout_init(fan__timeout *t);

/* Sets `t` (again, if it was set) to call fired(t) `ms` from the loop's
 * current time, in the queue of (`fired`, `group`); 0 ms waits for a later
 * pass of the loop's timers, at least 1 ms. fired() is called with `t`
 * unset, and may set, stop or free any timeout, `t` included. Returns
 * 0, or FAN_ENOMEM when the thread's first timeout of this kind finds no
 * memory for its queue (`t` is then unset). */
int fan__timeout_start(fan__timeout *t, unsigned ms, unsigned group, fan__timeout_fn fired);

/* Unsets `t`; harmless when it is not set. A queue left empty unreferences
 * its timer, so it keeps the loop running only while it holds a timeout. */
void fan__timeout_stop(fan__timeout *t);

static inline int fan__timeout_is_set(const fan__timeout *t)
{
    return t->queue != NULL;
}

/* Closes the thread's queues and their timers once no timeout is set (the
 * end of the loop). */
void fan__timeouts_shutdown(void);

#endif
