/* The gateway's file loading on arbitrary input.
 *
 * The input is loaded as a gateway file (from a memfd, as fuzz_config does)
 * and, when it loads, its plan is made; every error must be a message, never
 * a crash or a leak. */
#define _GNU_SOURCE
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../cmd/fanout/gateway/gateway.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        fd = memfd_create("fuzz_gateway", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        fan_log_set_level(FAN_LOG_ERROR);
    }
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
