/* W3C Trace Context: strict parsing of traceparent, ids from a per-thread
 * generator seeded from OpenSSL, and the child traceparent of a call. */
#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "runtime/trace.h"

/* xoshiro256** (public domain algorithm by Blackman and Vigna): ids need to
 * be unpredictable enough not to collide, not secret; RAND_bytes for each
 * would cost a lock and a syscall now and then on the hot path. */
static _Thread_local uint64_t state[4];
static _Thread_local int seeded;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forget_seed(void)
{
    seeded = 0; /* a forked worker must not repeat its parent's ids */
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void seed(void)
{
    pthread_once(&atfork_once, register_atfork);
    if (RAND_bytes((unsigned char *)state, sizeof state) != 1) {
        /* No entropy from OpenSSL: time and address, which still differ
         * between workers (their pids differ in the stack address mix). */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        state[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
        state[1] = (uint64_t)(uintptr_t)&ts;
        state[2] = 0x9e3779b97f4a7c15ull;
        state[3] = (uint64_t)clock();
    }
    if (!(state[0] | state[1] | state[2] | state[3]))
        state[0] = 1;
    seeded = 1;
}

void (*fan__span_sink)(const fan__span_req *r);

void fan__trace_seed(void)
{
    if (!seeded)
        seed();
}

static uint64_t next(void)
{
    if (!seeded)
        seed();
    uint64_t r = rotl(state[1] * 5, 7) * 9, t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return r;
}

static int all_zero(const unsigned char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b[i])
            return 0;
    return 1;
}

void fan__trace_random(unsigned char *id, size_t len)
{
    if (len == 8) { /* a span id, the common case: one draw, zero drawn again */
        uint64_t r;
        while (!(r = next()))
            ;
        memcpy(id, &r, 8);
        return;
    }
    do {
        for (size_t i = 0; i < len; i += 8) {
            uint64_t r = next();
            memcpy(id + i, &r, len - i < 8 ? len - i : 8);
        }
    } while (all_zero(id, len));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase is invalid in traceparent */
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int fan__trace_parse(fan__trace *t, const char *v, size_t len)
{
    unsigned char ver, tid[16], pid[8], flags;
    if (len < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return -1;
    if (unhex(v, &ver, 1) || unhex(v + 3, tid, 16) || unhex(v + 36, pid, 8) ||
        unhex(v + 53, &flags, 1))
        return -1;
    if (ver == 0xff || (ver == 0 && len != 55) || (ver != 0 && len > 55 && v[55] != '-'))
        return -1;
    if (all_zero(tid, 16) || all_zero(pid, 8))
        return -1;
    memcpy(t->trace_id, tid, 16);
    memcpy(t->parent_id, pid, 8);
    t->flags = flags & 1; /* only the sampled flag is defined in version 00 */
    t->has_parent = 1;
    return 0;
}

int fan__tracestate_ok(const char *v, size_t len)
{
    if (len == 0 || len > FAN__TRACESTATE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return 0;
    return 1;
}

/* Each byte's two lower-case hex digits. */
static const char hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

/* A copy of two digits a byte, unrolled for the lengths of the ids (8, 16)
 * that the callers pass as constants: on the path of every request and
 * call, the loop's own steps cost more than the copies. */
static inline void hex(const unsigned char *b, size_t len, char *out)
{
#pragma GCC unroll 16
    for (size_t i = 0; i < len; i++)
        memcpy(out + 2 * i, hex_pairs + 2 * b[i], 2);
}

void fan__trace_begin(fan__trace *t)
{
    if (!t->has_parent) {
        fan__trace_random(t->trace_id, 16);
        t->flags = 1; /* sampled: every request is recorded */
    }
    fan__trace_random(t->span_id, 8);
    memcpy(t->prefix, "00-", 3);
    hex(t->trace_id, 16, t->prefix + 3);
    t->prefix[35] = '-';
    t->begun = 1;
}

void fan__hex(const unsigned char *b, size_t len, char *out)
{
    hex(b, len, out);
    out[2 * len] = '\0';
}

void fan__traceparent_format(const fan__trace *t, const unsigned char span_id[8], char out[56])
{
    memcpy(out, t->prefix, 36); /* "00-<trace id>-", made once per request */
    hex(span_id, 8, out + 36);
    out[52] = '-';
    out[53] = '0'; /* the flags: only the sampled one is kept */
    out[54] = (char)('0' + (t->flags & 1));
    out[55] = '\0';
}
