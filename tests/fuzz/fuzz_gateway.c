/* The gateway's file loading and its JSON check on arbitrary input.
 *
 * The input is loaded as a gateway file (from a memfd, as fuzz_config does)
 * and, when it loads, its plan is made; every error must be a message, never
 * a crash or a leak. The same bytes are checked by gw_json_valid() and parsed
 * by jansson as an upstream body would be (fan_call_json(): flags 0): the
 * two must agree, but for numbers jansson cannot hold (a real that
 * overflows, an integer beyond 64 bits), which the check lets through, and
 * a NUL byte outside strings, which jansson lets through after a literal. */
#define _GNU_SOURCE
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../cmd/fanout/gateway/gateway.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

static void differential(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *j = json_loadb((const char *)data, size, 0, &err);
    int valid = gw_json_valid((const char *)data, size);
    if (!j && valid && (strstr(err.text, "too big") || strstr(err.text, "overflow")))
        return;
    /* jansson's lexer lets a NUL byte after a literal pass ("[1\0]" loads);
     * the check refuses it, as RFC 8259 does. */
    if (j && !valid && memchr(data, 0, size)) {
        json_decref(j);
        return;
    }
    if (!!j != valid) {
        fprintf(stderr, "gw_json_valid says %d, jansson %s\n", valid, j ? "ok" : err.text);
        abort();
    }
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        fd = memfd_create("fuzz_gateway", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        fan_log_set_level(FAN_LOG_ERROR);
    }
    differential(data, size);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    json_t *errs = json_array();
    gw *g = gw_load(path, errs);
    if (g) {
        assert(json_array_size(errs) == 0);
        json_t *plan = gw_plan_json(g);
        char *s = json_dumps(plan, 0);
        free(s);
        json_decref(plan);
        gw_free(g);
    } else {
        assert(json_array_size(errs) > 0);
    }
    json_decref(errs);
    return 0;
}
