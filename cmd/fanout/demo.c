/* fanout demo: the seed's example in one command. It starts the mock
 * upstream on a free local port in the same process (same loop), points the
 * seed app's two APIs at it and serves the seed app. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../examples/seed.h"
#include "cli.h"

static void demo_usage(void)
{
    printf("usage: fanout demo [options]\n\n"
           "Serves the seed's view on / : it calls API A (2000 ms) and API B (1000 ms)\n"
           "concurrently and answers 'Result: X.XX; Processing time: 2.00' (or JSON with\n"
           "?format=json). Both APIs are a built-in mock unless given.\n\n"
           "  --api-a URL, --api-b URL   the two upstream base URLs (default: built-in mock)\n"
           "  --delay-a MS, --delay-b MS their simulated work (2000, 1000)\n");
    fan_print_options(stdout);
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
        if (!cli_flag(opts[k].flag, argc, argv, argi, &v))
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

/* Starts the built-in mock on a free loopback port for the APIs not given. */
static int start_mock(fan_app *app, fan_app *mock)
{
    if (fan_app_get(app, "api_a") && fan_app_get(app, "api_b"))
        return 0;
    int port;
    char url[64];
    if (fan_listen(mock, "127.0.0.1", 0, &port) != 0)
        return -1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    fan_log(FAN_LOG_INFO, "mock upstream API on %s", url);
    if (!fan_app_get(app, "api_a") && fan_app_set(app, "api_a", url) != 0)
        return -1;
    if (!fan_app_get(app, "api_b") && fan_app_set(app, "api_b", url) != 0)
        return -1;
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    static mock_opts mopts = {.status = 200};
    fan_app *app = fan_app_new(), *mock = fan_app_new();
    int rc = 0;
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
            got = fan_app_option(app, argc, argv, &i);
        if (got == 0)
            fprintf(stderr, "fanout demo: unknown option '%s' (see --help)\n", argv[i]);
        if (got <= 0) /* a configuration that cannot be used is not a usage error */
            rc = got < 0 && fan_app_config_error(app) ? 1 : 2;
    }
    if (rc == 0 && fan_app_config_error(app))
        rc = 1; /* e.g. a bad FANOUT_* variable, logged when it was read */
    if (rc == 0 && (start_mock(app, mock) != 0 || fan_app_listen(app, NULL) != 0))
        rc = 1;
    if (rc == 0)
        rc = fan_run() == 0 ? 0 : 1;
    fan_app_free(app);
    fan_app_free(mock);
    return rc;
}
