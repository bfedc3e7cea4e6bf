/* Request-scoped memory and time for handlers and tasks: allocations and
 * formatted strings in the request's arena, freed with it, and the clock. */
#include <stdarg.h>

#include "runtime/runtime.h"

void *fan_alloc(fan_req *rq, size_t size)
{
    return fan__arena_alloc(fan__req_arena(rq), size);
}

char *fan_sprintf(fan_req *rq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = fan__arena_vsprintf(fan__req_arena(rq), fmt, ap);
    va_end(ap);
    return s;
}

double fan_now(void)
{
    return (double)uv_hrtime() / 1e9;
}
