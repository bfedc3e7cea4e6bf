/* Running and stopping a worker's loop. */
#include <signal.h>

#include "client/client.h"
#include "coro/coro.h"
#include "http/http.h"

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    fan_log(FAN_LOG_INFO, "received %s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    fan_stop();
}

void fan_stop(void)
{
    fan__server *srv = fan__srv();
    srv->stopping = 1;
    uv_stop(srv->loop);
}

int fan_run(void)
{
    fan__server *srv = fan__srv();
    signal(SIGPIPE, SIG_IGN);
    uv_signal_init(srv->loop, &srv->sigint);
    uv_signal_init(srv->loop, &srv->sigterm);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&srv->sigint);
    uv_unref((uv_handle_t *)&srv->sigterm);
    srv->running = 1;
    if (!srv->stopping)
        uv_run(srv->loop, UV_RUN_DEFAULT);

    /* Stop: close listeners and connections, which cancels every request and
     * its calls, then let the cancellations and closes complete. */
    fan__http_shutdown();
    while (!fan__http_idle())
        uv_run(srv->loop, UV_RUN_ONCE);
    fan__client_shutdown();
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_run(srv->loop, UV_RUN_DEFAULT);
    fan__coro_pool_clear();
    srv->running = 0;
    srv->stopping = 0;
    return 0;
}
