/* fanout demo: the seed's example in one command. It starts the mock
 * upstream on a free loopback port, points the seed app's two APIs at it and
 * serves the seed app as fan_main() does. With --workers 0 the mock shares
 * the server's process and loop. With workers it runs in a process of its
 * own, forked before the master forks the workers, so that every worker
 * (restarted and reloaded ones included) calls the same mock; the master
 * stops it once every worker exited, and it stops by itself if the master
 * dies. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "../../examples/seed.h"
#include "cli.h"

static void demo_usage(void)
{
    printf("usage: fanout demo [options]\n\n"
           "Serves the seed's view on / : it calls API A (2000 ms) and API B (1000 ms)\n"
           "concurrently and answers 'Result: X.XX; Processing time: 2.00' (or JSON with\n"
           "?format=json). With ?stream=ndjson (or ?stream=sse) it streams each API's\n"
           "result the moment its call completes, then a summary (curl -N to watch it).\n"
           "Both APIs are a built-in mock unless given, which runs in\n"
           "the server's process with --workers 0, else in a process of its own beside\n"
           "the master and its workers (SIGTERM to the master stops them all).\n\n"
           "  --api-a URL, --api-b URL   the two upstream base URLs (default: built-in mock)\n"
           "  --delay-a MS, --delay-b MS their simulated work (2000, 1000)\n");
    fan_print_main_options(stdout);
}

/* Options of the demo itself: stored as settings of the seed app. */
static int demo_option(fan_app *app, int argc, char **argv, int *argi)
{
    static const struct {
        const char *flag, *key;
        int is_delay;
    } opts[] = {{"--api-a", "api_a", 0},
                {"--api-b", "api_b", 0},
                {"--delay-a", "delay_a", 1},
                {"--delay-b", "delay_b", 1}};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        const char *v;
        long n;
        if (!fan_flag(opts[k].flag, argc, argv, argi, &v))
            continue;
        if (opts[k].is_delay ? cli_number(opts[k].flag, v, 0, 3600000, &n) != 0 : !v || !*v) {
            if (!opts[k].is_delay)
                fprintf(stderr, "fanout demo: %s expects a URL\n", opts[k].flag);
            return -1;
        }
        return fan_app_set(app, opts[k].key, v) == 0 ? 1 : -1;
    }
    return 0;
}

/* Listens with the mock on a free loopback port, into *port. */
static int listen_mock(fan_app *mock, int *port)
{
    if (fan_app_listen_on(mock, "127.0.0.1", 0, port) != 0)
        return -1;
    fan_log(FAN_LOG_INFO, "mock upstream API on http://127.0.0.1:%d", *port);
    return 0;
}

/* The mock's own process: listens, writes its port to `ready_fd` and serves
 * until SIGTERM, SIGINT or SIGQUIT. Returns its exit status. */
static int mock_process(fan_app *app, fan_app *mock, pid_t parent, int ready_fd)
{
#ifdef __linux__
    /* A master killed outright takes its mock along rather than orphan it. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        return 1;
#endif
    signal(SIGHUP, SIG_IGN); /* reloading is the master's business */
    fan_app_free(app);
    int port, rc = listen_mock(mock, &port);
    if (rc == 0)
        rc = write(ready_fd, &port, sizeof port) == (ssize_t)sizeof port ? 0 : -1;
    close(ready_fd);
    if (rc == 0)
        rc = fan_run();
    fan_app_free(mock);
    return rc == 0 ? 0 : 1;
}

/* Forks the mock's process and waits until it listens. Returns 0 with *port
 * and *pid set, or -1 when it could not start; the child never returns. */
static int fork_mock(fan_app *app, fan_app *mock, int *port, pid_t *pid)
{
    int fds[2];
    if (pipe(fds) != 0) {
        fan_log(FAN_LOG_ERROR, "cannot start the mock upstream: pipe: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    fflush(stdout); /* or the child would write what is buffered again */
    fflush(stderr);
    pid_t child = fork();
    if (child < 0) {
        fan_log(FAN_LOG_ERROR, "cannot start the mock upstream: fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (child == 0) {
        close(fds[0]);
        exit(mock_process(app, mock, parent, fds[1]));
    }
    close(fds[1]);
    ssize_t n;
    while ((n = read(fds[0], port, sizeof *port)) < 0 && errno == EINTR)
        ;
    close(fds[0]);
    if (n != (ssize_t)sizeof *port) { /* it exited, and said why in the log */
        fan_log(FAN_LOG_ERROR, "the mock upstream did not start");
        waitpid(child, NULL, 0);
        return -1;
    }
    *pid = child;
    return 0;
}

/* Starts the built-in mock for the APIs not given: in this process with
 * --workers 0, else in a process of its own (*mock_pid). */
static int start_mock(fan_app *app, fan_app *mock, int workers, pid_t *mock_pid)
{
    if (fan_app_get(app, "api_a") && fan_app_get(app, "api_b"))
        return 0;
    int port;
    if (workers == 0 ? listen_mock(mock, &port) != 0 : fork_mock(app, mock, &port, mock_pid) != 0)
        return -1;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    if (!fan_app_get(app, "api_a") && fan_app_set(app, "api_a", url) != 0)
        return -1;
    if (!fan_app_get(app, "api_b") && fan_app_set(app, "api_b", url) != 0)
        return -1;
    return 0;
}

/* Stops the mock's process, in the master once its workers are gone.
 * Returns 0, or 1 if the mock did not exit cleanly. */
static int stop_mock(pid_t pid)
{
    int st;
    pid_t got = waitpid(pid, &st, WNOHANG);
    if (got == 0) { /* still ours, and running: the pid cannot be reused yet */
        kill(pid, SIGTERM);
        while ((got = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
            ;
    }
    if (got != pid)
        return 0; /* it stopped earlier, and the master reaped it with its workers */
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    fan_log(FAN_LOG_WARN, "the mock upstream (process %ld) did not exit cleanly", (long)pid);
    return 1;
}

int cmd_demo(int argc, char **argv)
{
    static mock_opts mopts = {.status = 200};
    fan_app *app = fan_app_new(), *mock = fan_app_new();
    int rc = 0, workers = -1; /* as fan_main(): one per CPU unless given */
    if (!app || !mock || seed_routes(app) != 0 || mock_routes(mock, &mopts) != 0)
        rc = 1;
    for (int i = 1; i < argc && rc == 0;) {
        if (strcmp(argv[i], "--help") == 0) {
            demo_usage();
            fan_app_free(app);
            fan_app_free(mock);
            return 0;
        }
        int got = demo_option(app, argc, argv, &i);
        if (got == 0)
            got = fan_main_option(app, argc, argv, &i, &workers);
        if (got == 0)
            fprintf(stderr, "fanout demo: unknown option '%s' (see --help)\n", argv[i]);
        if (got <= 0) /* a configuration that cannot be used is not a usage error */
            rc = got < 0 && fan_app_config_error(app) ? 1 : 2;
    }
    if (rc == 0 && fan_app_config_error(app))
        rc = 1; /* e.g. a bad FANOUT_* variable, logged when it was read */
    pid_t self = getpid(), mock_pid = 0;
    if (rc == 0 && start_mock(app, mock, workers, &mock_pid) != 0)
        rc = 1;
    if (rc == 0)
        rc = fan_serve(app, workers); /* returns in the master and in each worker */
    if (mock_pid > 0 && getpid() == self && stop_mock(mock_pid) != 0 && rc == 0)
        rc = 1;
    fan_app_free(app);
    fan_app_free(mock);
    return rc;
}
