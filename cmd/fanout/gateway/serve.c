/* `fanout serve` and `fanout check`: the gateway's two commands. serve runs
 * the gateway file's endpoints as fan_main() runs an app (the same flags,
 * workers and signals); SIGHUP loads the file again and keeps the running
 * configuration when the new one is broken. check validates a file and
 * prints its plan. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../cli.h"
#include "gateway.h"

/* The coroutine stack of a gateway request unless --stack-size says
 * otherwise: every backend's body is parsed and written again by jansson,
 * whose parser and dumper recurse once per level of nesting up to its limit
 * of 2048, and writing a body that deep takes more than 512 KiB (the
 * library's default of 64 KiB holds some 500 levels). Only the pages a
 * request touches are resident. */
#define GW_STACK_SIZE (1u << 20)

static void print_errors(json_t *errs)
{
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e) fprintf(stderr, "%s\n", json_string_value(e));
}

static gw *load(const char *file, int for_reload)
{
    json_t *errs = json_array();
    gw *g = gw_load(file, errs);
    if (!g && for_reload) {
        size_t i;
        json_t *e;
        json_array_foreach(errs, i, e) fan_log(FAN_LOG_ERROR, "gateway: %s", json_string_value(e));
    } else if (!g) {
        print_errors(errs);
        fprintf(stderr, "fanout: %s: %zu error%s\n", file, json_array_size(errs),
                json_array_size(errs) == 1 ? "" : "s");
    }
    json_decref(errs);
    return g;
}

/* The origins a gateway file set a breaker on, each with the options the
 * command line (--origin) gave it before: a reload that drops the breaker
 * gives them back. */
static struct based {
    char *origin;
    fan_origin_opts opts;
} *based;
static size_t nbased;

static const fan_origin_opts *base_of(const fan_app *app, const char *origin)
{
    for (size_t i = 0; i < nbased; i++)
        if (strcmp(based[i].origin, origin) == 0)
            return &based[i].opts;
    struct based *more = realloc(based, (nbased + 1) * sizeof *based);
    if (!more)
        return NULL;
    based = more;
    if (!(based[nbased].origin = strdup(origin)))
        return NULL;
    fan_app_get_origin(app, origin, &based[nbased].opts);
    return &based[nbased++].opts;
}

static void free_based(void)
{
    for (size_t i = 0; i < nbased; i++)
        free(based[i].origin);
    free(based);
    based = NULL;
    nbased = 0;
}

int gw_breakers_apply(fan_app *app, const gw *g)
{
    for (size_t i = 0; i < nbased; i++) {
        size_t k = 0;
        while (k < g->nbreakers && strcmp(g->breakers[k]->origin, based[i].origin) != 0)
            k++;
        if (k == g->nbreakers && fan_app_set_origin(app, based[i].origin, &based[i].opts) != 0)
            return -1;
    }
    for (size_t k = 0; k < g->nbreakers; k++) {
        const gw_breaker *br = g->breakers[k];
        const fan_origin_opts *base = base_of(app, br->origin);
        if (!base) {
            fan_log(FAN_LOG_ERROR, "gateway: the breaker of %s: out of memory", br->origin);
            return -1;
        }
        fan_origin_opts o = *base;
        if (base->breaker_failures || base->breaker_error_percent)
            fan_log(FAN_LOG_INFO, "gateway: the breaker of %s is the file's (%s), not --origin's",
                    br->origin, br->where);
        o.breaker_failures = br->failures;
        o.breaker_error_percent = br->error_percent;
        o.breaker_window_ms = br->window_ms;
        o.breaker_min_calls = br->min_calls;
        o.breaker_cooldown_ms = br->cooldown_ms;
        if (fan_app_set_origin(app, br->origin, &o) != 0)
            return -1;
    }
    return 0;
}

static int reload(fan_app *app, void *arg)
{
    const char *file = arg;
    gw *g = load(file, 1);
    gw *old = fan_app_data(app);
    if (g && gw_breakers_apply(app, g) != 0) {
        gw_breakers_apply(app, old); /* as they were */
        gw_free(g);
        g = NULL;
    }
    if (!g) {
        fan_log(FAN_LOG_ERROR, "gateway: %s is not reloaded: the running configuration stays",
                file);
        return -1;
    }
    fan_app_set_data(app, g);
    gw_release(old, 1); /* freed now, or when the last request on it ends */
    fan_log(FAN_LOG_INFO, "gateway: %s reloaded: %zu endpoint%s", file, g->n, g->n == 1 ? "" : "s");
    return 0;
}

/* --workers 0 has no master to reload: this process reloads on SIGHUP
 * itself, between requests, which finish on the configuration they began
 * with. The watcher does not keep the loop alive (fan_run() stops as ever). */
static struct {
    uv_signal_t hup;
    fan_app *app;
    const char *file;
} single;

static void on_hup(uv_signal_t *h, int signum)
{
    fan_log(FAN_LOG_INFO, "received SIGHUP: reloading %s", single.file);
    reload(single.app, (void *)single.file);
}

static int watch_hup(fan_app *app, const char *file)
{
    single.app = app;
    single.file = file;
    if (uv_signal_init(fan_loop(), &single.hup) != 0 ||
        uv_signal_start(&single.hup, on_hup, SIGHUP) != 0)
        return -1;
    uv_unref((uv_handle_t *)&single.hup);
    return 0;
}

static void serve_usage(void)
{
    printf("usage: fanout serve [--config] GATEWAY.json [options]\n\n"
           "Serves the endpoints of a gateway file (docs/gateway.md): each a graph of\n"
           "upstream calls started as soon as their inputs are there, answered as one\n"
           "JSON object. SIGHUP reloads the file; a broken one is logged and the running\n"
           "configuration stays. `fanout check GATEWAY.json` validates a file.\n\n");
    fan_print_main_options(stdout);
}

/* The file named as --config FILE or as the first bare argument. */
static int file_arg(int argc, char **argv, int *i, const char **file)
{
    const char *v;
    if (fan_flag("--config", argc, argv, i, &v)) {
        if (!v || *file) {
            fprintf(stderr, "fanout: %s\n", v ? "one gateway file only" : "--config needs a file");
            return -1;
        }
        *file = v;
        return 1;
    }
    if (argv[*i][0] != '-') {
        if (*file) {
            fprintf(stderr, "fanout: one gateway file only ('%s' and '%s')\n", *file, argv[*i]);
            return -1;
        }
        *file = argv[(*i)++];
        return 1;
    }
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    fan_app_limits(app)->stack_size = GW_STACK_SIZE; /* before the options, which may change it */
    const char *file = NULL;
    int rc = 0, workers = -1;
    for (int i = 1; i < argc && rc == 0;) {
        if (strcmp(argv[i], "--help") == 0) {
            serve_usage();
            fan_app_free(app);
            return 0;
        }
        int got = file_arg(argc, argv, &i, &file);
        if (got == 0)
            got = fan_main_option(app, argc, argv, &i, &workers);
        if (got == 0)
            fprintf(stderr, "fanout serve: unknown option '%s' (see --help)\n", argv[i]);
        if (got <= 0)
            rc = got < 0 && fan_app_config_error(app) ? 1 : 2;
    }
    if (rc == 0 && !file) {
        fprintf(stderr, "fanout serve: name the gateway file (see --help)\n");
        rc = 2;
    }
    gw *g = rc == 0 ? load(file, 0) : NULL;
    if (rc == 0 && !g)
        rc = 1;
    if (rc == 0) {
        fan_app_set_data(app, g);
        if (gw_breakers_apply(app, g) != 0)
            rc = 1;
        fan_app_on_reload(app, reload, (void *)file);
        if (rc != 0 || fan_app_route(app, "*", "/*", gw_handler) != 0 ||
            fan_app_route(app, "*", "/", gw_handler) != 0 || (workers == 0 && watch_hup(app, file)))
            rc = 1;
    }
    if (rc == 0)
        rc = fan_serve(app, workers); /* returns in the master and in each worker */
    if (workers == 0 && single.app)
        uv_signal_stop(&single.hup);
    gw_release(fan_app_data(app), 1);
    fan_app_free(app);
    free_based();
    return rc;
}

int cmd_check(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: fanout check GATEWAY.json\n\n"
               "Validates a gateway file and prints its plan as JSON: each endpoint's\n"
               "backends, what each depends on, and the stages of the graph. Errors name\n"
               "the file, line and column; the exit status is 1 when there is one.\n");
        return argc == 2 ? 0 : 2;
    }
    gw *g = load(argv[1], 0);
    if (!g)
        return 1;
    json_t *plan = gw_plan_json(g);
    char *text = json_dumps(plan, JSON_INDENT(2));
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(plan);
    gw_free(g);
    return 0;
}
