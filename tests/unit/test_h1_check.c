/* The framing checks llhttp leaves out (core/h1_check.c), wired to llhttp as
 * conn.c and lean_response.c wire them, on whole messages and on the same
 * bytes cut at every point and one byte at a time: the verdict must not
 * depend on where the reads end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <llhttp.h>

#include "core/h1_check.h"

typedef struct parse {
    llhttp_t parser;
    fan__h1_check k;
} parse;

static fan__h1_check *check_of(llhttp_t *p)
{
    return &((parse *)p->data)->k;
}

static int on_piece(llhttp_t *p, const char *at, size_t len)
{
    return fan__h1_head_piece(check_of(p), at, len);
}

static int on_head_end(llhttp_t *p)
{
    return fan__h1_head_end(check_of(p));
}

static int on_chunk_header(llhttp_t *p)
{
    fan__h1_chunk_header(check_of(p), p->content_length);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    return fan__h1_body(check_of(p), at, len);
}

static const llhttp_settings_t settings = {
    .on_url = on_piece,
    .on_status = on_piece,
    .on_header_field = on_piece,
    .on_header_value = on_piece,
    .on_headers_complete = on_head_end,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_head_end,
};

/* Feeds one input as conn.c does. Each input lies in a buffer of its own,
 * freed after it was parsed: a check that reads past it or keeps pointing
 * into it is caught by ASan. Returns 0 or -1. */
static int feed(parse *ps, const char *data, size_t len)
{
    char *in = malloc(len ? len : 1);
    assert_non_null(in);
    memcpy(in, data, len);
    int rc = -1;
    if (fan__h1_input(&ps->k, in, len) == 0 && llhttp_execute(&ps->parser, in, len) == HPE_OK)
        rc = fan__h1_input_end(&ps->k);
    free(in);
    return rc;
}

/* Parses `msg` in inputs of `piece` bytes (0: whole), or cut once at `cut`
 * (when piece is 0 and cut > 0). Returns 0 if it was accepted, -1. */
static int verdict(llhttp_type_t type, const char *msg, size_t piece, size_t cut)
{
    parse ps;
    llhttp_init(&ps.parser, type, &settings);
    ps.parser.data = &ps;
    fan__h1_reset(&ps.k);
    size_t len = strlen(msg);
    if (piece == 0 && cut > 0)
        return feed(&ps, msg, cut) || feed(&ps, msg + cut, len - cut) ? -1 : 0;
    for (size_t off = 0; off < len; off += piece ? piece : len)
        if (feed(&ps, msg + off, piece && len - off > piece ? piece : len - off))
            return -1;
    return 0;
}

/* The same verdict whole, cut at every point, and one byte at a time. */
static void expect(llhttp_type_t type, const char *msg, int want)
{
    size_t len = strlen(msg);
    if (verdict(type, msg, 0, 0) != want)
        fail_msg("whole: want %d for \"%s\"", want, msg);
    if (verdict(type, msg, 1, 0) != want)
        fail_msg("bytewise: want %d for \"%s\"", want, msg);
    for (size_t cut = 1; cut < len; cut++)
        if (verdict(type, msg, 0, cut) != want)
            fail_msg("cut at %zu: want %d for \"%s\"", cut, want, msg);
}

#define CHUNKED "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

static void well_framed_requests_are_accepted(void **state)
{
    expect(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    expect(HTTP_REQUEST, "GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX: a b  c \r\nY:\r\nZ: \t\r\n\r\n", 0);
    expect(HTTP_REQUEST, CHUNKED "3\r\nabc\r\n5;e=1\r\nde\r\n \r\n0\r\n\r\n", 0);
    expect(HTTP_REQUEST, CHUNKED "3\r\nabc\r\n0\r\nT: x\r\nU:\r\n\r\n", 0);
    /* A body may hold what would be a fold in a head. */
    expect(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\na\r\n b\n", 0);
    expect(HTTP_REQUEST, CHUNKED "4\r\n\r\n\tb\r\n0\r\n\r\n", 0);
    expect(HTTP_REQUEST, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n\tb", 0);
    /* Pipelined: the next head starts after the blank line. */
    expect(HTTP_REQUEST, CHUNKED "1\r\n \r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0);
}

static void chunk_data_not_followed_by_crlf_is_refused(void **state)
{
    expect(HTTP_REQUEST, CHUNKED "3\r\nabcXX0\r\n\r\n", -1);
    expect(HTTP_REQUEST, CHUNKED "3\r\nabc\rX0\r\n\r\n", -1);
    expect(HTTP_REQUEST, CHUNKED "3\r\nabcX\n0\r\n\r\n", -1);
    expect(HTTP_REQUEST, CHUNKED "3\r\nabc\n\r0\r\n\r\n", -1);
    expect(HTTP_REQUEST, CHUNKED "3\r\nabc\r\n2\r\nde\r\r0\r\n\r\n", -1);
    expect(HTTP_RESPONSE,
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", -1);
}

static void obs_fold_is_refused(void **state)
{
    expect(HTTP_REQUEST, "GET / HTTP/1.1\r\n Host: a\r\n\r\n", -1);
    expect(HTTP_REQUEST, "GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", -1);
    expect(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", -1);
    expect(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\nY: c\r\n\r\n", -1);
    expect(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n b\r\n\r\n", -1);
    expect(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n \r\n\r\n", -1);
    expect(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n \r\n\r\n", -1);
    expect(HTTP_REQUEST, CHUNKED "3\r\nabc\r\n0\r\nT: x\r\n y\r\n\r\n", -1);
    expect(HTTP_REQUEST, CHUNKED "3\r\nabc\r\n0\r\n T: x\r\n\r\n", -1);
    expect(HTTP_RESPONSE, "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", -1);
    expect(HTTP_RESPONSE, "HTTP/1.1 200 OK\r\n X: a\r\nContent-Length: 0\r\n\r\n", -1);
    expect(HTTP_RESPONSE, "HTTP/1.1 200\r\nX:\r\n\tb\r\nContent-Length: 0\r\n\r\n", -1);
}

static void well_framed_responses_are_accepted(void **state)
{
    expect(HTTP_RESPONSE, "HTTP/1.1 200 OK\r\nX: a b\r\nContent-Length: 3\r\n\r\n\n b", 0);
    expect(HTTP_RESPONSE, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 0);
    expect(HTTP_RESPONSE,
           "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           "2\r\n\r\n\r\n0\r\nT: x\r\n\r\n",
           0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(well_framed_requests_are_accepted),
        cmocka_unit_test(chunk_data_not_followed_by_crlf_is_refused),
        cmocka_unit_test(obs_fold_is_refused),
        cmocka_unit_test(well_framed_responses_are_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
