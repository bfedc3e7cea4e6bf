/* Helpers the subcommands share for their own options. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int cli_number(const char *flag, const char *s, long min, long max, long *out)
{
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || v < min || v > max) {
        fprintf(stderr, "fanout: %s expects a whole number from %ld to %ld, got '%s'\n", flag, min,
                max, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}
