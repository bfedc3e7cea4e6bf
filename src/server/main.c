/* fan_main(): a program's whole command line and serving, with --workers N
 * worker processes under a master (master.c) or one process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/app.h"
#include "core/log.h"
#include "server/admin.h"
#include "server/otlp.h"
#include "server/server.h"

#define WORKERS_MAX 1024

/* The number of online CPUs: the default of --workers. */
static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : (int)n;
}

int fan_main_option(fan_app *app, int argc, char **argv, int *argi, int *workers)
{
    const char *value;
    unsigned long long v;
    if (!fan_flag("--workers", argc, argv, argi, &value))
        return fan_app_option(app, argc, argv, argi);
    if (fan__parse_number("--workers", value, WORKERS_MAX, &v))
        return FAN_EINVAL;
    *workers = (int)v;
    return 1;
}

void fan_print_main_options(FILE *out)
{
    fprintf(out, "  --workers N              worker processes under a master (default: one\n"
                 "                           per CPU); 0 serves in this process, no master\n");
    fan_print_options(out);
}

int fan_serve(fan_app *app, int workers)
{
    if (fan_app_config_error(app))
        return 1; /* e.g. a bad FANOUT_* variable, logged when it was read */
    if (fan__app_check_upstreams(app) != 0)
        return 1;
    if (workers < 0)
        workers = online_cpus();
    if (app->otlp_endpoint &&
        fan__otlp_configure(app->otlp_endpoint,
                            app->otlp_max_queued ? app->otlp_max_queued : 2048) != 0)
        return 1;
    int failed;
    /* Lanes for two generations of each slot (a reload runs both). */
    fan_app *admin = fan__admin_prepare(app, workers > 0 ? 2 * (unsigned)workers : 1, &failed);
    if (failed)
        return 1;
    if (!admin) /* nobody could read the metrics: do not count them */
        app->site.obs &= ~FAN_OBSERVE_METRICS;
    int rc;
    if (workers > 0) {
        rc = fan__serve_workers(app, admin, workers);
    } else {
        rc = fan_app_listen(app, NULL) != 0 ? 1 : 0;
        int port = 0;
        if (rc == 0 && admin) {
            const fan__site *s = fan__site_of(admin);
            rc = fan_app_listen_on(admin, s->host, s->port, &port) != 0;
            if (rc == 0)
                fan__log_notice("admin listener on http://%s:%d (/metrics, /waterfall)", s->host,
                                port);
        }
        if (rc == 0)
            rc = fan_run() == 0 ? 0 : 1;
    }
    fan__admin_free();
    return rc;
}

int fan_main(fan_app *app, int argc, char **argv)
{
    int workers = -1; /* not given: one per CPU */
    for (int i = 1; i < argc;) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s [options]\n\n", argv[0]);
            fan_print_main_options(stdout);
            return 0;
        }
        int rc = fan_main_option(app, argc, argv, &i, &workers);
        if (rc == 0) {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", argv[0], argv[i]);
            return 2;
        }
        if (rc < 0) /* a configuration that cannot be used is not a usage error */
            return fan_app_config_error(app) ? 1 : 2;
    }
    if (fan__app_check_upstreams(app) != 0) /* --client-cert and --client-key together */
        return 2;
    return fan_serve(app, workers);
}
