/* The admin listener (admin.c): /metrics (metrics.c), /waterfall and
 * /waterfall.json (waterfall.c), on an internal app whose own requests are
 * not observed. Internal to libfanout. */
#ifndef FAN_SERVER_ADMIN_H
#define FAN_SERVER_ADMIN_H

#include "core/buf.h"
#include "runtime/metrics.h"
#include "server/server.h"

/* The admin app of `app`'s settings (app->admin_*), made once: NULL when
 * app->admin_port is 0 or when out of memory (*failed is then set). It maps
 * the shared region of `nlanes` lanes and attaches this process to lane 0.
 * Freed by fan__admin_free(). */
fan_app *fan__admin_prepare(fan_app *app, unsigned nlanes, int *failed);
void fan__admin_free(void);

/* The region the admin app reads (NULL before fan__admin_prepare()). */
fan__metrics_region *fan__admin_region(void);

/* The whole metrics text of `r` into *b (a new buffer the caller frees).
 * Returns 0 or FAN_ENOMEM. */
int fan__metrics_render(fan__metrics_region *r, fan__buf *b);

/* The waterfall page and its JSON (waterfall.c): handlers of the admin app. */
void fan__waterfall_page(fan_req *rq);
void fan__waterfall_json(fan_req *rq);

/* The records of every lane of `r`, copied consistently: `recent` ones
 * newest first, else the slowest of each route (slowest first). Returns
 * the count (at most cap) written to out. */
size_t fan__waterfall_collect(fan__metrics_region *r, int recent, fan__wf_req *out, size_t cap);

#endif
