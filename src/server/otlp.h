/* Span export over OTLP/HTTP JSON (otlp.c). Internal to libfanout. */
#ifndef FAN_SERVER_OTLP_H
#define FAN_SERVER_OTLP_H

#include "runtime/trace.h"

/* Sets the endpoint ("http://host[:port][/path]", path /v1/traces by
 * default; resolved now) and the queue bound, and installs the span sink.
 * Returns 0 or FAN_EINVAL (logged). Before fork. */
int fan__otlp_configure(const char *url, unsigned max_queued);

/* This worker's exporter: started by fan_run() before its loop runs,
 * stopped once its requests ended (before the loop's last turns, which let
 * a POST under way end), freed after the loop. */
void fan__otlp_start(void);
void fan__otlp_stop(void);
void fan__otlp_free(void);

/* The sink: a finished request's spans into the queue. */
void fan__otlp_sink(const fan__span_req *r);

#endif
