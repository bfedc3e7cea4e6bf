/* Positions in a gateway file: jansson reports the line and column of a
 * syntax error only, so this scans the (already valid) text once more and
 * records where each member's key, and each array element, begins, under its
 * path ("endpoints[0].backends[1].url"), for the errors of `fanout check`.
 * It only maps paths to line:column for error messages: what the file
 * means is decided by jansson's parse (config.c, json_loadb()), never by
 * this scan; a path it cannot place gets its parent's position. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

struct gw_pos {
    json_t *map; /* path -> [line, column] */
};

typedef struct scan {
    const char *s, *end;
    int line, col;
    json_t *map;
    int depth;
} scan;

static void step(scan *sc)
{
    if (sc->s >= sc->end)
        return;
    if (*sc->s == '\n') {
        sc->line++;
        sc->col = 1;
    } else if (((unsigned char)*sc->s & 0xc0) != 0x80) {
        sc->col++; /* columns count characters, not the bytes of UTF-8 */
    }
    sc->s++;
}

static void blanks(scan *sc)
{
    while (sc->s < sc->end && (*sc->s == ' ' || *sc->s == '\t' || *sc->s == '\n' || *sc->s == '\r'))
        step(sc);
}

static void mark(scan *sc, const char *path, int line, int col)
{
    json_object_set_new(sc->map, path, json_pack("[i,i]", line, col));
}

/* A string's contents into `out` (cut at `cap`), escapes read loosely. */
static void string(scan *sc, char *out, size_t cap)
{
    size_t n = 0;
    step(sc); /* the opening quote */
    while (sc->s < sc->end && *sc->s != '"') {
        if (*sc->s == '\\')
            step(sc);
        if (n + 1 < cap && sc->s < sc->end)
            out[n++] = *sc->s;
        step(sc);
    }
    step(sc);
    if (cap)
        out[n] = 0;
}

static void value(scan *sc, const char *path);

static void object(scan *sc, const char *path)
{
    step(sc);
    for (;;) {
        blanks(sc);
        if (sc->s >= sc->end || *sc->s == '}')
            break;
        if (*sc->s == ',') {
            step(sc);
            continue;
        }
        int line = sc->line, col = sc->col;
        char key[256], sub[1024];
        string(sc, key, sizeof key);
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
        mark(sc, sub, line, col);
        blanks(sc);
        if (sc->s < sc->end && *sc->s == ':')
            step(sc);
        blanks(sc);
        value(sc, sub);
    }
    step(sc);
}

static void array(scan *sc, const char *path)
{
    step(sc);
    for (long i = 0;; i++) {
        blanks(sc);
        if (sc->s < sc->end && *sc->s == ',') {
            step(sc);
            blanks(sc);
        }
        if (sc->s >= sc->end || *sc->s == ']')
            break;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s[%ld]", path, i);
        mark(sc, sub, sc->line, sc->col);
        value(sc, sub);
    }
    step(sc);
}

static void value(scan *sc, const char *path)
{
    if (sc->s >= sc->end || ++sc->depth > 64) /* jansson's own nesting limit is higher */
        return;
    if (*sc->s == '{')
        object(sc, path);
    else if (*sc->s == '[')
        array(sc, path);
    else if (*sc->s == '"')
        string(sc, NULL, 0);
    else /* a number or literal: at least one byte, so every loop advances
          * (jansson lets a NUL through after a literal, "[1\0]", and
          * strchr() finds the NUL in any set) */
        do
            step(sc);
        while (sc->s < sc->end && (!*sc->s || !strchr(",}] \t\r\n", *sc->s)));
    sc->depth--;
}

gw_pos *gw_pos_index(const char *text, size_t len)
{
    gw_pos *p = calloc(1, sizeof *p);
    if (!p || !(p->map = json_object())) {
        free(p);
        return NULL;
    }
    scan sc = {text, text + len, 1, 1, p->map, 0};
    blanks(&sc);
    mark(&sc, "", sc.line, sc.col);
    value(&sc, "");
    return p;
}

void gw_pos_find(const gw_pos *p, const char *path, int *line, int *col)
{
    *line = *col = 0;
    /* An unknown path (a value the checks made up) falls back to its parent's. */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (;;) {
        json_t *at = p ? json_object_get(p->map, buf) : NULL;
        if (at) {
            *line = (int)json_integer_value(json_array_get(at, 0));
            *col = (int)json_integer_value(json_array_get(at, 1));
            return;
        }
        char *cut = strrchr(buf, '.'), *br = strrchr(buf, '[');
        if (br > cut)
            cut = br;
        if (!cut)
            break;
        *cut = 0;
    }
    if (p && json_object_get(p->map, "")) {
        json_t *at = json_object_get(p->map, "");
        *line = (int)json_integer_value(json_array_get(at, 0));
        *col = (int)json_integer_value(json_array_get(at, 1));
    }
}

void gw_pos_free(gw_pos *p)
{
    if (p) {
        json_decref(p->map);
        free(p);
    }
}
