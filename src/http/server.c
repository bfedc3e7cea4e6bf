/* Listeners and the per-thread server state. */
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static _Thread_local fan__server server;

fan__server *fan__srv(void)
{
    fan__server *srv = &server;
    if (!srv->loop) {
        srv->loop = uv_default_loop();
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
    fan__conn_accept(l);
}

static void listener_closed(uv_handle_t *h)
{
    fan__listener *l = h->data;
    l->app->nlisteners--;
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

int fan_listen(fan_app *app, const char *host, int port, int *bound_port)
{
    fan__server *srv = fan__srv();
    struct sockaddr_storage addr;
    if (port < 0 || port > 65535)
        return FAN_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)
        return FAN_EINVAL;
    fan__listener *l = calloc(1, sizeof *l);
    if (!l)
        return FAN_ENOMEM;
    l->app = app;
    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    app->nlisteners++;
    int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc != 0) {
        fan_log(FAN_LOG_ERROR, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
        uv_run(srv->loop, UV_RUN_NOWAIT); /* let the close complete */
        return map_uv_error(rc);
    }
    if (bound_port) {
        struct sockaddr_storage name;
        int len = sizeof name;
        uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&name, &len);
        *bound_port = ntohs(name.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&name)->sin6_port
                                                       : ((struct sockaddr_in *)&name)->sin_port);
    }
    fan__list_push(&srv->listeners, &l->link);
    return 0;
}

void fan__http_shutdown(void)
{
    fan__server *srv = fan__srv();
    srv->stopping = 1;
    while (!fan__list_empty(&srv->listeners)) {
        fan__listener *l = fan__container_of(srv->listeners.next, fan__listener, link);
        fan__list_remove(&l->link);
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
    }
    while (!fan__list_empty(&srv->conns)) {
        fan__conn *c = fan__container_of(srv->conns.next, fan__conn, link);
        fan__conn_close(c); /* unlinks it */
    }
}

int fan__http_idle(void)
{
    fan__server *srv = fan__srv();
    return srv->nreqs == 0 && srv->nconns == 0;
}
