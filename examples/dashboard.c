/*
 * A dashboard endpoint: for the logged-in user (from the session), call a
 * profile API, an orders API and a recommendations API concurrently. The
 * orders task first fetches a token, then the orders with it, while the
 * other two run. Each call has its own timeout; recommendations are
 * optional: when they fail the answer is partial, not an error.
 *
 *   fanout mock --port 8081 &
 *   dashboard --port 8080 --config examples/dashboard.json
 *   curl -c jar -b jar 'localhost:8080/login?user=alice'
 *   curl -c jar -b jar localhost:8080/dashboard
 *
 * Configuration (examples/dashboard.json): the three APIs' URLs, the token
 * URL, per-call timeouts, and the session secrets.
 */
#include <stdlib.h>
#include <string.h>

#include <fanout.h>

/* The result of one branch of the dashboard, filled by its task. */
typedef struct part {
    const char *name;
    json_t *value; /* owned; NULL when the branch failed */
    const char *error;
} part;

static void part_free(part *p)
{
    json_decref(p->value);
}

/* One GET with the configured timeout; on success the JSON body (a new
 * reference), else NULL with p->error set. */
static json_t *get_json(fan_req *rq, part *p, const char *url, const char *timeout_key,
                        const char *auth)
{
    const char *headers[] = {auth, NULL};
    fan_call_opts opts = {
        .name = p->name,
        .timeout_ms = (unsigned)fan_config_int(rq, timeout_key),
        .headers = auth ? headers : NULL,
    };
    fan_call *c = fan_call_start(rq, url, &opts);
    int rc = fan_call_await(rq, c);
    if (rc != 0 || fan_call_status(c) != 200 || !fan_call_json(c)) {
        p->error = rc ? fan_errname(rc) : "bad reply";
        return NULL;
    }
    return json_incref(fan_call_json(c));
}

static int profile_task(fan_req *rq, void *arg)
{
    part *p = arg;
    p->value = get_json(rq, p, fan_config_str(rq, "dashboard.profile_url"),
                        "dashboard.timeout_ms", NULL);
    return p->value ? 0 : FAN_EIO;
}

/* Two calls in sequence: a token, then the orders with it. */
static int orders_task(fan_req *rq, void *arg)
{
    part *p = arg;
    json_t *token = get_json(rq, p, fan_config_str(rq, "dashboard.token_url"),
                             "dashboard.timeout_ms", NULL);
    if (!token)
        return FAN_EIO;
    double t = json_number_value(json_object_get(token, "value"));
    json_decref(token);
    const char *auth = fan_sprintf(rq, "Authorization: Bearer %.6f", t);
    p->value = get_json(rq, p, fan_config_str(rq, "dashboard.orders_url"),
                        "dashboard.timeout_ms", auth);
    return p->value ? 0 : FAN_EIO;
}

static int recommendations_task(fan_req *rq, void *arg)
{
    part *p = arg;
    p->value = get_json(rq, p, fan_config_str(rq, "dashboard.recommendations_url"),
                        "dashboard.optional_timeout_ms", NULL);
    return p->value ? 0 : FAN_EIO;
}

static void dashboard(fan_req *rq)
{
    const char *user = fan_session_get(rq, "user");
    if (!user) {
        fan_reply_error(rq, 401, "log in first: /login?user=NAME");
        return;
    }
    double t0 = fan_now();
    part parts[3] = {{.name = "profile"}, {.name = "orders"}, {.name = "recommendations"}};
    fan_task *required[2] = {fan_spawn(rq, profile_task, &parts[0]),
                             fan_spawn(rq, orders_task, &parts[1])};
    fan_task *optional = fan_spawn(rq, recommendations_task, &parts[2]);
    /* The required branches fail fast: if one fails, the other is cancelled
     * and the answer is an error. The optional one is awaited on its own;
     * when the answer is an error it is cancelled, and still awaited: its
     * `arg` is parts[2], in this frame, so it must end before the frame
     * does (and before part_free() below). */
    int rc = fan_task_gather(rq, required, 2, FAN_GATHER_FAIL_FAST);
    if (rc != 0)
        fan_task_cancel(optional);
    fan_task_await(rq, optional);
    if (rc != 0 || !required[0] || !required[1] || !optional) {
        /* The branch that failed first; the other one was cancelled. */
        int first = parts[0].error && strcmp(parts[0].error, "cancelled") != 0 ? 0 : 1;
        const char *failed = parts[first].name;
        fan_reply_error(rq, 502, fan_sprintf(rq, "the %s API failed", failed));
    } else {
        json_t *body = json_pack("{s:s, s:O, s:O, s:O?, s:b, s:f}", "user", user, "profile",
                                 parts[0].value, "orders", parts[1].value, "recommendations",
                                 parts[2].value, "partial", parts[2].value == NULL,
                                 "elapsed", fan_now() - t0);
        fan_reply_json(rq, 200, body);
    }
    for (int i = 0; i < 3; i++)
        part_free(&parts[i]);
}

static void login(fan_req *rq)
{
    const char *user = fan_req_query(rq, "user");
    if (!user || !*user) {
        fan_reply_error(rq, 400, "user is required");
        return;
    }
    if (fan_session_set(rq, "user", user) != 0) {
        fan_reply_error(rq, 500, "cannot write the session (is session.secrets set?)");
        return;
    }
    fan_reply_json(rq, 200, json_pack("{s:s}", "user", user));
}

int main(int argc, char **argv)
{
    fan_app *app = fan_app_new();
    if (!app)
        return 1;
    const char *base = "http://127.0.0.1:8081";
    char url[4][128];
    snprintf(url[0], sizeof url[0], "%s/delay?ms=120", base);
    snprintf(url[1], sizeof url[1], "%s/delay?ms=50", base);
    snprintf(url[2], sizeof url[2], "%s/delay?ms=100", base);
    snprintf(url[3], sizeof url[3], "%s/delay?ms=150", base);
    fan_app_declare_config(app, "dashboard.profile_url", FAN_CONFIG_STRING, url[0]);
    fan_app_declare_config(app, "dashboard.token_url", FAN_CONFIG_STRING, url[1]);
    fan_app_declare_config(app, "dashboard.orders_url", FAN_CONFIG_STRING, url[2]);
    fan_app_declare_config(app, "dashboard.recommendations_url", FAN_CONFIG_STRING, url[3]);
    fan_app_declare_config(app, "dashboard.timeout_ms", FAN_CONFIG_INT, "2000");
    fan_app_declare_config(app, "dashboard.optional_timeout_ms", FAN_CONFIG_INT, "500");
    fan_app_route(app, "GET", "/dashboard", dashboard);
    fan_app_route(app, "GET", "/login", login);
    int rc = fan_main(app, argc, argv);
    fan_app_free(app);
    return rc;
}
