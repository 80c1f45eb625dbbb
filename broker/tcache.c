/* tcache.c -- a worker's topic-pointer cache (see tcache.h). */
#include <stdlib.h>
#include <string.h>
#include "tcache.h"

struct fo_tcache {
    fo_topic_t **slots;
    size_t cap, len;          /* cap: a power of two, > 2 * len */
};

fo_tcache_t *fo_tcache_create(void)
{
    fo_tcache_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cap = 256;
    c->slots = calloc(c->cap, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    return c;
}

void fo_tcache_destroy(fo_tcache_t *c)
{
    if (!c)
        return;
    free(c->slots);
    free(c);
}

size_t fo_tcache_len(const fo_tcache_t *c)
{
    return c->len;
}

fo_topic_t *fo_tcache_find(const fo_tcache_t *c, const char *name, size_t len, uint32_t h)
{
    for (size_t i = h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        fo_topic_t *t = c->slots[i];
        if (!t)
            return NULL;
        if (t->hash == h && t->len == len && !memcmp(t->name, name, len))
            return t;
    }
}

static void insert(fo_topic_t **slots, size_t cap, fo_topic_t *t)
{
    size_t k = t->hash & (cap - 1);
    while (slots[k])
        k = (k + 1) & (cap - 1);
    slots[k] = t;
}

void fo_tcache_put(fo_tcache_t *c, fo_topic_t *t)
{
    if ((c->len + 1) * 2 > c->cap) {
        size_t ncap = c->cap * 2;
        fo_topic_t **ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return;
        for (size_t i = 0; i < c->cap; i++)
            if (c->slots[i])
                insert(ns, ncap, c->slots[i]);
        free(c->slots);
        c->slots = ns;
        c->cap = ncap;
    }
    insert(c->slots, c->cap, t);
    c->len++;
}

void fo_tcache_purge_dead(fo_tcache_t *c)
{
    size_t dead = 0;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i] && atomic_load_explicit(&c->slots[i]->dead, memory_order_acquire))
            dead++;
    if (!dead)
        return;
    /* rebuild in place: collect the live ones, clear, insert again */
    fo_topic_t **live = malloc((c->len - dead + 1) * sizeof *live);
    size_t n = 0;
    if (!live) {                 /* out of memory: drop the whole cache */
        memset(c->slots, 0, c->cap * sizeof *c->slots);
        c->len = 0;
        return;
    }
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i] && !atomic_load_explicit(&c->slots[i]->dead, memory_order_acquire))
            live[n++] = c->slots[i];
    memset(c->slots, 0, c->cap * sizeof *c->slots);
    for (size_t i = 0; i < n; i++)
        insert(c->slots, c->cap, live[i]);
    c->len = n;
    free(live);
}
