/* The checks of a gateway file's members: their keys, types and ranges,
 * each failure recorded with where it is. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

const char *gw_sub(char *buf, size_t cap, const char *where, const char *key)
{
    snprintf(buf, cap, "%s%s%s", where, *where ? "." : "", key);
    return buf;
}

int gw_check_keys(gw_errs *e, const char *where, json_t *obj, const char *const *allowed,
                  const char *what)
{
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(obj, k, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], k) != 0)
            i++;
        if (!allowed[i]) {
            char buf[1024];
            gw_error(e, gw_sub(buf, sizeof buf, where, k), "unknown key '%s' in a %s", k, what);
            rc = -1;
        }
    }
    return rc;
}

const char *gw_type_name(json_t *v)
{
    const char *const names[] = {"an object", "an array", "a string", "an integer",
                                 "a number",  "true",     "false",    "null"};
    return names[json_typeof(v)];
}

/* A string member; `def` when absent. Returns -1 after an error. */
int gw_get_str(gw_errs *e, const char *where, json_t *o, const char *key, int required,
               const char *def, const char **out)
{
    char buf[1024];
    json_t *v = json_object_get(o, key);
    *out = def;
    if (!v) {
        if (required)
            gw_error(e, where, "'%s' is required", key);
        return required ? -1 : 0;
    }
    if (!json_is_string(v)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, key), "'%s' must be a string, not %s", key,
                 gw_type_name(v));
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int gw_get_uint(gw_errs *e, const char *where, json_t *o, const char *key, long min, long max,
                unsigned *out)
{
    char buf[1024];
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        gw_error(e, gw_sub(buf, sizeof buf, where, key),
                 "'%s' must be a whole number from %ld to %ld, not %s", key, min, max,
                 json_is_integer(v) ? "that" : gw_type_name(v));
        return -1;
    }
    *out = (unsigned)json_integer_value(v);
    return 0;
}

int gw_get_bool(gw_errs *e, const char *where, json_t *o, const char *key, int *out)
{
    char buf[1024];
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, key), "'%s' must be true or false, not %s", key,
                 gw_type_name(v));
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

int gw_is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

/* A member that is a JSON path (for extract); `star` allows one [*]. */
int gw_get_path(gw_errs *e, gw_pool *pool, const char *where, json_t *v, gw_path *out)
{
    if (!json_is_string(v) || gw_path_parse(pool, json_string_value(v), out, 0) != 0 ||
        out->n == 0) {
        gw_error(e, where, "expected a JSON path such as \"data.items[0].id\", not %s",
                 json_is_string(v) ? json_string_value(v) : gw_type_name(v));
        return -1;
    }
    return 0;
}

/* An array of paths (select, remove). */
int gw_get_paths(gw_errs *e, gw_pool *pool, const char *where, json_t *o, const char *key,
                 gw_path **out, size_t *n)
{
    char buf[1024], item[1100];
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_array(v)) {
        gw_error(e, gw_sub(buf, sizeof buf, where, key),
                 "'%s' must be an array of JSON paths, not %s", key, gw_type_name(v));
        return -1;
    }
    *n = json_array_size(v);
    *out = gw_alloc(pool, (*n + 1) * sizeof **out);
    int rc = 0;
    size_t i;
    json_t *p;
    json_array_foreach(v, i, p)
    {
        snprintf(item, sizeof item, "%s.%s[%zu]", where, key, i);
        if (gw_get_path(e, pool, item, p, &(*out)[i]) != 0)
            rc = -1;
    }
    return rc;
}
