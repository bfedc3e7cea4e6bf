/* The per-worker state that the server and the client share: the loop of
 * this thread, and the count of its requests not released yet. */
#include <stdlib.h>

#include "runtime/runtime.h"

static _Thread_local uv_loop_t *loop;
static _Thread_local size_t live_requests;

uv_loop_t *fan__loop(void)
{
    if (!loop)
        loop = uv_default_loop();
    return loop;
}

int fan__loop_exists(void)
{
    return loop != NULL;
}

size_t fan__live_requests(void)
{
    return live_requests;
}

void fan__worker_request_born(void)
{
    live_requests++;
}

void fan__worker_request_gone(void)
{
    live_requests--;
}

void fan__free_handle_data(uv_handle_t *h)
{
    free(h->data);
}
