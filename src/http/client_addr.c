/* The client of a request: the connection's peer (read once, and written
 * as text for log lines), or, when the peer is a trusted proxy, the address
 * it forwarded in X-Forwarded-For or Forwarded (RFC 7239); and the
 * trusted-proxies setting that decides between them.
 * Both headers are read from the right, the end a trusted proxy appended
 * to: what lies left of the first address that is not trusted was written
 * by the client, and is never looked at. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/token.h"
#include "http/http.h"

/* An address: 4 bytes for AF_INET, 16 for AF_INET6. */
typedef struct ip {
    int family;
    unsigned char b[16];
} ip;

struct fan__cidr {
    ip net;
    unsigned bits;
};

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ::ffff:a.b.c.d is a.b.c.d: what a dual-stack listener sees of an IPv4
 * client, and what "127.0.0.1" in the setting must match. */
static void unmap(ip *a)
{
    if (a->family == AF_INET6 && memcmp(a->b, v4_mapped, 12) == 0) {
        memmove(a->b, a->b + 12, 4);
        a->family = AF_INET;
    }
}

/* Parses s[0..len) as a numeric IPv4 or IPv6 address (no brackets). */
static int parse_ip(const char *s, size_t len, ip *out)
{
    char buf[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->b) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, out->b) == 1)
        out->family = AF_INET6;
    else
        return -1;
    unmap(out);
    return 0;
}

static int same_ip(const ip *a, const ip *b)
{
    return a->family == b->family && memcmp(a->b, b->b, a->family == AF_INET ? 4 : 16) == 0;
}

static int in_net(const ip *a, const struct fan__cidr *n)
{
    if (a->family != n->net.family)
        return 0;
    unsigned full = n->bits / 8, rest = n->bits % 8;
    if (memcmp(a->b, n->net.b, full) != 0)
        return 0;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return rest == 0 || (a->b[full] & mask) == n->net.b[full];
}

static int trusted(const fan__site *site, const ip *a)
{
    for (size_t i = 0; i < site->ntrusted; i++)
        if (in_net(a, &site->trusted[i]))
            return 1;
    return 0;
}

/* Parses "ADDR" or "ADDR/BITS". Returns 0, or -1 with the reason in *why. */
static int parse_cidr(const char *s, size_t len, struct fan__cidr *out, const char **why)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    if (parse_ip(s, alen, &out->net) != 0) {
        *why = "not a numeric IPv4 or IPv6 address";
        return -1;
    }
    unsigned max = out->net.family == AF_INET ? 32 : 128, bits = max;
    if (slash) {
        const char *p = slash + 1, *end = s + len;
        bits = 0;
        if (p == end || end - p > 3) {
            *why = "the prefix length is not a number";
            return -1;
        }
        for (; p < end; p++) {
            if (*p < '0' || *p > '9') {
                *why = "the prefix length is not a number";
                return -1;
            }
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        /* "::ffff:10.0.0.0/104" was unmapped to 10.0.0.0: its prefix too. */
        if (out->net.family == AF_INET && memchr(s, ':', alen)) {
            if (bits < 96) {
                *why = "an IPv4-mapped prefix shorter than 96 bits";
                return -1;
            }
            bits -= 96;
        }
    }
    if (bits > max) {
        *why = "the prefix length is too long";
        return -1;
    }
    out->bits = bits;
    struct fan__cidr masked = *out;
    memset(masked.net.b, 0, sizeof masked.net.b);
    unsigned full = bits / 8;
    memcpy(masked.net.b, out->net.b, full);
    if (bits % 8)
        masked.net.b[full] = out->net.b[full] & (unsigned char)(0xff << (8 - bits % 8));
    if (!same_ip(&masked.net, &out->net)) {
        /* "10.1.0.0/8": a typo for /16 would trust a whole /8. */
        *why = "the address has bits set beyond its prefix";
        return -1;
    }
    return 0;
}

int fan_app_set_trusted_proxies(fan_app *app, const char *list)
{
    fan__site *site = fan__site_of(app);
    size_t n = 0, cap = 1;
    for (const char *p = list ? list : ""; *p; p++)
        cap += *p == ',';
    struct fan__cidr *nets = calloc(cap, sizeof *nets);
    if (!nets)
        return FAN_ENOMEM;
    for (const char *p = list ? list : ""; *p;) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        const char *why = NULL;
        if (s < e && parse_cidr(s, (size_t)(e - s), &nets[n++], &why) != 0) {
            fan_log(FAN_LOG_ERROR, "trusted proxies: '%.*s': %s", (int)(e - s), s, why);
            free(nets);
            return FAN_EINVAL;
        }
        p += len + (p[len] == ',');
    }
    free(site->trusted);
    site->trusted = n ? nets : NULL;
    site->ntrusted = n;
    if (!n)
        free(nets);
    return 0;
}

void fan__conn_read_peer(fan__conn *c)
{
    int len = sizeof c->peer;
    /* An address longer than the union (not IPv4 or IPv6) comes back cut,
     * its family intact: an unknown peer. */
    if (uv_tcp_getpeername(&c->tcp, &c->peer.sa, &len) != 0)
        c->peer.sa.sa_family = AF_UNSPEC;
}

const char *fan__conn_peer_name(const fan__conn *c, char *buf, size_t size)
{
    int rc = -1;
    if (c->peer.sa.sa_family == AF_INET)
        rc = uv_ip4_name(&c->peer.in, buf, size);
    else if (c->peer.sa.sa_family == AF_INET6)
        rc = uv_ip6_name(&c->peer.in6, buf, size);
    if (rc != 0 && size)
        snprintf(buf, size, "?");
    return buf;
}

/* A node of a forwarded chain: an address, or one a proxy did not give
 * ("unknown", an obfuscated "_name" of RFC 7239), or a malformed one. */
enum { NODE_IP, NODE_HIDDEN, NODE_BAD };

typedef struct node {
    int kind;
    ip ip;
    int port; /* 0 if not given */
} node;

/* The result of reading one of the two headers. */
enum { CHAIN_ABSENT, CHAIN_FOUND, CHAIN_MALFORMED };

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* One element of X-Forwarded-For: an IPv4 or IPv6 address, the latter
 * possibly in brackets. No port: the header has no syntax for one. */
static node xff_node(const char *s, size_t len)
{
    node n = {NODE_BAD, {0, {0}}, 0};
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
        if (!memchr(s, ':', len)) /* "[1.2.3.4]" */
            return n;
    }
    if (parse_ip(s, len, &n.ip) == 0)
        n.kind = NODE_IP;
    return n;
}

/* Walks X-Forwarded-For, every line of it as one list (RFC 9110 5.3), from
 * the right to the first address that is not trusted: the client. When all
 * are trusted, the left-most is. *bad is set to the element that did not
 * parse, if one was reached. */
static int walk_xff(const fan_req *rq, node *client, const char **bad, size_t *badlen)
{
    int found = 0;
    for (unsigned i = rq->nheaders; i-- > 0;) {
        if (strcasecmp(rq->headers[i].name, "X-Forwarded-For") != 0)
            continue;
        const char *v = rq->headers[i].value;
        const char *end = v + strlen(v);
        for (;;) {
            const char *start = end;
            while (start > v && start[-1] != ',')
                start--;
            const char *s = start, *e = end;
            while (s < e && is_space(*s))
                s++;
            while (e > s && is_space(e[-1]))
                e--;
            if (s < e) { /* empty list elements are allowed, and skipped */
                node n = xff_node(s, (size_t)(e - s));
                if (n.kind == NODE_BAD) {
                    *bad = s;
                    *badlen = (size_t)(e - s);
                    return CHAIN_MALFORMED;
                }
                *client = n;
                found = 1;
                if (!trusted(fan__site_of(rq->app), &n.ip))
                    return CHAIN_FOUND;
            }
            if (start == v)
                break;
            end = start - 1;
        }
    }
    return found ? CHAIN_FOUND : CHAIN_ABSENT;
}

/* "_" and letters, digits, '.', '_', '-': an obfuscated node or port. */
static int obfuscated(const char *s, size_t len)
{
    if (len < 2 || s[0] != '_')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z') || strchr("._-", s[i])))
            return 0;
    return 1;
}

/* The node of a for= value (unquoted): IPv4, "[IPv6]", "unknown" or an
 * obfuscated name, then optionally ":" and a port or an obfuscated port. */
static node forwarded_node(const char *s, size_t len)
{
    node n = {NODE_BAD, {0, {0}}, 0};
    const char *end = s + len, *colon;
    int hidden = 0;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || parse_ip(s + 1, (size_t)(close - s - 1), &n.ip) != 0 ||
            !memchr(s + 1, ':', (size_t)(close - s - 1)))
            return n;
        colon = close + 1;
        if (colon < end && *colon != ':')
            return n;
    } else {
        colon = memchr(s, ':', len);
        size_t nlen = colon ? (size_t)(colon - s) : len;
        if ((nlen == 7 && strncasecmp(s, "unknown", 7) == 0) || obfuscated(s, nlen))
            hidden = 1;
        else if (parse_ip(s, nlen, &n.ip) != 0) /* IPv6 must be in brackets: nlen has no ':' */
            return n;
        if (!colon)
            colon = end;
    }
    if (colon < end) {
        const char *p = colon + 1;
        size_t plen = (size_t)(end - p);
        if (!obfuscated(p, plen)) {
            if (plen == 0 || plen > 5 || strspn(p, "0123456789") < plen)
                return n;
            long port = strtol(p, NULL, 10);
            if (port > 65535)
                return n;
            n.port = (int)port;
        }
    }
    n.kind = hidden ? NODE_HIDDEN : NODE_IP;
    if (hidden)
        n.port = 0;
    return n;
}

/* Reads a quoted-string at *p (which is at the opening quote) into out
 * (cap bytes, with room for a NUL after *len), unescaped, and moves *p past
 * it. Returns 0, or -1 when it is unterminated or too long. */
static int quoted(const char **p, const char *end, char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    for (const char *q = *p + 1; q < end; q++) {
        if (*q == '"') {
            *p = q + 1;
            *len = n;
            return 0;
        }
        if (*q == '\\' && ++q == end)
            break;
        if (n + 1 >= cap)
            return -1;
        out[n++] = *q;
    }
    return -1;
}

/* Parses one forwarded-element, s[0..len): pairs token=value joined by
 * ';', where `for` must occur exactly once. */
static node forwarded_element(const char *s, size_t len)
{
    node bad = {NODE_BAD, {0, {0}}, 0}, n = bad;
    const char *p = s, *end = s + len;
    int have_for = 0;
    while (p < end) {
        while (p < end && is_space(*p))
            p++;
        size_t nlen = fan__token_span(p, (size_t)(end - p));
        const char *name = p;
        p += nlen;
        if (nlen == 0 || p == end || *p++ != '=')
            return bad;
        char value[128];
        size_t vlen;
        if (p < end && *p == '"') {
            if (quoted(&p, end, value, sizeof value, &vlen) != 0)
                return bad;
        } else {
            vlen = fan__token_span(p, (size_t)(end - p));
            if (vlen == 0 || vlen >= sizeof value)
                return bad;
            memcpy(value, p, vlen);
            p += vlen;
        }
        value[vlen] = '\0'; /* forwarded_node() reads the port with strspn() */
        while (p < end && is_space(*p))
            p++;
        if (p < end && *p++ != ';')
            return bad;
        if (nlen == 3 && strncasecmp(name, "for", 3) == 0) {
            if (have_for)
                return bad;
            have_for = 1;
            n = forwarded_node(value, vlen);
        }
    }
    return have_for ? n : bad;
}

/* The end of the element that starts at s: the next ',' outside a
 * quoted-string, or `end` (an unterminated string runs to it). */
static const char *element_end(const char *s, const char *end)
{
    int in_quotes = 0;
    for (; s < end; s++) {
        if (in_quotes && *s == '\\' && s + 1 < end)
            s++;
        else if (*s == '"')
            in_quotes = !in_quotes;
        else if (*s == ',' && !in_quotes)
            return s;
    }
    return end;
}

/* One element per slot, for walking them from the right. */
typedef struct span {
    const char *s;
    size_t len;
} span;

/* Splits every Forwarded line into its elements, in order, into the arena.
 * Returns their number, or -1 when out of memory. */
static long forwarded_elements(fan_req *rq, span **out)
{
    size_t n = 0, cap = 0;
    span *v = NULL;
    for (unsigned i = 0; i < rq->nheaders; i++) {
        if (strcasecmp(rq->headers[i].name, "Forwarded") != 0)
            continue;
        const char *p = rq->headers[i].value, *end = p + strlen(p);
        for (const char *e;; p = e + 1) {
            e = element_end(p, end);
            const char *s = p, *t = e;
            while (s < t && is_space(*s))
                s++;
            while (t > s && is_space(t[-1]))
                t--;
            if (s < t && n == cap) {
                cap = cap ? cap * 2 : 8;
                span *grown = fan__arena_alloc(&rq->rt.arena, cap * sizeof *grown);
                if (!grown)
                    return -1;
                if (n)
                    memcpy(grown, v, n * sizeof *v);
                v = grown;
            }
            if (s < t) /* empty list elements are allowed, and skipped */
                v[n++] = (span){s, (size_t)(t - s)};
            if (e == end)
                break;
        }
    }
    *out = v;
    return (long)n;
}

/* Walks Forwarded as walk_xff() walks X-Forwarded-For; a hidden node
 * reached is the client (unknown). */
static int walk_forwarded(fan_req *rq, node *client, const char **bad, size_t *badlen)
{
    span *el;
    long n = forwarded_elements(rq, &el);
    if (n < 0)
        return CHAIN_MALFORMED; /* out of memory: believe nothing */
    for (long i = n - 1; i >= 0; i--) {
        node nd = forwarded_element(el[i].s, el[i].len);
        if (nd.kind == NODE_BAD) {
            *bad = el[i].s;
            *badlen = el[i].len;
            return CHAIN_MALFORMED;
        }
        *client = nd;
        if (nd.kind == NODE_HIDDEN || !trusted(fan__site_of(rq->app), &nd.ip))
            return CHAIN_FOUND;
    }
    return n ? CHAIN_FOUND : CHAIN_ABSENT;
}

/* The peer as a node, with its port. */
static node peer_node(const fan__peer_addr *ss)
{
    node n = {NODE_HIDDEN, {0, {0}}, 0};
    if (ss->sa.sa_family == AF_INET) {
        const struct sockaddr_in *a = &ss->in;
        n.ip.family = AF_INET;
        memcpy(n.ip.b, &a->sin_addr, 4);
        n.port = ntohs(a->sin_port);
        n.kind = NODE_IP;
    } else if (ss->sa.sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = &ss->in6;
        n.ip.family = AF_INET6;
        memcpy(n.ip.b, &a->sin6_addr, 16);
        n.port = ntohs(a->sin6_port);
        n.kind = NODE_IP;
        unmap(&n.ip);
    }
    return n; /* a Unix socket handed to the server: unknown */
}

static void ignored(const char *header, const char *peer, const char *why, const char *at,
                    size_t len)
{
    fan_log(FAN_LOG_DEBUG, "client address: %s from trusted proxy %s %s%s%.*s%s: ignored", header,
            peer ? peer : "?", why, at ? " at '" : "", (int)(len > 64 ? 64 : len), at ? at : "",
            at ? (len > 64 ? "...'" : "'") : "");
}

static const char *ip_text(fan_req *rq, const ip *a)
{
    char buf[INET6_ADDRSTRLEN];
    if (!inet_ntop(a->family, a->b, buf, sizeof buf))
        return NULL;
    return fan__arena_strdup(&rq->rt.arena, buf);
}

/* Works out the client once: the peer, unless it is a trusted proxy and
 * what it forwarded can be read. When both headers are there they must
 * name the same client: a proxy appends to one of them and passes the
 * other on as the client wrote it, so a disagreement means one of them is
 * the client's word, and neither is believed. */
static void resolve(fan_req *rq)
{
    fan__client *cl = &rq->client;
    cl->resolved = 1;
    node peer = peer_node(&cl->peer), client = peer;
    const char *peer_text = peer.kind == NODE_IP ? ip_text(rq, &peer.ip) : NULL;
    if (peer.kind == NODE_IP && fan__site_of(rq->app)->ntrusted &&
        trusted(fan__site_of(rq->app), &peer.ip)) {
        node x, f;
        const char *at = NULL;
        size_t len = 0;
        int xr = walk_xff(rq, &x, &at, &len);
        if (xr == CHAIN_MALFORMED)
            ignored("X-Forwarded-For", peer_text, "is malformed", at, len);
        at = NULL;
        int fr = walk_forwarded(rq, &f, &at, &len);
        if (fr == CHAIN_MALFORMED)
            ignored("Forwarded", peer_text, "is malformed", at, len);
        if (xr == CHAIN_FOUND && fr == CHAIN_FOUND) {
            if (f.kind == NODE_IP && same_ip(&x.ip, &f.ip))
                client = f;
            else
                ignored("X-Forwarded-For and Forwarded", peer_text, "name different clients", NULL,
                        0);
        } else if (xr == CHAIN_FOUND) {
            client = x;
            client.port = 0;
        } else if (fr == CHAIN_FOUND) {
            client = f;
        }
    }
    if (client.kind != NODE_IP) {
        cl->addr = NULL;
        cl->port = 0;
        return;
    }
    cl->addr = same_ip(&client.ip, &peer.ip) ? peer_text : ip_text(rq, &client.ip);
    cl->port = client.port;
}

const char *fan_req_client_addr(const fan_req *rq)
{
    if (!rq->client.resolved)
        resolve((fan_req *)rq); /* cached, as the app layer caches what it parses */
    return rq->client.addr;
}

int fan_req_client_port(const fan_req *rq)
{
    if (!rq->client.resolved)
        resolve((fan_req *)rq);
    return rq->client.port;
}
