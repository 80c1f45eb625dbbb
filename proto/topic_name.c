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

/* One token of a NUL-terminated filter: its length, and where the next
 * one starts (NULL after the last). */
static size_t token(const char *s, const char **next)
{
    const char *e = strchr(s, '.');
    *next = e ? e + 1 : NULL;
    return e ? (size_t)(e - s) : strlen(s);
}

static int is_tok(const char *t, size_t tl, char c) { return tl == 1 && t[0] == c; }

int fo_topic_match_len(const char *f, const char *t, size_t tlen)
{
    const char *end = t + tlen;
    for (;;) {
        const char *fn;
        size_t fl = token(f, &fn);
        if (is_tok(f, fl, '>'))
            return t < end;          /* one or more tokens remain */
        if (t >= end)
            return 0;
        const char *te = memchr(t, '.', (size_t)(end - t));
        size_t tl = te ? (size_t)(te - t) : (size_t)(end - t);
        if (!is_tok(f, fl, '*') && (fl != tl || memcmp(f, t, fl)))
            return 0;
        if (!fn || !te)
            return !fn && !te;
        f = fn;
        t = te + 1;
    }
}

int fo_filter_covers(const char *outer, const char *inner)
{
    for (;;) {
        const char *on, *in;
        size_t ol = token(outer, &on), il = token(inner, &in);
        if (is_tok(outer, ol, '>'))
            return 1;                /* inner has a token here: one or more */
        if (is_tok(inner, il, '>'))
            return 0;                /* unbounded tail, outer is bounded here */
        if (is_tok(outer, ol, '*')) {
            /* any single token of inner (literal or *) */
        } else if (is_tok(inner, il, '*') || ol != il || memcmp(outer, inner, ol)) {
            return 0;
        }
        if (!on || !in)
            return !on && !in;
        outer = on;
        inner = in;
    }
}

int fo_filters_meet(const char *a, const char *b, char *out, size_t outlen)
{
    size_t n = 0;
    for (;;) {
        const char *an, *bn, *pick;
        size_t al = token(a, &an), bl = token(b, &bn), pl;
        if (is_tok(a, al, '>') || is_tok(b, bl, '>')) {
            /* the rest of the other side (both ">" gives ">") */
            pick = is_tok(a, al, '>') ? b : a;
            pl = strlen(pick);
            if (n + pl + 1 > outlen)
                return -2;
            memcpy(out + n, pick, pl + 1);
            return (int)(n + pl);
        }
        if (is_tok(a, al, '*')) {
            pick = b;
            pl = bl;
        } else if (is_tok(b, bl, '*') || (al == bl && !memcmp(a, b, al))) {
            pick = a;
            pl = al;
        } else {
            return -1;
        }
        if (!an || !bn) {
            if (an || bn)
                return -1;           /* different lengths, no > to absorb */
        }
        if (n + pl + 2 > outlen)
            return -2;
        memcpy(out + n, pick, pl);
        n += pl;
        if (!an) {
            out[n] = '\0';
            return (int)n;
        }
        out[n++] = '.';
        a = an;
        b = bn;
    }
}

uint32_t fo_topic_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}
