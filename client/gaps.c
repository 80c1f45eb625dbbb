/* gaps.c -- per-topic sequence tracker (see gaps.h for the contract).
 *
 * A topic is a hash-table entry with `next` (first unsettled sequence) and
 * `hi` (one past the highest sequence known to exist). Sequences in
 * [next, hi) live in a ring of `window` slots indexed by seq % window:
 * MISSING (a hole), HAVE (a held copy), MARKER (oversize: exists, needs
 * repair) or LOST (given up, waiting for the sequences before it to
 * settle). hi - next <= window always holds, so ring slots never collide.
 * The ring is allocated when a topic first has something pending and freed
 * when it catches up, so an in-order topic costs only its entry.
 *
 * Topics with pending sequences are on a doubly-linked list, so
 * fo__gaps_poll() touches only those; topics that got multicast since
 * their last probe are on a second list, for the tail probe. Repair timing is per hole: a slot
 * remembers when it became a hole and, once asked for, when it was asked
 * (ms, 32 bits, compared with wrap-around arithmetic); runs of holes old
 * enough are asked for in one on_repair call.
 */
#include "gaps.h"

#include <stdlib.h>
#include <string.h>

enum { MISSING = 0, HAVE = 1, MARKER = 2, LOST = 3 };

typedef struct slot {
    uint8_t *data;       /* owned copy (HAVE)                            */
    uint32_t len;
    uint32_t ms;         /* hole: when noticed, or when asked (asked=1)  */
    uint8_t state;
    uint8_t asked;
    uint8_t repaired;    /* HAVE came from repair                        */
} slot_t;

enum { PENDING = 0, ACTIVE = 1 };   /* the two topic lists */

typedef struct link {
    struct topic *prev, *next;
    int on;
} link_t;

typedef struct topic {
    struct topic *chain;          /* hash bucket chain           */
    link_t link[2];               /* PENDING: hi > next; ACTIVE:
                                     multicast since last probe  */
    uint32_t rx_ms;               /* last multicast message      */
    int started;
    uint64_t hash;
    uint64_t next, hi;
    slot_t *ring;                 /* owned, NULL when caught up  */
    char name[];                  /* NUL-terminated              */
} topic_t;

struct fo__gaps {
    fo__gaps_opts_t o;
    fo__gaps_cb_t cb;
    fo__gaps_stats_t st;
    topic_t **buckets;            /* owned, nbuckets entries     */
    size_t nbuckets, ntopics;
    uint64_t held_bytes;
    topic_t *list[2];             /* PENDING and ACTIVE heads    */
    topic_t *tail[2];             /* ... and tails (ACTIVE: the
                                     quietest topic)             */
};

#define INITIAL_BUCKETS 64

static uint64_t hash_str(const char *s, size_t *len)
{
    uint64_t h = 1469598103934665603ull;
    const char *p = s;
    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    *len = (size_t)(p - s);
    return h;
}

fo_err_t fo__gaps_create(const fo__gaps_opts_t *opts, const fo__gaps_cb_t *cb, fo__gaps_t **out)
{
    fo__gaps_t *g = calloc(1, sizeof(*g));
    *out = NULL;
    if (!g)
        return FO_ERR_NOMEM;
    if (opts)
        g->o = *opts;
    if (!g->o.window)     g->o.window = 4096;
    if (!g->o.max_topics) g->o.max_topics = 65536;
    if (!g->o.max_bytes)  g->o.max_bytes = 64u << 20;
    if (!g->o.reorder_ms) g->o.reorder_ms = 5;
    if (!g->o.probe_ms)   g->o.probe_ms = 250;
    if (!g->o.reorder_seqs || g->o.reorder_seqs >= g->o.window)
        g->o.reorder_seqs = g->o.window / 4;
    if (!g->o.repair_ms)  g->o.repair_ms = 2000;
    if (cb)
        g->cb = *cb;
    g->nbuckets = INITIAL_BUCKETS;
    g->buckets = calloc(g->nbuckets, sizeof(*g->buckets));
    if (!g->buckets) {
        free(g);
        return FO_ERR_NOMEM;
    }
    *out = g;
    return FO_OK;
}

static void ring_free(fo__gaps_t *g, topic_t *t)
{
    if (!t->ring)
        return;
    for (uint32_t i = 0; i < g->o.window; i++)
        if (t->ring[i].data) {
            g->held_bytes -= t->ring[i].len;
            free(t->ring[i].data);
        }
    free(t->ring);
    t->ring = NULL;
}

void fo__gaps_reset(fo__gaps_t *g)
{
    for (size_t b = 0; b < g->nbuckets; b++) {
        topic_t *t = g->buckets[b];
        while (t) {
            topic_t *n = t->chain;
            ring_free(g, t);
            free(t);
            t = n;
        }
        g->buckets[b] = NULL;
    }
    g->ntopics = 0;
    memset(g->list, 0, sizeof(g->list));
    memset(g->tail, 0, sizeof(g->tail));
}

void fo__gaps_destroy(fo__gaps_t *g)
{
    if (!g)
        return;
    fo__gaps_reset(g);
    free(g->buckets);
    free(g);
}

void fo__gaps_stats(const fo__gaps_t *g, fo__gaps_stats_t *out)
{
    *out = g->st;
}

/* ------------------------------------------------------------ topics */

static void grow(fo__gaps_t *g)
{
    size_t n = g->nbuckets * 2;
    topic_t **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return;                   /* longer chains, still correct */
    for (size_t b = 0; b < g->nbuckets; b++)
        for (topic_t *t = g->buckets[b], *next; t; t = next) {
            next = t->chain;
            t->chain = nb[t->hash & (n - 1)];
            nb[t->hash & (n - 1)] = t;
        }
    free(g->buckets);
    g->buckets = nb;
    g->nbuckets = n;
}

/* Find or create; NULL past max_topics (*full set) or out of memory. */
static topic_t *topic_get(fo__gaps_t *g, const char *name, int create, int *full)
{
    size_t len;
    uint64_t h = hash_str(name, &len);
    for (topic_t *t = g->buckets[h & (g->nbuckets - 1)]; t; t = t->chain)
        if (t->hash == h && strcmp(t->name, name) == 0)
            return t;
    if (!create)
        return NULL;
    if (g->ntopics >= g->o.max_topics) {
        *full = 1;
        return NULL;
    }
    topic_t *t = calloc(1, sizeof(*t) + len + 1);
    if (!t)
        return NULL;
    memcpy(t->name, name, len + 1);
    t->hash = h;
    if (g->ntopics >= g->nbuckets)
        grow(g);
    t->chain = g->buckets[h & (g->nbuckets - 1)];
    g->buckets[h & (g->nbuckets - 1)] = t;
    g->ntopics++;
    return t;
}

static void list_set(fo__gaps_t *g, topic_t *t, int which, int on)
{
    link_t *l = &t->link[which];
    if (on == l->on)
        return;
    l->on = on;
    if (on) {                        /* at the head */
        l->prev = NULL;
        l->next = g->list[which];
        if (l->next)
            l->next->link[which].prev = t;
        else
            g->tail[which] = t;
        g->list[which] = t;
    } else {
        if (l->prev)
            l->prev->link[which].next = l->next;
        else
            g->list[which] = l->next;
        if (l->next)
            l->next->link[which].prev = l->prev;
        else
            g->tail[which] = l->prev;
    }
}

static slot_t *slot_at(fo__gaps_t *g, topic_t *t, uint64_t seq)
{
    return &t->ring[seq % g->o.window];
}

static void deliver(fo__gaps_t *g, topic_t *t, uint64_t seq, const uint8_t *p, size_t n,
                    int repaired)
{
    g->st.received++;
    if (g->cb.on_deliver)
        g->cb.on_deliver(g->cb.ud, t->name, seq, p, n, repaired);
}

/* Settle what can be settled at the head: held messages are delivered,
 * lost runs reported; stop at the first hole. */
static void drain(fo__gaps_t *g, topic_t *t)
{
    while (t->next < t->hi) {
        slot_t *s = slot_at(g, t, t->next);
        if (s->state == HAVE) {
            deliver(g, t, t->next, s->data, s->len, s->repaired);
            g->held_bytes -= s->len;
            free(s->data);
            *s = (slot_t){ 0 };
            t->next++;
        } else if (s->state == LOST) {
            uint64_t first = t->next;
            while (t->next < t->hi && slot_at(g, t, t->next)->state == LOST) {
                *slot_at(g, t, t->next) = (slot_t){ 0 };
                t->next++;
            }
            if (g->cb.on_lost)
                g->cb.on_lost(g->cb.ud, t->name, first, t->next - 1);
        } else {
            break;
        }
    }
    if (t->next == t->hi) {
        ring_free(g, t);
        list_set(g, t, PENDING, 0);
    }
}

/* Give up every hole below upto (within [next, hi)), then drain. */
static void give_up(fo__gaps_t *g, topic_t *t, uint64_t upto)
{
    if (upto > t->hi)
        upto = t->hi;
    for (uint64_t s = t->next; s < upto; s++) {
        slot_t *sl = slot_at(g, t, s);
        if (sl->state == MISSING || sl->state == MARKER) {
            sl->state = LOST;
            g->st.lost++;
        }
    }
    drain(g, t);
}

/* Nothing pending (next == hi): sequences next..to-1, never seen, are
 * gone: they count as gaps, lost at once. */
static void jump(fo__gaps_t *g, topic_t *t, uint64_t to)
{
    uint64_t n = to - t->next;
    g->st.gaps += n;
    g->st.lost += n;
    if (g->cb.on_lost)
        g->cb.on_lost(g->cb.ud, t->name, t->next, to - 1);
    t->next = t->hi = to;
}

/* Settle everything below want: give up its holes, and jump over
 * sequences never seen at all. */
static void settle_below(fo__gaps_t *g, topic_t *t, uint64_t want)
{
    give_up(g, t, want);
    if (t->next < want)
        jump(g, t, want);
}

/* Deliver the message at next (not held), then what follows it. */
static void deliver_next(fo__gaps_t *g, topic_t *t, const uint8_t *p, size_t n, int repaired)
{
    deliver(g, t, t->next, p, n, repaired);
    if (t->ring)
        *slot_at(g, t, t->next) = (slot_t){ 0 };
    t->next++;
    if (t->hi < t->next)
        t->hi = t->next;
    drain(g, t);
}

/* A topic past max_topics: delivered as it comes, not tracked. */
static void untracked(fo__gaps_t *g, const char *name, uint64_t seq, const uint8_t *p,
                      size_t n, int marker, int repaired)
{
    g->st.untracked++;
    if (marker)
        return;
    g->st.received++;
    if (g->cb.on_deliver)
        g->cb.on_deliver(g->cb.ud, name, seq, p, n, repaired);
}

/* A multicast arrival moves t to the head of the ACTIVE list, so the tail
 * probe finds the quietest topic at its tail. */
static void note_multicast(fo__gaps_t *g, topic_t *t, int repaired, uint64_t now_ms)
{
    if (repaired || g->o.probe_ms == UINT32_MAX || !g->cb.on_repair)
        return;
    t->rx_ms = (uint32_t)now_ms;
    if (g->list[ACTIVE] != t) {
        list_set(g, t, ACTIVE, 0);
        list_set(g, t, ACTIVE, 1);
    }
}

/* Count what seq (at or past next, within the window) turns out to be: a
 * known hole filled late or by repair, or a new one a repair found past
 * the end (a tail loss the probe caught). 1 when it is a duplicate of
 * what the slot already has. */
static int count_arrival(fo__gaps_t *g, topic_t *t, uint64_t seq, int marker, int repaired)
{
    if (seq >= t->hi) {
        if (repaired && !marker) {
            g->st.gaps++;
            g->st.repaired++;
        }
        return 0;
    }
    uint8_t st = slot_at(g, t, seq)->state;
    if (st == HAVE || st == LOST || (st == MARKER && marker)) {
        g->st.duplicates++;
        return 1;
    }
    if (!marker && st == MISSING)
        g->st.late += !repaired;
    if (!marker)
        g->st.repaired += repaired;
    return 0;
}

/* Sequences hi..seq-1 were skipped: holes from now on. */
static void extend(fo__gaps_t *g, topic_t *t, uint64_t seq, uint64_t now_ms)
{
    g->st.gaps += seq - t->hi;
    for (uint64_t h = t->hi; h < seq; h++)
        slot_at(g, t, h)->ms = (uint32_t)now_ms;
    t->hi = seq + 1;
    list_set(g, t, PENDING, 1);
}

/* Out of order (or a marker): keep it in its slot until what comes before
 * it settles. Over the byte bound, the holes before it are given up
 * instead and it is delivered now. */
static fo_err_t hold(fo__gaps_t *g, topic_t *t, uint64_t seq, const uint8_t *payload,
                     size_t len, int marker, int repaired, uint64_t now_ms)
{
    if (!t->ring && !(t->ring = calloc(g->o.window, sizeof(*t->ring))))
        return FO_ERR_NOMEM;
    if (!marker && g->held_bytes + len > g->o.max_bytes) {
        settle_below(g, t, seq);
        deliver_next(g, t, payload, len, repaired);
        return FO_OK;
    }
    if (seq >= t->hi)
        extend(g, t, seq, now_ms);
    slot_t *s = slot_at(g, t, seq);
    if (marker) {                     /* no reason to wait: ask at once */
        s->state = MARKER;
        s->ms = (uint32_t)(now_ms - g->o.reorder_ms);
        return FO_OK;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return FO_ERR_NOMEM;                     /* stays a hole */
    if (len)
        memcpy(copy, payload, len);
    s->data = copy;
    s->len = (uint32_t)len;
    s->state = HAVE;
    s->repaired = (uint8_t)repaired;
    g->held_bytes += len;
    return FO_OK;
}

fo_err_t fo__gaps_offer(fo__gaps_t *g, const char *name, uint64_t seq, const uint8_t *payload,
                        size_t len, unsigned flags, uint64_t now_ms)
{
    int full = 0, marker = (flags & FO__GAPS_OVERSIZE) != 0;
    int repaired = (flags & FO__GAPS_REPAIRED) != 0;
    topic_t *t = topic_get(g, name, 1, &full);
    if (marker)
        g->st.oversize++;
    if (!t) {
        if (!full)
            return FO_ERR_NOMEM;
        untracked(g, name, seq, payload, len, marker, repaired);
        return FO_OK;
    }
    if (!t->started) {                           /* first sight: start here */
        t->started = 1;
        t->next = t->hi = seq;
    }
    note_multicast(g, t, repaired, now_ms);
    if (seq < t->next) {
        g->st.duplicates++;
        return FO_OK;
    }
    if (seq - t->next >= g->o.window)            /* keep seq in the window */
        settle_below(g, t, seq - g->o.window + 1);
    if (count_arrival(g, t, seq, marker, repaired))
        return FO_OK;
    if (seq == t->next && !marker) {             /* in order: no copy */
        deliver_next(g, t, payload, len, repaired);
        return FO_OK;
    }
    return hold(g, t, seq, payload, len, marker, repaired, now_ms);
}

void fo__gaps_lost(fo__gaps_t *g, const char *name, uint64_t first, uint64_t last)
{
    int full = 0;
    topic_t *t = topic_get(g, name, 0, &full);
    if (!t || !t->started || last < t->next)
        return;
    if (first < t->next)
        first = t->next;
    for (uint64_t s = first; s <= last && s < t->hi; s++) {   /* known holes */
        slot_t *sl = slot_at(g, t, s);
        if (sl->state == MISSING || sl->state == MARKER) {
            sl->state = LOST;
            g->st.lost++;
        }
    }
    drain(g, t);
    /* beyond what was known (the answer to a tail probe): never seen, gone */
    if (t->next == t->hi && first <= t->hi && last >= t->hi && last < UINT64_MAX)
        jump(g, t, last + 1);
}

static int is_hole(const slot_t *s)
{
    return s->state == MISSING || s->state == MARKER;
}

/* One topic: give up holes asked for too long ago, ask for holes old
 * enough (coalesced runs), settle. Returns ms until it needs a look. */
static uint32_t poll_topic(fo__gaps_t *g, topic_t *t, uint64_t now_ms)
{
    uint32_t now = (uint32_t)now_ms, wait = UINT32_MAX;
    uint64_t run = 0;                 /* first seq of the run to ask, or 0 */
    for (uint64_t seq = t->next; seq <= t->hi; seq++) {
        slot_t *s = seq < t->hi ? slot_at(g, t, seq) : NULL;
        int ask = 0;
        if (s && is_hole(s)) {
            uint32_t age = now - s->ms, limit = s->asked ? g->o.repair_ms : g->o.reorder_ms;
            if (!s->asked && t->hi - seq > g->o.reorder_seqs)
                age = limit;                /* far behind: not reordering */
            if (age >= limit && s->asked) {
                s->state = LOST;
                g->st.lost++;
            } else if (age >= limit) {
                ask = 1;
                s->asked = 1;
                s->ms = now;
                if (g->o.repair_ms < wait)
                    wait = g->o.repair_ms;
            } else if (limit - age < wait) {
                wait = limit - age;
            }
        }
        if (ask && !run)
            run = seq;
        if (!ask && run) {
            g->st.repair_requests++;
            if (g->cb.on_repair)
                g->cb.on_repair(g->cb.ud, t->name, run, seq - 1);
            run = 0;
        }
    }
    drain(g, t);
    return t->link[PENDING].on ? wait : UINT32_MAX;
}

/* Tail probes: a topic quiet for probe_ms since its last multicast message
 * may have lost its last datagrams, which no later message would reveal:
 * ask the broker for what follows the highest sequence known (it resends
 * what it has, ignores sequences not yet given). Oldest first. */
static uint32_t probe(fo__gaps_t *g, uint64_t now_ms)
{
    uint32_t now = (uint32_t)now_ms;
    while (g->tail[ACTIVE]) {
        topic_t *t = g->tail[ACTIVE];
        uint32_t age = now - t->rx_ms;
        if (age < g->o.probe_ms)
            return g->o.probe_ms - age;
        list_set(g, t, ACTIVE, 0);
        g->st.probes++;
        g->cb.on_repair(g->cb.ud, t->name, t->hi, t->hi + g->o.window - 1);
    }
    return UINT32_MAX;
}

uint32_t fo__gaps_poll(fo__gaps_t *g, uint64_t now_ms)
{
    uint32_t wait = probe(g, now_ms);
    for (topic_t *t = g->list[PENDING], *next; t; t = next) {
        next = t->link[PENDING].next;           /* t may leave the list */
        uint32_t w = poll_topic(g, t, now_ms);
        if (w < wait)
            wait = w;
    }
    return wait;
}

void fo__gaps_flush(fo__gaps_t *g)
{
    while (g->list[PENDING]) {
        topic_t *t = g->list[PENDING];
        give_up(g, t, t->hi);
    }
}
