/* The application context, internal to libfanout: the configuration store,
 * the per-request context of the app layer (pinned configuration, session,
 * parsed cookies and JSON body), sessions and the signed-cookie codec. The
 * public contract is include/fanout.h. */
#ifndef FAN_APP_APP_H
#define FAN_APP_APP_H

#include <stddef.h>

#include "http/request.h"

typedef struct fan__setting {
    char *key, *value;
    struct fan__setting *next;
} fan__setting;

/* An application. It begins with what the server needs of it (fan__site:
 * limits, routes, address, hooks), so a fan_app * is a fan__site *; the
 * rest is the app layer's. */
struct fan_app {
    fan__site site;
    fan__setting *settings;        /* fan_app_set() and --set */
    struct fan__config *config;    /* declared keys, layers, snapshot (config.c) */
    void *data;                    /* the program's own pointer */
    fan_reload_fn reload;          /* fan_app_on_reload(), called by the master */
    void *reload_arg;
    struct fan__upstreams *upstreams; /* TLS files, per-origin options (upstream.c) */
    int client_cert_unchecked;        /* --client-cert/--client-key given, not checked yet */
    /* fan_app_set_admin() (observe.c): the admin listener, served by src/server */
    char *admin_host;                 /* NULL for 127.0.0.1 */
    int admin_port;                   /* 0: none; -1: a free port */
    char *admin_token;                /* NULL for none */
    unsigned admin_max_series;
    char *otlp_endpoint;              /* fan_app_set_otlp(), NULL for none */
    unsigned otlp_max_queued;
};

/* --server-timing, --trace-context, --metrics, --server-timing-max-entries,
 * --admin-port, --admin-addr, --admin-token, --metrics-max-series,
 * --otlp-endpoint, --otlp-max-queued-spans (observe.c). Returns 1 if consumed, 0 if not one of these, or FAN_EINVAL
 * (logged) / FAN_ENOMEM. */
int fan__observe_option(fan_app *app, int argc, char **argv, int *argi);

/* Applies the value of --origin (upstream.c). Returns 0 or FAN_EINVAL
 * (logged). */
int fan__origin_option(fan_app *app, const char *value);

/* Records --client-cert (is_key 0) or --client-key as given, to be checked
 * as a pair by fan__app_check_upstreams(). Returns 0 or FAN_ENOMEM. */
int fan__client_cert_option(fan_app *app, int is_key, const char *path);

/* Checks what the options recorded unchecked (the client certificate and
 * key) as fan_app_set_client_cert() does. Returns 0, FAN_EINVAL (logged) or
 * FAN_ENOMEM. fan_main() and fan_serve() call it. */
int fan__app_check_upstreams(fan_app *app);

/* Parses a whole number up to `max` given to `flag`; logs what is wrong
 * otherwise. Returns 0 or FAN_EINVAL (options.c). */
int fan__parse_number(const char *flag, const char *s, unsigned long long max,
                      unsigned long long *out);

/* The per-request store (store.c). */
typedef struct fan__stored {
    const char *key;
    void *value;
    void (*destroy)(void *value);
    struct fan__stored *next;
} fan__stored;

/* ------------------------------------------------------------------------ */
/* Configuration (config.c, config_parse.c)                                 */
/* ------------------------------------------------------------------------ */

/* One declared key. */
typedef struct fan__decl {
    char *key;
    char *env;            /* its override variable: FANOUT_SECTION_KEY */
    fan_config_type type;
    json_t *def;          /* the default, or NULL for none */
} fan__decl;

/* An immutable view of every value: what a request reads. A request pins
 * the snapshot it first read, so a reload never changes (or frees) values
 * under a running handler. */
typedef struct fan__snap {
    unsigned refs;
    json_t *values;       /* key -> typed value (settings are strings) */
    json_t *texts;        /* key -> the value as text, for fan_config_str() */
    /* What every request reads, looked up once per snapshot. */
    double ratelimit_rate;     /* "ratelimit.rate" */
    const char *session_store; /* "session.store", held by texts */
} fan__snap;

/* The layers of the configuration, lowest priority first: declared
 * defaults, the file, FANOUT_* variables, then fan_app_set()/--set (kept in
 * app->settings as text). */
typedef struct fan__config {
    fan__decl *decls;
    size_t ndecls, cap;
    json_t *file;         /* key -> value read from the file, checked */
    json_t *env;          /* key -> value parsed from the environment */
    char *path;           /* the file loaded, re-read by fan_app_reload_config() */
    char *error;          /* the last error message, or NULL */
    fan__snap *snap;      /* the current values */
} fan__config;

/* Creates the store and declares the library's own keys (session.*). Returns
 * 0 or FAN_ENOMEM; a bad environment override is recorded as the config
 * error, not returned, so that fan_main() can refuse to start. */
int fan__config_init(fan_app *app);
void fan__config_free(fan__config *cfg);

/* The declaration of `key`, or NULL. */
const fan__decl *fan__config_decl(const fan__config *cfg, const char *key);

/* Logs an error of the configuration, and keeps it as the configuration
 * error unless one is kept already (the first error of a load is the one to
 * show). */
void fan__config_fail(fan__config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rebuilds the current snapshot from the layers. Returns 0 or FAN_ENOMEM
 * (the old snapshot is then kept). */
int fan__config_rebuild(fan_app *app);

/* The value of `key` in the app's current snapshot (borrowed), or NULL. */
json_t *fan__config_get(const fan_app *app, const char *key);

void fan__snap_release(fan__snap *s);

/* Parses the text of an override or a default as `type`. Returns a new
 * reference, or NULL with a description of the problem in `why`. */
json_t *fan__config_parse_text(fan_config_type type, const char *text, char *why, size_t whylen);

/* `v` as a value of `type` (a new reference; integers become reals for
 * FAN_CONFIG_DOUBLE), or NULL when it does not fit, with `why` saying what
 * was expected and what was found. */
json_t *fan__config_coerce(fan_config_type type, json_t *v, char *why, size_t whylen);

/* Reads a configuration file into a flat object (key -> value) of declared
 * keys with the right types. Returns it, or NULL after logging every error
 * and recording the first one, with *rc set to FAN_EINVAL (syntax, unknown
 * key, type), FAN_EIO (unreadable) or FAN_ENOMEM. */
json_t *fan__config_read_file(fan__config *cfg, const char *path, int *rc);

/* Reads the FANOUT_* override of every declared key (or of `only`, if not
 * NULL) into `into`. Returns 0, or FAN_EINVAL after logging and recording
 * every bad value. */
int fan__config_read_env(fan__config *cfg, json_t *into, const fan__decl *only);

/* The variable that overrides `key`: "FANOUT_" and the key in upper case,
 * with '.' and '-' written '_'. Malloc'ed; NULL when out of memory. */
char *fan__config_env_name(const char *key);

/* ------------------------------------------------------------------------ */
/* The app layer's per-request state (context.c)                            */
/* ------------------------------------------------------------------------ */

typedef struct fan__session {
    json_t *data;         /* object of strings; NULL until loaded */
    const char *id;       /* session.store "redis": the session's id, NULL for none yet */
    int unavailable;      /* session.store "redis": Redis failed when loading it */
    char *set_cookie;     /* the Set-Cookie value to send, once changed */
    int changed;
    int incoming;         /* the client sent a session cookie, valid or not */
} fan__session;

typedef struct fan__reqctx {
    fan__snap *config;    /* pinned at the first configuration read */
    fan__session session;
    fan__header *cookies; /* parsed Cookie headers, NULL until parsed */
    unsigned ncookies;
    int cookies_parsed;
    json_t *json;         /* the parsed JSON body */
    json_error_t *json_error; /* where parsing the body failed (arena), NULL before */
    int json_parsed;
} fan__reqctx;

/* The request's app-layer state, created on first use and freed with the
 * request. NULL when out of memory. Requests are never really const: the
 * accessors that take a const fan_req still cache what they parse. */
fan__reqctx *fan__ctx(const fan_req *rq);

/* The configuration snapshot of the request (pinned on first use), or the
 * app's current one when out of memory. Never NULL. */
fan__snap *fan__req_config(const fan_req *rq);

/* Formats a Set-Cookie value into the request's arena (helpers.c). Returns
 * 0, FAN_EINVAL for a bad name, value or attribute, or FAN_ENOMEM. */
int fan__cookie_format(fan_req *rq, const char *name, const char *value,
                       const fan_cookie_opts *opts, char **out);

/* ------------------------------------------------------------------------ */
/* Sessions (session.c) and signed values (signed.c)                        */
/* ------------------------------------------------------------------------ */

/* Sets the Set-Cookie header if the session changed. */
void fan__session_commit(fan_req *rq);

/* The configured secrets that are not empty, in the request's arena. */
size_t fan__session_secrets(fan_req *rq, const char ***out);

/* The cookie attributes from the configuration. Returns 0, or FAN_EINVAL
 * with a log line for a value the cookie cannot have. */
int fan__session_cookie_opts(fan_req *rq, fan_cookie_opts *o);

enum { FAN__SESSION_SET, FAN__SESSION_DELETE, FAN__SESSION_CLEAR };

/* The Set-Cookie value of the session: `payload` signed with the first
 * secret, expiring in session.max_age, or a cookie that deletes the session
 * when payload is NULL. Returns 0, FAN_ETOOLARGE beyond session.max_size,
 * FAN_ESTATE without a secret, FAN_EINVAL (a bad setting, logged) or
 * FAN_ENOMEM. */
int fan__session_cookie(fan_req *rq, const char *payload, char **out);

/* 1 if session.store is "redis" (session_redis.c). */
int fan__session_in_redis(fan_req *rq);

/* Loads the session whose signed id is `cookie` from Redis into s->data
 * (awaits). A bad or expired cookie gives an empty session with a warning;
 * Redis failing sets s->unavailable, logged, with an empty session. */
void fan__session_redis_load(fan_req *rq, fan__session *s, const char *cookie);

/* Writes the change (op SET, DELETE or CLEAR of session.c, giving the
 * session `next`) to Redis, making an id and its cookie for a new session.
 * Returns 0 with the Set-Cookie value to send in *cookie (NULL when none
 * changes), or FAN_ETOOLARGE, FAN_ESTATE (no secret), FAN_EINVAL, FAN_ENOMEM
 * or the Redis command's error (FAN_ECONNREFUSED, FAN_ETIMEDOUT, ...). */
int fan__session_redis_write(fan_req *rq, fan__session *s, int op, const char *key,
                             const char *value, json_t *next, char **cookie);

/* The app's first before-request hook: the rate limit (ratelimit.c), then
 * the session of a request that carries one, loaded from Redis with
 * session.store "redis", so that session.redis_down "503" answers before
 * the handler runs. */
void fan__app_gate(fan_req *rq);

/* Checks the rate limit of the request (ratelimit.c); replies 429 (or 503
 * with ratelimit.redis_down "deny") and returns 1 when it is refused. */
int fan__ratelimit_check(fan_req *rq);

/* The length of the unpadded base64url encoding of n bytes. */
size_t fan__b64url_len(size_t n);

/* Encodes n bytes as unpadded base64url into out (fan__b64url_len(n) + 1
 * bytes, NUL-terminated). */
void fan__b64url_encode(const void *in, size_t n, char *out);

/* Decodes unpadded base64url text of length n into out (at least n * 3 / 4
 * bytes). Returns the decoded length, or -1 for a character outside the
 * alphabet, padding, an impossible length or non-zero trailing bits (so each
 * value has exactly one encoding). */
long fan__b64url_decode(const char *in, size_t n, unsigned char *out);

enum {
    FAN__SIGNED_OK = 0,
    FAN__SIGNED_MALFORMED = -1, /* not three base64url parts of the right sizes */
    FAN__SIGNED_FORGED = -2,    /* the signature matches no secret */
    FAN__SIGNED_EXPIRED = -3,   /* signed, but its expiry has passed */
};

/* Signs `payload` valid until `expires` (Unix seconds; beyond 18 digits it
 * is cut to 999999999999999999, the latest expiry fan__signed_decode()
 * reads) with `secret`: base64url(payload) "." base64url(expiry in decimal)
 * "." base64url(HMAC). Returns a malloc'ed string, or NULL when out of
 * memory (a len beyond SIZE_MAX / 2 included). */
char *fan__signed_encode(const char *payload, size_t len, long long expires, const char *secret);

/* Verifies `value` against every secret and its expiry against `now`.
 * Returns FAN__SIGNED_OK with the payload in *payload (malloc'ed,
 * NUL-terminated) and its length in *len, or one of the FAN__SIGNED_*
 * errors. */
int fan__signed_decode(const char *value, const char *const *secrets, size_t nsecrets,
                       long long now, char **payload, size_t *len);

/* A short description of a FAN__SIGNED_* error, for logs. */
const char *fan__signed_strerror(int rc);

/* ------------------------------------------------------------------------ */
/* Redis (redis.c), sessions in Redis (session_redis.c), rate limits         */
/* (ratelimit.c)                                                            */
/* ------------------------------------------------------------------------ */

struct fan__redis_opts;

/* The redis.* settings of the request's configuration. */
void fan__redis_opts_of(fan_req *rq, struct fan__redis_opts *o);

/* Makes Redis the response cache's shared tier, for the apps whose
 * redis.url is set and cache.shared on (cache_redis.c). */
void fan__cache_redis_register(void);

/* 1 if redis.url is set. */
int fan__redis_on(fan_req *rq);

#endif
