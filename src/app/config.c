/* The configuration store: declared keys, the layers that give them values
 * (default, file, environment, settings), and the immutable snapshot that
 * requests read. Parsing is in config_parse.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

static int valid_key(const char *key)
{
    /* Segments of [A-Za-z0-9_-], joined by single dots. */
    int seg = 0;
    for (const char *p = key; *p; p++) {
        char ch = *p;
        if (ch == '.') {
            if (seg == 0)
                return 0;
            seg = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_' || ch == '-') {
            seg++;
        } else {
            return 0;
        }
    }
    return seg > 0;
}

void fan__config_fail(fan__config *cfg, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fan_log(FAN_LOG_ERROR, "%s", msg);
    /* Later errors are often consequences of the first. */
    if (!cfg->error)
        cfg->error = strdup(msg);
}

const fan__decl *fan__config_decl(const fan__config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->ndecls; i++)
        if (strcmp(cfg->decls[i].key, key) == 0)
            return &cfg->decls[i];
    return NULL;
}

void fan__snap_release(fan__snap *s)
{
    if (!s || --s->refs > 0)
        return;
    json_decref(s->values);
    json_decref(s->texts);
    free(s);
}

static const char *setting_of(const fan_app *app, const char *key)
{
    for (const fan__setting *s = app->settings; s; s = s->next)
        if (strcmp(s->key, key) == 0)
            return s->value;
    return NULL;
}

/* The text form of a value, as fan_config_str() returns it. */
static json_t *text_of(const json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_STRING: return json_string(json_string_value(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return json_string(buf);
    case JSON_REAL:
        /* The shortest of two precisions that reads back exactly. */
        snprintf(buf, sizeof buf, "%.15g", json_real_value(v));
        if (strtod(buf, NULL) != json_real_value(v))
            snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        return json_string(buf);
    case JSON_TRUE: return json_string("true");
    case JSON_FALSE: return json_string("false");
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *t = s ? json_string(s) : NULL;
        free(s);
        return t;
    }
    }
}

static int snap_put(fan__snap *s, const char *key, json_t *v)
{
    json_t *t = text_of(v);
    if (!t || json_object_set(s->values, key, v) || json_object_set_new(s->texts, key, t))
        return FAN_ENOMEM;
    return 0;
}

/* The value of a declared key: its setting, else the environment, the file,
 * the default. A new reference, or NULL when it has none. */
static json_t *effective(const fan_app *app, const fan__decl *d)
{
    const fan__config *cfg = app->config;
    const char *set = setting_of(app, d->key);
    char why[256];
    json_t *v = set ? fan__config_parse_text(d->type, set, why, sizeof why) : NULL;
    if (v)
        return v;
    if ((v = json_object_get(cfg->env, d->key)) || (v = json_object_get(cfg->file, d->key)) ||
        (v = d->def))
        return json_incref(v);
    return NULL;
}

int fan__config_rebuild(fan_app *app)
{
    fan__config *cfg = app->config;
    fan__snap *s = calloc(1, sizeof *s);
    int rc = s && (s->values = json_object()) && (s->texts = json_object()) ? 0 : FAN_ENOMEM;
    if (s)
        s->refs = 1;
    for (const fan__setting *st = app->settings; st && rc == 0; st = st->next) {
        if (fan__config_decl(cfg, st->key))
            continue;
        json_t *v = json_string(st->value);
        rc = v ? snap_put(s, st->key, v) : FAN_ENOMEM;
        json_decref(v);
    }
    for (size_t i = 0; i < cfg->ndecls && rc == 0; i++) {
        json_t *v = effective(app, &cfg->decls[i]);
        if (v)
            rc = snap_put(s, cfg->decls[i].key, v);
        json_decref(v);
    }
    if (rc != 0) {
        fan__snap_release(s);
        return rc;
    }
    s->ratelimit_rate = json_number_value(json_object_get(s->values, "ratelimit.rate"));
    s->session_store = json_string_value(json_object_get(s->texts, "session.store"));
    fan__snap_release(cfg->snap);
    cfg->snap = s;
    return 0;
}

json_t *fan__config_get(const fan_app *app, const char *key)
{
    return json_object_get(app->config->snap->values, key);
}

/* Appends a declaration. Returns it, or NULL when out of memory. */
static fan__decl *add_decl(fan__config *cfg, const char *key, fan_config_type type)
{
    if (cfg->ndecls == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 16;
        fan__decl *grown = realloc(cfg->decls, cap * sizeof *grown);
        if (!grown)
            return NULL;
        cfg->decls = grown;
        cfg->cap = cap;
    }
    fan__decl *d = &cfg->decls[cfg->ndecls];
    d->key = strdup(key);
    d->env = fan__config_env_name(key);
    if (!d->key || !d->env) {
        free(d->key);
        free(d->env);
        return NULL;
    }
    d->type = type;
    d->def = NULL;
    cfg->ndecls++;
    return d;
}

static const char *type_name(fan_config_type type)
{
    static const char *const names[] = {"string", "integer", "number", "boolean",
                                        "array of strings"};
    return names[type];
}

int fan_app_declare_config(fan_app *app, const char *key, fan_config_type type, const char *def)
{
    fan__config *cfg = app->config;
    char why[256];
    if (!valid_key(key) || type < FAN_CONFIG_STRING || type > FAN_CONFIG_STRINGS) {
        fan_log(FAN_LOG_ERROR, "config: cannot declare '%s': malformed key or type", key);
        return FAN_EINVAL;
    }
    json_t *dv = def ? fan__config_parse_text(type, def, why, sizeof why) : NULL;
    if (def && !dv) {
        fan_log(FAN_LOG_ERROR, "config: default of key '%s': %s", key, why);
        return FAN_EINVAL;
    }
    fan__decl *d = (fan__decl *)fan__config_decl(cfg, key);
    if (d && d->type != type) {
        json_decref(dv);
        fan__config_fail(cfg, "config: key '%s' is declared as %s, then as %s", key,
                         type_name(d->type), type_name(type));
        return FAN_EINVAL;
    }
    if (!d && !(d = add_decl(cfg, key, type))) {
        json_decref(dv);
        return FAN_ENOMEM;
    }
    json_decref(d->def);
    d->def = dv;
    int rc = 0;
    const char *set = setting_of(app, key);
    json_t *sv = set ? fan__config_parse_text(type, set, why, sizeof why) : NULL;
    if (set && !sv) {
        fan__config_fail(cfg, "config: setting '%s': %s", key, why);
        rc = FAN_EINVAL;
    }
    json_decref(sv);
    json_object_del(cfg->env, key);
    if (fan__config_read_env(cfg, cfg->env, d) != 0)
        rc = FAN_EINVAL;
    int built = fan__config_rebuild(app);
    return rc ? rc : built;
}

int fan__config_init(fan_app *app)
{
    fan__config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return FAN_ENOMEM;
    app->config = cfg;
    cfg->file = json_object();
    cfg->env = json_object();
    if (!cfg->file || !cfg->env || fan__config_rebuild(app) != 0)
        return FAN_ENOMEM;
    /* The library's own keys; their defaults are documented in fanout.h. */
    static const struct {
        const char *key;
        fan_config_type type;
        const char *def;
    } own[] = {
        {"session.secrets", FAN_CONFIG_STRINGS, "[]"},
        {"session.cookie_name", FAN_CONFIG_STRING, "fanout_session"},
        {"session.max_age", FAN_CONFIG_INT, "1209600"},
        {"session.secure", FAN_CONFIG_BOOL, "true"},
        {"session.samesite", FAN_CONFIG_STRING, "Lax"},
        {"session.max_size", FAN_CONFIG_INT, "4096"},
        {"session.store", FAN_CONFIG_STRING, "cookie"},
        {"session.redis_down", FAN_CONFIG_STRING, "503"},
        {"redis.url", FAN_CONFIG_STRING, ""},
        {"redis.prefix", FAN_CONFIG_STRING, "fanout:"},
        {"redis.connect_timeout_ms", FAN_CONFIG_INT, "1000"},
        {"redis.command_timeout_ms", FAN_CONFIG_INT, "1000"},
        {"redis.max_in_flight", FAN_CONFIG_INT, "1024"},
        {"redis.backoff_max_ms", FAN_CONFIG_INT, "2000"},
        {"cache.shared", FAN_CONFIG_BOOL, "true"},
        {"cache.shared_max_entry_bytes", FAN_CONFIG_INT, "1048576"},
        {"ratelimit.rate", FAN_CONFIG_DOUBLE, "0"},
        {"ratelimit.burst", FAN_CONFIG_INT, "10"},
        {"ratelimit.key", FAN_CONFIG_STRING, "addr"},
        {"ratelimit.redis_down", FAN_CONFIG_STRING, "local"},
        {"ratelimit.max_local_keys", FAN_CONFIG_INT, "10000"},
        {"ratelimit.paths", FAN_CONFIG_STRINGS, "[\"/\"]"},
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (fan_app_declare_config(app, own[i].key, own[i].type, own[i].def) == FAN_ENOMEM)
            return FAN_ENOMEM;
    fan__cache_redis_register();
    return 0;
}

void fan__config_free(fan__config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->ndecls; i++) {
        free(cfg->decls[i].key);
        free(cfg->decls[i].env);
        json_decref(cfg->decls[i].def);
    }
    free(cfg->decls);
    json_decref(cfg->file);
    json_decref(cfg->env);
    free(cfg->path);
    free(cfg->error);
    fan__snap_release(cfg->snap);
    free(cfg);
}

/* Reads the file (if any) and the environment into new layers and, if both
 * are good, puts them in place. On failure the layers in use stay. */
static int load(fan_app *app, const char *path)
{
    fan__config *cfg = app->config;
    char *old_error = cfg->error;
    cfg->error = NULL;
    int rc = 0;
    json_t *file = path ? fan__config_read_file(cfg, path, &rc) : json_object();
    json_t *env = json_object();
    char *copy = path ? strdup(path) : NULL;
    if (rc == 0 && (!file || !env || (path && !copy)))
        rc = FAN_ENOMEM;
    if (rc == 0)
        rc = fan__config_read_env(cfg, env, NULL);
    json_t *old_file = cfg->file, *old_env = cfg->env;
    if (rc == 0) {
        cfg->file = file;
        cfg->env = env;
        if ((rc = fan__config_rebuild(app)) != 0) {
            cfg->file = old_file;
            cfg->env = old_env;
        }
    }
    if (rc != 0) {
        if (!cfg->error) /* out of memory: nothing was recorded yet */
            fan__config_fail(cfg, "config: %s", fan_strerror(rc));
        json_decref(file);
        json_decref(env);
        free(copy);
        free(old_error);
        return rc;
    }
    json_decref(old_file);
    json_decref(old_env);
    free(old_error);
    if (path) {
        free(cfg->path);
        cfg->path = copy;
    }
    return 0;
}

int fan_app_load_config(fan_app *app, const char *path)
{
    if (!path)
        return FAN_EINVAL;
    int rc = load(app, path);
    if (rc == 0)
        fan_log(FAN_LOG_INFO, "configuration loaded from %s", path);
    return rc;
}

int fan_app_reload_config(fan_app *app)
{
    /* load() replaces cfg->path with a copy of itself: read it again after. */
    int rc = load(app, app->config->path);
    const char *path = app->config->path;
    if (rc == 0)
        fan_log(FAN_LOG_INFO, "configuration reloaded%s%s", path ? " from " : "", path ? path : "");
    else
        fan_log(FAN_LOG_ERROR, "configuration not reloaded: the previous one stays in use");
    return rc;
}

const char *fan_app_config_error(const fan_app *app)
{
    return app->config->error;
}

int fan_app_set(fan_app *app, const char *key, const char *value)
{
    const fan__decl *d = fan__config_decl(app->config, key);
    char why[256];
    if (!value)
        value = "";
    json_t *v = d ? fan__config_parse_text(d->type, value, why, sizeof why) : NULL;
    if (d && !v) {
        fan_log(FAN_LOG_ERROR, "setting '%s': %s", key, why);
        return FAN_EINVAL;
    }
    json_decref(v);
    char *copy = strdup(value);
    fan__setting *s = app->settings;
    while (s && strcmp(s->key, key) != 0)
        s = s->next;
    if (!copy)
        return FAN_ENOMEM;
    if (!s) {
        if (!(s = calloc(1, sizeof *s)) || !(s->key = strdup(key))) {
            free(s);
            free(copy);
            return FAN_ENOMEM;
        }
        s->next = app->settings;
        app->settings = s;
    }
    free(s->value);
    s->value = copy;
    return fan__config_rebuild(app);
}

const char *fan_app_get(const fan_app *app, const char *key)
{
    return json_string_value(json_object_get(app->config->snap->texts, key));
}

/* The request's value of `key` and its text. */
static json_t *req_value(const fan_req *rq, const char *key, const char **text)
{
    fan__snap *s = fan__req_config(rq);
    *text = json_string_value(json_object_get(s->texts, key));
    return json_object_get(s->values, key);
}

const char *fan_config_str(const fan_req *rq, const char *key)
{
    const char *text;
    req_value(rq, key, &text);
    return text;
}

/* The value of `key` as `type`: the stored JSON when it already has that
 * type, else its text parsed as the type (a setting given as text). A new
 * reference, or NULL when there is none or it does not parse. */
static json_t *typed_value(const fan_req *rq, const char *key, fan_config_type type)
{
    const char *text;
    json_t *v = req_value(rq, key, &text);
    int ok = type == FAN_CONFIG_INT      ? json_is_integer(v)
             : type == FAN_CONFIG_DOUBLE ? json_is_number(v)
                                         : json_is_boolean(v);
    if (ok)
        return json_incref(v);
    char why[64];
    return text ? fan__config_parse_text(type, text, why, sizeof why) : NULL;
}

long long fan_config_int(const fan_req *rq, const char *key)
{
    json_t *n = typed_value(rq, key, FAN_CONFIG_INT);
    long long r = json_integer_value(n);
    json_decref(n);
    return r;
}

double fan_config_double(const fan_req *rq, const char *key)
{
    json_t *n = typed_value(rq, key, FAN_CONFIG_DOUBLE);
    double r = json_number_value(n);
    json_decref(n);
    return r;
}

int fan_config_bool(const fan_req *rq, const char *key)
{
    json_t *b = typed_value(rq, key, FAN_CONFIG_BOOL);
    int r = json_is_true(b);
    json_decref(b);
    return r;
}

const char *fan_config_strings(const fan_req *rq, const char *key, size_t index)
{
    const char *text;
    json_t *v = req_value(rq, key, &text);
    return json_is_array(v) ? json_string_value(json_array_get(v, index)) : NULL;
}
