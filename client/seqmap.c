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

void fo__seqmap_init(fo__seqmap_t *m, size_t max_topics)
{
    memset(m, 0, sizeof *m);
    m->max = max_topics ? max_topics : 65536;
}

void fo__seqmap_clear(fo__seqmap_t *m)
{
    m->last = NULL;
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].topic);
        m->slots[i].topic = NULL;
    }
    m->count = 0;
}

void fo__seqmap_destroy(fo__seqmap_t *m)
{
    if (!m)
        return;
    fo__seqmap_clear(m);
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}

static fo__seqmap_ent_t *probe(fo__seqmap_ent_t *slots, size_t cap, uint64_t h,
                               const char *t, size_t n)
{
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        fo__seqmap_ent_t *e = &slots[i];
        if (!e->topic || (e->hash == h && e->len == n && !memcmp(e->topic, t, n)))
            return e;
    }
}

static int grow(fo__seqmap_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    fo__seqmap_ent_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].topic)
            *probe(ns, ncap, m->slots[i].hash, m->slots[i].topic,
                   m->slots[i].len) = m->slots[i];
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    m->last = NULL;
    return 0;
}

fo__seqmap_ent_t *fo__seqmap_get(fo__seqmap_t *m, const char *topic, size_t len)
{
    fo__seqmap_ent_t *l = m->last;
    if (l && l->len == len && !memcmp(l->topic, topic, len))
        return l;
    uint64_t h = hash_bytes(topic, len);
    if (m->cap) {
        fo__seqmap_ent_t *e = probe(m->slots, m->cap, h, topic, len);
        if (e->topic)
            return m->last = e;
    }
    if (m->count >= m->max) {
        m->dropped++;
        return NULL;
    }
    if ((m->count + 1) * 2 > m->cap && grow(m))
        return NULL;
    fo__seqmap_ent_t *e = probe(m->slots, m->cap, h, topic, len);
    char *t = malloc(len + 1);
    if (!t)
        return NULL;
    memcpy(t, topic, len);
    t[len] = 0;
    e->topic = t;
    e->len = len;
    e->hash = h;
    e->seq = e->low = 0;
    memset(e->win, 0, sizeof e->win);
    m->count++;
    return m->last = e;
}

const fo__seqmap_ent_t *fo__seqmap_next(const fo__seqmap_t *m, size_t *i)
{
    for (; *i < m->cap; (*i)++)
        if (m->slots[*i].topic)
            return &m->slots[(*i)++];
    return NULL;
}

/* ------------------------------------------------------------ window */

#define WORDS (FO__SEQMAP_WINDOW / 64)

/* Move the watermark up by k, sliding the window with it. */
static void slide(fo__seqmap_ent_t *e, uint64_t k)
{
    e->low += k;
    if (k >= FO__SEQMAP_WINDOW) {
        memset(e->win, 0, sizeof e->win);
        return;
    }
    unsigned q = (unsigned)(k / 64), r = (unsigned)(k % 64);
    for (unsigned i = 0; i < WORDS; i++) {
        uint64_t lo = i + q < WORDS ? e->win[i + q] : 0;
        uint64_t hi = i + q + 1 < WORDS ? e->win[i + q + 1] : 0;
        e->win[i] = r ? (lo >> r) | (hi << (64 - r)) : lo;
    }
}

/* Raise the watermark over the run of seen sequences right above it. */
static void advance(fo__seqmap_ent_t *e)
{
    for (;;) {
        uint64_t w = e->win[0];
        if (!(w & 1))
            return;
        unsigned ones = ~w ? (unsigned)__builtin_ctzll(~w) : 64;
        slide(e, ones);
    }
}

static void set_bit(fo__seqmap_ent_t *e, uint64_t seq)
{
    uint64_t i = seq - e->low - 1;      /* caller keeps it < WINDOW */
    e->win[i / 64] |= 1ull << (i % 64);
}

int fo__seqmap_seen(const fo__seqmap_ent_t *e, uint64_t seq)
{
    if (!e->seq)
        return 0;
    if (seq <= e->low)
        return 1;
    uint64_t i = seq - e->low - 1;
    return i < FO__SEQMAP_WINDOW && (e->win[i / 64] >> (i % 64) & 1);
}

static int window_empty(const fo__seqmap_ent_t *e)
{
    uint64_t any = 0;
    for (unsigned i = 0; i < WORDS; i++)
        any |= e->win[i];
    return !any;
}

void fo__seqmap_mark(fo__seqmap_ent_t *e, uint64_t seq)
{
    if (!seq)
        return;
    if (e->seq && seq == e->low + 1 && window_empty(e)) {
        e->low = seq;                /* in order, nothing pending: the usual */
        if (seq > e->seq)
            e->seq = seq;
        return;
    }
    if (!e->seq)
        e->low = seq - 1;            /* the first one seen sets the mark */
    if (seq > e->seq)
        e->seq = seq;
    if (seq <= e->low)
        return;
    if (seq - e->low > FO__SEQMAP_WINDOW)
        slide(e, seq - e->low - FO__SEQMAP_WINDOW);
    set_bit(e, seq);
    advance(e);
}

void fo__seqmap_skip(fo__seqmap_ent_t *e, uint64_t first, uint64_t last)
{
    if (!first || last < first)
        return;
    if (!e->seq)
        e->low = first - 1;
    if (last > e->seq)
        e->seq = last;
    if (last <= e->low)
        return;
    if (first <= e->low + 1) {
        slide(e, last - e->low);
    } else {
        if (last - e->low > FO__SEQMAP_WINDOW)
            slide(e, last - e->low - FO__SEQMAP_WINDOW);
        for (uint64_t s = first > e->low ? first : e->low + 1; s <= last; s++)
            set_bit(e, s);
    }
    advance(e);
}
