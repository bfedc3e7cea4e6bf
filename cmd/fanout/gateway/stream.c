/* A streamed gateway endpoint ("stream": "ndjson" or "sse"): the head goes
 * out at once, each backend's part the moment it ends, as one NDJSON line
 * or one SSE event named after the backend, then a closing summary with the
 * status the answer would have had and what is missing. */
#include <stdlib.h>
#include <string.h>

#include "run.h"

int gw_stream_start(gw_run *r)
{
    const char *type =
        r->ep->stream == GW_STREAM_SSE ? "text/event-stream" : "application/x-ndjson";
    return fan_resp_start(r->rq, 200, type) == 0 ? 0 : -1;
}

static void send(gw_run *r, const char *event, json_t *j)
{
    if (r->ep->stream == GW_STREAM_NDJSON) {
        fan_resp_ndjson(r->rq, j);
        return;
    }
    char *data = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (data)
        fan_resp_sse(r->rq, event, NULL, data);
    free(data);
}

void gw_stream_part(gw_run *r, int i)
{
    const gw_backend *b = &r->ep->backends[i];
    const gw_bstate *s = &r->bs[i];
    json_t *part = json_pack("{s:s}", "backend", b->name);
    if (s->state == B_OK) {
        json_object_set_new(part, "data",
                            b->each ? json_incref(s->result) : gw_shape(b, s->result));
    } else {
        json_object_set_new(part, "error", json_string(s->kind));
        if (s->status)
            json_object_set_new(part, "status", json_integer(s->status));
    }
    if (r->timing)
        json_object_set_new(part, "duration_ms", json_real((s->t1 - s->t0) * 1000.0));
    send(r, b->name, part);
}

void gw_stream_end(gw_run *r, int status, const char *failed)
{
    json_t *sum = json_pack("{s:i, s:o}", "status", status, "errors", gw_errors_json(r));
    if (failed)
        json_object_set_new(sum, "failed", json_string(failed));
    if (r->timing)
        json_object_set_new(sum, "timing", gw_timing_json(r));
    send(r, "summary", json_pack("{s:o}", "_fanout", sum));
    fan_resp_end(r->rq);
}
