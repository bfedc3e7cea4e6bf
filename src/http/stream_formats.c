/* Formats carried by streamed responses: Server-Sent Events (the WHATWG
 * HTML standard, "Server-sent events") and NDJSON lines. Each event or line
 * is formatted into a buffer of its own and sent as one write; the buffer is
 * freed at once (the request's arena would grow with the stream). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static int has_line_end(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

/* Appends "name: value\n". */
static char *put_field(char *at, const char *name, const char *value, size_t len)
{
    size_t n = strlen(name);
    memcpy(at, name, n);
    at += n;
    *at++ = ':';
    *at++ = ' ';
    memcpy(at, value, len);
    at += len;
    *at++ = '\n';
    return at;
}

int fan_resp_sse(fan_req *rq, const char *event, const char *id, const char *data)
{
    if (has_line_end(event) || has_line_end(id))
        return FAN_EINVAL;
    if (!data)
        data = "";
    size_t dlen = strlen(data), lines = 1;
    for (size_t i = 0; i < dlen; i++)
        lines += data[i] == '\n' || (data[i] == '\r' && data[i + 1] != '\n');
    size_t cap = dlen + lines * 7 + (event ? strlen(event) + 8 : 0) + (id ? strlen(id) + 5 : 0) + 1;
    char *buf = malloc(cap), *at = buf;
    if (!buf)
        return FAN_ENOMEM;
    if (event)
        at = put_field(at, "event", event, strlen(event));
    if (id)
        at = put_field(at, "id", id, strlen(id));
    /* Every line of the data, the last (empty after a final line end)
     * included, so that the client rebuilds the data as it was. */
    for (const char *line = data;;) {
        size_t n = strcspn(line, "\r\n");
        at = put_field(at, "data", line, n);
        if (line[n] == '\0')
            break;
        line += n + (line[n] == '\r' && line[n + 1] == '\n' ? 2 : 1);
    }
    *at++ = '\n';
    int rc = fan_resp_write(rq, buf, (size_t)(at - buf));
    free(buf);
    return rc;
}

int fan_resp_sse_retry(fan_req *rq, unsigned ms)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "retry: %u\n\n", ms);
    return fan_resp_write(rq, buf, (size_t)n);
}

int fan_resp_ndjson(fan_req *rq, json_t *json)
{
    if (!json)
        return FAN_EINVAL;
    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY; /* no newline inside */
    size_t n = fan__json_dumpb(json, NULL, 0, flags);
    char *buf = n ? malloc(n + 1) : NULL;
    if (!buf) {
        fan__json_decref(json);
        return n ? FAN_ENOMEM : FAN_EINVAL;
    }
    fan__json_dumpb(json, buf, n, flags);
    fan__json_decref(json);
    buf[n] = '\n';
    int rc = fan_resp_write(rq, buf, n + 1);
    free(buf);
    return rc;
}
