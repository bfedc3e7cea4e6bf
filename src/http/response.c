/* Writing responses. A reply is first recorded in the request (status,
 * headers, type, body); the error handler of its status and the after-request
 * hooks may change it; then the status line and headers are formatted into
 * the request's arena and sent with the body in one writev. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/fmt.h"
#include "core/token.h"
#include "http/http.h"

const char *fan__status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/* "Date: ...\r\n", formatted at most once per second. */
const char *fan__date_header(void)
{
    fan__server *srv = fan__srv();
    uint64_t now = uv_now(srv->loop) / 1000;
    if (srv->date[0] == '\0' || now != srv->date_at) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(srv->date, sizeof srv->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        srv->date_at = now;
    }
    return srv->date;
}

/* A header value: no CR, LF or other control character but tab. */
int fan__valid_header_value(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch < 32 && ch != '\t') || ch == 127)
            return 0;
    }
    return 1;
}

int fan_resp_set_header(fan_req *rq, const char *name, const char *value)
{
    if (rq->sent || (rq->replied && !rq->finishing))
        return FAN_ESTATE;
    if (!fan__is_token(name, strlen(name)) || !fan__valid_header_value(value))
        return FAN_EINVAL;
    fan__header *h = fan__header_slot(&rq->rt.arena, &rq->out_headers, rq->nout, &rq->out_cap);
    if (!h)
        return FAN_ENOMEM;
    h->name = fan__arena_strdup(&rq->rt.arena, name);
    h->value = fan__arena_strdup(&rq->rt.arena, value);
    if (!h->name || !h->value)
        return FAN_ENOMEM;
    rq->nout++;
    return 0;
}

typedef struct req_write {
    fan__op op;
    uv_write_t w;
    fan_req *rq;
} req_write;

static void req_written(uv_write_t *w, int status)
{
    req_write *rw = w->data;
    fan_req *rq = rw->rq;
    if (status < 0 && rq->conn) {
        fan_log(FAN_LOG_DEBUG, "response not delivered: %s", uv_strerror(status));
        fan__conn_close(rq->conn);
    } else if (rq->conn) {
        fan__conn_write_done(rq->conn);
    }
    fan__op_end(rq, &rw->op);
}

static size_t head_size(const fan_req *rq, const char *timing, size_t tlen)
{
    size_t n = 200 + (timing ? tlen + 17 : 0) + strlen(fan__status_text(rq->status)) +
               (rq->content_type ? strlen(rq->content_type) : 0);
    for (unsigned i = 0; i < rq->nout; i++)
        n += strlen(rq->out_headers[i].name) + strlen(rq->out_headers[i].value) + 4;
    return n;
}

char *fan__format_head(fan_req *rq, int stream, int chunked, size_t *len)
{
    fan__conn *c = rq->conn;
    size_t tlen = 0;
    const char *timing = rq->rt.obs & FAN__OBS_SERVER_TIMING ? fan__server_timing(rq, &tlen) : NULL;
    /* Written where the arena's room is when the head's bound fits there,
     * and only its length claimed: the bound is twice what most heads take. */
    size_t bound = head_size(rq, timing, tlen), room;
    char *head = fan__arena_room(&rq->rt.arena, &room);
    int in_room = room >= bound;
    if (!in_room && !(head = fan__arena_alloc(&rq->rt.arena, bound)))
        return NULL;
    /* Copies, not printf: this runs for every response. */
    int status = rq->status;
    char *h = fan__put(head, "HTTP/1.1 ", 9);
    h = fan__put_uint(h, (unsigned)status);
    *h++ = ' ';
    h = fan__put_str(h, fan__status_text(status));
    h = fan__put(h, "\r\n", 2);
    h = fan__put_str(h, fan__date_header());
    h = fan__put(h, "Server: fanout\r\n", 16);
    if (rq->content_type) {
        h = fan__put(h, "Content-Type: ", 14);
        h = fan__put_str(h, rq->content_type);
        h = fan__put(h, "\r\n", 2);
    }
    if (chunked) {
        h = fan__put(h, "Transfer-Encoding: chunked\r\n", 28);
    } else if (!stream && status != 204 && status != 304) {
        h = fan__put(h, "Content-Length: ", 16);
        h = fan__put_uint(h, rq->out_len);
        h = fan__put(h, "\r\n", 2);
    }
    if (c->close_after_write)
        h = fan__put(h, "Connection: close\r\n", 19);
    else if (rq->http_minor == 0)
        h = fan__put(h, "Connection: keep-alive\r\n", 24);
    int accel = stream; /* nginx buffers a proxied response unless told not to */
    for (unsigned i = 0; i < rq->nout; i++) {
        if (strcasecmp(rq->out_headers[i].name, "X-Accel-Buffering") == 0)
            accel = 0;
        h = fan__put_str(h, rq->out_headers[i].name);
        h = fan__put(h, ": ", 2);
        h = fan__put_str(h, rq->out_headers[i].value);
        h = fan__put(h, "\r\n", 2);
    }
    if (accel)
        h = fan__put(h, "X-Accel-Buffering: no\r\n", 23);
    if (timing) {
        h = fan__put(h, "Server-Timing: ", 15);
        h = fan__put(h, timing, tlen);
        h = fan__put(h, "\r\n", 2);
    }
    h = fan__put(h, "\r\n", 2);
    *len = (size_t)(h - head);
    if (in_room)
        (void)fan__arena_alloc_bytes(&rq->rt.arena, *len); /* head: *len <= room */
    return head;
}

/* Formats the head of the recorded reply and writes it with the body in one
 * writev. The body already lives in the request's arena. */
int fan__send_reply(fan_req *rq)
{
    fan__conn *c = rq->conn;
    if (!c || c->closing)
        return 0; /* the client went away: nothing to send */
    if (rq->h2)
        return fan__h2_send_reply(rq);
    if (fan__srv()->stopping)
        c->close_after_write = 1;
    size_t n;
    char *head = fan__format_head(rq, 0, 0, &n);
    req_write *rw = fan__arena_alloc(&rq->rt.arena, sizeof *rw);
    if (!head || !rw) {
        fan__conn_close(c);
        return FAN_ENOMEM;
    }
    int status = rq->status;
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)n), uv_buf_init(rq->out_body, 0)};
    unsigned nbufs = 1;
    if (rq->out_len && !rq->head && status != 204 && status != 304) {
        bufs[1].len = rq->out_len;
        nbufs = 2;
    }
    rq->out_bytes = bufs[0].len + bufs[1].len * (nbufs - 1);
    rw->rq = rq;
    rw->op.cancel = NULL; /* a write ends by itself, or when the connection closes */
    rw->w.data = rw;
    int rc = fan__conn_write(c, &rw->w, bufs, nbufs, req_written);
    if (rc < 0) {
        fan__conn_close(c);
        return FAN_EIO;
    }
    if (rc == 0) { /* queued: the request lives until the write completes */
        fan__op_begin(rq, &rw->op, NULL);
        fan__conn_write_queued(c); /* a client that never reads must not hold it */
    }
    return 0;
}

/* Records a reply; `body` is copied unless it already is in the arena. The
 * first reply runs the error handler and the after-request hooks (which may
 * record a replacement through this same function) and then sends it. */
static int record_reply(fan_req *rq, int status, const char *content_type, const void *body,
                        size_t len, int in_arena)
{
    if (rq->stream && rq->sent) {
        fan__stream_reply_refused(rq); /* a handler failing mid-stream */
        return FAN_ESTATE;
    }
    if (rq->sent || (rq->replied && !rq->finishing))
        return FAN_ESTATE;
    if (status < 200 || status > 999)
        return FAN_EINVAL;
    if (content_type && !fan__valid_header_value(content_type))
        return FAN_EINVAL;
    char *copy = (char *)body;
    const char *type = content_type;
    if (len && !in_arena) {
        copy = fan__arena_alloc_bytes(&rq->rt.arena, len);
        if (copy)
            memcpy(copy, body, len);
    }
    if (content_type)
        type = fan__arena_strdup(&rq->rt.arena, content_type);
    if ((len && !copy) || (content_type && !type))
        return FAN_ENOMEM;
    rq->status = status;
    rq->content_type = type;
    rq->out_body = len ? copy : NULL;
    rq->out_len = len;
    if (rq->replied) {
        rq->stream = NULL; /* a hook replaced the reply, or the stream, being finished */
        return 0;
    }
    rq->replied = 1;
    rq->finishing = 1;
    fan__hooks_reply(rq);
    rq->finishing = 0;
    rq->sent = 1;
    return fan__send_reply(rq);
}

int fan_reply(fan_req *rq, int status, const char *content_type, const void *body, size_t len)
{
    return record_reply(rq, status, content_type, body, len, 0);
}

int fan_reply_printf(fan_req *rq, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = fan__arena_vsprintf(&rq->rt.arena, fmt, ap);
    va_end(ap);
    if (!s)
        return FAN_ENOMEM;
    return record_reply(rq, status, "text/plain; charset=utf-8", s, strlen(s), 1);
}

int fan_reply_json(fan_req *rq, int status, json_t *json)
{
    if (!json)
        return FAN_EINVAL;
    const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
    /* Dumped in place into the arena when it fits the current chunk (no
     * malloc'ed string, no copy), else through json_dumps(). */
    size_t room;
    char *at = fan__arena_room(&rq->rt.arena, &room);
    size_t n = room ? fan__json_dumpb(json, at, room, flags) : 0;
    if (n > 0 && n <= room) {
        fan__json_decref(json);
        char *text = fan__arena_alloc_bytes(&rq->rt.arena, n); /* `at`: n <= room */
        return record_reply(rq, status, "application/json", text, n, 1);
    }
    char *s = fan__json_dumps(json, flags);
    fan__json_decref(json);
    if (!s)
        return FAN_ENOMEM;
    int rc = fan_reply(rq, status, "application/json", s, strlen(s));
    free(s);
    return rc;
}

int fan_reply_error(fan_req *rq, int status, const char *message)
{
    json_t *j = json_pack("{s:s, s:i}", "error", message ? message : "", "status", status);
    return fan_reply_json(rq, status, j);
}

int fan_reply_drop(fan_req *rq)
{
    if (rq->sent || rq->replied)
        return FAN_ESTATE;
    rq->replied = 1;
    rq->sent = 1;
    rq->status = 444; /* nginx's code for "closed without a response", for the log */
    fan__conn *c = rq->conn;
    if (c && !c->closing && rq->h2) {
        fan_log(FAN_LOG_DEBUG, "%s: the reply is a stream reset", fan__req_name(rq));
        fan__h2_reset(rq); /* its close cancels the request, as a client that left */
    } else if (c && !c->closing) {
        fan_log(FAN_LOG_DEBUG, "%s: the reply is a connection reset", fan__req_name(rq));
        c->reset = 1;
        fan__conn_close(c); /* cancels the request, as a client that left */
    }
    return 0;
}

int fan_replied(const fan_req *rq)
{
    return rq->replied;
}

int fan_resp_status(const fan_req *rq)
{
    return rq->replied ? rq->status : 0;
}

int fan_resp_set_status(fan_req *rq, int status)
{
    if (!rq->finishing)
        return FAN_ESTATE;
    if (status < 200 || status > 999)
        return FAN_EINVAL;
    rq->status = status;
    return 0;
}

const void *fan_resp_body(const fan_req *rq, size_t *len)
{
    if (len)
        *len = rq->replied ? rq->out_len : 0;
    return rq->replied ? (rq->out_body ? rq->out_body : "") : NULL;
}

typedef struct raw_write {
    uv_write_t w;
    fan__conn *c;
    int close;
    char data[];
} raw_write;

static void raw_written(uv_write_t *w, int status)
{
    raw_write *rw = w->data;
    fan__conn *c = rw->c;
    c->writes--;
    if (rw->close || status < 0)
        fan__conn_close(c);
    free(rw);
    /* The connection is freed by its close callbacks, which libuv runs after
     * every cancelled write's callback. */
}

int fan__reply_raw(fan__conn *c, int status, const char *extra_headers, const char *body, int close)
{
    char *json = NULL;
    if (body) {
        json_t *j = json_pack("{s:s, s:i}", "error", body, "status", status);
        json = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
    }
    size_t blen = json ? strlen(json) : 0;
    size_t cap = 256 + blen + (extra_headers ? strlen(extra_headers) : 0);
    raw_write *rw = malloc(sizeof *rw + cap);
    if (!rw) {
        free(json);
        fan__conn_close(c);
        return FAN_ENOMEM;
    }
    int n;
    if (status == 100)
        n = snprintf(rw->data, cap, "HTTP/1.1 100 Continue\r\n\r\n");
    else
        n = snprintf(rw->data, cap,
                     "HTTP/1.1 %d %s\r\n%sServer: fanout\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n%s",
                     status, fan__status_text(status), fan__date_header(), blen,
                     close ? "Connection: close\r\n" : "", extra_headers ? extra_headers : "",
                     json ? json : "");
    free(json);
    rw->c = c;
    rw->close = close;
    rw->w.data = rw;
    uv_buf_t buf = uv_buf_init(rw->data, (unsigned)n);
    c->writes++;
    /* Both ways, raw_written() runs once written (never at once). */
    int rc = c->tls ? fan__tls_write(c, &rw->w, &buf, 1, raw_written, 0)
                    : uv_write(&rw->w, (uv_stream_t *)&c->tcp, &buf, 1, raw_written);
    if (rc < 0) {
        c->writes--;
        free(rw);
        fan__conn_close(c);
        return FAN_EIO;
    }
    /* An error reply that closes: bounded like any response. (100 Continue
     * keeps the connection and its body timer.) */
    if (close)
        fan__conn_write_queued(c);
    return 0;
}
