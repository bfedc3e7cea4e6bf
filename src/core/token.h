/* RFC 9110 tokens: methods and header names, checked the same way by the
 * server (request heads, fan_resp_set_header()) and the client (upstream calls). */
#ifndef FAN_CORE_TOKEN_H
#define FAN_CORE_TOKEN_H

#include <stddef.h>

/* The number of leading bytes of s[0..len) that are token characters
 * (tchar: letters, digits and !#$%&'*+-.^_`|~), like strspn(). s[0..len)
 * is a token when the answer is len and len is not 0. Can't fail. */
size_t fan__token_span(const char *s, size_t len);

/* 1 for each byte that is a token character, else 0. */
extern const unsigned char fan__tchar[256];

/* Whether s[0..len) is a non-empty token: what a method or a header name
 * must be. Can't fail. */
int fan__is_token(const char *s, size_t len);

#endif
