/* The memory store behind the response cache: what it keeps, for how long,
 * and what it evicts at its byte bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/store.h"
#include "fanout.h"

typedef struct found {
    int calls, status;
    char body[64];
    char header[64];
} found;

static void on_get(void *arg, const fan__stored *hit)
{
    found *f = arg;
    f->calls++;
    f->status = hit ? hit->status : 0;
    f->body[0] = f->header[0] = '\0';
    if (hit) {
        snprintf(f->body, sizeof f->body, "%.*s", (int)hit->body_len, hit->body);
        if (hit->nheaders)
            snprintf(f->header, sizeof f->header, "%s: %s", hit->headers[0].name,
                     hit->headers[0].value);
    }
}

/* Looks `key` up; returns the status found (0 for none). */
static int get(fan__store *s, const char *key, found *f)
{
    void *pending = NULL;
    assert_int_equal(s->ops->get(s, key, strlen(key), on_get, f, &pending), 0);
    return f->status;
}

static fan__stored entry(int status, const char *body, double ttl)
{
    static const fan__header h[] = {{"Content-Type", "application/json"}};
    double now = fan_now();
    fan__stored v = {status, h, 1, body, strlen(body), now + ttl, now + ttl, now + ttl};
    return v;
}

static int put(fan__store *s, const char *key, const fan__stored *v)
{
    return s->ops->put(s, key, strlen(key), v);
}

static void keeps_a_copy_and_answers_before_get_returns(void **state)
{
    fan__store *s = fan__memstore_new(1 << 20);
    char body[] = "{\"a\":1}";
    fan__stored v = entry(200, body, 60);
    assert_int_equal(put(s, "k", &v), 0);
    body[0] = 'X'; /* the store has its own copy */
    found f = {0};
    assert_int_equal(get(s, "k", &f), 200);
    assert_int_equal(f.calls, 1);
    assert_string_equal(f.body, "{\"a\":1}");
    assert_string_equal(f.header, "Content-Type: application/json");
    assert_int_equal(get(s, "other", &f), 0);
    assert_int_equal(f.calls, 2);
    s->ops->del(s, "k", 1);
    assert_int_equal(get(s, "k", &f), 0);
    s->ops->free(s);
}

static void a_put_replaces_and_an_expired_entry_is_dropped(void **state)
{
    fan__store *s = fan__memstore_new(1 << 20);
    fan__stored a = entry(200, "a", 60), b = entry(404, "b", 60), old = entry(200, "x", -1);
    put(s, "k", &a);
    put(s, "k", &b);
    put(s, "gone", &old);
    found f = {0};
    assert_int_equal(get(s, "k", &f), 404);
    assert_string_equal(f.body, "b");
    assert_int_equal(get(s, "gone", &f), 0);
    size_t entries, bytes;
    unsigned long long evictions;
    fan__memstore_usage(s, &entries, &bytes, &evictions);
    assert_int_equal(entries, 1);
    assert_int_equal(evictions, 0);
    s->ops->free(s);
}

static void the_least_recently_used_go_at_the_bound(void **state)
{
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fan__stored v = entry(200, big, 60);
    fan__store *s = fan__memstore_new(1 << 20);
    size_t entries, bytes, one;
    unsigned long long evictions;
    put(s, "a", &v);
    fan__memstore_usage(s, &entries, &one, &evictions);
    assert_true(one > sizeof big);               /* the body, its headers, key and bookkeeping */
    fan__memstore_set_max(s, 3 * one + one / 2); /* three entries, not four */
    put(s, "b", &v);
    put(s, "c", &v);
    found f = {0};
    assert_int_equal(get(s, "a", &f), 200); /* a is the most recent now */
    put(s, "d", &v);
    assert_int_equal(get(s, "b", &f), 0);
    assert_int_equal(get(s, "a", &f), 200);
    assert_int_equal(get(s, "c", &f), 200);
    assert_int_equal(get(s, "d", &f), 200);
    fan__memstore_usage(s, &entries, &bytes, &evictions);
    assert_int_equal(entries, 3);
    assert_int_equal(bytes, 3 * one);
    assert_int_equal(evictions, 1);
    /* A smaller bound applies at the next put; an entry larger than the
     * whole store is not kept. */
    fan__memstore_set_max(s, one - 1);
    assert_int_equal(put(s, "e", &v), 1);
    assert_int_equal(get(s, "e", &f), 0);
    fan__memstore_usage(s, &entries, &bytes, &evictions);
    assert_int_equal(entries, 0);
    assert_int_equal(evictions, 4);
    s->ops->free(s);
}

static void many_keys_grow_the_table(void **state)
{
    fan__store *s = fan__memstore_new(64 << 20);
    fan__stored v = entry(200, "v", 60);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        assert_int_equal(put(s, key, &v), 0);
    }
    found f = {0};
    for (int i = 0; i < 5000; i += 499) {
        snprintf(key, sizeof key, "key-%d", i);
        assert_int_equal(get(s, key, &f), 200);
    }
    s->ops->free(s); /* frees every entry: the sanitizer build checks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keeps_a_copy_and_answers_before_get_returns),
        cmocka_unit_test(a_put_replaces_and_an_expired_entry_is_dropped),
        cmocka_unit_test(the_least_recently_used_go_at_the_bound),
        cmocka_unit_test(many_keys_grow_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
