/* RFC 9110 tokens (core/token.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "core/token.h"

/* Every byte, before a letter: the span is 2 for a tchar, else 0. */
static void only_tchars_make_a_token(void **state)
{
    (void)state;
    const char *t = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (int ch = 0; ch < 256; ch++) {
        char s[2] = {(char)ch, 'a'};
        size_t want = ch && strchr(t, ch) ? 2 : 0;
        assert_int_equal(fan__token_span(s, 2), want);
    }
}

static void the_span_stops_at_the_first_non_tchar_or_the_length(void **state)
{
    (void)state;
    assert_int_equal(fan__token_span("X-Trace: abc", 12), 7);
    assert_int_equal(fan__token_span("GE T", 4), 2);
    assert_int_equal(fan__token_span("GET", 2), 2);
    assert_int_equal(fan__token_span("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_tchars_make_a_token),
        cmocka_unit_test(the_span_stops_at_the_first_non_tchar_or_the_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
