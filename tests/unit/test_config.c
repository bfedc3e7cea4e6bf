/* The configuration: declared keys and types, the JSON file (flattening,
 * errors with file, line and column), unknown keys, environment overrides,
 * settings, and reloads that leave the old values on failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/app.h"

static char path[64];

/* Writes `text` to the test's temporary file and returns its name. */
static const char *file_with(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* An app declaring the keys the tests use. */
static fan_app *app_with_keys(void)
{
    fan_app *app = fan_app_new();
    assert_non_null(app);
    assert_int_equal(fan_app_declare_config(app, "api.url", FAN_CONFIG_STRING, "http://default"), 0);
    assert_int_equal(fan_app_declare_config(app, "api.timeout", FAN_CONFIG_INT, "30"), 0);
    assert_int_equal(fan_app_declare_config(app, "api.ratio", FAN_CONFIG_DOUBLE, "0.5"), 0);
    assert_int_equal(fan_app_declare_config(app, "api.enabled", FAN_CONFIG_BOOL, "false"), 0);
    assert_int_equal(fan_app_declare_config(app, "api.tags", FAN_CONFIG_STRINGS, NULL), 0);
    return app;
}

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/fanout-test-config-%ld.json", (long)getpid());
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    unsetenv("FANOUT_API_URL");
    unsetenv("FANOUT_API_TIMEOUT");
    return 0;
}

static void defaults_apply_without_a_file(void **state)
{
    fan_app *app = app_with_keys();
    assert_string_equal(fan_app_get(app, "api.url"), "http://default");
    assert_string_equal(fan_app_get(app, "api.timeout"), "30");
    assert_string_equal(fan_app_get(app, "api.ratio"), "0.5");
    assert_string_equal(fan_app_get(app, "api.enabled"), "false");
    assert_null(fan_app_get(app, "api.tags"));
    assert_string_equal(fan_app_get(app, "session.cookie_name"), "fanout_session");
    assert_null(fan_app_config_error(app));
    fan_app_free(app);
}

static void nested_objects_flatten_to_typed_dotted_keys(void **state)
{
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"url\": \"http://x\", "
                                                        "\"timeout\": 5, \"ratio\": 2, \"enabled\": "
                                                        "true, \"tags\": [\"a\", \"b\"]}}")),
                     0);
    assert_string_equal(fan_app_get(app, "api.url"), "http://x");
    assert_int_equal(json_integer_value(fan__config_get(app, "api.timeout")), 5);
    assert_true(json_is_real(fan__config_get(app, "api.ratio"))); /* an integer is a double */
    assert_true(json_real_value(fan__config_get(app, "api.ratio")) == 2.0);
    assert_true(json_is_true(fan__config_get(app, "api.enabled")));
    assert_string_equal(fan_app_get(app, "api.tags"), "[\"a\",\"b\"]");
    fan_app_free(app);
}

static void dotted_names_work_at_the_top_level(void **state)
{
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_load_config(app, file_with("{\"api.url\": \"http://dotted\"}")), 0);
    assert_string_equal(fan_app_get(app, "api.url"), "http://dotted");
    fan_app_free(app);
}

static void a_syntax_error_names_the_file_line_and_column(void **state)
{
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_load_config(app, file_with("{\n  \"api\": {\n    \"url\": }\n}")),
                     FAN_EINVAL);
    char want[128];
    snprintf(want, sizeof want, "%s:3:12: JSON syntax error: ", path);
    assert_non_null(fan_app_config_error(app));
    assert_memory_equal(fan_app_config_error(app), want, strlen(want));
    assert_non_null(strstr(fan_app_config_error(app), "near '}'"));
    fan_app_free(app);
}

static void a_wrong_type_names_the_key_and_both_types(void **state)
{
    fan_app *app = app_with_keys();
    char want[160];
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"timeout\": \"5\"}}")),
                     FAN_EINVAL);
    snprintf(want, sizeof want, "%s: key 'api.timeout': expected integer, got string", path);
    assert_string_equal(fan_app_config_error(app), want);
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"timeout\": 1.5}}")),
                     FAN_EINVAL);
    snprintf(want, sizeof want, "%s: key 'api.timeout': expected integer, got number", path);
    assert_string_equal(fan_app_config_error(app), want);
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"tags\": [\"a\", 2]}}")),
                     FAN_EINVAL);
    snprintf(want, sizeof want, "%s: key 'api.tags': expected array of strings, got integer "
                                "at index 1", path);
    assert_string_equal(fan_app_config_error(app), want);
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"url\": {\"a\": 1}}}")),
                     FAN_EINVAL);
    snprintf(want, sizeof want, "%s: key 'api.url': expected string, got object", path);
    assert_string_equal(fan_app_config_error(app), want);
    fan_app_free(app);
}

static void an_unknown_key_is_an_error_naming_it_and_the_file(void **state)
{
    fan_app *app = app_with_keys();
    char want[160];
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"urll\": \"x\"}}")),
                     FAN_EINVAL);
    snprintf(want, sizeof want, "%s: unknown key 'api.urll' (not declared by the application)",
             path);
    assert_string_equal(fan_app_config_error(app), want);
    /* A section nothing is declared under is reported as a whole. */
    assert_int_equal(fan_app_load_config(app, file_with("{\"db\": {\"host\": \"x\"}}")),
                     FAN_EINVAL);
    snprintf(want, sizeof want, "%s: unknown key 'db' (not declared by the application)", path);
    assert_string_equal(fan_app_config_error(app), want);
    fan_app_free(app);
}

static void the_top_level_must_be_an_object_and_keys_unique(void **state)
{
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_load_config(app, file_with("[1]")), FAN_EINVAL);
    assert_non_null(strstr(fan_app_config_error(app), "expected an object at the top level"));
    assert_int_equal(fan_app_load_config(app, file_with("{\"api.url\": \"a\", \"api\": "
                                                        "{\"url\": \"b\"}}")),
                     FAN_EINVAL);
    assert_non_null(strstr(fan_app_config_error(app), "key 'api.url' is given twice"));
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"url\": \"a\", \"url\": "
                                                        "\"b\"}}")),
                     FAN_EINVAL);
    assert_non_null(strstr(fan_app_config_error(app), "duplicate object key"));
    fan_app_free(app);
}

static void a_missing_file_is_an_io_error(void **state)
{
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_load_config(app, "/nonexistent/fanout.json"), FAN_EIO);
    assert_string_equal(fan_app_config_error(app),
                        "config file /nonexistent/fanout.json: cannot read it: No such file or "
                        "directory");
    fan_app_free(app);
}

static void a_failed_load_keeps_the_values_and_a_good_one_clears_the_error(void **state)
{
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"timeout\": 7}}")), 0);
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"timeout\": 8, \"x\": 1}}")),
                     FAN_EINVAL);
    assert_string_equal(fan_app_get(app, "api.timeout"), "7");
    assert_non_null(fan_app_config_error(app));
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"timeout\": 9}}")), 0);
    assert_string_equal(fan_app_get(app, "api.timeout"), "9");
    assert_null(fan_app_config_error(app));
    fan_app_free(app);
}

static void reload_rereads_the_same_file_and_survives_a_bad_one(void **state)
{
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_reload_config(app), 0); /* no file yet: nothing to do */
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"url\": \"one\"}}")), 0);
    fan__snap *before = app->config->snap;
    before->refs++; /* as a running request pins it */
    file_with("{\"api\": {\"url\": \"two\"}}");
    assert_int_equal(fan_app_reload_config(app), 0);
    assert_string_equal(fan_app_get(app, "api.url"), "two");
    /* The pinned snapshot still reads the old value. */
    assert_string_equal(json_string_value(json_object_get(before->values, "api.url")), "one");
    fan__snap_release(before);
    file_with("{\"api\": {\"url\": ");
    assert_int_equal(fan_app_reload_config(app), FAN_EINVAL);
    assert_string_equal(fan_app_get(app, "api.url"), "two");
    fan_app_free(app);
}

static void the_environment_overrides_the_file(void **state)
{
    setenv("FANOUT_API_URL", "http://env", 1);
    setenv("FANOUT_API_TIMEOUT", "12", 1);
    fan_app *app = app_with_keys();
    assert_string_equal(fan_app_get(app, "api.url"), "http://env");
    assert_int_equal(fan_app_load_config(app, file_with("{\"api\": {\"url\": \"http://file\", "
                                                        "\"ratio\": 3}}")),
                     0);
    assert_string_equal(fan_app_get(app, "api.url"), "http://env");
    assert_string_equal(fan_app_get(app, "api.timeout"), "12");
    assert_string_equal(fan_app_get(app, "api.ratio"), "3");
    fan_app_free(app);
}

static void a_bad_override_is_recorded_as_an_error(void **state)
{
    setenv("FANOUT_API_TIMEOUT", "soon", 1);
    fan_app *app = fan_app_new();
    assert_int_equal(fan_app_declare_config(app, "api.timeout", FAN_CONFIG_INT, "30"), FAN_EINVAL);
    assert_string_equal(fan_app_config_error(app),
                        "config: environment variable FANOUT_API_TIMEOUT (key 'api.timeout'): "
                        "expected integer, got 'soon'");
    assert_string_equal(fan_app_get(app, "api.timeout"), "30");
    fan_app_free(app);
}

static void settings_win_and_are_parsed_as_the_declared_type(void **state)
{
    setenv("FANOUT_API_TIMEOUT", "12", 1);
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_set(app, "api.timeout", "soon"), FAN_EINVAL);
    assert_int_equal(fan_app_set(app, "api.timeout", "40"), 0);
    assert_string_equal(fan_app_get(app, "api.timeout"), "40");
    assert_int_equal(fan_app_set(app, "api.enabled", "on"), 0);
    assert_true(json_is_true(fan__config_get(app, "api.enabled")));
    /* Undeclared settings are strings, as before the configuration. */
    assert_int_equal(fan_app_set(app, "plain", "value"), 0);
    assert_string_equal(fan_app_get(app, "plain"), "value");
    assert_null(fan_app_get(app, "absent"));
    fan_app_free(app);
}

static void declarations_are_checked(void **state)
{
    fan_app *app = app_with_keys();
    assert_int_equal(fan_app_declare_config(app, "api..url", FAN_CONFIG_STRING, NULL), FAN_EINVAL);
    assert_int_equal(fan_app_declare_config(app, "api url", FAN_CONFIG_STRING, NULL), FAN_EINVAL);
    assert_int_equal(fan_app_declare_config(app, ".url", FAN_CONFIG_STRING, NULL), FAN_EINVAL);
    assert_int_equal(fan_app_declare_config(app, "api.n", FAN_CONFIG_INT, "x"), FAN_EINVAL);
    assert_int_equal(fan_app_declare_config(app, "api.url", FAN_CONFIG_INT, NULL), FAN_EINVAL);
    assert_int_equal(fan_app_declare_config(app, "api.url", FAN_CONFIG_STRING, "http://new"), 0);
    assert_string_equal(fan_app_get(app, "api.url"), "http://new");
    fan_app_free(app);
}

static void text_values_parse_by_type(void **state)
{
    char why[128];
    static const char *const truths[] = {"true", "1", "yes", "ON"};
    static const char *const lies[] = {"false", "0", "no", "Off"};
    for (int i = 0; i < 4; i++) {
        json_t *t = fan__config_parse_text(FAN_CONFIG_BOOL, truths[i], why, sizeof why);
        json_t *f = fan__config_parse_text(FAN_CONFIG_BOOL, lies[i], why, sizeof why);
        assert_true(json_is_true(t) && json_is_false(f));
    }
    assert_null(fan__config_parse_text(FAN_CONFIG_BOOL, "maybe", why, sizeof why));
    assert_string_equal(why, "expected boolean, got 'maybe'");
    assert_null(fan__config_parse_text(FAN_CONFIG_INT, "12x", why, sizeof why));
    assert_null(fan__config_parse_text(FAN_CONFIG_INT, "", why, sizeof why));
    assert_null(fan__config_parse_text(FAN_CONFIG_DOUBLE, "nan", why, sizeof why));
    json_t *one = fan__config_parse_text(FAN_CONFIG_STRINGS, "solo", why, sizeof why);
    assert_int_equal(json_array_size(one), 1);
    json_decref(one);
    assert_null(fan__config_parse_text(FAN_CONFIG_STRINGS, "[1]", why, sizeof why));
    assert_string_equal(why, "expected array of strings, got integer at index 0");
}

static void override_names_are_upper_case_with_underscores(void **state)
{
    char *name = fan__config_env_name("api.base-url");
    assert_string_equal(name, "FANOUT_API_BASE_URL");
    free(name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(defaults_apply_without_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(nested_objects_flatten_to_typed_dotted_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(dotted_names_work_at_the_top_level, setup, teardown),
        cmocka_unit_test_setup_teardown(a_syntax_error_names_the_file_line_and_column, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_wrong_type_names_the_key_and_both_types, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(an_unknown_key_is_an_error_naming_it_and_the_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_top_level_must_be_an_object_and_keys_unique, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_missing_file_is_an_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(
            a_failed_load_keeps_the_values_and_a_good_one_clears_the_error, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_rereads_the_same_file_and_survives_a_bad_one,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(the_environment_overrides_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(a_bad_override_is_recorded_as_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(settings_win_and_are_parsed_as_the_declared_type, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(declarations_are_checked, setup, teardown),
        cmocka_unit_test(text_values_parse_by_type),
        cmocka_unit_test(override_names_are_upper_case_with_underscores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
