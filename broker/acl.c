/* acl.c -- allow/deny filter lists and the three questions (acl.h).
 *
 * One allocation per acl: the header, the pointer array (allow filters
 * first, then deny filters, each part sorted) and the text. Matching a
 * topic walks the lists once; a list that is exactly `>` with nothing
 * denied short-cuts to "yes" (the single-user, all-rights case).
 */
#include "acl.h"
#include "topic_name.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fo_acl {
    uint32_t nallow, ndeny;
    int allow_all;            /* allow has ">" and deny is empty */
    const char **f;           /* nallow + ndeny filters          */
    unsigned char *lead;      /* per filter: its first byte, or 0
                                 when its first token is * or >  */
};

/* A topic whose first byte differs from a literal first token cannot
 * match: most filters are refused without walking them. */
static int may_match(const fo_acl_t *a, size_t i, const char *topic, size_t tlen)
{
    return (!a->lead[i] || (tlen && a->lead[i] == (unsigned char)topic[0])) &&
           fo_topic_match_len(a->f[i], topic, tlen);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sort and drop duplicates; returns the new count. */
static size_t sort_unique(const char **v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_str);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (strcmp(v[i], v[k - 1]))
            v[k++] = v[i];
    return k;
}

static fo_err_t check_list(const char *const *v, size_t n, size_t *bytes)
{
    if (n > FO_ACL_MAX_FILTERS)
        return FO_ERR_RANGE;
    for (size_t i = 0; i < n; i++) {
        if (!v[i] || !fo_filter_valid(v[i], strlen(v[i])))
            return FO_ERR_INVAL;
        *bytes += strlen(v[i]) + 1;
    }
    return FO_OK;
}

/* Copy n strings into text at *pos, pointers into dst. */
static void copy_list(const char **dst, const char *const *src, size_t n, char *text, size_t *pos)
{
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(src[i]) + 1;
        memcpy(text + *pos, src[i], l);
        dst[i] = text + *pos;
        *pos += l;
    }
}

fo_err_t fo_acl_build(const char *const *allow, size_t nallow,
                      const char *const *deny, size_t ndeny, fo_acl_t **out)
{
    size_t bytes = 0;
    fo_err_t e = check_list(allow, nallow, &bytes);
    if (e == FO_OK)
        e = check_list(deny, ndeny, &bytes);
    if (e != FO_OK)
        return e;
    size_t nf = nallow + ndeny, ptrs = nf * sizeof(const char *);
    fo_acl_t *a = malloc(sizeof *a + ptrs + nf + bytes);
    if (!a)
        return FO_ERR_NOMEM;
    a->f = (const char **)(a + 1);
    a->lead = (unsigned char *)(a + 1) + ptrs;
    char *text = (char *)a->lead + nf;
    size_t pos = 0;
    copy_list(a->f, allow, nallow, text, &pos);
    size_t na = sort_unique(a->f, nallow);
    copy_list(a->f + na, deny, ndeny, text, &pos);
    size_t nd = sort_unique(a->f + na, ndeny);
    a->nallow = (uint32_t)na;
    a->ndeny = (uint32_t)nd;
    a->allow_all = 0;
    for (size_t i = 0; i < na; i++)
        if (!strcmp(a->f[i], ">"))
            a->allow_all = nd == 0;
    for (size_t i = 0; i < na + nd; i++) {
        const char *f = a->f[i];
        int wild = (f[0] == '*' || f[0] == '>') && (f[1] == '.' || f[1] == '\0');
        a->lead[i] = wild ? 0 : (unsigned char)f[0];
    }
    *out = a;
    return FO_OK;
}

void fo_acl_free(fo_acl_t *acl)
{
    free(acl);
}

int fo_acl_topic_ok(const fo_acl_t *acl, const char *topic, size_t tlen)
{
    if (acl->allow_all)
        return 1;
    size_t i = 0, n = (size_t)acl->nallow + acl->ndeny;
    while (i < acl->nallow && !may_match(acl, i, topic, tlen))
        i++;
    if (i == acl->nallow)
        return 0;
    for (size_t d = acl->nallow; d < n; d++)
        if (may_match(acl, d, topic, tlen))
            return 0;
    return 1;
}

/* 1 when one deny filter covers f. */
static int denied_whole(const fo_acl_t *acl, const char *f)
{
    const char *const *deny = acl->f + acl->nallow;
    for (size_t d = 0; d < acl->ndeny; d++)
        if (fo_filter_covers(deny[d], f))
            return 1;
    return 0;
}

int fo_acl_filter_ok(const fo_acl_t *acl, const char *filter)
{
    if (acl->allow_all)
        return 1;
    size_t fl = strlen(filter);
    for (size_t i = 0; i < acl->nallow; i++) {
        /* strlen(allow) + strlen(filter) + 1 bytes hold any meet */
        char meet[2 * FO_TOPIC_MAX + 2];
        if (strlen(acl->f[i]) + fl + 1 > sizeof meet)
            continue;                    /* not a valid filter: never matches */
        if (fo_filters_meet(acl->f[i], filter, meet, sizeof meet) < 0)
            continue;
        if (!denied_whole(acl, meet))
            return 1;
    }
    return 0;
}

int fo_acl_covers_filter(const fo_acl_t *acl, const char *filter)
{
    if (acl->allow_all)
        return 1;
    size_t i = 0;
    while (i < acl->nallow && !fo_filter_covers(acl->f[i], filter))
        i++;
    if (i == acl->nallow)
        return 0;
    const char *const *deny = acl->f + acl->nallow;
    for (size_t d = 0; d < acl->ndeny; d++)
        if (fo_filters_overlap(deny[d], filter))
            return 0;
    return 1;
}

int fo_acl_allows_any(const fo_acl_t *acl)
{
    return acl->nallow > 0;
}

int fo_acl_equal(const fo_acl_t *a, const fo_acl_t *b)
{
    if (a->nallow != b->nallow || a->ndeny != b->ndeny)
        return 0;
    for (size_t i = 0; i < (size_t)a->nallow + a->ndeny; i++)
        if (strcmp(a->f[i], b->f[i]))
            return 0;
    return 1;
}

size_t fo_acl_count(const fo_acl_t *acl, int deny)
{
    return deny ? acl->ndeny : acl->nallow;
}

const char *fo_acl_filter_at(const fo_acl_t *acl, int deny, size_t i)
{
    if (i >= fo_acl_count(acl, deny))
        return NULL;
    return acl->f[(deny ? acl->nallow : 0) + i];
}

static const struct { const char *name; unsigned bit; } rights[] = {
    { "block", FO_RIGHT_BLOCK },
    { "multicast", FO_RIGHT_MULTICAST },
};

unsigned fo_right_parse(const char *name)
{
    for (size_t i = 0; i < sizeof rights / sizeof rights[0]; i++)
        if (!strcmp(name, rights[i].name))
            return rights[i].bit;
    return 0;
}

const char *fo_right_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof rights / sizeof rights[0]; i++)
        if (bit == rights[i].bit)
            return rights[i].name;
    return NULL;
}
