/* The lean transport's pools: one per upstream origin, found by the URL's
 * authority, parsed once with curl's URL API, its name resolved again once
 * the last answer is older than dns_ttl_ms. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "client/lean.h"

void fan__lean_pool_free(pool *p)
{
    free(p->authority);
    free(p->host);
    free(p->hostport);
    free(p);
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    pool *p = req->data;
    p->resolving = NULL;
    free(req);
    if (p->dead) {
        uv_freeaddrinfo(res);
        fan__lean_pool_free(p);
        return;
    }
    p->resolved_at = uv_now(fan__loop());
    struct sockaddr_storage addrs[FAN__LEAN_MAX_ADDRS];
    unsigned n = 0;
    memset(addrs, 0, sizeof addrs);
    for (struct addrinfo *ai = status == 0 ? res : NULL; ai && n < FAN__LEAN_MAX_ADDRS;
         ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof addrs[0])
            continue;
        memcpy(&addrs[n], ai->ai_addr, ai->ai_addrlen);
        /* sin_port and sin6_port sit at the same offset. */
        ((struct sockaddr_in *)&addrs[n])->sin_port = htons((uint16_t)p->port);
        n++;
    }
    if (n) {
        char name[64] = "";
        uv_ip_name((struct sockaddr *)&addrs[0], name, sizeof name);
        int moved = p->resolved && (n != p->naddrs || memcmp(addrs, p->addrs, n * sizeof addrs[0]));
        if (moved) {
            /* New connections go to the new addresses, and those to the old
             * ones are not reused. */
            p->generation++;
            p->current = 0;
            fan__lean_drop_idle(p);
        }
        fan_log(moved ? FAN_LOG_INFO : FAN_LOG_DEBUG, "lean: %s %sresolves to %s (%u address%s)",
                p->host, moved ? "now " : "", name, n, n > 1 ? "es" : "");
        memcpy(p->addrs, addrs, sizeof addrs);
        p->naddrs = n;
        p->resolved = 1;
    } else if (p->resolved) {
        fan_log(FAN_LOG_WARN, "lean: %s could not be resolved again (%s): keeping its address",
                p->host, uv_strerror(status));
    }
    uv_freeaddrinfo(res);
    while (!fan__list_empty(&p->waiting)) {
        lcall *lc = fan__container_of(p->waiting.next, lcall, link);
        fan__list_remove(&lc->link);
        if (p->resolved)
            fan__lean_dispatch(lc);
        else
            fan__lean_finish(lc, status == UV_ECANCELED ? FAN_ECANCELED : FAN_EDNS);
    }
}

int fan__lean_resolve(pool *p)
{
    struct sockaddr_storage a;
    if (uv_ip4_addr(p->host, p->port, (struct sockaddr_in *)&a) == 0 ||
        uv_ip6_addr(p->host, p->port, (struct sockaddr_in6 *)&a) == 0) {
        p->addrs[0] = a;
        p->naddrs = 1;
        p->resolved = p->numeric = 1;
        return 0;
    }
    uv_getaddrinfo_t *req = malloc(sizeof *req);
    if (!req)
        return FAN_ENOMEM;
    req->data = p;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(fan__loop(), req, resolved, p->host, NULL, &hints);
    if (rc < 0) {
        free(req);
        return FAN_EDNS;
    }
    p->resolving = req;
    return 0;
}

/* A pool per origin: the authority of the URL ("host:port") is the key, so
 * the URL parser runs once per upstream, not once per call. */
pool *fan__lean_find_pool(const char *authority, size_t len)
{
    for (pool *p = fan__lean->pools; p; p = p->next)
        if (strlen(p->authority) == len && memcmp(p->authority, authority, len) == 0)
            return p;
    return NULL;
}

/* Parses "http://<authority>/" with curl's URL parser and makes its pool. */
int fan__lean_new_pool(const char *authority, size_t len, pool **out)
{
    char *url = malloc(len + 9);
    CURLU *u = curl_url();
    char *h = NULL, *port = NULL;
    int rc = FAN_EINVAL;
    pool *p = NULL;
    if (!url || !u) {
        rc = FAN_ENOMEM;
        goto out;
    }
    sprintf(url, "http://%.*s/", (int)len, authority);
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    size_t hl = strlen(h);
    rc = FAN_ENOMEM;
    if (!(p = calloc(1, sizeof *p)))
        goto out;
    p->port = (int)strtol(port, NULL, 10);
    /* An IPv6 literal comes bracketed: the socket address wants it bare. */
    p->host = hl > 2 && h[0] == '[' ? strndup(h + 1, hl - 2) : strdup(h);
    p->authority = strndup(authority, len);
    p->hostport = malloc(hl + 8);
    if (!p->host || !p->authority || !p->hostport) {
        free(p->host);
        free(p->authority);
        free(p->hostport);
        free(p);
        p = NULL;
        goto out;
    }
    if (p->port == 80)
        sprintf(p->hostport, "%s", h);
    else
        sprintf(p->hostport, "%s:%d", h, p->port);
    fan__list_init(&p->idle);
    fan__list_init(&p->waiting);
    p->next = fan__lean->pools;
    fan__lean->pools = p;
    rc = 0;
out:
    free(url);
    curl_free(h);
    curl_free(port);
    curl_url_cleanup(u);
    *out = p;
    return rc;
}

/* Splits an http:// URL into its authority and its request target (path and
 * query, without a fragment). A target with a space or a control character
 * is refused, as curl's parser would. */
int fan__lean_split_url(const char *url, const char **auth, size_t *auth_len, const char **target,
                     size_t *target_len)
{
    const char *a = url + 7; /* after "http://", checked by the caller */
    size_t alen = strcspn(a, "/?#");
    const char *t = a + alen;
    size_t tlen = strcspn(t, "#");
    if (alen == 0 || memchr(a, '@', alen))
        return FAN_EINVAL; /* no host, or credentials: curl's business */
    *auth = a;
    *auth_len = alen;
    *target = t;
    *target_len = tlen;
    return 0;
}

