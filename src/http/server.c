/* Listeners, the per-thread server state (connections, signals, the Date
 * header), and stopping: gracefully or at once. */
#define _GNU_SOURCE /* accept4() */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"

#define GRACEFUL_DEFAULT_S 30

static _Thread_local fan__server server;

fan__server *fan__srv(void)
{
    fan__server *srv = &server;
    if (!srv->loop) {
        srv->loop = fan__loop();
        fan__list_init(&srv->listeners);
        fan__list_init(&srv->conns);
    }
    return srv;
}

static void on_connection(uv_stream_t *s, int status)
{
    fan__listener *l = s->data;
    if (status < 0) {
        fan_log(FAN_LOG_WARN, "accept failed: %s", uv_strerror(status));
        return;
    }
    fan__conn_accept(l, -1);
}

static void listener_closed(uv_handle_t *h)
{
    fan__listener *l = h->data;
    fan__site_of(l->app)->nlisteners--;
    free(l);
}

static int map_uv_error(int rc)
{
    switch (rc) {
    case UV_EADDRINUSE: return FAN_EADDRINUSE;
    case UV_EINVAL:
    case UV_EADDRNOTAVAIL:
    case UV_EAFNOSUPPORT: return FAN_EINVAL;
    case UV_ENOMEM: return FAN_ENOMEM;
    default: return FAN_EIO;
    }
}

/* A new listener of `app`, its handle initialised (it holds no socket yet). */
static fan__listener *listener_new(fan_app *app)
{
    fan__listener *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->app = app;
    uv_tcp_init(fan__srv()->loop, &l->tcp);
    l->tcp.data = l;
    fan__site_of(app)->nlisteners++;
    return l;
}

/* Listens, or logs why not (`rc` is the error of what came before) and
 * closes the listener. Returns 0 or a FAN_E* code. */
static int listener_start(fan__listener *l, int rc, const char *host, int port)
{
    fan__server *srv = fan__srv();
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, FAN__LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        fan_log(FAN_LOG_ERROR, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
        uv_run(srv->loop, UV_RUN_NOWAIT); /* let the close complete */
        return map_uv_error(rc);
    }
    fan__list_push(&srv->listeners, &l->link);
    return 0;
}

int fan_app_listen_on(fan_app *app, const char *host, int port, int *bound_port)
{
    struct sockaddr_storage addr;
    if (port < 0 || port > 65535)
        return FAN_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)
        return FAN_EINVAL;
    fan__listener *l = listener_new(app);
    if (!l)
        return FAN_ENOMEM;
    int rc = listener_start(l, uv_tcp_bind(&l->tcp, (const struct sockaddr *)&addr, 0), host, port);
    if (rc != 0)
        return rc;
    if (bound_port) {
        struct sockaddr_storage name;
        int len = sizeof name;
        uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&name, &len);
        *bound_port = ntohs(name.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&name)->sin6_port
                                                       : ((struct sockaddr_in *)&name)->sin_port);
    }
    return 0;
}

int fan__listen_fd(fan_app *app, int fd)
{
    fan__listener *l = listener_new(app);
    if (!l) {
        close(fd);
        return FAN_ENOMEM;
    }
    int rc = uv_tcp_open(&l->tcp, fd);
    if (rc != 0)
        close(fd); /* not the handle's */
    return listener_start(l, rc, fan__site_of(app)->host, fan__site_of(app)->port);
}

/* Accepts every connection waiting in the listener's backlog, since closing
 * the last descriptor of a listening socket resets them (with SO_REUSEPORT
 * they were routed to this socket alone). The close follows at once, which
 * leaves the kernel little time to queue another one. */
static void accept_backlog(fan__listener *l)
{
    uv_os_fd_t lfd;
    if (uv_fileno((uv_handle_t *)&l->tcp, &lfd) != 0)
        return;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && errno == EINTR)
            continue;
        if (fd < 0)
            return;
        fan__conn_accept(l, fd);
    }
}

static void close_listeners(int drain_backlog)
{
    fan__server *srv = fan__srv();
    while (!fan__list_empty(&srv->listeners)) {
        fan__listener *l = fan__container_of(srv->listeners.next, fan__listener, link);
        fan__list_remove(&l->link);
        if (drain_backlog)
            accept_backlog(l);
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
    }
}

void fan__http_stop_accepting(void)
{
    fan__srv()->stopping = 1;
    close_listeners(1);
}

void fan__http_close_idle(void)
{
    fan__server *srv = fan__srv();
    fan__list *pos = srv->conns.next;
    while (pos != &srv->conns) {
        fan__list *next = pos->next; /* closing unlinks it */
        fan__conn_close_if_idle(fan__container_of(pos, fan__conn, link));
        pos = next;
    }
}

unsigned fan__graceful_ms(const fan_app *app)
{
    const fan__site *s = fan__site_of_const(app);
    return (s->graceful_timeout_set ? s->graceful_timeout_s : GRACEFUL_DEFAULT_S) * 1000u;
}

unsigned fan__http_graceful_ms(void)
{
    fan__server *srv = fan__srv();
    unsigned ms = 0;
    int set = 0; /* an app without --graceful-timeout does not count */
    for (fan__list *p = srv->listeners.next; p != &srv->listeners; p = p->next) {
        const fan_app *app = fan__container_of(p, fan__listener, link)->app;
        if (fan__site_of_const(app)->graceful_timeout_set && fan__graceful_ms(app) >= ms) {
            ms = fan__graceful_ms(app);
            set = 1;
        }
    }
    return set ? ms : GRACEFUL_DEFAULT_S * 1000u;
}

void fan__http_shutdown(void)
{
    fan__server *srv = fan__srv();
    srv->stopping = 1;
    close_listeners(0);
    while (!fan__list_empty(&srv->conns)) {
        fan__conn *c = fan__container_of(srv->conns.next, fan__conn, link);
        fan__conn_close(c); /* unlinks it */
    }
}

int fan__http_idle(void)
{
    fan__server *srv = fan__srv();
    return fan__live_requests() == 0 && srv->nconns == 0;
}
