/* A request of a gateway endpoint as it runs: the state of each backend,
 * shared by run.c (calls), shape.c (the answer) and stream.c (parts). */
#ifndef FANOUT_GATEWAY_RUN_H
#define FANOUT_GATEWAY_RUN_H

#include "gateway.h"

enum { B_WAITING, B_RUNNING, B_OK, B_FAILED };

typedef struct gw_bstate {
    int state;
    const char *kind; /* why it failed: an error name, "status", "not_json", ... */
    int status;       /* the upstream status, when there was one */
    const char *message;
    json_t *result;      /* owned: the response (for_each: the results, in item order) */
    const char *text;    /* its body, when that text says exactly what result does */
    size_t text_len;
    json_t *item_errors; /* owned: for_each items that failed, or NULL */
    double t0, t1;       /* start and end, fan_now() */
    unsigned calls;
    unsigned attempts;  /* tries sent upstream, retries and hedges included */
    unsigned flags;     /* FAN_CALL_* of its calls, or'ed */
    fan_call *call;     /* the failed call of a required backend (pass_4xx) */
    /* for_each */
    json_t *items; /* borrowed: the array gone over */
    size_t nitems, next, inflight;
} gw_bstate;

typedef struct gw_slot {
    fan_call *call;
    int b;
    size_t first, n; /* the items of the call */
} gw_slot;

typedef struct gw_run {
    fan_req *rq;
    const gw *g;
    const gw_endpoint *ep;
    gw_scope scope;
    gw_bstate *bs;
    gw_slot *slots;
    size_t nslots;
    double t0;
    int timing;
    size_t left; /* backends not ended */
} gw_run;

/* run.c: a backend ended (gw_succeed() takes the result's reference), and
 * one call of backend i for items first..first+n (0 or -1, the reason in
 * *why). */
void gw_fail(gw_run *r, int i, const char *kind, int status, const char *message);
void gw_succeed(gw_run *r, int i, json_t *result);
int gw_start_call(gw_run *r, int i, size_t first, size_t n, const char **why);

/* each.c: starts a for_each backend, starts more of its calls as they end
 * (ending it after the last), joins a batch's results. */
void gw_start_each(gw_run *r, int i);
void gw_each_more(gw_run *r, int i);
void gw_join_batch(gw_run *r, const gw_backend *b, gw_bstate *s, const gw_slot *sl, json_t *j);

/* shape.c: one backend's result shaped (a new reference), and the answer,
 * replied with status 200 (0, or -1 when out of memory: nothing replied). */
json_t *gw_shape(const gw_backend *b, json_t *v);
int gw_reply_answer(gw_run *r);
/* _fanout's errors (a new array) and the backends' timing (a new object). */
json_t *gw_errors_json(gw_run *r);
json_t *gw_timing_json(gw_run *r);

/* stream.c */
int gw_stream_start(gw_run *r);
void gw_stream_part(gw_run *r, int b);
void gw_stream_end(gw_run *r, int status, const char *failed);

#endif
