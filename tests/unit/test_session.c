/* Signed session values: base64url, signing, verification, tampering,
 * expiry and key rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "app/app.h"

#define NOW 1700000000LL

static const char *const new_only[] = {"new-secret"};
static const char *const rotated[] = {"new-secret", "old-secret"};

static char *encode(const char *s)
{
    static char out[256];
    fan__b64url_encode(s, strlen(s), out);
    return out;
}

static long decode(const char *s, char *out)
{
    long n = fan__b64url_decode(s, strlen(s), (unsigned char *)out);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

static void b64url_matches_the_rfc_4648_vectors(void **state)
{
    assert_string_equal(encode(""), "");
    assert_string_equal(encode("f"), "Zg");
    assert_string_equal(encode("fo"), "Zm8");
    assert_string_equal(encode("foo"), "Zm9v");
    assert_string_equal(encode("foob"), "Zm9vYg");
    assert_string_equal(encode("fooba"), "Zm9vYmE");
    assert_string_equal(encode("foobar"), "Zm9vYmFy");
    assert_int_equal(fan__b64url_len(6), 8);
    assert_int_equal(fan__b64url_len(32), 43);
}

static void b64url_uses_the_url_alphabet(void **state)
{
    const unsigned char bytes[] = {0xfb, 0xff, 0xbf};
    char out[8];
    fan__b64url_encode(bytes, 3, out);
    assert_string_equal(out, "-_-_");
    unsigned char back[4];
    assert_int_equal(fan__b64url_decode("-_-_", 4, back), 3);
    assert_memory_equal(back, bytes, 3);
}

static void b64url_round_trips_every_length(void **state)
{
    unsigned char in[64], back[64];
    char text[100];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof in; n++) {
        fan__b64url_encode(in, n, text);
        assert_int_equal(strlen(text), fan__b64url_len(n));
        assert_int_equal(fan__b64url_decode(text, strlen(text), back), (long)n);
        assert_memory_equal(back, in, n);
    }
}

static void b64url_rejects_what_it_would_not_produce(void **state)
{
    char out[16];
    assert_int_equal(decode("Zg==", out), -1); /* padding */
    assert_int_equal(decode("Zm9+", out), -1); /* the standard alphabet */
    assert_int_equal(decode("Zm9/", out), -1);
    assert_int_equal(decode("Zm9vY", out), -1); /* no length leaves 6 bits */
    assert_int_equal(decode("Zh", out), -1);    /* non-zero trailing bits */
    assert_int_equal(decode("Zm9", out), -1);
    assert_int_equal(decode("Zm8", out), 2);
    assert_string_equal(out, "fo");
}

/* Decodes with the given secrets at NOW; returns the result code and, when
 * valid, checks the payload. */
static int check(const char *value, const char *const *secrets, size_t n, const char *want)
{
    char *payload = NULL;
    size_t len = 0;
    int rc = fan__signed_decode(value, secrets, n, NOW, &payload, &len);
    if (rc == FAN__SIGNED_OK) {
        assert_int_equal(len, strlen(want));
        assert_string_equal(payload, want);
    }
    free(payload);
    return rc;
}

static void a_signed_value_verifies_and_gives_its_payload(void **state)
{
    char *v = fan__signed_encode("{\"user\":\"alice\"}", 16, NOW + 60, "new-secret");
    assert_non_null(v);
    /* payload.expiry.mac, each base64url */
    const char *dot1 = strchr(v, '.'), *dot2 = strrchr(v, '.');
    assert_true(dot1 && dot2 && dot1 != dot2);
    assert_int_equal(strlen(dot2 + 1), 43);
    char expiry[32];
    char part[32];
    snprintf(part, sizeof part, "%.*s", (int)(dot2 - dot1 - 1), dot1 + 1);
    assert_int_equal(decode(part, expiry), 10);
    assert_string_equal(expiry, "1700000060");
    assert_int_equal(check(v, new_only, 1, "{\"user\":\"alice\"}"), FAN__SIGNED_OK);
    free(v);
}

static void payloads_may_hold_any_bytes(void **state)
{
    const char payload[] = "a.b\0c\xff";
    char *v = fan__signed_encode(payload, sizeof payload - 1, NOW + 60, "new-secret");
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(fan__signed_decode(v, new_only, 1, NOW, &out, &len), FAN__SIGNED_OK);
    assert_int_equal(len, sizeof payload - 1);
    assert_memory_equal(out, payload, len);
    free(out);
    free(v);
}

static void tampering_with_any_part_is_detected(void **state)
{
    char *v = fan__signed_encode("{\"user\":\"alice\"}", 16, NOW + 60, "new-secret");
    size_t n = strlen(v);
    /* Changing any one character breaks the signature or the encoding. */
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '.')
            continue;
        char *t = strdup(v);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        int rc = check(t, new_only, 1, "");
        assert_true(rc == FAN__SIGNED_FORGED || rc == FAN__SIGNED_MALFORMED);
        free(t);
    }
    /* A longer expiry, re-encoded, does not carry the old signature. */
    const char *dot1 = strchr(v, '.');
    char *forged = malloc(n + 64);
    char exp[32];
    fan__b64url_encode("1900000000", 10, exp);
    sprintf(forged, "%.*s.%s%s", (int)(dot1 - v), v, exp, strrchr(v, '.'));
    assert_int_equal(check(forged, new_only, 1, ""), FAN__SIGNED_FORGED);
    free(forged);
    free(v);
}

static void malformed_values_are_rejected(void **state)
{
    assert_int_equal(check("", new_only, 1, ""), FAN__SIGNED_MALFORMED);
    assert_int_equal(check("abc", new_only, 1, ""), FAN__SIGNED_MALFORMED);
    assert_int_equal(check("a.b", new_only, 1, ""), FAN__SIGNED_MALFORMED);
    assert_int_equal(check("a.b.c.d", new_only, 1, ""), FAN__SIGNED_MALFORMED);
    assert_int_equal(check("a.b.c", new_only, 1, ""), FAN__SIGNED_MALFORMED); /* short mac */
    char *v = fan__signed_encode("x", 1, NOW + 60, "new-secret");
    char *extra = malloc(strlen(v) + 2);
    sprintf(extra, "%s.", v);
    assert_int_equal(check(extra, new_only, 1, ""), FAN__SIGNED_MALFORMED);
    free(extra);
    free(v);
}

static void an_expiry_that_is_not_digits_is_malformed_even_when_signed(void **state)
{
    /* A negative expiry encodes as "-5": signed correctly, but not digits. */
    char *v = fan__signed_encode("x", 1, -5, "new-secret");
    assert_int_equal(check(v, new_only, 1, ""), FAN__SIGNED_MALFORMED);
    free(v);
}

static void a_value_expires_at_its_expiry(void **state)
{
    char *ok = fan__signed_encode("x", 1, NOW + 1, "new-secret");
    char *at = fan__signed_encode("x", 1, NOW, "new-secret");
    char *past = fan__signed_encode("x", 1, NOW - 3600, "new-secret");
    assert_int_equal(check(ok, new_only, 1, "x"), FAN__SIGNED_OK);
    assert_int_equal(check(at, new_only, 1, ""), FAN__SIGNED_EXPIRED);
    assert_int_equal(check(past, new_only, 1, ""), FAN__SIGNED_EXPIRED);
    free(ok);
    free(at);
    free(past);
}

static void rotation_verifies_with_any_secret_of_the_list(void **state)
{
    char *old = fan__signed_encode("x", 1, NOW + 60, "old-secret");
    char *cur = fan__signed_encode("x", 1, NOW + 60, "new-secret");
    assert_int_equal(check(old, rotated, 2, "x"), FAN__SIGNED_OK);
    assert_int_equal(check(cur, rotated, 2, "x"), FAN__SIGNED_OK);
    assert_int_equal(check(old, new_only, 1, ""), FAN__SIGNED_FORGED); /* retired */
    assert_int_equal(check(cur, NULL, 0, ""), FAN__SIGNED_FORGED);     /* no secret */
    free(old);
    free(cur);
}

static void an_expired_forgery_reports_the_forgery(void **state)
{
    /* The signature is checked first: nothing of an unsigned value is
     * trusted, not even its expiry. */
    char *v = fan__signed_encode("x", 1, NOW - 60, "other");
    assert_int_equal(check(v, new_only, 1, ""), FAN__SIGNED_FORGED);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b64url_matches_the_rfc_4648_vectors),
        cmocka_unit_test(b64url_uses_the_url_alphabet),
        cmocka_unit_test(b64url_round_trips_every_length),
        cmocka_unit_test(b64url_rejects_what_it_would_not_produce),
        cmocka_unit_test(a_signed_value_verifies_and_gives_its_payload),
        cmocka_unit_test(payloads_may_hold_any_bytes),
        cmocka_unit_test(tampering_with_any_part_is_detected),
        cmocka_unit_test(malformed_values_are_rejected),
        cmocka_unit_test(an_expiry_that_is_not_digits_is_malformed_even_when_signed),
        cmocka_unit_test(a_value_expires_at_its_expiry),
        cmocka_unit_test(rotation_verifies_with_any_secret_of_the_list),
        cmocka_unit_test(an_expired_forgery_reports_the_forgery),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
