/* The fanout command's subcommands. */
#ifndef FANOUT_CLI_H
#define FANOUT_CLI_H

#include <fanout.h>

typedef struct mock_opts {
    unsigned delay_ms;   /* default delay when the request names none */
    unsigned jitter_ms;  /* up to this much is added at random */
    int status;          /* default status */
    size_t size;         /* default body size, bytes (padded) */
} mock_opts;

/* Adds the mock upstream's routes to `app`: GET /delay?ms=&status=&size=&jitter=
 * answers {"value": <random float>} after the delay; GET /stats reports its
 * counters. `opts` must outlive the app. */
int mock_routes(fan_app *app, const mock_opts *opts);

/* Parses one mock option (--delay, --jitter, --status, --size). Returns 1 if
 * consumed, 0 if not a mock option, -1 for a bad value. */
int mock_option(mock_opts *opts, int argc, char **argv, int *argi);

/* The subcommands (mock.c, demo.c): return the process exit status. */
int cmd_mock(int argc, char **argv);
int cmd_demo(int argc, char **argv);
/* gateway/serve.c */
int cmd_serve(int argc, char **argv);
int cmd_check(int argc, char **argv);

/* Parses a whole number within [min, max]; prints an error naming `flag`
 * (cli.c). Options themselves are matched with fan_flag(). */
int cli_number(const char *flag, const char *s, long min, long max, long *out);

#endif
