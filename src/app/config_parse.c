/* Reading configuration values: the JSON file (flattened to dotted keys and
 * checked against the declarations), environment overrides and the text of
 * defaults and settings. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/app.h"

#define MAX_FILE_BYTES (16u << 20)

static const char *expected_name(fan_config_type type)
{
    static const char *const names[] = {"string", "integer", "number", "boolean",
                                        "array of strings"};
    return names[type];
}

static const char *found_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

json_t *fan__config_coerce(fan_config_type type, json_t *v, char *why, size_t whylen)
{
    int ok;
    switch (type) {
    case FAN_CONFIG_STRING: ok = json_is_string(v); break;
    case FAN_CONFIG_INT: ok = json_is_integer(v); break;
    case FAN_CONFIG_DOUBLE:
        if (json_is_integer(v))
            return json_real((double)json_integer_value(v));
        ok = json_is_real(v);
        break;
    case FAN_CONFIG_BOOL: ok = json_is_boolean(v); break;
    default: {
        size_t i;
        json_t *item;
        ok = json_is_array(v);
        json_array_foreach(v, i, item) {
            if (!json_is_string(item)) {
                snprintf(why, whylen, "expected array of strings, got %s at index %zu",
                         found_name(item), i);
                return NULL;
            }
        }
    }
    }
    if (!ok) {
        snprintf(why, whylen, "expected %s, got %s", expected_name(type), found_name(v));
        return NULL;
    }
    return json_incref(v);
}

static json_t *parse_bool(const char *t)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(t, yes[i]) == 0)
            return json_true();
        if (strcasecmp(t, no[i]) == 0)
            return json_false();
    }
    return NULL;
}

json_t *fan__config_parse_text(fan_config_type type, const char *t, char *why, size_t whylen)
{
    char *end;
    json_t *v = NULL;
    errno = 0;
    switch (type) {
    case FAN_CONFIG_STRING:
        /* jansson refuses text that is not UTF-8: say so, for every caller
         * logs `why` when this returns NULL (found by tests/fuzz). */
        if (!(v = json_string(t)))
            snprintf(why, whylen, "expected %s, got text that is not valid UTF-8",
                     expected_name(type));
        return v;
    case FAN_CONFIG_INT: {
        long long n = strtoll(t, &end, 10);
        if (*t && !isspace((unsigned char)*t) && !*end && !errno)
            v = json_integer(n);
        break;
    }
    case FAN_CONFIG_DOUBLE: {
        double d = strtod(t, &end);
        if (*t && !isspace((unsigned char)*t) && !*end && !errno && isfinite(d))
            v = json_real(d);
        break;
    }
    case FAN_CONFIG_BOOL: v = parse_bool(t); break;
    default:
        if (*t != '[') {
            v = json_pack("[s]", t); /* one string: a list of one */
            if (!v) {
                snprintf(why, whylen, "expected %s, got text that is not valid UTF-8",
                         expected_name(type));
                return NULL;
            }
        } else {
            json_error_t err;
            json_t *a = json_loads(t, 0, &err);
            v = a ? fan__config_coerce(type, a, why, whylen) : NULL;
            json_decref(a);
            if (a && !v)
                return NULL; /* `why` says which item is wrong */
        }
    }
    if (!v)
        snprintf(why, whylen, "expected %s, got '%.64s'", expected_name(type), t);
    return v;
}

char *fan__config_env_name(const char *key)
{
    size_t n = strlen(key);
    char *name = malloc(7 + n + 1);
    if (!name)
        return NULL;
    memcpy(name, "FANOUT_", 7);
    for (size_t i = 0; i < n; i++) {
        char ch = key[i];
        name[7 + i] = ch == '.' || ch == '-' ? '_' : (char)toupper((unsigned char)ch);
    }
    name[7 + n] = '\0';
    return name;
}

int fan__config_read_env(fan__config *cfg, json_t *into, const fan__decl *only)
{
    int rc = 0;
    char why[256];
    for (size_t i = 0; i < cfg->ndecls; i++) {
        const fan__decl *d = only ? only : &cfg->decls[i];
        const char *text = getenv(d->env);
        json_t *v = text ? fan__config_parse_text(d->type, text, why, sizeof why) : NULL;
        if (text && !v) {
            fan__config_fail(cfg, "config: environment variable %s (key '%s'): %s", d->env,
                             d->key, why);
            rc = FAN_EINVAL;
        } else if (v && json_object_set_new(into, d->key, v) != 0) {
            return FAN_ENOMEM;
        }
        if (only)
            break;
    }
    return rc;
}

/* Whether some declared key lies under `prefix` ("api" for "api.url"). */
static int is_section(const fan__config *cfg, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < cfg->ndecls; i++)
        if (strncmp(cfg->decls[i].key, prefix, n) == 0 && cfg->decls[i].key[n] == '.')
            return 1;
    return 0;
}

/* Copies the members of `obj` into `out` under dotted keys, checking each
 * against its declaration. Returns 0, FAN_EINVAL (errors logged) or
 * FAN_ENOMEM. */
static int flatten(fan__config *cfg, const char *path, const char *prefix, json_t *obj,
                   json_t *out)
{
    const char *k;
    json_t *v;
    int rc = 0;
    char why[256];
    json_object_foreach(obj, k, v) {
        size_t n = (prefix ? strlen(prefix) + 1 : 0) + strlen(k) + 1;
        char *full = malloc(n);
        if (!full)
            return FAN_ENOMEM;
        snprintf(full, n, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", k);
        const fan__decl *d = fan__config_decl(cfg, full);
        json_t *typed = d ? fan__config_coerce(d->type, v, why, sizeof why) : NULL;
        if (d && json_object_get(out, full)) {
            fan__config_fail(cfg, "%s: key '%s' is given twice", path, full);
            rc = FAN_EINVAL;
        } else if (d && !typed) {
            fan__config_fail(cfg, "%s: key '%s': %s", path, full, why);
            rc = FAN_EINVAL;
        } else if (typed) {
            if (json_object_set_new(out, full, typed) != 0)
                rc = FAN_ENOMEM;
            typed = NULL;
        } else if (json_is_object(v) && is_section(cfg, full)) {
            int sub = flatten(cfg, path, full, v, out);
            rc = rc ? rc : sub;
        } else {
            fan__config_fail(cfg, "%s: unknown key '%s' (not declared by the application)",
                             path, full);
            rc = FAN_EINVAL;
        }
        json_decref(typed);
        free(full);
        if (rc == FAN_ENOMEM)
            return rc;
    }
    return rc;
}

/* Reads the whole file into `b`. Returns 0, or FAN_EIO after recording why. */
static int slurp(fan__config *cfg, const char *path, fan__buf *b)
{
    FILE *f = fopen(path, "rb");
    int rc = f ? 0 : FAN_EIO;
    int err = errno;
    while (rc == 0 && !feof(f)) {
        if (b->len > MAX_FILE_BYTES || fan__buf_reserve(b, 65536) != 0) {
            rc = FAN_ENOMEM;
            break;
        }
        b->len += fread(b->data + b->len, 1, 65536, f);
        if (ferror(f)) {
            err = errno;
            rc = FAN_EIO;
        }
    }
    if (f)
        fclose(f);
    if (rc == FAN_EIO)
        fan__config_fail(cfg, "config file %s: cannot read it: %s", path, strerror(err));
    else if (rc != 0)
        fan__config_fail(cfg, "config file %s: larger than %u bytes or out of memory", path,
                         MAX_FILE_BYTES);
    return rc ? FAN_EIO : 0;
}

json_t *fan__config_read_file(fan__config *cfg, const char *path, int *rc)
{
    fan__buf text = FAN__BUF_INIT;
    json_error_t err;
    if ((*rc = slurp(cfg, path, &text)) != 0) {
        fan__buf_free(&text);
        return NULL;
    }
    json_t *root = json_loadb(text.data ? text.data : "", text.len, JSON_REJECT_DUPLICATES, &err);
    fan__buf_free(&text);
    if (!root) {
        fan__config_fail(cfg, "%s:%d:%d: JSON syntax error: %s", path, err.line, err.column,
                         err.text);
        *rc = FAN_EINVAL;
        return NULL;
    }
    json_t *flat = json_object();
    *rc = flat ? 0 : FAN_ENOMEM;
    if (flat && !json_is_object(root)) {
        fan__config_fail(cfg, "%s: expected an object at the top level, got %s", path,
                         found_name(root));
        *rc = FAN_EINVAL;
    } else if (flat) {
        *rc = flatten(cfg, path, NULL, root, flat);
    }
    json_decref(root);
    if (*rc != 0) {
        json_decref(flat);
        return NULL;
    }
    return flat;
}
