/* The server layer, internal to libfanout: fan_run() (run.c), fan_main()
 * (main.c) and the master process of --workers N (master.c). */
#ifndef FAN_SERVER_H
#define FAN_SERVER_H

#include "app/app.h"
#include "http/http.h"

/* Serves `app` (and `admin`, the admin listener's app, unless NULL: each
 * worker writes the metrics to its own lane of the region fan__admin_prepare()
 * mapped) on its address with a master process and `workers` (>= 1)
 * worker processes, as fan_main() describes. Returns in the master once every
 * worker exited, with the process exit status (0 after a clean stop, 1 when
 * the server could not start or a worker did not stop cleanly), and in each
 * worker once its fan_run() returned, with the worker's exit status. */
int fan__serve_workers(fan_app *app, fan_app *admin, int workers);

/* Opens `n` listening sockets on host:*port (host numeric IPv4 or IPv6), all
 * with SO_REUSEADDR and SO_REUSEPORT, into fds; when *port is 0 the first
 * picks a free port and *port is set to it. Returns 0, or FAN_EADDRINUSE,
 * FAN_EINVAL or FAN_EIO with a log line, and then no socket is left open. */
int fan__reuseport_listen(const char *host, int *port, int n, int *fds);

/* Closes every descriptor >= 0 of fds and sets it to -1. */
void fan__close_fds(int *fds, int n);

#endif
