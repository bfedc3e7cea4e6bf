#include "core/token.h"

#include <string.h>

static int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

size_t fan__token_span(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)s[i]))
        i++;
    return i;
}
