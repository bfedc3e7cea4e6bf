/* The seed example's routes, shared with `fanout demo`. */
#ifndef FANOUT_EXAMPLE_SEED_H
#define FANOUT_EXAMPLE_SEED_H

#include <fanout.h>

#define SEED_DEFAULT_API "http://127.0.0.1:8081"

/* Adds the seed's "/" view to `app`. Returns 0 or a FAN_E* code. */
int seed_routes(fan_app *app);

#endif
