/* The server's request input on arbitrary bytes, through the real code.
 *
 * Each input goes to a real server connection: one end of a socketpair is
 * handed to fan__conn_accept() (which, given a descriptor, reads nothing of
 * the listener but its app, so no listening socket is needed), the input is
 * written to the other end and the event loop runs, as fan_run() would run
 * it, until the server has closed the connection and freed everything. So
 * conn.c's reading, llhttp callbacks, limits, timers, pipelining and error
 * replies, request.c's routing and coroutines, the handlers' accessors,
 * hooks, sessions and response writing all see the fuzzer's bytes. The app
 * has small limits, so that the fuzzer reaches them, and the server's end a
 * small send buffer, so that responses also wait for the client to read.
 *
 * The first input byte drives the client. Its low 6 bits are the size of the
 * pieces the rest is written in (0: all at once); the loop runs between two
 * pieces, so that the server reads each on its own and every callback also
 * sees its data split. Its two high bits choose how the client ends:
 *   00  it waits until the server answered all it could, then shuts down
 *       its sending side;
 *   80  it shuts down at once, while the server may still be serving;
 *   40  it goes silent: it neither shuts down nor reads, and the server
 *       must close the connection through its own timeouts (idle, 408,
 *       write), which are then of 2 ms;
 *   c0  the same, but the client goes on reading.
 * A handler may also begin a graceful stop (fan_stop()), which the target
 * follows as fan_run() does and undoes after the input.
 *
 * Checked, besides the sanitizers: the server closes every connection
 * within a bounded time (a hang or a leaked connection or request aborts),
 * and what it sends back parses as a sequence of HTTP/1.1 responses, none
 * after one that said Connection: close (response splitting, a wrong
 * Content-Length or a corrupted head fail that), and complete in the first
 * mode. Set FUZZ_REQUEST_LOG=1 to keep the server's logs on stderr,
 * FUZZ_REQUEST_DUMP=1 to see its output there too. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fanout.h"
#include "http/http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PIECE_MASK 0x3f
#define SILENT 0x40
#define HANG_UP 0x80

/* Far beyond what any input needs (a few ms): only a server that never
 * closes the connection reaches it. */
#define CLOSE_DEADLINE_MS 5000
/* How long the client waits for the answers before it shuts down anyway. */
#define QUIET_DEADLINE_MS 1000

/* The app of the first two modes, and the one with 2 ms timeouts. */
static fan__listener listeners[2]; /* only their app is read */
static uv_loop_t *loop;
static int dump; /* FUZZ_REQUEST_DUMP: copy the server's output to stderr */

/* ------------------------------------------------------------------------ */
/* The app                                                                  */
/* ------------------------------------------------------------------------ */

/* A JSON string, or null for text that is not UTF-8. */
static json_t *jstr(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;
    return j ? j : json_null();
}

static void h_root(fan_req *rq)
{
    fan_reply(rq, 200, "text/plain", "hello\n", 6);
}

static void h_user(fan_req *rq)
{
    int ok;
    long n = fan_req_query_long(rq, "n", 0, &ok);
    fan_reply_json(rq, 200,
                   json_pack("{s:o, s:o, s:I, s:b, s:o}", "id", jstr(fan_req_param(rq, "id")), "q",
                             jstr(fan_req_query(rq, "q")), "n", (json_int_t)n, "ok", ok, "qs",
                             jstr(fan_req_query_string(rq))));
}

static void h_files(fan_req *rq)
{
    fan_reply_printf(rq, 200, "%s %s", fan_req_method(rq), fan_req_param(rq, "*"));
}

static void h_echo(fan_req *rq)
{
    size_t len;
    const char *body = fan_req_body(rq, &len);
    /* The request's Content-Type goes back out, if the server takes it. */
    if (fan_reply(rq, 200, fan_req_header(rq, "Content-Type"), body, len) == FAN_EINVAL)
        fan_reply(rq, 200, NULL, body, len);
}

static void h_form(fan_req *rq)
{
    fan_reply_json(rq, 200, json_pack("{s:o, s:o}", "name", jstr(fan_req_form(rq, "name")), "x",
                                      jstr(fan_req_form(rq, "x"))));
}

static void h_json(fan_req *rq)
{
    json_t *j = fan_req_require_json(rq); /* borrowed; it replied if NULL */
    if (j)
        fan_reply_json(rq, 200, json_incref(j));
}

/* Request header values back out, as JSON and as response headers: the
 * server must refuse those that would split the response. */
static void h_headers(fan_req *rq)
{
    const char *echo = fan_req_header(rq, "X-Echo");
    if (echo)
        fan_resp_set_header(rq, "X-Echo", echo);
    fan_reply_json(rq, 200,
                   json_pack("{s:o, s:o, s:o, s:o}", "host", jstr(fan_req_header(rq, "Host")),
                             "agent", jstr(fan_req_header(rq, "User-Agent")), "cookie",
                             jstr(fan_req_cookie(rq, "a")), "echo", jstr(echo)));
}

static void h_status(fan_req *rq)
{
    long code = fan_req_query_long(rq, "code", 200, NULL);
    if (fan_reply_printf(rq, code >= 0 && code < 2000 ? (int)code : 0, "%s", fan_req_path(rq)) != 0)
        fan_reply_error(rq, 400, "bad code");
}

static void h_redirect(fan_req *rq)
{
    const char *to = fan_req_query(rq, "to");
    if (fan_reply_redirect(rq, 302, to ? to : "/") != 0)
        fan_reply_error(rq, 400, "bad location");
}

static void h_session(fan_req *rq)
{
    const char *user = fan_session_get(rq, "user");
    const char *set = fan_req_query(rq, "set");
    if (set)
        fan_session_set(rq, "user", set);
    fan_reply_json(rq, 200, json_pack("{s:o}", "user", jstr(user)));
}

/* Suspends the handler for 0, 1 or 3 ms, so that pipelined input waits, the
 * end of input may come while the request is served, and the deadline of
 * the silent modes passes. Cancelled, it returns without replying. */
static void h_sleep(fan_req *rq)
{
    long ms = fan_req_query_long(rq, "ms", 0, NULL);
    if (fan_sleep(rq, ms > 0 ? (ms > 1 ? 3 : 1) : 0) == 0)
        fan_reply(rq, 200, "text/plain", "slept\n", 6);
}

static void h_stop(fan_req *rq)
{
    fan_stop();
    fan_reply(rq, 200, "text/plain", "stopping\n", 9);
}

static void before(fan_req *rq)
{
    if (fan_req_header(rq, "X-Deny"))
        fan_reply_error(rq, 403, "denied");
}

/* What the response checker needs: which answers have no body. Every reply
 * that goes through the hooks passes here in the order it is sent. */
#define MAX_ANSWERS 8192
static unsigned char answer_head[MAX_ANSWERS];
static size_t nanswers, answers_read;
static int answers_lost;

static void after(fan_req *rq)
{
    if (nanswers == MAX_ANSWERS)
        answers_lost = 1;
    else
        answer_head[nanswers++] = strcmp(fan_req_method(rq), "HEAD") == 0;
    fan_resp_set_header(rq, "X-Path", fan_req_path(rq)); /* refused with a CR or LF in it */
}

static void on_error(fan_req *rq)
{
    size_t len;
    (void)fan_resp_body(rq, &len);
    if (fan_resp_status(rq) == 404)
        fan_reply_printf(rq, 404, "no route for %s\n", fan_req_path(rq));
}

static fan_app *app_new(unsigned timeout_ms)
{
    fan_app *app = fan_app_new();
    if (!app)
        abort();
    fan_limits *lim = fan_app_limits(app);
    lim->max_header_bytes = 1024;
    lim->max_headers = 20;
    lim->max_body_bytes = 1024;
    lim->max_pipelined_bytes = 2048;
    lim->header_timeout_ms = lim->body_timeout_ms = lim->idle_timeout_ms = timeout_ms;
    lim->request_timeout_ms = timeout_ms;
    /* A write timeout that passes cuts a response short: only in the modes
     * where the client may stop reading. */
    lim->write_timeout_ms = timeout_ms < 100 ? timeout_ms : 10 * timeout_ms;
    if (fan_app_route(app, "GET", "/", h_root) || fan_app_route(app, "GET", "/users/:id", h_user) ||
        fan_app_route(app, "*", "/files/*", h_files) || fan_app_route(app, "POST", "/echo", h_echo) ||
        fan_app_route(app, "PUT", "/echo", h_echo) || fan_app_route(app, "POST", "/form", h_form) ||
        fan_app_route(app, "POST", "/json", h_json) || fan_app_route(app, "GET", "/headers", h_headers) ||
        fan_app_route(app, "GET", "/status", h_status) ||
        fan_app_route(app, "GET", "/redirect", h_redirect) ||
        fan_app_route(app, "GET", "/session", h_session) || fan_app_route(app, "GET", "/sleep", h_sleep) ||
        fan_app_route(app, "POST", "/stop", h_stop) || fan_app_before_request(app, before) ||
        fan_app_after_request(app, after) || fan_app_error_handler(app, 0, on_error) ||
        fan_app_set(app, "session.secrets", "[\"fuzz-secret-0123456789abcdef\"]") ||
        fan_app_set(app, "session.secure", "false"))
        abort();
    return app;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN); /* as fan_run() does */
    dump = getenv("FUZZ_REQUEST_DUMP") != NULL;
    if (!getenv("FUZZ_REQUEST_LOG")) {
        /* Every line still formatted (JSON escapes fuzzed paths), then
         * dropped. */
        fan_log_set_level(FAN_LOG_DEBUG);
        fan_log_set_format(FAN_LOG_JSON);
        if (fan_log_open("/dev/null") || fan_access_log_open("/dev/null"))
            abort();
    }
    listeners[0].app = app_new(100);
    listeners[1].app = app_new(2);
    loop = fan__srv()->loop;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The response checker                                                     */
/* ------------------------------------------------------------------------ */

static llhttp_t resp_parser;
static int resp_failed;

static int resp_headers_complete(llhttp_t *p)
{
    if (p->status_code < 200)
        return 0; /* 100 Continue: no body, the real answer follows */
    /* Raw error replies (conn.c) skip the hooks: they come last, with a
     * body even for HEAD. */
    int head = answers_read < nanswers && answer_head[answers_read];
    answers_read++;
    return head ? 1 : 0; /* 1: this message has no body */
}

static const llhttp_settings_t resp_settings = {
    .on_headers_complete = resp_headers_complete,
};

static void check_output(const char *data, size_t len)
{
    if (dump)
        fwrite(data, 1, len, stderr);
    if (resp_failed || answers_lost)
        return;
    llhttp_errno_t err = llhttp_execute(&resp_parser, data, len);
    if (err != HPE_OK) {
        fprintf(stderr, "fuzz_request: the server's output is not HTTP/1.1: %s (%s)\n",
                llhttp_errno_name(err), llhttp_get_error_reason(&resp_parser));
        resp_failed = 1;
    }
}

/* ------------------------------------------------------------------------ */
/* The client                                                               */
/* ------------------------------------------------------------------------ */

typedef struct client {
    int fd;
    int reading;
    int closed;     /* the server closed its end */
    uint64_t start; /* uv_hrtime() */
} client;

static uint64_t elapsed_ms(const client *cl)
{
    return (uv_hrtime() - cl->start) / 1000000;
}

/* Reads and checks what the server sent so far. */
static void drain(client *cl)
{
    static char buf[65536];
    while (cl->reading && !cl->closed) {
        ssize_t n = recv(cl->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            check_output(buf, (size_t)n);
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        else
            cl->closed = 1; /* EOF, or a reset: it closed with our bytes unread */
    }
}

/* One turn of the loop, after waiting up to a few ms for something to do
 * when `wait` (for the server's timers, or a socket to become ready). */
static void turn(client *cl, int wait, short client_events)
{
    fan__server *srv = fan__srv();
    int ms = wait ? uv_backend_timeout(loop) : 0;
    if (ms != 0) {
        struct pollfd fds[2] = {{.fd = uv_backend_fd(loop), .events = POLLIN},
                                {.fd = cl->fd, .events = cl->reading ? client_events : 0}};
        poll(fds, 2, ms < 0 || ms > 5 ? 5 : ms);
    }
    int stopping = srv->stopping;
    uv_run(loop, UV_RUN_NOWAIT);
    /* A handler called fan_stop(): what fan_run() does next (there is no
     * listener to close). */
    if (srv->stopping && !stopping)
        fan__http_close_idle();
    drain(cl);
}

/* Whether the connection is between requests: nothing served or written. */
static int quiet(void)
{
    fan__server *srv = fan__srv();
    for (fan__list *p = srv->conns.next; p != &srv->conns; p = p->next) {
        const fan__conn *c = fan__container_of(p, fan__conn, link);
        if (c->serving || c->writes)
            return 0;
    }
    return 1;
}

/* Whether the server is done with the connection: closed, freed, and no
 * handle of it left in the loop. */
static int server_done(void)
{
    return fan__http_idle() && !uv_loop_alive(loop);
}

static void hang(const char *what)
{
    fan__server *srv = fan__srv();
    fprintf(stderr, "fuzz_request: %s after %d ms (%zu connections, %zu requests)\n", what,
            CLOSE_DEADLINE_MS, srv->nconns, fan__live_requests());
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = data[0] & PIECE_MASK ? (size_t)(data[0] & PIECE_MASK) : size;
    int silent = data[0] & SILENT, hang_up = data[0] & HANG_UP;
    data++;
    size--;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    /* The smallest send buffer the kernel gives (a few KB): a burst of
     * answers fills it, and they wait for the client as on a slow link. */
    int sndbuf = 1;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    client cl = {.fd = sv[1], .reading = 1, .start = uv_hrtime()};
    nanswers = answers_read = 0;
    answers_lost = resp_failed = 0;
    llhttp_init(&resp_parser, HTTP_RESPONSE, &resp_settings);
    /* The loop's clock has not moved since the last input: the timers the
     * accept starts would be due at once. */
    uv_update_time(loop);
    fan__conn_accept(&listeners[silent ? 1 : 0], sv[0]); /* takes sv[0], even on failure */

    size_t off = 0;
    while (off < size && !cl.closed) {
        size_t len = size - off < piece ? size - off : piece;
        ssize_t n = send(cl.fd, data + off, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            turn(&cl, 0, 0); /* the server reads this piece on its own */
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            turn(&cl, 1, POLLIN | POLLOUT); /* the server is not reading now */
        } else {
            break; /* EPIPE, ECONNRESET: the server closed */
        }
        if (elapsed_ms(&cl) > CLOSE_DEADLINE_MS)
            hang("the server stopped reading");
    }

    if (silent) {
        /* The server's timeouts end it. */
        cl.reading = hang_up;
    } else {
        /* Let the server answer what it can before the end of input. */
        uint64_t from = elapsed_ms(&cl);
        while (!hang_up && !cl.closed && !quiet() && elapsed_ms(&cl) - from < QUIET_DEADLINE_MS)
            turn(&cl, 1, POLLIN);
        /* After a half-close the server never waits for more requests; its
         * writes must still reach us. */
        shutdown(cl.fd, SHUT_WR);
    }
    while (!server_done() || (cl.reading && !cl.closed)) {
        turn(&cl, 1, POLLIN);
        if (elapsed_ms(&cl) > CLOSE_DEADLINE_MS)
            hang("the connection is not closed");
    }
    /* What a silent client did not read is still there, then the end. */
    cl.reading = 1;
    drain(&cl);
    if (!cl.closed)
        hang("the server's end is open");
    close(cl.fd);
    fan__srv()->stopping = 0; /* as fan_run() leaves it */

    /* Answers cut short are expected when the client hangs up early (a
     * half-close ends a connection with a response still queued) or stops
     * reading (the write timeout). */
    if (!hang_up && !silent && !resp_failed && !answers_lost) {
        llhttp_errno_t err = llhttp_finish(&resp_parser);
        if (err != HPE_OK) {
            fprintf(stderr, "fuzz_request: the server's output ends inside a response: %s\n",
                    llhttp_errno_name(err));
            resp_failed = 1;
        }
    }
    if (resp_failed)
        abort();
    return 0;
}
