#include "core/span.h"

int fan__span_add(fan__span *s, const char *at, size_t len)
{
    if (!s->at && s->copy.len == 0) {
        s->at = at;
        s->len = len;
        return 0;
    }
    int rc = fan__span_keep(s);
    return rc ? rc : fan__buf_append(&s->copy, at, len);
}

int fan__span_keep(fan__span *s)
{
    if (!s->at)
        return 0;
    const char *at = s->at;
    s->at = NULL;
    return fan__buf_append(&s->copy, at, s->len);
}

const char *fan__span_data(const fan__span *s, size_t *len)
{
    if (s->at) {
        *len = s->len;
        return s->at;
    }
    *len = s->copy.len;
    return s->copy.len ? s->copy.data : "";
}

void fan__span_reset(fan__span *s)
{
    s->at = NULL;
    s->len = 0;
    if (s->copy.cap)
        fan__buf_free(&s->copy);
}
