/* Running and stopping a worker's loop: SIGTERM/SIGINT drain it gracefully,
 * SIGQUIT stops it at once, SIGUSR1 reopens the log files. */
#include <pthread.h>
#include <signal.h>

#include "client/client.h"
#include "redis/redis.h"
#include "coro/coro.h"
#include "http/http.h"
#include "server/otlp.h"

/* What fan_run() needs beyond the server state, per thread. */
typedef struct run_state {
    uv_signal_t sigquit;
    uv_signal_t sigusr1; /* log rotation: reopen the log files */
    uv_timer_t grace;
    int halt;          /* SIGQUIT: cancel everything now */
    int grace_expired; /* the graceful timeout passed */
} run_state;

static _Thread_local run_state run;

static const char *signal_name(int signum)
{
    return signum == SIGINT ? "SIGINT" : signum == SIGTERM ? "SIGTERM" : "SIGQUIT";
}

static void on_signal(uv_signal_t *s, int signum)
{
    fan__server *srv = fan__srv();
    (void)s;
    if (signum == SIGUSR1) {
        fan_log_reopen();
        fan_log(FAN_LOG_INFO, "received SIGUSR1: log files reopened");
    } else if (signum == SIGQUIT) {
        fan_log(FAN_LOG_INFO, "received SIGQUIT: stopping at once");
        run.halt = 1;
        srv->stopping = 1;
        uv_stop(srv->loop);
    } else if (!srv->stopping) {
        fan_log(FAN_LOG_INFO, "received %s: finishing the requests in progress, then stopping",
                signal_name(signum));
        fan_stop();
    } else {
        fan_log(FAN_LOG_INFO, "received %s: already stopping (SIGQUIT stops at once)",
                signal_name(signum));
    }
}

void fan_stop(void)
{
    fan__server *srv = fan__srv();
    srv->stopping = 1;
    uv_stop(srv->loop);
}

static void watch_signals(fan__server *srv)
{
    uv_signal_t *handles[] = {&srv->sigint, &srv->sigterm, &run.sigquit, &run.sigusr1};
    const int signums[] = {SIGINT, SIGTERM, SIGQUIT, SIGUSR1};
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < 4; i++) {
        uv_signal_init(srv->loop, handles[i]);
        uv_signal_start(handles[i], on_signal, signums[i]);
        uv_unref((uv_handle_t *)handles[i]);
        sigaddset(&set, signums[i]);
    }
    /* A worker is forked with these blocked, so that one sent before the
     * watchers existed is pending, not lost (src/server/master.c). */
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static void grace_expired(uv_timer_t *t)
{
    (void)t;
    run.grace_expired = 1;
}

/* The graceful part of a stop: no new connection, idle ones closed, and the
 * loop runs until the requests in progress ended or the graceful timeout
 * passed or SIGQUIT came. */
static void drain(fan__server *srv)
{
    unsigned ms = fan__http_graceful_ms(); /* from the listeners' apps: before closing them */
    fan__http_stop_accepting();
    fan__http_close_idle();
    fan__flight_cancel_all(0); /* background refreshes do not hold a stop */
    if (fan__http_idle())
        return;
    fan_log(FAN_LOG_INFO,
            "stopping: %zu requests in progress, %zu connections open (waiting %u s at most)",
            fan__live_requests(), srv->nconns, ms / 1000);
    run.grace_expired = 0;
    uv_timer_init(srv->loop, &run.grace);
    uv_timer_start(&run.grace, grace_expired, ms, 0);
    while (!fan__http_idle() && !run.halt && !run.grace_expired)
        uv_run(srv->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&run.grace, NULL);
    if (run.grace_expired)
        fan_log(FAN_LOG_WARN, "graceful timeout passed: cancelling %zu requests still running",
                fan__live_requests());
}

int fan_run(void)
{
    fan__server *srv = fan__srv();
    signal(SIGPIPE, SIG_IGN);
    fan__trace_seed();
    fan__otlp_start();
    watch_signals(srv);
    srv->running = 1;
    if (!srv->stopping && !run.halt)
        uv_run(srv->loop, UV_RUN_DEFAULT);
    if (!run.halt)
        drain(srv);
    fan__otlp_stop();

    /* Close what is left (everything after SIGQUIT or the graceful timeout),
     * which cancels every request and its calls, then let the cancellations
     * and closes complete. */
    fan__http_shutdown();
    fan__flight_cancel_all(1); /* and the shared exchanges of the requests left */
    /* Everything left ends through callbacks; a loop with nothing left to
     * wait for but requests not freed is a leak, reported rather than spun
     * on forever. */
    while (!fan__http_idle()) {
        if (uv_run(srv->loop, UV_RUN_ONCE) == 0 && !fan__http_idle()) {
            fan_log(FAN_LOG_ERROR, "stopping with %zu requests that could not be freed",
                    fan__live_requests());
            break;
        }
    }
    fan__client_shutdown();
    fan__redis_shutdown();
    fan__timeouts_shutdown();
    /* Closing the watchers gives the signals their default action back,
     * which is to terminate: one more SIGTERM (a supervisor's retry) or a
     * log rotation after fan_run() would kill a process that is stopping
     * cleanly. Blocked first, they stay pending and harmless; the next
     * fan_run() unblocks them again. */
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGQUIT);
    sigaddset(&handled, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &handled, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&run.sigquit, NULL);
    uv_close((uv_handle_t *)&run.sigusr1, NULL);
    uv_run(srv->loop, UV_RUN_DEFAULT);
    fan__otlp_free();
    fan__coro_pool_clear();
    srv->running = 0;
    srv->stopping = 0;
    run.halt = 0;
    return 0;
}
