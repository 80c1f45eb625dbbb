/* seqmap.c -- topic -> last sequence (see seqmap.h).
 *
 * Linear probing over a power-of-two table kept at most half full; entries
 * are never removed one by one (a subscription's topics only grow until
 * the map is cleared), so no tombstones are needed.
 */
#include <stdlib.h>
#include <string.h>
#include "seqmap.h"

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;       /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void fo_seqmap_init(fo_seqmap_t *m, size_t max_topics)
{
    memset(m, 0, sizeof *m);
    m->max = max_topics ? max_topics : 65536;
}

void fo_seqmap_clear(fo_seqmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].topic);
        m->slots[i].topic = NULL;
    }
    m->count = 0;
}

void fo_seqmap_destroy(fo_seqmap_t *m)
{
    if (!m)
        return;
    fo_seqmap_clear(m);
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}

static fo_seqmap_ent_t *probe(fo_seqmap_ent_t *slots, size_t cap, uint64_t h,
                              const char *t, size_t n)
{
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        fo_seqmap_ent_t *e = &slots[i];
        if (!e->topic || (e->hash == h && e->len == n && !memcmp(e->topic, t, n)))
            return e;
    }
}

static int grow(fo_seqmap_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    fo_seqmap_ent_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].topic)
            *probe(ns, ncap, m->slots[i].hash, m->slots[i].topic,
                   m->slots[i].len) = m->slots[i];
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

fo_seqmap_ent_t *fo_seqmap_get(fo_seqmap_t *m, const char *topic, size_t len)
{
    uint64_t h = hash_bytes(topic, len);
    if (m->cap) {
        fo_seqmap_ent_t *e = probe(m->slots, m->cap, h, topic, len);
        if (e->topic)
            return e;
    }
    if (m->count >= m->max) {
        m->dropped++;
        return NULL;
    }
    if ((m->count + 1) * 2 > m->cap && grow(m))
        return NULL;
    fo_seqmap_ent_t *e = probe(m->slots, m->cap, h, topic, len);
    char *t = malloc(len + 1);
    if (!t)
        return NULL;
    memcpy(t, topic, len);
    t[len] = 0;
    e->topic = t;
    e->len = len;
    e->hash = h;
    e->seq = 0;
    m->count++;
    return e;
}

const fo_seqmap_ent_t *fo_seqmap_next(const fo_seqmap_t *m, size_t *i)
{
    for (; *i < m->cap; (*i)++)
        if (m->slots[*i].topic)
            return &m->slots[(*i)++];
    return NULL;
}
