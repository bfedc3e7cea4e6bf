/* The TLS layer of a server connection (src/http/tls.c) on arbitrary bytes,
 * through the real code: an app with a certificate made here, one end of a
 * socketpair handed to fan__conn_accept(), the input written to the other
 * end in pieces (the first byte's low 6 bits are their size, 0 for all at
 * once; its high bit ends the input with a half-close, else the client goes
 * silent), and the loop run until the server has closed the connection and
 * freed everything. Random bytes rarely get past the record layer and the
 * ClientHello (the seeds are real ClientHellos and a plain-text request), so
 * what this covers is the layer's glue: records cut anywhere, alerts, a
 * plain-text client, end of input mid-handshake, the 2 ms handshake
 * timeout, and that each of them closes the connection and frees its TLS
 * state (the leak check runs on every input). */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>

#include "fuzz_server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PIECE_MASK 0x3f
#define HANG_UP 0x80

static void h_root(fan_req *rq)
{
    fan_reply(rq, 200, "text/plain", "hello\n", 6);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fan_app *app = fuzz_app_new("FUZZ_TLS_LOG");
    fan_app_route(app, "GET", "/", h_root);
    fan_limits *lim = fan_app_limits(app);
    lim->tls_handshake_timeout_ms = 2;
    lim->idle_timeout_ms = lim->header_timeout_ms = lim->body_timeout_ms = 2;
    lim->write_timeout_ms = 2;
    fuzz_serve(app);
    return 0;
}

/* One turn of the loop, and what the server sent read and dropped.
 * Returns 1 once the server's end is closed. */
static int turn(int fd, int wait)
{
    fuzz_turn(fd, wait);
    static char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = data[0] & PIECE_MASK ? (size_t)(data[0] & PIECE_MASK) : size;
    int hang_up = data[0] & HANG_UP;
    data++;
    size--;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    uint64_t start = uv_hrtime();
    uv_update_time(loop); /* the clock has not moved since the last input */
    fan__conn_accept(&listener, sv[0]); /* takes sv[0], even on failure */
    int closed = 0;
    for (size_t off = 0; off < size && !closed;) {
        size_t len = size - off < piece ? size - off : piece;
        ssize_t n = send(sv[1], data + off, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            break; /* the server closed */
        closed = turn(sv[1], n <= 0);
        if (elapsed_ms(start) > CLOSE_DEADLINE_MS)
            abort();
    }
    if (hang_up)
        shutdown(sv[1], SHUT_WR);
    /* Else silent: the handshake or idle timeout (2 ms) ends it. */
    while (!closed || !fan__http_idle() || uv_loop_alive(loop)) {
        closed = turn(sv[1], 1) || closed;
        if (elapsed_ms(start) > CLOSE_DEADLINE_MS) {
            fprintf(stderr, "fuzz_tls: the connection is not closed after %d ms\n",
                    CLOSE_DEADLINE_MS);
            abort();
        }
    }
    close(sv[1]);
    return 0;
}
