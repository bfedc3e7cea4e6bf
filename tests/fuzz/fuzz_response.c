/* The lean client's handling of upstream responses on arbitrary bytes: the
 * read path's parsing step (fan__lean_parse(): the framing checks, llhttp
 * with the transport's own callbacks) fills a real fan_call through a
 * connection that has no socket. The end of input is handled as conn_read()
 * does (keep it in step with src/client/lean.c): llhttp_finish() for a body
 * delimited by the close.
 *
 * The first input byte picks the read size and whether the request was a
 * HEAD (whose response has no body). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/lean.h"
#include "fanout.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    fan__arena_init(&rq->rt.arena);
    call->rq = rq;
    call->max_body = 65536; /* small enough for the fuzzer to reach */

    lcall *lc = calloc(1, sizeof *lc);
    lconn conn;
    memset(&conn, 0, sizeof conn);
    if (!lc) {
        free(rq);
        free(call);
        return 0;
    }
    lc->call = call;
    lc->head_method = head_method;
    conn.lc = lc;
    llhttp_init(&conn.parser, HTTP_RESPONSE, fan__lean_settings());
    conn.parser.data = &conn;

    int result = 1; /* 1: still reading, else 0 or an error, as the call ends */
    size_t off = 0;
    while (off < size && result == 1) {
        /* Each piece in a buffer of its own, freed after it was parsed as
         * lean.c reuses its read buffer: a header left pointing into it
         * (fan__span_keep() missing) is a use after free. */
        size_t len = size - off < piece ? size - off : piece;
        char *at = malloc(len ? len : 1);
        if (!at)
            abort();
        memcpy(at, data + off, len);
        const char *why;
        result = fan__lean_parse(&conn, at, len, &why);
        off += len;
        if (result == 0) {
            const char *pos = llhttp_get_error_pos(&conn.parser);
            if (!conn.complete || pos < at || pos > at + len)
                abort();
        }
        if (result < 0 && result != FAN_EPROTO && why)
            abort(); /* a reason comes only with a malformed response */
        free(at);
    }
    if (result == 1) {
        /* The upstream closed: a body delimited by the close is complete. */
        if (size > 0 && !conn.complete)
            llhttp_finish(&conn.parser);
        result = conn.complete ? 0 : FAN_EPROTO;
    }
    if (result == 0) {
        if (call->status < 200 || call->status > 999)
            abort();
        check_response(call);
    }

    fan__span_reset(&conn.field);
    fan__span_reset(&conn.value);
    free(lc);
    fan__buf_free(&call->resp_body);
    fan__arena_free(&rq->rt.arena);
    free(call);
    free(rq);
    return 0;
}
