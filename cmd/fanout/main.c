/* fanout: the command-line program. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: fanout COMMAND [options]\n\n"
                 "commands:\n"
                 "  demo    the seed's example: two concurrent upstream calls (2 s and 1 s)\n"
                 "          answered in about 2 s, with built-in mock upstreams\n"
                 "  mock    a mock upstream API: GET /delay?ms=N answers {\"value\": <float>}\n"
                 "  serve   a gateway: the endpoints of a JSON file, each a graph of upstream\n"
                 "          calls (docs/gateway.md)\n"
                 "  check   validate a gateway file and print its plan\n"
                 "  version print the version\n\n"
                 "`fanout COMMAND --help` lists a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "demo") == 0)
        return cmd_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "mock") == 0)
        return cmd_mock(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("fanout %s\n", FAN_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "fanout: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
