/* mcast_sub.c -- multicast subscriptions inside libfanout (mcast_sub.h).
 *
 * Entries are heap objects in a growable array of pointers, one per
 * (subscription, group) receiver; the epoll set's data.ptr points at the
 * entry. Removal marks an entry dead; it is freed at once unless
 * fo__mcast_subs_run is on the stack (a callback unsubscribed), in which
 * case run frees it on the way out. Stats of one subscription add up its
 * receivers' (fo_sub_mcast_stats).
 */
#include "mcast_sub.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "client_int.h"
#include "mcast_rx.h"
#include "topic_name.h"

#define MAX_RECEIVERS 256
#define MAX_EVENTS 64

typedef struct group {
    char *filter, *addr;      /* owned */
    uint16_t port;
} group_t;

typedef struct entry {
    fo__mcast_subs_t *m;
    uint32_t sid;
    int dead;
    fo__mcast_rx_t *rx;       /* owned */
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

static void groups_free(fo__mcast_subs_t *m)
{
    for (size_t i = 0; i < m->ngroups; i++) {
        free(m->groups[i].filter);
        free(m->groups[i].addr);
    }
    free(m->groups);
    m->groups = NULL;
    m->ngroups = 0;
}

static void entry_free(entry_t *e)
{
    fo__mcast_rx_destroy(e->rx);        /* closing the fd leaves epoll */
    free(e);
}

void fo__mcast_subs_destroy(fo__mcast_subs_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nents; i++)
        entry_free(m->ents[i]);
    free(m->ents);
    groups_free(m);
    close(m->epfd);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

fo_err_t fo__mcast_subs_welcome(fo__mcast_subs_t *m, const Fanout__Welcome *w)
{
    fo_err_t err = FO_OK;
    pthread_mutex_lock(&m->mu);
    groups_free(m);
    if (w->n_groups && !(m->groups = calloc(w->n_groups, sizeof(*m->groups))))
        err = FO_ERR_NOMEM;
    for (size_t i = 0; !err && i < w->n_groups; i++) {
        const Fanout__McastGroup *g = w->groups[i];
        if (!g->filter || !g->address || !g->has_port || g->port == 0 || g->port > 65535)
            continue;                   /* unusable: skip */
        group_t *d = &m->groups[m->ngroups];
        d->filter = strdup(g->filter);
        d->addr = strdup(g->address);
        d->port = (uint16_t)g->port;
        m->ngroups++;
        if (!d->filter || !d->addr)
            err = FO_ERR_NOMEM;
    }
    m->max_datagram = w->has_max_datagram ? w->max_datagram : 0;
    uint64_t epoch = w->has_epoch ? w->epoch : 0;
    if (epoch != m->epoch) {
        m->epoch = epoch;
        for (size_t i = 0; i < m->nents; i++)
            fo__mcast_rx_set_epoch(m->ents[i]->rx, epoch);
    }
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

fo_err_t fo__mcast_subs_add(fo__mcast_subs_t *m, uint32_t sid, const char *filter,
                            const char *iface)
{
    fo_err_t err;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->ngroups; i++) {
        const group_t *g = &m->groups[i];
        if (!fo_filters_overlap(filter, g->filter))
            continue;
        if (m->nents >= MAX_RECEIVERS) {
            err = FO_ERR_BUSY;
            goto fail;
        }
        if (m->nents == m->cap) {
            size_t ncap = m->cap ? m->cap * 2 : 4;
            entry_t **ne = realloc(m->ents, ncap * sizeof(*ne));
            if (!ne) {
                err = FO_ERR_NOMEM;
                goto fail;
            }
            m->ents = ne;
            m->cap = ncap;
        }
        entry_t *e = calloc(1, sizeof(*e));
        if (!e) {
            err = FO_ERR_NOMEM;
            goto fail;
        }
        e->m = m;
        e->sid = sid;
        fo__mcast_rx_opts_t o = { .group = g->addr, .port = g->port, .iface = iface,
                                 .filter = filter, .epoch = m->epoch,
                                 .max_datagram = m->max_datagram };
        fo__gaps_cb_t cb = { on_deliver, on_lost, on_repair, e };
        if ((err = fo__mcast_rx_create(&o, &cb, &e->rx)) != FO_OK) {
            free(e);
            goto fail;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = e };
        if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fo__mcast_rx_fd(e->rx), &ev) < 0) {
            entry_free(e);
            err = FO_ERR_IO;
            goto fail;
        }
        m->ents[m->nents++] = e;
    }
    pthread_mutex_unlock(&m->mu);
    return FO_OK;
fail:
    pthread_mutex_unlock(&m->mu);
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
        out->bad += st.bad + st.foreign + st.dropped + st.errors;
        out->groups++;
    }
    pthread_mutex_unlock(&m->mu);
    return FO_OK;
}
