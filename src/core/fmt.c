#include "core/fmt.h"

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

char *fan__put_uint(char *p, unsigned long long v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Room check: the text plus its NUL must fit. Written as a subtraction
 * (o - out < cap always holds), so that no length can wrap it. */
#define ROOM(k) if ((k) >= cap - (size_t)(o - out)) return -1

int fan__fmt(char *out, size_t cap, const char *fmt, va_list ap)
{
    char *o = out;
    if (cap == 0)
        return -1;
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            ROOM(1);
            *o++ = *f;
            continue;
        }
        f++;
        if (*f == '%') {
            ROOM(1);
            *o++ = '%';
            continue;
        }
        if (*f == 's') {
            const char *s = va_arg(ap, const char *);
            if (!s)
                return -1; /* glibc prints "(null)": leave it to vsnprintf */
            size_t n = strlen(s);
            ROOM(n);
            o = fan__put(o, s, n);
            continue;
        }
        if (f[0] == '.' && f[1] == '*' && f[2] == 's') {
            int prec = va_arg(ap, int);
            const char *s = va_arg(ap, const char *);
            if (!s || prec < 0)
                return -1;
            size_t n = strnlen(s, (size_t)prec);
            ROOM(n);
            o = fan__put(o, s, n);
            f += 2;
            continue;
        }
        if (*f == 'c') {
            ROOM(1);
            *o++ = (char)va_arg(ap, int);
            continue;
        }
        /* Integers: an optional length modifier, then d, i or u. */
        int len = 0; /* 0 int, 1 long, 2 long long, 3 size_t, 4 intmax_t */
        if (f[0] == 'l' && f[1] == 'l') {
            len = 2;
            f += 2;
        } else if (f[0] == 'l' || f[0] == 'z' || f[0] == 'j') {
            len = f[0] == 'l' ? 1 : f[0] == 'z' ? 3 : 4;
            f++;
        }
        if (*f != 'd' && *f != 'i' && *f != 'u')
            return -1;
        unsigned long long u;
        int neg = 0;
        if (*f == 'u') {
            u = len == 0 ? va_arg(ap, unsigned)
              : len == 1 ? va_arg(ap, unsigned long)
              : len == 2 ? va_arg(ap, unsigned long long)
              : len == 3 ? va_arg(ap, size_t)
                         : (unsigned long long)va_arg(ap, uintmax_t);
        } else {
            long long v = len == 0 ? va_arg(ap, int)
                        : len == 1 ? va_arg(ap, long)
                        : len == 2 ? va_arg(ap, long long)
                        : len == 3 ? (long long)va_arg(ap, ssize_t)
                                   : (long long)va_arg(ap, intmax_t);
            neg = v < 0;
            u = neg ? 0ull - (unsigned long long)v : (unsigned long long)v;
        }
        ROOM(21);
        if (neg)
            *o++ = '-';
        o = fan__put_uint(o, u);
    }
    *o = '\0';
    if (o - out > INT_MAX)
        return -1; /* as vsnprintf fails with EOVERFLOW */
    return (int)(o - out);
}
