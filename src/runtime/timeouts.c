/* Timeouts by queue (timeouts.h): the thread's queues, each a list sorted by
 * deadline behind one libuv timer armed for its first entry.
 *
 * A queue that empties leaves its timer armed but unreferenced (it no
 * longer keeps the loop running): a connection's head timeout, set at a
 * request's first byte and stopped at its last header, empties its queue
 * with every request, and a timer stopped and started each time would cost
 * what a timer per connection did. An entry set in an empty queue after
 * the armed time only references it again; the timer fires early, finds
 * nothing due, and is armed for the first entry then. */
#include <stdlib.h>

#include "runtime/runtime.h"

struct fan__timeout_queue {
    fan__list entries;   /* fan__timeout.link, the first to pass first */
    uv_timer_t timer;    /* armed for the first entry, or earlier; referenced while
                          * there is one */
    uint64_t armed_at;   /* when the timer fires, while it is active */
    fan__timeout_fn fired;
    unsigned group;
    fan__timeout_queue *next; /* the thread's queues */
};

static _Thread_local fan__timeout_queue *queues;

static void queue_fired(uv_timer_t *timer);

void fan__timeout_init(fan__timeout *t)
{
    fan__list_init(&t->link);
    t->queue = NULL;
}

static fan__timeout *first_of(fan__timeout_queue *q)
{
    return fan__container_of(q->entries.next, fan__timeout, link);
}

/* Arms the queue's timer for its first entry, or stops it when it has none.
 * Never for 0 ms: libuv 1.44 runs a timer started for 0 ms inside a timer
 * callback again in the same pass, so a callback that sets a timeout due
 * at once, each time, would never let the loop go on. */
static void arm(fan__timeout_queue *q)
{
    if (fan__list_empty(&q->entries)) {
        uv_timer_stop(&q->timer);
        return;
    }
    uint64_t at = first_of(q)->at, now = uv_now(q->timer.loop);
    uint64_t due = at > now ? at - now : 1;
    uv_timer_start(&q->timer, queue_fired, due, 0);
    uv_ref((uv_handle_t *)&q->timer);
    q->armed_at = now + due;
}

/* The queue of (fired, group), made on first use. There are few: a kind
 * of timeout per place that sets one, times the durations in use. */
static fan__timeout_queue *queue_of(fan__timeout_fn fired, unsigned group)
{
    for (fan__timeout_queue *q = queues; q; q = q->next)
        if (q->fired == fired && q->group == group)
            return q;
    fan__timeout_queue *q = malloc(sizeof *q);
    if (!q)
        return NULL;
    fan__list_init(&q->entries);
    uv_timer_init(fan__loop(), &q->timer);
    q->timer.data = q;
    q->fired = fired;
    q->group = group;
    q->next = queues;
    queues = q;
    return q;
}

/* Calls back every entry whose time has come, first to last, then arms
 * the timer for the next. Those due are moved to a list of their own
 * first: a callback may set a timeout that is due at once (0 ms), which
 * then waits for the timer's next run (arm()). */
static void queue_fired(uv_timer_t *timer)
{
    fan__timeout_queue *q = timer->data;
    uint64_t now = uv_now(timer->loop);
    fan__list due;
    fan__list_init(&due);
    while (!fan__list_empty(&q->entries) && first_of(q)->at <= now) {
        fan__timeout *t = first_of(q);
        fan__list_remove(&t->link);
        fan__list_push(&due, &t->link);
    }
    arm(q);
    while (!fan__list_empty(&due)) {
        fan__timeout *t = fan__container_of(due.next, fan__timeout, link);
        fan__list_remove(&t->link);
        t->queue = NULL;
        q->fired(t);
    }
}

int fan__timeout_start(fan__timeout *t, unsigned ms, unsigned group, fan__timeout_fn fired)
{
    fan__timeout_stop(t);
    fan__timeout_queue *q = queue_of(fired, group);
    if (!q)
        return FAN_ENOMEM;
    t->at = uv_now(fan__loop()) + ms;
    t->queue = q;
    fan__list *after = q->entries.prev; /* the tail, where almost every entry goes */
    while (after != &q->entries && fan__container_of(after, fan__timeout, link)->at > t->at)
        after = after->prev;
    fan__list_push(after->next, &t->link); /* before after->next: after `after` */
    if (q->entries.next != &t->link)
        return 0; /* the timer serves an earlier first entry */
    if (uv_is_active((uv_handle_t *)&q->timer) && q->armed_at <= t->at)
        uv_ref((uv_handle_t *)&q->timer); /* it fires in time: early, or when due */
    else
        arm(q);
    return 0;
}

void fan__timeout_stop(fan__timeout *t)
{
    fan__timeout_queue *q = t->queue;
    if (!q)
        return;
    fan__list_remove(&t->link);
    t->queue = NULL;
    /* An empty queue no longer keeps the loop running; its timer stays
     * armed (the header comment). A first entry gone early leaves it armed
     * for a time that finds nothing due, and it re-arms then. */
    if (fan__list_empty(&q->entries))
        uv_unref((uv_handle_t *)&q->timer);
}

void fan__timeouts_shutdown(void)
{
    while (queues) {
        fan__timeout_queue *q = queues;
        queues = q->next;
        uv_close((uv_handle_t *)&q->timer, fan__free_handle_data);
    }
}
