/* topic_name.c -- topic/filter rules and matching (topic_name.h). */
#include <string.h>
#include "topic_name.h"

static int token_char_ok(unsigned char c) { return c > 0x20 && c != 0x7f; }

static int check(const char *s, size_t len, int filter)
{
    if (len == 0 || len > FO_TOPIC_MAX)
        return 0;
    size_t tok = 0;                  /* start of the current token */
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            if (!token_char_ok((unsigned char)s[i]))
                return 0;
            continue;
        }
        size_t tl = i - tok;
        if (tl == 0)
            return 0;                /* empty token: "a..b", ".a", "a." */
        const char *t = s + tok;
        int wild = memchr(t, '*', tl) || memchr(t, '>', tl);
        if (wild) {
            if (!filter || tl != 1)
                return 0;            /* "a*" or wildcard in a topic */
            if (t[0] == '>' && i != len)
                return 0;            /* '>' must be last */
        }
        tok = i + 1;
    }
    return 1;
}

int fo_topic_valid(const char *s, size_t len) { return check(s, len, 0); }
int fo_filter_valid(const char *s, size_t len) { return check(s, len, 1); }

int fo_filter_is_wild(const char *s)
{
    for (const char *t = s; *t; ) {
        const char *e = strchr(t, '.');
        size_t tl = e ? (size_t)(e - t) : strlen(t);
        if (tl == 1 && (t[0] == '*' || t[0] == '>'))
            return 1;
        if (!e)
            break;
        t = e + 1;
    }
    return 0;
}

int fo_topic_match(const char *f, const char *t)
{
    for (;;) {
        const char *fe = strchr(f, '.');
        size_t fl = fe ? (size_t)(fe - f) : strlen(f);
        if (fl == 1 && f[0] == '>')
            return *t != 0;          /* one or more tokens remain */
        if (*t == 0)
            return 0;
        const char *te = strchr(t, '.');
        size_t tl = te ? (size_t)(te - t) : strlen(t);
        if (!(fl == 1 && f[0] == '*') && (fl != tl || memcmp(f, t, fl)))
            return 0;
        if (!fe || !te)
            return !fe && !te;
        f = fe + 1;
        t = te + 1;
    }
}

int fo_filters_overlap(const char *a, const char *b)
{
    for (;;) {
        const char *ae = strchr(a, '.'), *be = strchr(b, '.');
        size_t al = ae ? (size_t)(ae - a) : strlen(a);
        size_t bl = be ? (size_t)(be - b) : strlen(b);
        int aw = al == 1 && a[0] == '*', bw = bl == 1 && b[0] == '*';
        if ((al == 1 && a[0] == '>') || (bl == 1 && b[0] == '>'))
            return 1;
        if (!aw && !bw && (al != bl || memcmp(a, b, al)))
            return 0;
        if (!ae || !be)
            return !ae && !be;
        a = ae + 1;
        b = be + 1;
    }
}

uint32_t fo_topic_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}
