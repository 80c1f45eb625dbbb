/* rr.c -- request/reply: fo_request, fo_request_async, fo_respond.
 *
 * One inbox per connection: WELCOME announces "_INBOX.<32 hex>", and the
 * broker sends whatever is published to inbox + "." + anything to this
 * connection alone, as DELIVER with sid 0 (docs/PROTOCOL.md). A request is
 * a PUBLISH whose reply address is inbox + "." + its id, a number unique
 * within the client (never reused, across reconnects too); the same id,
 * with FO__RR_REQ_BIT, is its Frame.req, so that the broker's immediate
 * ERR_NO_RESPONDERS names it (the ACK is ignored). Like nats.c's muxed
 * response subscription, one address prefix serves every request; unlike
 * it, no subscription is needed: the broker routes inbox addresses itself.
 *
 * The table of waiting requests (c->rr, under its own leaf lock) is an
 * open-addressing hash by id (linear probing, backward-shift deletion:
 * O(1) insert, lookup and removal), bounded by opts.max_requests.
 * Asynchronous requests with a timeout are also in a min-heap by deadline
 * that the reader thread looks at when armed_us passes: a lazy timer --
 * armed_us only moves earlier when a new deadline is earlier than it (then
 * the reader is woken), so a stream of requests with one timeout costs no
 * wake-up at all, and a timer that finds nothing due re-arms to the
 * heap's top. A synchronous request waits on its own condition variable
 * (no thundering herd) and keeps its own deadline.
 *
 * The reader completes a request when its reply comes (the first one:
 * later replies find no entry and are dropped), when its ERROR comes, when
 * its timer fires, and fails them all when the connection is lost
 * (FO_ERR_NOT_CONNECTED: the reply could not reach the next inbox) or the
 * client closes (FO_ERR_CLOSED). Callbacks run with no lock held.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "client_int.h"
#include "clock.h"
#include "topic_name.h"

enum { RQ_WAITING = 0, RQ_TAKEN = 1, RQ_DONE = 2 };

struct fo__rreq {
    uint64_t id;
    uint64_t deadline_us;        /* async: 0 = none                       */
    size_t hidx;                 /* index in the heap, SIZE_MAX: not in it */
    fo_reply_cb_t cb;            /* async                                 */
    void *ud;
    pthread_cond_t *cv;          /* sync: the waiter's (NULL: async)      */
    int state;                   /* sync: RQ_*                            */
    fo_err_t err;                /* sync: the outcome                     */
    fo_reply_t *reply;           /* sync: the reply, handed to the caller */
    fo__rreq_t *next;            /* a list of completed async requests    */
};

#define NONE SIZE_MAX

/* ------------------------------------------------------------ the table */

fo_err_t fo__rr_init(fo__rr_t *r, size_t max)
{
    memset(r, 0, sizeof *r);
    if (pthread_mutex_init(&r->mu, NULL))
        return FO_ERR_NOMEM;
    r->mu_ok = 1;
    r->max = max ? max : 65536;
    atomic_store(&r->armed_us, UINT64_MAX);
    return FO_OK;
}

void fo__rr_destroy(fo__rr_t *r)
{
    /* The reader failed every request before it stopped: none is left. */
    free(r->slots);
    free(r->heap);
    if (r->mu_ok)
        pthread_mutex_destroy(&r->mu);
    r->mu_ok = 0;
}

static size_t home(const fo__rr_t *r, uint64_t id)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & (r->cap - 1);
}

static size_t find(const fo__rr_t *r, uint64_t id)
{
    if (!r->cap)
        return NONE;
    for (size_t i = home(r, id);; i = (i + 1) & (r->cap - 1)) {
        if (!r->slots[i])
            return NONE;
        if (r->slots[i]->id == id)
            return i;
    }
}

static void put(fo__rr_t *r, fo__rreq_t *q)
{
    size_t i = home(r, q->id);
    while (r->slots[i])
        i = (i + 1) & (r->cap - 1);
    r->slots[i] = q;
    r->count++;
}

/* Room for one more at a load of at most 1/2. */
static fo_err_t reserve(fo__rr_t *r)
{
    if ((r->count + 1) * 2 <= r->cap)
        return FO_OK;
    size_t ncap = r->cap ? r->cap * 2 : 16;
    fo__rreq_t **old = r->slots, **ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return FO_ERR_NOMEM;
    size_t ocap = r->cap;
    r->slots = ns;
    r->cap = ncap;
    r->count = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i])
            put(r, old[i]);
    free(old);
    return FO_OK;
}

/* Remove slot i, shifting back the entries of its probe run that would
 * no longer be found (no tombstones). */
static void unslot(fo__rr_t *r, size_t i)
{
    size_t mask = r->cap - 1;
    r->slots[i] = NULL;
    r->count--;
    for (size_t j = (i + 1) & mask; r->slots[j]; j = (j + 1) & mask) {
        size_t k = home(r, r->slots[j]->id);
        /* stays if its home lies cyclically in (i, j] */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        r->slots[i] = r->slots[j];
        r->slots[j] = NULL;
        i = j;
    }
}

/* ------------------------------------------------------------ the heap */

static void heap_set(fo__rr_t *r, size_t i, fo__rreq_t *q)
{
    r->heap[i] = q;
    q->hidx = i;
}

static void sift_up(fo__rr_t *r, size_t i)
{
    fo__rreq_t *q = r->heap[i];
    while (i) {
        size_t up = (i - 1) / 2;
        if (r->heap[up]->deadline_us <= q->deadline_us)
            break;
        heap_set(r, i, r->heap[up]);
        i = up;
    }
    heap_set(r, i, q);
}

static void sift_down(fo__rr_t *r, size_t i)
{
    fo__rreq_t *q = r->heap[i];
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= r->nheap)
            break;
        if (k + 1 < r->nheap && r->heap[k + 1]->deadline_us < r->heap[k]->deadline_us)
            k++;
        if (q->deadline_us <= r->heap[k]->deadline_us)
            break;
        heap_set(r, i, r->heap[k]);
        i = k;
    }
    heap_set(r, i, q);
}

static fo_err_t heap_push(fo__rr_t *r, fo__rreq_t *q)
{
    if (r->nheap == r->heap_cap) {
        size_t ncap = r->heap_cap ? r->heap_cap * 2 : 16;
        fo__rreq_t **nh = realloc(r->heap, ncap * sizeof *nh);
        if (!nh)
            return FO_ERR_NOMEM;
        r->heap = nh;
        r->heap_cap = ncap;
    }
    heap_set(r, r->nheap++, q);
    sift_up(r, q->hidx);
    return FO_OK;
}

static void heap_remove(fo__rr_t *r, fo__rreq_t *q)
{
    size_t i = q->hidx;
    if (i == NONE)
        return;
    q->hidx = NONE;
    fo__rreq_t *last = r->heap[--r->nheap];
    if (i == r->nheap)
        return;
    heap_set(r, i, last);
    sift_up(r, i);
    sift_down(r, last->hidx);
}

/* Take request id out of the table (and heap): it, or NULL. mu held. */
static fo__rreq_t *take_locked(fo__rr_t *r, uint64_t id)
{
    size_t i = find(r, id);
    if (i == NONE)
        return NULL;
    fo__rreq_t *q = r->slots[i];
    unslot(r, i);
    heap_remove(r, q);
    return q;
}

/* ------------------------------------------------------------ enrolling */

/* Put q in the table with a new id; addr gets its reply address. */
static fo_err_t enroll(fo_client_t *c, fo__rreq_t *q, char *addr, size_t addrlen,
                       uint64_t *id)
{
    fo__rr_t *r = &c->rr;
    fo_err_t err = FO_OK;
    int wake = 0, no_inbox = 0;
    pthread_mutex_lock(&r->mu);
    if (!r->up)
        err = atomic_load(&c->dead) ? FO_ERR_CLOSED : FO_ERR_NOT_CONNECTED;
    else if (!*r->inbox)
        err = FO_ERR_PROTO, no_inbox = 1;
    else if (r->count >= r->max)
        err = FO_ERR_BUSY;
    else
        err = reserve(r);
    if (!err && q->deadline_us && (err = heap_push(r, q)) == FO_OK &&
        q->deadline_us < atomic_load(&r->armed_us)) {
        atomic_store(&r->armed_us, q->deadline_us);
        wake = !fo__client_on_reader(c);
    }
    if (!err) {
        q->id = *id = ++r->next_id;
        put(r, q);
        snprintf(addr, addrlen, "%s.%" PRIu64, r->inbox, q->id);
    }
    pthread_mutex_unlock(&r->mu);
    if (no_inbox)
        fo__client_set_error(c, "the broker announced no inbox: it does not support requests");
    else if (err == FO_ERR_BUSY)
        fo__client_set_error(c, "too many requests waiting for replies (max_requests)");
    if (wake) {
        uint64_t one = 1;
        if (write(c->wakefd, &one, sizeof one) < 0) {
            /* cannot fail (far from full); the reader's next tick sees it */
        }
    }
    return err;
}

/* Take back a request that could not be sent: 1 when it was still in the
 * table (the caller reports the error), 0 when the reader had completed
 * it already (its outcome is reported that way). */
static int withdraw(fo_client_t *c, uint64_t id)
{
    pthread_mutex_lock(&c->rr.mu);
    fo__rreq_t *q = take_locked(&c->rr, id);
    pthread_mutex_unlock(&c->rr.mu);
    return q != NULL;
}

/* The PUBLISH of a request: write it at once. */
static fo_err_t send_request(fo_client_t *c, const char *topic, const void *payload,
                             size_t len, const fo_pub_opts_t *opts, const char *addr,
                             uint64_t id)
{
    fo__pubmsg_t m;
    fo_err_t err = fo__pubmsg_init(&m, c, topic, payload, len, addr, opts);
    if (err)
        return err;
    m.f.has_req = 1;
    m.f.req = id | FO__RR_REQ_BIT;
    return fo__client_publish_pb(c, &m.f, FO__PUB_NOW | FO__PUB_CONNECTED);
}

/* Also the topic: a request to an invalid one would make the broker
 * close the connection, failing every other request waiting on it. */
static int args_ok(const fo_client_t *c, const char *topic, const void *payload, size_t len,
                   const fo_pub_opts_t *opts, int timeout_ms)
{
    return c && topic && (payload || !len) && timeout_ms != 0 && (!opts || !opts->reply) &&
           fo_topic_valid(topic, strlen(topic));
}

fo_err_t fo_request_async(fo_client_t *c, const char *topic, const void *payload,
                          size_t len, const fo_pub_opts_t *opts, int timeout_ms,
                          fo_reply_cb_t cb, void *ud)
{
    if (!args_ok(c, topic, payload, len, opts, timeout_ms) || !cb)
        return FO_ERR_INVAL;
    fo__rreq_t *q = calloc(1, sizeof *q);
    if (!q)
        return FO_ERR_NOMEM;
    q->cb = cb;
    q->ud = ud;
    q->hidx = NONE;
    if (timeout_ms > 0)
        q->deadline_us = fo_clock_us() + (uint64_t)timeout_ms * 1000;
    char addr[FO__INBOX_MAX + 24];
    uint64_t id;
    fo_err_t err = enroll(c, q, addr, sizeof addr, &id);
    if (err) {
        free(q);
        return err;
    }
    /* From here q belongs to the table: the reader may complete and free
     * it at any time (a timer, a lost connection). */
    err = send_request(c, topic, payload, len, opts, addr, id);
    if (err && withdraw(c, id)) {
        free(q);
        return err;
    }
    return FO_OK;
}

fo_err_t fo_request(fo_client_t *c, const char *topic, const void *payload,
                    size_t len, const fo_pub_opts_t *opts, int timeout_ms,
                    fo_reply_t **out)
{
    if (out)
        *out = NULL;
    if (!args_ok(c, topic, payload, len, opts, timeout_ms) || !out)
        return FO_ERR_INVAL;
    if (fo__client_on_reader(c))
        return FO_ERR_INVAL;            /* would wait for itself */
    pthread_cond_t cv;
    if (fo__client_cond_init(&cv))
        return FO_ERR_NOMEM;
    fo__rreq_t q = { .cv = &cv, .hidx = NONE, .state = RQ_WAITING };
    struct timespec dl = fo_deadline_ts(timeout_ms);
    char addr[FO__INBOX_MAX + 24];
    uint64_t id;
    fo_err_t err = enroll(c, &q, addr, sizeof addr, &id);
    if (!err && (err = send_request(c, topic, payload, len, opts, addr, id)) != FO_OK &&
        !withdraw(c, id))
        err = FO_OK;                    /* completed meanwhile: wait for it */
    if (!err) {
        pthread_mutex_lock(&c->rr.mu);
        while (q.state != RQ_DONE) {
            if (timeout_ms < 0 || q.state == RQ_TAKEN) {
                pthread_cond_wait(&cv, &c->rr.mu);
            } else if (pthread_cond_timedwait(&cv, &c->rr.mu, &dl) == ETIMEDOUT &&
                       q.state == RQ_WAITING) {
                take_locked(&c->rr, id);
                q.state = RQ_DONE;
                q.err = FO_ERR_TIMEOUT;
            }
        }
        pthread_mutex_unlock(&c->rr.mu);
        err = q.err;
        *out = q.reply;
    }
    pthread_cond_destroy(&cv);
    return err;
}

fo_err_t fo_respond(fo_client_t *c, const fo_msg_t *request, const void *payload,
                    size_t len, const fo_pub_opts_t *opts)
{
    if (!c || !request || !request->reply || (!payload && len))
        return FO_ERR_INVAL;
    fo__pubmsg_t m;
    fo_err_t err = fo__pubmsg_init(&m, c, request->reply, payload, len,
                                   opts ? opts->reply : NULL, opts);
    /* Buffered while reconnecting, like any publish: the requester's
     * inbox may well have outlived our connection. */
    return err ? err : fo__client_publish_pb(c, &m.f, FO__PUB_NOW);
}

/* ------------------------------------------------------------ replies */

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* A deep copy of m in one allocation (fo_reply_free frees it). */
static fo_reply_t *reply_copy(const fo_msg_t *m)
{
    size_t rl = m->reply ? strlen(m->reply) + 1 : 0;
    size_t bytes = m->topic_len + 1 + m->payload_len + rl;
    for (size_t i = 0; i < m->nheaders; i++)
        bytes += strlen(m->headers[i].key) + 1 + m->headers[i].value_len;
    size_t head = align8(sizeof(fo_reply_t)) + m->nheaders * sizeof(fo_header_t);
    fo_reply_t *r = malloc(head + bytes);
    if (!r)
        return NULL;
    fo_header_t *hs = (fo_header_t *)((char *)r + align8(sizeof(fo_reply_t)));
    char *p = (char *)r + head;
    r->msg = *m;
    memcpy(p, m->topic, m->topic_len);
    p[m->topic_len] = 0;
    r->msg.topic = p;
    p += m->topic_len + 1;
    if (m->payload_len)
        memcpy(p, m->payload, m->payload_len);
    r->msg.payload = p;
    p += m->payload_len;
    if (rl) {
        memcpy(p, m->reply, rl);
        r->msg.reply = p;
        p += rl;
    }
    for (size_t i = 0; i < m->nheaders; i++) {
        size_t kl = strlen(m->headers[i].key) + 1;
        memcpy(p, m->headers[i].key, kl);
        hs[i].key = p;
        p += kl;
        if (m->headers[i].value_len)
            memcpy(p, m->headers[i].value, m->headers[i].value_len);
        hs[i].value = p;
        hs[i].value_len = m->headers[i].value_len;
        p += hs[i].value_len;
    }
    r->msg.headers = m->nheaders ? hs : NULL;
    return r;
}

void fo_reply_free(fo_reply_t *r)
{
    free(r);
}

/* The request a reply address names: "<our inbox>.<id>". Reader thread
 * (the only writer of the inbox, so no lock is needed to read it). */
static int reply_id(const fo_client_t *c, const fo_msg_t *m, uint64_t *id)
{
    size_t il = strlen(c->rr.inbox);
    const char *t = m->topic;
    if (!il || m->topic_len <= il + 1 || memcmp(t, c->rr.inbox, il) || t[il] != '.')
        return 0;
    uint64_t v = 0;
    for (size_t i = il + 1; i < m->topic_len; i++) {
        if (t[i] < '0' || t[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(t[i] - '0');
    }
    *id = v;
    return 1;
}

/* Hand a taken request its outcome: a sync waiter is woken (with a copy
 * of the reply), an async callback runs here, without the lock. */
static void finish(fo_client_t *c, fo__rreq_t *q, fo_err_t err, const fo_msg_t *m)
{
    if (!q->cv) {
        q->cb(q->ud, err, err ? NULL : m);
        free(q);
        return;
    }
    fo_reply_t *copy = err ? NULL : reply_copy(m);
    pthread_mutex_lock(&c->rr.mu);
    q->reply = copy;
    q->err = err ? err : copy ? FO_OK : FO_ERR_NOMEM;
    q->state = RQ_DONE;
    pthread_cond_signal(q->cv);
    pthread_mutex_unlock(&c->rr.mu);   /* q may be gone from here on */
}

/* Take request id for completion by the reader; NULL if not waiting. */
static fo__rreq_t *claim(fo_client_t *c, uint64_t id)
{
    pthread_mutex_lock(&c->rr.mu);
    fo__rreq_t *q = take_locked(&c->rr, id);
    if (q && q->cv)
        q->state = RQ_TAKEN;            /* the waiter waits for RQ_DONE now */
    pthread_mutex_unlock(&c->rr.mu);
    return q;
}

void fo__rr_on_reply(fo_client_t *c, const fo_msg_t *m)
{
    uint64_t id;
    fo__rreq_t *q = reply_id(c, m, &id) ? claim(c, id) : NULL;
    if (q)
        finish(c, q, FO_OK, m);
    /* else: a late or second reply, or one for an earlier inbox: dropped */
}

void fo__rr_on_error(fo_client_t *c, uint64_t id, fo_err_t err)
{
    fo__rreq_t *q = claim(c, id);
    if (q)
        finish(c, q, err, NULL);
}

void fo__rr_welcome(fo_client_t *c, const char *inbox)
{
    pthread_mutex_lock(&c->rr.mu);
    snprintf(c->rr.inbox, sizeof c->rr.inbox, "%s", inbox ? inbox : "");
    c->rr.up = 1;
    pthread_mutex_unlock(&c->rr.mu);
}

/* Run the callbacks of a list of taken async requests. */
static void finish_list(fo_client_t *c, fo__rreq_t *list, fo_err_t err)
{
    while (list) {
        fo__rreq_t *q = list;
        list = q->next;
        finish(c, q, err, NULL);
    }
}

void fo__rr_lost(fo_client_t *c, fo_err_t err)
{
    fo__rr_t *r = &c->rr;
    fo__rreq_t *list = NULL;
    pthread_mutex_lock(&r->mu);
    r->up = 0;
    r->inbox[0] = 0;
    for (size_t i = 0; i < r->cap; i++) {
        fo__rreq_t *q = r->slots[i];
        if (!q)
            continue;
        r->slots[i] = NULL;
        if (q->cv) {
            q->err = err;
            q->state = RQ_DONE;
            pthread_cond_signal(q->cv);
        } else {
            q->next = list;
            list = q;
        }
    }
    r->count = r->nheap = 0;
    atomic_store(&r->armed_us, UINT64_MAX);
    pthread_mutex_unlock(&r->mu);
    finish_list(c, list, err);
}

void fo__rr_expire(fo_client_t *c, uint64_t now_us)
{
    fo__rr_t *r = &c->rr;
    if (now_us < atomic_load_explicit(&r->armed_us, memory_order_relaxed))
        return;
    fo__rreq_t *list = NULL;
    pthread_mutex_lock(&r->mu);
    while (r->nheap && r->heap[0]->deadline_us <= now_us) {
        fo__rreq_t *q = take_locked(r, r->heap[0]->id);
        q->next = list;
        list = q;
    }
    atomic_store(&r->armed_us, r->nheap ? r->heap[0]->deadline_us : UINT64_MAX);
    pthread_mutex_unlock(&r->mu);
    finish_list(c, list, FO_ERR_TIMEOUT);
}

/* ------------------------------------------------------------ headers */

const fo_header_t *fo_msg_header(const fo_msg_t *m, const char *key)
{
    if (!m || !key)
        return NULL;
    for (size_t i = 0; i < m->nheaders; i++)
        if (!strcmp(m->headers[i].key, key))
            return &m->headers[i];
    return NULL;
}
