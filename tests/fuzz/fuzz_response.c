/* The lean client's handling of upstream responses on arbitrary bytes.
 *
 * lean.c's llhttp callbacks are static and hang off a pooled connection with
 * a libuv socket, so this target mirrors them (keep them in step with
 * src/client/lean.c) while storing the response with the library's own
 * fan__call_header() and fan__call_body() into a real fan_call, as lean.c
 * does. conn_read()'s handling of the parser's result is mirrored too,
 * end of input included (llhttp_finish() for a body delimited by the close).
 *
 * The first input byte picks the read size and whether the request was a
 * HEAD (whose response has no body). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "fanout.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fconn {
    fan_call *call;
    fan__buf field, value;
    int head_method;
    int complete;
    int error;
} fconn;

static int on_message_begin(llhttp_t *p)
{
    fconn *conn = p->data;
    fan_call *c = conn->call;
    c->nresp = 0;
    c->resp_header_bytes = 0;
    c->resp_body.len = 0;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    fconn *conn = p->data;
    return fan__buf_append(&conn->field, at, len) ? -1 : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    fconn *conn = p->data;
    return fan__buf_append(&conn->value, at, len) ? -1 : 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    fconn *conn = p->data;
    int rc = fan__call_header(conn->call, conn->field.data, conn->field.len,
                              conn->value.data ? conn->value.data : "", conn->value.len);
    conn->field.len = conn->value.len = 0;
    if (rc != 0) {
        conn->error = rc;
        return -1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    fconn *conn = p->data;
    int status = llhttp_get_status_code(p);
    if (status < 100) {
        conn->error = FAN_EPROTO;
        return -1;
    }
    if (conn->head_method || status == 204 || status == 304)
        return 1;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    fconn *conn = p->data;
    int rc = fan__call_body(conn->call, at, len);
    if (rc != 0) {
        conn->error = rc;
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    fconn *conn = p->data;
    int status = llhttp_get_status_code(p);
    if (status >= 100 && status < 200)
        return 0;
    conn->call->status = status;
    conn->complete = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* What a handler reads of a finished call: every header is a whole string. */
static void check_response(const fan_call *c)
{
    if (c->nresp > 256 || c->resp_body.len > c->max_body)
        abort();
    for (unsigned i = 0; i < c->nresp; i++) {
        (void)strlen(c->resp_headers[i].name);
        (void)strlen(c->resp_headers[i].value);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = (data[0] >> 1) ? (size_t)(data[0] >> 1) : size;
    int head_method = data[0] & 1;
    data++;
    size--;

    fan_req *rq = calloc(1, sizeof *rq);
    fan_call *call = calloc(1, sizeof *call);
    if (!rq || !call) {
        free(rq);
        free(call);
        return 0;
    }
    fan__arena_init(&rq->arena);
    call->rq = rq;
    call->max_body = 65536; /* small enough for the fuzzer to reach */

    fconn conn = {.call = call, .head_method = head_method};
    llhttp_t parser;
    llhttp_init(&parser, HTTP_RESPONSE, &settings);
    parser.data = &conn;

    int result = 1; /* 1: still reading, else 0 or an error, as the call ends */
    size_t off = 0;
    while (off < size && result == 1) {
        const char *at = (const char *)data + off;
        size_t len = size - off < piece ? size - off : piece;
        llhttp_errno_t err = llhttp_execute(&parser, at, len);
        off += len;
        if (err == HPE_OK)
            continue;
        if (err == HPE_PAUSED && conn.complete) {
            const char *pos = llhttp_get_error_pos(&parser);
            if (pos < at || pos > at + len)
                abort();
            result = 0;
        } else {
            result = conn.error ? conn.error : FAN_EPROTO;
        }
    }
    if (result == 1) {
        /* The upstream closed: a body delimited by the close is complete. */
        if (size > 0 && !conn.complete)
            llhttp_finish(&parser);
        result = conn.complete ? 0 : FAN_EPROTO;
    }
    if (result == 0) {
        if (call->status < 200 || call->status > 999)
            abort();
        check_response(call);
    }

    fan__buf_free(&conn.field);
    fan__buf_free(&conn.value);
    fan__buf_free(&call->resp_body);
    fan__arena_free(&rq->arena);
    free(call);
    free(rq);
    return 0;
}
