#include "core/h1_check.h"

#include <string.h>

#define WHY_FOLD "obsolete line folding (a header line begins with a space or tab)"
#define WHY_CHUNK "chunk data not followed by CRLF"

void fan__h1_reset(fan__h1_check *k)
{
    memset(k, 0, sizeof *k);
}

static int failed(fan__h1_check *k, const char *why)
{
    k->why = why;
    return -1;
}

/* Checks the bytes after a chunk's data, from p on, as far as the input
 * goes. */
static int check_crlf(fan__h1_check *k, const char *p)
{
    for (; k->crlf && p < k->end; p++, k->crlf--)
        if (*p != (k->crlf == 2 ? '\r' : '\n'))
            return failed(k, WHY_CHUNK);
    return 0;
}

/* Checks head bytes [p, end) that lie between the pieces llhttp hands over
 * (separators, line ends, whitespace llhttp skips): a line there that starts
 * with SP or HT is a fold. A line that starts with CR or LF is the blank line
 * that ends the head: what follows is not the head's. Returns 0, 1 at the
 * blank line, or -1. */
static int scan(fan__h1_check *k, const char *p, const char *end)
{
    for (; p < end; p++) {
        if (k->lf && (*p == ' ' || *p == '\t'))
            return failed(k, WHY_FOLD);
        if (k->lf && (*p == '\r' || *p == '\n')) {
            k->lf = 0;
            return 1;
        }
        k->lf = *p == '\n';
    }
    return 0;
}

int fan__h1_input(fan__h1_check *k, const char *data, size_t len)
{
    k->end = data + len;
    if (k->open) {
        k->open = 0;
        k->from = data;
    }
    return check_crlf(k, data);
}

int fan__h1_input_end(fan__h1_check *k)
{
    if (!k->from)
        return 0;
    int rc = scan(k, k->from, k->end);
    k->from = NULL;
    k->open = rc == 0; /* at the blank line, what is left of the head is checked */
    return rc < 0 ? -1 : 0;
}

int fan__h1_head_piece(fan__h1_check *k, const char *at, size_t len)
{
    /* The first piece of a head has nothing checked before it: llhttp itself
     * rejects SP or HT at the start of the first header line. */
    if (k->from && scan(k, k->from, at) < 0)
        return -1;
    if (len > 0) {
        if (k->lf && (at[0] == ' ' || at[0] == '\t'))
            return failed(k, WHY_FOLD);
        k->lf = 0;
    }
    k->from = at + len;
    return 0;
}

int fan__h1_head_end(fan__h1_check *k)
{
    int rc = k->from ? scan(k, k->from, k->end) : 0;
    k->from = NULL;
    k->open = 0;
    k->lf = 0;
    return rc < 0 ? -1 : 0;
}

void fan__h1_chunk_header(fan__h1_check *k, uint64_t size)
{
    k->chunk_left = size;
    /* The trailer section starts a line, and llhttp takes a first trailer
     * line " X: y" as a header named " X". */
    if (size == 0)
        k->lf = 1;
}

int fan__h1_body(fan__h1_check *k, const char *at, size_t len)
{
    if (k->chunk_left == 0)
        return 0;
    k->chunk_left -= len < k->chunk_left ? len : k->chunk_left;
    if (k->chunk_left > 0)
        return 0;
    k->crlf = 2;
    return check_crlf(k, at + len);
}
