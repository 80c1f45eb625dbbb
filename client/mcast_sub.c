/* mcast_sub.c -- multicast subscriptions inside libfanout (mcast_sub.h).
 *
 * Entries are heap objects in a growable array of pointers, one per
 * (subscription, group) receiver; the epoll set's data.ptr points at the
 * entry. Removal marks an entry dead; it is freed at once unless
 * fo__mcast_subs_run is on the stack (a callback unsubscribed), in which
 * case run frees it on the way out. Stats of one subscription add up its
 * receivers' (fo_sub_mcast_stats).
 *
 * Only groups WELCOME gave a key for are joined (the broker sends the
 * topics of the others to this connection by TCP). Every WELCOME is
 * reconciled: each receiver whose group is still announced with a key
 * takes the (possibly new) epoch and key; one whose group is gone or came
 * without a key gives up its holes and ends; a multicast subscription
 * joins the groups that newly came with a key. The subscriptions'
 * filters and interfaces are kept for that (msub_t).
 */
#include "mcast_sub.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <sodium.h>

#include "client_int.h"
#include "dgram_tag.h"
#include "mcast_rx.h"
#include "topic_name.h"

#define MAX_RECEIVERS 256
#define MAX_EVENTS 64

typedef struct group {
    char *filter, *addr;      /* owned */
    uint16_t port;
    int keyed;                /* the key came with it */
    uint8_t key[FO_DGRAM_KEY_LEN];
} group_t;

/* A multicast subscription: what joining its groups again needs. */
typedef struct msub {
    uint32_t sid;
    uint32_t unkeyed;         /* overlapping groups announced without a key */
    char *filter, *iface;     /* owned; iface may be NULL */
} msub_t;

typedef struct entry {
    fo__mcast_subs_t *m;
    uint32_t sid;
    int dead;
    fo__mcast_rx_t *rx;       /* owned */
    group_t g;                /* its group: filter, addr (owned), port; no key */
} entry_t;

struct fo__mcast_subs {
    fo_client_t *c;           /* borrowed */
    pthread_mutex_t mu;       /* recursive */
    int epfd;
    group_t *groups;          /* owned, from the last WELCOME */
    size_t ngroups;
    uint64_t epoch;
    uint32_t max_datagram;
    entry_t **ents;           /* owned */
    size_t nents, cap;
    msub_t *subs;             /* owned: the multicast subscriptions */
    size_t nsubs, subs_cap;
    int running;              /* inside run: defer frees */
    int evicted;              /* inside _gap: losses are GAP_EVICTED */
};

/* The set's lock is recursive: callbacks run under it may (un)subscribe. */
static int recursive_mutex_init(pthread_mutex_t *mu)
{
    pthread_mutexattr_t a;
    int err = pthread_mutexattr_init(&a);
    if (err)
        return err;
    err = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    if (!err)
        err = pthread_mutex_init(mu, &a);
    int derr = pthread_mutexattr_destroy(&a);
    if (!err && derr) {
        pthread_mutex_destroy(mu);
        err = derr;
    }
    return err;
}

fo_err_t fo__mcast_subs_create(fo_client_t *c, fo__mcast_subs_t **out)
{
    fo__mcast_subs_t *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m)
        return FO_ERR_NOMEM;
    m->c = c;
    if (recursive_mutex_init(&m->mu)) {
        free(m);
        return FO_ERR_NOMEM;
    }
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (m->epfd < 0) {
        pthread_mutex_destroy(&m->mu);
        free(m);
        return FO_ERR_IO;
    }
    *out = m;
    return FO_OK;
}

static void group_clear(group_t *g)
{
    free(g->filter);
    free(g->addr);
    sodium_memzero(g, sizeof(*g));
}

static void groups_free(group_t *gs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        group_clear(&gs[i]);
    free(gs);
}

static void entry_free(entry_t *e)
{
    fo__mcast_rx_destroy(e->rx);        /* closing the fd leaves epoll */
    group_clear(&e->g);
    free(e);
}

static void msub_clear(msub_t *s)
{
    free(s->filter);
    free(s->iface);
}

void fo__mcast_subs_destroy(fo__mcast_subs_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nents; i++)
        entry_free(m->ents[i]);
    free(m->ents);
    for (size_t i = 0; i < m->nsubs; i++)
        msub_clear(&m->subs[i]);
    free(m->subs);
    groups_free(m->groups, m->ngroups);
    close(m->epfd);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* w's usable groups, copied (with their keys) into *out. */
static fo_err_t groups_copy(const Fanout__Welcome *w, group_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    group_t *gs = w->n_groups ? calloc(w->n_groups, sizeof(*gs)) : NULL;
    if (w->n_groups && !gs)
        return FO_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < w->n_groups; i++) {
        const Fanout__McastGroup *g = w->groups[i];
        if (!g->filter || !g->address || !g->has_port || g->port == 0 || g->port > 65535)
            continue;                   /* unusable: skip */
        group_t *d = &gs[k++];
        d->filter = strdup(g->filter);
        d->addr = strdup(g->address);
        d->port = (uint16_t)g->port;
        if (!d->filter || !d->addr) {
            groups_free(gs, k);
            return FO_ERR_NOMEM;
        }
        /* a key of another length is no key: the group is not joined */
        d->keyed = g->has_key && g->key.len == FO_DGRAM_KEY_LEN;
        if (d->keyed)
            memcpy(d->key, g->key.data, FO_DGRAM_KEY_LEN);
    }
    *out = gs;
    *n = k;
    return FO_OK;
}

static int same_group(const group_t *a, const group_t *b)
{
    return a->port == b->port && !strcmp(a->addr, b->addr) && !strcmp(a->filter, b->filter);
}

/* The keyed group of the current table that e listens to, or NULL. */
static const group_t *keyed_group_of(const fo__mcast_subs_t *m, const entry_t *e)
{
    for (size_t i = 0; i < m->ngroups; i++)
        if (m->groups[i].keyed && same_group(&m->groups[i], &e->g))
            return &m->groups[i];
    return NULL;
}

static fo_err_t join(fo__mcast_subs_t *m, msub_t *s);
static void purge(fo__mcast_subs_t *m);

fo_err_t fo__mcast_subs_welcome(fo__mcast_subs_t *m, const Fanout__Welcome *w)
{
    group_t *gs;
    size_t n;
    fo_err_t err = groups_copy(w, &gs, &n);
    if (err)
        return err;
    pthread_mutex_lock(&m->mu);
    m->running++;                       /* flushes below may call back */
    groups_free(m->groups, m->ngroups);
    m->groups = gs;
    m->ngroups = n;
    m->max_datagram = w->has_max_datagram ? w->max_datagram : 0;
    m->epoch = w->has_epoch ? w->epoch : 0;
    for (size_t i = 0; i < m->nents; i++) {
        entry_t *e = m->ents[i];
        if (e->dead)
            continue;
        const group_t *g = keyed_group_of(m, e);
        if (g) {                        /* a new epoch resets it */
            fo__mcast_rx_rekey(e->rx, m->epoch, g->key);
            continue;
        }
        /* gone, or no key for us now: its topics come by TCP from the
         * resubscribe on; what it still waits for is given up */
        fo__mcast_rx_flush(e->rx);
        e->dead = 1;
    }
    for (size_t i = 0; !err && i < m->nsubs; i++)
        err = join(m, &m->subs[i]);
    if (--m->running == 0)
        purge(m);
    pthread_mutex_unlock(&m->mu);
    return err;
}

/* ------------------------------------------------------------ callbacks */

static void on_deliver(void *ud, const char *topic, uint64_t seq, const uint8_t *p, size_t n,
                       int repaired)
{
    entry_t *e = ud;
    fo_client_t *c = e->m->c;
    fo_sub_t *s = e->dead ? NULL : fo__client_pin(c, e->sid);
    if (!s)
        return;
    fo_msg_t msg = { topic, strlen(topic), p ? (const void *)p : "", n, seq, 0, repaired,
                     NULL, NULL, 0 };
    fo__client_dispatch(c, s, &msg);
    fo__client_unpin(c, s);
}

static void on_lost(void *ud, const char *topic, uint64_t first, uint64_t last)
{
    entry_t *e = ud;
    fo_client_t *c = e->m->c;
    fo_sub_t *s = e->dead ? NULL : fo__client_pin(c, e->sid);
    if (!s)
        return;
    fo__client_gap(c, s, topic, first, last,
                   e->m->evicted ? FO_GAP_EVICTED : FO_GAP_MULTICAST);
    fo__client_unpin(c, s);
}

static void on_repair(void *ud, const char *topic, uint64_t first, uint64_t last)
{
    entry_t *e = ud;
    /* Unsent (no connection): the holes are given up after repair_ms and
     * reported as gaps, like an unanswered request. */
    if (!e->dead)
        (void)!fo__client_send_repair(e->m->c, e->sid, topic, first, last);
}

/* ------------------------------------------------------------ set */

/* s's live receiver for group g? Holds mu. */
static int joined(const fo__mcast_subs_t *m, uint32_t sid, const group_t *g)
{
    for (size_t i = 0; i < m->nents; i++)
        if (m->ents[i]->sid == sid && !m->ents[i]->dead && same_group(&m->ents[i]->g, g))
            return 1;
    return 0;
}

/* A receiver for (s, g), in the set. Holds mu. */
static fo_err_t entry_add(fo__mcast_subs_t *m, const msub_t *s, const group_t *g)
{
    if (m->nents >= MAX_RECEIVERS)
        return FO_ERR_BUSY;
    if (m->nents == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 4;
        entry_t **ne = realloc(m->ents, ncap * sizeof(*ne));
        if (!ne)
            return FO_ERR_NOMEM;
        m->ents = ne;
        m->cap = ncap;
    }
    entry_t *e = calloc(1, sizeof(*e));
    if (!e)
        return FO_ERR_NOMEM;
    e->m = m;
    e->sid = s->sid;
    e->g.port = g->port;
    e->g.filter = strdup(g->filter);
    e->g.addr = strdup(g->addr);
    if (!e->g.filter || !e->g.addr) {
        entry_free(e);
        return FO_ERR_NOMEM;
    }
    fo__mcast_rx_opts_t o = { .group = g->addr, .port = g->port, .iface = s->iface,
                             .filter = s->filter, .epoch = m->epoch, .key = g->key,
                             .max_datagram = m->max_datagram };
    fo__gaps_cb_t cb = { on_deliver, on_lost, on_repair, e };
    fo_err_t err = fo__mcast_rx_create(&o, &cb, &e->rx);
    if (err) {
        entry_free(e);
        return err;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = e };
    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fo__mcast_rx_fd(e->rx), &ev) < 0) {
        entry_free(e);
        return FO_ERR_IO;
    }
    m->ents[m->nents++] = e;
    return FO_OK;
}

/* Join every keyed group that overlaps s's filter and is not joined yet;
 * count the overlapping ones without a key. Holds mu. */
static fo_err_t join(fo__mcast_subs_t *m, msub_t *s)
{
    s->unkeyed = 0;
    for (size_t i = 0; i < m->ngroups; i++) {
        const group_t *g = &m->groups[i];
        if (!fo_filters_overlap(s->filter, g->filter))
            continue;
        if (!g->keyed) {
            s->unkeyed++;
            continue;
        }
        fo_err_t err = joined(m, s->sid, g) ? FO_OK : entry_add(m, s, g);
        if (err)
            return err;
    }
    return FO_OK;
}

/* Forget sid's record. Holds mu. */
static void msub_remove(fo__mcast_subs_t *m, uint32_t sid)
{
    for (size_t i = 0; i < m->nsubs; i++)
        if (m->subs[i].sid == sid) {
            msub_clear(&m->subs[i]);
            m->subs[i] = m->subs[--m->nsubs];
            return;
        }
}

fo_err_t fo__mcast_subs_add(fo__mcast_subs_t *m, uint32_t sid, const char *filter,
                            const char *iface)
{
    fo_err_t err = FO_ERR_NOMEM;
    pthread_mutex_lock(&m->mu);
    if (m->nsubs == m->subs_cap) {
        size_t ncap = m->subs_cap ? m->subs_cap * 2 : 4;
        msub_t *ns = realloc(m->subs, ncap * sizeof(*ns));
        if (!ns)
            goto out;
        m->subs = ns;
        m->subs_cap = ncap;
    }
    msub_t *s = &m->subs[m->nsubs];
    memset(s, 0, sizeof(*s));
    s->sid = sid;
    s->filter = strdup(filter);
    s->iface = iface && iface[0] ? strdup(iface) : NULL;
    if (!s->filter || (iface && iface[0] && !s->iface)) {
        msub_clear(s);
        goto out;
    }
    m->nsubs++;
    err = join(m, s);
out:
    pthread_mutex_unlock(&m->mu);
    if (err)
        fo__mcast_subs_remove(m, sid);
    return err;
}

/* Free dead entries (not while run is on the stack). Holds mu. */
static void purge(fo__mcast_subs_t *m)
{
    size_t k = 0;
    for (size_t i = 0; i < m->nents; i++) {
        if (m->ents[i]->dead)
            entry_free(m->ents[i]);
        else
            m->ents[k++] = m->ents[i];
    }
    m->nents = k;
}

void fo__mcast_subs_remove(fo__mcast_subs_t *m, uint32_t sid)
{
    pthread_mutex_lock(&m->mu);
    msub_remove(m, sid);
    for (size_t i = 0; i < m->nents; i++)
        if (m->ents[i]->sid == sid)
            m->ents[i]->dead = 1;
    if (!m->running)
        purge(m);
    pthread_mutex_unlock(&m->mu);
}

int fo__mcast_subs_fd(const fo__mcast_subs_t *m)
{
    return m->epfd;
}

int fo__mcast_subs_run(fo__mcast_subs_t *m, uint64_t now_ms)
{
    struct epoll_event ev[MAX_EVENTS];
    uint32_t wait = UINT32_MAX;
    pthread_mutex_lock(&m->mu);
    m->running++;
    int n = epoll_wait(m->epfd, ev, MAX_EVENTS, 0);
    for (int i = 0; i < n; i++) {
        entry_t *e = ev[i].data.ptr;
        /* FO_ERR_AGAIN: more is waiting, come back at once; a failed
         * read (FO_ERR_IO) is counted by the receiver (stats.errors). */
        if (!e->dead && fo__mcast_rx_read(e->rx, now_ms) == FO_ERR_AGAIN)
            wait = 0;
    }
    for (size_t i = 0; i < m->nents; i++) {     /* nents may grow meanwhile */
        entry_t *e = m->ents[i];
        if (e->dead)
            continue;
        uint32_t w = fo__mcast_rx_poll(e->rx, now_ms);
        if (w < wait)
            wait = w;
    }
    if (--m->running == 0)
        purge(m);
    pthread_mutex_unlock(&m->mu);
    return wait == UINT32_MAX ? -1 : wait > 60000 ? 60000 : (int)wait;
}

/* The live entries of sid, one at a time: returns 1 if any took it. */
int fo__mcast_subs_repaired(fo__mcast_subs_t *m, uint32_t sid, const fo_msg_t *msg,
                            uint64_t now_ms)
{
    int took = 0;
    pthread_mutex_lock(&m->mu);
    m->running++;
    for (size_t i = 0; i < m->nents; i++) {
        entry_t *e = m->ents[i];
        if (e->sid != sid || e->dead)
            continue;
        took = 1;
        fo__mcast_rx_repaired(e->rx, msg->topic, msg->seq, msg->payload, msg->payload_len,
                              now_ms);
    }
    if (--m->running == 0)
        purge(m);
    pthread_mutex_unlock(&m->mu);
    return took;
}

int fo__mcast_subs_gap(fo__mcast_subs_t *m, uint32_t sid, const char *topic, uint64_t first,
                       uint64_t last)
{
    int took = 0;
    pthread_mutex_lock(&m->mu);
    m->running++;
    m->evicted = 1;
    for (size_t i = 0; i < m->nents; i++) {
        entry_t *e = m->ents[i];
        if (e->sid != sid || e->dead)
            continue;
        took = 1;
        fo__mcast_rx_lost(e->rx, topic, first, last);
    }
    m->evicted = 0;
    if (--m->running == 0)
        purge(m);
    pthread_mutex_unlock(&m->mu);
    return took;
}

fo_err_t fo_sub_mcast_stats(const fo_sub_t *s, fo_mcast_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!s || s->delivery != FO_DELIVERY_MULTICAST || !s->c->mcast)
        return FO_ERR_INVAL;
    fo__mcast_subs_t *m = s->c->mcast;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nents; i++) {
        entry_t *e = m->ents[i];
        if (e->sid != s->sid)
            continue;
        fo__mcast_rx_stats_t st;
        fo__mcast_rx_stats(e->rx, &st);
        out->received += st.gaps.received;
        out->gaps += st.gaps.gaps;
        out->repaired += st.gaps.repaired;
        out->lost += st.gaps.lost;
        out->duplicates += st.gaps.duplicates;
        out->oversize += st.gaps.oversize;
        out->datagrams += st.datagrams;
        out->bad += st.bad + st.forged + st.replayed + st.foreign + st.dropped + st.errors;
        out->forged += st.forged;
        out->replayed += st.replayed;
        out->foreign += st.foreign;
        out->groups++;
    }
    for (size_t i = 0; i < m->nsubs; i++)
        if (m->subs[i].sid == s->sid)
            out->unkeyed = m->subs[i].unkeyed;
    pthread_mutex_unlock(&m->mu);
    return FO_OK;
}
