/* The client's error mapping from curl's codes, and the error names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "client/client.h"

static void curl_codes_map_to_error_kinds(void **state)
{
    assert_int_equal(fan__curl_error(CURLE_OK, 0), 0);
    assert_int_equal(fan__curl_error(CURLE_COULDNT_CONNECT, 0), FAN_ECONNREFUSED);
    assert_int_equal(fan__curl_error(CURLE_COULDNT_RESOLVE_HOST, 0), FAN_EDNS);
    assert_int_equal(fan__curl_error(CURLE_OPERATION_TIMEDOUT, 0), FAN_ETIMEDOUT);
    assert_int_equal(fan__curl_error(CURLE_PEER_FAILED_VERIFICATION, 0), FAN_ETLS);
    assert_int_equal(fan__curl_error(CURLE_SSL_CONNECT_ERROR, 0), FAN_ETLS);
    assert_int_equal(fan__curl_error(CURLE_FILESIZE_EXCEEDED, 0), FAN_ETOOLARGE);
    assert_int_equal(fan__curl_error(CURLE_WRITE_ERROR, FAN_ETOOLARGE), FAN_ETOOLARGE);
    assert_int_equal(fan__curl_error(CURLE_WRITE_ERROR, FAN_EPROTO), FAN_EPROTO);
    assert_int_equal(fan__curl_error(CURLE_ABORTED_BY_CALLBACK, FAN_EPROTO), FAN_EPROTO);
    assert_int_equal(fan__curl_error(CURLE_WRITE_ERROR, 0), FAN_EIO);
    assert_int_equal(fan__curl_error(CURLE_WEIRD_SERVER_REPLY, 0), FAN_EPROTO);
    assert_int_equal(fan__curl_error(CURLE_GOT_NOTHING, 0), FAN_EPROTO);
    assert_int_equal(fan__curl_error(CURLE_PARTIAL_FILE, 0), FAN_EPROTO);
    assert_int_equal(fan__curl_error(CURLE_UNSUPPORTED_PROTOCOL, 0), FAN_EPROTO);
    assert_int_equal(fan__curl_error(CURLE_URL_MALFORMAT, 0), FAN_EINVAL);
    assert_int_equal(fan__curl_error(CURLE_RECV_ERROR, 0), FAN_EIO);
    assert_int_equal(fan__curl_error(CURLE_OUT_OF_MEMORY, 0), FAN_ENOMEM);
}

/* Every code from -1 down to the sentinel FAN_ELAST has its own name and
 * text; the code beyond the sentinel has neither, so a code added to the
 * table without moving FAN_ELAST fails here too. */
static void every_error_has_a_name_and_a_text(void **state)
{
    const char *names[1 - FAN_ELAST], *texts[1 - FAN_ELAST];
    for (int e = 0; e >= FAN_ELAST; e--) {
        const char *name = fan_errname(e), *text = fan_strerror(e);
        assert_string_not_equal(name, "unknown");
        assert_string_not_equal(text, "unknown error");
        assert_true(name[0] != '\0' && strspn(name, "abcdefghijklmnopqrstuvwxyz_") == strlen(name));
        assert_true(text[0] != '\0');
        for (int k = 0; k < -e; k++) {
            assert_string_not_equal(name, names[k]);
            assert_string_not_equal(text, texts[k]);
        }
        names[-e] = name;
        texts[-e] = text;
    }
    assert_string_equal(fan_errname(FAN_ELAST - 1), "unknown");
    assert_string_equal(fan_strerror(FAN_ELAST - 1), "unknown error");
    assert_string_equal(fan_errname(1), "unknown");
    assert_string_equal(fan_errname(FAN_ETIMEDOUT), "timeout");
    assert_string_equal(fan_errname(FAN_ECONNREFUSED), "refused");
    assert_string_equal(fan_errname(FAN_EBUSY), "busy");
    assert_string_equal(fan_errname(12345), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(curl_codes_map_to_error_kinds),
        cmocka_unit_test(every_error_has_a_name_and_a_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
