/* sub.c -- subscriptions: subscribe, unsubscribe, fo_sub_next, dispatch.
 *
 * The client keeps its subscriptions in an array sorted by sid (sids only
 * grow, so a new one is appended) under c->mu; the reader finds a sub by
 * binary search and "pins" it (busy++) for the time it runs its callback
 * or touches its seqmap; it keeps the last one pinned for a whole read
 * batch, so a stream of messages for one subscription takes no lock. fo_unsubscribe removes the sub from the table, then waits
 * until it is unpinned before freeing it; called on the reader thread
 * itself (from a callback) it cannot wait, so the reader frees the sub
 * when it unpins it ("orphan").
 *
 * Queue mode (no callback): the reader copies each message into the sub's
 * bounded msgq and signals; fo_sub_next pops into a reusable buffer. A
 * full queue drops the message and reports an FO_GAP_LOCAL gap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "client_int.h"
#include "clock.h"
#include "mcast_sub.h"

void fo_sub_opts_init(fo_sub_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_queued = 16u << 20;
}

uint32_t fo_sub_id(const fo_sub_t *s) { return s->sid; }
uint64_t fo_sub_delivered_count(const fo_sub_t *s) { return atomic_load(&s->delivered); }
uint64_t fo_sub_gap_count(const fo_sub_t *s) { return atomic_load(&s->gap_msgs); }

void fo__sub_free(fo_sub_t *s)
{
    if (!s)
        return;
    free(s->filter);
    free(s->queue);
    fo__seqmap_destroy(&s->seqs);
    fo__msgq_destroy(&s->q);
    pthread_mutex_destroy(&s->qmu);
    pthread_cond_destroy(&s->qcv);
    free(s);
}

/* ------------------------------------------------------------ table (mu) */

static size_t find_locked(const fo_client_t *c, uint32_t sid)
{
    size_t lo = 0, hi = c->nsubs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->subs[mid]->sid < sid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int remove_locked(fo_client_t *c, fo_sub_t *s)
{
    size_t i = find_locked(c, s->sid);
    if (i >= c->nsubs || c->subs[i] != s)
        return 0;
    memmove(&c->subs[i], &c->subs[i + 1], (c->nsubs - i - 1) * sizeof *c->subs);
    c->nsubs--;
    return 1;
}

fo_sub_t *fo__client_pin(fo_client_t *c, uint32_t sid)
{
    fo_sub_t *s = NULL;
    pthread_mutex_lock(&c->mu);
    size_t i = find_locked(c, sid);
    if (i < c->nsubs && c->subs[i]->sid == sid) {
        s = c->subs[i];
        atomic_fetch_add(&s->busy, 1);
    }
    pthread_mutex_unlock(&c->mu);
    return s;
}

void fo__client_unpin(fo_client_t *c, fo_sub_t *s)
{
    int orphan = s->orphan;   /* read before s may be freed by a waiter */
    if (atomic_fetch_sub(&s->busy, 1) == 1 && atomic_load(&s->dead)) {
        if (orphan) {
            fo__sub_free(s);
        } else {
            pthread_mutex_lock(&c->mu);
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
        }
    }
}

/* ------------------------------------------------------------ delivery */

void fo__client_gap(fo_client_t *c, fo_sub_t *s, const char *topic,
                    uint64_t first, uint64_t last, fo_gap_reason_t why)
{
    uint64_t n = last - first + 1;
    atomic_fetch_add(&c->st_gaps, 1);
    atomic_fetch_add(&c->st_gap_messages, n);
    atomic_fetch_add(&s->gap_msgs, n);
    if (c->on_gap) {
        fo_gap_t g = { s, topic, first, last, why };
        c->on_gap(c->ud, &g);
    }
}

void fo__client_dispatch(fo_client_t *c, fo_sub_t *s, const fo_msg_t *m)
{
    if (s->cb) {
        FO__COUNT_ADD(s->delivered, 1);
        FO__COUNT_ADD(c->st_delivered, 1);
        s->cb(s->ud, s, m);
        return;
    }
    pthread_mutex_lock(&s->qmu);
    fo_err_t err = fo__msgq_push(&s->q, m);
    if (!err) {
        /* counted before fo_sub_next can hand it out: whoever took the
         * last message and then reads the count sees it (it was counted
         * after the unlock, and `fanout sub --stats` said 1999 of 2000) */
        FO__COUNT_ADD(s->delivered, 1);
        FO__COUNT_ADD(c->st_delivered, 1);
        pthread_cond_signal(&s->qcv);
    }
    pthread_mutex_unlock(&s->qmu);
    if (err)
        fo__client_gap(c, s, m->topic, m->seq, m->seq, FO_GAP_LOCAL);
}

void fo__client_wake_subs(fo_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nsubs; i++) {
        pthread_mutex_lock(&c->subs[i]->qmu);
        pthread_cond_broadcast(&c->subs[i]->qcv);
        pthread_mutex_unlock(&c->subs[i]->qmu);
    }
    pthread_mutex_unlock(&c->mu);
}

fo_err_t fo_sub_next(fo_sub_t *s, int timeout_ms, const fo_msg_t **out)
{
    if (!s || !out || s->cb)
        return FO_ERR_INVAL;
    struct timespec dl = fo_deadline_ts(timeout_ms);
    *out = NULL;
    pthread_mutex_lock(&s->qmu);
    fo_err_t err;
    for (;;) {
        err = fo__msgq_pop(&s->q, &s->cur);
        if (err != FO_ERR_AGAIN)
            break;
        if (atomic_load(&s->c->dead)) {
            err = FO_ERR_CLOSED;
            break;
        }
        if (timeout_ms == 0) {
            err = FO_ERR_TIMEOUT;
            break;
        }
        if (timeout_ms < 0)
            pthread_cond_wait(&s->qcv, &s->qmu);
        else if (pthread_cond_timedwait(&s->qcv, &s->qmu, &dl) == ETIMEDOUT) {
            err = fo__msgq_pop(&s->q, &s->cur);
            if (err == FO_ERR_AGAIN)
                err = FO_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&s->qmu);
    if (!err)
        *out = &s->cur;
    return err;
}

/* ------------------------------------------------------------ frames */

/* Fill a Subscribe for s. positions (may be NULL) are borrowed. */
static void sub_frame(const fo_sub_t *s, Fanout__Frame *f, Fanout__Subscribe *m)
{
    fanout__subscribe__init(m);
    m->has_sid = 1;
    m->sid = s->sid;
    m->filter = s->filter;
    m->queue = s->queue;
    if (s->delivery) {
        m->has_delivery = 1;
        m->delivery = (Fanout__Delivery)s->delivery;
    }
    if (s->start) {
        m->has_start = 1;
        m->start = (Fanout__Start)s->start;
    }
    if (s->start == FO_START_SEQ) {
        m->has_start_seq = 1;
        m->start_seq = s->start_seq;
    }
    if (s->slow) {
        m->has_slow = 1;
        m->slow = (Fanout__SlowPolicy)s->slow;
    }
    f->body_case = FANOUT__FRAME__BODY_SUBSCRIBE;
    f->subscribe = m;
}

static void unsub_frame(uint32_t sid, Fanout__Frame *f, Fanout__Unsubscribe *u)
{
    fanout__unsubscribe__init(u);
    u->has_sid = 1;
    u->sid = sid;
    f->body_case = FANOUT__FRAME__BODY_UNSUBSCRIBE;
    f->unsubscribe = u;
}

fo_err_t fo__client_unsubscribe_all(fo_client_t *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->nsubs;
    uint32_t *sids = n ? malloc(n * sizeof *sids) : NULL;
    for (size_t i = 0; sids && i < n; i++)
        sids[i] = c->subs[i]->sid;
    pthread_mutex_unlock(&c->mu);
    if (n && !sids)
        return FO_ERR_NOMEM;
    fo_err_t err = FO_OK;
    for (size_t i = 0; !err && i < n; i++) {
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Unsubscribe u;
        unsub_frame(sids[i], &f, &u);
        err = fo__client_send_frame(c, &f);
    }
    free(sids);
    return err;
}

/* One sub's SUBSCRIBE with resume positions, kept under max_frame. */
static fo_err_t append_resub(fo_client_t *c, fo_sub_t *s, fo_buf_t *frames)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe m;
    sub_frame(s, &f, &m);
    /* Queue-group and multicast subscriptions take no positions. */
    size_t n = s->queue || s->delivery != FO_DELIVERY_TCP ? 0 : s->seqs.count;
    Fanout__Position *pos = n ? calloc(n, sizeof *pos) : NULL;
    Fanout__Position **pp = n ? calloc(n, sizeof *pp) : NULL;
    if (n && (!pos || !pp)) {
        free(pos);
        free(pp);
        return FO_ERR_NOMEM;
    }
    size_t k = 0, i = 0, budget = c->dec.max_frame / 2, used = 0;
    const fo__seqmap_ent_t *e;
    while ((e = fo__seqmap_next(&s->seqs, &i)) && k < n) {
        if (!e->seq)
            continue;
        used += e->len + 16;
        if (used > budget)
            break;          /* the rest follow `start`: see docs/CLIENT.md */
        fanout__position__init(&pos[k]);
        pos[k].topic = e->topic;
        pos[k].has_seq = 1;
        pos[k].seq = fo__seqmap_resume(e);
        pp[k] = &pos[k];
        k++;
    }
    m.n_positions = k;
    m.positions = pp;
    fo_err_t err = fo_frame_append(frames, &f);
    free(pos);
    free(pp);
    return err;
}

fo_err_t fo__client_resubscribe(fo_client_t *c, fo_buf_t *frames, int forget)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->nsubs;
    fo_sub_t **list = n ? malloc(n * sizeof *list) : NULL;
    if (n && !list) {
        pthread_mutex_unlock(&c->mu);
        return FO_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        list[i] = c->subs[i];
        atomic_fetch_add(&list[i]->busy, 1);
    }
    pthread_mutex_unlock(&c->mu);
    fo_err_t err = FO_OK;
    for (size_t i = 0; i < n; i++) {
        fo_sub_t *s = list[i];
        if (forget)
            fo__seqmap_clear(&s->seqs);
        if (!err)
            err = append_resub(c, s, frames);
        fo__client_unpin(c, s);
    }
    free(list);
    return err;
}

fo_err_t fo__client_send_repair(fo_client_t *c, uint32_t sid, const char *topic,
                                uint64_t first, uint64_t last)
{
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Repair r = FANOUT__REPAIR__INIT;
    r.has_sid = 1;
    r.sid = sid;
    r.topic = (char *)topic;
    r.has_first = r.has_last = 1;
    r.first = first;
    r.last = last;
    f.body_case = FANOUT__FRAME__BODY_REPAIR;
    f.repair = &r;
    return fo__client_send_frame(c, &f);
}

/* ------------------------------------------------------------ API */

/* Take s out of the table and free it once no callback runs for it. */
static void retire(fo_client_t *c, fo_sub_t *s)
{
    fo__mcast_subs_remove(c->mcast, s->sid);    /* before mu: lock order */
    pthread_mutex_lock(&c->mu);
    remove_locked(c, s);
    atomic_store(&s->dead, 1);
    if (fo__client_on_reader(c)) {
        int busy = atomic_load(&s->busy) > 0;
        if (busy)
            s->orphan = 1;     /* the reader frees it when it unpins */
        pthread_mutex_unlock(&c->mu);
        if (!busy)
            fo__sub_free(s);
        return;
    }
    while (atomic_load(&s->busy) > 0)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    fo__sub_free(s);
}

static int opts_valid(const fo_sub_opts_t *o)
{
    return (unsigned)o->start <= FO_START_EARLIEST && (unsigned)o->slow <= FO_SLOW_BLOCK &&
           (unsigned)o->delivery <= FO_DELIVERY_MULTICAST;
}

/* A new subscription of c, not yet in its table: *out, or FO_ERR_NOMEM
 * with nothing left behind. */
static fo_err_t sub_new(fo_client_t *c, const char *filter, const fo_sub_opts_t *opts,
                        fo_sub_t **out)
{
    fo_sub_t *s = calloc(1, sizeof *s);
    if (!s)
        return FO_ERR_NOMEM;
    if (pthread_mutex_init(&s->qmu, NULL)) {
        free(s);
        return FO_ERR_NOMEM;
    }
    if (fo__client_cond_init(&s->qcv)) {
        pthread_mutex_destroy(&s->qmu);
        free(s);
        return FO_ERR_NOMEM;
    }
    s->c = c;
    fo__seqmap_init(&s->seqs, 0);
    fo__msgq_init(&s->q, opts->max_queued);
    s->filter = strdup(filter);
    s->queue = opts->queue && *opts->queue ? strdup(opts->queue) : NULL;
    if (!s->filter || (opts->queue && *opts->queue && !s->queue)) {
        fo__sub_free(s);
        return FO_ERR_NOMEM;
    }
    s->start = opts->start;
    s->start_seq = opts->start_seq;
    s->slow = opts->slow;
    s->delivery = opts->delivery;
    s->cb = opts->cb;
    s->ud = opts->ud;
    *out = s;
    return FO_OK;
}

/* Give s the next sid and put it in the table (which stays sorted: sids
 * only grow). Not while disconnected. */
static fo_err_t table_add(fo_client_t *c, fo_sub_t *s)
{
    fo_err_t err = FO_OK;
    pthread_mutex_lock(&c->mu);
    if (c->state != FO__ST_CONNECTED) {
        err = c->state == FO__ST_CLOSED ? FO_ERR_CLOSED : FO_ERR_NOT_CONNECTED;
    } else if (c->nsubs == c->subs_cap) {
        size_t ncap = c->subs_cap ? c->subs_cap * 2 : 8;
        fo_sub_t **ns = realloc(c->subs, ncap * sizeof *ns);
        if (ns) {
            c->subs = ns;
            c->subs_cap = ncap;
        } else {
            err = FO_ERR_NOMEM;
        }
    }
    if (!err) {
        s->sid = ++c->next_sid;
        c->subs[c->nsubs++] = s;
    }
    pthread_mutex_unlock(&c->mu);
    return err;
}

/* Tell the broker: join the multicast groups first (so nothing is
 * missed), then SUBSCRIBE and, off the reader thread, wait for the ACK.
 * A SUBSCRIBE that failed otherwise than by the broker's refusal may
 * still have reached it: it is taken back. */
static fo_err_t announce(fo_client_t *c, fo_sub_t *s, const char *iface)
{
    fo_err_t err = s->delivery != FO_DELIVERY_MULTICAST ? FO_OK
                 : fo__mcast_subs_add(c->mcast, s->sid, s->filter, iface);
    if (err)
        return err;
    Fanout__Frame f = FANOUT__FRAME__INIT;
    Fanout__Subscribe m;
    sub_frame(s, &f, &m);
    err = fo__client_on_reader(c) ? fo__client_send_frame(c, &f)
        : fo__client_request(c, &f, c->request_timeout_ms, NULL);
    if (err && err != FO_ERR_SERVER) {
        Fanout__Unsubscribe u;
        unsub_frame(s->sid, &f, &u);
        f.has_req = 0;
        /* Best effort: if it cannot be sent the connection is gone,
         * and the broker drops the subscription with it. */
        (void)!fo__client_send_frame(c, &f);
    }
    return err;
}

fo_err_t fo_subscribe(fo_client_t *c, const char *filter,
                      const fo_sub_opts_t *opts, fo_sub_t **out)
{
    if (!c || !filter || !*filter || !out)
        return FO_ERR_INVAL;
    fo_sub_opts_t def;
    if (!opts) {
        fo_sub_opts_init(&def);
        opts = &def;
    }
    if (!opts_valid(opts))
        return FO_ERR_INVAL;
    fo_sub_t *s;
    fo_err_t err = sub_new(c, filter, opts, &s);
    if (err)
        return err;
    if ((err = table_add(c, s))) {
        fo__sub_free(s);
        return err;
    }
    if ((err = announce(c, s, opts->mcast_iface))) {
        retire(c, s);
        return err;
    }
    *out = s;
    return FO_OK;
}

fo_err_t fo_unsubscribe(fo_sub_t *s)
{
    if (!s)
        return FO_OK;
    fo_client_t *c = s->c;
    pthread_mutex_lock(&c->mu);
    int connected = c->state == FO__ST_CONNECTED;
    pthread_mutex_unlock(&c->mu);
    fo_err_t err = FO_OK;
    if (connected) {
        Fanout__Frame f = FANOUT__FRAME__INIT;
        Fanout__Unsubscribe u;
        unsub_frame(s->sid, &f, &u);
        /* Waiting for the ACK means no late DELIVER for this sid is left
         * in flight when we return (the broker answers in order). */
        err = fo__client_on_reader(c) ? fo__client_send_frame(c, &f)
            : fo__client_request(c, &f, c->request_timeout_ms, NULL);
        if (err == FO_ERR_NOT_CONNECTED)
            err = FO_OK;   /* gone with the connection anyway */
    }
    retire(c, s);
    return err;
}
