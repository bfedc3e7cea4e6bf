/* The circuit breaker of an origin, per worker (its counts live in the
 * origin's fan__health). Closed, it counts each exchange's outcome: it
 * opens on breaker_failures consecutive failures, or when at least
 * breaker_error_percent of the exchanges that ended in the last
 * breaker_window_ms failed, once breaker_min_calls did. Open, it refuses
 * every call with FAN_EOPEN until breaker_cooldown_ms passed; then it lets
 * one call through as a probe (half-open), whose success closes it and
 * whose failure opens it again. A probe cancelled before its outcome lets
 * the next call probe. */
#include <stdio.h>
#include <string.h>

#include "client/resilience.h"
#include "core/log.h"
#include "runtime/metrics.h"

static const fan_origin_opts *opts_of(const fan_call *c)
{
    return c->origin_cfg ? &c->origin_cfg->opts : NULL;
}

static int enabled(const fan_origin_opts *o)
{
    return o && (o->breaker_failures || o->breaker_error_percent);
}

static unsigned window_ms(const fan_origin_opts *o)
{
    return o->breaker_window_ms ? o->breaker_window_ms : 10000;
}

static unsigned cooldown_ms(const fan_origin_opts *o)
{
    return o->breaker_cooldown_ms ? o->breaker_cooldown_ms : 5000;
}

static void clear_counts(fan__health *h)
{
    h->consecutive = 0;
    memset(h->slot_epoch, 0, sizeof h->slot_epoch);
    memset(h->slot_ok, 0, sizeof h->slot_ok);
    memset(h->slot_failed, 0, sizeof h->slot_failed);
}

static void open_breaker(fan__health *h, const fan_origin_opts *o, const char *why)
{
    h->state = FAN__BREAKER_OPEN;
    fan__metrics_add(FAN__M_BREAKER_CHANGES, 1);
    h->opened_at = fan_now();
    h->probing = 0;
    clear_counts(h);
    fan_log(FAN_LOG_WARN,
            "circuit breaker of %s opened: %s; calls fail with circuit_open "
            "for %u ms",
            h->key, why, cooldown_ms(o));
}

int fan__breaker_admit(fan__health *h, const fan_call *c, int *probe)
{
    const fan_origin_opts *o = opts_of(c);
    *probe = 0;
    if (!h || !enabled(o) || h->state == FAN__BREAKER_CLOSED)
        return 0;
    if (h->state == FAN__BREAKER_OPEN && (fan_now() - h->opened_at) * 1000 >= cooldown_ms(o)) {
        h->state = FAN__BREAKER_HALF_OPEN;
        fan__metrics_add(FAN__M_BREAKER_CHANGES, 1);
        h->probing = 0;
        fan_log(FAN_LOG_INFO, "circuit breaker of %s half-open: call %s probes it", h->key,
                c->name);
    }
    if (h->state == FAN__BREAKER_HALF_OPEN && !h->probing) {
        h->probing = 1;
        *probe = 1;
        return 0;
    }
    fan_log(FAN_LOG_DEBUG, "call %s: circuit breaker of %s is %s: not sent", c->name, h->key,
            h->state == FAN__BREAKER_OPEN ? "open" : "half-open, its probe under way");
    return FAN_EOPEN;
}

void fan__breaker_record(fan__health *h, const fan_call *x, int failed)
{
    const fan_origin_opts *o = opts_of(x);
    if (!enabled(o))
        return;
    if (x->probe) {
        if (h->state != FAN__BREAKER_HALF_OPEN)
            return;
        if (failed < 0) {
            h->probing = 0; /* cancelled: the next call probes */
        } else if (failed) {
            open_breaker(h, o, "its half-open probe failed");
        } else {
            h->state = FAN__BREAKER_CLOSED;
            fan__metrics_add(FAN__M_BREAKER_CHANGES, 1);
            h->probing = 0;
            clear_counts(h);
            fan_log(FAN_LOG_INFO, "circuit breaker of %s closed: its probe %s succeeded", h->key,
                    x->name);
        }
        return;
    }
    if (h->state != FAN__BREAKER_CLOSED || failed < 0)
        return; /* an exchange that began before it opened */
    h->consecutive = failed ? h->consecutive + 1 : 0;
    unsigned slot_ms = window_ms(o) / FAN__WINDOW_SLOTS;
    unsigned long long epoch = (unsigned long long)(fan_now() * 1000 / (slot_ms ? slot_ms : 1)) + 1;
    unsigned i = (unsigned)(epoch % FAN__WINDOW_SLOTS);
    if (h->slot_epoch[i] != epoch) {
        h->slot_epoch[i] = epoch;
        h->slot_ok[i] = h->slot_failed[i] = 0;
    }
    if (failed)
        h->slot_failed[i]++;
    else
        h->slot_ok[i]++;
    if (o->breaker_failures && h->consecutive >= o->breaker_failures) {
        char why[64];
        snprintf(why, sizeof why, "%u consecutive failures", h->consecutive);
        open_breaker(h, o, why);
        return;
    }
    if (!o->breaker_error_percent || !failed)
        return;
    unsigned long ok = 0, bad = 0;
    for (unsigned j = 0; j < FAN__WINDOW_SLOTS; j++)
        if (h->slot_epoch[j] + FAN__WINDOW_SLOTS > epoch) {
            ok += h->slot_ok[j];
            bad += h->slot_failed[j];
        }
    unsigned min = o->breaker_min_calls ? o->breaker_min_calls : 20;
    if (ok + bad >= min && bad * 100 >= (unsigned long)o->breaker_error_percent * (ok + bad)) {
        char why[96];
        snprintf(why, sizeof why, "%lu of the last %lu calls failed (%u %% or more in %u ms)", bad,
                 ok + bad, o->breaker_error_percent, window_ms(o));
        open_breaker(h, o, why);
    }
}
