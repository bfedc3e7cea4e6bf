/* W3C Trace Context (trace.c) and the record of a request's upstream calls
 * that Server-Timing, the metrics and the waterfall read. A request carries
 * its trace (the trace id, its own span id, the parent span of an incoming
 * traceparent, the flags and the tracestate to pass on) and a list of the
 * calls it made, each with its own span id. Internal to libfanout. */
#ifndef FAN_RUNTIME_TRACE_H
#define FAN_RUNTIME_TRACE_H

#include <stddef.h>

#include "core/list.h"

/* What a request observes (fan__rt.obs), from its app's settings. */
enum {
    FAN__OBS_SERVER_TIMING = 1, /* a Server-Timing header on its response */
    FAN__OBS_TRACE = 2,         /* traceparent continued and sent on to upstreams */
    FAN__OBS_METRICS = 4,       /* counted in the metrics and the waterfall */
};

#define FAN__TRACESTATE_MAX 512 /* longer tracestate values are dropped (W3C: >= 512) */

typedef struct fan__trace {
    unsigned char trace_id[16];
    unsigned char span_id[8];   /* the request's span */
    unsigned char parent_id[8]; /* the incoming span; all zero without one */
    unsigned char flags;        /* trace-flags: 01 sampled */
    int has_parent;
    int begun;              /* fan__trace_begin() ran */
    char prefix[36];        /* "00-<trace id>-" of the calls' traceparent */
    const char *tracestate; /* the incoming one to pass on (arena), or NULL */
} fan__trace;

/* One upstream call as observed: filled by the client layer. */
typedef struct fan__call_rec {
    fan__list link; /* fan__rt.call_recs, in start order */
    const char *name, *url, *method;
    double started, finished; /* fan_now(); finished is 0 while it runs */
    int status, error;
    unsigned attempts, hedges;
    unsigned char span_id[8];
} fan__call_rec;

/* A finished request as span export sees it (request_observe.c hands it
 * to the sink; server/otlp.c is the sink). Strings are the request's:
 * valid only during the call. `path` has its query: the sink redacts. */
typedef struct fan__span_req {
    const fan__trace *trace;
    const char *method, *route, *path, *client;
    int status;
    double wall_start;        /* seconds since the epoch */
    double started, finished; /* fan_now() */
    const fan__list *calls;   /* fan__call_rec */
} fan__span_req;

/* The span sink of this process, or NULL: set by the server layer when
 * --otlp-endpoint is given, called once per finished traced request. */
extern void (*fan__span_sink)(const fan__span_req *r);

/* Seeds this thread's generator now, if it is not: OpenSSL's first
 * RAND_bytes may take milliseconds, which fan_run() spends before its loop
 * runs rather than within a request (where the loop's cached time would lag
 * behind the timers that request starts). Can't fail. */
void fan__trace_seed(void);

/* Fills `id` with random bytes from this thread's generator, seeded from
 * OpenSSL's RAND_bytes on first use and again in a forked child (each worker
 * has its own sequence). Never all zero. Can't fail. */
void fan__trace_random(unsigned char *id, size_t len);

/* Parses a traceparent header value strictly (version 00: exactly
 * "00-" 32 hex "-" 16 hex "-" 2 hex, lowercase; a later version may carry
 * more after a '-'; version ff, an all-zero trace or span id, or anything
 * else is refused). Returns 0 and fills trace_id, parent_id (as has_parent)
 * and flags, or -1 and leaves `t` untouched. */
int fan__trace_parse(fan__trace *t, const char *value, size_t len);

/* Whether a tracestate value may be passed on: at most FAN__TRACESTATE_MAX
 * bytes of printable ASCII. */
int fan__tracestate_ok(const char *value, size_t len);

/* Starts the request's span: a new trace when no valid parent was parsed,
 * and a new span id either way. Can't fail. */
void fan__trace_begin(fan__trace *t);

/* Writes "00-<trace>-<span>-<flags>" (55 bytes and a NUL) to out. */
void fan__traceparent_format(const fan__trace *t, const unsigned char span_id[8], char out[56]);

/* Lowercase hex of `len` bytes to out (2 * len bytes and a NUL). */
void fan__hex(const unsigned char *b, size_t len, char *out);

#endif
