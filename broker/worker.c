/* worker.c -- the event loop of one worker thread (see worker.h).
 *
 * One iteration:
 *   1. epoll_wait (timeout: the next timer tick, <= 250 ms);
 *   2. handle events: the inbox eventfd (new connections, messages from
 *      other workers), readable/writable sockets;
 *   3. post the outboxes to the other workers' inboxes (one lock each);
 *   4. write every dirty connection (writev), flush multicast;
 *   5. timers (keepalive, idle and hello timeouts, lingering closes), and
 *      the drain state machine when the broker is stopping.
 * Messages published in step 2 are therefore written in step 4 of the same
 * iteration: one write per connection per iteration, whatever the count.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "login.h"
#include "route.h"
#include "tcache.h"
#include "users.h"
#include "worker.h"

#define TICK_MS 250
static char inbox_tag;   /* epoll data for the inbox eventfd */

/* ------------------------------------------------------------ id maps
 *
 * Open addressing with linear probing; ids are never 0 or 1 (the worker
 * sequence starts at 1 in bits 32..63), which mark empty and deleted
 * slots. Grown at 1/2 load (deleted slots count), so a probe ends. */

static uint32_t idmap_slot(uint64_t id, uint32_t cap)
{
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static uintptr_t *idmap_find(const fo_idmap_t *m, uint64_t id)
{
    if (!m->cap)
        return NULL;
    for (uint32_t i = idmap_slot(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == id)
            return &m->vals[i];
        if (m->keys[i] == 0)
            return NULL;
    }
}

static fo_err_t idmap_put(fo_idmap_t *m, uint64_t id, uintptr_t v)
{
    if ((m->used + 1) * 2 > m->cap) {
        uint32_t ncap = m->cap ? m->cap * 2 : 16;
        while ((m->live + 1) * 2 > ncap)
            ncap *= 2;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        uintptr_t *nv = calloc(ncap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return FO_ERR_NOMEM;
        }
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->keys[i] > 1) {
                uint32_t j = idmap_slot(m->keys[i], ncap);
                while (nk[j])
                    j = (j + 1) & (ncap - 1);
                nk[j] = m->keys[i];
                nv[j] = m->vals[i];
            }
        free(m->keys);
        free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = ncap;
        m->used = m->live;
    }
    uint32_t i = idmap_slot(id, m->cap);
    while (m->keys[i] > 1 && m->keys[i] != id)
        i = (i + 1) & (m->cap - 1);
    if (m->keys[i] != id) {
        if (m->keys[i] == 0)
            m->used++;
        m->live++;
        m->keys[i] = id;
    }
    m->vals[i] = v;
    return FO_OK;
}

static void idmap_del(fo_idmap_t *m, uint64_t id)
{
    uintptr_t *v = idmap_find(m, id);
    if (!v)
        return;
    m->keys[v - m->vals] = 1;
    m->live--;
}

static void idmap_free(fo_idmap_t *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static void immigrate(fo_worker_t *w, struct fo_conn *c);

/* What an outbox item holds, let go of (an item that will not be posted). */
static void item_drop(fo_item_t *it)
{
    if (it->kind == FO_ITEM_CTL)
        it->u.ctl->drop(it->u.ctl);
    else if (it->kind == FO_ITEM_FANOUT || it->kind == FO_ITEM_TARGET || it->kind == FO_ITEM_REPLY)
        fo_msg_unref(it->u.msg);
}

fo_err_t fo_worker_create(fo_broker_t *b, int id, fo_worker_t **out)
{
    fo_err_t err = FO_ERR_NOMEM;
    fo_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return FO_ERR_NOMEM;
    w->id = id;
    w->b = b;
    w->epfd = -1;
    w->inbox.efd = -1;
    if ((err = fo_inbox_init(&w->inbox)))
        goto fail;
    err = FO_ERR_NOMEM;
    if (fo_arena_init(&w->arena, 16 * 1024, 2 * (size_t)b->cfg.max_frame + 65536))
        goto fail;
    w->outbox = calloc((size_t)b->nsinks, sizeof *w->outbox);
    if (!w->outbox)
        goto fail;
    if (!(w->tcache = fo_tcache_create()))
        goto fail;
    w->users = fo_login_table(b);
    if ((err = fo_mcast_tx_create(b->mcast, (unsigned)w->id, &w->stats, &w->mtx)))
        goto fail;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0) {
        err = FO_ERR_IO;
        goto fail;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &inbox_tag };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->inbox.efd, &ev)) {
        err = FO_ERR_IO;
        goto fail;
    }
    *out = w;
    return FO_OK;
fail:
    fo_worker_destroy(w);
    return err;
}

#define FO_GRAVE_SLICE 8192      /* entries of buried queues freed per pass */

struct fo_grave {
    fo_outq_t q;
    struct fo_grave *next;
};

void fo_worker_bury(fo_worker_t *w, fo_outq_t *q)
{
    struct fo_grave *g = q->count > FO_GRAVE_SLICE ? malloc(sizeof *g) : NULL;
    if (!g) {
        fo_outq_clear(q);
        return;
    }
    g->q = *q;
    g->next = w->graves;
    w->graves = g;
    fo_outq_init(q);
}

/* One slice of the buried queues (all of them when all is set). */
static void dig(fo_worker_t *w, int all)
{
    uint32_t budget = FO_GRAVE_SLICE;
    while (w->graves && (all || budget)) {
        struct fo_grave *g = w->graves;
        uint32_t before = g->q.count;
        uint32_t left = fo_outq_clear_some(&g->q, all ? UINT32_MAX : budget);
        if (!all)
            budget -= before - left;          /* it freed at most budget */
        if (left)
            break;
        w->graves = g->next;
        free(g);
    }
}

void fo_worker_destroy(fo_worker_t *w)
{
    if (!w)
        return;
    /* connections on their way here when the broker stopped */
    size_t n = fo_inbox_take(&w->inbox, &w->spare, &w->spare_cap);
    for (size_t i = 0; i < n; i++) {
        fo_item_t *it = &w->spare[i];
        if (it->kind == FO_ITEM_ADOPT)
            immigrate(w, it->u.conn);
        else if (it->kind == FO_ITEM_CONN || it->kind == FO_ITEM_CONN_TLS)
            close(it->u.fd);
        else if (it->kind != FO_ITEM_FORGET)
            item_drop(it);
    }
    while (w->all)
        fo_conn_destroy(w->all);
    dig(w, 1);
    fo_msg_unref_flush(&w->unrefs);
    idmap_free(&w->immigrants);
    idmap_free(&w->emigrants);
    for (int i = 0; w->outbox && i < w->b->nsinks; i++) {
        for (size_t k = 0; k < w->outbox[i].len; k++)
            item_drop(&w->outbox[i].items[k]);
        free(w->outbox[i].items);
    }
    free(w->outbox);
    fo_inbox_destroy(&w->inbox);
    fo_users_unref(w->users);
    fo_arena_destroy(&w->arena);
    fo_mcast_tx_destroy(w->mtx);
    fo_tcache_destroy(w->tcache);
    for (int i = 0; i < w->nbufcache; i++)
        free(w->bufcache[i]);
    free(w->spare);
    free(w->picks);
    free(w->slots);
    free(w->free_next);
    if (w->epfd >= 0)
        close(w->epfd);
    free(w);
}

void fo_worker_wake(fo_worker_t *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->inbox.efd, &one, sizeof one);
    (void)r;
}

void *fo_worker_buf_get(fo_worker_t *w)
{
    if (w->nbufcache)
        return w->bufcache[--w->nbufcache];
    return malloc(FO_READ_BLOCK);
}

void fo_worker_buf_put(fo_worker_t *w, void *block)
{
    if (w->nbufcache < FO_BUFCACHE_MAX)
        w->bufcache[w->nbufcache++] = block;
    else
        free(block);
}

void fo_worker_post(fo_worker_t *w, int to, const fo_item_t *it)
{
    fo_outbox_t *o = &w->outbox[to];
    if (o->len == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 256;
        fo_item_t *ni = realloc(o->items, ncap * sizeof *ni);
        if (!ni) {
            fo_item_t copy = *it;
            item_drop(&copy);
            FO_STAT_INC(&w->stats, drops_gone);
            return;
        }
        o->items = ni;
        o->cap = ncap;
    }
    o->items[o->len++] = *it;
}

static void flush_outboxes(fo_worker_t *w)
{
    for (int i = 0; i < w->b->nsinks; i++) {
        fo_outbox_t *o = &w->outbox[i];
        if (!o->len)
            continue;
        if (fo_inbox_post(fo_broker_inbox(w->b, i), o->items, o->len)) {
            for (size_t k = 0; k < o->len; k++)
                item_drop(&o->items[k]);
            FO_STAT_ADD(&w->stats, drops_gone, o->len);
        }
        o->len = 0;
    }
}

void fo_worker_mark_dirty(fo_worker_t *w, fo_conn_t *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->dirty_next = w->dirty;
        w->dirty = c;
    }
}

/* ------------------------------------------------------------ connections
 *
 * The slot table gives O(1) lookup by connection id: the id carries the
 * slot (bits 8..31) and the worker (bits 0..7) under a process-wide
 * sequence number (bits 32..63), so a stale id (its slot reused) never
 * matches. The table holds 64 slots, then doubles whenever nslots reaches
 * a power of two (>= 64): capacity is always > nslots. Freed slots go on
 * a free list (free_head is the first free slot + 1).
 */

static fo_err_t slot_take(fo_worker_t *w, uint32_t *slot)
{
    if (w->free_head) {
        *slot = w->free_head - 1;
        w->free_head = w->free_next[*slot];
        return FO_OK;
    }
    if (w->nslots == (1u << 24))
        return FO_ERR_BUSY;
    if (w->nslots == 0 || (w->nslots >= 64 && (w->nslots & (w->nslots - 1)) == 0)) {
        uint32_t ncap = w->nslots ? w->nslots * 2 : 64;
        fo_conn_t **ns = realloc(w->slots, ncap * sizeof *ns);
        if (!ns)
            return FO_ERR_NOMEM;
        w->slots = ns;
        uint32_t *nf = realloc(w->free_next, ncap * sizeof *nf);
        if (!nf)
            return FO_ERR_NOMEM;
        w->free_next = nf;
    }
    *slot = w->nslots++;
    return FO_OK;
}

fo_err_t fo_worker_attach(fo_worker_t *w, fo_conn_t *c)
{
    uint32_t slot;
    fo_err_t err = slot_take(w, &slot);
    if (err)
        return err;
    uint64_t seq = atomic_fetch_add(&w->b->next_conn, 1) + 1;
    c->id = (seq << 32) | ((uint64_t)slot << 8) | (uint64_t)w->id;
    c->slot = slot;
    w->slots[slot] = c;
    c->all_prev = NULL;
    c->all_next = w->all;
    if (w->all)
        w->all->all_prev = c;
    w->all = c;
    w->nconns++;
    return FO_OK;
}

fo_err_t fo_worker_attach_moved(fo_worker_t *w, fo_conn_t *c)
{
    uint32_t slot;
    fo_err_t err = slot_take(w, &slot);
    if (err)
        return err;
    if (c->moved && (err = idmap_put(&w->immigrants, c->id, (uintptr_t)c))) {
        w->free_next[slot] = w->free_head;
        w->free_head = slot + 1;
        return err;
    }
    c->slot = slot;                /* the id stays: it names where it came from */
    w->slots[slot] = c;
    c->all_prev = NULL;
    c->all_next = w->all;
    if (w->all)
        w->all->all_prev = c;
    w->all = c;
    w->nconns++;
    return FO_OK;
}

/* Take c out of the singly linked list at *head threaded through its
 * `next` member (w->moving, w->tls_pending, w->dirty, w->paused). */
#define CONN_UNLINK(head, c, next)                          \
    do {                                                    \
        fo_conn_t **pp_ = (head);                           \
        while (*pp_ && *pp_ != (c))                         \
            pp_ = &(*pp_)->next;                            \
        if (*pp_)                                           \
            *pp_ = (c)->next;                               \
    } while (0)

/* A moved connection c is gone: its first worker forwards nothing to it
 * any more. */
static void forget_at_origin(fo_worker_t *w, const fo_conn_t *c)
{
    int from = (int)(c->id & 0xff);
    if (!atomic_load_explicit(&w->b->tearing_down, memory_order_relaxed) && from < w->b->nworkers &&
        from != w->id) {
        fo_item_t it = { .kind = FO_ITEM_FORGET, .conn_id = c->id };
        fo_worker_post(w, from, &it);
    }
}

void fo_worker_detach(fo_worker_t *w, fo_conn_t *c)
{
    if (c->moved && (int)(c->id & 0xff) != w->id && idmap_find(&w->immigrants, c->id)) {
        idmap_del(&w->immigrants, c->id);
        forget_at_origin(w, c);
    }
    if (c->moving) {
        CONN_UNLINK(&w->moving, c, move_next);
        c->moving = 0;
    }
    if (c->tls_pending) {
        CONN_UNLINK(&w->tls_pending, c, pending_next);
        c->tls_pending = 0;
    }
    if (c->dirty) {
        CONN_UNLINK(&w->dirty, c, dirty_next);
        c->dirty = 0;
    }
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        w->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    w->slots[c->slot] = NULL;
    w->free_next[c->slot] = w->free_head;
    w->free_head = c->slot + 1;
    w->nconns--;
}

void fo_worker_pause(fo_worker_t *w, fo_conn_t *c)
{
    c->paused_next = w->paused;
    w->paused = c;
}

void fo_worker_unpause(fo_worker_t *w, fo_conn_t *c)
{
    CONN_UNLINK(&w->paused, c, paused_next);
}

/* Resume the paused publishers whose topic is no longer blocked. */
static void resume_paused(fo_worker_t *w)
{
    for (fo_conn_t **pp = &w->paused; *pp;) {
        fo_conn_t *c = *pp;
        if (fo_conn_blocked(c)) {
            pp = &c->paused_next;
            continue;
        }
        *pp = c->paused_next;
        fo_conn_resume(c);         /* may pause c again: it goes on the head */
        if (*pp == c)              /* ...which is where pp points when it was */
            pp = &c->paused_next;  /* the head: do not look at it twice       */
    }
}

void fo_worker_tls_pending(fo_worker_t *w, fo_conn_t *c)
{
    if (!c->tls_pending) {
        c->tls_pending = 1;
        c->pending_next = w->tls_pending;
        w->tls_pending = c;
    }
}

/* Read the TLS connections whose sessions hold input (one read budget
 * each per pass, like any readable socket); one stopped by the budget
 * again goes back on the list for the next pass. */
static void service_tls_pending(fo_worker_t *w)
{
    fo_conn_t *c = w->tls_pending;
    w->tls_pending = NULL;
    while (c) {
        fo_conn_t *next = c->pending_next;
        c->tls_pending = 0;
        c->pending_next = NULL;
        if (c->reading && !c->paused_on && c->state != FO_CONN_CLOSING)
            fo_conn_on_readable(c);    /* may free c, or list it again */
        c = next;
    }
}

fo_conn_t *fo_worker_conn(fo_worker_t *w, uint64_t id)
{
    uint32_t slot = (uint32_t)(id >> 8) & 0xffffff;
    fo_conn_t *c = slot < w->nslots ? w->slots[slot] : NULL;
    if (c && c->id == id)
        return c;
    uintptr_t *v = w->immigrants.live ? idmap_find(&w->immigrants, id) : NULL;
    return v ? (fo_conn_t *)*v : NULL;
}

/* ------------------------------------------------------------ moves */

void fo_worker_move(fo_worker_t *w, fo_conn_t *c, int to)
{
    fo_broker_t *b = w->b;
    if (c->moved || c->moving || to == w->id || to < 0 || to >= b->nworkers || w->drain_phase)
        return;
    /* not onto a worker that already holds more than its share */
    uint64_t there = FO_STAT_GET(&b->workers[to]->stats, connections);
    if (there > FO_STAT_GET(&w->stats, connections) + 1)
        return;
    c->moving = 1;
    c->move_to = (int16_t)to;
    c->move_next = w->moving;
    w->moving = c;
}

/* Right after the outboxes are posted: every message the connections
 * published here is in the other workers' inboxes, so anything they
 * publish from their new worker comes after it everywhere. */
static void emigrate(fo_worker_t *w)
{
    fo_conn_t *c = w->moving;
    w->moving = NULL;
    for (fo_conn_t *next; c; c = next) {
        next = c->move_next;
        c->moving = 0;
        c->move_next = NULL;
        /* still what it was when asked? (a frame since may have changed it) */
        if (!fo_conn_can_move(c) || w->drain_phase ||
            idmap_put(&w->emigrants, c->id, (uintptr_t)c->move_to))
            continue;
        int to = c->move_to;
        fo_conn_leave(c);
        fo_worker_detach(w, c);
        c->moved = 1;
        FO_STAT_INC(&w->stats, connections_moved);
        fo_debug(c->id, "moves to worker %d, where its topics' subscribers are", to);
        fo_item_t it = { .kind = FO_ITEM_ADOPT, .u.conn = c, .conn_id = c->id };
        if (fo_inbox_post(&w->b->workers[to]->inbox, &it, 1)) {
            /* cannot hand it over: keep it here after all */
            idmap_del(&w->emigrants, c->id);
            c->moved = 0;
            if (fo_worker_attach_moved(w, c) == FO_OK)
                fo_conn_join(c, w);
            else
                fo_conn_free_detached(c);
        }
    }
}

/* A connection moved here from another worker. */
static void immigrate(fo_worker_t *w, fo_conn_t *c)
{
    if (fo_worker_attach_moved(w, c)) {
        fo_error(c->id, "cannot take a moved connection: out of memory");
        c->w = w;
        forget_at_origin(w, c);
        fo_conn_free_detached(c);
        return;
    }
    fo_conn_join(c, w);
    fo_login_adopt(c);
}

int fo_worker_forward(fo_worker_t *w, const fo_item_t *it)
{
    uintptr_t *v = w->emigrants.live ? idmap_find(&w->emigrants, it->conn_id) : NULL;
    if (!v)
        return 0;
    fo_worker_post(w, (int)*v, it);
    return 1;
}

static void adopt(fo_worker_t *w, int fd, int tls)
{
    fo_conn_t *c;
    if (tls ? fo_conn_create_tls(w, fd, &c) : fo_conn_create(w, fd, &c)) {
        close(fd);
        atomic_fetch_sub(&w->b->conns, 1);
        fo_error(0, "cannot adopt a connection: out of memory");
    }
}

static void handle_inbox(fo_worker_t *w)
{
    fo_inbox_ack(&w->inbox);
    size_t n = fo_inbox_take(&w->inbox, &w->spare, &w->spare_cap);
    if (!n)
        return;
    FO_STAT_INC(&w->stats, inbox_batches);
    for (size_t i = 0; i < n; i++) {
        fo_item_t *it = &w->spare[i];
        if (it->kind == FO_ITEM_CONN || it->kind == FO_ITEM_CONN_TLS) {
            if (w->drain_phase) {
                close(it->u.fd);
                atomic_fetch_sub(&w->b->conns, 1);
            } else {
                adopt(w, it->u.fd, it->kind == FO_ITEM_CONN_TLS);
            }
        } else if (it->kind == FO_ITEM_CTL) {
            it->u.ctl->run(it->u.ctl, w);
        } else if (it->kind == FO_ITEM_ADOPT) {
            immigrate(w, it->u.conn);
        } else if (it->kind == FO_ITEM_FORGET) {
            idmap_del(&w->emigrants, it->conn_id);
        } else {
            fo_route_item(w, it);
        }
    }
}

static void flush_dirty(fo_worker_t *w)
{
    fo_conn_t *c = w->dirty;
    w->dirty = NULL;
    while (c) {
        fo_conn_t *next = c->dirty_next;
        c->dirty = 0;
        c->dirty_next = NULL;
        fo_conn_flush(c);        /* may free c */
        c = next;
    }
    fo_msg_unref_flush(&w->unrefs);   /* one subtraction per message written */
}

/* Stop reading everywhere, so no new message enters this worker. */
static void stop_reading(fo_worker_t *w)
{
    for (fo_conn_t *c = w->all; c; c = c->all_next)
        fo_conn_stop_reading(c);
}

static int output_pending(fo_worker_t *w)
{
    for (fo_conn_t *c = w->all; c; c = c->all_next)
        if (c->state != FO_CONN_CLOSING && fo_conn_has_output(c))
            return 1;
    return 0;
}

/* The drain state machine (SIGTERM): returns 1 when the loop may end. */
static int drain_step(fo_worker_t *w)
{
    fo_broker_t *b = w->b;
    if (w->drain_phase == 0) {
        w->drain_phase = 1;
        w->drain_deadline_ms = w->now_ms + LIM(b, drain_timeout_ms);
        stop_reading(w);
        flush_outboxes(w);
        atomic_fetch_add(&b->quiesced, 1);
        fo_info(0, "draining: %d connection%s", w->nconns, FO_PLURAL(w->nconns));
        return 0;
    }
    int all_quiet = atomic_load(&b->quiesced) == b->nworkers &&
                    fo_inbox_pending(&w->inbox) == 0;
    if ((all_quiet && !output_pending(w)) || w->now_ms >= w->drain_deadline_ms) {
        if (w->now_ms >= w->drain_deadline_ms && output_pending(w))
            fo_warn(0, "drain timeout: closing with output still queued");
        return 1;
    }
    return 0;
}

static void on_event(fo_worker_t *w, const struct epoll_event *ev)
{
    void *p = ev->data.ptr;
    if (p == &inbox_tag) {
        handle_inbox(w);
        return;
    }
    fo_conn_t *c = p;
    if (w->drain_phase && (ev->events & (EPOLLHUP | EPOLLERR)))
        fo_conn_destroy(c);             /* gone: nothing to deliver to */
    else if (c->tls)
        fo_conn_on_tls_event(c, ev->events);
    else if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        fo_conn_on_readable(c);         /* may free c; it is not dirty then */
    else if (ev->events & EPOLLOUT)
        fo_worker_mark_dirty(w, c);
}

/* The end of an iteration is a quiescent point: this worker's outboxes
 * are posted and it keeps no topic pointer but in its cache and its
 * connections' last topics. When the reclaim epoch has moved, forget the
 * dead topics there, then say so (broker.c frees a dead topic once every
 * worker has been seen three epochs past its death). */
static void quiescent(fo_worker_t *w)
{
    uint64_t e = atomic_load_explicit(&w->b->reclaim_epoch, memory_order_acquire);
    if (e == atomic_load_explicit(&w->seen_epoch, memory_order_relaxed))
        return;
    uint64_t d = fo_registry_deaths(w->b->reg);
    if (d != w->purged_deaths) {
        w->purged_deaths = d;
        fo_tcache_purge_dead(w->tcache);
        for (fo_conn_t *c = w->all; c; c = c->all_next)
            fo_conn_forget_dead(c);
    }
    atomic_store_explicit(&w->seen_epoch, e, memory_order_release);
}

int fo_worker_step(fo_worker_t *w, int max_wait_ms)
{
    if (!w->next_tick_ms) {
        w->now_ms = fo_clock_ms();
        w->next_tick_ms = w->now_ms + TICK_MS;
    }
    struct epoll_event evs[256];
    int timeout = (int)(w->next_tick_ms > w->now_ms ? w->next_tick_ms - w->now_ms : 0);
    if (w->drain_phase && timeout > 10)
        timeout = 10;
    if (w->paused && timeout > 1)
        timeout = 1;                 /* poll paused publishers' topics */
    if (w->tls_pending || w->graves)
        timeout = 0;                 /* input waits inside TLS sessions;
                                      * buried queues are freed a slice
                                      * per pass */
    if (max_wait_ms >= 0 && timeout > max_wait_ms)
        timeout = max_wait_ms;
    int n = epoll_wait(w->epfd, evs, 256, timeout);
    uint64_t t0 = fo_clock_ns();
    w->now_ms = fo_clock_ms();
    FO_STAT_INC(&w->stats, loop_iterations);
    for (int i = 0; i < n; i++)
        on_event(w, &evs[i]);
    if (n < 0 && errno != EINTR)
        fo_error(0, "epoll_wait: %s", strerror(errno));
    if (w->tls_pending)
        service_tls_pending(w);      /* after the events: none is stale */
    if (w->paused)
        resume_paused(w);            /* may publish: before the flushes */
    flush_outboxes(w);
    if (w->moving)
        emigrate(w);                 /* after the flush: see fo_worker_move */
    flush_dirty(w);
    fo_mcast_tx_flush(w->mtx);
    if (w->now_ms >= w->next_tick_ms) {
        w->next_tick_ms = w->now_ms + TICK_MS;
        for (fo_conn_t *c = w->all, *next; c; c = next) {
            next = c->all_next;
            fo_conn_tick(c);
        }
    }
    if (w->graves)
        dig(w, 0);
    quiescent(w);
    fo_mem_local_flush();            /* the pass's memory credit (msg.h) */
    FO_STAT_ADD(&w->stats, busy_ns, fo_clock_ns() - t0);
    return atomic_load_explicit(&w->b->draining, memory_order_relaxed) && drain_step(w);
}

static void *worker_main(void *arg)
{
    fo_worker_t *w = arg;
    fo_log_set_worker(w->id);
    fo_mem_local_begin(&w->b->mem);
    while (!fo_worker_step(w, -1))
        ;
    /* Tell everyone still here, then close. */
    for (fo_conn_t *c = w->all; c; c = c->all_next)
        if (c->state != FO_CONN_CLOSING)
            fo_conn_send_error(c, FANOUT__ERROR_CODE__ERR_SHUTDOWN, 0, FO_NO_SID, "broker is shutting down");
    for (fo_conn_t *c = w->all, *next; c; c = next) {
        next = c->all_next;
        fo_conn_flush(c);
    }
    while (w->all)
        fo_conn_destroy(w->all);
    dig(w, 1);
    fo_msg_unref_flush(&w->unrefs);
    fo_mem_local_end();
    atomic_fetch_add(&w->b->exited, 1);
    return NULL;
}

fo_err_t fo_worker_start(fo_worker_t *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) ? FO_ERR_IO : FO_OK;
}

void fo_worker_join(fo_worker_t *w)
{
    pthread_join(w->thread, NULL);
}
