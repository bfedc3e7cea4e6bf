/* URL decoding, query lookup and routing on arbitrary input.
 *
 * The input is used three ways: as a string to decode in place (both '+'
 * modes), as a raw query string searched for a fixed set of names, and as a
 * raw path (plus a method picked by its first byte) matched against a router
 * whose routes cover literals, parameters, wildcards and 405s. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/url.h"
#include "fanout.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fan__router *router;

/* Handlers are only compared, never called: any distinct addresses do. */
static char h_root, h_user, h_file, h_post, h_any, h_deep;

static fan__router *make_router(void)
{
    static const struct {
        const char *method, *pattern;
        void *handler;
    } routes[] = {
        {"GET", "/", &h_root},
        {"GET", "/users/:id", &h_user},
        {"POST", "/users/:id", &h_post},
        {"GET", "/users/me", &h_user},
        {"GET", "/files/*", &h_file},
        {"*", "/any/:a/:b", &h_any},
        {"GET", "/a/b/c/d/e/f/g/h/:x/*", &h_deep},
    };
    fan__router *r = fan__router_new();
    if (!r)
        abort();
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (fan__router_add(r, routes[i].method, routes[i].pattern, routes[i].handler) != 0)
            abort();
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"a", "b", "q", "x y", "", "name", "%", "a=b"};
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"};
    if (!router)
        router = make_router(); /* kept for the process: built once */

    /* fan__url_decode on an exact-size copy (plus the NUL it writes), so
     * ASan sees any read or write past the input. */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    for (int plus = 0; plus < 2; plus++) {
        memcpy(s, data, size);
        long n = fan__url_decode(s, size, plus);
        if (n > (long)size)
            abort(); /* decoding never grows */
        if (n >= 0 && s[n] != '\0')
            abort();
    }

    /* The library sees NUL-terminated strings: cut the input at its first
     * NUL, as a parser would never hand one over. */
    memcpy(s, data, size);
    s[size] = '\0';

    fan__arena a;
    fan__arena_init(&a);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *v = fan__query_get(&a, s, names[i]);
        if (v)
            (void)strlen(v); /* must be a whole string in the arena */
    }

    fan__route_match m;
    const char *method = size ? methods[data[0] % (sizeof methods / sizeof methods[0])] : "GET";
    int rc = fan__router_match(router, method, s, &m, &a);
    if (rc == 0) {
        if (m.status != 200 && m.status != 404 && m.status != 405)
            abort();
        if (m.status == 200 && !m.handler)
            abort();
        if (m.nparams > FAN__MAX_PARAMS)
            abort();
        for (unsigned i = 0; i < m.nparams; i++)
            (void)(strlen(m.names[i]) + strlen(m.values[i]));
        if (m.status == 405)
            (void)strlen(m.allow);
    }
    fan__arena_free(&a);
    free(s);
    return 0;
}
