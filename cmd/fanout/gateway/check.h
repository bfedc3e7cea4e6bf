/* The member checks config.c and backend.c share (check.c). Each records an
 * error under `where` and returns -1 when the member is wrong, 0 when it is
 * right or absent (leaving *out at its default). */
#ifndef FANOUT_GATEWAY_CHECK_H
#define FANOUT_GATEWAY_CHECK_H

#include "gateway.h"

/* "where.key" into buf. */
const char *gw_sub(char *buf, size_t cap, const char *where, const char *key);
int gw_check_keys(gw_errs *e, const char *where, json_t *obj, const char *const *allowed,
                  const char *what);
const char *gw_type_name(json_t *v);
int gw_get_str(gw_errs *e, const char *where, json_t *o, const char *key, int required,
               const char *def, const char **out);
int gw_get_uint(gw_errs *e, const char *where, json_t *o, const char *key, long min, long max,
                unsigned *out);
int gw_get_bool(gw_errs *e, const char *where, json_t *o, const char *key, int *out);
int gw_is_token(const char *s);
int gw_get_path(gw_errs *e, gw_pool *pool, const char *where, json_t *v, gw_path *out);
int gw_get_paths(gw_errs *e, gw_pool *pool, const char *where, json_t *o, const char *key,
                 gw_path **out, size_t *n);

#endif
