/* The HTTP/1.1 framing checks that Debian's llhttp 8.1 leaves out, shared by
 * the server's request parsing (src/http/conn.c) and the lean client's
 * response parsing (src/client/lean.c), which feed it from their llhttp
 * callbacks:
 *
 *  - obs-fold (RFC 9112 5.2): a header line that begins with SP or HT.
 *    llhttp merges it into the value before it; we reject the message.
 *  - the CRLF after each chunk's data (RFC 9112 7.1): llhttp skips those
 *    two bytes unchecked ("3\r\nabcXX0\r\n\r\n" is body "abc").
 *
 * Both look at the bytes around what llhttp hands the callbacks, which lie
 * in the input being parsed. What is cut by the end of an input is carried
 * over and checked at the start of the next, which must be the bytes llhttp
 * resumes on. The owner calls fan__h1_input() before each llhttp_execute()
 * and fan__h1_input_end() after one that returned HPE_OK. Nothing is
 * allocated; a check embedded in a connection needs no cleanup. */
#ifndef FAN_CORE_H1_CHECK_H
#define FAN_CORE_H1_CHECK_H

#include <stddef.h>
#include <stdint.h>

typedef struct fan__h1_check {
    const char *end;     /* the end of the input being parsed */
    const char *from;    /* head bytes before it are checked; NULL outside a head */
    const char *why;     /* what a failed check found, for the log and the reply */
    uint64_t chunk_left; /* data bytes of the current chunk not seen yet */
    unsigned char crlf;  /* bytes after a chunk's data still to check: 2, 1 or 0 */
    unsigned char lf;    /* the last head byte checked was LF: a line starts */
    unsigned char open;  /* a head goes on in the next input */
} fan__h1_check;

/* Starts over, for a new parser. This function can't fail. */
void fan__h1_reset(fan__h1_check *k);

/* Before llhttp_execute(data, len): checks what the previous input left
 * pending. Returns 0, or -1 with k->why set. */
int fan__h1_input(fan__h1_check *k, const char *data, size_t len);

/* After an llhttp_execute() that returned HPE_OK (it consumed its whole
 * input): checks the rest of a head cut by its end. Returns 0 or -1. */
int fan__h1_input_end(fan__h1_check *k);

/* A piece of the head (target, status, header name or value) from an llhttp
 * data callback: checks the bytes since the previous piece and the piece's
 * first byte. Returns 0 or -1. */
int fan__h1_head_piece(fan__h1_check *k, const char *at, size_t len);

/* The head (or a trailer section) ended, from on_headers_complete and
 * on_message_complete: checks the bytes after its last piece up to the blank
 * line. Returns 0 or -1. */
int fan__h1_head_end(fan__h1_check *k);

/* From on_chunk_header: a chunk of `size` data bytes follows (0: the last
 * chunk, then the trailer section). This function can't fail. */
void fan__h1_chunk_header(fan__h1_check *k, uint64_t size);

/* Body data from on_body: where a chunk's data ends, checks that CRLF
 * follows. Data of a body that is not chunked is ignored. Returns 0 or -1. */
int fan__h1_body(fan__h1_check *k, const char *at, size_t len);

#endif
