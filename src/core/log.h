/* The access log's internal side (log.c): one line per request, written by
 * src/http/request.c when a request ends. */
#ifndef FAN_LOG_H
#define FAN_LOG_H

#include <stddef.h>

typedef struct fan__access_entry {
    const char *client; /* "1.2.3.4", or NULL when unknown */
    const char *method, *path;
    int status;   /* 0 when no response was recorded */
    double ms;    /* from the start of the request to its end */
    size_t bytes; /* response bytes handed to the socket */
    unsigned calls, failed;
    const char *trace_id; /* 32 hex digits, or NULL without trace context */
} fan__access_entry;

/* fan_log() at FAN_LOG_INFO, and the same line on stderr too when the error
 * log goes to a file: for "listening on ...", which whoever started the
 * server (a terminal, systemd, a test) watches stderr for. */
void fan__log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* At most one line per interval for a condition that repeats (an outage, a
 * misuse): a quota kept by the caller, per thread. */
typedef struct fan__log_quota {
    double at;           /* when the last line was written, 0 for never */
    unsigned long quiet; /* lines kept quiet since */
} fan__log_quota;

/* Returns 1 when a line may be written at `now` (seconds), with *quiet the
 * count kept quiet since the last one (then reset); else 0, counting this
 * one as quiet. Can't fail. */
int fan__log_quota_take(fan__log_quota *q, double now, double interval, unsigned long *quiet);

/* Whether the access log is on: the caller may skip gathering the fields. */
int fan__access_log_on(void);

/* Writes the entry as one line, in the error log's format (text or JSON). */
void fan__access_log(const fan__access_entry *e);

#endif
