/* Configuration parsing on arbitrary input.
 *
 * The input is loaded as a configuration file into a fresh app that declares
 * keys of every type (some in sections, to reach the flattening of nested
 * objects), then parsed as the text of each type, as a setting or an
 * environment variable would be. The file lives in a memfd: the loader opens
 * a path, and /proc/self/fd/N is one without touching the disk. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "app/app.h"
#include "fanout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

static const struct {
    const char *key;
    fan_config_type type;
    const char *def;
} decls[] = {
    {"name", FAN_CONFIG_STRING, "x"},
    {"workers", FAN_CONFIG_INT, "2"},
    {"ratio", FAN_CONFIG_DOUBLE, NULL},
    {"debug", FAN_CONFIG_BOOL, "false"},
    {"hosts", FAN_CONFIG_STRINGS, "[]"},
    {"api.url", FAN_CONFIG_STRING, NULL},
    {"api.retry.max", FAN_CONFIG_INT, NULL},
};

static void load_file(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    fan_app *app = fan_app_new();
    if (!app)
        return;
    for (size_t i = 0; i < sizeof decls / sizeof decls[0]; i++)
        if (fan_app_declare_config(app, decls[i].key, decls[i].type, decls[i].def) != 0)
            abort();
    if (fan_app_load_config(app, path) == 0) {
        for (size_t i = 0; i < sizeof decls / sizeof decls[0]; i++)
            (void)fan_app_get(app, decls[i].key);
        /* A reload reads the same file again through the same path. */
        if (fan_app_reload_config(app) != 0)
            abort();
    } else if (!fan_app_config_error(app)) {
        abort(); /* a failed load always says why */
    }
    fan_app_free(app);
}

static void parse_texts(const uint8_t *data, size_t size)
{
    char *t = malloc(size + 1);
    if (!t)
        return;
    memcpy(t, data, size);
    t[size] = '\0';
    char why[256];
    for (int type = FAN_CONFIG_STRING; type <= FAN_CONFIG_STRINGS; type++) {
        why[0] = '\0';
        json_t *v = fan__config_parse_text((fan_config_type)type, t, why, sizeof why);
        if (!v && !why[0])
            abort(); /* a rejected text always says why */
        json_decref(v);
    }
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        fan_log_set_level((fan_log_level)(FAN_LOG_ERROR + 1)); /* errors are expected */
        fd = memfd_create("fuzz_config", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    load_file(data, size);
    parse_texts(data, size);
    return 0;
}
