/* interest.c -- the cluster's interest tables (see interest.h).
 *
 * Ours: a chained hash of entries keyed by "filter\0queue", doubling when
 * the load passes 1. Theirs: an open-addressed (linear probing) hash of
 * ids, with tombstones; it grows (and drops them) at 1/2 full.
 */
#include <stdlib.h>
#include <string.h>
#include "interest.h"

typedef struct entry {
    struct entry *next;
    uint32_t hash, id, count;
    size_t flen;               /* the key is filter, NUL, queue, NUL */
    char key[];
} entry_t;

struct fo_interest {
    entry_t **b;
    size_t nb, n;
    uint32_t next_id;
};

static uint32_t key_hash(const char *f, size_t fl, const char *q, size_t ql)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < fl; i++)
        h = (h ^ (uint8_t)f[i]) * 16777619u;
    h = (h ^ 0xff) * 16777619u;            /* the separator: "a","b" != "ab","" */
    for (size_t i = 0; i < ql; i++)
        h = (h ^ (uint8_t)q[i]) * 16777619u;
    return h;
}

fo_err_t fo_interest_create(fo_interest_t **out)
{
    fo_interest_t *t = calloc(1, sizeof *t);
    if (!t || !(t->b = calloc(64, sizeof *t->b))) {
        free(t);
        return FO_ERR_NOMEM;
    }
    t->nb = 64;
    *out = t;
    return FO_OK;
}

void fo_interest_destroy(fo_interest_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nb; i++)
        for (entry_t *e = t->b[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    free(t->b);
    free(t);
}

static entry_t **find(fo_interest_t *t, const char *f, size_t fl, const char *q, size_t ql, uint32_t h)
{
    entry_t **ep = &t->b[h & (t->nb - 1)];
    for (; *ep; ep = &(*ep)->next) {
        entry_t *e = *ep;
        if (e->hash == h && e->flen == fl && !memcmp(e->key, f, fl) &&
            !strcmp(e->key + fl + 1, q) && strlen(q) == ql)
            return ep;
    }
    return ep;
}

static void grow(fo_interest_t *t)
{
    size_t nb = t->nb * 2;
    entry_t **b = calloc(nb, sizeof *b);
    if (!b)
        return;                               /* longer chains, still right */
    for (size_t i = 0; i < t->nb; i++)
        for (entry_t *e = t->b[i], *n; e; e = n) {
            n = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(t->b);
    t->b = b;
    t->nb = nb;
}

fo_err_t fo_interest_add(fo_interest_t *t, const char *filter, const char *queue, uint32_t *id,
                         int *is_new)
{
    if (!queue)
        queue = "";
    size_t fl = strlen(filter), ql = strlen(queue);
    uint32_t h = key_hash(filter, fl, queue, ql);
    entry_t **ep = find(t, filter, fl, queue, ql, h);
    if (*ep) {
        (*ep)->count++;
        *id = (*ep)->id;
        *is_new = 0;
        return FO_OK;
    }
    if (t->n >= FO_INTEREST_MAX)
        return FO_ERR_BUSY;
    entry_t *e = malloc(sizeof *e + fl + ql + 2);
    if (!e)
        return FO_ERR_NOMEM;
    e->hash = h;
    e->count = 1;
    e->id = ++t->next_id;                     /* 2^32 adds before an id repeats */
    if (!e->id)
        e->id = ++t->next_id;
    e->flen = fl;
    memcpy(e->key, filter, fl + 1);
    memcpy(e->key + fl + 1, queue, ql + 1);
    e->next = NULL;
    *ep = e;
    t->n++;
    *id = e->id;
    *is_new = 1;
    if (t->n > t->nb)
        grow(t);
    return FO_OK;
}

int fo_interest_del(fo_interest_t *t, const char *filter, const char *queue, uint32_t *id)
{
    if (!queue)
        queue = "";
    size_t fl = strlen(filter), ql = strlen(queue);
    entry_t **ep = find(t, filter, fl, queue, ql, key_hash(filter, fl, queue, ql));
    entry_t *e = *ep;
    if (!e)
        return -1;
    *id = e->id;
    if (--e->count)
        return 0;
    *ep = e->next;
    free(e);
    t->n--;
    return 1;
}

size_t fo_interest_count(const fo_interest_t *t) { return t->n; }

void fo_interest_each(const fo_interest_t *t, fo_interest_fn fn, void *ud)
{
    for (size_t i = 0; i < t->nb; i++)
        for (const entry_t *e = t->b[i]; e; e = e->next)
            fn(ud, e->id, e->key, e->key + e->flen + 1);
}

/* ------------------------------------------------------------ theirs */

#define TOMB ((void *)&tomb_mark)
static char tomb_mark;

typedef struct slot {
    uint32_t id;
    void *obj;                 /* NULL: never used; TOMB: taken out */
} slot_t;

struct fo_interest_map {
    slot_t *s;
    size_t cap, n, used;       /* used: n + tombstones */
    size_t pop_at;             /* where fo_interest_map_pop looks first */
};

fo_err_t fo_interest_map_create(fo_interest_map_t **out)
{
    fo_interest_map_t *m = calloc(1, sizeof *m);
    if (!m || !(m->s = calloc(16, sizeof *m->s))) {
        free(m);
        return FO_ERR_NOMEM;
    }
    m->cap = 16;
    *out = m;
    return FO_OK;
}

void fo_interest_map_destroy(fo_interest_map_t *m)
{
    if (m)
        free(m->s);
    free(m);
}

static size_t slot_of(uint32_t id, size_t cap)
{
    return (size_t)((id * 2654435761u) & (cap - 1));
}

static slot_t *lookup(const fo_interest_map_t *m, uint32_t id)
{
    for (size_t i = slot_of(id, m->cap), k = 0; k < m->cap; i = (i + 1) & (m->cap - 1), k++) {
        slot_t *s = &m->s[i];
        if (!s->obj)
            return NULL;
        if (s->obj != TOMB && s->id == id)
            return s;
    }
    return NULL;
}

static fo_err_t rebuild(fo_interest_map_t *m, size_t cap)
{
    slot_t *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return FO_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        slot_t *s = &m->s[i];
        if (!s->obj || s->obj == TOMB)
            continue;
        size_t j = slot_of(s->id, cap);
        while (ns[j].obj)
            j = (j + 1) & (cap - 1);
        ns[j] = *s;
    }
    free(m->s);
    m->s = ns;
    m->cap = cap;
    m->used = m->n;
    return FO_OK;
}

fo_err_t fo_interest_map_put(fo_interest_map_t *m, uint32_t id, void *obj)
{
    if (lookup(m, id))
        return FO_ERR_INVAL;
    if (m->n >= FO_INTEREST_MAX)
        return FO_ERR_BUSY;
    if ((m->used + 1) * 2 > m->cap) {
        fo_err_t e = rebuild(m, (m->n + 1) * 4 > m->cap ? m->cap * 2 : m->cap);
        if (e)
            return e;
    }
    size_t i = slot_of(id, m->cap);
    while (m->s[i].obj && m->s[i].obj != TOMB)
        i = (i + 1) & (m->cap - 1);
    if (!m->s[i].obj)
        m->used++;
    m->s[i] = (slot_t){ id, obj };
    m->n++;
    return FO_OK;
}

void *fo_interest_map_get(const fo_interest_map_t *m, uint32_t id)
{
    slot_t *s = lookup(m, id);
    return s ? s->obj : NULL;
}

void *fo_interest_map_take(fo_interest_map_t *m, uint32_t id)
{
    slot_t *s = lookup(m, id);
    if (!s)
        return NULL;
    void *obj = s->obj;
    s->obj = TOMB;
    m->n--;
    return obj;
}

/* Scans on from where the last pop stopped (once around at most), so
 * emptying a map is linear, not quadratic (each scan from slot 0 walked
 * past every tombstone the earlier pops left). */
void *fo_interest_map_pop(fo_interest_map_t *m)
{
    for (size_t k = 0; k < m->cap && m->n; k++) {
        size_t i = (m->pop_at + k) & (m->cap - 1);
        if (m->s[i].obj && m->s[i].obj != TOMB) {
            void *obj = m->s[i].obj;
            m->s[i].obj = TOMB;
            m->n--;
            m->pop_at = i + 1;
            return obj;
        }
    }
    return NULL;
}

size_t fo_interest_map_count(const fo_interest_map_t *m) { return m->n; }
