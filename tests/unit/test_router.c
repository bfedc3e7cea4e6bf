/* The router: literal, parameter and wildcard segments, precedence, 404/405. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "http/router.h"
#include "fanout.h"

static int h1, h2, h3, h4, h5;

static fan__router *make(void)
{
    fan__router *r = fan__router_new();
    assert_non_null(r);
    assert_int_equal(fan__router_add(r, "GET", "/", &h1), 0);
    assert_int_equal(fan__router_add(r, "GET", "/users/:id", &h2), 0);
    assert_int_equal(fan__router_add(r, "GET", "/users/me", &h3), 0);
    assert_int_equal(fan__router_add(r, "POST", "/users/:id", &h4), 0);
    assert_int_equal(fan__router_add(r, "GET", "/files/*", &h5), 0);
    return r;
}

static int match(fan__router *r, const char *method, const char *path, fan__route_match *m)
{
    fan__arena a;
    fan__arena_init(&a);
    int rc = fan__router_match(r, method, path, m, &a);
    /* Values live in the arena: copy what the tests compare before freeing. */
    static char values[FAN__MAX_PARAMS][256], allow[128];
    static const char *names_copy[FAN__MAX_PARAMS], *values_copy[FAN__MAX_PARAMS];
    for (unsigned i = 0; i < m->nparams; i++) {
        strncpy(values[i], m->values[i], sizeof values[i] - 1);
        names_copy[i] = m->names[i];
        values_copy[i] = values[i];
    }
    m->names = names_copy;
    m->values = values_copy;
    if (m->allow) {
        strncpy(allow, m->allow, sizeof allow - 1);
        m->allow = allow;
    }
    fan__arena_free(&a);
    return rc;
}

static void literal_beats_parameter(void **state)
{
    fan__router *r = make();
    fan__route_match m;
    assert_int_equal(match(r, "GET", "/users/me", &m), 0);
    assert_ptr_equal(m.handler, &h3);
    assert_int_equal(match(r, "GET", "/users/42", &m), 0);
    assert_ptr_equal(m.handler, &h2);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(m.names[0], "id");
    assert_string_equal(m.values[0], "42");
    fan__router_free(r);
}

static void parameters_are_url_decoded(void **state)
{
    fan__router *r = make();
    fan__route_match m;
    assert_int_equal(match(r, "GET", "/users/a%20b%2Fc", &m), 0);
    assert_ptr_equal(m.handler, &h2);
    assert_string_equal(m.values[0], "a b/c");
    assert_int_equal(match(r, "GET", "/users/%zz", &m), FAN_EINVAL);
    fan__router_free(r);
}

static void wildcard_takes_the_rest_of_the_path(void **state)
{
    fan__router *r = make();
    fan__route_match m;
    assert_int_equal(match(r, "GET", "/files/a/b/c.txt", &m), 0);
    assert_ptr_equal(m.handler, &h5);
    assert_string_equal(m.names[0], "*");
    assert_string_equal(m.values[0], "a/b/c.txt");
    fan__router_free(r);
}

static void unknown_path_is_404_and_wrong_method_is_405_with_allow(void **state)
{
    fan__router *r = make();
    fan__route_match m;
    match(r, "GET", "/nope", &m);
    assert_int_equal(m.status, 404);
    match(r, "GET", "/users", &m);
    assert_int_equal(m.status, 404);
    match(r, "DELETE", "/users/7", &m);
    assert_int_equal(m.status, 405);
    assert_non_null(strstr(m.allow, "GET"));
    assert_non_null(strstr(m.allow, "POST"));
    assert_non_null(strstr(m.allow, "HEAD"));
    fan__router_free(r);
}

static void head_is_served_by_get_routes(void **state)
{
    fan__router *r = make();
    fan__route_match m;
    match(r, "HEAD", "/", &m);
    assert_int_equal(m.status, 200);
    assert_ptr_equal(m.handler, &h1);
    fan__router_free(r);
}

static void any_method_route_matches_every_method(void **state)
{
    fan__router *r = fan__router_new();
    assert_int_equal(fan__router_add(r, "*", "/echo", &h1), 0);
    fan__route_match m;
    match(r, "PATCH", "/echo", &m);
    assert_ptr_equal(m.handler, &h1);
    fan__router_free(r);
}

static void bad_patterns_and_duplicates_are_rejected(void **state)
{
    fan__router *r = make();
    assert_int_equal(fan__router_add(r, "GET", "users", &h1), FAN_EINVAL);
    assert_int_equal(fan__router_add(r, "GET", "/a/*/b", &h1), FAN_EINVAL);
    assert_int_equal(fan__router_add(r, "GET", "/a/:", &h1), FAN_EINVAL);
    assert_int_equal(fan__router_add(r, "GET", "/a//b", &h1), FAN_EINVAL);
    assert_int_equal(fan__router_add(r, "GET", "/users/:id", &h1), FAN_EINVAL);
    assert_int_equal(fan__router_add(r, "GET", "/users/:name/x", &h1), FAN_EINVAL);
    fan__router_free(r);
}

static void backtracks_from_a_literal_dead_end_to_a_parameter(void **state)
{
    fan__router *r = fan__router_new();
    assert_int_equal(fan__router_add(r, "GET", "/a/b/c", &h1), 0);
    assert_int_equal(fan__router_add(r, "GET", "/a/:x/d", &h2), 0);
    fan__route_match m;
    match(r, "GET", "/a/b/d", &m);
    assert_ptr_equal(m.handler, &h2);
    assert_string_equal(m.values[0], "b");
    fan__router_free(r);
}

static void routes_share_a_parameter_in_the_middle_of_the_path(void **state)
{
    fan__router *r = make();
    assert_int_equal(fan__router_add(r, "POST", "/users/:id/posts/:post", &h1), 0);
    assert_int_equal(fan__router_add(r, "GET", "/users/:id/posts", &h3), 0);
    fan__route_match m;
    match(r, "POST", "/users/7/posts/9", &m);
    assert_ptr_equal(m.handler, &h1);
    assert_int_equal(m.nparams, 2);
    assert_string_equal(m.values[0], "7");
    assert_string_equal(m.values[1], "9");
    fan__router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literal_beats_parameter),
        cmocka_unit_test(parameters_are_url_decoded),
        cmocka_unit_test(wildcard_takes_the_rest_of_the_path),
        cmocka_unit_test(unknown_path_is_404_and_wrong_method_is_405_with_allow),
        cmocka_unit_test(head_is_served_by_get_routes),
        cmocka_unit_test(any_method_route_matches_every_method),
        cmocka_unit_test(bad_patterns_and_duplicates_are_rejected),
        cmocka_unit_test(backtracks_from_a_literal_dead_end_to_a_parameter),
        cmocka_unit_test(routes_share_a_parameter_in_the_middle_of_the_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
