/* The lean transport's response parsing: the llhttp callbacks that read a
 * response into the call of the connection it arrives on, with the framing
 * checks llhttp 8.1 leaves out (core/h1_check.h), and the read path's
 * parsing step, fan__lean_parse(). Connections and calls are lean.c's. */
#include "client/lean.h"

static lcall *parser_call(llhttp_t *p)
{
    return ((lconn *)p->data)->lc;
}

/* Ends parsing with `error` for the call. */
static int call_error(lconn *conn, int error)
{
    conn->lc->error = error;
    return -1;
}

static int on_message_begin(llhttp_t *p)
{
    lcall *lc = parser_call(p);
    fan_call *c = lc->call;
    c->nresp = 0;
    c->resp_header_bytes = 0;
    c->resp_body.len = 0;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    lconn *conn = p->data;
    if (fan__h1_head_piece(&conn->h1, at, len))
        return call_error(conn, FAN_EPROTO);
    return fan__span_add(&conn->field, at, len) ? call_error(conn, FAN_ENOMEM) : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    lconn *conn = p->data;
    if (fan__h1_head_piece(&conn->h1, at, len))
        return call_error(conn, FAN_EPROTO);
    return fan__span_add(&conn->value, at, len) ? call_error(conn, FAN_ENOMEM) : 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    lconn *conn = p->data;
    size_t nlen, vlen;
    const char *name = fan__span_data(&conn->field, &nlen);
    const char *value = fan__span_data(&conn->value, &vlen);
    int rc = fan__call_header_parsed(conn->lc->call, name, nlen, value, vlen);
    fan__span_reset(&conn->field);
    fan__span_reset(&conn->value);
    return rc ? call_error(conn, rc) : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    lconn *conn = p->data;
    lcall *lc = conn->lc;
    if (fan__h1_head_end(&conn->h1))
        return call_error(conn, FAN_EPROTO);
    int status = llhttp_get_status_code(p);
    /* llhttp takes "HTTP/1.1 40 x" as status 40; RFC 9110 wants three
     * digits, and a handler must never see a status below 100 (found by
     * tests/fuzz). */
    if (status < 100)
        return call_error(conn, FAN_EPROTO);
    /* HEAD, 204 and 304 responses have no body whatever their headers say. */
    if (lc->head_method || status == 204 || status == 304)
        return 1;
    return 0;
}

static int on_chunk_header(llhttp_t *p)
{
    fan__h1_chunk_header(&((lconn *)p->data)->h1, p->content_length);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    lconn *conn = p->data;
    if (fan__h1_body(&conn->h1, at, len))
        return call_error(conn, FAN_EPROTO);
    int rc = fan__call_body(conn->lc->call, at, len);
    return rc ? call_error(conn, rc) : 0;
}

static int on_message_complete(llhttp_t *p)
{
    lconn *conn = p->data;
    if (fan__h1_head_end(&conn->h1)) /* after a trailer section */
        return call_error(conn, FAN_EPROTO);
    int status = llhttp_get_status_code(p);
    if (status >= 100 && status < 200)
        return 0; /* an interim response: the real one follows */
    conn->lc->call->status = status;
    conn->complete = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

const llhttp_settings_t *fan__lean_settings(void)
{
    return &settings;
}

int fan__lean_parse(lconn *conn, const char *data, size_t len, const char **why)
{
    *why = NULL;
    /* The bytes after a chunk's data that the last input cut come first:
     * llhttp resumes on them. */
    llhttp_errno_t err = HPE_USER;
    if (fan__h1_input(&conn->h1, data, len) == 0)
        err = llhttp_execute(&conn->parser, data, len);
    if (err == HPE_OK && fan__h1_input_end(&conn->h1))
        err = HPE_USER;
    if (err == HPE_OK) {
        /* A header cut by the end of this input: `data` is about to be reused. */
        if (fan__span_keep(&conn->field) || fan__span_keep(&conn->value))
            return FAN_ENOMEM;
        return 1;
    }
    if (err == HPE_PAUSED && conn->complete) {
        /* Bytes after the response would be a second, unasked-for one: the
         * connection is not reused. */
        conn->broken = llhttp_get_error_pos(&conn->parser) != data + len;
        return 0;
    }
    if (conn->h1.why) {
        *why = conn->h1.why;
        return FAN_EPROTO;
    }
    if (conn->lc->error)
        return conn->lc->error;
    *why = llhttp_get_error_reason(&conn->parser);
    if (!*why)
        *why = "malformed response";
    return FAN_EPROTO;
}
