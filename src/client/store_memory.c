/* The memory store: a worker's own tier of the response cache. Entries live
 * in a chained hash table and on an LRU list; each is one allocation (its
 * key, headers and body packed after it), counted in bytes against a bound,
 * and the least recently used are evicted to make room. Expired entries
 * are dropped when a lookup finds them. It answers every lookup before
 * get() returns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "client/store.h"
#include "core/list.h"
#include "fanout.h"

typedef struct entry {
    struct entry *next; /* hash chain */
    fan__list lru;      /* most recently used first */
    unsigned hash;
    size_t size;   /* the whole allocation */
    fan__stored v; /* points into the allocation */
    size_t klen;
    const char *keyp; /* the key, inside the allocation */
} entry;

typedef struct memstore {
    fan__store base;
    entry **table;
    size_t nbuckets, nentries, bytes, max_bytes;
    fan__list lru;
    unsigned long long evictions;
} memstore;

static entry **slot_of(memstore *m, const char *key, size_t klen, unsigned h)
{
    entry **p = &m->table[h & (m->nbuckets - 1)];
    while (*p && !((*p)->hash == h && (*p)->klen == klen && memcmp((*p)->keyp, key, klen) == 0))
        p = &(*p)->next;
    return p;
}

static void unlink_entry(memstore *m, entry **p)
{
    entry *e = *p;
    *p = e->next;
    fan__list_remove(&e->lru);
    m->nentries--;
    m->bytes -= e->size;
    free(e);
}

static void remove_key(memstore *m, const char *key, size_t klen)
{
    entry **p = slot_of(m, key, klen, fan__origin_hash(key, klen));
    if (*p)
        unlink_entry(m, p);
}

static void grow(memstore *m)
{
    size_t n = m->nbuckets * 2;
    entry **t = calloc(n, sizeof *t);
    if (!t)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < m->nbuckets; i++)
        for (entry *e = m->table[i], *next; e; e = next) {
            next = e->next;
            e->next = t[e->hash & (n - 1)];
            t[e->hash & (n - 1)] = e;
        }
    free(m->table);
    m->table = t;
    m->nbuckets = n;
}

static int mem_get(fan__store *s, const char *key, size_t klen, fan__store_get_cb cb, void *arg,
                   void **pending)
{
    memstore *m = (memstore *)s;
    (void)pending;
    entry **p = slot_of(m, key, klen, fan__origin_hash(key, klen));
    entry *e = *p;
    if (e) {
        double now = fan_now(), until = e->v.fresh_until;
        if (e->v.swr_until > until)
            until = e->v.swr_until;
        if (e->v.sie_until > until)
            until = e->v.sie_until;
        if (now >= until) {
            unlink_entry(m, p);
            e = NULL;
        }
    }
    if (e) {
        fan__list_remove(&e->lru);
        fan__list_push(&m->lru, &e->lru); /* the tail is the most recent */
    }
    cb(arg, e ? &e->v : NULL);
    return 0;
}

static void mem_cancel_get(fan__store *s, void *pending)
{
    (void)s;
    (void)pending; /* every lookup is answered at once: none is ever pending */
}

/* The bytes an entry of `v` takes: the allocation mem_put() makes. */
static size_t entry_size(const fan__stored *v, size_t klen)
{
    size_t n = sizeof(entry) + v->nheaders * sizeof(fan__header) + klen + 1 + v->body_len;
    for (unsigned i = 0; i < v->nheaders; i++)
        n += strlen(v->headers[i].name) + strlen(v->headers[i].value) + 2;
    return n;
}

static char *put_str(char **at, const char *s)
{
    size_t n = strlen(s) + 1;
    char *out = memcpy(*at, s, n);
    *at += n;
    return out;
}

/* One allocation: the entry, its header array (aligned: sizeof(entry) is a
 * multiple of the struct's alignment), then the key, the header strings
 * and the body. */
static int mem_put(fan__store *s, const char *key, size_t klen, const fan__stored *v)
{
    memstore *m = (memstore *)s;
    size_t size = entry_size(v, klen);
    remove_key(m, key, klen);
    int fits = size <= m->max_bytes;
    while (m->bytes + (fits ? size : 0) > m->max_bytes && !fan__list_empty(&m->lru)) {
        entry *old = fan__container_of(m->lru.next, entry, lru);
        unlink_entry(m, slot_of(m, old->keyp, old->klen, old->hash));
        m->evictions++;
    }
    if (!fits)
        return 1;
    entry *e = malloc(size);
    if (!e)
        return FAN_ENOMEM;
    fan__header *h = (fan__header *)(void *)(e + 1);
    char *at = (char *)(h + v->nheaders);
    e->hash = fan__origin_hash(key, klen);
    e->size = size;
    e->klen = klen;
    e->v = *v;
    memcpy(at, key, klen);
    at[klen] = '\0';
    at += klen + 1;
    for (unsigned i = 0; i < v->nheaders; i++) {
        h[i].name = put_str(&at, v->headers[i].name);
        h[i].value = put_str(&at, v->headers[i].value);
    }
    e->v.headers = h;
    e->v.body = memcpy(at, v->body ? v->body : "", v->body_len);
    e->keyp = (const char *)(h + v->nheaders);
    if (m->nentries >= m->nbuckets)
        grow(m);
    entry **p = &m->table[e->hash & (m->nbuckets - 1)];
    e->next = *p;
    *p = e;
    fan__list_push(&m->lru, &e->lru);
    m->nentries++;
    m->bytes += size;
    return 0;
}

static void mem_del(fan__store *s, const char *key, size_t klen)
{
    remove_key((memstore *)s, key, klen);
}

static void mem_free(fan__store *s)
{
    memstore *m = (memstore *)s;
    while (!fan__list_empty(&m->lru)) {
        entry *e = fan__container_of(m->lru.next, entry, lru);
        unlink_entry(m, slot_of(m, e->keyp, e->klen, e->hash));
    }
    free(m->table);
    free(m);
}

static const fan__store_ops memstore_ops = {
    .name = "memory",
    .get = mem_get,
    .cancel_get = mem_cancel_get,
    .put = mem_put,
    .del = mem_del,
    .free = mem_free,
};

fan__store *fan__memstore_new(size_t max_bytes)
{
    memstore *m = calloc(1, sizeof *m);
    if (!m || !(m->table = calloc(m->nbuckets = 64, sizeof *m->table))) {
        free(m);
        return NULL;
    }
    m->base.ops = &memstore_ops;
    m->max_bytes = max_bytes;
    fan__list_init(&m->lru);
    return &m->base;
}

void fan__memstore_set_max(fan__store *s, size_t max_bytes)
{
    ((memstore *)s)->max_bytes = max_bytes;
}

void fan__memstore_usage(const fan__store *s, size_t *entries, size_t *bytes,
                         unsigned long long *evictions)
{
    const memstore *m = (const memstore *)s;
    *entries = m->nentries;
    *bytes = m->bytes;
    *evictions = m->evictions;
}
